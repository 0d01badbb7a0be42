"""Size presets for both model families, with the settings that keep comparisons fair.

Every preset of either family has: no dropout, initializer_range 0.02, tied input and output
embeddings, norm epsilon 1e-5, and `match_ffn_params=True`. The FFN widths are chosen so
that matching is exact: the ungated width is 4 * hidden and the gated width 8/3 * hidden,
both multiples of 64 (hidden is a multiple of 24), so a gated and an ungated variant hold
the same number of weights.

The FFN width follows the hidden size the configuration ends with, so a preset whose width is
overridden (`n_embd=256` / `hidden_size=256`) gets the FFN of that width, unless the FFN width
(`n_inner` / `intermediate_size`) is given too. NOTE: matching stays exact only for a hidden
size that is a multiple of 24; otherwise the matched width is rounded to `ffn_width_multiple`
and the variants differ by at most one rounding step.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import GPT2Config, LlamaConfig, PreTrainedConfig

from .configuration_qkd_gpt2 import QKDGPT2Config
from .configuration_qkd_llama import QKDLlamaConfig
from .switches import matched_gated_width


@dataclass(frozen=True)
class ModelSize:
    hidden_size: int  # E; a multiple of 24 so that 8/3 * E is a multiple of 64
    num_layers: int
    num_heads: int  # head size E / heads must be even for rotary positions
    vocab_size: int  # GPT-2's 50257, or the 512 of the tests' local BPE
    max_positions: int  # longest sequence, in tokens
    end_of_text_id: int  # BOS = EOS: GPT-2's <|endoftext|>, or id 0 in the local BPE

    @property
    def ungated_ffn_width(self) -> int:
        return ungated_ffn_width(self.hidden_size)

    @property
    def gated_ffn_width(self) -> int:
        return gated_ffn_width(self.hidden_size)


def ungated_ffn_width(hidden_size: int) -> int:
    """GPT-2's FFN width (`n_inner`) for a model of width `hidden_size`: 4 * hidden."""
    return 4 * hidden_size


def gated_ffn_width(hidden_size: int, multiple: int = 64) -> int:
    """LLaMA's FFN width (`intermediate_size`): the gated width with the weights of the ungated
    one, i.e. 8/3 * hidden, rounded to a multiple of `multiple` (exact when hidden is a multiple
    of 24)."""
    return matched_gated_width(ungated_ffn_width(hidden_size), multiple)


MODEL_SIZES = {
    # A few hundred thousand parameters: for tests, on the tests' 512-entry BPE.
    "tiny": ModelSize(
        hidden_size=48,
        num_layers=4,
        num_heads=4,
        vocab_size=512,
        max_positions=128,
        end_of_text_id=0,
    ),
    # GPT-2 small: 124M parameters as GPT-2 (learned positions), 124M as LLaMA.
    "gpt2-small": ModelSize(
        hidden_size=768,
        num_layers=12,
        num_heads=12,
        vocab_size=50257,
        max_positions=1024,
        end_of_text_id=50256,
    ),
    # A 270M decoder at GPT-2's vocabulary: 13 layers of width 1152, 18 heads of 64.
    "270m": ModelSize(
        hidden_size=1152,
        num_layers=13,
        num_heads=18,
        vocab_size=50257,
        max_positions=1024,
        end_of_text_id=50256,
    ),
}

# Settings shared by every preset of both families (the comparisons need them equal).
NORM_EPSILON = 1e-5
INITIALIZER_RANGE = 0.02
TIE_WORD_EMBEDDINGS = True

MODEL_TYPES = ("qkd_gpt2", "qkd_llama", "gpt2", "llama")


def preset_config(model_type: str, model_size: str, **config_kwargs) -> PreTrainedConfig:
    """The configuration of `model_type` at size `model_size`; `config_kwargs` set further fields.

    `model_type`: `qkd_gpt2` or `qkd_llama` (the switchable families), or transformers' `gpt2` /
    `llama` (the same sizes and fair settings, without switches). `model_size`: a key of
    `MODEL_SIZES` (`tiny`, `gpt2-small`, `270m`). The switches keep their family defaults unless
    given, e.g. `preset_config("qkd_gpt2", "tiny", gated_ffn=True, norm_type="rmsnorm")`.
    The FFN width follows the hidden size, also an overridden one, unless `n_inner` (GPT-2) or
    `intermediate_size` (LLaMA) is given.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"`model_type`={model_type!r} has no size presets: use one of {', '.join(MODEL_TYPES)}."
        )
    if model_size not in MODEL_SIZES:
        raise ValueError(
            f"`model_size`={model_size!r} is not a preset: use one of {', '.join(MODEL_SIZES)}."
        )
    size = MODEL_SIZES[model_size]
    shared = {
        "vocab_size": size.vocab_size,
        "bos_token_id": size.end_of_text_id,
        "eos_token_id": size.end_of_text_id,
        "initializer_range": INITIALIZER_RANGE,
        "tie_word_embeddings": TIE_WORD_EMBEDDINGS,
    }
    if model_type in ("qkd_gpt2", "qkd_llama"):
        shared["match_ffn_params"] = True

    if model_type in ("qkd_gpt2", "gpt2"):
        config_class = QKDGPT2Config if model_type == "qkd_gpt2" else GPT2Config
        settings = {
            "n_embd": size.hidden_size,
            "n_layer": size.num_layers,
            "n_head": size.num_heads,
            "n_positions": size.max_positions,
            "layer_norm_epsilon": NORM_EPSILON,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
        }
    else:
        config_class = QKDLlamaConfig if model_type == "qkd_llama" else LlamaConfig
        settings = {
            "hidden_size": size.hidden_size,
            "num_hidden_layers": size.num_layers,
            "num_attention_heads": size.num_heads,
            "num_key_value_heads": size.num_heads,
            "max_position_embeddings": size.max_positions,
            "rms_norm_eps": NORM_EPSILON,
            "attention_dropout": 0.0,
        }
    config = config_class(**{**shared, **settings, **config_kwargs})

    # The FFN width is set from the hidden size the config ended with (after `n_embd` or its
    # alias `hidden_size` was overridden), so that it scales with the width like the preset's.
    if config_class in (QKDGPT2Config, GPT2Config):
        if "n_inner" not in config_kwargs:
            config.n_inner = ungated_ffn_width(config.n_embd)
    elif "intermediate_size" not in config_kwargs:
        multiple = getattr(config, "ffn_width_multiple", 64)
        config.intermediate_size = gated_ffn_width(config.hidden_size, multiple)
    return config
