"""Fixtures of the diagnostics tests: Shakespeare blocks, a padded probe batch, short runs."""

from __future__ import annotations

import pytest
import torch

from .helpers import BLOCK_SIZE, train_short_run


@pytest.fixture(scope="session")
def shakespeare_blocks(shakespeare_text, bpe_tokenizer) -> torch.Tensor:
    """The Shakespeare slice as (num_blocks, BLOCK_SIZE) token ids."""
    ids = bpe_tokenizer(shakespeare_text[:60_000])["input_ids"]
    usable = len(ids) // BLOCK_SIZE * BLOCK_SIZE
    return torch.tensor(ids[:usable]).view(-1, BLOCK_SIZE)


@pytest.fixture
def probe_batch(shakespeare_blocks) -> tuple[torch.Tensor, torch.Tensor]:
    """Four held-out Shakespeare sequences, two of them padded (one left, one right)."""
    input_ids = shakespeare_blocks[-4:].clone()
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :5] = 0  # left padding
    attention_mask[2, -7:] = 0  # right padding
    return input_ids, attention_mask


@pytest.fixture(scope="session")
def diagnostics_runs(tmp_path_factory, shakespeare_blocks):
    """Three short runs: without diagnostics, with them, and with them at another learning rate."""
    root = tmp_path_factory.mktemp("runs")
    return {
        "off": train_short_run(root / "off", shakespeare_blocks, diagnostics=False),
        "on": train_short_run(root / "on", shakespeare_blocks, diagnostics=True),
        "on_fast": train_short_run(
            root / "on_fast", shakespeare_blocks, diagnostics=True, learning_rate=1e-2
        ),
    }
