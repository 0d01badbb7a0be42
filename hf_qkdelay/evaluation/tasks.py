"""Task names: the suites one name away, and their expansion into lm-eval task names."""

from __future__ import annotations

import difflib

from .offline_suite import OFFLINE_TASKS

# The usual zero-shot suite for small pretrained decoders; needs the Hub or a warm cache.
STANDARD_TASKS = (
    "lambada_openai",
    "hellaswag",
    "piqa",
    "arc_easy",
    "arc_challenge",
    "winogrande",
    "openbookqa",
)

# A suite name -> the lm-eval tasks it stands for.
TASK_SUITES = {
    "standard": STANDARD_TASKS,
    "offline": OFFLINE_TASKS,
}


def parse_task_list(tasks: str | list[str] | tuple[str, ...]) -> list[str]:
    """Expand a comma-separated string (or a list) of task and suite names, keeping order.

    Suite names (`standard`, `offline`) expand to their tasks; duplicates are dropped.
    """
    if isinstance(tasks, str):
        tasks = [tasks]
    names = [name.strip() for entry in tasks for name in entry.split(",") if name.strip()]
    if not names:
        raise ValueError(
            f"`tasks`={tasks!r} names no task; give lm-eval task names or one of "
            f"{sorted(TASK_SUITES)}, comma-separated."
        )
    expanded: list[str] = []
    for name in names:
        for task in TASK_SUITES.get(name, (name,)):
            if task not in expanded:
                expanded.append(task)
    return expanded


def needs_offline_suite(tasks: list[str]) -> bool:
    return any(task in OFFLINE_TASKS for task in tasks)


def check_known_tasks(tasks: list[str], task_manager) -> None:
    """Raise `ValueError` for a name that neither lm-eval nor our suites know."""
    known = set(task_manager.all_tasks) | set(OFFLINE_TASKS)
    unknown = [task for task in tasks if task not in known]
    if not unknown:
        return
    hints = []
    for task in unknown:
        close = difflib.get_close_matches(task, known | set(TASK_SUITES), n=3)
        hints.append(f"{task!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    raise ValueError(
        f"`tasks` names unknown task(s): {'; '.join(hints)}. Accepted: lm-eval task, group or "
        f"tag names (`lm-eval ls tasks`) and the suites {sorted(TASK_SUITES)}."
    )
