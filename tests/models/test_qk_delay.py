"""The Q/K delay on every variant: it must govern exactly the Q and K weights of the chosen
layers, fused in `qkd_gpt2` (columns of `c_attn`), separate in `qkd_llama`, and train."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import Trainer, TrainingArguments

from hf_qkdelay import QKDelayArguments, attach_qk_delay, build_optimizer
from hf_qkdelay.selection import select_projections

from .helpers import VARIANT_IDS, VARIANTS, build_model, text_batch

E, L = 48, 4  # the `tiny` preset
UPPER_LAYERS = (2, 3)  # `upper` of 4 layers: L // 2 .. L - 1


def expected_governed(
    family: str, use_bias: bool, layers
) -> dict[tuple[str, str], tuple[int, int] | None]:
    """{(parameter name, projection): (first, last + 1) output feature, or None for all of it}."""
    suffixes = ("weight", "bias") if use_bias else ("weight",)
    expected = {}
    for layer in layers:
        for index, projection in enumerate("qk"):
            for suffix in suffixes:
                if family == "qkd_gpt2":
                    # [Q | K | V] along the output axis: Q = [0:E], K = [E:2E].
                    name = f"transformer.h.{layer}.attn.c_attn.{suffix}"
                    expected[name, projection] = (index * E, (index + 1) * E)
                else:
                    expected[
                        f"model.layers.{layer}.self_attn.{projection}_proj.{suffix}", projection
                    ] = None
    return expected


def governed_mask(model, slices) -> dict[str, torch.Tensor]:
    """Per parameter name, 1 where a slice governs it and 0 elsewhere, written through the slices' views."""
    masks = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for piece in slices:
        piece.view(masks[piece.name]).fill_(1.0)
    return masks


@pytest.mark.parametrize(("family", "switches"), VARIANTS, ids=VARIANT_IDS)
def test_selection_is_exactly_qk_of_the_upper_layers(family, switches):
    model = build_model(family, switches)
    slices = select_projections(model, layers="upper", projections=("q", "k"))
    expected = expected_governed(family, switches["use_bias"], UPPER_LAYERS)

    found = {
        (piece.name, piece.projection): None if piece.is_whole else (piece.start, piece.stop)
        for piece in slices
    }
    assert found == expected
    assert {piece.layer for piece in slices} == set(UPPER_LAYERS)

    # The views cover exactly those features: columns of the (E, 3E) Conv1D weight, entries of its bias.
    masks = governed_mask(model, slices)
    for name, mask in masks.items():
        ranges = [bounds for (governed, _), bounds in expected.items() if governed == name]
        reference = torch.zeros_like(mask)
        for bounds in ranges:
            if bounds is None:
                reference.fill_(1.0)
            elif name.endswith("weight"):
                reference[:, bounds[0] : bounds[1]] = 1.0
            else:
                reference[bounds[0] : bounds[1]] = 1.0
        assert torch.equal(mask, reference), name

    per_layer = 2 * (E * E + (E if switches["use_bias"] else 0))  # Q and K, weights and biases
    assert sum(piece.numel for piece in slices) == len(UPPER_LAYERS) * per_layer


@pytest.mark.parametrize("family", ["qkd_gpt2", "qkd_llama"])
@pytest.mark.parametrize(
    ("layers", "indices"), [("0,3", (0, 3)), ("all", (0, 1, 2, 3)), ("top:1", (3,))]
)
def test_selection_follows_the_layer_spec(family, layers, indices):
    switches = {
        "use_bias": True,
        "position_embedding": "rope",
        "norm_type": "rmsnorm",
        "gated_ffn": True,
    }
    slices = select_projections(
        build_model(family, switches), layers=layers, projections=("q", "k")
    )
    found = {(piece.name, piece.projection) for piece in slices}
    assert found == set(expected_governed(family, True, indices))


@pytest.fixture(scope="module")
def batch(bpe_tokenizer, shakespeare_text):
    return text_batch(bpe_tokenizer, shakespeare_text, batch_size=4)  # (4, 32)


@pytest.mark.parametrize(("family", "switches"), VARIANTS, ids=VARIANT_IDS)
def test_training_steps_delay_exactly_qk(family, switches, batch):
    model = build_model(family, switches)
    factor, learning_rate = 0.25, 0.1
    delay = QKDelayArguments(qk_delay_layers="upper", qk_delay_factor=factor, qk_delay_steps=2)
    optimizer = build_optimizer(model, delay, optimizer_cls=torch.optim.SGD, lr=learning_rate)
    masks = governed_mask(model, select_projections(model, layers="upper"))

    # First update: plain SGD moves by -lr * grad, the governed Q/K entries by a quarter of it.
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    first_loss = model(input_ids=batch, labels=batch).loss
    first_loss.backward()
    optimizer.step()
    for name, p in model.named_parameters():
        multiplier = 1.0 + (factor - 1.0) * masks[name]
        expected = -learning_rate * multiplier * p.grad
        torch.testing.assert_close(
            p.detach() - before[name], expected, rtol=1e-4, atol=1e-7, msg=name
        )
    optimizer.zero_grad()

    # Two more updates (the window ends after the second): the loss on this batch goes down.
    for _ in range(2):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    final_loss = model(input_ids=batch, labels=batch).loss.item()
    assert optimizer.multiplier_controller.updates == 3
    assert optimizer.multiplier_controller.last_multipliers == {"qk_delay": 1.0}
    assert math.isfinite(final_loss) and final_loss < first_loss.item()


ALL_SWITCHES_FLIPPED = {
    "qkd_gpt2": {
        "gated_ffn": True,
        "norm_type": "rmsnorm",
        "use_bias": False,
        "position_embedding": "rope",
    },
    "qkd_llama": {
        "gated_ffn": False,
        "norm_type": "layernorm",
        "use_bias": True,
        "position_embedding": "learned",
    },
}


@pytest.mark.parametrize("family", ["qkd_gpt2", "qkd_llama"])
def test_trainer_with_attached_delay(family, bpe_tokenizer, shakespeare_text, tmp_path):
    model = build_model(family, ALL_SWITCHES_FLIPPED[family])
    rows = text_batch(bpe_tokenizer, shakespeare_text, batch_size=16)
    dataset = [{"input_ids": row, "labels": row} for row in rows]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to=[],
        per_device_train_batch_size=4,
        max_steps=4,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset)
    attach_qk_delay(trainer, QKDelayArguments(qk_delay_factor=0.1, qk_delay_steps=2))
    trainer.train()

    logged = [
        entry["qk_delay/multiplier"]
        for entry in trainer.state.log_history
        if "qk_delay/multiplier" in entry
    ]
    assert logged == [0.1, 0.1, 1.0, 1.0]
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
