"""Size presets: exact parameter counts, the settings both families share, bad names."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from hf_qkdelay.models import MODEL_SIZES, QKDGPT2Config, QKDLlamaConfig, preset_config

# Parameters of each preset with its family's stock switches (tied embeddings counted once).
# gpt2-small as qkd_gpt2 is OpenAI's GPT-2 small: 124,439,808.
PRESET_PARAMETERS = {
    ("qkd_gpt2", "tiny"): 143_904,
    ("qkd_llama", "tiny"): 135_600,
    ("qkd_gpt2", "gpt2-small"): 124_439_808,
    ("qkd_llama", "gpt2-small"): 123_551_232,
    ("qkd_gpt2", "270m"): 266_300_928,
    ("qkd_llama", "270m"): 264_955_392,
}


def count_on_meta_device(config) -> int:
    # Shapes only: the 270M model is counted without allocating or initialising it.
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config).num_parameters()


@pytest.mark.parametrize(
    ("family", "size"), list(PRESET_PARAMETERS), ids=[f"{f}-{s}" for f, s in PRESET_PARAMETERS]
)
def test_preset_parameter_counts(family, size):
    assert count_on_meta_device(preset_config(family, size)) == PRESET_PARAMETERS[family, size]
    # transformers' own model types at the same preset are the same models.
    stock_type = family.removeprefix("qkd_")
    assert count_on_meta_device(preset_config(stock_type, size)) == PRESET_PARAMETERS[family, size]


@pytest.mark.parametrize("size", list(MODEL_SIZES))
def test_matched_presets_hold_the_same_weights_in_every_variant(size):
    # Gated or not, GPT-2 or LLaMA: with the same norm, bias and position switches, the
    # presets hold the same number of weights (biases aside, which are not matched).
    def weights(family, **switches):
        with torch.device("meta"):
            config = preset_config(
                family,
                size,
                use_bias=False,
                norm_type="rmsnorm",
                position_embedding="rope",
                **switches,
            )
            model = AutoModelForCausalLM.from_config(config)
        return model.num_parameters()

    counts = {
        weights(family, gated_ffn=gated)
        for family in ("qkd_gpt2", "qkd_llama")
        for gated in (False, True)
    }
    assert len(counts) == 1


@pytest.mark.parametrize("family", ["qkd_gpt2", "qkd_llama", "gpt2", "llama"])
@pytest.mark.parametrize("size", list(MODEL_SIZES))
def test_presets_share_the_fair_settings(family, size):
    config = preset_config(family, size)
    assert config.initializer_range == 0.02
    assert config.tie_word_embeddings is True
    if family.endswith("gpt2"):
        assert (config.resid_pdrop, config.embd_pdrop, config.attn_pdrop) == (0.0, 0.0, 0.0)
        assert config.layer_norm_epsilon == 1e-5
    else:
        assert config.attention_dropout == 0.0
        assert config.rms_norm_eps == 1e-5
    if family.startswith("qkd_"):
        assert config.match_ffn_params is True
        assert config.ffn_width == (
            8 * config.hidden_size // 3 if config.gated_ffn else 4 * config.hidden_size
        )


def test_preset_takes_switches_and_checks_them():
    config = preset_config("qkd_gpt2", "tiny", gated_ffn=True, norm_type="rmsnorm")
    assert isinstance(config, QKDGPT2Config) and config.gated_ffn and config.norm_type == "rmsnorm"
    assert isinstance(preset_config("qkd_llama", "tiny"), QKDLlamaConfig)
    with pytest.raises(ValueError, match="`norm_type`='rms'"):
        preset_config("qkd_llama", "tiny", norm_type="rms")


def test_unknown_preset_or_model_type():
    with pytest.raises(
        ValueError,
        match="`model_size`='gpt2-medium' is not a preset: use one of tiny, gpt2-small, 270m",
    ):
        preset_config("qkd_gpt2", "gpt2-medium")
    with pytest.raises(ValueError, match="`model_type`='mistral' has no size presets"):
        preset_config("mistral", "tiny")
