"""Shared fixtures: the offline corpora in ../shared/data and a small local tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# The corpora live beside the checkout (../shared/data); HF_QKDELAY_DATA points elsewhere.
DATA_DIR = Path(os.environ.get("HF_QKDELAY_DATA", REPO_ROOT.parent / "shared" / "data"))

# Tests never reach the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def read_slice(relative_path: str, num_bytes: int, offset: int = 0) -> str:
    """`num_bytes` of a corpus file from `offset`, cut back to whole lines."""
    path = DATA_DIR / relative_path
    if not path.exists():
        raise FileNotFoundError(
            f"corpus {path} is missing: the tests read ../shared/data (or $HF_QKDELAY_DATA)"
        )
    with open(path, encoding="utf-8", errors="replace") as handle:
        handle.seek(offset)
        text = handle.read(num_bytes)
    start = text.find("\n") + 1 if offset else 0
    end = text.rfind("\n")
    return text[start:end]


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    # Every model in the tests is tiny: a second intra-op thread only adds synchronisation,
    # which on a two-core machine made forward/backward passes several times slower.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def shakespeare_text() -> str:
    """About 200 KB of tiny Shakespeare: enough for a few hundred short sequences."""
    return read_slice("tinyshakespeare.txt", 200_000)


@pytest.fixture(scope="session")
def bpe_tokenizer(shakespeare_text):
    """A 512-entry byte-level BPE trained on the Shakespeare slice (about a second)."""
    from hf_qkdelay.tokenization import train_bpe_tokenizer

    return train_bpe_tokenizer(shakespeare_text.splitlines(), vocab_size=512)
