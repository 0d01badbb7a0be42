"""hf_qkdelay.recipe_utils: YAML + flags, the output-folder guard, run_config and results."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pytest
from transformers import HfArgumentParser, TrainingArguments

from hf_qkdelay.recipe_utils import (
    build_run_config,
    check_output_dir,
    parse_args_with_config,
    perplexity,
    resume_target,
    write_all_results,
)


@dataclass
class ToyArguments:
    name: str = field(metadata={"help": "required: no default"})
    files: list[str] | None = field(default=None, metadata={"help": "one or more"})
    sizes: list[int] = field(default_factory=lambda: [1], metadata={"help": "ints"})
    rate: float = field(default=0.1, metadata={"help": "a float"})
    steps: int = field(default=10, metadata={"help": "an int"})
    shuffle: bool = field(default=True, metadata={"help": "a bool"})
    seed: int = field(default=0, metadata={"help": "not run-defining"})


def write_yaml(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_values_become_defaults_and_flags_override(tmp_path):
    config = write_yaml(
        tmp_path,
        "name: from-yaml\nfiles: [a.txt, b.txt]\nrate: 3e-4\nsteps: 5\nshuffle: false\nsizes: ['2', 3]\n",
    )
    (args,) = parse_args_with_config(HfArgumentParser(ToyArguments), [config])
    # `3e-4` is a string to YAML 1.1; the float type of the flag converts it.
    assert args == ToyArguments(
        name="from-yaml", files=["a.txt", "b.txt"], rate=3e-4, steps=5, shuffle=False, sizes=[2, 3]
    )

    (args,) = parse_args_with_config(
        HfArgumentParser(ToyArguments), [config, "--steps", "7", "--files", "c.txt", "--shuffle"]
    )
    assert (args.name, args.files, args.steps, args.shuffle, args.rate) == (
        "from-yaml",
        ["c.txt"],
        7,
        True,
        3e-4,
    )


def test_a_single_value_for_a_list_argument_becomes_a_list(tmp_path):
    config = write_yaml(tmp_path, "name: x\nfiles: only.txt\n")
    (args,) = parse_args_with_config(HfArgumentParser(ToyArguments), [config])
    assert args.files == ["only.txt"]


def test_without_yaml_the_flags_alone_are_parsed():
    (args,) = parse_args_with_config(
        HfArgumentParser(ToyArguments), ["--name", "n", "--rate", "0.5"]
    )
    assert (args.name, args.rate) == ("n", 0.5)


def test_unknown_yaml_key_is_an_error(tmp_path):
    config = write_yaml(tmp_path, "name: x\nlearning_rat: 0.1\nstepz: 3\n")
    with pytest.raises(ValueError, match=r"names arguments that do not exist: learning_rat, stepz"):
        parse_args_with_config(HfArgumentParser(ToyArguments), [config])


@pytest.mark.parametrize(
    "text, message", [("- a\n- b\n", "must hold a mapping"), (None, "does not exist")]
)
def test_bad_config_file(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ValueError, match=message):
        parse_args_with_config(HfArgumentParser(ToyArguments), [str(path)])


def test_dict_training_argument_from_yaml(tmp_path):
    config = write_yaml(
        tmp_path,
        "output_dir: out\nlr_scheduler_type: cosine_with_min_lr\nlr_scheduler_kwargs: {min_lr_rate: 0.1}\n",
    )
    (args,) = parse_args_with_config(HfArgumentParser(TrainingArguments), [config])
    assert args.lr_scheduler_kwargs == {"min_lr_rate": 0.1}


def test_output_dir_guard(tmp_path):
    check_output_dir(str(tmp_path / "new"), None)
    (tmp_path / "notes.txt").write_text("unrelated files are fine")
    check_output_dir(str(tmp_path), None)

    (tmp_path / "checkpoint-20").mkdir()
    with pytest.raises(
        ValueError, match=r"already holds a run \(checkpoint-20\).*--resume_from_checkpoint true"
    ):
        check_output_dir(str(tmp_path), None)
    check_output_dir(str(tmp_path), "true")

    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "all_results.json").write_text("{}")
    with pytest.raises(ValueError, match=r"already holds a run \(all_results.json\)"):
        check_output_dir(str(finished), None)


def test_resume_target():
    assert resume_target("true") is True and resume_target("True") is True
    assert resume_target("runs/x/checkpoint-5") == "runs/x/checkpoint-5"
    assert resume_target(None) is None and resume_target("") is None


def test_run_config_is_flat_and_leaves_out_seed_and_output_dir(tmp_path):
    toy = ToyArguments(name="a", files=["x.txt"])
    training_args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=3,
        learning_rate=1e-3,
        seed=5,
        use_cpu=True,
    )
    run_config = build_run_config(toy, training_args=training_args)
    assert (
        "seed" not in run_config
        and "output_dir" not in run_config
        and "data_seed" not in run_config
    )
    assert run_config["name"] == "a" and run_config["files"] == ["x.txt"]
    assert run_config["learning_rate"] == 1e-3
    assert run_config["lr_scheduler_type"] == "linear"
    assert run_config["global_train_batch_size"] == 12
    assert "logging_steps" not in run_config
    json.dumps(run_config)
    # Two seeds of one configuration share their run_config.
    other_seed = TrainingArguments(
        output_dir=str(tmp_path / "b"),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=3,
        learning_rate=1e-3,
        seed=6,
        use_cpu=True,
    )
    assert build_run_config(toy, training_args=other_seed) == run_config


def test_perplexity_and_results_file(tmp_path):
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(50.0)) == pytest.approx(50.0)
    assert perplexity(1e5) == math.inf
    path = write_all_results(str(tmp_path), {"eval_loss": 1.0, "nested": {"a": (1, 2)}})
    assert json.loads(path.read_text()) == {"eval_loss": 1.0, "nested": {"a": [1, 2]}}


def test_resume_true_needs_a_checkpoint(tmp_path):
    from hf_qkdelay.recipe_utils import check_output_dir

    with pytest.raises(ValueError, match="holds no checkpoint-N folder"):
        check_output_dir(str(tmp_path / "fresh"), "true")
    (tmp_path / "run" / "checkpoint-4").mkdir(parents=True)
    check_output_dir(str(tmp_path / "run"), "true")


def test_malformed_config_yaml(tmp_path):
    from hf_qkdelay.recipe_utils import load_config_file

    path = tmp_path / "bad.yaml"
    path.write_text("max_steps: [1\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        load_config_file(str(path))
