"""Applying multiplier schedules to a torch optimizer, update by update.

The controller hooks `optimizer.step()`:

- before the step, each rule's multiplier `m(t)` for update `t` scales the learning rate of
  the parameter groups that hold the rule's whole parameters, and the governed slices of
  fused parameters (GPT-2's Q and K columns of `c_attn`) are copied aside;
- after the step, those learning rates are put back (so any scheduler reads its own values)
  and each governed slice is moved to `old + m * (new - old)`: exactly `m` times the update
  the optimizer made, which for an optimizer whose update is proportional to its learning
  rate is the update it would have made with learning rate `m * lr`.

The update count `t` is stored in the optimizer's own param groups (`multiplier_updates`),
so it is saved in and restored from the optimizer's state dict with the rest of a checkpoint.
A step that the optimizer skips (a mixed-precision overflow under a gradient scaler) never
calls `step()`, so it is not counted. Work per update touches the governed slices only.
"""

from __future__ import annotations

import json
import logging

import torch

from .rules import ResolvedRule, rule_to_dict
from .selection import ParamSlice

logger = logging.getLogger(__name__)

RULE_KEY = "multiplier_rule"  # param-group key: the rule whose schedule scales this group's lr
UPDATES_KEY = "multiplier_updates"  # param-group key: optimizer updates applied so far
RULES_KEY = "multiplier_rules"  # param-group key: the rules the count was made under (JSON)


class MultiplierController:
    """Drives the multipliers of `rules` on `optimizer`, whose groups carry `RULE_KEY`."""

    def __init__(self, optimizer: torch.optim.Optimizer, rules: list[ResolvedRule]):
        self.optimizer = optimizer
        self.rules = rules
        self.schedules = {entry.name: entry.rule.schedule for entry in rules}
        # Fused slices cannot have a group of their own: they are corrected after the step.
        self.slices: dict[str, list[ParamSlice]] = {
            entry.name: [s for s in entry.slices if not s.is_whole] for entry in rules
        }
        self.last_multipliers: dict[str, float] = {}
        self._saved_lrs: list[tuple[dict, object]] = []
        self._saved_slices: dict[int, torch.Tensor] = {}
        self._pending: dict[str, float] = {}
        self._checked_params = False
        self.rules_signature = json.dumps(
            [rule_to_dict(entry.rule) for entry in rules], sort_keys=True
        )
        for group in optimizer.param_groups:
            group.setdefault(UPDATES_KEY, 0)
            group[RULES_KEY] = self.rules_signature
        self._handles = [
            optimizer.register_step_pre_hook(self._before_step),
            optimizer.register_step_post_hook(self._after_step),
        ]

    # ---- the update count, kept in the optimizer's state dict --------------------------------

    @property
    def updates(self) -> int:
        """Optimizer updates applied so far (the index `t` of the next one)."""
        return int(self.optimizer.param_groups[0].get(UPDATES_KEY, 0))

    def multipliers(self, update_index: int | None = None) -> dict[str, float]:
        """Each rule's multiplier for update `update_index` (default: the next one)."""
        t = self.updates if update_index is None else update_index
        return {name: schedule.value(t) for name, schedule in self.schedules.items()}

    def resolve(self, total_updates: int | None) -> None:
        """Turn windows given as a fraction of training into numbers of updates."""
        # From the rules' own schedules, so that resolving again (a second `train()` with
        # another length) starts from the fractions that were asked for.
        self.schedules = {
            entry.name: entry.rule.schedule.resolve(total_updates) for entry in self.rules
        }

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    # ---- the hooks -----------------------------------------------------------------------------

    def _before_step(self, optimizer, args, kwargs) -> None:
        if not self._checked_params:
            self._check_params_are_optimized()
            self._check_resumed_rules()
        self._pending = {name: m for name, m in self.multipliers().items() if m != 1.0}
        for group in self.optimizer.param_groups:
            multiplier = self._pending.get(group.get(RULE_KEY))
            if multiplier is not None:
                self._saved_lrs.append((group, group["lr"]))
                group["lr"] = group["lr"] * multiplier
        for name in self._pending:
            for piece in self.slices[name]:
                saved = self._saved_slices.get(id(piece))
                if saved is None:
                    saved = self._saved_slices[id(piece)] = torch.empty_like(piece.view())
                saved.copy_(piece.view())

    @torch.no_grad()
    def _after_step(self, optimizer, args, kwargs) -> None:
        for group, lr in self._saved_lrs:
            group["lr"] = lr
        self._saved_lrs.clear()
        for name, multiplier in self._pending.items():
            for piece in self.slices[name]:
                saved = self._saved_slices[id(piece)]
                # saved + m * (new - saved): m times the update the optimizer just made.
                saved.lerp_(piece.view(), multiplier)
                piece.view().copy_(saved)
        self.last_multipliers = {name: self._pending.get(name, 1.0) for name in self.schedules}
        self._pending = {}
        updates = self.updates + 1
        for group in self.optimizer.param_groups:
            group[UPDATES_KEY] = updates

    def _check_resumed_rules(self) -> None:
        """Warn when a loaded optimizer state was counted under other rules (a resume with
        changed settings): the count goes on, but the run mixes two delays."""
        saved = self.optimizer.param_groups[0].get(RULES_KEY)
        if saved is not None and saved != self.rules_signature and self.updates > 0:
            logger.warning(
                "resuming after %d updates made under other multiplier rules (%s); they now "
                "follow %s, so this run mixes two settings of the delay.",
                self.updates,
                saved,
                self.rules_signature,
            )
        for group in self.optimizer.param_groups:
            group[RULES_KEY] = self.rules_signature

    def _check_params_are_optimized(self) -> None:
        """Fused slices are corrected in place: the optimizer must update those very tensors."""
        optimized = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        for name, pieces in self.slices.items():
            for piece in pieces:
                if id(piece.param) not in optimized:
                    raise RuntimeError(
                        f"rule `{name}` governs `{piece.describe()}`, a slice of a fused parameter, "
                        "but the optimizer does not update that parameter tensor itself (DeepSpeed "
                        "ZeRO and FSDP flatten or shard it). Fused-slice rules need whole, "
                        "unsharded parameters (one device or DDP); rules on separate Q/K "
                        "projections act through their group's learning rate instead."
                    )
        self._checked_params = True
