"""hf_qkdelay.corpora: Python's documentation as a deterministic train/validation split."""

from __future__ import annotations

import pytest

from hf_qkdelay.corpora import main, python_docs_topics, split_topics, write_python_docs


def test_split_is_deterministic_disjoint_and_complete():
    topics = python_docs_topics()
    train, validation = split_topics(topics, validation_fraction=0.1)
    assert (train, validation) == split_topics(dict(reversed(list(topics.items()))), 0.1)
    assert not set(train) & set(validation)
    assert sorted(train + validation) == sorted(topics)
    held_out_chars = sum(len(topics[name]) for name in validation)
    total_chars = sum(len(text) for text in topics.values())
    # Held out until 10% is reached: at least 10%, and at most one topic more than that.
    assert 0.1 * total_chars <= held_out_chars <= 0.1 * total_chars + max(map(len, topics.values()))


def test_split_of_a_small_mapping():
    topics = {"a": "x" * 50, "b": "x" * 30, "c": "x" * 20}
    train, validation = split_topics(topics, validation_fraction=0.25)
    assert len(validation) >= 1 and train


@pytest.mark.parametrize("fraction", [0.0, 0.5, -0.1])
def test_bad_fraction_is_refused(fraction):
    with pytest.raises(ValueError, match=r"`validation_fraction`=.* strictly between 0 and 0.5"):
        split_topics({"a": "x"}, fraction)


def test_written_files_hold_every_topic_once(tmp_path):
    files = write_python_docs(tmp_path / "docs")
    train_text = files.train_file.read_text(encoding="utf-8")
    validation_text = files.validation_file.read_text(encoding="utf-8")
    assert len(train_text) == files.train_chars > 300_000
    assert len(validation_text) == files.validation_chars > 20_000
    topics = python_docs_topics()
    train, validation = split_topics(topics)
    assert topics[train[0]].strip("\n") in train_text
    assert topics[validation[0]].strip("\n") in validation_text
    assert topics[validation[0]].strip("\n") not in train_text
    assert "Python" in (tmp_path / "docs" / "SOURCE.txt").read_text()


def test_command_line(tmp_path, capsys):
    assert main(["python-docs", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "train.txt").is_file() and (tmp_path / "validation.txt").is_file()
    assert "train.txt" in capsys.readouterr().out
