"""Arguments of the lm-eval evaluation that the recipe runs during and after training."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .tasks import TASK_SUITES, needs_offline_suite, parse_task_list

_SUITES_HELP = "; ".join(f"`{name}` = {','.join(tasks)}" for name, tasks in TASK_SUITES.items())


@dataclass
class LMEvalArguments:
    """Zero-shot evaluation with lm-evaluation-harness (usable with `HfArgumentParser`)."""

    eval_tasks: str | None = field(
        default=None,
        metadata={
            "help": (
                "Comma-separated lm-eval task names and suite names to run after training "
                f"({_SUITES_HELP}). None = no lm-eval evaluation."
            )
        },
    )
    eval_offline_text: list[str] | None = field(
        default=None,
        metadata={
            "help": (
                "Plain-text file(s) from which the offline suite is built (once, cached by "
                "content); needed when `eval_tasks` includes `offline` or an `offline_*` task. "
                "Use held-out text, e.g. the validation file. None = no offline suite."
            )
        },
    )
    eval_batch_size: int = field(
        default=8,
        metadata={
            "help": "Sequences per forward pass of lm-eval (>= 1); scores do not depend on it."
        },
    )
    eval_limit: float | None = field(
        default=None,
        metadata={
            "help": (
                "Items per task: a count (>= 1) or, below 1, a fraction of each task. "
                "None = every item. Scores on a limited run are not comparable to full ones."
            )
        },
    )
    eval_num_fewshot: int | None = field(
        default=None,
        metadata={
            "help": "Few-shot examples per item (>= 0). None = each task's default (0 for ours)."
        },
    )
    eval_interval_steps: int = field(
        default=0,
        metadata={
            "help": (
                "Also run the tasks every this many optimizer updates during training (>= 0), "
                "logging `eval/<task>/<metric>`. 0 = only once, at the end of training."
            )
        },
    )

    def __post_init__(self):
        if isinstance(self.eval_offline_text, str):
            self.eval_offline_text = [self.eval_offline_text]
        if self.eval_tasks is not None:
            # Raises for an empty list; unknown names are checked against lm-eval at run time.
            parse_task_list(self.eval_tasks)
        if self.eval_offline_text:
            for path in self.eval_offline_text:
                if not Path(path).expanduser().is_file():
                    raise ValueError(
                        f"`eval_offline_text` names {path!r}, which is not a file; give "
                        "plain-text files."
                    )
        if self.eval_batch_size < 1:
            raise ValueError(f"`eval_batch_size`={self.eval_batch_size} must be at least 1.")
        if self.eval_limit is not None:
            if self.eval_limit <= 0:
                raise ValueError(
                    f"`eval_limit`={self.eval_limit} must be a positive count or a fraction "
                    "in (0, 1), or None for every item."
                )
            if self.eval_limit >= 1:
                if self.eval_limit != int(self.eval_limit):
                    raise ValueError(
                        f"`eval_limit`={self.eval_limit}: a value of 1 or more is a count of "
                        "items and must be a whole number."
                    )
                self.eval_limit = int(self.eval_limit)
        if self.eval_num_fewshot is not None and self.eval_num_fewshot < 0:
            raise ValueError(f"`eval_num_fewshot`={self.eval_num_fewshot} must be 0 or more.")
        if self.eval_interval_steps < 0:
            raise ValueError(
                f"`eval_interval_steps`={self.eval_interval_steps} must be 0 (only at the end) "
                "or a positive number of updates."
            )

    @property
    def enabled(self) -> bool:
        return self.eval_tasks is not None

    def task_names(self) -> list[str]:
        """The expanded task list; raises when an offline task is asked for without text."""
        if self.eval_tasks is None:
            return []
        tasks = parse_task_list(self.eval_tasks)
        if needs_offline_suite(tasks) and not self.eval_offline_text:
            raise ValueError(
                f"`eval_tasks`={self.eval_tasks!r} includes the offline suite, which needs "
                "`eval_offline_text` (plain-text files, e.g. the validation file)."
            )
        return tasks

    def evaluate_kwargs(self) -> dict:
        """Keyword arguments of `evaluate_model` that these arguments set."""
        return {
            "batch_size": self.eval_batch_size,
            "limit": self.eval_limit,
            "num_fewshot": self.eval_num_fewshot,
            "offline_text": self.eval_offline_text,
        }
