"""Pictures of `qk_diagnostics.jsonl`: layer-by-step heatmaps and per-layer run comparisons.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no display needed), with
constrained layout and a tight bounding box on save, so that long axis and colorbar labels
stay inside the image. Colours (heatmaps) and y axes (curves) are linear or logarithmic, as
`color_scale` asks; `auto` picks log for a positive quantity spanning more than two decades
(one layer's FFN write energy can be a thousand times the others'), and each figure says
which scale it uses.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from .callback import JSONL_NAME, LAYER_QUANTITIES

logger = logging.getLogger(__name__)

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

COLOR_SCALES = ("linear", "log", "auto")
# `auto` draws a strictly positive quantity on a log scale when max / min exceeds this.
AUTO_LOG_MIN_RATIO = 100.0  # two decades


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


def choose_scale(values: np.ndarray, color_scale: str = "auto", quantity: str = "") -> str:
    """`linear` or `log` for `values` (NaN ignored), as `color_scale` asks.

    `auto` gives log when every value is positive and the largest is more than
    `AUTO_LOG_MIN_RATIO` times the smallest, else linear. `log` on a quantity with a value at
    or below zero falls back to linear (with a warning): a log scale cannot show it.
    """
    _check_color_scale(color_scale)
    finite = values[np.isfinite(values)]
    positive = finite.size > 0 and bool((finite > 0).all())
    if color_scale == "linear":
        return "linear"
    if color_scale == "log":
        if positive:
            return "log"
        logger.warning(
            "`--color_scale log`: %s has values <= 0, which a log scale cannot show; drawn linear.",
            quantity or "a quantity",
        )
        return "linear"
    if positive and finite.max() > AUTO_LOG_MIN_RATIO * finite.min():
        return "log"
    return "linear"


def build_heatmap_figure(
    records: list[dict], run_name: str, quantity: str, color_scale: str = "auto"
) -> Figure | None:
    """Layers (rows) by probe step (columns) for one quantity of one run; None if never measured."""
    steps, values = quantity_matrix(records, quantity)
    if np.isnan(values).all():
        return None  # never measured in this run (e.g. reliance switched off)
    scale = choose_scale(values, color_scale, quantity)
    # At least 3.5 inches high, so that the vertical colorbar label fits along the bar.
    figure = Figure(
        figsize=(max(5.0, 0.35 * len(steps) + 3.0), max(3.5, 0.35 * len(values) + 1.5)),
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    finite = values[np.isfinite(values)]
    norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if scale == "log" else None
    image = axes.imshow(
        np.ma.masked_invalid(values),
        aspect="auto",
        origin="lower",
        interpolation="nearest",
        norm=norm,
    )
    axes.set_xticks(
        range(len(steps)), [str(step) for step in steps], rotation=90 if len(steps) > 12 else 0
    )
    axes.set_yticks(range(len(values)))
    axes.set_xlabel("optimizer update")
    axes.set_ylabel("layer")
    axes.set_title(f"{run_name}: {quantity}")
    label = f"{QUANTITY_LABELS.get(quantity, quantity)}\n[{scale} scale]"
    colorbar = figure.colorbar(image, ax=axes, label=label)
    if scale == "linear":
        colorbar.formatter.set_useOffset(False)  # show 0.9999 as such, not as an offset
        colorbar.update_ticks()
    return figure


def plot_heatmaps(
    records: list[dict],
    run_name: str,
    out_dir: str | Path,
    quantities=LAYER_QUANTITIES,
    color_scale: str = "auto",
) -> list[Path]:
    """One PNG per quantity: layers (rows) by probe step (columns) for one run."""
    out_dir = Path(out_dir)
    written = []
    for quantity in quantities:
        figure = build_heatmap_figure(records, run_name, quantity, color_scale)
        if figure is None:
            continue
        path = out_dir / f"{run_name}__{quantity}__heatmap.png"
        _save(figure, path)
        written.append(path)
    return written


def build_comparison_figure(
    runs: dict[str, list[dict]], quantity: str, color_scale: str = "auto"
) -> Figure | None:
    """A panel per layer, each with one curve per run against the step; None if never measured.

    Panels have their own y range, so each gets its own scale (for `auto`, from the values of
    every run at that layer), named in the panel's title.
    """
    curves = {name: quantity_matrix(records, quantity) for name, records in runs.items()}
    if all(np.isnan(values).all() for _, values in curves.values()):
        return None
    if color_scale == "log":
        # One check over every panel, so that a quantity log cannot show warns once.
        pooled = np.concatenate([values.ravel() for _, values in curves.values()])
        color_scale = choose_scale(pooled, "log", quantity)
    layers = max(len(records[0]["layers"]) for records in runs.values())
    columns = min(layers, LAYERS_PER_ROW)
    rows = math.ceil(layers / columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(rows, columns, squeeze=False, sharex=True)
    for layer in range(rows * columns):
        axes = panels[layer // columns][layer % columns]
        if layer >= layers:
            axes.set_visible(False)
            continue
        at_layer = [values[layer] for _, values in curves.values() if layer < len(values)]
        scale = choose_scale(np.concatenate(at_layer), color_scale, quantity)
        for name, (steps, values) in curves.items():
            if layer < len(values):
                axes.plot(steps, values[layer], marker=".", label=name)
        axes.set_yscale(scale)
        axes.set_title(f"layer {layer} [{scale} y]")
        axes.set_xlabel("optimizer update")
    panels[0][0].set_ylabel(QUANTITY_LABELS.get(quantity, quantity))
    panels[0][0].legend(fontsize="small")
    figure.suptitle(quantity)
    return figure


def plot_comparison(
    runs: dict[str, list[dict]],
    out_dir: str | Path,
    quantities=LAYER_QUANTITIES,
    color_scale: str = "auto",
) -> list[Path]:
    """One PNG per quantity: a panel per layer, each with one curve per run against the step."""
    out_dir = Path(out_dir)
    written = [_plot_probe_loss(runs, out_dir, color_scale)]
    for quantity in quantities:
        figure = build_comparison_figure(runs, quantity, color_scale)
        if figure is None:
            continue
        path = out_dir / f"compare__{quantity}.png"
        _save(figure, path)
        written.append(path)
    return written


def _plot_probe_loss(runs: dict[str, list[dict]], out_dir: Path, color_scale: str) -> Path:
    figure = Figure(figsize=(5, 3.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    losses = {name: [r["probe_loss"] for r in records] for name, records in runs.items()}
    for name, records in runs.items():
        axes.plot([r["step"] for r in records], losses[name], marker=".", label=name)
    pooled = np.array([loss for values in losses.values() for loss in values], dtype=float)
    scale = choose_scale(pooled, color_scale, "probe_loss")
    axes.set_yscale(scale)
    axes.set_xlabel("optimizer update")
    axes.set_ylabel(f"probe loss (nats per token) [{scale} scale]")
    axes.legend(fontsize="small")
    path = out_dir / "compare__probe_loss.png"
    _save(figure, path)
    return path


def _check_color_scale(color_scale: str) -> None:
    if color_scale not in COLOR_SCALES:
        raise ValueError(
            f"`--color_scale`={color_scale!r} is not one of {', '.join(COLOR_SCALES)}."
        )


def _save(figure: Figure, path: Path) -> None:
    # A tight bounding box as well as constrained layout: nothing drawn is cut at the edge.
    figure.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.1)


def plot_runs(
    runs: list[str | Path],
    out_dir: str | Path,
    quantities=LAYER_QUANTITIES,
    color_scale: str = "auto",
) -> list[Path]:
    """Heatmaps for every run and, for two runs or more, the per-layer comparison."""
    _check_color_scale(color_scale)
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
        written += plot_heatmaps(records, name, out_dir, quantities, color_scale)
    if len(loaded) >= 2:
        written += plot_comparison(loaded, out_dir, quantities, color_scale)
    return written


def _run_name(run: str | Path) -> str:
    path = Path(run).resolve()
    return (path.parent if path.is_file() else path).name
