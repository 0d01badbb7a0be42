"""Fixtures of the evaluation tests: a corpus file, a small offline suite, tiny GPT-2 models."""

from __future__ import annotations

import pytest
import torch

from hf_qkdelay.evaluation.offline_suite import OfflineSuiteConfig, build_offline_suite

# Small enough that one pass over every task takes a few seconds on a CPU.
SMALL_SUITE = OfflineSuiteConfig(num_lastword_items=40, num_nextsentence_items=40, num_documents=6)


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory, shakespeare_text):
    path = tmp_path_factory.mktemp("corpus") / "shakespeare.txt"
    path.write_text(shakespeare_text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def suite_cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("offline_suite_cache")


@pytest.fixture(scope="session")
def small_suite(corpus_file, suite_cache_dir):
    return build_offline_suite([corpus_file], cache_dir=suite_cache_dir, config=SMALL_SUITE)


def build_tiny_gpt2(tokenizer, seed: int = 0, n_positions: int = 128, n_embd: int = 32):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return GPT2LMHeadModel(config)


@pytest.fixture
def tiny_gpt2(bpe_tokenizer):
    return build_tiny_gpt2(bpe_tokenizer)


@pytest.fixture
def make_tiny_gpt2(bpe_tokenizer):
    """`make_tiny_gpt2(seed=0, n_positions=128, n_embd=32)`: a fresh GPT-2 for the BPE fixture."""
    return lambda **kwargs: build_tiny_gpt2(bpe_tokenizer, **kwargs)


@pytest.fixture(scope="session")
def small_suite_config():
    return SMALL_SUITE
