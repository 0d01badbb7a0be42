"""Diagnostics of premature attention specialisation, measured per layer while training.

    from hf_qkdelay.diagnostics import QKDiagnosticsArguments, attach_qk_diagnostics
    trainer = Trainer(model=model, args=training_args, train_dataset=train, eval_dataset=held_out)
    attach_qk_diagnostics(trainer, QKDiagnosticsArguments(qk_diagnostics_interval_steps=100))
    trainer.train()  # writes <output_dir>/qk_diagnostics.jsonl and logs qk_diag/...

The modules: `metrics` (entropy, logit statistics, CKA), `probe` (the recording forward),
`callback` (the Trainer callback), `plotting` (pictures of the jsonl records).
"""

from .arguments import SUGGESTED_INTERVAL_STEPS, QKDiagnosticsArguments
from .attach import attach_qk_diagnostics, build_probe_batch
from .callback import JSONL_NAME, LAYER_QUANTITIES, QKDiagnosticsCallback, log_metrics

__all__ = [
    "JSONL_NAME",
    "LAYER_QUANTITIES",
    "SUGGESTED_INTERVAL_STEPS",
    "QKDiagnosticsArguments",
    "QKDiagnosticsCallback",
    "attach_qk_diagnostics",
    "build_probe_batch",
    "log_metrics",
]
