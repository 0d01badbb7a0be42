"""`QKDiagnosticsCallback`: probe a fixed held-out batch every N updates and at the start.

Each probe writes one line to `qk_diagnostics.jsonl` in the output folder and logs the
per-layer averages through the Trainer under `qk_diag/<quantity>/layer_<i>`. The probe only
observes: it runs under `probe_mode`, which restores modes, attention implementation and RNG
state, so training with the callback is bit-identical to training without it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

import torch
from torch import nn
from transformers import TrainerCallback
from transformers.utils import logging

from ..selection import select_projections
from .metrics import linear_cka
from .probe import (
    HEAD_QUANTITIES,
    DecoderLayout,
    declares_parallel_residual,
    find_decoder_layout,
    probe_forward,
    probe_mode,
)

logger = logging.get_logger(__name__)

JSONL_NAME = "qk_diagnostics.jsonl"
LOG_PREFIX = "qk_diag"

# Every per-layer quantity, in the order they appear in a record.
LAYER_QUANTITIES = (
    *HEAD_QUANTITIES,
    "q_weight_norm",
    "k_weight_norm",
    "q_weight_rel_change",
    "k_weight_rel_change",
    "resid_norm",
    "attn_write_energy",
    "ffn_write_energy",
    "cka_drift",
    "reliance_loss_rise",
)


class QKDiagnosticsCallback(TrainerCallback):
    """Per-layer attention and residual diagnostics on a fixed probe batch.

    Args:
        probe_input_ids: `(B, T)` token ids of held-out text, the same at every probe.
        interval_steps: probe after every `interval_steps` optimizer updates (>= 1), and once
            when training begins.
        output_dir: folder for `qk_diagnostics.jsonl`; None uses the Trainer's `output_dir`.
        probe_attention_mask: `(B, T)`, 1 at tokens and 0 at padding; None means no padding.
        measure_reliance: also run one forward per layer with that layer's attention made
            uniform, to measure the loss rise (the costliest quantity: L extra forwards).
        trainer: the Trainer, so that metrics go through `Trainer.log` to every `report_to`
            integration; `attach_qk_diagnostics` sets it. Without it the metrics still reach
            `state.log_history` and the jsonl file, but not the integrations.
    """

    def __init__(
        self,
        probe_input_ids: torch.Tensor | Sequence[Sequence[int]],
        interval_steps: int,
        output_dir: str | None = None,
        probe_attention_mask: torch.Tensor | Sequence[Sequence[int]] | None = None,
        *,
        measure_reliance: bool = True,
        trainer=None,
    ):
        if (
            isinstance(interval_steps, bool)
            or not isinstance(interval_steps, int)
            or interval_steps < 1
        ):
            raise ValueError(
                f"`interval_steps`={interval_steps!r} is not a positive integer; give the number "
                "of optimizer updates between probes (>= 1), or add no callback to switch off."
            )
        self.probe_input_ids = torch.as_tensor(probe_input_ids, dtype=torch.long)
        if self.probe_input_ids.ndim != 2 or self.probe_input_ids.shape[1] < 2:
            raise ValueError(
                f"`probe_input_ids` has shape {tuple(self.probe_input_ids.shape)}; expected "
                "(num_sequences, sequence_length) with a length of at least 2 tokens."
            )
        self.probe_attention_mask = None
        if probe_attention_mask is not None:
            self.probe_attention_mask = torch.as_tensor(probe_attention_mask, dtype=torch.long)
            if self.probe_attention_mask.shape != self.probe_input_ids.shape:
                raise ValueError(
                    f"`probe_attention_mask` has shape {tuple(self.probe_attention_mask.shape)}; "
                    f"it must match `probe_input_ids` {tuple(self.probe_input_ids.shape)}."
                )
        self.interval_steps = interval_steps
        self.output_dir = output_dir
        self.measure_reliance = measure_reliance
        self.trainer = trainer

        # State carried from one probe to the next.
        self._layout: DecoderLayout | None = None
        self._projections: dict[tuple[int, str], list] | None = None
        self._previous_weights: dict[tuple[int, str], list[torch.Tensor]] = {}
        self._previous_outputs: list[torch.Tensor] | None = None
        self._warned_no_trainer = False

    def attach(self, trainer) -> QKDiagnosticsCallback:
        """Add this callback to `trainer` and log through it."""
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    # -- Trainer events ---------------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # Sharded parameters are not whole on any one rank, so the probe cannot read them.
        if getattr(args, "fsdp", None) or getattr(args, "deepspeed", None):
            raise ValueError(
                "`qk_diagnostics_interval_steps` is not supported with FSDP or DeepSpeed yet "
                "(the probe reads whole parameters on one rank); set it to 0."
            )
        # One rank probes and writes; the others would only duplicate the lines.
        if not state.is_world_process_zero:
            return
        self.output_dir = self.output_dir or args.output_dir
        # A fresh run starts a fresh file; a resumed run appends to the one it left.
        if state.global_step == 0 and self.output_dir:
            os.makedirs(self.output_dir, exist_ok=True)
            open(os.path.join(self.output_dir, JSONL_NAME), "w").close()
        self._probe_and_report(model, args, state, control)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # Only every `interval_steps` updates; step 0 was probed at train begin.
        if state.global_step % self.interval_steps != 0:
            return
        if not state.is_world_process_zero:
            return
        self._probe_and_report(model, args, state, control)

    # -- Probing ----------------------------------------------------------------------------

    def probe(self, model: nn.Module) -> dict:
        """Measure every quantity on the probe batch; returns the record without step/epoch."""
        if self._layout is None:
            self._layout = find_decoder_layout(model)
            _warn_if_parallel_residual(getattr(model, "config", None))
            self._projections = _group_projections(
                select_projections(model, layers="all", projections=("q", "k"))
            )
        layout = self._layout
        device = next(model.parameters()).device
        input_ids = self.probe_input_ids.to(device)
        attention_mask = (
            None if self.probe_attention_mask is None else self.probe_attention_mask.to(device)
        )

        # The forwards: one measuring everything, then one per layer with uniform attention.
        with probe_mode(model):
            base = probe_forward(model, input_ids, attention_mask, layout=layout)
            reliance = [None] * layout.num_layers
            if self.measure_reliance:
                for layer in range(layout.num_layers):
                    ablated = probe_forward(
                        model,
                        input_ids,
                        attention_mask,
                        layout=layout,
                        measure=False,
                        uniform_attention_layer=layer,
                    )
                    reliance[layer] = ablated.loss - base.loss

        # Representation drift against the previous probe.
        drift = [None] * layout.num_layers
        if self._previous_outputs is not None:
            drift = [
                1.0 - linear_cka(prev, cur)
                for prev, cur in zip(self._previous_outputs, base.layer_outputs)
            ]
        self._previous_outputs = base.layer_outputs

        # One entry per layer with the head averages, and the per-head values kept raw.
        weights = self._weight_statistics()
        layers = []
        for layer in range(layout.num_layers):
            heads = {name: base.heads[layer][name].tolist() for name in HEAD_QUANTITIES}
            entry = {"layer": layer}
            entry.update({name: _mean(values) for name, values in heads.items()})
            entry.update(weights[layer])
            entry.update(base.stream[layer])
            entry["cka_drift"] = drift[layer]
            entry["reliance_loss_rise"] = reliance[layer]
            entry["heads"] = heads
            layers.append({key: _finite_or_none(value) for key, value in entry.items()})
        num_tokens = input_ids.numel() if attention_mask is None else int(attention_mask.sum())
        return {"probe_loss": base.loss, "probe_tokens": num_tokens, "layers": layers}

    def _weight_statistics(self) -> list[dict[str, float | None]]:
        """Frobenius norm of each layer's Q and K (weight and bias) and its relative change."""
        statistics = [{} for _ in range(self._layout.num_layers)]
        for (layer, projection), slices in self._projections.items():
            current = [s.view().detach().float() for s in slices]
            norm = math.sqrt(sum(float(t.square().sum()) for t in current))
            previous = self._previous_weights.get((layer, projection))
            change = None
            if previous is not None:
                delta = math.sqrt(
                    sum(float((c - p).square().sum()) for c, p in zip(current, previous))
                )
                previous_norm = math.sqrt(sum(float(p.square().sum()) for p in previous))
                change = delta / previous_norm if previous_norm > 0 else None
            self._previous_weights[(layer, projection)] = [t.clone() for t in current]
            statistics[layer][f"{projection}_weight_norm"] = norm
            statistics[layer][f"{projection}_weight_rel_change"] = change
        return statistics

    def _probe_and_report(self, model, args, state, control) -> None:
        record = {"step": state.global_step, "epoch": state.epoch, **self.probe(model)}
        if self.output_dir:
            with open(os.path.join(self.output_dir, JSONL_NAME), "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        self._log(log_metrics(record), state, control)

    def _log(self, metrics: dict[str, float], state, control) -> None:
        if self.trainer is not None:
            # `Trainer.log` clears `should_log`, which may be set for this step's loss log.
            should_log = control.should_log
            self.trainer.log(metrics)
            control.should_log = should_log
            return
        if not self._warned_no_trainer:
            logger.warning(
                "QKDiagnosticsCallback has no Trainer: qk_diag/* metrics go to "
                "trainer.state.log_history and qk_diagnostics.jsonl but not to `report_to` "
                "integrations; use `attach_qk_diagnostics(trainer, ...)` or `callback.attach(trainer)`."
            )
            self._warned_no_trainer = True
        state.log_history.append({**metrics, "step": state.global_step})


def log_metrics(record: dict) -> dict[str, float]:
    """The flat `qk_diag/...` metrics of one jsonl record (per-layer head averages only)."""
    metrics = {f"{LOG_PREFIX}/probe_loss": record["probe_loss"]}
    for entry in record["layers"]:
        for name in LAYER_QUANTITIES:
            if entry.get(name) is not None:
                metrics[f"{LOG_PREFIX}/{name}/layer_{entry['layer']}"] = entry[name]
    return metrics


def _warn_if_parallel_residual(config) -> None:
    # Only a warning: every other quantity is unaffected, and the FFN ratio is still a
    # consistent measure across runs of one family; it just does not mean what it means for
    # sequential blocks.
    if not declares_parallel_residual(config):
        return
    logger.warning(
        "The model (%s) uses a parallel residual: attention and FFN both read the stream "
        "entering the layer, x, and write into it side by side. `ffn_write_energy` is still "
        "||f||^2 / ||x + a||^2, so it compares the FFN write with the stream entering the layer "
        "plus the attention write made beside it, not with the input the FFN read; compare it "
        "between runs of this family, not with sequential models (GPT-2, LLaMA).",
        getattr(config, "model_type", type(config).__name__),
    )


def _group_projections(slices) -> dict[tuple[int, str], list]:
    grouped: dict[tuple[int, str], list] = {}
    for piece in slices:
        grouped.setdefault((piece.layer, piece.projection), []).append(piece)
    return grouped


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _finite_or_none(value):
    """JSON has no NaN: an undefined quantity is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
