"""Multiplier rules: "these parameters (or slices) follow this learning-rate multiplier schedule".

The Q/K delay is one rule (upper layers x {q, k}). A rule selects either by layer and
projection or by a parameter-name pattern, and every rule must select something. Rules can
be declared in Python or in a YAML file:

```yaml
rules:
  - name: upper_qk              # logged as qk_delay/multiplier/upper_qk
    layers: upper               # a layer spec (see hf_qkdelay.layers)
    projections: [q, k]
    schedule: {kind: cosine, factor: 0.1, steps: 0.2}
  - name: embeddings
    params: "wte|wpe"           # a regular expression searched in parameter names
    schedule: {kind: constant, factor: 0.5, steps: 1000}
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from .schedules import MultiplierSchedule
from .selection import ParamSlice, select_by_pattern, select_projections

RULE_KEYS = {"name", "layers", "projections", "params", "schedule"}

# The name of the single rule the qk_delay_* flags describe; logged as `qk_delay/multiplier`.
QK_DELAY_RULE = "qk_delay"
SCHEDULE_KEYS = {"kind", "factor", "steps"}


@dataclass(frozen=True)
class MultiplierRule:
    """A selection of parameters and the multiplier schedule their learning rate follows.

    Exactly one of `layers` (with `projections`) or `params` (a regular expression searched
    in parameter names) selects the parameters.
    """

    name: str
    schedule: MultiplierSchedule
    layers: str | None = None
    projections: tuple[str, ...] = ("q", "k")
    params: str | None = None

    def __post_init__(self):
        if (self.layers is None) == (self.params is None):
            raise ValueError(
                f"rule `{self.name}`: give exactly one of `layers` (with `projections`) or "
                f"`params` (a parameter-name pattern); got layers={self.layers!r}, "
                f"params={self.params!r}."
            )
        if not self.name or "/" in self.name:
            raise ValueError(f"rule name {self.name!r} must be non-empty and contain no `/`.")

    @property
    def layers_argument(self) -> str:
        """How errors name this rule's layer spec: the flag, or the rule in its file."""
        return "qk_delay_layers" if self.name == QK_DELAY_RULE else f"rules[{self.name}].layers"

    def select(self, model: nn.Module) -> list[ParamSlice]:
        if self.params is not None:
            slices = select_by_pattern(model, self.params)
            what = f"`params`={self.params!r}"
        else:
            slices = select_projections(
                model, self.layers, self.projections, argument=self.layers_argument
            )
            what = f"`layers`={self.layers!r} x `projections`={','.join(self.projections)!r}"
        if not slices:
            raise ValueError(
                f"rule `{self.name}` selects no trainable parameter ({what}); a rule must "
                "select something: widen its selection or remove the rule."
            )
        return slices


@dataclass
class ResolvedRule:
    """A rule with the parameters and slices it selected in one model."""

    rule: MultiplierRule
    slices: list[ParamSlice] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def layers(self) -> list[int]:
        return sorted({s.layer for s in self.slices if s.layer is not None})

    @property
    def governed_numel(self) -> int:
        return sum(s.numel for s in self.slices)


def resolve_rules(model: nn.Module, rules: Sequence[MultiplierRule]) -> list[ResolvedRule]:
    """Select every rule's parameters and check that no parameter part is claimed twice."""
    names = [rule.name for rule in rules]
    if len(set(names)) != len(names):
        raise ValueError(f"rule names must be unique; got {names}.")
    resolved = [ResolvedRule(rule, rule.select(model)) for rule in rules]

    # Two slices overlap when they share a parameter and either is whole or their
    # feature ranges intersect (slices of one parameter always share a layout).
    claimed: dict[int, list[tuple[str, ParamSlice]]] = {}
    for entry in resolved:
        for piece in entry.slices:
            for other_rule, other in claimed.get(id(piece.param), []):
                if (
                    piece.is_whole
                    or other.is_whole
                    or (piece.start < other.stop and other.start < piece.stop)
                ):
                    raise ValueError(
                        f"`{piece.describe()}` is selected by rule `{entry.name}` and by rule "
                        f"`{other_rule}`; every parameter part must follow one schedule."
                    )
            claimed.setdefault(id(piece.param), []).append((entry.name, piece))
    return resolved


def rule_from_dict(spec: dict, index: int = 0) -> MultiplierRule:
    """A rule from its YAML/JSON form (see the module docstring)."""
    if not isinstance(spec, dict):
        raise ValueError(
            f"rule #{index} must be a mapping with keys {sorted(RULE_KEYS)}; got {spec!r}."
        )
    unknown = set(spec) - RULE_KEYS
    if unknown:
        raise ValueError(
            f"rule #{index} has unknown keys {sorted(unknown)}; accepted: {sorted(RULE_KEYS)}."
        )
    schedule_spec = spec.get("schedule", {})
    if not isinstance(schedule_spec, dict):
        raise ValueError(
            f"rule #{index}: `schedule`={schedule_spec!r} must be a mapping with keys among "
            f"{sorted(SCHEDULE_KEYS)}."
        )
    unknown = set(schedule_spec) - SCHEDULE_KEYS
    if unknown:
        raise ValueError(
            f"rule #{index}: `schedule` has unknown keys {sorted(unknown)}; accepted: {sorted(SCHEDULE_KEYS)}."
        )
    projections = spec.get("projections", ("q", "k"))
    if isinstance(projections, str):
        projections = [p.strip() for p in projections.split(",") if p.strip()]
    layers = spec.get("layers")
    return MultiplierRule(
        name=str(spec.get("name", f"rule{index}")),
        schedule=MultiplierSchedule(**schedule_spec),
        layers=None if layers is None else str(layers),
        projections=tuple(projections),
        params=spec.get("params"),
    )


def rule_to_dict(rule: MultiplierRule) -> dict:
    """The YAML/JSON form of a rule (the inverse of `rule_from_dict`)."""
    schedule = {
        "kind": rule.schedule.kind,
        "factor": rule.schedule.factor,
        "steps": rule.schedule.steps,
    }
    selection = (
        {"params": rule.params}
        if rule.params is not None
        else {"layers": rule.layers, "projections": list(rule.projections)}
    )
    return {"name": rule.name, **selection, "schedule": schedule}


def load_rules(path: str | Path) -> list[MultiplierRule]:
    """Rules from a YAML file holding a top-level `rules:` list."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"`qk_delay_rules`={str(path)!r} is not a file; give a YAML file with a `rules:` list."
        )
    with open(path, encoding="utf-8") as handle:
        try:
            document = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise ValueError(f"`qk_delay_rules`={str(path)!r} is not valid YAML: {error}") from None
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("rules"), list)
        or not document["rules"]
    ):
        raise ValueError(
            f"`qk_delay_rules`={str(path)!r} must hold a non-empty top-level `rules:` list."
        )
    return [rule_from_dict(spec, index) for index, spec in enumerate(document["rules"])]
