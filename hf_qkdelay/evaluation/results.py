"""lm-eval's results dict: flat metric names, the Markdown table, the JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path


def flatten_metrics(results: dict, prefix: str | None = "eval") -> dict[str, float]:
    """`{"<prefix>/<task>/<metric>": value}` for every numeric metric, standard errors left out.

    With `prefix=None` the keys are `<task>/<metric>`.

    lm-eval keys metrics as `"<metric>,<filter>"`; the default filter `none` is dropped and
    any other is appended as `<metric>_<filter>`.
    """
    flat = {}
    for task, metrics in results.get("results", {}).items():
        for key, value in metrics.items():
            metric, _, filter_name = key.partition(",")
            if (
                "_stderr" in metric
                or not isinstance(value, (int, float))
                or isinstance(value, bool)
            ):
                continue
            if not filter_name:  # "alias", "name", "sample_len" and other bookkeeping
                continue
            name = metric if filter_name == "none" else f"{metric}_{filter_name}"
            flat[f"{task}/{name}" if prefix is None else f"{prefix}/{task}/{name}"] = float(value)
    return flat


def format_results_table(results: dict) -> str:
    """lm-eval's Markdown table of the results (and of the groups, when there are any), then
    a line per offline task whose items did not all fit the model's context."""
    from lm_eval.utils import make_table

    table = make_table(results)
    if results.get("groups"):
        table += "\n" + make_table(results, "groups")
    # Offline items the model could not read are named under the table, next to the scores.
    for task, fit in results.get("offline_suite", {}).get("context_fit", {}).items():
        if fit["num_unscorable"]:
            table += (
                f"\n{task}: {fit['num_unscorable']} of {fit['num_items']} items left out (an "
                f"ending longer than the model's context of {fit['max_length']} tokens)."
            )
    return table


def write_results(results: dict, output_path: str | os.PathLike) -> Path:
    """Write lm-eval's results dict as JSON (values it cannot serialise become strings)."""
    from lm_eval.utils import handle_non_serializable

    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(
        json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False)
    )
    return output_path
