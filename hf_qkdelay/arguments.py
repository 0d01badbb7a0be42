"""Command-line arguments of the Q/K delay, usable with `HfArgumentParser`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

from .layers import LAYER_SPEC_HELP, parse_layer_spec
from .rules import QK_DELAY_RULE, MultiplierRule, load_rules, rule_to_dict
from .schedules import SCHEDULE_KINDS, MultiplierSchedule
from .selection import PROJECTIONS

# The flags that `qk_delay_rules` replaces.
RULE_FLAGS = (
    "qk_delay_layers",
    "qk_delay_factor",
    "qk_delay_steps",
    "qk_delay_schedule",
    "qk_delay_targets",
)


@dataclass
class QKDelayArguments:
    """The upper-layer Q/K learning-rate delay.

    For the chosen attention layers, the learning rate of the query and key projections
    (and their biases) is multiplied by m(t) for optimizer update t; every other parameter
    trains as usual. The delay is off with `qk_delay_layers=none`, `qk_delay_factor=1` or
    `qk_delay_steps=0`.
    """

    qk_delay_layers: str = field(
        default="upper",
        metadata={"help": f"Layers whose Q/K learning rate is delayed: {LAYER_SPEC_HELP}."},
    )
    qk_delay_factor: float = field(
        default=0.1,
        metadata={
            "help": "Start multiplier f in [0, 1] of the delayed learning rate (1 = no delay, 0 = frozen)."
        },
    )
    qk_delay_steps: float = field(
        default=0.2,
        metadata={
            "help": "Delay window D in optimizer updates (an integer >= 1); a value in (0, 1) is a "
            "fraction of the total updates, as `warmup_steps` is; 0 = no delay."
        },
    )
    qk_delay_schedule: str = field(
        default="constant",
        metadata={
            "help": "How m(t) returns to 1 over the window: `constant` (f, then 1), `linear` "
            "(f + (1-f) t/D) or `cosine` (f + (1-f)(1-cos(pi t/D))/2)."
        },
    )
    qk_delay_targets: str = field(
        default="q,k",
        metadata={
            "help": "Projections delayed, comma-separated among q, k, v (`v` is for control runs)."
        },
    )
    qk_delay_rules: str | None = field(
        default=None,
        metadata={
            "help": "A YAML file of general multiplier rules (a `rules:` list; see "
            "hf_qkdelay.rules). When given, it replaces the five qk_delay_* flags above."
        },
    )

    def __post_init__(self):
        self.qk_delay_layers = str(self.qk_delay_layers).strip()
        if self.qk_delay_schedule not in SCHEDULE_KINDS:
            raise ValueError(
                f"`qk_delay_schedule`={self.qk_delay_schedule!r} is not a schedule; accepted: "
                f"{', '.join(SCHEDULE_KINDS)}."
            )
        # Checks the factor and the window with the messages users see.
        self.schedule()
        targets = self.targets
        if (
            not targets
            or any(t not in PROJECTIONS for t in targets)
            or len(set(targets)) != len(targets)
        ):
            raise ValueError(
                f"`qk_delay_targets`={self.qk_delay_targets!r} is not accepted; give distinct "
                f"projections among {', '.join(PROJECTIONS)}, comma-separated (default `q,k`)."
            )
        # The layer spec's syntax is checked now; its indices once the model is known.
        parse_layer_spec(self.qk_delay_layers, None)
        if self.qk_delay_rules is not None:
            defaults = {f.name: f.default for f in fields(self)}
            changed = [name for name in RULE_FLAGS if getattr(self, name) != defaults[name]]
            if changed:
                raise ValueError(
                    f"`qk_delay_rules`={self.qk_delay_rules!r} replaces the flags "
                    f"{', '.join(f'`{n}`' for n in changed)}, which were also given; put those "
                    "settings in the rules file, or drop `qk_delay_rules`."
                )
            self.to_rules()  # a missing file, bad YAML or an unknown key fails now

    def check_layers(self, num_layers: int) -> None:
        """Check every layer spec against a model of `num_layers` decoder layers."""
        for rule in self.to_rules():
            if rule.layers is not None:
                parse_layer_spec(rule.layers, num_layers, argument=rule.layers_argument)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in str(self.qk_delay_targets).split(",") if t.strip())

    @property
    def enabled(self) -> bool:
        if self.qk_delay_rules is not None:
            return True
        return self.qk_delay_layers.lower() != "none" and not self.schedule().is_identity

    def schedule(self) -> MultiplierSchedule:
        return MultiplierSchedule(
            kind=self.qk_delay_schedule, factor=self.qk_delay_factor, steps=self.qk_delay_steps
        )

    def to_rules(self) -> list[MultiplierRule]:
        """The rules these arguments describe; an empty list when the delay is off."""
        if self.qk_delay_rules is not None:
            return load_rules(self.qk_delay_rules)
        if self.qk_delay_layers.lower() == "none":
            return []
        return [
            MultiplierRule(
                name=QK_DELAY_RULE,
                schedule=self.schedule(),
                layers=self.qk_delay_layers,
                projections=self.targets,
            )
        ]

    def to_dict(self) -> dict:
        return asdict(self)

    def run_settings(self) -> dict:
        """What the delay does, in one canonical form, for results files and run grouping.

        Every way of switching the delay off (`layers=none`, `factor=1`, `steps=0`) gives
        the same settings; with a rules file, the rules' names and a hash of their content
        stand in for the five flags, so runs with different rules never share a group.
        """
        if self.qk_delay_rules is not None:
            rules = [rule_to_dict(rule) for rule in self.to_rules()]
            digest = hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:8]
            names = ",".join(rule["name"] for rule in rules)
            return {**dict.fromkeys(RULE_FLAGS), "qk_delay_rules": f"{names}@{digest}"}
        if not self.enabled:
            off = {"qk_delay_layers": "none", "qk_delay_factor": 1.0, "qk_delay_steps": 0}
            return {
                **off,
                "qk_delay_schedule": "constant",
                "qk_delay_targets": "q,k",
                "qk_delay_rules": None,
            }
        settings = {name: getattr(self, name) for name in RULE_FLAGS}
        steps = float(self.qk_delay_steps)
        settings["qk_delay_steps"] = int(steps) if steps >= 1 else steps
        settings["qk_delay_targets"] = ",".join(self.targets)
        return {**settings, "qk_delay_rules": None}
