"""A model whose config declares a parallel residual gets one warning about `ffn_write_energy`."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from hf_qkdelay.diagnostics import QKDiagnosticsCallback
from hf_qkdelay.diagnostics.probe import declares_parallel_residual

from .helpers import BLOCK_SIZE, tiny_gpt2, tiny_llama

CALLBACK_LOGGER = "hf_qkdelay.diagnostics.callback"


def tiny_neox(use_parallel_residual: bool) -> GPTNeoXForCausalLM:
    config = GPTNeoXConfig(
        vocab_size=512,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=BLOCK_SIZE,
        use_parallel_residual=use_parallel_residual,
        attn_implementation="sdpa",
    )
    return GPTNeoXForCausalLM(config)


def parallel_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "parallel residual" in r.getMessage()]


def test_parallel_residual_is_read_from_the_config():
    assert declares_parallel_residual(tiny_neox(True).config)
    assert not declares_parallel_residual(tiny_neox(False).config)
    assert not declares_parallel_residual(tiny_gpt2().config)
    assert not declares_parallel_residual(tiny_llama().config)
    assert not declares_parallel_residual(None)


@pytest.mark.parametrize("use_parallel_residual", [True, False])
def test_one_warning_at_the_first_probe_of_a_parallel_residual_model(
    use_parallel_residual, probe_batch, caplog
):
    torch.manual_seed(0)
    model = tiny_neox(use_parallel_residual)
    input_ids, attention_mask = probe_batch
    callback = QKDiagnosticsCallback(
        input_ids % 512,
        interval_steps=1,
        probe_attention_mask=attention_mask,
        measure_reliance=False,
    )
    with caplog.at_level(logging.WARNING, logger=CALLBACK_LOGGER):
        first = callback.probe(model)
        callback.probe(model)
    messages = parallel_warnings(caplog)
    if not use_parallel_residual:
        assert messages == []
        return
    (message,) = messages  # once, not at every probe
    assert "gpt_neox" in message and "`ffn_write_energy`" in message
    assert "stream entering the layer" in message
    # The probe still measures every layer.
    assert all(entry["ffn_write_energy"] > 0 for entry in first["layers"])
