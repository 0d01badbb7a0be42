"""`hf-qkdelay eval MODEL`: a MODEL that cannot be loaded is named before the Hub is asked."""

from __future__ import annotations

import pytest

from hf_qkdelay.cli import main
from hf_qkdelay.evaluation.harness import check_model_location, evaluate_pretrained


@pytest.mark.parametrize(
    "model", ["/tmp/hf_qkdelay_nothere", "./runs/nothere", "~/nothere", "runs/quick/nothere"]
)
def test_a_missing_local_path_is_named(model):
    with pytest.raises(ValueError, match="looks like a local path but does not exist") as error:
        check_model_location(model)
    message = str(error.value)
    assert f"`MODEL`={model!r}" in message
    assert "a run folder holding config.json" in message and "`namespace/name`" in message


def test_a_folder_without_config_and_a_file_are_refused(tmp_path):
    with pytest.raises(ValueError, match="is a folder without config.json"):
        check_model_location(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_model_location(tmp_path / "model.safetensors")


def test_a_run_folder_and_hub_ids_pass(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    check_model_location(tmp_path)
    check_model_location("gpt2")
    check_model_location("EleutherAI/pythia-14m")


def test_eval_refuses_a_missing_folder_before_loading(tmp_path, capsys, monkeypatch):
    missing = str(tmp_path / "nothere")
    with pytest.raises(ValueError, match="does not exist"):
        evaluate_pretrained(missing, "offline", None)
    monkeypatch.delenv("HF_QKDELAY_TRACEBACK", raising=False)
    args = ["eval", missing, "--tasks", "offline", "--output_path", str(tmp_path / "r.json")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hf-qkdelay eval: error: `MODEL`={missing!r} looks like a local path")
    assert "Repo id" not in err
