"""Learning-rate multiplier schedules: a factor below 1 that returns to 1 after a window.

A schedule maps the index `t` of an optimizer update (0-based, counting applied updates
only) to the multiplier `m(t)` applied to that update's learning rate. With start factor
`f` and a window of `D` updates:

- `constant`: m(t) = f                                  for t < D, then 1
- `linear`:   m(t) = f + (1 - f) * t / D                for t < D, then 1
- `cosine`:   m(t) = f + (1 - f) * (1 - cos(pi t / D)) / 2  for t < D, then 1
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULE_KINDS = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class MultiplierSchedule:
    """A learning-rate multiplier that starts at `factor` and is 1 from update `steps` on.

    `steps` is a number of optimizer updates; a value in (0, 1) is a fraction of the total
    number of updates (as `warmup_steps` is in transformers 5) and must be resolved with
    `resolve(total_updates)` before `value` is called. `steps=0` means no delay at all.
    """

    kind: str = "constant"
    factor: float = 0.1
    steps: float = 0.0

    def __post_init__(self):
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(
                f"`qk_delay_schedule`={self.kind!r} is not a schedule; accepted: "
                f"{', '.join(SCHEDULE_KINDS)}."
            )
        if isinstance(self.factor, bool) or not (0.0 <= float(self.factor) <= 1.0):
            raise ValueError(
                f"`qk_delay_factor`={self.factor!r} is outside [0, 1]: the multiplier slows "
                "the governed learning rate (1 = no delay, 0 = frozen during the window)."
            )
        steps = float(self.steps)
        if steps < 0 or math.isnan(steps) or math.isinf(steps):
            raise ValueError(
                f"`qk_delay_steps`={self.steps!r} is not a window: give a number of updates "
                "(an integer >= 1), a fraction of training in (0, 1), or 0 for no delay."
            )
        if steps >= 1 and steps == int(steps):
            # A window of whole updates is an int, however it was parsed (`10.0` from a flag).
            object.__setattr__(self, "steps", int(steps))
        if steps >= 1 and steps != int(steps):
            raise ValueError(
                f"`qk_delay_steps`={self.steps!r}: a window of 1 update or more must be a "
                "whole number of updates; give an integer, or a value below 1 for a fraction "
                "of training."
            )

    @property
    def is_fraction(self) -> bool:
        return 0.0 < float(self.steps) < 1.0

    @property
    def is_identity(self) -> bool:
        """True when the schedule never changes a learning rate."""
        return float(self.factor) == 1.0 or float(self.steps) == 0.0

    def resolve(self, total_updates: int) -> MultiplierSchedule:
        """The same schedule with a fractional window turned into a number of updates."""
        if not self.is_fraction:
            return self
        if total_updates is None or total_updates <= 0:
            raise ValueError(
                f"`qk_delay_steps`={self.steps} is a fraction of training, but the total "
                f"number of updates is {total_updates!r}; give `max_steps` (or a dataset of "
                "known length) or an absolute number of updates."
            )
        # At least one update is delayed when a positive fraction was asked for.
        steps = max(1, math.ceil(float(self.steps) * total_updates))
        return MultiplierSchedule(kind=self.kind, factor=self.factor, steps=steps)

    def value(self, update_index: int) -> float:
        """The multiplier for optimizer update `update_index` (0-based)."""
        if self.is_fraction:
            raise RuntimeError(
                f"the window `qk_delay_steps`={self.steps} is a fraction of training and was "
                "never resolved to a number of updates: call `resolve(total_updates)` first "
                "(the Trainer callback does this at the start of training)."
            )
        window = int(self.steps)
        if update_index >= window:
            return 1.0
        factor = float(self.factor)
        progress = update_index / window
        if self.kind == "constant":
            return factor
        if self.kind == "linear":
            return factor + (1.0 - factor) * progress
        return factor + (1.0 - factor) * (1.0 - math.cos(math.pi * progress)) / 2.0
