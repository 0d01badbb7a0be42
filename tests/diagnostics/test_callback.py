"""The callback in real Trainer runs: bit-identical training, logs and jsonl records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import HfArgumentParser

from hf_qkdelay.diagnostics import (
    JSONL_NAME,
    LAYER_QUANTITIES,
    QKDiagnosticsArguments,
    QKDiagnosticsCallback,
    build_probe_batch,
)

from .helpers import tiny_gpt2, tiny_llama


@pytest.mark.slow
def test_training_is_bit_identical_with_and_without_diagnostics(diagnostics_runs):
    off, on = diagnostics_runs["off"].model, diagnostics_runs["on"].model
    off_parameters, on_parameters = dict(off.named_parameters()), dict(on.named_parameters())
    assert off_parameters.keys() == on_parameters.keys()
    for name, parameter in off_parameters.items():
        assert torch.equal(parameter, on_parameters[name]), name

    # The same losses, and the probe left the modes and attention implementation as it found them.
    def losses(trainer):
        return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]

    assert losses(diagnostics_runs["off"]) == losses(diagnostics_runs["on"])
    assert len(losses(diagnostics_runs["on"])) == 6
    assert on.config._attn_implementation == "sdpa"
    assert all(module.training for module in on.modules())


@pytest.mark.slow
def test_jsonl_has_one_record_per_probe_with_every_quantity(diagnostics_runs):
    trainer = diagnostics_runs["on"]
    lines = (Path(trainer.args.output_dir) / JSONL_NAME).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [0, 2, 4, 6]
    num_heads = trainer.model.config.n_head
    for index, record in enumerate(records):
        assert record["probe_tokens"] == 4 * 32
        assert len(record["layers"]) == 3
        for layer, entry in enumerate(record["layers"]):
            assert entry["layer"] == layer
            assert set(LAYER_QUANTITIES) <= set(entry)
            first = index == 0
            for name in LAYER_QUANTITIES:
                undefined_at_first = name in (
                    "cka_drift",
                    "q_weight_rel_change",
                    "k_weight_rel_change",
                )
                assert (entry[name] is None) == (first and undefined_at_first), (index, name)
            assert 0 < entry["attn_entropy"] <= 1
            for name, values in entry["heads"].items():
                assert len(values) == num_heads
                assert entry[name] == pytest.approx(sum(values) / num_heads)
        # Weights move between probes, and the representations drift (1 - CKA in [0, 1]).
        if index:
            assert all(
                e["q_weight_rel_change"] > 0 and 0 <= e["cka_drift"] <= 1 for e in record["layers"]
            )


@pytest.mark.slow
def test_metrics_reach_the_trainer_logs(diagnostics_runs):
    history = diagnostics_runs["on"].state.log_history
    probes = [entry for entry in history if "qk_diag/probe_loss" in entry]
    assert [entry["step"] for entry in probes] == [0, 2, 4, 6]
    later = probes[-1]
    for name in LAYER_QUANTITIES:
        for layer in range(3):
            assert f"qk_diag/{name}/layer_{layer}" in later
    # The loss logs are those a run without diagnostics has, step for step.
    assert [e["step"] for e in history if "loss" in e] == list(range(1, 7))


def test_arguments_parse_and_validate():
    (args,) = HfArgumentParser(QKDiagnosticsArguments).parse_args_into_dataclasses(
        ["--qk_diagnostics_interval_steps", "50", "--qk_diagnostics_reliance", "false"]
    )
    assert (
        args.enabled
        and args.qk_diagnostics_interval_steps == 50
        and not args.qk_diagnostics_reliance
    )
    assert not QKDiagnosticsArguments().enabled
    for field in QKDiagnosticsArguments.__dataclass_fields__.values():
        assert field.metadata["help"]
    assert (
        "--qk_diagnostics_probe_sequences" in HfArgumentParser(QKDiagnosticsArguments).format_help()
    )
    with pytest.raises(ValueError, match="`qk_diagnostics_interval_steps`"):
        QKDiagnosticsArguments(qk_diagnostics_interval_steps=-1)
    with pytest.raises(ValueError, match="`qk_diagnostics_probe_sequences`"):
        QKDiagnosticsArguments(qk_diagnostics_probe_sequences=0)
    with pytest.raises(ValueError, match="`qk_diagnostics_probe_length`"):
        QKDiagnosticsArguments(qk_diagnostics_probe_length=1)


def test_callback_validates_its_arguments():
    with pytest.raises(ValueError, match="`interval_steps`"):
        QKDiagnosticsCallback(torch.zeros(2, 8, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="`probe_input_ids`"):
        QKDiagnosticsCallback(torch.zeros(8, dtype=torch.long), 10)
    with pytest.raises(ValueError, match="`probe_attention_mask`"):
        QKDiagnosticsCallback(
            torch.zeros(2, 8, dtype=torch.long), 10, probe_attention_mask=torch.ones(2, 7)
        )


def test_probe_batch_pads_unequal_rows_and_truncates():
    rows = [{"input_ids": [5, 6, 7, 8]}, {"input_ids": [9, 10]}, {"input_ids": [1]}]
    input_ids, attention_mask = build_probe_batch(rows, num_sequences=2)
    assert input_ids.tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]
    assert attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    input_ids, attention_mask = build_probe_batch(rows, num_sequences=2, length=2)
    assert input_ids.tolist() == [[5, 6], [9, 10]] and attention_mask is None
    with pytest.raises(ValueError, match="`qk_diagnostics_probe_sequences`"):
        build_probe_batch(rows, num_sequences=4)


def q_and_k(model, layer: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The Q and K parameters (weight and bias parts) of a layer, located by hand."""
    if hasattr(model, "transformer"):  # GPT-2: Q = W[:, :E], K = W[:, E:2E] of the fused Conv1D
        attention = model.transformer.h[layer].attn
        embed = model.config.n_embd
        weight, bias = attention.c_attn.weight, attention.c_attn.bias
        return [weight[:, :embed], bias[:embed]], [
            weight[:, embed : 2 * embed],
            bias[embed : 2 * embed],
        ]
    attention = model.model.layers[layer].self_attn
    return [attention.q_proj.weight], [attention.k_proj.weight]


def frobenius(tensors: list[torch.Tensor]) -> float:
    return torch.sqrt(sum(t.detach().square().sum() for t in tensors)).item()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_weight_norms_and_relative_change_match_the_q_and_k_parameters(family, probe_batch):
    model = tiny_gpt2() if family == "gpt2" else tiny_llama()
    callback = QKDiagnosticsCallback(
        probe_batch[0], 10, probe_attention_mask=probe_batch[1], measure_reliance=False
    )
    first = callback.probe(model)
    with torch.no_grad():
        for tensor in q_and_k(model, 1)[0]:
            tensor.mul_(1.5)  # only layer 1's Q moves
    second = callback.probe(model)

    for layer, entry in enumerate(second["layers"]):
        queries, keys = q_and_k(model, layer)
        assert entry["q_weight_norm"] == pytest.approx(frobenius(queries), rel=1e-6)
        assert entry["k_weight_norm"] == pytest.approx(frobenius(keys), rel=1e-6)
        assert entry["k_weight_rel_change"] == 0.0
        assert entry["q_weight_rel_change"] == pytest.approx(0.5 if layer == 1 else 0.0, abs=1e-7)
        assert entry["reliance_loss_rise"] is None
        # Only layer 1's queries changed, so layer 0's output did not drift.
        if layer == 0:
            assert entry["cka_drift"] == pytest.approx(0.0, abs=1e-9)
    assert first["layers"][1]["q_weight_norm"] == pytest.approx(
        second["layers"][1]["q_weight_norm"] / 1.5
    )
