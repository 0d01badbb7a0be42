"""`hf-qkdelay plot RUN [RUN ...] --out DIR`: pictures of the per-layer diagnostics of runs."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="Plot qk_diagnostics.jsonl: layer-by-step heatmaps per run, per-layer curves across runs.",
        description=(
            "For each run, a layer-by-step heatmap of every diagnostic quantity; for two runs or "
            "more (e.g. baseline and delay), per-layer curves of the runs side by side. PNG files."
        ),
    )
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="Run folder holding qk_diagnostics.jsonl, or that file's path.",
    )
    parser.add_argument(
        "--out", required=True, help="Folder for the PNG files (created if missing)."
    )
    parser.add_argument(
        "--quantities",
        default=None,
        help="Comma-separated quantities to draw (default: all), e.g. attn_entropy,cka_drift.",
    )
    parser.add_argument(
        "--color_scale",
        default="auto",
        choices=["linear", "log", "auto"],
        help="Heatmap colours and curve y axes: linear, log, or auto (default): log when a "
        "quantity is positive and spans more than two decades, else linear. Each figure "
        "states the scale it uses.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Heavy imports (matplotlib, torch through the package) only when the command runs.
    from hf_qkdelay.diagnostics.plotting import LAYER_QUANTITIES, plot_runs

    quantities = LAYER_QUANTITIES
    if args.quantities:
        quantities = tuple(q.strip() for q in args.quantities.split(",") if q.strip())
    written = plot_runs(args.runs, args.out, quantities, color_scale=args.color_scale)
    for path in written:
        print(path)
    print(f"{len(written)} figures written to {args.out}")
    return 0
