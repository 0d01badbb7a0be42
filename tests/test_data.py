"""hf_qkdelay.data: loading local text in every accepted format, packing, and bad input."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, DatasetDict

from hf_qkdelay.data import (
    DataArguments,
    check_block_size,
    iter_texts,
    limit_rows,
    load_text_datasets,
    pack_blocks,
    resolve_block_size,
    tokenize_and_pack,
)


@pytest.fixture
def shakespeare_lines(shakespeare_text):
    return shakespeare_text.splitlines(keepends=True)[:400]


@pytest.fixture
def text_files(tmp_path, shakespeare_lines):
    """The same 400 lines as .txt (two files), .jsonl and .parquet."""
    first, second = shakespeare_lines[:250], shakespeare_lines[250:]
    (tmp_path / "a.txt").write_text("".join(first), encoding="utf-8")
    (tmp_path / "b.txt").write_text("".join(second), encoding="utf-8")
    with open(tmp_path / "all.jsonl", "w", encoding="utf-8") as handle:
        for line in shakespeare_lines:
            handle.write(json.dumps({"body": line, "id": 0}) + "\n")
    Dataset.from_dict({"body": shakespeare_lines}).to_parquet(str(tmp_path / "all.parquet"))
    return tmp_path


def test_pack_blocks_concatenates_and_drops_the_remainder():
    packed = pack_blocks({"input_ids": [[1, 2, 3], [4], [5, 6, 7, 8, 9]]}, block_size=4)
    assert packed["input_ids"] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert packed["labels"] == packed["input_ids"]
    assert packed["labels"][0] is not packed["input_ids"][0]


def test_several_text_files_are_read_in_order(text_files, shakespeare_lines):
    args = DataArguments(
        train_file=[str(text_files / "a.txt"), str(text_files / "b.txt")],
        validation_file=[str(text_files / "b.txt")],
    )
    raw = load_text_datasets(args)
    assert list(iter_texts(raw["train"])) == shakespeare_lines
    assert raw["validation"]["text"] == shakespeare_lines[250:]


@pytest.mark.parametrize("name", ["all.jsonl", "all.parquet"])
def test_jsonl_and_parquet_read_the_text_column(text_files, shakespeare_lines, name):
    args = DataArguments(
        train_file=[str(text_files / name)], text_column="body", validation_split_percentage=10
    )
    raw = load_text_datasets(args)
    assert raw["train"].column_names == ["text"]
    # The first 10% of the rows are held out, the rest is trained on.
    assert raw["validation"]["text"] == shakespeare_lines[:40]
    assert raw["train"]["text"] == shakespeare_lines[40:]


def test_formats_can_be_mixed(text_files, shakespeare_lines):
    args = DataArguments(
        train_file=[str(text_files / "a.txt"), str(text_files / "all.parquet")],
        validation_file=[str(text_files / "all.jsonl")],
        text_column="body",
    )
    raw = load_text_datasets(args)
    assert raw["train"]["text"] == shakespeare_lines[:250] + shakespeare_lines
    assert len(raw["validation"]) == len(shakespeare_lines)


def test_missing_text_column_is_named(text_files):
    args = DataArguments(train_file=[str(text_files / "all.jsonl")])
    with pytest.raises(ValueError, match=r"no column 'text'.*`--text_column`.*\['body', 'id'\]"):
        load_text_datasets(args)


def test_tokenize_and_pack_gives_blocks_of_the_exact_tokens(bpe_tokenizer, shakespeare_lines):
    raw = DatasetDict(
        train=Dataset.from_dict({"text": shakespeare_lines[:200]}),
        validation=Dataset.from_dict({"text": shakespeare_lines[200:]}),
    )
    packed = tokenize_and_pack(raw, bpe_tokenizer, block_size=32)
    expected = [t for line in shakespeare_lines[:200] for t in bpe_tokenizer(line)["input_ids"]]
    blocks = packed["train"]["input_ids"]
    assert [t for block in blocks for t in block] == expected[: len(blocks) * 32]
    assert len(blocks) == len(expected) // 32
    assert packed["train"]["labels"] == blocks
    assert (
        len(packed["validation"])
        == len([t for line in shakespeare_lines[200:] for t in bpe_tokenizer(line)["input_ids"]])
        // 32
    )


def test_add_eos_token_ends_every_row(bpe_tokenizer):
    raw = DatasetDict(train=Dataset.from_dict({"text": ["To be", "or not"]}))
    packed = tokenize_and_pack(raw, bpe_tokenizer, block_size=1, add_eos_token=True)
    tokens = [t for block in packed["train"]["input_ids"] for t in block]
    eos = bpe_tokenizer.eos_token_id
    expected = (
        bpe_tokenizer("To be")["input_ids"] + [eos] + bpe_tokenizer("or not")["input_ids"] + [eos]
    )
    assert tokens == expected


def test_too_little_text_for_one_block_is_an_error(bpe_tokenizer):
    raw = DatasetDict(train=Dataset.from_dict({"text": ["To be or not"]}))
    with pytest.raises(
        ValueError, match=r"train text gives no complete block of `--block_size`=512"
    ):
        tokenize_and_pack(raw, bpe_tokenizer, block_size=512)


def test_block_size_is_checked_against_the_model(bpe_tokenizer):
    with pytest.raises(
        ValueError, match=r"`--block_size`=256 is larger than the model's maximum positions \(128\)"
    ):
        check_block_size(256, 128)
    assert resolve_block_size(None, bpe_tokenizer, 128) == 128
    assert resolve_block_size(None, bpe_tokenizer, None) == 1024
    assert resolve_block_size(64, bpe_tokenizer, 128) == 64


def test_limit_rows():
    dataset = Dataset.from_dict({"x": list(range(10))})
    assert limit_rows(dataset, 3)["x"] == [0, 1, 2]
    assert len(limit_rows(dataset, None)) == 10
    assert len(limit_rows(dataset, 50)) == 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, r"No training text: give `--train_file`"),
        ({"train_file": ["missing.txt"]}, r"`--train_file`='missing.txt' does not exist"),
        (
            {"train_file": ["corpus.csv"]},
            r"`--train_file`='corpus.csv' has the extension '.csv'; accepted: .json, .jsonl, .parquet, .text, .txt",
        ),
        ({"dataset_name": "wikitext", "train_file": ["TRAIN"]}, r"both name training text"),
        (
            {"dataset_name": "wikitext", "validation_file": ["TRAIN"]},
            r"`--validation_file`=.* is only read together with `--train_file`",
        ),
        (
            {"train_file": ["TRAIN"], "validation_split_percentage": 80},
            r"`--validation_split_percentage`=80 must be between 0 and 50",
        ),
        (
            {"train_file": ["TRAIN"], "validation_split_percentage": 0},
            r"leaves nothing to evaluate on",
        ),
        (
            {"train_file": ["TRAIN"], "block_size": 0},
            r"`--block_size`=0 must be a positive integer",
        ),
        (
            {"train_file": ["TRAIN"], "max_train_samples": -1},
            r"`--max_train_samples`=-1 must be a positive integer",
        ),
    ],
)
def test_bad_data_arguments_name_the_argument(tmp_path, kwargs, message):
    train = tmp_path / "train.txt"
    train.write_text("some text\n")
    for key in ("train_file", "validation_file"):
        if key in kwargs:
            kwargs[key] = [str(train) if path == "TRAIN" else path for path in kwargs[key]]
    with pytest.raises(ValueError, match=message):
        DataArguments(**kwargs)


def test_dataset_name_reads_a_dataset_folder_and_holds_out_a_percentage(
    tmp_path, shakespeare_lines
):
    # A local folder stands in for a Hub dataset: same code path, no network.
    folder = tmp_path / "hub_like"
    folder.mkdir()
    Dataset.from_dict({"body": shakespeare_lines}).to_parquet(str(folder / "train.parquet"))
    args = DataArguments(
        dataset_name=str(folder), text_column="body", validation_split_percentage=5
    )
    raw = load_text_datasets(args)
    assert raw["validation"]["text"] == shakespeare_lines[:20]
    assert raw["train"]["text"] == shakespeare_lines[20:]
