"""Text data for causal-LM pretraining: load local files or a Hub dataset, then tokenize and
pack into fixed-length blocks, in the manner of transformers' `run_clm.py`.

Every split ends as a `datasets.Dataset` of rows `{"input_ids": [block_size ints],
"labels": same}`; the model shifts the labels itself. Text is concatenated across rows
and cut into blocks, so a block may span a line or document boundary; the tail of each
`map` batch shorter than a block is dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict, concatenate_datasets, load_dataset

logger = logging.getLogger(__name__)

# File extension -> `datasets` builder that reads it.
FILE_BUILDERS = {
    ".txt": "text",
    ".text": "text",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
}

# Rows tokenized and packed together by one `datasets.map` call.
MAP_BATCH_SIZE = 1000

# Block length used when neither `--block_size` nor the model caps it lower.
DEFAULT_MAX_BLOCK_SIZE = 1024


@dataclass
class DataArguments:
    """Where the text comes from and how it becomes training blocks."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Dataset on the Hugging Face Hub (needs the network or a warm cache). "
            "None: read --train_file instead."
        },
    )
    dataset_config_name: str | None = field(
        default=None,
        metadata={
            "help": "Configuration of --dataset_name, e.g. `wikitext-103-raw-v1`. None: its default."
        },
    )
    train_file: list[str] | None = field(
        default=None,
        metadata={
            "help": "One or more local training files: .txt (one row per line), .json/.jsonl "
            "(one object per row, text in --text_column) or .parquet. Formats may be mixed; "
            "rows are read in the order the files are given."
        },
    )
    validation_file: list[str] | None = field(
        default=None,
        metadata={
            "help": "One or more local validation files, same formats as --train_file. None: "
            "hold out --validation_split_percentage of the training rows."
        },
    )
    text_column: str = field(
        default="text",
        metadata={
            "help": "Column holding the text in .json/.jsonl/.parquet files and Hub datasets."
        },
    )
    validation_split_percentage: int = field(
        default=5,
        metadata={
            "help": "Percent (1-50) of the training rows, taken from the start, held out for "
            "evaluation when there is no validation file or split."
        },
    )
    block_size: int | None = field(
        default=None,
        metadata={
            "help": "Tokens per training sequence after packing. None: the smallest of 1024, the "
            "tokenizer's model_max_length and the model's maximum positions. Must not exceed "
            "the model's maximum positions."
        },
    )
    add_eos_token: bool = field(
        default=False,
        metadata={
            "help": "Append the end-of-text token to every row before packing: use it when each "
            "row is a whole document (.jsonl, .parquet), not when rows are lines of one text."
        },
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={
            "help": "Keep only the first N packed training blocks (for quick runs). None: all."
        },
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Keep only the first N packed validation blocks. None: all."},
    )
    preprocessing_num_workers: int | None = field(
        default=None,
        metadata={"help": "Processes for tokenizing and packing. None: tokenize in this process."},
    )

    def __post_init__(self):
        # One source of text, named completely.
        if self.dataset_name is None and not self.train_file:
            raise ValueError(
                "No training text: give `--train_file` (local .txt, .json/.jsonl or .parquet "
                "files) or `--dataset_name` (a Hub dataset)."
            )
        if self.dataset_name is not None and self.train_file:
            raise ValueError(
                f"`--dataset_name`={self.dataset_name!r} and `--train_file`={self.train_file} "
                "both name training text: give one of them."
            )
        if self.validation_file and not self.train_file:
            raise ValueError(
                f"`--validation_file`={self.validation_file} is only read together with "
                "`--train_file`; a Hub dataset brings its own validation split."
            )
        for argument in ("train_file", "validation_file"):
            for path in getattr(self, argument) or []:
                check_data_file(argument, path)

        # Numbers that must be positive when given.
        if not 0 <= self.validation_split_percentage <= 50:
            raise ValueError(
                f"`--validation_split_percentage`={self.validation_split_percentage} must be "
                "between 0 and 50."
            )
        if self.validation_split_percentage == 0 and self.train_file and not self.validation_file:
            raise ValueError(
                "`--validation_split_percentage`=0 with no `--validation_file` leaves nothing to "
                "evaluate on: give a validation file or a percentage between 1 and 50."
            )
        for argument in ("block_size", "max_train_samples", "max_eval_samples"):
            value = getattr(self, argument)
            if value is not None and value < 1:
                raise ValueError(f"`--{argument}`={value} must be a positive integer or unset.")
        if not self.text_column:
            raise ValueError("`--text_column` must name a column, got an empty string.")


def check_data_file(argument: str, path: str) -> None:
    """Raise `ValueError` naming `argument` if `path` is missing or of an unknown format."""
    suffix = Path(path).suffix.lower()
    if suffix not in FILE_BUILDERS:
        raise ValueError(
            f"`--{argument}`={path!r} has the extension {suffix or '(none)'!r}; accepted: "
            f"{', '.join(sorted(FILE_BUILDERS))}."
        )
    if not Path(path).is_file():
        raise ValueError(f"`--{argument}`={path!r} does not exist or is not a file.")


def load_text_datasets(data_args: DataArguments, cache_dir: str | None = None) -> DatasetDict:
    """Raw text as a `DatasetDict` with splits `train` and `validation`, one column `text`."""

    # Local files: each read by the builder of its format, then joined in the given order.
    if data_args.train_file:
        train = _load_files(data_args.train_file, "train_file", data_args.text_column, cache_dir)
        validation = (
            _load_files(
                data_args.validation_file, "validation_file", data_args.text_column, cache_dir
            )
            if data_args.validation_file
            else None
        )

    # A Hub dataset: its train split, and its validation split when it has one.
    else:
        hub = load_dataset(
            data_args.dataset_name, data_args.dataset_config_name, cache_dir=cache_dir
        )
        if "train" not in hub:
            raise ValueError(
                f"`--dataset_name`={data_args.dataset_name!r} has no `train` split; it has "
                f"{sorted(hub)}."
            )
        source = f"`--dataset_name`={data_args.dataset_name!r}"
        train = _text_only(hub["train"], data_args.text_column, source)
        validation = (
            _text_only(hub["validation"], data_args.text_column, source)
            if "validation" in hub
            else None
        )

    # Without validation text, hold out the first rows of the training text.
    if validation is None:
        if data_args.validation_split_percentage == 0:
            raise ValueError(
                "The training data has no validation split and `--validation_split_percentage` "
                "is 0: give a percentage between 1 and 50."
            )
        num_held_out = max(1, len(train) * data_args.validation_split_percentage // 100)
        validation = train.select(range(num_held_out))
        train = train.select(range(num_held_out, len(train)))
    return DatasetDict(train=train, validation=validation)


def _load_files(
    paths: list[str], argument: str, text_column: str, cache_dir: str | None
) -> Dataset:
    parts = []
    for path in paths:
        check_data_file(argument, path)
        builder = FILE_BUILDERS[Path(path).suffix.lower()]
        # `keep_linebreaks` keeps the newline that ends each line of a .txt file.
        kwargs = {"keep_linebreaks": True} if builder == "text" else {}
        loaded = load_dataset(builder, data_files={"train": [path]}, cache_dir=cache_dir, **kwargs)
        column = "text" if builder == "text" else text_column
        parts.append(_text_only(loaded["train"], column, f"`--{argument}`={path!r}"))
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def _text_only(dataset: Dataset, text_column: str, source: str) -> Dataset:
    if text_column not in dataset.column_names:
        raise ValueError(
            f"{source} has no column {text_column!r} (set by `--text_column`); its columns: "
            f"{dataset.column_names}."
        )
    dataset = dataset.select_columns([text_column])
    return dataset.rename_column(text_column, "text") if text_column != "text" else dataset


def check_block_size(block_size: int, max_positions: int | None) -> None:
    """Raise `ValueError` naming `--block_size` if the model cannot take sequences that long."""
    if max_positions is not None and block_size > max_positions:
        raise ValueError(
            f"`--block_size`={block_size} is larger than the model's maximum positions "
            f"({max_positions}); use at most {max_positions}, or raise the model's positions "
            "(e.g. `--config_overrides n_positions=...` for GPT-2)."
        )


def resolve_block_size(block_size: int | None, tokenizer, max_positions: int | None) -> int:
    """The packing length: `block_size` checked against the model's `max_positions`, or,
    when unset, the smallest of 1024, the tokenizer's limit and `max_positions`."""
    if block_size is None:
        candidates = [DEFAULT_MAX_BLOCK_SIZE, tokenizer.model_max_length]
        if max_positions is not None:
            candidates.append(max_positions)
        return int(min(candidates))
    check_block_size(block_size, max_positions)
    if block_size > tokenizer.model_max_length:
        logger.warning(
            "`--block_size`=%d is above the tokenizer's model_max_length (%d); packing ignores "
            "that limit.",
            block_size,
            tokenizer.model_max_length,
        )
    return block_size


def pack_blocks(batch: dict[str, list[list[int]]], block_size: int) -> dict[str, list[list[int]]]:
    """Concatenate the rows' `input_ids` and cut them into blocks of `block_size` tokens,
    dropping the remainder; `labels` are a copy of the blocks."""
    tokens = [token for row in batch["input_ids"] for token in row]
    usable = len(tokens) // block_size * block_size
    blocks = [tokens[i : i + block_size] for i in range(0, usable, block_size)]
    return {"input_ids": blocks, "labels": [list(block) for block in blocks]}


def tokenize_and_pack(
    raw: DatasetDict,
    tokenizer,
    block_size: int,
    add_eos_token: bool = False,
    num_proc: int | None = None,
) -> DatasetDict:
    """Tokenize the `text` column of every split and pack it into `block_size` blocks.

    Raises `ValueError` when a split holds fewer tokens than one block.
    """
    if add_eos_token and tokenizer.eos_token_id is None:
        raise ValueError("`--add_eos_token` was given but the tokenizer has no end-of-text token.")
    eos = [tokenizer.eos_token_id] if add_eos_token else []

    def tokenize(batch):
        # verbose=False: rows longer than the tokenizer's limit are fine, packing cuts them.
        ids = tokenizer(batch["text"], verbose=False)["input_ids"]
        return {"input_ids": [row + eos for row in ids]}

    tokenized = raw.map(
        tokenize,
        batched=True,
        batch_size=MAP_BATCH_SIZE,
        num_proc=num_proc,
        remove_columns=["text"],
        desc="Tokenizing",
    )
    packed = tokenized.map(
        pack_blocks,
        fn_kwargs={"block_size": block_size},
        batched=True,
        batch_size=MAP_BATCH_SIZE,
        num_proc=num_proc,
        desc=f"Packing into blocks of {block_size}",
    )
    for split, dataset in packed.items():
        if len(dataset) == 0:
            raise ValueError(
                f"The {split} text gives no complete block of `--block_size`={block_size} "
                "tokens: give more text or a smaller block size."
            )
    return packed


def limit_rows(dataset: Dataset, max_rows: int | None) -> Dataset:
    """The first `max_rows` rows of `dataset` (all of them when None)."""
    if max_rows is None or max_rows >= len(dataset):
        return dataset
    return dataset.select(range(max_rows))


def iter_texts(dataset: Dataset, batch_size: int = MAP_BATCH_SIZE):
    """The `text` column of `dataset`, row by row, read in batches."""
    for batch in dataset.iter(batch_size=batch_size):
        yield from batch["text"]
