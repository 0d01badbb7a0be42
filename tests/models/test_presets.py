"""Size presets: exact parameter counts, the settings both families share, bad names."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from hf_qkdelay.model_setup import ModelArguments, build_config
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


# (family, overrides as the recipe's --config_overrides, FFN width the model builds)
WIDTH_OVERRIDES = [
    ("qkd_gpt2", "n_embd=96", 384),  # 4 * 96
    ("gpt2", "n_embd=96", 384),
    ("qkd_gpt2", "hidden_size=96", 384),  # GPT-2's alias of n_embd
    ("qkd_gpt2", "n_embd=256", 1024),
    ("qkd_gpt2", "n_embd=96,gated_ffn=true", 256),  # 2/3 * 4 * 96, still matched
    ("qkd_llama", "hidden_size=96", 256),  # 8/3 * 96
    ("llama", "hidden_size=96", 256),
    ("qkd_llama", "hidden_size=96,gated_ffn=false", 384),  # 3/2 * 256, still matched
    ("qkd_llama", "hidden_size=256", 704),  # 8/3 * 256 = 682.7, to a multiple of 64
    # An explicit FFN width is the user's, whatever the hidden size.
    ("qkd_gpt2", "n_embd=96,n_inner=512", 512),
    ("qkd_llama", "hidden_size=96,intermediate_size=320", 320),
]


@pytest.mark.parametrize(("family", "overrides", "ffn_width"), WIDTH_OVERRIDES)
def test_ffn_width_follows_an_overridden_hidden_size(family, overrides, ffn_width):
    # The recipe's path: `--model_size tiny --config_overrides ...` through the config constructor.
    config = build_config(
        ModelArguments(model_type=family, model_size="tiny", config_overrides=overrides)
    )
    assert config.hidden_size != MODEL_SIZES["tiny"].hidden_size
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    first_ffn_weight = next(
        parameter
        for name, parameter in model.named_parameters()
        if name.endswith(("mlp.c_fc.weight", "mlp.up_proj.weight"))
    )
    assert ffn_width in first_ffn_weight.shape and config.hidden_size in first_ffn_weight.shape


def test_matching_holds_at_an_overridden_hidden_size():
    # 96 is a multiple of 24, so gated and ungated variants of both families match exactly.
    def weights(family, gated_ffn):
        config = preset_config(
            family,
            "tiny",
            hidden_size=96,
            gated_ffn=gated_ffn,
            use_bias=False,
            norm_type="rmsnorm",
            position_embedding="rope",
        )
        return count_on_meta_device(config)

    counts = {
        weights(family, gated) for family in ("qkd_gpt2", "qkd_llama") for gated in (False, True)
    }
    assert len(counts) == 1


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
