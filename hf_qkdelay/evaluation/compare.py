"""Comparing run folders: group runs by configuration, summarise each metric over seeds.

A run folder holds `all_results.json` (`perplexity`, `eval_loss`, `seed`, `run_config`)
and, when lm-eval ran, `lm_eval_results.json`. Runs whose `run_config` agree on the
grouping keys (by default every key) form a group, whose members differ only by seed.

A group's label lists the grouping keys whose values differ between groups, as
`key=value` joined by commas (e.g. `qk_delay_factor=0.1,qk_delay_layers=upper`), or `all`
when there is a single group. The baseline is named by its label or by any `key=value`
pairs that pick out exactly one group (e.g. `qk_delay_layers=none`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .results import flatten_metrics
from .statistics import NO_SPREAD, SINGLE_RUN, Difference, Summary, summarize, welch_interval

logger = logging.getLogger(__name__)

ALL_RESULTS_FILE = "all_results.json"
LM_EVAL_RESULTS_FILE = "lm_eval_results.json"
# Metrics from all_results.json, shown first and in this order.
RUN_METRICS = ("perplexity", "eval_loss")
# Footnotes of the Markdown table for an interval that cannot be drawn, by reason.
INTERVAL_NOTES = {
    SINGLE_RUN: "a group with a single run has no standard deviation, so no interval.",
    NO_SPREAD: (
        "both groups have std 0, so the Welch degrees of freedom are 0/0 and undefined: no "
        "interval is given (identical runs do not make the difference certain)."
    ),
}


@dataclass
class RunRecord:
    path: Path
    seed: int | None
    run_config: dict
    metrics: dict[str, float]  # "perplexity", "eval_loss", "<task>/<metric>"


@dataclass
class RunGroup:
    label: str
    config: dict  # the grouping keys and their values
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def seeds(self) -> list:
        return [run.seed for run in self.runs]


@dataclass(frozen=True)
class ComparisonRow:
    metric: str
    group: str
    summary: Summary
    difference: Difference | None  # None for the baseline group itself


def load_run(path: str | os.PathLike) -> RunRecord:
    """Read a run folder's `all_results.json` and, when present, `lm_eval_results.json`."""
    path = Path(path)
    results_path = path / ALL_RESULTS_FILE
    if not results_path.is_file():
        raise ValueError(f"`runs` names {str(path)!r}, which has no {ALL_RESULTS_FILE}.")
    all_results = json.loads(results_path.read_text())
    run_config = all_results.get("run_config")
    if not isinstance(run_config, dict):
        raise ValueError(
            f"{results_path} has no `run_config` dict: runs cannot be grouped without it "
            "(the pretraining recipe writes one)."
        )
    metrics = {
        name: float(all_results[name])
        for name in RUN_METRICS
        if isinstance(all_results.get(name), (int, float))
    }
    lm_eval_path = path / LM_EVAL_RESULTS_FILE
    if lm_eval_path.is_file():
        lm_eval_results = json.loads(lm_eval_path.read_text())
        metrics.update(flatten_metrics(lm_eval_results, prefix=None))
    return RunRecord(path, all_results.get("seed"), run_config, metrics)


def group_runs(runs: list[RunRecord], group_by: list[str] | None = None) -> list[RunGroup]:
    """Group runs that agree on the `group_by` keys of `run_config` (default: all keys)."""
    if not runs:
        raise ValueError("`runs` is empty: name at least one run folder.")
    keys = (
        sorted(set().union(*(run.run_config for run in runs)))
        if group_by is None
        else list(group_by)
    )
    known = set().union(*(run.run_config for run in runs))
    unknown = [key for key in keys if key not in known]
    if unknown:
        raise ValueError(
            f"`group_by` names {unknown}, which no run_config has; known keys: {sorted(known)}."
        )

    groups: dict[str, RunGroup] = {}
    configs = {}
    for run in runs:
        config = {key: run.run_config.get(key) for key in keys}
        configs.setdefault(_freeze(config), config)
        groups.setdefault(_freeze(config), RunGroup("", config)).runs.append(run)

    # Label each group by the keys whose values differ between groups.
    differing = [key for key in keys if len({_format_value(c[key]) for c in configs.values()}) > 1]
    for group in groups.values():
        group.label = (
            ",".join(f"{key}={_format_value(group.config[key])}" for key in differing) or "all"
        )
        seeds = [seed for seed in group.seeds if seed is not None]
        if len(set(seeds)) < len(seeds):
            logger.warning(
                "Group %s has repeated seeds %s: are two folders the same run?", group.label, seeds
            )
    return sorted(groups.values(), key=lambda group: group.label)


def find_group(groups: list[RunGroup], name: str) -> RunGroup:
    """The group labelled `name`, or the only group matching every `key=value` pair in it."""
    for group in groups:
        if group.label == name:
            return group
    pairs = [pair.partition("=") for pair in name.split(",")]
    matches = []
    if all(sep for _, sep, _ in pairs):
        matches = [
            group
            for group in groups
            if all(
                key in group.config and _format_value(group.config[key]) == value
                for key, _, value in pairs
            )
        ]
    if len(matches) == 1:
        return matches[0]
    labels = ", ".join(repr(group.label) for group in groups)
    reason = "matches several groups" if matches else "matches no group"
    raise ValueError(f"`baseline`={name!r} {reason}; the groups are: {labels}.")


def compare_groups(groups: list[RunGroup], baseline: RunGroup) -> list[ComparisonRow]:
    """One row per metric and group, the baseline group first within each metric."""
    metric_names = [
        name for name in RUN_METRICS if any(name in run.metrics for g in groups for run in g.runs)
    ]
    metric_names += sorted(
        {name for g in groups for run in g.runs for name in run.metrics} - set(RUN_METRICS)
    )
    ordered = [baseline] + [group for group in groups if group is not baseline]

    rows = []
    for metric in metric_names:
        baseline_values = [run.metrics[metric] for run in baseline.runs if metric in run.metrics]
        baseline_summary = summarize(baseline_values) if baseline_values else None
        for group in ordered:
            values = [run.metrics[metric] for run in group.runs if metric in run.metrics]
            if not values:
                continue
            summary = summarize(values)
            difference = None
            if group is not baseline and baseline_summary is not None:
                difference = welch_interval(summary, baseline_summary)
            rows.append(ComparisonRow(metric, group.label, summary, difference))
    return rows


def format_markdown(rows: list[ComparisonRow], baseline: str) -> str:
    lines = [
        f"| metric | group | seeds | mean ± std | Δ vs {baseline} | 95% CI (Welch) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    # Each reason for an undefined interval gets a numbered footnote, in order of appearance.
    notes: dict[str, int] = {}
    for row in rows:
        s, d = row.summary, row.difference
        if d is None:
            delta = "(baseline)" if row.group == baseline else "n/a"
        else:
            delta = _fmt(d.difference)
        if d is None:
            interval = ""
        elif d.undefined_reason is not None:
            number = notes.setdefault(d.undefined_reason, len(notes) + 1)
            interval = f"n/a ({number})"
        else:
            interval = f"[{_fmt(d.ci_low)}, {_fmt(d.ci_high)}]"
        lines.append(
            f"| {row.metric} | {row.group} | {s.n} | {_fmt(s.mean)} ± {_fmt(s.std)} | {delta} | {interval} |"
        )
    if notes:
        lines.append("")
        lines += [f"({number}) n/a: {INTERVAL_NOTES[reason]}" for reason, number in notes.items()]
    return "\n".join(lines)


def rows_as_records(rows: list[ComparisonRow]) -> list[dict]:
    """Flat records (NaN as None) for JSON and CSV."""
    records = []
    for row in rows:
        d = row.difference
        record = {
            "metric": row.metric,
            "group": row.group,
            "n": row.summary.n,
            "mean": row.summary.mean,
            "std": row.summary.std,
            "difference": d.difference if d else None,
            "ci_low": d.ci_low if d else None,
            "ci_high": d.ci_high if d else None,
            "degrees_of_freedom": d.degrees_of_freedom if d else None,
            "ci_undefined_reason": d.undefined_reason if d else None,
        }
        records.append(
            {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
        )
    return records


def write_comparison(
    rows: list[ComparisonRow], groups: list[RunGroup], baseline: RunGroup, out: str | os.PathLike
) -> list[Path]:
    """Write `<out>.md`, `<out>.json` and `<out>.csv` (the suffix of `out` is replaced)."""
    base = Path(out)
    base = base.with_suffix("") if base.suffix in (".md", ".json", ".csv") else base
    base.parent.mkdir(parents=True, exist_ok=True)
    records = rows_as_records(rows)

    markdown_path = base.with_name(base.name + ".md")
    markdown_path.write_text(format_markdown(rows, baseline.label) + "\n")
    json_path = base.with_name(base.name + ".json")
    json_path.write_text(
        json.dumps(
            {
                "baseline": baseline.label,
                "confidence": 0.95,
                "groups": {
                    group.label: {
                        "config": group.config,
                        "seeds": group.seeds,
                        "runs": [str(run.path) for run in group.runs],
                    }
                    for group in groups
                },
                "rows": records,
            },
            indent=2,
        )
    )
    csv_path = base.with_name(base.name + ".csv")
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]) if records else ["metric"])
        writer.writeheader()
        writer.writerows(records)
    return [markdown_path, json_path, csv_path]


def _format_value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _freeze(config: dict) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def _fmt(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4g}"
