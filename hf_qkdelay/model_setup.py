"""Which model and tokenizer a pretraining run starts from, and building them.

A run either starts from scratch (`--model_type`, optionally a `--model_size` preset and
`--config_overrides`) or from a checkpoint (`--model_name_or_path`). The tokenizer comes
from the Hub or a local folder (`--tokenizer_name`), from the checkpoint, or, when neither
is named, is a byte-level BPE trained here on the training text.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import (
    CONFIG_MAPPING,
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
)

from .tokenization import train_bpe_tokenizer

logger = logging.getLogger(__name__)

# Model types that exist only once `hf_qkdelay.models` has registered them.
PROJECT_MODEL_PREFIX = "qkd_"


@dataclass
class ModelArguments:
    """The model a run trains and the tokenizer it reads text with."""

    model_type: str | None = field(
        default=None,
        metadata={
            "help": "Architecture trained from scratch: `gpt2`, `llama`, this project's `qkd_gpt2` / "
            "`qkd_llama`, or any transformers model type. None: load --model_name_or_path."
        },
    )
    model_size: str | None = field(
        default=None,
        metadata={
            "help": "Size preset of --model_type from hf_qkdelay.models (e.g. `tiny`). None: the "
            "model type's own defaults, changed by --config_overrides."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated config changes for a model trained from scratch, applied after "
            "the preset, e.g. `n_layer=4,n_embd=128,n_head=4`. None: no change."
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Checkpoint to continue from (Hub id or local folder). None: train from scratch."
        },
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={
            "help": "Tokenizer to use (Hub id or local folder). None: the checkpoint's, or a byte-level "
            "BPE trained on the training text when training from scratch."
        },
    )
    tokenizer_vocab_size: int = field(
        default=8192,
        metadata={
            "help": "Entries (at least 258) of the byte-level BPE trained when no tokenizer is named; "
            "the model's vocabulary matches it."
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow a Hub checkpoint or tokenizer to run its own modeling code."},
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where Hub downloads are cached. None: the Hugging Face default."},
    )

    def __post_init__(self):
        if self.model_name_or_path is None and self.model_type is None:
            raise ValueError(
                "No model: give `--model_type` (from scratch, e.g. `gpt2` or `llama`) or "
                "`--model_name_or_path` (a checkpoint)."
            )
        if self.model_name_or_path is not None:
            for argument in ("model_type", "model_size", "config_overrides"):
                if getattr(self, argument) is not None:
                    raise ValueError(
                        f"`--{argument}`={getattr(self, argument)!r} describes a model built from "
                        f"scratch and cannot be combined with `--model_name_or_path`="
                        f"{self.model_name_or_path!r}: give one or the other."
                    )
        if self.model_type is not None:
            check_model_type(self.model_type, needs_presets=self.model_size is not None)
        if self.tokenizer_vocab_size < 258:
            raise ValueError(
                f"`--tokenizer_vocab_size`={self.tokenizer_vocab_size} is too small: a byte-level "
                "BPE needs at least 258 entries (256 bytes, end-of-text and one merge)."
            )

    @property
    def trains_tokenizer(self) -> bool:
        return self.tokenizer_name is None and self.model_name_or_path is None


def import_project_models(reason: str):
    """Import `hf_qkdelay.models`, which registers this project's model types."""
    try:
        import hf_qkdelay.models as models
    except ImportError as error:
        raise ImportError(
            f"{reason} needs `hf_qkdelay.models`, which cannot be imported in this "
            f"installation ({error}). Use a transformers model type such as `gpt2` or `llama` "
            "with `--config_overrides` instead."
        ) from error
    return models


def check_model_type(model_type: str, needs_presets: bool = False) -> None:
    """Raise `ValueError` naming `--model_type` if neither transformers nor this project knows it."""
    if model_type.startswith(PROJECT_MODEL_PREFIX) or needs_presets:
        import_project_models(f"`--model_type`={model_type!r}")
    if model_type not in CONFIG_MAPPING:
        raise ValueError(
            f"`--model_type`={model_type!r} is not a model type that transformers or "
            "hf_qkdelay.models registers; e.g. `gpt2`, `llama`, `qkd_gpt2`, `qkd_llama`."
        )


def build_config(model_args: ModelArguments) -> PretrainedConfig:
    """The model's configuration: the checkpoint's, or the preset / defaults of
    `--model_type` built with `--config_overrides`. The vocabulary is set later by
    `match_tokenizer`."""

    # A checkpoint brings its own configuration.
    if model_args.model_name_or_path is not None:
        _import_models_for_checkpoint(model_args.model_name_or_path)
        return AutoConfig.from_pretrained(
            model_args.model_name_or_path,
            cache_dir=model_args.cache_dir,
            trust_remote_code=model_args.trust_remote_code,
        )

    # From scratch: the overrides go to the config's constructor, so that what it derives
    # from them (e.g. LLaMA's head_dim and num_key_value_heads) follows them.
    reference = _new_config(model_args)
    return _new_config(model_args, **parse_config_overrides(model_args.config_overrides, reference))


def _new_config(model_args: ModelArguments, **kwargs) -> PretrainedConfig:
    if model_args.model_size is None:
        return AutoConfig.for_model(model_args.model_type, **kwargs)
    models = import_project_models(f"`--model_size`={model_args.model_size!r}")
    return models.preset_config(model_args.model_type, model_args.model_size, **kwargs)


def parse_config_overrides(overrides: str | None, reference: PretrainedConfig) -> dict[str, Any]:
    """`key=value,key=value` as keyword arguments of the config, each value converted to the
    type the key has in `reference`. Raises `ValueError` naming `--config_overrides` for a
    malformed entry, an unknown key or a value of the wrong type."""
    if not overrides:
        return {}
    probe = copy.deepcopy(reference)
    kwargs = {}
    for entry in overrides.split(","):
        key = entry.split("=")[0].strip()
        if entry.count("=") != 1 or not key:
            raise ValueError(
                f"`--config_overrides`={overrides!r}: entry {entry!r} is not `key=value`; write "
                "e.g. `n_layer=4,n_embd=128`."
            )
        try:
            probe.update_from_string(entry.strip())
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"`--config_overrides`={overrides!r}: {entry!r} cannot be applied to a "
                f"{reference.model_type} config ({error})."
            ) from error
        kwargs[key] = getattr(probe, key)
    return kwargs


def _import_models_for_checkpoint(path: str) -> None:
    # A local checkpoint of this project's model types needs them registered first.
    config_file = Path(path) / "config.json"
    if config_file.is_file():
        model_type = json.loads(config_file.read_text()).get("model_type", "")
        if model_type.startswith(PROJECT_MODEL_PREFIX):
            import_project_models(f"`--model_name_or_path`={path!r} (model type {model_type!r})")


def max_positions(config: PretrainedConfig) -> int | None:
    """The longest sequence the model accepts, or None if its config does not say."""
    return getattr(config, "max_position_embeddings", None)


def build_tokenizer(model_args: ModelArguments, training_texts: Iterable[str] | None = None):
    """The named tokenizer, the checkpoint's, or a byte-level BPE of `--tokenizer_vocab_size`
    entries trained on `training_texts`. A tokenizer without padding pads with end-of-text."""
    if model_args.trains_tokenizer:
        if training_texts is None:
            raise ValueError("A tokenizer is to be trained but no training text was given.")
        tokenizer = train_bpe_tokenizer(training_texts, vocab_size=model_args.tokenizer_vocab_size)
    else:
        tokenizer = AutoTokenizer.from_pretrained(
            model_args.tokenizer_name or model_args.model_name_or_path,
            cache_dir=model_args.cache_dir,
            trust_remote_code=model_args.trust_remote_code,
        )
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_tokenizer_once(model_args: ModelArguments, training_texts: Iterable[str], training_args):
    """`build_tokenizer` for runs of several processes: a tokenizer that has to be trained is
    trained by the main process alone and saved in `output_dir`, where the other processes
    then load it (so a multi-node run needs `output_dir` on a shared file system)."""
    if not model_args.trains_tokenizer or training_args.world_size == 1:
        return build_tokenizer(model_args, training_texts)
    with training_args.main_process_first(local=False, desc="training the tokenizer"):
        if training_args.process_index == 0:
            tokenizer = build_tokenizer(model_args, training_texts)
            tokenizer.save_pretrained(training_args.output_dir)
        else:
            tokenizer = AutoTokenizer.from_pretrained(training_args.output_dir)
    return tokenizer


def match_tokenizer(config: PretrainedConfig, tokenizer) -> None:
    """Give a from-scratch `config` the tokenizer's vocabulary size and special tokens."""
    config.vocab_size = len(tokenizer)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        token_id = getattr(tokenizer, name)
        if token_id is not None:
            setattr(config, name, token_id)


def build_model(model_args: ModelArguments, config: PretrainedConfig, tokenizer) -> PreTrainedModel:
    """A causal LM from the checkpoint, or freshly initialised from `config` (seed it first)."""
    if model_args.model_name_or_path is None:
        match_tokenizer(config, tokenizer)
        return AutoModelForCausalLM.from_config(config)

    model = AutoModelForCausalLM.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        cache_dir=model_args.cache_dir,
        trust_remote_code=model_args.trust_remote_code,
    )
    # A tokenizer with more entries than the checkpoint's embeddings needs new rows.
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    return model


def describe_parameters(model: PreTrainedModel) -> str:
    """One line with the model's trainable parameter count (shared weights counted once)."""
    total = model.num_parameters(only_trainable=True)
    without_embeddings = model.num_parameters(only_trainable=True, exclude_embeddings=True)
    return (
        f"{model.config.model_type} model: {total:,} trainable parameters "
        f"({without_embeddings:,} without embeddings)"
    )
