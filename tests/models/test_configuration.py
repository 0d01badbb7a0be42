"""The configurations of `qkd_gpt2` and `qkd_llama`: defaults, checks, aliases, FFN sizing."""

from __future__ import annotations

import pytest
from transformers import AutoConfig, GPT2Config, LlamaConfig

from hf_qkdelay.models import QKDGPT2Config, QKDLlamaConfig
from hf_qkdelay.models.switches import matched_gated_width, matched_ungated_width, round_to_multiple

from .helpers import STOCK_SWITCHES, VARIANT_IDS, VARIANTS

CONFIG_CLASSES = {"qkd_gpt2": QKDGPT2Config, "qkd_llama": QKDLlamaConfig}


@pytest.mark.parametrize("family", ["qkd_gpt2", "qkd_llama"])
def test_defaults_are_the_stock_choices(family):
    config = CONFIG_CLASSES[family]()
    for name, value in STOCK_SWITCHES[family].items():
        assert getattr(config, name) == value
    assert config.match_ffn_params is False
    assert config.ffn_width_multiple == 64


def test_gpt2_defaults_keep_gpt2_and_drop_dropout():
    config, stock = QKDGPT2Config(), GPT2Config()
    assert (
        config.ffn_activation
        == config.activation_function
        == stock.activation_function
        == "gelu_new"
    )
    assert (config.resid_pdrop, config.embd_pdrop, config.attn_pdrop) == (0.0, 0.0, 0.0)
    for name in (
        "n_embd",
        "n_layer",
        "n_head",
        "n_positions",
        "initializer_range",
        "tie_word_embeddings",
    ):
        assert getattr(config, name) == getattr(stock, name)
    assert config.ffn_width == 4 * config.n_embd


def test_llama_defaults_keep_llama():
    config, stock = QKDLlamaConfig(), LlamaConfig()
    assert config.ffn_activation == config.hidden_act == stock.hidden_act == "silu"
    assert (config.attention_bias, config.mlp_bias) == (False, False)
    for name in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "tie_word_embeddings",
        "rope_parameters",
    ):
        assert getattr(config, name) == getattr(stock, name)
    assert config.ffn_width == config.intermediate_size


@pytest.mark.parametrize(("family", "switches"), VARIANTS, ids=VARIANT_IDS)
def test_round_trip_through_dict_and_auto_config(family, switches, tmp_path):
    config = CONFIG_CLASSES[family](**switches, num_hidden_layers=2, ffn_activation="gelu")
    config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert type(reloaded) is CONFIG_CLASSES[family]
    expected, found = config.to_dict(), reloaded.to_dict()
    found.pop("_name_or_path")
    expected.pop("_name_or_path")
    assert found == expected
    for name, value in switches.items():
        assert getattr(reloaded, name) == value
    assert reloaded.ffn_activation == "gelu"


def test_update_from_string_sets_every_switch():
    # The recipe's `--config_overrides` goes through `update_from_string`.
    config = QKDGPT2Config()
    config.update_from_string(
        "gated_ffn=true,norm_type=rmsnorm,use_bias=false,position_embedding=rope,"
        "ffn_activation=silu,match_ffn_params=true,ffn_width_multiple=32"
    )
    assert (config.gated_ffn, config.norm_type, config.use_bias, config.position_embedding) == (
        True,
        "rmsnorm",
        False,
        "rope",
    )
    assert config.activation_function == "silu"
    assert config.ffn_width == 2048  # 2/3 of 4 * 768, a multiple of 32

    llama = QKDLlamaConfig()
    llama.update_from_string("use_bias=true,ffn_activation=gelu_new")
    assert llama.hidden_act == "gelu_new"
    llama.check_switches()  # what the model does at construction
    assert (llama.attention_bias, llama.mlp_bias) == (True, True)


@pytest.mark.parametrize("family", ["qkd_gpt2", "qkd_llama"])
@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        ("norm_type", "batchnorm", "'layernorm', 'rmsnorm'"),
        ("position_embedding", "alibi", "'learned', 'rope'"),
        ("ffn_activation", "swiglu", "'silu'"),
        ("ffn_width_multiple", 0, "positive"),
    ],
)
def test_bad_value_fails_at_construction(family, field, value, accepted):
    with pytest.raises(ValueError) as error:
        CONFIG_CLASSES[family](**{field: value})
    message = str(error.value)
    assert f"`{field}`" in message and repr(value) in message and accepted in message


@pytest.mark.parametrize("family", ["qkd_gpt2", "qkd_llama"])
def test_bad_override_fails_when_the_model_is_built(family):
    config = CONFIG_CLASSES[family]()
    config.update_from_string("norm_type=layer_norm")
    with pytest.raises(ValueError, match="`norm_type`='layer_norm'"):
        config.check_switches()


def test_rope_needs_an_even_head_size():
    with pytest.raises(ValueError, match="even head size, got 3"):
        QKDGPT2Config(n_embd=24, n_head=8, position_embedding="rope")
    QKDGPT2Config(n_embd=24, n_head=8)  # learned positions do not care


def test_llama_biases_are_one_switch():
    with pytest.raises(ValueError, match="`use_bias`=True"):
        QKDLlamaConfig(attention_bias=True)
    config = QKDLlamaConfig(use_bias=True)
    assert (config.attention_bias, config.mlp_bias) == (True, True)


def test_gpt2_refuses_cross_attention():
    with pytest.raises(ValueError, match="`add_cross_attention`=True is not supported"):
        QKDGPT2Config(add_cross_attention=True)


def test_rounding_to_a_multiple():
    assert round_to_multiple(2 * 4096, 3, 64) == 2752  # 2730.67 -> 42.67 units -> 43
    assert round_to_multiple(96, 1, 64) == 128  # exactly 1.5 units: halves go up
    assert round_to_multiple(95, 1, 64) == 64
    assert round_to_multiple(1, 1, 64) == 64  # never zero
    assert matched_gated_width(3072, 64) == 2048
    assert matched_ungated_width(2048, 64) == 3072


def test_matched_widths_follow_the_switch():
    gpt2 = QKDGPT2Config(n_embd=1024, match_ffn_params=True)
    assert gpt2.ffn_width == 4096  # ungated: the reference width
    gpt2.gated_ffn = True
    assert gpt2.ffn_width == 2752
    gpt2.match_ffn_params = False
    assert gpt2.ffn_width == 4096

    llama = QKDLlamaConfig(intermediate_size=2752, match_ffn_params=True)
    assert llama.ffn_width == 2752  # gated: the reference width
    llama.gated_ffn = False
    assert llama.ffn_width == 4160  # 4128 is 64.5 units: halves go up
