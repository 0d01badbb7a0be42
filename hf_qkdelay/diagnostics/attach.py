"""Wiring the diagnostics into a Trainer: the probe batch and the callback."""

from __future__ import annotations

import torch

from .arguments import QKDiagnosticsArguments
from .callback import QKDiagnosticsCallback


def build_probe_batch(
    dataset, num_sequences: int, length: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first `num_sequences` rows of a tokenised dataset as `(input_ids, attention_mask)`.

    Rows need `input_ids` and may have `attention_mask`; `length` > 0 truncates each row.
    Rows of unequal length are right-padded (with id 0, masked out). The mask is None when no
    token is padding.
    """
    if len(dataset) < num_sequences:
        raise ValueError(
            f"`qk_diagnostics_probe_sequences`={num_sequences} exceeds the {len(dataset)} rows of "
            "the held-out set; lower it or give a larger evaluation set."
        )
    rows_ids, rows_mask = [], []
    for index in range(num_sequences):
        row = dataset[index]
        ids = list(row["input_ids"])
        mask = list(row["attention_mask"]) if "attention_mask" in row else [1] * len(ids)
        if length:
            ids, mask = ids[:length], mask[:length]
        rows_ids.append(ids)
        rows_mask.append(mask)
    width = max(len(ids) for ids in rows_ids)
    input_ids = torch.zeros(num_sequences, width, dtype=torch.long)
    attention_mask = torch.zeros(num_sequences, width, dtype=torch.long)
    for index, (ids, mask) in enumerate(zip(rows_ids, rows_mask)):
        input_ids[index, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[index, : len(mask)] = torch.tensor(mask, dtype=torch.long)
    return input_ids, (None if bool(attention_mask.all()) else attention_mask)


def attach_qk_diagnostics(
    trainer, diagnostics_args: QKDiagnosticsArguments, probe_dataset=None
) -> QKDiagnosticsCallback | None:
    """Add a `QKDiagnosticsCallback` to `trainer` that logs through it; None when switched off.

    The probe batch is taken from `probe_dataset`, by default the Trainer's `eval_dataset`
    (held-out text, never the training data). Call before `trainer.train()`.
    """
    if not diagnostics_args.enabled:
        return None
    dataset = probe_dataset if probe_dataset is not None else trainer.eval_dataset
    if dataset is None or isinstance(dataset, dict):
        raise ValueError(
            "`qk_diagnostics_interval_steps` needs held-out text for its probe batch: give the "
            "Trainer one `eval_dataset` or pass `probe_dataset` to `attach_qk_diagnostics`."
        )
    input_ids, attention_mask = build_probe_batch(
        dataset,
        diagnostics_args.qk_diagnostics_probe_sequences,
        diagnostics_args.qk_diagnostics_probe_length,
    )
    callback = QKDiagnosticsCallback(
        input_ids,
        diagnostics_args.qk_diagnostics_interval_steps,
        output_dir=trainer.args.output_dir,
        probe_attention_mask=attention_mask,
        measure_reliance=diagnostics_args.qk_diagnostics_reliance,
    )
    return callback.attach(trainer)
