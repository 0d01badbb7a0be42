"""`hf-qkdelay`: an error in what the user gave is one line on stderr, not a traceback."""

from __future__ import annotations

import pytest

from hf_qkdelay.cli import main


def test_a_bad_argument_prints_one_error_line_and_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HF_QKDELAY_TRACEBACK", raising=False)
    (tmp_path / "qk_diagnostics.jsonl").write_text('{"step": 0, "probe_loss": 1.0, "layers": []}\n')
    status = main(
        ["plot", str(tmp_path), "--out", str(tmp_path / "out"), "--quantities", "entropy"]
    )
    assert status == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("hf-qkdelay plot: error: `--quantities` names unknown quantities")
    assert "Traceback" not in captured.err


def test_a_missing_file_prints_one_error_line_and_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HF_QKDELAY_TRACEBACK", raising=False)
    assert main(["plot", str(tmp_path / "nothere"), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("hf-qkdelay plot: error: no diagnostics at ")


def test_the_traceback_variable_re_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_QKDELAY_TRACEBACK", "1")
    with pytest.raises(FileNotFoundError, match="qk_diagnostics.jsonl"):
        main(["plot", str(tmp_path), "--out", str(tmp_path / "out")])
