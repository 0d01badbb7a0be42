"""Glue to lm-evaluation-harness: evaluate an in-memory model or a saved one.

The in-memory path wraps the model object in lm-eval's `HFLM` (no detour through disk); a
run folder or Hub id is loaded with the Auto classes and then takes the same path, so both
give the same scores. lm-eval is imported inside the functions: importing this module stays
cheap for the console command and the recipe.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import random
from contextlib import contextmanager

import numpy as np
import torch

from .context_fit import drop_items_longer_than_context
from .offline_suite import OfflineSuite, OfflineSuiteConfig, build_offline_suite
from .results import write_results
from .tasks import check_known_tasks, needs_offline_suite, parse_task_list

logger = logging.getLogger(__name__)


def evaluate_model(
    model,
    tokenizer,
    tasks: str | list[str],
    output_path: str | os.PathLike | None = None,
    *,
    batch_size: int = 8,
    limit: int | float | None = None,
    num_fewshot: int | None = None,
    offline_text: list[str | os.PathLike] | str | os.PathLike | None = None,
    offline_cache_dir: str | os.PathLike | None = None,
    offline_config: OfflineSuiteConfig | None = None,
    bootstrap_iters: int = 1000,
    max_length: int | None = None,
) -> dict:
    """Run lm-eval `tasks` on an in-memory causal LM and return lm-eval's results dict.

    `tasks` is a comma-separated string or a list of lm-eval task names and suite names
    (`standard`, `offline`); the offline tasks are built from `offline_text` (cached by
    content under `offline_cache_dir`). `limit` caps the items per task (a float below 1
    is a fraction). `bootstrap_iters` sets lm-eval's resamples for the standard errors of
    perplexity-type metrics (0 = none). Offline items with a continuation longer than the
    model's context (`max_length`, default its positions) are left out, and counted in
    `results["offline_suite"]["context_fit"]` (see `context_fit`). The model keeps its
    device; it leaves in the train/eval mode it came in, and the global random state is
    left as it was found.
    When `output_path` is given, the results are written there as JSON.

    Under a distributed launcher every process evaluates the whole suite on its own copy
    of the model (no collective calls, so no process waits on another), and lm-eval
    returns the results on local rank 0 only: the other processes get `{}`.
    """
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    if batch_size < 1:
        raise ValueError(f"`batch_size`={batch_size} must be a positive integer.")
    if limit is not None and limit <= 0:
        raise ValueError(f"`limit`={limit} must be positive (or None for every item).")
    if num_fewshot is not None and num_fewshot < 0:
        raise ValueError(f"`num_fewshot`={num_fewshot} must be 0 or more (or None).")
    task_names = parse_task_list(tasks)
    suite = _prepare_offline_suite(task_names, offline_text, offline_cache_dir, offline_config)
    task_manager = build_task_manager(task_names, suite)
    check_known_tasks(task_names, task_manager)

    # lm-eval sets a pad token on the tokenizer it is given when there is none; a copy
    # keeps the caller's tokenizer (often the Trainer's) as it was.
    if tokenizer.pad_token is None:
        tokenizer = copy.deepcopy(tokenizer)

    # lm-eval starts scoring from a BOS (else EOS) token; without either, use the model's.
    prefix_token_id = None
    if tokenizer.bos_token_id is None and tokenizer.eos_token_id is None:
        config = model.config
        prefix_token_id = (
            config.bos_token_id if config.bos_token_id is not None else config.eos_token_id
        )
        if prefix_token_id is None:
            raise ValueError(
                "`tokenizer` has neither a BOS nor an EOS token and the model config names "
                "none: lm-eval needs one to score text from its first token. Set "
                "`tokenizer.eos_token` (or `model.config.bos_token_id`)."
            )

    was_training = model.training
    try:
        with _preserved_random_state():
            lm = HFLM(
                pretrained=model,
                tokenizer=tokenizer,
                backend="causal",
                batch_size=batch_size,
                max_length=max_length,
                prefix_token_id=prefix_token_id,
            )

            # The offline tasks are loaded here, to leave out the items the model cannot read.
            tasks_to_run: list = list(task_names)
            context_fit = {}
            if suite is not None:
                offline_names = [task for task in task_names if task in suite.task_names]
                offline_tasks = task_manager.load(offline_names)["tasks"]
                context_fit = drop_items_longer_than_context(offline_tasks, lm)
                tasks_to_run = [offline_tasks.get(task, task) for task in task_names]

            results = simple_evaluate(
                model=lm,
                tasks=tasks_to_run,
                num_fewshot=num_fewshot,
                limit=limit,
                task_manager=task_manager,
                bootstrap_iters=bootstrap_iters,
                log_samples=False,
            )
    finally:
        model.train(was_training)

    # lm-eval returns results on local rank 0 only (see the docstring).
    if results is None:
        return {}
    if suite is not None:
        results["offline_suite"] = {
            "directory": str(suite.directory),
            **suite.manifest,
            "context_fit": context_fit,
        }
    if output_path is not None:
        write_results(results, output_path)
    return results


def evaluate_pretrained(
    model_name_or_path: str,
    tasks: str | list[str],
    output_path: str | os.PathLike | None = None,
    *,
    device: str | None = None,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    **evaluate_kwargs,
) -> dict:
    """Load a run folder (or Hub id) with the Auto classes and call `evaluate_model`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_location(model_name_or_path)

    # Our model types register themselves with the Auto classes on import.
    try:
        import hf_qkdelay.models  # noqa: F401
    except ImportError:
        logger.debug("hf_qkdelay.models is not available; only stock model types load.")

    if dtype not in ("float32", "bfloat16", "float16", "auto"):
        raise ValueError(
            f"`dtype`={dtype!r} is not supported; use float32, bfloat16, float16 or auto."
        )
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(
        model_name_or_path, trust_remote_code=trust_remote_code
    )
    model = AutoModelForCausalLM.from_pretrained(
        model_name_or_path, dtype=torch_dtype, trust_remote_code=trust_remote_code
    ).to(device)
    model.eval()
    return evaluate_model(model, tokenizer, tasks, output_path, **evaluate_kwargs)


def check_model_location(model_name_or_path: str | os.PathLike) -> None:
    """Refuse a local path that cannot be a run folder, before the Hub is asked about it.

    Without this, a mistyped folder reaches `from_pretrained`, which takes it for a Hub id and
    fails with a message about the form of repo ids that never says the folder is missing.
    A value is taken for a local path when it is absolute, starts with `.` or `~`, or has more
    than one `/` (a Hub id is `name` or `namespace/name`).
    """
    text = os.fspath(model_name_or_path)
    accepted = "a run folder holding config.json, or a Hub model id `namespace/name`"
    path = os.path.expanduser(text)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ValueError(
                f"`MODEL`={text!r} is a folder without config.json, so no model can be loaded "
                f"from it; give {accepted}. A run folder gets config.json when the recipe saves "
                "the model at the end of training."
            )
        return
    if os.path.isabs(text) or text.startswith((".", "~")) or text.count("/") > 1:
        reason = "is a file, not a folder" if os.path.exists(path) else "does not exist"
        raise ValueError(f"`MODEL`={text!r} looks like a local path but {reason}; give {accepted}.")


def build_task_manager(task_names: list[str], suite: OfflineSuite | None = None):
    """An lm-eval `TaskManager` that sees the offline suite (when built).

    lm-eval's own task index (thousands of YAML files, seconds to index) is only loaded when
    a task outside the offline suite is asked for, and once per process: evaluations during
    training reuse it.
    """
    only_offline = suite is not None and all(task in suite.task_names for task in task_names)
    include_path = str(suite.directory) if suite is not None else None
    return _cached_task_manager(include_path, not only_offline)


@functools.lru_cache(maxsize=4)
def _cached_task_manager(include_path: str | None, include_defaults: bool):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path, include_defaults=include_defaults)


def _prepare_offline_suite(task_names, offline_text, cache_dir, config) -> OfflineSuite | None:
    if not needs_offline_suite(task_names):
        return None
    if not offline_text:
        raise ValueError(
            "The offline tasks need a corpus: pass `offline_text` (`--offline_text FILE ...` "
            "on the command line, `--eval_offline_text` in the recipe)."
        )
    return build_offline_suite(offline_text, cache_dir=cache_dir, config=config)


@contextmanager
def _preserved_random_state():
    # lm-eval seeds Python, NumPy and torch; an evaluation inside training must not change
    # the training's own random stream (dropout, data order).
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.random.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
