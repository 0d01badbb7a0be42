"""recipes/pretrain.py end to end on real text, its YAML + flags, and its refusals of bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datasets import Dataset

from hf_qkdelay.recipe_utils import set_defaults_from_config
from tests.conftest import REPO_ROOT, read_slice

RECIPE = REPO_ROOT / "recipes" / "pretrain.py"
VOCAB_SIZE = 512

# A 2-layer GPT-2 small enough to learn something in ~200 updates on two CPU cores.
TINY_GPT2 = (
    "n_layer=2,n_embd=64,n_head=2,n_positions=64,resid_pdrop=0.0,embd_pdrop=0.0,attn_pdrop=0.0"
)


@pytest.fixture(scope="module")
def recipe():
    """The recipe as a module, so that bad input can be tried without a subprocess."""
    spec = importlib.util.spec_from_file_location("pretrain_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Tiny Shakespeare as two .txt training files and a .jsonl one; validation as .parquet."""
    folder = tmp_path_factory.mktemp("corpus")
    train_text = read_slice("tinyshakespeare.txt", 160_000)
    validation_lines = read_slice("tinyshakespeare.txt", 30_000, offset=900_000).splitlines(
        keepends=True
    )
    half = len(train_text) // 2
    (folder / "part1.txt").write_text(train_text[:half], encoding="utf-8")
    (folder / "part2.txt").write_text(train_text[half : half + half // 2], encoding="utf-8")
    with open(folder / "part3.jsonl", "w", encoding="utf-8") as handle:
        for line in train_text[half + half // 2 :].splitlines(keepends=True):
            handle.write(json.dumps({"text": line}) + "\n")
    Dataset.from_dict({"text": validation_lines}).to_parquet(str(folder / "validation.parquet"))
    return folder


def base_config(corpus: Path, output_dir: Path) -> dict:
    return {
        "model_type": "gpt2",
        "config_overrides": TINY_GPT2,
        "tokenizer_vocab_size": VOCAB_SIZE,
        "train_file": [
            str(corpus / "part1.txt"),
            str(corpus / "part2.txt"),
            str(corpus / "part3.jsonl"),
        ],
        "validation_file": str(corpus / "validation.parquet"),
        "block_size": 64,
        "max_eval_samples": 64,
        "max_steps": 1000,
        "per_device_train_batch_size": 8,
        "learning_rate": 1.0e-4,
        "lr_scheduler_type": "constant",
        "qk_delay_factor": 0.1,
        "qk_delay_steps": 20,
        "output_dir": str(output_dir),
        "save_strategy": "no",
        "logging_steps": 20,
        "use_cpu": True,
        "dataloader_pin_memory": False,
        "report_to": "none",
        "seed": 3,
    }


def write_config(path: Path, values: dict) -> str:
    path.write_text(yaml.safe_dump(values))
    return str(path)


@pytest.mark.slow
def test_recipe_end_to_end_on_real_text(corpus, tmp_path):
    output_dir = tmp_path / "run"
    config = write_config(tmp_path / "run.yaml", base_config(corpus, output_dir))

    # The flags after the YAML file override it: 200 updates at a usable learning rate.
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": str(REPO_ROOT),
    }
    completed = subprocess.run(
        [sys.executable, str(RECIPE), config, "--max_steps", "200", "--learning_rate", "3e-3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "trainable parameters" in completed.stdout

    # Weights, config and tokenizer, loadable as a pretrained model.
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "all_results.json",
    ):
        assert (output_dir / name).is_file(), name
    results = json.loads((output_dir / "all_results.json").read_text())

    # The scores: trained well below the perplexity of a uniform guess over the vocabulary.
    assert results["perplexity"] == pytest.approx(2.718281828459045 ** results["eval_loss"])
    assert results["perplexity"] < VOCAB_SIZE / 4

    # Tokens trained on: 200 updates x 8 blocks x 64 tokens.
    assert results["train_updates"] == 200
    assert results["train_tokens"] == 200 * 8 * 64
    assert results["seed"] == 3
    assert (results["qk_delay_factor"], results["qk_delay_steps"], results["qk_delay_layers"]) == (
        0.1,
        20,
        "upper",
    )

    # run_config: everything that defines the run, the overrides included, but no seed or folder.
    run_config = results["run_config"]
    assert "seed" not in run_config and "output_dir" not in run_config
    assert run_config["learning_rate"] == 3e-3 and run_config["max_steps"] == 200
    assert run_config["config_overrides"] == TINY_GPT2
    assert run_config["block_size"] == 64 and run_config["qk_delay_factor"] == 0.1
    assert len(run_config["train_file"]) == 3

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    assert model.config.vocab_size == len(tokenizer) == VOCAB_SIZE
    assert model.config.n_layer == 2


def test_yaml_and_flags_reach_every_argument_group(recipe, corpus, tmp_path):
    config = write_config(tmp_path / "run.yaml", base_config(corpus, tmp_path / "run"))
    parser = recipe.HfArgumentParser(recipe.ARGUMENT_GROUPS)
    model_args, data_args, training_args, qk_args, diagnostics_args, lm_eval_args = (
        recipe.parse_args_with_config(
            parser,
            [
                config,
                "--qk_delay_factor",
                "0.5",
                "--train_file",
                str(corpus / "part1.txt"),
                "--qk_diagnostics_interval_steps",
                "10",
                "--learning_rate",
                "2e-3",
            ],
        )
    )
    assert model_args.config_overrides == TINY_GPT2
    assert data_args.train_file == [str(corpus / "part1.txt")]
    assert data_args.validation_file == [str(corpus / "validation.parquet")]
    assert (training_args.learning_rate, training_args.max_steps) == (2e-3, 1000)
    assert (qk_args.qk_delay_factor, qk_args.qk_delay_steps) == (0.5, 20)
    assert diagnostics_args.qk_diagnostics_interval_steps == 10
    assert lm_eval_args.eval_tasks is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train_file": ["missing.txt"]}, r"`--train_file`='missing.txt' does not exist"),
        (
            {"validation_file": ["valid.csv"]},
            r"`--validation_file`='valid.csv' has the extension '.csv'; accepted:",
        ),
        (
            {"block_size": 128},
            r"`--block_size`=128 is larger than the model's maximum positions \(64\)",
        ),
        ({"config_overrides": "n_layers=2"}, r"`--config_overrides`='n_layers=2'"),
        ({"model_type": "gpt5"}, r"`--model_type`='gpt5' is not a model type"),
        ({"qk_delay_factor": 1.5}, r"qk_delay_factor"),
        ({"text_column": "body"}, r"has no column 'body' \(set by `--text_column`\)"),
        ({"max_step": 10}, r"names arguments that do not exist: max_step"),
        # Found only once the model exists, still before the output folder is touched.
        ({"qk_delay_layers": "5-7"}, r"qk_delay_layers"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(recipe, corpus, tmp_path, change, message):
    output_dir = tmp_path / "run"
    output_dir.mkdir()
    (output_dir / "notes.txt").write_text("kept")
    values = {**base_config(corpus, output_dir), **change}
    config = write_config(tmp_path / "run.yaml", values)
    with pytest.raises(ValueError, match=message):
        recipe.main([config])
    assert sorted(p.name for p in output_dir.iterdir()) == ["notes.txt"]


def test_an_existing_run_is_never_overwritten(recipe, corpus, tmp_path):
    output_dir = tmp_path / "run"
    (output_dir / "checkpoint-50").mkdir(parents=True)
    (output_dir / "checkpoint-50" / "model.safetensors").write_bytes(b"weights")
    (output_dir / "all_results.json").write_text('{"eval_loss": 1.0}')
    config = write_config(tmp_path / "run.yaml", base_config(corpus, output_dir))
    with pytest.raises(
        ValueError,
        match=r"`--output_dir`=.* already holds a run \(checkpoint-50, all_results.json\)",
    ):
        recipe.main([config])
    assert (output_dir / "checkpoint-50" / "model.safetensors").read_bytes() == b"weights"
    assert (output_dir / "all_results.json").read_text() == '{"eval_loss": 1.0}'
    assert sorted(p.name for p in output_dir.iterdir()) == ["all_results.json", "checkpoint-50"]


@pytest.mark.parametrize(
    "config", sorted((REPO_ROOT / "recipes" / "configs").glob("*.yaml")), ids=lambda path: path.name
)
def test_shipped_configs_name_only_existing_arguments(recipe, config):
    parser = recipe.HfArgumentParser(recipe.ARGUMENT_GROUPS)
    set_defaults_from_config(parser, yaml.safe_load(config.read_text()), str(config))


def test_help_lists_every_argument_group(recipe, capsys):
    with pytest.raises(SystemExit) as exit_info:
        recipe.main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--model_type", "--train_file", "--learning_rate", "--qk_delay_factor"):
        assert flag in help_text
    for flag in ("--qk_diagnostics_interval_steps", "--eval_tasks"):
        assert flag in help_text


@pytest.mark.slow
def test_a_refused_folder_is_accepted_when_the_run_resumes(recipe, corpus, tmp_path):
    output_dir = tmp_path / "run"
    values = {**base_config(corpus, output_dir), "max_steps": 6, "save_strategy": "steps"}
    config = write_config(tmp_path / "run.yaml", {**values, "save_steps": 4, "max_eval_samples": 8})
    first = recipe.main([config])
    assert first["train_updates"] == 6 and (output_dir / "checkpoint-4").is_dir()

    # The same folder again: refused as a fresh run, continued as a resumed one.
    with pytest.raises(ValueError, match=r"already holds a run"):
        recipe.main([config, "--max_steps", "8"])
    resumed = recipe.main([config, "--max_steps", "8", "--resume_from_checkpoint", "true"])
    assert resumed["train_updates"] == 8
    assert resumed["train_tokens"] == 8 * 8 * 64
