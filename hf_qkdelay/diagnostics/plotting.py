"""Pictures of `qk_diagnostics.jsonl`: layer-by-step heatmaps and per-layer run comparisons.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no display needed).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .callback import JSONL_NAME, LAYER_QUANTITIES

# Axis labels, with units, for each quantity.
QUANTITY_LABELS = {
    "attn_entropy": "attention entropy / log(#keys)",
    "attn_max_prob": "max attention probability",
    "logit_max": "max attention logit q.k/sqrt(d)",
    "logit_std": "std of attention logits",
    "q_weight_norm": "||W_Q|| (Frobenius)",
    "k_weight_norm": "||W_K|| (Frobenius)",
    "q_weight_rel_change": "||dW_Q|| / ||W_Q|| since previous probe",
    "k_weight_rel_change": "||dW_K|| / ||W_K|| since previous probe",
    "resid_norm": "residual norm entering the layer",
    "attn_write_energy": "attention write energy / stream energy",
    "ffn_write_energy": "FFN write energy / stream energy",
    "cka_drift": "1 - linear CKA vs previous probe",
    "reliance_loss_rise": "probe loss rise with uniform attention (nats)",
}

LAYERS_PER_ROW = 4


def load_records(run: str | Path) -> list[dict]:
    """The probe records of a run folder (or of a `qk_diagnostics.jsonl` path), in step order."""
    path = Path(run)
    if path.is_dir():
        path = path / JSONL_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no diagnostics at {path}: give a run folder trained with "
            "`--qk_diagnostics_interval_steps` > 0, or the path of its qk_diagnostics.jsonl."
        )
    records = [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    if not records:
        raise ValueError(f"{path} holds no probe records.")
    return sorted(records, key=lambda record: record["step"])


def quantity_matrix(records: list[dict], quantity: str) -> tuple[np.ndarray, np.ndarray]:
    """`(steps, values)` with values `(num_layers, num_probes)`; NaN where a value is undefined."""
    steps = np.array([record["step"] for record in records])
    num_layers = len(records[0]["layers"])
    values = np.full((num_layers, len(records)), np.nan)
    for column, record in enumerate(records):
        for entry in record["layers"]:
            value = entry.get(quantity)
            if value is not None:
                values[entry["layer"], column] = value
    return steps, values


def plot_heatmaps(
    records: list[dict], run_name: str, out_dir: str | Path, quantities=LAYER_QUANTITIES
) -> list[Path]:
    """One PNG per quantity: layers (rows) by probe step (columns) for one run."""
    out_dir = Path(out_dir)
    written = []
    for quantity in quantities:
        steps, values = quantity_matrix(records, quantity)
        if np.isnan(values).all():
            continue  # never measured in this run (e.g. reliance switched off)
        figure = Figure(
            figsize=(max(4.0, 0.35 * len(steps) + 2.5), max(2.5, 0.35 * len(values) + 1.5))
        )
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        image = axes.imshow(
            np.ma.masked_invalid(values), aspect="auto", origin="lower", interpolation="nearest"
        )
        axes.set_xticks(
            range(len(steps)), [str(step) for step in steps], rotation=90 if len(steps) > 12 else 0
        )
        axes.set_yticks(range(len(values)))
        axes.set_xlabel("optimizer update")
        axes.set_ylabel("layer")
        axes.set_title(f"{run_name}: {quantity}")
        colorbar = figure.colorbar(image, ax=axes, label=QUANTITY_LABELS.get(quantity, quantity))
        colorbar.formatter.set_useOffset(False)  # show 0.9999 as such, not as an offset
        colorbar.update_ticks()
        figure.tight_layout()
        path = out_dir / f"{run_name}__{quantity}__heatmap.png"
        figure.savefig(path, dpi=100)
        written.append(path)
    return written


def plot_comparison(
    runs: dict[str, list[dict]], out_dir: str | Path, quantities=LAYER_QUANTITIES
) -> list[Path]:
    """One PNG per quantity: a panel per layer, each with one curve per run against the step."""
    out_dir = Path(out_dir)
    num_layers = {name: len(records[0]["layers"]) for name, records in runs.items()}
    layers = max(num_layers.values())
    written = [_plot_probe_loss(runs, out_dir)]
    for quantity in quantities:
        curves = {name: quantity_matrix(records, quantity) for name, records in runs.items()}
        if all(np.isnan(values).all() for _, values in curves.values()):
            continue
        columns = min(layers, LAYERS_PER_ROW)
        rows = math.ceil(layers / columns)
        figure = Figure(figsize=(3.2 * columns, 2.6 * rows + 0.6))
        FigureCanvasAgg(figure)
        panels = figure.subplots(rows, columns, squeeze=False, sharex=True)
        for layer in range(rows * columns):
            axes = panels[layer // columns][layer % columns]
            if layer >= layers:
                axes.set_visible(False)
                continue
            for name, (steps, values) in curves.items():
                if layer < len(values):
                    axes.plot(steps, values[layer], marker=".", label=name)
            axes.set_title(f"layer {layer}")
            axes.set_xlabel("optimizer update")
        panels[0][0].set_ylabel(QUANTITY_LABELS.get(quantity, quantity))
        panels[0][0].legend(fontsize="small")
        figure.suptitle(quantity)
        figure.tight_layout()
        path = out_dir / f"compare__{quantity}.png"
        figure.savefig(path, dpi=100)
        written.append(path)
    return written


def _plot_probe_loss(runs: dict[str, list[dict]], out_dir: Path) -> Path:
    figure = Figure(figsize=(5, 3.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, records in runs.items():
        axes.plot(
            [r["step"] for r in records], [r["probe_loss"] for r in records], marker=".", label=name
        )
    axes.set_xlabel("optimizer update")
    axes.set_ylabel("probe loss (nats per token)")
    axes.legend(fontsize="small")
    figure.tight_layout()
    path = out_dir / "compare__probe_loss.png"
    figure.savefig(path, dpi=100)
    return path


def plot_runs(
    runs: list[str | Path], out_dir: str | Path, quantities=LAYER_QUANTITIES
) -> list[Path]:
    """Heatmaps for every run and, for two runs or more, the per-layer comparison."""
    unknown = [q for q in quantities if q not in LAYER_QUANTITIES]
    if unknown:
        raise ValueError(
            f"`--quantities` names unknown quantities {unknown}; accepted: {', '.join(LAYER_QUANTITIES)}."
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = {}
    for run in runs:
        name = _run_name(run)
        while name in loaded:  # two runs with the same folder name
            name += "_"
        loaded[name] = load_records(run)
    written = []
    for name, records in loaded.items():
        written += plot_heatmaps(records, name, out_dir, quantities)
    if len(loaded) >= 2:
        written += plot_comparison(loaded, out_dir, quantities)
    return written


def _run_name(run: str | Path) -> str:
    path = Path(run).resolve()
    return (path.parent if path.is_file() else path).name
