"""Evaluation through lm-evaluation-harness on the offline suite, with tiny GPT-2 models."""

from __future__ import annotations

import copy
import json
import os
import random

import pytest
import torch

from hf_qkdelay.cli import main
from hf_qkdelay.evaluation import (
    STANDARD_TASKS,
    evaluate_model,
    evaluate_pretrained,
    flatten_metrics,
    format_results_table,
    parse_task_list,
)
from hf_qkdelay.evaluation.offline_suite import OfflineSuiteConfig, build_offline_suite
from hf_qkdelay.evaluation.tasks import check_known_tasks


def close_scores(first: dict, second: dict, tolerance: float = 1e-4) -> None:
    """Accuracies within `tolerance`; perplexity-type metrics within `tolerance` relatively."""
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert second[key] == pytest.approx(value, rel=tolerance, abs=tolerance), key


def test_task_names_expand_suites():
    assert parse_task_list("standard") == list(STANDARD_TASKS)
    assert parse_task_list("offline, piqa,offline_lastword") == [
        "offline_lastword",
        "offline_nextsentence",
        "offline_perplexity",
        "piqa",
    ]
    with pytest.raises(ValueError, match="names no task"):
        parse_task_list(" , ")

    class Manager:  # stands in for lm-eval's TaskManager, whose full index takes seconds
        all_tasks = ["piqa", "hellaswag"]

    check_known_tasks(["piqa", "offline_perplexity"], Manager())
    with pytest.raises(ValueError, match="did you mean piqa"):
        check_known_tasks(["piqaa"], Manager())


def test_offline_suite_runs_offline_and_scores_every_item(
    small_suite_config,
    tiny_gpt2,
    bpe_tokenizer,
    small_suite,
    corpus_file,
    suite_cache_dir,
    tmp_path,
):
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    tiny_gpt2.train()
    random.seed(123)
    torch.manual_seed(123)
    python_state, torch_state = random.getstate(), torch.random.get_rng_state()

    output_path = tmp_path / "results.json"
    results = evaluate_model(
        tiny_gpt2,
        bpe_tokenizer,
        "offline",
        output_path,
        batch_size=8,
        offline_text=[corpus_file],
        offline_cache_dir=suite_cache_dir,
        offline_config=small_suite_config,
        bootstrap_iters=0,
    )

    # Every built item was scored.
    for task in small_suite.task_names:
        built = small_suite.num_documents(task)
        assert results["n-samples"][task] == {"original": built, "effective": built}
    assert set(flatten_metrics(results)) == {
        "eval/offline_lastword/acc",
        "eval/offline_lastword/perplexity",
        "eval/offline_nextsentence/acc",
        "eval/offline_nextsentence/acc_norm",
        "eval/offline_nextsentence/acc_mutual_info",
        "eval/offline_perplexity/word_perplexity",
        "eval/offline_perplexity/byte_perplexity",
        "eval/offline_perplexity/bits_per_byte",
    }
    assert (
        json.loads(output_path.read_text())["offline_suite"]["tasks"]
        == small_suite.manifest["tasks"]
    )

    # The model is back in train mode and the global random state is untouched.
    assert tiny_gpt2.training
    assert random.getstate() == python_state
    assert torch.equal(torch.random.get_rng_state(), torch_state)


def test_scores_do_not_depend_on_the_batch_size(
    small_suite_config, tiny_gpt2, bpe_tokenizer, corpus_file, suite_cache_dir
):
    scores = {}
    for batch_size in (1, 4, 5):
        results = evaluate_model(
            tiny_gpt2,
            bpe_tokenizer,
            "offline",
            batch_size=batch_size,
            limit=12,
            offline_text=[corpus_file],
            offline_cache_dir=suite_cache_dir,
            offline_config=small_suite_config,
            bootstrap_iters=0,
        )
        scores[batch_size] = flatten_metrics(results)
    close_scores(scores[1], scores[4])
    close_scores(scores[1], scores[5])


@pytest.mark.parametrize("drop", ["pad", "pad_and_eos"])
def test_tokenizer_without_pad_token(
    small_suite_config, tiny_gpt2, bpe_tokenizer, corpus_file, suite_cache_dir, drop
):
    tokenizer = copy.deepcopy(bpe_tokenizer)
    tokenizer.pad_token = None
    if drop == "pad_and_eos":
        tokenizer.eos_token = None
        tokenizer.bos_token = None
    results = evaluate_model(
        tiny_gpt2,
        tokenizer,
        "offline_nextsentence",
        batch_size=4,
        limit=8,
        offline_text=[corpus_file],
        offline_cache_dir=suite_cache_dir,
        offline_config=small_suite_config,
    )
    assert 0 <= results["results"]["offline_nextsentence"]["acc,none"] <= 1
    # The caller's tokenizer is left as it was.
    assert tokenizer.pad_token is None


def test_offline_tasks_need_a_corpus(tiny_gpt2, bpe_tokenizer):
    with pytest.raises(ValueError, match="offline_text"):
        evaluate_model(tiny_gpt2, bpe_tokenizer, "offline")
    with pytest.raises(ValueError, match="`batch_size`"):
        evaluate_model(tiny_gpt2, bpe_tokenizer, "offline", batch_size=0)


@pytest.mark.slow
def test_in_memory_and_reloaded_scores_agree(
    small_suite_config, tiny_gpt2, bpe_tokenizer, corpus_file, suite_cache_dir, tmp_path, capsys
):
    options = dict(
        limit=15,
        offline_text=[corpus_file],
        offline_cache_dir=suite_cache_dir,
        offline_config=small_suite_config,
    )
    in_memory = flatten_metrics(
        evaluate_model(tiny_gpt2, bpe_tokenizer, "offline", batch_size=4, **options)
    )

    run_dir = tmp_path / "run"
    tiny_gpt2.save_pretrained(run_dir)
    bpe_tokenizer.save_pretrained(run_dir)
    reloaded = flatten_metrics(
        evaluate_pretrained(str(run_dir), "offline", device="cpu", batch_size=4, **options)
    )
    close_scores(in_memory, reloaded, tolerance=1e-6)

    # The console command: lm-eval's JSON at --output_path and a Markdown table on stdout.
    # Its default suite settings differ from the small suite, so it builds (and caches) its own.
    output_path = tmp_path / "eval" / "results.json"
    argv = [
        "eval",
        str(run_dir),
        "--tasks",
        "offline_nextsentence",
        "--offline_text",
        str(corpus_file),
    ]
    argv += ["--offline_cache_dir", str(tmp_path / "cache"), "--output_path", str(output_path)]
    argv += ["--limit", "10", "--batch_size", "5", "--device", "cpu"]
    assert main(argv) == 0
    assert "|offline_nextsentence|" in capsys.readouterr().out
    saved = json.loads(output_path.read_text())
    assert saved["n-samples"]["offline_nextsentence"]["effective"] == 10


def test_offline_suite_on_a_model_with_few_positions(
    make_tiny_gpt2, bpe_tokenizer, corpus_file, suite_cache_dir
):
    # With 64 positions, one of these 100 sentence endings (74 tokens of the 512-entry BPE)
    # cannot be scored: it is left out and counted, and every other item is scored.
    config = OfflineSuiteConfig(num_lastword_items=10, num_nextsentence_items=100, num_documents=2)
    suite = build_offline_suite([corpus_file], cache_dir=suite_cache_dir, config=config)
    results = evaluate_model(
        make_tiny_gpt2(n_positions=64),
        bpe_tokenizer,
        "offline",
        batch_size=16,
        offline_text=[corpus_file],
        offline_cache_dir=suite_cache_dir,
        offline_config=config,
        bootstrap_iters=0,
    )

    # The unscorable items are exactly those with an ending over 64 tokens (with or without
    # the context before it: acc_mutual_info scores both).
    with open(suite.manifest["tasks"]["offline_nextsentence"]["data_file"]) as handle:
        items = [json.loads(line) for line in handle]
    too_long = sum(
        max(len(bpe_tokenizer(" " + ending)["input_ids"]) for ending in item["endings"]) > 64
        for item in items
    )
    assert too_long == 1
    fit = results["offline_suite"]["context_fit"]
    assert fit["offline_nextsentence"] == {
        "max_length": 64,
        "num_items": 100,
        "num_scored": 99,
        "num_unscorable": 1,
        "num_context_truncated": fit["offline_nextsentence"]["num_context_truncated"],
    }
    assert fit["offline_nextsentence"]["num_context_truncated"] > 0
    assert fit["offline_lastword"]["num_unscorable"] == 0
    assert "offline_perplexity" not in fit  # rolling windows fit any context
    assert results["n-samples"]["offline_nextsentence"]["effective"] == 99
    assert results["n-samples"]["offline_lastword"]["effective"] == 10
    assert len(flatten_metrics(results)) == 8
    assert "offline_nextsentence: 1 of 100 items left out" in format_results_table(results)
