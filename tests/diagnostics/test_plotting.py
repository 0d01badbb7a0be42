"""`hf-qkdelay plot` on real short runs: heatmaps for one run, comparisons for two."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hf_qkdelay.cli import main
from hf_qkdelay.diagnostics import LAYER_QUANTITIES
from hf_qkdelay.diagnostics.plotting import (
    build_comparison_figure,
    build_heatmap_figure,
    choose_scale,
    plot_runs,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 2_000, path


@pytest.mark.slow
def test_plot_one_run_draws_a_heatmap_per_quantity(diagnostics_runs, tmp_path, capsys):
    run = Path(diagnostics_runs["on"].args.output_dir)
    assert main(["plot", str(run), "--out", str(tmp_path / "one")]) == 0
    written = sorted((tmp_path / "one").glob("*.png"))
    assert [p.name for p in written] == sorted(f"on__{q}__heatmap.png" for q in LAYER_QUANTITIES)
    for path in written:
        assert_png(path)
    assert f"{len(written)} figures written" in capsys.readouterr().out


@pytest.mark.slow
def test_plot_two_runs_draws_per_layer_comparisons(diagnostics_runs, tmp_path):
    runs = [diagnostics_runs[name].args.output_dir for name in ("on", "on_fast")]
    out = tmp_path / "two"
    assert main(["plot", *runs, "--out", str(out), "--quantities", "attn_entropy,cka_drift"]) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == sorted(
        [
            "compare__attn_entropy.png",
            "compare__cka_drift.png",
            "compare__probe_loss.png",
            "on__attn_entropy__heatmap.png",
            "on__cka_drift__heatmap.png",
            "on_fast__attn_entropy__heatmap.png",
            "on_fast__cka_drift__heatmap.png",
        ]
    )
    for name in names:
        assert_png(out / name)


def synthetic_records(num_layers: int = 4, num_probes: int = 5, offset: float = 0.0) -> list[dict]:
    """Records where layer 0's FFN write energy is ~1500 and the others' about 1 (as reported)."""
    records = []
    for probe in range(num_probes):
        layers = []
        for layer in range(num_layers):
            ffn = 1500.0 + probe if layer == 0 else 0.5 + 0.1 * layer + 0.05 * probe + offset
            layers.append(
                {
                    "layer": layer,
                    "ffn_write_energy": ffn,
                    "reliance_loss_rise": 0.02 * layer - 0.01 + 0.001 * probe,  # crosses 0
                    "attn_entropy": 0.6 + 0.01 * layer,
                }
            )
        records.append({"step": 10 * probe, "probe_loss": 5.0 - 0.1 * probe, "layers": layers})
    return records


def test_auto_scale_is_log_only_for_a_positive_quantity_spanning_decades():
    assert choose_scale(np.array([1500.0, 0.5, 0.9, np.nan])) == "log"
    assert choose_scale(np.array([1.0, 99.0])) == "linear"  # under two decades
    assert choose_scale(np.array([-0.01, 0.0, 5.0])) == "linear"  # not strictly positive
    assert choose_scale(np.array([1500.0, 0.5]), "linear") == "linear"
    assert choose_scale(np.array([1.0, 2.0]), "log") == "log"
    assert choose_scale(np.array([-1.0, 2.0]), "log") == "linear"  # log cannot show it
    with pytest.raises(ValueError, match="`--color_scale`='cubic'"):
        choose_scale(np.array([1.0]), "cubic")


def drawn_extent_inside(figure) -> bool:
    """Whether everything `figure` draws (labels included, after layout) lies on its canvas."""
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    box = figure.get_tightbbox(renderer).transformed(figure.dpi_scale_trans)  # pixels
    width, height = figure.canvas.get_width_height()
    return box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1


@pytest.mark.parametrize("quantity", ["ffn_write_energy", "reliance_loss_rise", "attn_entropy"])
def test_heatmap_labels_stay_inside_and_state_the_scale(quantity):
    figure = build_heatmap_figure(synthetic_records(), "a_rather_long_run_name", quantity)
    assert drawn_extent_inside(figure)
    colorbar_label = figure.axes[1].get_ylabel()
    expected = "log" if quantity == "ffn_write_energy" else "linear"
    assert colorbar_label.endswith(f"\n[{expected} scale]")
    assert figure.axes[0].images[0].norm.__class__.__name__ == (
        "LogNorm" if expected == "log" else "Normalize"
    )
    linear = build_heatmap_figure(synthetic_records(), "run", quantity, color_scale="linear")
    assert linear.axes[1].get_ylabel().endswith("[linear scale]")


def test_comparison_curves_get_the_same_scale_choice_per_panel():
    runs = {"baseline": synthetic_records(), "delay": synthetic_records(offset=0.2)}
    figure = build_comparison_figure(runs, "ffn_write_energy")
    assert drawn_extent_inside(figure)
    # Each panel spans well under two decades: linear, and the title says so.
    assert [axes.get_title() for axes in figure.axes] == [
        f"layer {layer} [linear y]" for layer in range(4)
    ]
    figure = build_comparison_figure(runs, "ffn_write_energy", color_scale="log")
    assert {axes.get_yscale() for axes in figure.axes} == {"log"}
    assert figure.axes[0].get_title() == "layer 0 [log y]"
    # A layer whose curves span three decades is drawn on a log axis by `auto`.
    spread = synthetic_records()
    spread[-1]["layers"][1]["ffn_write_energy"] = 900.0
    figure = build_comparison_figure(
        {"one": spread, "two": synthetic_records()}, "ffn_write_energy"
    )
    assert [axes.get_yscale() for axes in figure.axes] == ["linear", "log", "linear", "linear"]
    # Log cannot show a quantity crossing zero: linear, whatever was asked.
    figure = build_comparison_figure(runs, "reliance_loss_rise", color_scale="log")
    assert {axes.get_yscale() for axes in figure.axes} == {"linear"}


def test_plot_writes_whole_figures_for_synthetic_runs(tmp_path):
    # Two runs, so both kinds of figure are written; the colorbar label of a heatmap used to
    # be cut at the right edge of the PNG.
    runs = []
    for name, offset in (("base", 0.0), ("delay", 0.2)):
        folder = tmp_path / name
        folder.mkdir()
        lines = [json.dumps(r) for r in synthetic_records(offset=offset)]
        (folder / "qk_diagnostics.jsonl").write_text("\n".join(lines) + "\n")
        runs.append(folder)
    quantities = ("ffn_write_energy", "reliance_loss_rise")
    written = plot_runs(runs, tmp_path / "out", quantities, color_scale="auto")
    assert sorted(p.name for p in written) == sorted(
        [
            "base__ffn_write_energy__heatmap.png",
            "base__reliance_loss_rise__heatmap.png",
            "delay__ffn_write_energy__heatmap.png",
            "delay__reliance_loss_rise__heatmap.png",
            "compare__probe_loss.png",
            "compare__ffn_write_energy.png",
            "compare__reliance_loss_rise.png",
        ]
    )
    for path in written:
        assert_png(path)
    with pytest.raises(ValueError, match="`--color_scale`='cubic'"):
        plot_runs(runs, tmp_path / "out", quantities, color_scale="cubic")


def test_plot_refuses_a_run_without_diagnostics_and_unknown_quantities(tmp_path, monkeypatch):
    # Errors reach the caller as exceptions when tracebacks are asked for (tests/test_cli.py
    # covers the one-line message printed otherwise).
    monkeypatch.setenv("HF_QKDELAY_TRACEBACK", "1")
    with pytest.raises(FileNotFoundError, match="qk_diagnostics.jsonl"):
        main(["plot", str(tmp_path), "--out", str(tmp_path / "out")])
    (tmp_path / "qk_diagnostics.jsonl").write_text('{"step": 0, "probe_loss": 1.0, "layers": []}\n')
    with pytest.raises(ValueError, match="`--quantities`"):
        main(["plot", str(tmp_path), "--out", str(tmp_path / "out"), "--quantities", "entropy"])
