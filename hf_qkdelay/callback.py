"""Trainer integration: the optimizer factory hook-up and the callback that reports the delay."""

from __future__ import annotations

import json
import logging
import os

from transformers import TrainerCallback

from .arguments import QKDelayArguments
from .controller import MultiplierController
from .optim import MultiplierOptimizerFactory
from .rules import QK_DELAY_RULE, MultiplierRule, resolve_rules

logger = logging.getLogger(__name__)

PLAN_FILE = "qk_delay_plan.json"


class QKDelayCallback(TrainerCallback):
    """Resolves the delay window at the start of training and logs the multipliers.

    The multipliers themselves are applied by the optimizer's `MultiplierController`
    (built by `MultiplierOptimizerFactory`); this callback gives it the total number of
    updates, writes and logs the plan once, and adds `qk_delay/multiplier` (the value
    applied to the update just finished) to every training log.
    """

    def __init__(self):
        self.controller: MultiplierController | None = None

    def set_controller(self, controller: MultiplierController) -> None:
        self.controller = controller

    def on_train_begin(self, args, state, control, **kwargs):
        # The Trainer builds the optimizer before this event; without our factory there is
        # no controller, and the delay would silently not happen.
        if self.controller is None:
            raise RuntimeError(
                "QKDelayCallback found no multiplier controller: the Trainer's optimizer was not "
                "built by hf_qkdelay. Use `hf_qkdelay.attach_qk_delay(trainer, qk_args)` instead "
                "of adding the callback alone."
            )
        self.controller.resolve(state.max_steps)
        for name, schedule in self.controller.schedules.items():
            if not schedule.is_identity and schedule.steps > state.max_steps:
                logger.warning(
                    "multiplier rule `%s`: its window of %d updates is longer than this run's %d "
                    "updates, so its multiplier never returns to 1.",
                    name,
                    schedule.steps,
                    state.max_steps,
                )
        plan = self.plan(state.max_steps)
        for rule in plan["rules"]:
            logger.info(
                "multiplier rule `%s`: layers %s, %d governed tensors/slices (%d elements), schedule %s",
                rule["name"],
                rule["layers"],
                len(rule["governed"]),
                rule["governed_elements"],
                rule["schedule"],
            )
            for line in rule["governed"]:
                logger.info("  %s", line)
        if state.is_world_process_zero and args.output_dir:
            os.makedirs(args.output_dir, exist_ok=True)
            with open(os.path.join(args.output_dir, PLAN_FILE), "w", encoding="utf-8") as handle:
                json.dump(plan, handle, indent=2)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # Only training logs (with a loss) report the multiplier, once an update has run.
        if logs is None or "loss" not in logs or self.controller is None:
            return
        multipliers = self.controller.last_multipliers
        if not multipliers:
            return
        entries = {self.log_key(name): value for name, value in multipliers.items()}
        logs.update(entries)
        # The Trainer appended its copy of these logs to the history before calling us.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(entries)

    @staticmethod
    def log_key(rule_name: str) -> str:
        return (
            "qk_delay/multiplier"
            if rule_name == QK_DELAY_RULE
            else f"qk_delay/multiplier/{rule_name}"
        )

    def plan(self, total_updates: int | None = None) -> dict:
        """What the controller governs: per rule, its layers, slices and resolved schedule."""
        rules = []
        for entry in self.controller.rules:
            schedule = self.controller.schedules[entry.name]
            rules.append(
                {
                    "name": entry.name,
                    "layers": entry.layers,
                    "schedule": {
                        "kind": schedule.kind,
                        "factor": schedule.factor,
                        "steps": schedule.steps,
                    },
                    "governed": [piece.describe() for piece in entry.slices],
                    "governed_elements": entry.governed_numel,
                }
            )
        return {"total_updates": total_updates, "rules": rules}


def attach_qk_delay(trainer, qk_delay: QKDelayArguments | list[MultiplierRule]) -> QKDelayCallback:
    """Make `trainer` train with the Q/K delay (or any multiplier rules).

    Call after constructing the Trainer and before `trainer.train()`. The Trainer then
    builds its optimizer through `MultiplierOptimizerFactory`, with the optimizer class and
    arguments its `TrainingArguments` (or its `optimizer_cls_and_kwargs`) name and its own
    weight-decay rule, which also works under FSDP and DeepSpeed. The returned callback is
    placed first so that the multiplier reaches every logger.
    """
    if getattr(trainer, "optimizer", None) is not None:
        raise ValueError(
            "`attach_qk_delay`: this Trainer was given a ready-made optimizer (`optimizers=`), "
            "whose parameter groups cannot be changed; build it with `hf_qkdelay.build_optimizer` "
            "or let the Trainer create it."
        )
    rules = qk_delay.to_rules() if isinstance(qk_delay, QKDelayArguments) else list(qk_delay)
    # Fail now, before training writes anything, if a rule does not fit this model.
    resolve_rules(trainer.model, rules)
    callback = QKDelayCallback()
    factory_kwargs = {
        "rules": rules,
        "training_args": trainer.args,
        "decay_parameter_names": None,
        "on_build": callback.set_controller,
    }
    user_choice = getattr(trainer, "optimizer_cls_and_kwargs", None)
    if user_choice is not None:
        optimizer_cls, optimizer_kwargs = user_choice
        factory_kwargs.update(optimizer_cls=optimizer_cls, optimizer_kwargs=optimizer_kwargs)
    trainer.optimizer_cls_and_kwargs = (_TrainerFactory(trainer), factory_kwargs)
    trainer.callback_handler.callbacks.insert(0, callback)
    return callback


class _TrainerFactory:
    """Binds the factory to a Trainer so that the Trainer's own decay rule is used.

    The Trainer instantiates the first element of `optimizer_cls_and_kwargs` with no
    arguments, so this object returns itself when called without a model.
    """

    def __init__(self, trainer):
        self.trainer = trainer

    def __call__(self, model=None, **kwargs):
        if model is None:
            return self
        kwargs["decay_parameter_names"] = self.trainer.get_decay_parameter_names(model)
        return MultiplierOptimizerFactory()(model, **kwargs)
