"""The offline suite builder: deterministic, cached by content, absolute data paths."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from hf_qkdelay.evaluation.offline_suite import (
    OFFLINE_TASKS,
    OfflineSuiteConfig,
    build_offline_suite,
)

CONFIG = OfflineSuiteConfig(num_lastword_items=30, num_nextsentence_items=30, num_documents=5)


def read_items(suite, task):
    with open(suite.manifest["tasks"][task]["data_file"], encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_build_is_deterministic_and_cached(corpus_file, tmp_path):
    first = build_offline_suite([corpus_file], cache_dir=tmp_path / "a", config=CONFIG)
    second = build_offline_suite([corpus_file], cache_dir=tmp_path / "b", config=CONFIG)
    # The same corpus and settings give the same folder name and the same items.
    assert first.directory.name == second.directory.name
    for task in OFFLINE_TASKS:
        assert read_items(first, task) == read_items(second, task)

    # A second call finds the cached build and writes nothing.
    data_file = first.directory / "offline_lastword.jsonl"
    mtime = data_file.stat().st_mtime_ns
    again = build_offline_suite([str(corpus_file)], cache_dir=tmp_path / "a", config=CONFIG)
    assert again.directory == first.directory and data_file.stat().st_mtime_ns == mtime

    # Another seed is another suite.
    reseeded = OfflineSuiteConfig(**{**CONFIG.__dict__, "seed": 7})
    other = build_offline_suite([corpus_file], cache_dir=tmp_path / "a", config=reseeded)
    assert other.directory != first.directory


def test_task_files_point_at_their_data_by_absolute_path(corpus_file, tmp_path):
    suite = build_offline_suite([corpus_file], cache_dir=tmp_path, config=CONFIG)
    assert suite.task_names == OFFLINE_TASKS
    for task in OFFLINE_TASKS:
        task_config = yaml.safe_load((suite.directory / f"{task}.yaml").read_text())
        data_file = task_config["dataset_kwargs"]["data_files"]["test"]
        assert task_config["task"] == task
        assert data_file.startswith("/") and data_file == str(suite.directory / f"{task}.jsonl")
        assert len(read_items(suite, task)) == suite.num_documents(task)
    assert suite.manifest["sources"][0]["path"] == str(corpus_file.resolve())


def test_items_come_from_the_corpus(corpus_file, tmp_path):
    suite = build_offline_suite([corpus_file], cache_dir=tmp_path, config=CONFIG)
    flat = " ".join(corpus_file.read_text().split())
    assert suite.num_documents("offline_lastword") == 30
    assert suite.num_documents("offline_nextsentence") == 30
    assert suite.num_documents("offline_perplexity") == 5

    for item in read_items(suite, "offline_lastword"):
        assert re.fullmatch(r"[A-Za-z]+(['-][A-Za-z]+)*", item["target"])
        assert item["context"] + " " + item["target"] in flat

    for item in read_items(suite, "offline_nextsentence"):
        endings = item["endings"]
        assert len(endings) == 4 and len(set(endings)) == 4
        # The true ending follows the context in the text; the distractors match its length.
        assert item["context"] + " " + endings[item["label"]] in flat
        true_words = len(endings[item["label"]].split())
        assert all(abs(len(ending.split()) - true_words) <= 2 for ending in endings)

    for document in read_items(suite, "offline_perplexity"):
        assert len(document["text"]) >= CONFIG.document_chars
        assert document["text"].split("\n\n")[0] in corpus_file.read_text()


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        build_offline_suite([tmp_path / "missing.txt"], cache_dir=tmp_path)
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("Too short.\n")
    with pytest.raises(ValueError, match="too short"):
        build_offline_suite([tiny], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="`num_documents`"):
        OfflineSuiteConfig(num_documents=0)
