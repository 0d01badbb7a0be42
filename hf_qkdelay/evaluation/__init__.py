"""Zero-shot evaluation with lm-evaluation-harness, an offline task suite, and run comparison.

- `harness`: `evaluate_model` (in-memory model) and `evaluate_pretrained` (run folder / Hub id);
- `offline_suite`: builds the offline lm-eval tasks from any plain-text corpus;
- `tasks`: suite names (`standard`, `offline`) and their expansion;
- `arguments`, `callback`: what the pretraining recipe uses;
- `results`: lm-eval's results dict as `eval/<task>/<metric>`, a Markdown table, a JSON file;
- `compare`, `statistics`: grouping run folders; mean, sample std and Welch t intervals.
"""

import importlib

# Public name -> submodule. Imported on first use, so that `hf-qkdelay compare` and the offline
# suite builder do not pay for importing transformers and lm-eval.
_EXPORTS = {
    "LMEvalArguments": "arguments",
    "LMEvalCallback": "callback",
    "RESULTS_FILE_NAME": "callback",
    "attach_lm_eval": "callback",
    "run_final_lm_eval": "callback",
    "evaluate_model": "harness",
    "evaluate_pretrained": "harness",
    "flatten_metrics": "results",
    "format_results_table": "results",
    "OFFLINE_TASKS": "offline_suite",
    "OfflineSuite": "offline_suite",
    "OfflineSuiteConfig": "offline_suite",
    "build_offline_suite": "offline_suite",
    "STANDARD_TASKS": "tasks",
    "TASK_SUITES": "tasks",
    "parse_task_list": "tasks",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "LMEvalArguments",
    "LMEvalCallback",
    "OFFLINE_TASKS",
    "OfflineSuite",
    "OfflineSuiteConfig",
    "RESULTS_FILE_NAME",
    "STANDARD_TASKS",
    "TASK_SUITES",
    "attach_lm_eval",
    "build_offline_suite",
    "evaluate_model",
    "evaluate_pretrained",
    "flatten_metrics",
    "format_results_table",
    "parse_task_list",
    "run_final_lm_eval",
]
