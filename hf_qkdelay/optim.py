"""Parameter groups and optimizers for multiplier rules, with or without the Trainer.

The data path: rules -> selected parameters/slices -> parameter groups -> optimizer ->
`MultiplierController` hooks. Groups follow the Trainer's weight-decay rules (no decay on
biases and norms); each rule's whole parameters get groups of their own, tagged with the
rule's name, so their learning rate can be scaled; fused slices stay in the ordinary groups
and are corrected after each step. Every trainable parameter lands in exactly one group.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from .controller import RULE_KEY, MultiplierController
from .rules import MultiplierRule, ResolvedRule, resolve_rules

logger = logging.getLogger(__name__)

# Optimizers whose update is not proportional to the learning rate they are given, by
# class name: a multiplier on their lr would not scale their update.
UNSUPPORTED_OPTIMIZERS = {
    "LBFGS": "it runs a line search, so its step is not proportional to lr",
    "Rprop": "lr only sets its initial step sizes, which then adapt on their own",
    "SparseAdam": "it updates only the rows a sparse gradient touches; use AdamW",
    "AdamWScheduleFree": "schedule-free averaging weights depend on lr",
    "SGDScheduleFree": "schedule-free averaging weights depend on lr",
    "RAdamScheduleFree": "schedule-free averaging weights depend on lr",
    "Prodigy": "it estimates its own step size from lr-scaled statistics",
    "DAdaptAdam": "it estimates its own step size from lr-scaled statistics",
    "DAdaptSGD": "it estimates its own step size from lr-scaled statistics",
    "DAdaptAdaGrad": "it estimates its own step size from lr-scaled statistics",
    "LOMO": "it updates inside the backward pass, with no optimizer step to hook",
    "AdaLomo": "it updates inside the backward pass, with no optimizer step to hook",
}


def check_optimizer_supported(
    optimizer_cls: type[torch.optim.Optimizer], optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Refuse optimizers whose update a learning-rate multiplier would not scale.

    Called with the class alone before construction, and with the instance after it (some
    optimizers are supported only with some settings).
    """
    name = optimizer_cls.__name__
    reason = UNSUPPORTED_OPTIMIZERS.get(name)
    if reason is None and name == "Adafactor" and optimizer is not None:
        defaults = optimizer.defaults
        if defaults.get("relative_step") or defaults.get("warmup_init"):
            reason = "with `relative_step=True` it computes its own step size and ignores lr"
        elif "relative_step" not in defaults and "beta2_decay" in defaults:
            reason = "torch's Adafactor uses min(lr, 1/sqrt(t)) as its step size"
    if reason is not None:
        raise ValueError(
            f"optimizer {name} is not supported by learning-rate multipliers: {reason}. Supported: "
            "optimizers whose update is proportional to lr, e.g. AdamW, Adam, SGD (with momentum), "
            "Lion, and transformers' Adafactor with `relative_step=False` and a fixed lr."
        )


def default_decay_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters the Trainer would apply weight decay to."""
    from transformers import Trainer

    # The Trainer's rule (LayerNorm modules and *bias*/*norm* names are not decayed) does not
    # use the Trainer instance; calling it keeps our groups identical to the Trainer's.
    return list(Trainer.get_decay_parameter_names(None, model))


def build_param_groups(
    model: nn.Module,
    rules: Sequence[ResolvedRule],
    weight_decay: float = 0.0,
    decay_parameter_names: Iterable[str] | None = None,
) -> list[dict]:
    """Parameter groups: the Trainer's two (decay, no decay), then two per rule.

    The ungoverned groups come first so that the learning rate the Trainer logs (the first
    group's) is the base one. Empty groups are dropped.
    """
    decay_names = set(
        default_decay_parameter_names(model)
        if decay_parameter_names is None
        else decay_parameter_names
    )
    owner: dict[int, str] = {}
    for entry in rules:
        for piece in entry.slices:
            if piece.is_whole:
                owner[id(piece.param)] = entry.name

    buckets: dict[tuple[str | None, bool], list[nn.Parameter]] = {}
    keys = [(None, True), (None, False)] + [
        (entry.name, d) for entry in rules for d in (True, False)
    ]
    for key in keys:
        buckets[key] = []
    for name, param in model.named_parameters():  # shared (tied) tensors are listed once
        if not param.requires_grad:
            continue
        buckets[(owner.get(id(param)), name in decay_names)].append(param)

    groups = []
    for (rule_name, decay), params in buckets.items():
        if params:
            groups.append(
                {
                    "params": params,
                    "weight_decay": weight_decay if decay else 0.0,
                    RULE_KEY: rule_name,
                }
            )
    _check_partition(model, groups)
    return groups


def _check_partition(model: nn.Module, groups: list[dict]) -> None:
    seen: dict[int, int] = {}
    for index, group in enumerate(groups):
        for param in group["params"]:
            if id(param) in seen:
                raise RuntimeError(f"a parameter is in groups {seen[id(param)]} and {index}")
            seen[id(param)] = index
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise RuntimeError(f"trainable parameters in no group: {missing[:5]}")


def describe_param_groups(groups: list[dict], names: dict[int, str]) -> list[dict]:
    """One summary per group: rule, number of tensors and elements, weight decay."""
    return [
        {
            "rule": group.get(RULE_KEY),
            "tensors": len(group["params"]),
            "elements": sum(p.numel() for p in group["params"]),
            "weight_decay": group["weight_decay"],
            "first": names.get(id(group["params"][0])),
        }
        for group in groups
    ]


def build_optimizer(
    model: nn.Module,
    rules: Sequence[MultiplierRule] | object,
    optimizer_cls: type[torch.optim.Optimizer] = torch.optim.AdamW,
    weight_decay: float = 0.0,
    decay_parameter_names: Iterable[str] | None = None,
    total_updates: int | None = None,
    on_build: Callable[[MultiplierController], None] | None = None,
    **optimizer_kwargs,
) -> torch.optim.Optimizer:
    """An optimizer whose updates follow the multiplier rules, for any training loop.

    `rules` is a list of `MultiplierRule` or a `QKDelayArguments`. `optimizer_kwargs` go to
    `optimizer_cls` (`lr`, `betas`, ...). `total_updates` resolves windows given as a
    fraction of training; the Trainer callback does this itself. The controller driving the
    multipliers is `optimizer.multiplier_controller`.
    """
    if hasattr(rules, "to_rules"):
        rules = rules.to_rules()
    resolved = resolve_rules(model, list(rules))
    groups = build_param_groups(model, resolved, weight_decay, decay_parameter_names)
    check_optimizer_supported(optimizer_cls)
    optimizer = optimizer_cls(groups, **optimizer_kwargs)
    check_optimizer_supported(optimizer_cls, optimizer)
    controller = MultiplierController(optimizer, resolved)
    if total_updates is not None:
        controller.resolve(total_updates)
    optimizer.multiplier_controller = controller

    names = {id(p): n for n, p in model.named_parameters()}
    for summary in describe_param_groups(groups, names):
        logger.info(
            "param group: rule=%s tensors=%d elements=%d weight_decay=%g (first: %s)",
            summary["rule"],
            summary["tensors"],
            summary["elements"],
            summary["weight_decay"],
            summary["first"],
        )
    if on_build is not None:
        on_build(controller)
    return optimizer


class MultiplierOptimizerFactory:
    """An optimizer factory in the form `Trainer(optimizer_cls_and_kwargs=...)` accepts.

    The Trainer calls `MultiplierOptimizerFactory()(model, **kwargs)` from `create_optimizer`,
    which it also does under FSDP and DeepSpeed (where an optimizer passed in `optimizers=`
    is refused or dropped). `kwargs` are those of `build_optimizer`, plus `training_args`
    from which the optimizer class and its arguments are read when `optimizer_cls` is None.
    """

    def __call__(
        self,
        model: nn.Module,
        *,
        rules,
        training_args=None,
        optimizer_cls=None,
        optimizer_kwargs: dict | None = None,
        **kwargs,
    ) -> torch.optim.Optimizer:
        optimizer_kwargs = dict(optimizer_kwargs or {})
        if optimizer_cls is None:
            from transformers import Trainer
            from transformers.trainer_optimizer import is_optimizer_factory

            optimizer_cls, from_args = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
            special = {"params", "model", "optimizer_dict"} & set(from_args)
            if is_optimizer_factory(optimizer_cls) or special:
                raise ValueError(
                    f"`optim`={training_args.optim!r} builds its own parameter groups, which "
                    "learning-rate multiplier rules cannot be combined with; choose e.g. "
                    "`adamw_torch`, `adamw_torch_fused`, `sgd` or `adafactor`."
                )
            optimizer_kwargs = {**from_args, **optimizer_kwargs}
        if training_args is not None and "weight_decay" not in kwargs:
            kwargs["weight_decay"] = training_args.weight_decay
        return build_optimizer(
            model, rules, optimizer_cls=optimizer_cls, **kwargs, **optimizer_kwargs
        )
