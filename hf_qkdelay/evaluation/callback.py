"""lm-eval inside Trainer training: every N updates through a callback, and once at the end."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from transformers import TrainerCallback

from .arguments import LMEvalArguments
from .harness import evaluate_model
from .results import flatten_metrics, write_results

logger = logging.getLogger(__name__)

# Written into the run folder by `run_final_lm_eval`.
RESULTS_FILE_NAME = "lm_eval_results.json"


class LMEvalCallback(TrainerCallback):
    """Run lm-eval tasks every `interval_steps` optimizer updates during training.

    Metrics go into the Trainer's logs as `eval/<task>/<metric>` (so into `log_history`
    and every reporting integration). The model goes back to train mode afterwards and
    the global random state is untouched, so training continues as it would have. The
    update that ends training is left to `run_final_lm_eval`, which the recipe calls.
    """

    def __init__(
        self,
        trainer,
        tasks: str | list[str],
        interval_steps: int,
        tokenizer=None,
        **evaluate_kwargs,
    ):
        if interval_steps < 1:
            raise ValueError(
                f"`eval_interval_steps`={interval_steps}: the callback needs a positive number "
                "of updates; 0 means only at the end (`run_final_lm_eval`)."
            )
        _check_unsharded(trainer)
        self.trainer = trainer
        self.tasks = tasks
        self.interval_steps = interval_steps
        self.tokenizer = _resolve_tokenizer(trainer, tokenizer)
        self.evaluate_kwargs = evaluate_kwargs

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # Only every `interval_steps` updates.
        if state.global_step % self.interval_steps != 0:
            return
        # The last update is evaluated by `run_final_lm_eval`; running it here would repeat it.
        if state.max_steps and state.global_step >= state.max_steps:
            return

        # NOTE: every process evaluates (see `evaluate_model`); only local rank 0 gets metrics.
        results = evaluate_model(model, self.tokenizer, self.tasks, **self.evaluate_kwargs)
        metrics = flatten_metrics(results)
        if metrics:
            self.trainer.log(metrics)


def attach_lm_eval(trainer, lm_eval_args: LMEvalArguments, tokenizer=None) -> LMEvalCallback | None:
    """Add an `LMEvalCallback` to `trainer` when `eval_tasks` and `eval_interval_steps` ask for one."""
    if not lm_eval_args.enabled or lm_eval_args.eval_interval_steps == 0:
        return None
    callback = LMEvalCallback(
        trainer,
        lm_eval_args.task_names(),
        lm_eval_args.eval_interval_steps,
        tokenizer=tokenizer,
        **lm_eval_args.evaluate_kwargs(),
    )
    trainer.add_callback(callback)
    return callback


def run_final_lm_eval(
    trainer,
    lm_eval_args: LMEvalArguments,
    output_dir: str | os.PathLike | None = None,
    tokenizer=None,
) -> dict[str, float]:
    """Evaluate `trainer.model` on `eval_tasks`; write `lm_eval_results.json` into the run folder.

    `output_dir` defaults to `trainer.args.output_dir`. The metrics are logged through
    `trainer.log` as `eval/<task>/<metric>` and returned (empty when `eval_tasks` is None).
    """
    if not lm_eval_args.enabled:
        return {}
    _check_unsharded(trainer)
    results = evaluate_model(
        trainer.model,
        _resolve_tokenizer(trainer, tokenizer),
        lm_eval_args.task_names(),
        **lm_eval_args.evaluate_kwargs(),
    )
    metrics = flatten_metrics(results)
    if results and trainer.is_world_process_zero():
        path = write_results(
            results, Path(output_dir or trainer.args.output_dir) / RESULTS_FILE_NAME
        )
        logger.info("lm-eval results written to %s", path)
    if metrics:
        trainer.log(metrics)
    return metrics


def _check_unsharded(trainer) -> None:
    # lm-eval runs `trainer.model` in one process; sharded parameters are not whole there.
    if getattr(trainer, "is_fsdp_enabled", False):
        raise ValueError(
            "lm-eval evaluation during training does not support FSDP yet (the parameters are "
            "sharded); evaluate the saved run folder with `hf-qkdelay eval` instead."
        )
    if getattr(trainer, "is_deepspeed_enabled", False):
        plugin = trainer.accelerator.state.deepspeed_plugin
        if plugin is not None and plugin.zero_stage == 3:
            raise ValueError(
                "lm-eval evaluation during training does not support DeepSpeed ZeRO-3 yet "
                "(the parameters are sharded); evaluate the saved run folder with "
                "`hf-qkdelay eval` instead."
            )


def _resolve_tokenizer(trainer, tokenizer):
    tokenizer = tokenizer if tokenizer is not None else getattr(trainer, "processing_class", None)
    if tokenizer is None:
        raise ValueError(
            "lm-eval needs a tokenizer: build the Trainer with `processing_class=tokenizer` "
            "or pass `tokenizer=`."
        )
    return tokenizer
