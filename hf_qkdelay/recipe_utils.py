"""Plumbing shared by the recipes: a YAML file plus command-line flags, a guard on the
output folder, and the `all_results.json` every run folder ends with.

A recipe is called as `recipe.py [config.yaml] [--flag value ...]`. The YAML file holds
any flag by its name (`learning_rate: 3.0e-4`, `train_file: [a.txt, b.txt]`); flags given
on the command line override it. Paths in the YAML file are read relative to the working
directory, as flags are.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import math
import re
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments

CONFIG_SUFFIXES = (".yaml", ".yml")

# Training arguments that change what a run learns. Everything else in TrainingArguments
# (logging, saving, evaluation cadence, hub, dataloader workers) leaves the result alone.
RUN_DEFINING_TRAINING_ARGS = (
    "learning_rate",
    "lr_scheduler_type",
    "lr_scheduler_kwargs",
    "warmup_steps",
    "max_steps",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "optim",
    "optim_args",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "max_grad_norm",
    "label_smoothing_factor",
    "bf16",
    "fp16",
)

# Settings that identify one repetition or its location, not the configuration.
NOT_RUN_DEFINING = {"seed", "data_seed", "output_dir"}

# Arguments of other groups that change neither training nor the reported scores.
OPERATIONAL_ARGS = {"preprocessing_num_workers", "cache_dir", "trust_remote_code"}

# Values of `--resume_from_checkpoint` that mean "the last checkpoint in output_dir".
TRUE_WORDS = ("true", "yes", "1")

_CHECKPOINT_DIR = re.compile(r"^checkpoint-\d+$")

# Files whose presence marks a folder as holding a finished run.
RUN_FILES = ("all_results.json", "model.safetensors")


def parse_args_with_config(parser: HfArgumentParser, argv: list[str]) -> tuple:
    """Parse `argv` into the parser's dataclasses; a first argument ending in .yaml/.yml is
    a config file whose keys become the defaults that the remaining flags override.

    Raises `ValueError` for a config file that is missing, is not a mapping, or names a key
    that no argument has.
    """
    if argv and argv[0].endswith(CONFIG_SUFFIXES):
        config_path, argv = argv[0], argv[1:]
        set_defaults_from_config(parser, load_config_file(config_path), config_path)
    return parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)


def load_config_file(path: str) -> dict[str, Any]:
    if not Path(path).is_file():
        raise ValueError(f"The config file {path!r} does not exist.")
    with open(path, encoding="utf-8") as handle:
        try:
            values = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise ValueError(f"The config file {path!r} is not valid YAML: {error}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(
            f"The config file {path!r} must hold a mapping of argument names to values, "
            f"got a {type(values).__name__}."
        )
    return values


def set_defaults_from_config(
    parser: argparse.ArgumentParser, values: dict[str, Any], source: str = "config"
) -> None:
    """Make `values` the parser's defaults, so that flags given after them still win."""
    actions = {action.dest: action for action in parser._actions if action.dest != "help"}
    unknown = sorted(set(values) - set(actions))
    if unknown:
        raise ValueError(
            f"{source} names arguments that do not exist: {', '.join(unknown)}. Accepted are "
            "the recipe's flags without the leading `--` (see `--help`)."
        )

    defaults = {}
    for key, value in values.items():
        action = actions[key]
        if action.nargs in ("+", "*") and not isinstance(value, list):
            value = [value]
        # argparse converts string defaults itself, but not the items of a list.
        if isinstance(value, list) and action.type is not None:
            value = [action.type(item) if isinstance(item, str) else item for item in value]
        # Dict-valued training arguments (e.g. lr_scheduler_kwargs) are parsed from JSON.
        if isinstance(value, dict):
            value = json.dumps(value)
        defaults[key] = value
        # A value in the file satisfies a required flag.
        action.required = False
    parser.set_defaults(**defaults)


def check_output_dir(output_dir: str, resume_from_checkpoint: str | bool | None) -> None:
    """Refuse an `output_dir` that holds another run's checkpoints or results unless the
    run resumes, so that nothing already there is overwritten or rotated away."""
    folder = Path(output_dir)
    if resume_target(resume_from_checkpoint) is True:
        has_checkpoint = folder.is_dir() and any(
            _CHECKPOINT_DIR.match(p.name) for p in folder.iterdir()
        )
        if not has_checkpoint:
            raise ValueError(
                f"`--resume_from_checkpoint`=true, but `--output_dir`={output_dir!r} holds no "
                "checkpoint-N folder to resume from; give a checkpoint path, or start a new run."
            )
        return
    if resume_from_checkpoint or not folder.is_dir():
        return
    checkpoints = sorted(p.name for p in folder.iterdir() if _CHECKPOINT_DIR.match(p.name))
    finished = [name for name in RUN_FILES if (folder / name).exists()]
    if checkpoints or finished:
        held = ", ".join(checkpoints[:3] + (["..."] if len(checkpoints) > 3 else []) + finished)
        raise ValueError(
            f"`--output_dir`={output_dir!r} already holds a run ({held}). Give a new "
            "`--output_dir`, continue that run with `--resume_from_checkpoint true` (or a "
            "checkpoint path), or remove the folder yourself; nothing in it was changed."
        )


def resume_target(resume_from_checkpoint: str | bool | None) -> str | bool | None:
    """`--resume_from_checkpoint` as `Trainer.train` takes it: `true` means the last
    checkpoint in `output_dir`, any other value is a checkpoint path."""
    if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.lower() in TRUE_WORDS:
        return True
    return resume_from_checkpoint or None


def build_run_config(*argument_groups, training_args: TrainingArguments) -> dict[str, Any]:
    """A flat dict of every setting that defines the run, for grouping runs that differ
    only in their seed: all fields of `argument_groups` (model, data, Q/K delay, ...), the
    training arguments in `RUN_DEFINING_TRAINING_ARGS` and the global batch size, without
    `seed`, `data_seed`, `output_dir` and purely operational settings."""
    run_config: dict[str, Any] = {}
    for group in argument_groups:
        if hasattr(group, "run_settings"):  # a group that states its settings canonically
            run_config.update(_plain(group.run_settings()))
            continue
        for field in dataclasses.fields(group):
            if field.name not in NOT_RUN_DEFINING | OPERATIONAL_ARGS:
                run_config[field.name] = _plain(getattr(group, field.name))
    for name in RUN_DEFINING_TRAINING_ARGS:
        run_config[name] = _plain(getattr(training_args, name))
    run_config["world_size"] = training_args.world_size
    run_config["global_train_batch_size"] = (
        training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * training_args.world_size
    )
    return run_config


def _plain(value: Any) -> Any:
    """`value` as JSON can hold it: enums by value, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def perplexity(loss: float) -> float:
    """exp(`loss`), or infinity where that overflows a float."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def write_all_results(output_dir: str, results: dict[str, Any]) -> Path:
    """Write `results` as `all_results.json` in `output_dir`, replacing any earlier file."""
    path = Path(output_dir) / "all_results.json"
    path.write_text(json.dumps(_plain(results), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
