"""The 32 variants of the two model families, and a small batch of real text."""

from __future__ import annotations

import itertools

import torch
from transformers import AutoModelForCausalLM

from hf_qkdelay.models import preset_config

FAMILIES = ("qkd_gpt2", "qkd_llama")
SWITCHES = ("gated_ffn", "norm_type", "use_bias", "position_embedding")
SWITCH_VALUES = (
    (False, True),
    ("layernorm", "rmsnorm"),
    (False, True),
    ("learned", "rope"),
)

# The stock choices of each family (the defaults of its config).
STOCK_SWITCHES = {
    "qkd_gpt2": {
        "gated_ffn": False,
        "norm_type": "layernorm",
        "use_bias": True,
        "position_embedding": "learned",
    },
    "qkd_llama": {
        "gated_ffn": True,
        "norm_type": "rmsnorm",
        "use_bias": False,
        "position_embedding": "rope",
    },
}

VARIANTS = [
    (family, dict(zip(SWITCHES, values)))
    for family in FAMILIES
    for values in itertools.product(*SWITCH_VALUES)
]


def variant_id(family: str, switches: dict) -> str:
    """A short readable name, e.g. `qkd_gpt2-gated-rmsnorm-bias-rope` (also a folder name)."""
    parts = [
        "gated" if switches["gated_ffn"] else "plain",
        switches["norm_type"],
        "bias" if switches["use_bias"] else "nobias",
        switches["position_embedding"],
    ]
    return "-".join([family, *parts])


VARIANT_IDS = [variant_id(family, switches) for family, switches in VARIANTS]


def build_model(family: str, switches: dict, seed: int = 0, **config_kwargs):
    """A `tiny` preset model of `family` with `switches`, seeded for reproducible weights."""
    torch.manual_seed(seed)
    config = preset_config(family, "tiny", **switches, **config_kwargs)
    return AutoModelForCausalLM.from_config(config)


def text_batch(tokenizer, text: str, batch_size: int = 2, length: int = 32) -> torch.Tensor:
    """`batch_size` consecutive rows of `length` tokens of `text`."""
    ids = tokenizer(text[:20_000]).input_ids[: batch_size * length]
    return torch.tensor(ids).view(batch_size, length)
