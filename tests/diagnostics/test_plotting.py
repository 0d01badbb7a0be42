"""`hf-qkdelay plot` on real short runs: heatmaps for one run, comparisons for two."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_qkdelay.cli import main
from hf_qkdelay.diagnostics import LAYER_QUANTITIES

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


def test_plot_refuses_a_run_without_diagnostics_and_unknown_quantities(tmp_path):
    with pytest.raises(FileNotFoundError, match="qk_diagnostics.jsonl"):
        main(["plot", str(tmp_path), "--out", str(tmp_path / "out")])
    (tmp_path / "qk_diagnostics.jsonl").write_text('{"step": 0, "probe_loss": 1.0, "layers": []}\n')
    with pytest.raises(ValueError, match="`--quantities`"):
        main(["plot", str(tmp_path), "--out", str(tmp_path / "out"), "--quantities", "entropy"])
