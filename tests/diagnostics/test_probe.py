"""The probe's recording forward against transformers' eager attention and hand-made hooks."""

from __future__ import annotations

import pytest
import torch

from hf_qkdelay.diagnostics.metrics import (
    informative_queries,
    masked_head_mean,
    normalized_attention_entropy,
)
from hf_qkdelay.diagnostics.probe import (
    find_decoder_layout,
    probe_forward,
    probe_labels,
    probe_mode,
)

from .helpers import sharpen, tiny_gpt2, tiny_llama

MODELS = {"gpt2": tiny_gpt2, "llama": tiny_llama}


def eager_reference(model, input_ids, attention_mask):
    """Attention maps and loss from transformers' own eager attention."""
    model.eval()
    model.set_attn_implementation("eager")
    labels = probe_labels(input_ids, attention_mask.bool())
    with torch.no_grad():
        outputs = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=labels,
            output_attentions=True,
        )
    model.set_attn_implementation("sdpa")
    return outputs


@pytest.mark.parametrize("family", MODELS)
def test_probe_attention_maps_equal_eager_output_attentions(family, probe_batch):
    torch.manual_seed(0)
    model = sharpen(MODELS[family]())
    input_ids, attention_mask = probe_batch
    with probe_mode(model):
        result = probe_forward(model, input_ids, attention_mask, keep_attention_probs=True)
    reference = eager_reference(model, input_ids, attention_mask)

    assert len(result.attention_probs) == model.config.num_hidden_layers
    for layer, (ours, theirs) in enumerate(zip(result.attention_probs, reference.attentions)):
        assert ours.shape == theirs.shape == (4, 4, 32, 32)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5, msg=f"layer {layer}")
        # The maps are far from uniform, so the comparison means something.
        assert theirs.amax() > 0.9
    assert result.loss == pytest.approx(float(reference.loss), abs=1e-5)

    # The head averages are those of the eager maps over informative queries.
    allowed = reference.attentions[0] > 0  # causal and padding: eager gives 0 exactly there
    token = attention_mask.bool()
    for layer, theirs in enumerate(reference.attentions):
        allowed = torch.ones(32, 32, dtype=torch.bool).tril()[None, None] & token[:, None, None, :]
        informative = informative_queries(allowed, token)
        entropy = masked_head_mean(normalized_attention_entropy(theirs, allowed), informative)
        max_prob = masked_head_mean(theirs.amax(dim=-1), informative)
        torch.testing.assert_close(result.heads[layer]["attn_entropy"], entropy, rtol=0, atol=1e-5)
        torch.testing.assert_close(
            result.heads[layer]["attn_max_prob"], max_prob, rtol=0, atol=1e-5
        )


@pytest.mark.parametrize("family", MODELS)
def test_write_energies_equal_norms_computed_by_hand_with_hooks(family, probe_batch):
    torch.manual_seed(0)
    model = sharpen(MODELS[family]()).eval()
    input_ids, attention_mask = probe_batch
    token = attention_mask.bool()
    layout = find_decoder_layout(model)

    # Our own hooks on a plain forward: the stream entering each block and each sublayer's write.
    captured: dict[tuple[str, int], torch.Tensor] = {}
    handles = []
    for layer, (block, attention, ffn) in enumerate(
        zip(layout.blocks, layout.attentions, layout.ffns)
    ):
        handles.append(
            block.register_forward_pre_hook(
                lambda m, args, kwargs, layer=layer: captured.__setitem__(("x", layer), args[0]),
                with_kwargs=True,
            )
        )
        handles.append(
            attention.register_forward_hook(
                lambda m, args, out, layer=layer: captured.__setitem__(("a", layer), out[0])
            )
        )
        handles.append(
            ffn.register_forward_hook(
                lambda m, args, out, layer=layer: captured.__setitem__(("f", layer), out)
            )
        )
        handles.append(
            block.register_forward_hook(
                lambda m, args, out, layer=layer: captured.__setitem__(("y", layer), out)
            )
        )
    model.set_attn_implementation("eager")  # the same attention arithmetic as the probe
    with torch.no_grad():
        model(input_ids=input_ids, attention_mask=attention_mask)
    model.set_attn_implementation("sdpa")
    for handle in handles:
        handle.remove()

    with probe_mode(model):
        result = probe_forward(model, input_ids, attention_mask)
    for layer in range(layout.num_layers):
        x, a, f, y = (captured[(key, layer)][token] for key in "xafy")  # (N, D) at real tokens
        torch.testing.assert_close(x + a + f, y)  # sequential residual blocks
        hand = {
            "resid_norm": x.norm(dim=-1).mean().item(),
            "attn_write_energy": (a.square().sum() / x.square().sum()).item(),
            "ffn_write_energy": (f.square().sum() / (x + a).square().sum()).item(),
        }
        assert result.stream[layer] == pytest.approx(hand, rel=1e-5)
        torch.testing.assert_close(result.layer_outputs[layer], y)


def test_probe_mode_restores_modes_implementation_and_rng():
    model = tiny_llama()
    model.train()
    model.model.layers[1].mlp.eval()  # a module deliberately in eval mode stays so
    flags = [module.training for module in model.modules()]
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    with probe_mode(model):
        assert not model.training
        assert model.config._attn_implementation == "qk_diag_probe"
        probe_forward(model, torch.randint(0, 512, (2, 8)))
        torch.rand(5)  # even a draw inside the probe does not move the training RNG
    assert torch.equal(torch.rand(3), expected_draw)
    assert [module.training for module in model.modules()] == flags
    assert model.config._attn_implementation == "sdpa"


def test_uniform_attention_gives_no_loss_rise_where_attention_is_already_uniform(probe_batch):
    torch.manual_seed(0)
    model = sharpen(tiny_gpt2())
    input_ids, attention_mask = probe_batch
    # Zero layer 0's Q and K (weights and bias): every logit is 0, so its attention is uniform.
    embed = model.config.n_embd
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.weight[:, : 2 * embed] = 0
        model.transformer.h[0].attn.c_attn.bias[: 2 * embed] = 0
    with probe_mode(model):
        base = probe_forward(model, input_ids, attention_mask)
        first = probe_forward(
            model, input_ids, attention_mask, measure=False, uniform_attention_layer=0
        )
        second = probe_forward(
            model, input_ids, attention_mask, measure=False, uniform_attention_layer=1
        )
    assert first.loss == pytest.approx(base.loss, abs=1e-6)
    assert second.loss != pytest.approx(base.loss, abs=1e-3)
    assert base.heads[0]["attn_entropy"].tolist() == pytest.approx([1.0] * 4, abs=1e-6)


def test_unrecognised_model_is_refused():
    with pytest.raises(ValueError, match="no Q/K projection found"):
        find_decoder_layout(torch.nn.Sequential(torch.nn.Linear(4, 4)))


def project_variants():
    """The project's own families with their switches moved off the stock settings."""
    models = pytest.importorskip("hf_qkdelay.models")
    from transformers import AutoModelForCausalLM

    configs = {
        "qkd_gpt2": models.preset_config(
            "qkd_gpt2", "tiny", gated_ffn=True, position_embedding="rope", use_bias=False
        ),
        "qkd_llama": models.preset_config(
            "qkd_llama", "tiny", gated_ffn=False, norm_type="layernorm"
        ),
    }
    return {
        name: AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
        for name, config in configs.items()
    }


@pytest.mark.parametrize("name", ["qkd_gpt2", "qkd_llama"])
def test_probe_attention_maps_equal_eager_on_the_project_variants(name, probe_batch):
    torch.manual_seed(0)
    model = sharpen(project_variants()[name])
    input_ids, attention_mask = probe_batch
    with probe_mode(model):
        result = probe_forward(model, input_ids, attention_mask, keep_attention_probs=True)
    reference = eager_reference(model, input_ids, attention_mask)
    for ours, theirs in zip(result.attention_probs, reference.attentions, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    assert len(result.stream) == model.config.num_hidden_layers


def test_probe_loss_counts_tokens_predicted_from_real_tokens_only():
    input_ids = torch.tensor([[7, 8, 9, 10], [11, 12, 13, 14]])
    token_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)
    # Row 0: token 9 would be predicted from padding; row 1: token 14 is padding.
    assert probe_labels(input_ids, token_mask).tolist() == [
        [-100, -100, -100, 10],
        [11, 12, 13, -100],
    ]
    assert probe_labels(input_ids, None) is input_ids
