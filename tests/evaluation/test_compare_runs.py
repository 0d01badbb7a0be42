"""The comparison table on hand-made run folders, against numbers worked out by hand."""

from __future__ import annotations

import csv
import json
import math

import pytest

from hf_qkdelay.cli import main
from hf_qkdelay.evaluation.compare import (
    compare_groups,
    find_group,
    group_runs,
    load_run,
)
from hf_qkdelay.evaluation.statistics import Summary, summarize, welch_interval

# Student t, 97.5% quantile, 4 degrees of freedom (from a printed table).
T_975_DF4 = 2.7764451051977987

BASE_CONFIG = {"model_type": "gpt2", "learning_rate": 0.0006, "qk_delay_factor": 0.1}


def write_run(root, name, *, layers, seed, perplexity, eval_loss=None, acc=None):
    folder = root / name
    folder.mkdir()
    results = {
        "perplexity": perplexity,
        "train_tokens": 1000,
        "seed": seed,
        "run_config": {**BASE_CONFIG, "qk_delay_layers": layers},
    }
    if eval_loss is not None:
        results["eval_loss"] = eval_loss
    (folder / "all_results.json").write_text(json.dumps(results))
    if acc is not None:
        lm_eval = {
            "results": {
                "offline_nextsentence": {
                    "alias": "offline_nextsentence",
                    "acc,none": acc,
                    "acc_stderr,none": 0.01,
                }
            }
        }
        (folder / "lm_eval_results.json").write_text(json.dumps(lm_eval))
    return folder


@pytest.fixture
def run_folders(tmp_path):
    # Baseline (no delay): perplexity 10, 12, 14 -> mean 12, std 2; acc .25 .30 .35.
    # Delayed (upper):     perplexity  8, 10, 12 -> mean 10, std 2; acc .30 .35 .40.
    # eval_loss: baseline 2.0 2.5 3.0 (mean 2.5, std .5); delayed only two seeds, 1.0 2.0.
    # One single-seed group (all layers) for the n = 1 case.
    runs = []
    for seed, (ppl, loss, acc) in enumerate([(10, 2.0, 0.25), (12, 2.5, 0.30), (14, 3.0, 0.35)]):
        runs.append(
            write_run(
                tmp_path,
                f"none-{seed}",
                layers="none",
                seed=seed,
                perplexity=ppl,
                eval_loss=loss,
                acc=acc,
            )
        )
    for seed, (ppl, loss, acc) in enumerate([(8, 1.0, 0.30), (10, 2.0, 0.35), (12, None, 0.40)]):
        runs.append(
            write_run(
                tmp_path,
                f"upper-{seed}",
                layers="upper",
                seed=seed,
                perplexity=ppl,
                eval_loss=loss,
                acc=acc,
            )
        )
    runs.append(write_run(tmp_path, "all-0", layers="all", seed=0, perplexity=11.0))
    return runs


def test_summary_uses_the_sample_std():
    summary = summarize([10.0, 12.0, 14.0])
    assert summary.mean == 12.0
    assert summary.std == pytest.approx(2.0, abs=1e-12)  # sqrt((4 + 0 + 4) / 2)
    assert summary.n == 3
    assert math.isnan(summarize([5.0]).std)


def test_welch_interval_with_equal_variances_matches_the_table():
    # se = sqrt(4/3 + 4/3) = sqrt(8/3); df = (8/3)^2 / (2 * (4/3)^2 / 2) = 4.
    difference = welch_interval(Summary(10.0, 2.0, 3), Summary(12.0, 2.0, 3))
    half_width = T_975_DF4 * math.sqrt(8 / 3)
    assert difference.difference == -2.0
    assert difference.degrees_of_freedom == pytest.approx(4.0, abs=1e-12)
    assert difference.ci_low == pytest.approx(-2.0 - half_width, abs=1e-9)
    assert difference.ci_high == pytest.approx(-2.0 + half_width, abs=1e-9)
    assert half_width == pytest.approx(4.533915871, abs=1e-8)


def test_welch_degrees_of_freedom_with_unequal_groups():
    # Group: 1.0, 2.0 (var .5, n 2); baseline var .25, n 3.
    # terms .25 and 1/12; df = (1/3)^2 / (.25^2 / 1 + (1/12)^2 / 2) = 288/171.
    difference = welch_interval(summarize([1.0, 2.0]), summarize([2.0, 2.5, 3.0]))
    assert difference.difference == pytest.approx(-1.0, abs=1e-12)
    assert difference.degrees_of_freedom == pytest.approx(288 / 171, abs=1e-12)
    assert difference.ci_low < -1.0 < difference.ci_high


def test_welch_interval_is_undefined_when_neither_group_varies():
    # se = 0 and df = 0/0: no interval, rather than [d, d], which would read as certainty.
    difference = welch_interval(summarize([3.0, 3.0]), summarize([2.0, 2.0, 2.0]))
    assert difference.difference == 1.0
    assert math.isnan(difference.ci_low) and math.isnan(difference.ci_high)
    assert math.isnan(difference.degrees_of_freedom)
    assert difference.undefined_reason == "no_spread"
    assert welch_interval(summarize([3.0]), summarize([2.0, 2.5])).undefined_reason == "single_run"
    # One side without spread is enough for an interval: df = n - 1 of the other side.
    one_sided = welch_interval(summarize([3.0, 3.0]), summarize([2.0, 2.5, 3.0]))
    assert one_sided.degrees_of_freedom == pytest.approx(2.0, abs=1e-12)


def test_zero_spread_prints_n_a_with_a_footnote_and_stores_null(tmp_path, capsys):
    runs = [
        write_run(tmp_path, f"{layers}-{seed}", layers=layers, seed=seed, perplexity=ppl)
        for layers, ppl in (("none", 12.0), ("upper", 10.0))
        for seed in range(2)
    ]
    out = tmp_path / "table"
    args = ["compare", *map(str, runs), "--baseline", "qk_delay_layers=none", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| perplexity | qk_delay_layers=upper | 2 | 10 ± 0 | -2 | n/a (1) |" in printed
    assert "(1) n/a: both groups have std 0, so the Welch degrees of freedom are 0/0" in printed
    assert "[-2, -2]" not in printed and "[0, 0]" not in printed

    (row,) = [
        r for r in json.loads((tmp_path / "table.json").read_text())["rows"] if r["difference"]
    ]
    assert row["ci_low"] is None and row["ci_high"] is None and row["degrees_of_freedom"] is None
    assert row["ci_undefined_reason"] == "no_spread"
    with open(tmp_path / "table.csv") as handle:
        (csv_row,) = [r for r in csv.DictReader(handle) if r["difference"]]
    assert csv_row["ci_low"] == "" and csv_row["ci_undefined_reason"] == "no_spread"


def test_table_rows_from_run_folders(run_folders):
    groups = group_runs([load_run(path) for path in run_folders])
    assert [group.label for group in groups] == [
        "qk_delay_layers=all",
        "qk_delay_layers=none",
        "qk_delay_layers=upper",
    ]
    baseline = find_group(groups, "qk_delay_layers=none")
    rows = {(row.metric, row.group): row for row in compare_groups(groups, baseline)}

    # Baseline rows come with no difference.
    base = rows["perplexity", "qk_delay_layers=none"]
    assert (base.summary.mean, base.summary.std, base.summary.n) == (12.0, 2.0, 3)
    assert base.difference is None

    upper = rows["perplexity", "qk_delay_layers=upper"]
    assert (upper.summary.mean, upper.summary.n) == (10.0, 3)
    assert upper.summary.std == pytest.approx(2.0, abs=1e-12)
    half_width = T_975_DF4 * math.sqrt(8 / 3)
    assert upper.difference.difference == pytest.approx(-2.0, abs=1e-12)
    assert upper.difference.ci_low == pytest.approx(-2.0 - half_width, abs=1e-9)
    assert upper.difference.ci_high == pytest.approx(-2.0 + half_width, abs=1e-9)

    # lm-eval scores: acc means .30 / .35, std .05 each, df 4.
    acc = rows["offline_nextsentence/acc", "qk_delay_layers=upper"]
    assert acc.summary.mean == pytest.approx(0.35, abs=1e-12)
    assert acc.summary.std == pytest.approx(0.05, abs=1e-12)
    acc_half_width = T_975_DF4 * math.sqrt(2 * 0.05**2 / 3)
    assert acc.difference.difference == pytest.approx(0.05, abs=1e-12)
    assert acc.difference.ci_low == pytest.approx(0.05 - acc_half_width, abs=1e-9)
    assert acc.difference.ci_high == pytest.approx(0.05 + acc_half_width, abs=1e-9)

    # A metric missing from one run counts only the runs that have it.
    loss = rows["eval_loss", "qk_delay_layers=upper"]
    assert loss.summary.n == 2
    assert loss.difference.degrees_of_freedom == pytest.approx(288 / 171, abs=1e-12)

    # A single-seed group has a mean but no std and no interval.
    single = rows["perplexity", "qk_delay_layers=all"]
    assert single.summary.n == 1 and math.isnan(single.summary.std)
    assert single.difference.difference == -1.0 and math.isnan(single.difference.ci_low)
    assert ("offline_nextsentence/acc", "qk_delay_layers=all") not in rows


def test_group_by_and_baseline_errors(run_folders):
    runs = [load_run(path) for path in run_folders]
    # Grouping by a key on which all runs agree merges everything into one group.
    (only,) = group_runs(runs, group_by=["model_type"])
    assert only.label == "all" and len(only.runs) == 7
    with pytest.raises(ValueError, match="`group_by`"):
        group_runs(runs, group_by=["no_such_key"])
    groups = group_runs(runs)
    with pytest.raises(ValueError, match="matches no group"):
        find_group(groups, "qk_delay_layers=top:2")
    with pytest.raises(ValueError, match="matches several groups"):
        find_group(groups, "model_type=gpt2")


def test_compare_command_prints_and_saves(run_folders, tmp_path, capsys):
    out = tmp_path / "table"
    assert (
        main(
            [
                "compare",
                *map(str, run_folders),
                "--baseline",
                "qk_delay_layers=none",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| perplexity | qk_delay_layers=upper | 3 | 10 ± 2 | -2 | [-6.534, 2.534] |" in printed
    assert "(baseline)" in printed
    # The single-seed group has no interval, and a footnote says why.
    assert "| perplexity | qk_delay_layers=all | 1 | 11 ± n/a | -1 | n/a (1) |" in printed
    assert "(1) n/a: a group with a single run has no standard deviation" in printed

    saved = json.loads((tmp_path / "table.json").read_text())
    assert saved["baseline"] == "qk_delay_layers=none"
    assert saved["groups"]["qk_delay_layers=upper"]["seeds"] == [0, 1, 2]
    single = next(r for r in saved["rows"] if r["group"] == "qk_delay_layers=all")
    assert single["std"] is None and single["ci_low"] is None
    with open(tmp_path / "table.csv") as handle:
        records = list(csv.DictReader(handle))
    assert len(records) == len(saved["rows"])
    assert (tmp_path / "table.md").read_text().startswith("| metric | group |")
