import pytest
import torch
from torch import nn
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from hf_qkdelay.selection import find_attention_modules, select_by_pattern, select_projections

from .helpers import tiny_gpt2, tiny_llama


def test_gpt2_fused_c_attn_slices_are_the_q_and_k_columns():
    model = tiny_gpt2()
    width = model.config.n_embd
    slices = select_projections(model, "upper", ("q", "k"))
    assert [(s.name, s.projection) for s in slices] == [
        (f"transformer.h.{layer}.attn.c_attn.{kind}", projection)
        for layer in (2, 3)
        for projection in ("q", "k")
        for kind in ("weight", "bias")
    ]
    for piece in slices:
        offset = 0 if piece.projection == "q" else width
        tensor = piece.param.detach()
        if piece.name.endswith("weight"):  # Conv1D: (in, 3E), outputs on axis 1
            expected = tensor[:, offset : offset + width].T.unsqueeze(0)
        else:
            expected = tensor[offset : offset + width].unsqueeze(0)
        assert torch.equal(piece.view(), expected)
        # A view, not a copy: it shares the parameter's storage.
        assert piece.view().untyped_storage().data_ptr() == tensor.untyped_storage().data_ptr()
        assert piece.numel == expected.numel()


def test_llama_separate_projections_with_grouped_kv_heads():
    model = tiny_llama()
    slices = select_projections(model, "top:1", ("q", "k"))
    assert [s.name for s in slices] == [
        "model.layers.3.self_attn.q_proj.weight",
        "model.layers.3.self_attn.k_proj.weight",
    ]
    assert all(s.is_whole for s in slices)
    assert slices[0].param is model.model.layers[3].self_attn.q_proj.weight
    assert slices[1].numel == 16 * 32  # 2 key/value heads of size 8


def test_value_projection_for_control_runs():
    model = tiny_gpt2()
    (weight, bias) = select_projections(model, "0", ("v",))
    width = model.config.n_embd
    assert torch.equal(weight.view()[0], weight.param.detach()[:, 2 * width :].T)
    assert torch.equal(bias.view()[0], bias.param.detach()[2 * width :])


def test_neox_per_head_layout_is_described_not_coded():
    config = GPTNeoXConfig(
        num_hidden_layers=2,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        vocab_size=64,
    )
    model = GPTNeoXForCausalLM(config)
    weight, bias = select_projections(model, "1", ("k",))
    qkv = model.gpt_neox.layers[1].attention.query_key_value
    head = 8
    per_head = qkv.weight.detach().view(4, 3 * head, 32)  # (heads, [q|k|v], in)
    assert torch.equal(weight.view(), per_head[:, head : 2 * head])
    assert torch.equal(bias.view(), qkv.bias.detach().view(4, 3 * head)[:, head : 2 * head])


def test_layers_are_found_in_order():
    assert [a.layer for a in find_attention_modules(tiny_llama())] == [0, 1, 2, 3]
    assert find_attention_modules(tiny_gpt2())[1].name == "transformer.h.1.attn"


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.ModuleDict({"proj_in": nn.Linear(8, 24), "proj_out": nn.Linear(8, 8)})


class _Unknown(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([_Block(), _Block()])


def test_unrecognised_attention_lists_what_was_looked_for_and_found():
    with pytest.raises(ValueError) as error:
        select_projections(_Unknown(), "all")
    message = str(error.value)
    assert "c_attn" in message and "q_proj" in message and "query_key_value" in message
    assert "blocks.0.attn" in message and "proj_in" in message


@pytest.mark.parametrize("targets", [("x",), (), ("q", "w")])
def test_unknown_projection(targets):
    with pytest.raises(ValueError, match="qk_delay_targets"):
        select_projections(tiny_gpt2(), "upper", targets)


def test_layer_beyond_the_model():
    with pytest.raises(ValueError, match="names layer 7, but the model has 4"):
        select_projections(tiny_llama(), "5-7")


def test_frozen_parameters_are_not_governed():
    model = tiny_llama()
    model.model.layers[3].self_attn.q_proj.weight.requires_grad_(False)
    names = [s.name for s in select_projections(model, "top:1")]
    assert names == ["model.layers.3.self_attn.k_proj.weight"]


def test_name_pattern_selection():
    model = tiny_gpt2()
    assert [s.name for s in select_by_pattern(model, r"^transformer\.w[tp]e\.")] == [
        "transformer.wte.weight",
        "transformer.wpe.weight",
    ]
    with pytest.raises(ValueError, match="not a valid regular expression"):
        select_by_pattern(model, "(")


def test_peft_lora_adapters_on_q_and_k_are_what_is_governed():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj"])
    )
    names = [s.name for s in select_projections(model, "top:1", ("q", "k"))]
    prefix = "base_model.model.model.layers.3.self_attn"
    assert names == [
        f"{prefix}.{p}_proj.lora_{ab}.default.weight" for p in ("q", "k") for ab in ("A", "B")
    ]


@pytest.mark.parametrize("family", ["mistral", "qwen2"])
def test_other_llama_family_models(family):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        family,
        num_hidden_layers=4,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=64,
        max_position_embeddings=32,
    )
    model = AutoModelForCausalLM.from_config(config)
    slices = select_projections(model, "upper")
    names = {s.name for s in slices}
    expected = {f"model.layers.{i}.self_attn.{p}_proj.weight" for i in (2, 3) for p in ("q", "k")}
    if family == "qwen2":  # Qwen2's Q/K/V projections carry biases
        expected |= {
            f"model.layers.{i}.self_attn.{p}_proj.bias" for i in (2, 3) for p in ("q", "k")
        }
    assert names == expected
