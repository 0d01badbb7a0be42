"""Real text that needs no download, written to train/validation files for the recipe.

Python ships the reference documentation that `help()` shows as `pydoc_data.topics`:
about 0.5 MB of human-written English prose with code examples, one entry per topic
("assignment", "with", "specialnames", ...). The quickstart trains on it.

    python -m hf_qkdelay.corpora python-docs --out data/python-docs

writes `train.txt` and `validation.txt` there. The split is by whole topic, so no
paragraph of the validation text is seen in training. The text (and so any perplexity)
depends on the Python version, which is written to `SOURCE.txt` beside the files.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CorpusFiles:
    train_file: Path
    validation_file: Path
    train_chars: int
    validation_chars: int


def python_docs_topics() -> dict[str, str]:
    """The topic texts of `pydoc_data.topics`, keyed by topic name."""
    from pydoc_data.topics import topics

    return dict(topics)


def split_topics(
    topics: dict[str, str], validation_fraction: float = 0.1
) -> tuple[list[str], list[str]]:
    """Deterministic split by whole topic: topics are taken in the order of the SHA-256 of
    their names (a fixed shuffle) and held out until the held-out text reaches
    `validation_fraction` of all characters. Both lists come back in sorted order."""
    if not 0.0 < validation_fraction < 0.5:
        raise ValueError(
            f"`validation_fraction`={validation_fraction} must lie strictly between 0 and 0.5."
        )
    total_chars = sum(len(text) for text in topics.values())
    validation: list[str] = []
    validation_chars = 0
    for name in sorted(topics, key=lambda n: hashlib.sha256(n.encode()).hexdigest()):
        if validation_chars >= validation_fraction * total_chars:
            break
        validation.append(name)
        validation_chars += len(topics[name])
    held_out = set(validation)
    return sorted(n for n in topics if n not in held_out), sorted(validation)


def write_python_docs(out_dir: str | Path, validation_fraction: float = 0.1) -> CorpusFiles:
    """Write Python's reference documentation as `train.txt` and `validation.txt` in
    `out_dir` (created if needed); returns the paths and their sizes in characters."""
    out_dir = Path(out_dir)
    topics = python_docs_topics()
    train_names, validation_names = split_topics(topics, validation_fraction)

    # Topics are separated by a blank line; each topic keeps its own line breaks.
    def joined(names: list[str]) -> str:
        return "\n\n".join(topics[name].strip("\n") for name in names) + "\n"

    train_text, validation_text = joined(train_names), joined(validation_names)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_file, validation_file = out_dir / "train.txt", out_dir / "validation.txt"
    train_file.write_text(train_text, encoding="utf-8")
    validation_file.write_text(validation_text, encoding="utf-8")
    (out_dir / "SOURCE.txt").write_text(
        f"pydoc_data.topics of Python {platform.python_version()}: "
        f"{len(train_names)} topics for training, {len(validation_names)} held out "
        f"({validation_fraction:.0%} of the text, whole topics): {', '.join(validation_names)}\n",
        encoding="utf-8",
    )
    return CorpusFiles(train_file, validation_file, len(train_text), len(validation_text))


# Corpus name on the command line -> function writing it into a folder.
CORPORA = {"python-docs": write_python_docs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hf_qkdelay.corpora",
        description="Write a corpus that ships with Python as train/validation text files.",
    )
    parser.add_argument("corpus", choices=sorted(CORPORA), help="which corpus to write")
    parser.add_argument("--out", required=True, help="folder for train.txt and validation.txt")
    args = parser.parse_args(argv)
    files = CORPORA[args.corpus](args.out)
    print(f"wrote {files.train_file} ({files.train_chars:,} characters)")
    print(f"wrote {files.validation_file} ({files.validation_chars:,} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
