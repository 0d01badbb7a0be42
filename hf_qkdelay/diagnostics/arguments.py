"""Command-line arguments of the diagnostics, usable with `HfArgumentParser`."""

from __future__ import annotations

from dataclasses import dataclass, field

# The interval used when the diagnostics are switched on without a value in mind: a probe
# every 100 updates costs under 5% of training time on the tiny preset (docs/diagnostics.md).
SUGGESTED_INTERVAL_STEPS = 100


@dataclass
class QKDiagnosticsArguments:
    """Per-layer attention and residual diagnostics on a fixed held-out probe batch."""

    qk_diagnostics_interval_steps: int = field(
        default=0,
        metadata={
            "help": "Probe every N optimizer updates (an integer >= 0) and once at the start of "
            f"training; 0 = diagnostics off. {SUGGESTED_INTERVAL_STEPS} keeps the cost under 5 percent "
            "on the tiny preset."
        },
    )
    qk_diagnostics_probe_sequences: int = field(
        default=8,
        metadata={
            "help": "Number of held-out sequences in the probe batch (an integer >= 1), taken "
            "from the start of the evaluation set; the same tokens at every probe."
        },
    )
    qk_diagnostics_probe_length: int = field(
        default=0,
        metadata={
            "help": "Tokens kept per probe sequence (an integer >= 0, at least 2 when set); "
            "0 = the whole sequence (the block size)."
        },
    )
    qk_diagnostics_reliance: bool = field(
        default=True,
        metadata={
            "help": "Measure each layer's reliance on its attention pattern (rise in probe loss, "
            "nats per token, when it is made uniform); costs one extra forward per layer."
        },
    )

    def __post_init__(self):
        for name in ("qk_diagnostics_interval_steps", "qk_diagnostics_probe_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"`{name}`={value!r} is not accepted; give an integer >= 0 (0 = off/whole)."
                )
        if self.qk_diagnostics_probe_length == 1:
            raise ValueError(
                "`qk_diagnostics_probe_length`=1 is not accepted: a probe needs at least 2 tokens "
                "per sequence (or 0 for the whole sequence)."
            )
        sequences = self.qk_diagnostics_probe_sequences
        if isinstance(sequences, bool) or not isinstance(sequences, int) or sequences < 1:
            raise ValueError(
                f"`qk_diagnostics_probe_sequences`={sequences!r} is not accepted; give an integer >= 1."
            )

    @property
    def enabled(self) -> bool:
        return self.qk_diagnostics_interval_steps > 0
