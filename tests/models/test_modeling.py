"""The 32 variants of `qkd_gpt2` / `qkd_llama`: structure, exact parameter counts, forward and
backward on real text, incremental decoding, and stock compatibility of the defaults."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, GPT2LMHeadModel, LlamaForCausalLM
from transformers.pytorch_utils import Conv1D

from hf_qkdelay.models import QKDGPT2LMHeadModel, QKDLlamaForCausalLM, preset_config

from .helpers import STOCK_SWITCHES, VARIANT_IDS, VARIANTS, build_model, text_batch

# The `tiny` preset: hidden 48, 4 layers, 512 tokens, 128 positions, FFN 192 ungated / 128 gated.
E, L, V, P = 48, 4, 512, 128
UNGATED_WIDTH, GATED_WIDTH = 192, 128


# Each family with its stock switches and either position embedding: the rotary GPT-2 and the
# learned-position LLaMA are the position paths this package adds.
POSITION_VARIANTS = [
    (family, {**STOCK_SWITCHES[family], "position_embedding": position})
    for family in STOCK_SWITCHES
    for position in ("learned", "rope")
]
POSITION_VARIANT_IDS = [
    f"{family}-{switches['position_embedding']}" for family, switches in POSITION_VARIANTS
]


@pytest.fixture(scope="module")
def batch(bpe_tokenizer, shakespeare_text):
    return text_batch(bpe_tokenizer, shakespeare_text)  # (2, 32)


def expected_parameter_count(
    gated_ffn: bool, norm_type: str, use_bias: bool, position_embedding: str
) -> int:
    """The parameters of a `tiny` variant, counted by hand (tied embeddings counted once)."""
    embeddings = V * E + (P * E if position_embedding == "learned" else 0)
    attention = 4 * E * E + (4 * E if use_bias else 0)  # Q, K, V, output
    if gated_ffn:
        ffn = 3 * E * GATED_WIDTH + ((2 * GATED_WIDTH + E) if use_bias else 0)
    else:
        ffn = 2 * E * UNGATED_WIDTH + ((UNGATED_WIDTH + E) if use_bias else 0)
    norm = (
        2 * E if use_bias else E
    )  # LayerNorm and RMSNorm alike: a scale, and a bias with `use_bias`
    return embeddings + L * (attention + ffn + 2 * norm) + norm


@pytest.mark.parametrize(("family", "switches"), VARIANTS, ids=VARIANT_IDS)
def test_parameter_count_is_exact(family, switches):
    model = build_model(family, switches)
    assert model.num_parameters() == expected_parameter_count(**switches)


@pytest.mark.parametrize(("family", "switches"), VARIANTS, ids=VARIANT_IDS)
def test_structure_follows_the_switches(family, switches):
    model = build_model(family, switches)
    names = {name for name, _ in model.named_parameters()}

    # Biases everywhere (but the tied output head) or nowhere.
    bias_holders = [
        name
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, Conv1D, nn.LayerNorm))
        or "RMSNorm" in type(module).__name__
    ]
    with_bias = [
        name
        for name in bias_holders
        if getattr(model.get_submodule(name), "bias", None) is not None
    ]
    expected_with_bias = (
        [name for name in bias_holders if name != "lm_head"] if switches["use_bias"] else []
    )
    assert with_bias == expected_with_bias

    if family == "qkd_gpt2":
        attention = model.transformer.h[L - 1].attn
        assert isinstance(attention.c_attn, Conv1D) and attention.c_attn.weight.shape == (E, 3 * E)
        assert (attention.c_attn.bias is None) == (not switches["use_bias"])
        assert ("transformer.h.0.mlp.c_gate.weight" in names) == switches["gated_ffn"]
        assert ("transformer.wpe.weight" in names) == (switches["position_embedding"] == "learned")
        norm = model.transformer.h[0].ln_1
    else:
        attention = model.model.layers[L - 1].self_attn
        assert all(isinstance(getattr(attention, f"{p}_proj"), nn.Linear) for p in "qkvo")
        assert ("model.layers.0.mlp.gate_proj.weight" in names) == switches["gated_ffn"]
        assert ("model.embed_positions.weight" in names) == (
            switches["position_embedding"] == "learned"
        )
        norm = model.model.layers[0].input_layernorm
    assert isinstance(norm, nn.LayerNorm) == (switches["norm_type"] == "layernorm")
    epsilon = norm.variance_epsilon if switches["norm_type"] == "rmsnorm" else norm.eps
    assert epsilon == 1e-5


@pytest.mark.parametrize(("family", "switches"), VARIANTS, ids=VARIANT_IDS)
def test_initialisation_follows_the_family(family, switches):
    model = build_model(family, switches)

    # Exact: biases start at 0, norm scales at 1.
    for name, p in model.named_parameters():
        if name.endswith(".bias"):
            assert not p.any(), name
        elif "ln_" in name or "layernorm" in name or name.endswith("norm.weight"):
            assert torch.equal(p, torch.ones_like(p)), name

    # Statistical (fixed seed): weights ~ N(0, 0.02); GPT-2 scales its residual projections
    # `c_proj` by 1 / sqrt(2 * layers), LLaMA does not.
    residual_std = 0.02 / math.sqrt(2 * L) if family == "qkd_gpt2" else 0.02
    for name, p in model.named_parameters():
        if p.dim() != 2:
            continue
        residual = name.endswith(("c_proj.weight", "o_proj.weight", "down_proj.weight"))
        expected = residual_std if residual else 0.02
        assert abs(p.std().item() / expected - 1) < 0.1, name


@pytest.mark.parametrize(
    ("our_class", "stock_class"),
    [(QKDGPT2LMHeadModel, GPT2LMHeadModel), (QKDLlamaForCausalLM, LlamaForCausalLM)],
)
def test_default_variant_initialises_exactly_as_stock(our_class, stock_class):
    config = preset_config(our_class.config_class.model_type, "tiny")
    stock_config_class = stock_class.config_class
    stock_config = stock_config_class(
        **{
            k: v
            for k, v in config.to_dict().items()
            if k in stock_config_class.__dataclass_fields__
        }
    )
    torch.manual_seed(0)
    ours = our_class(config).state_dict()
    torch.manual_seed(0)
    stock = stock_class(stock_config).state_dict()
    assert list(ours) == list(stock)
    assert all(torch.equal(ours[name], stock[name]) for name in ours)


@pytest.mark.parametrize(("family", "switches"), VARIANTS, ids=VARIANT_IDS)
def test_forward_backward_on_real_text(family, switches, batch):
    model = build_model(family, switches)
    output = model(input_ids=batch, labels=batch)
    assert output.logits.shape == (*batch.shape, V)

    # Small initial weights give nearly uniform predictions: a loss close to ln(vocabulary).
    assert abs(output.loss.item() - math.log(V)) < 0.1

    # Every parameter takes part: none is left without a gradient. (Not "non-zero": the
    # gradient of a key bias is zero in exact arithmetic, as softmax ignores a shift.)
    output.loss.backward()
    without_gradient = [
        name
        for name, p in model.named_parameters()
        if p.grad is None or not p.grad.isfinite().all()
    ]
    assert without_gradient == []


@pytest.mark.parametrize(("family", "switches"), POSITION_VARIANTS, ids=POSITION_VARIANT_IDS)
def test_cached_decoding_matches_the_full_forward(family, switches, batch):
    # The position paths added to each family (rotary GPT-2, learned-position LLaMA) must count
    # positions after the cache exactly as a full forward does.
    model = build_model(family, switches).eval()
    with torch.no_grad():
        full = model(input_ids=batch).logits
        prefix = model(input_ids=batch[:, :-4], use_cache=True)
        cache = prefix.cache if hasattr(prefix, "cache") else prefix.past_key_values
        rest = model(input_ids=batch[:, -4:], cache=cache, use_cache=True).logits
    torch.testing.assert_close(rest, full[:, -4:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("family", "switches"), POSITION_VARIANTS, ids=POSITION_VARIANT_IDS)
def test_eager_attention_weights_and_gradient_checkpointing(family, switches, batch):
    # The diagnostics read attention weights from the eager implementation; long runs
    # checkpoint activations. Both must see through the swapped-in modules.
    model = build_model(family, switches)
    loss = model(input_ids=batch, labels=batch).loss

    model.activation_checkpointing_enable()
    checkpointed = model(input_ids=batch, labels=batch).loss
    checkpointed.backward()
    assert checkpointed.item() == loss.item()

    model.eval().set_attn_implementation("eager")
    output = model(input_ids=batch, output_attentions=True)
    assert len(output.attentions) == L
    assert output.attentions[-1].shape == (batch.shape[0], 4, batch.shape[1], batch.shape[1])
    torch.testing.assert_close(
        output.attentions[-1].sum(-1), torch.ones(batch.shape[0], 4, batch.shape[1])
    )


@pytest.mark.parametrize("family", ["qkd_gpt2", "qkd_llama"])
@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("norm_type", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("position_embedding", ["learned", "rope"])
def test_matched_gated_and_ungated_ffns_hold_the_same_weights(
    family, use_bias, norm_type, position_embedding
):
    counts = {}
    for gated_ffn in (False, True):
        switches = dict(
            gated_ffn=gated_ffn,
            norm_type=norm_type,
            use_bias=use_bias,
            position_embedding=position_embedding,
        )
        model = build_model(family, switches)
        weights = sum(
            p.numel() for name, p in model.named_parameters() if not name.endswith(".bias")
        )
        counts[gated_ffn] = (weights, model.num_parameters())
    assert counts[True][0] == counts[False][0]
    # Biases are not matched: the gated FFN has 2 x 128 of them, the ungated 192.
    assert counts[True][1] - counts[False][1] == (
        L * (2 * GATED_WIDTH - UNGATED_WIDTH) if use_bias else 0
    )


@pytest.mark.parametrize(("family", "switches"), VARIANTS[:16], ids=VARIANT_IDS[:16])
def test_both_families_with_equal_switches_have_equal_counts(family, switches):
    counts = {
        other: build_model(other, switches).num_parameters() for other in ("qkd_gpt2", "qkd_llama")
    }
    assert counts["qkd_gpt2"] == counts["qkd_llama"]


def test_unmatched_gated_ffn_keeps_the_configured_width():
    model = build_model("qkd_gpt2", {"gated_ffn": True}, match_ffn_params=False)
    assert model.transformer.h[0].mlp.c_gate.weight.shape == (E, UNGATED_WIDTH)


@pytest.mark.parametrize(
    ("family", "our_class", "stock_class"),
    [
        ("qkd_gpt2", QKDGPT2LMHeadModel, GPT2LMHeadModel),
        ("qkd_llama", QKDLlamaForCausalLM, LlamaForCausalLM),
    ],
)
def test_default_variant_is_a_stock_checkpoint(family, our_class, stock_class, batch, tmp_path):
    # The config class defaults (not the preset), at a small size.
    config_class = our_class.config_class
    size = {
        "qkd_gpt2": dict(n_embd=48, n_layer=2, n_head=4, n_positions=64, vocab_size=V),
        "qkd_llama": dict(
            hidden_size=48,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
            vocab_size=V,
        ),
    }[family]
    torch.manual_seed(0)
    model = our_class(config_class(**size)).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()

    stock, info = stock_class.from_pretrained(tmp_path, output_loading_info=True)
    assert type(stock) is stock_class
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    assert set(stock.state_dict()) == set(model.state_dict())
    with torch.no_grad():
        difference = (stock.eval()(batch).logits - model(batch).logits).abs().max().item()
    assert difference < 1e-5


def test_presets_build_identically_for_stock_model_types():
    # `preset_config("gpt2", ...)` is the same model as the default `qkd_gpt2` preset.
    for ours, stock in (("qkd_gpt2", "gpt2"), ("qkd_llama", "llama")):
        our_model = build_model(ours, {})
        stock_model = AutoModelForCausalLM.from_config(preset_config(stock, "tiny"))
        shapes = {name: p.shape for name, p in our_model.named_parameters()}
        assert shapes == {name: p.shape for name, p in stock_model.named_parameters()}
