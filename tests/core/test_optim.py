"""One optimizer update with and without the delay, from the same weights and batch."""

import copy

import pytest
import torch
from transformers.optimization import Adafactor

from hf_qkdelay import (
    MultiplierRule,
    MultiplierSchedule,
    QKDelayArguments,
    build_optimizer,
    resolve_rules,
)
from hf_qkdelay.controller import RULE_KEY, UPDATES_KEY
from hf_qkdelay.optim import build_param_groups

from .helpers import tiny_gpt2, tiny_llama, tiny_neox

EPS32 = torch.finfo(torch.float32).eps


def one_update(model, qk_args, optimizer_cls=torch.optim.AdamW, steps=1, **optimizer_kwargs):
    model = copy.deepcopy(model)
    optimizer_kwargs.setdefault("lr", 1e-2)
    optimizer = build_optimizer(model, qk_args, optimizer_cls=optimizer_cls, **optimizer_kwargs)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        batch = torch.randint(0, model.config.vocab_size, (2, 16), generator=generator)
        model(batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def governed_mask(model, layers, projections=("q", "k")):
    """name -> boolean mask of the elements the delay governs."""
    from hf_qkdelay.selection import select_projections

    masks = {}
    for piece in select_projections(model, layers, projections):
        mask = masks.setdefault(piece.name, torch.zeros_like(piece.param, dtype=torch.bool))
        piece.view(mask).fill_(True)
    return masks


OPTIMIZERS = {
    "adamw": (torch.optim.AdamW, {"weight_decay": 0.0}),
    "sgd_momentum": (torch.optim.SGD, {"momentum": 0.9, "lr": 0.5}),
    "adafactor_fixed_lr": (
        Adafactor,
        {"relative_step": False, "scale_parameter": False, "warmup_init": False},
    ),
}


FAMILIES = {"gpt2": tiny_gpt2, "llama": tiny_llama, "neox": tiny_neox}


@pytest.mark.parametrize(
    "family, optimizer_name",
    [(f, o) for f in ("gpt2", "llama") for o in OPTIMIZERS] + [("neox", "adamw")],
)
def test_one_update_is_scaled_exactly_on_qk_of_chosen_layers(family, optimizer_name):
    initial = FAMILIES[family]()
    optimizer_cls, kwargs = OPTIMIZERS[optimizer_name]
    factor = 0.1
    baseline, _ = one_update(
        initial, QKDelayArguments(qk_delay_layers="none"), optimizer_cls, **kwargs
    )
    delayed, optimizer = one_update(
        initial, QKDelayArguments(qk_delay_factor=factor, qk_delay_steps=5), optimizer_cls, **kwargs
    )
    masks = governed_mask(initial, "upper")
    assert len(masks) == 4  # fused (weight, bias) or separate (q, k), in layers 2 and 3

    for (name, start), (_, base), (_, mine) in zip(
        initial.named_parameters(), baseline.named_parameters(), delayed.named_parameters()
    ):
        mask = masks.get(name)
        if mask is None:
            assert torch.equal(base, mine), f"{name} is not governed but changed"
            continue
        # Everything outside the Q/K part (V columns of a fused c_attn) is bit-identical.
        assert torch.equal(base[~mask], mine[~mask]), f"{name}: ungoverned part changed"
        base_update = (base - start).detach()[mask]
        my_update = (mine - start).detach()[mask]
        assert base_update.abs().max() > 0
        tolerance = 4 * EPS32 * start.detach().abs().max()  # float32 rounding of the weights
        assert torch.allclose(my_update, factor * base_update, rtol=0, atol=tolerance), name
    assert optimizer.param_groups[0][UPDATES_KEY] == 1
    assert optimizer.multiplier_controller.last_multipliers == {"qk_delay": factor}


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_factor_zero_freezes_the_governed_weights(family):
    initial = tiny_gpt2() if family == "gpt2" else tiny_llama()
    delayed, _ = one_update(
        initial, QKDelayArguments(qk_delay_factor=0.0, qk_delay_steps=3), steps=2
    )
    masks = governed_mask(initial, "upper")
    for (name, start), (_, mine) in zip(initial.named_parameters(), delayed.named_parameters()):
        if name in masks:
            assert torch.equal(start[masks[name]], mine[masks[name]]), name
            assert not torch.equal(start[~masks[name]], mine[~masks[name]]) or family == "llama"
        else:
            assert not torch.equal(start, mine), f"{name} did not train"


def test_lr_is_restored_after_each_step_for_the_scheduler():
    model = tiny_llama()
    optimizer = build_optimizer(
        model, QKDelayArguments(qk_delay_factor=0.25, qk_delay_steps=2), lr=1e-3
    )
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=1, gamma=0.5
    )  # chainable: reads group lr
    for _ in range(3):
        model(
            torch.ones(1, 4, dtype=torch.long), labels=torch.ones(1, 4, dtype=torch.long)
        ).loss.backward()
        optimizer.step()
        scheduler.step()
    assert [group["lr"] for group in optimizer.param_groups] == [pytest.approx(1e-3 / 8)] * len(
        optimizer.param_groups
    )


def test_skipped_mixed_precision_step_is_not_counted():
    model = tiny_gpt2()
    initial = copy.deepcopy(model)
    optimizer = build_optimizer(
        model, QKDelayArguments(qk_delay_factor=0.0, qk_delay_steps=1), lr=1e-2
    )
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    batch = torch.ones(1, 8, dtype=torch.long)

    scaler.scale(model(batch, labels=batch).loss).backward()
    next(model.parameters()).grad[0, 0] = float("inf")  # an overflow: the scaler skips the step
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad()
    assert optimizer.param_groups[0][UPDATES_KEY] == 0
    for (name, a), (_, b) in zip(initial.named_parameters(), model.named_parameters()):
        assert torch.equal(a, b), name

    # The first update that happens is still update 0, inside the window (factor 0).
    scaler.scale(model(batch, labels=batch).loss).backward()
    scaler.step(optimizer)
    assert optimizer.param_groups[0][UPDATES_KEY] == 1
    assert optimizer.multiplier_controller.last_multipliers == {"qk_delay": 0.0}
    assert torch.equal(
        initial.transformer.h[3].attn.c_attn.weight[:, :64],
        model.transformer.h[3].attn.c_attn.weight[:, :64],
    )


def test_weight_decay_groups_follow_the_trainer_rule():
    from transformers import Trainer

    model = tiny_llama(attention_bias=True)
    resolved = resolve_rules(model, QKDelayArguments().to_rules())
    groups = build_param_groups(model, resolved, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = set(Trainer.get_decay_parameter_names(None, model))
    by_key = {(g[RULE_KEY], g["weight_decay"]): {names[id(p)] for p in g["params"]} for g in groups}
    assert list(by_key) == [(None, 0.1), (None, 0.0), ("qk_delay", 0.1), ("qk_delay", 0.0)]
    assert by_key[("qk_delay", 0.1)] == {
        f"model.layers.{i}.self_attn.{p}_proj.weight" for i in (2, 3) for p in ("q", "k")
    }
    assert by_key[("qk_delay", 0.0)] == {
        f"model.layers.{i}.self_attn.{p}_proj.bias" for i in (2, 3) for p in ("q", "k")
    }
    for (_, weight_decay), members in by_key.items():
        assert all((name in decay) == (weight_decay > 0) for name in members)
    assert not any("norm" in name or name.endswith("bias") for name in by_key[(None, 0.1)])


def test_tied_embeddings_are_counted_once():
    model = tiny_gpt2()
    assert model.lm_head.weight is model.transformer.wte.weight
    groups = build_param_groups(
        model, resolve_rules(model, QKDelayArguments().to_rules()), weight_decay=0.1
    )
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == len(list(model.parameters()))
    assert sum(p.numel() for p in grouped) == model.num_parameters()
    # GPT-2's Q/K are slices of c_attn: they stay in the ordinary groups.
    assert [g[RULE_KEY] for g in groups] == [None, None]


def test_general_rules_with_a_name_pattern_and_two_schedules(tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        "rules:\n"
        "  - {name: upper_qk, layers: upper, projections: [q, k], schedule: {kind: linear, factor: 0.2, steps: 4}}\n"
        "  - {name: embeddings, params: 'wte', schedule: {kind: constant, factor: 0.5, steps: 2}}\n"
    )
    model = tiny_gpt2()
    initial = copy.deepcopy(model)
    qk_args = QKDelayArguments(qk_delay_rules=str(rules_file))
    baseline, _ = one_update(initial, QKDelayArguments(qk_delay_layers="none"))
    delayed, optimizer = one_update(initial, qk_args)
    assert optimizer.multiplier_controller.last_multipliers == {"upper_qk": 0.2, "embeddings": 0.5}
    start, base, mine = (m.transformer.wte.weight.detach() for m in (initial, baseline, delayed))
    assert torch.allclose(
        mine - start, 0.5 * (base - start), rtol=0, atol=4 * EPS32 * start.abs().max()
    )


@pytest.mark.parametrize(
    "rules_text, message",
    [
        (
            "rules:\n  - {name: a, params: 'no_such_param', schedule: {factor: 0.5, steps: 2}}\n",
            "selects no trainable",
        ),
        (
            "rules:\n  - {name: a, layers: all, schedule: {factor: 0.5, steps: 2}}\n"
            "  - {name: b, layers: upper, projections: [k], schedule: {factor: 0.5, steps: 2}}\n",
            "selected by rule `b` and by rule `a`",
        ),
        ("rules:\n  - {name: a, layers: all, heads: 3}\n", "unknown keys"),
        ("rules:\n  - {name: a, layers: all, params: wte}\n", "exactly one of"),
        ("rules: []\n", "non-empty"),
    ],
)
def test_bad_rules(tmp_path, rules_text, message):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(rules_text)
    with pytest.raises(ValueError, match=message):
        build_optimizer(tiny_gpt2(), QKDelayArguments(qk_delay_rules=str(rules_file)))


def test_rules_in_python():
    model = tiny_llama()
    rule = MultiplierRule(
        "slow_v", MultiplierSchedule("cosine", 0.3, 10), layers="0-1", projections=("v",)
    )
    optimizer = build_optimizer(model, [rule], lr=1e-3)
    governed = [g for g in optimizer.param_groups if g[RULE_KEY] == "slow_v"]
    assert {id(p) for g in governed for p in g["params"]} == {
        id(model.model.layers[i].self_attn.v_proj.weight) for i in (0, 1)
    }


@pytest.mark.parametrize(
    "optimizer_cls, kwargs, message",
    [
        (torch.optim.LBFGS, {}, "line search"),
        (torch.optim.Rprop, {}, "initial step sizes"),
        (Adafactor, {"lr": None}, "relative_step=True"),
        (torch.optim.Adafactor, {}, "min\\(lr, 1/sqrt\\(t\\)\\)"),
    ],
)
def test_unsupported_optimizers_are_refused(optimizer_cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_optimizer(tiny_gpt2(), QKDelayArguments(), optimizer_cls=optimizer_cls, **kwargs)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"qk_delay_factor": 1.2}, "qk_delay_factor"),
        ({"qk_delay_factor": -0.5}, "qk_delay_factor"),
        ({"qk_delay_steps": -3}, "qk_delay_steps"),
        ({"qk_delay_schedule": "step"}, "qk_delay_schedule"),
        ({"qk_delay_targets": "q,o"}, "qk_delay_targets"),
        ({"qk_delay_targets": "q,q"}, "qk_delay_targets"),
        ({"qk_delay_layers": "9-3"}, "qk_delay_layers"),
        ({"qk_delay_layers": "top"}, "qk_delay_layers"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        QKDelayArguments(**kwargs)


def test_fraction_window_in_a_plain_loop_needs_the_total():
    model = tiny_gpt2()
    optimizer = build_optimizer(model, QKDelayArguments(qk_delay_steps=0.5), lr=1e-3)
    batch = torch.ones(1, 4, dtype=torch.long)
    model(batch, labels=batch).loss.backward()
    with pytest.raises(RuntimeError, match="never resolved"):
        optimizer.step()
    optimizer = build_optimizer(
        model, QKDelayArguments(qk_delay_steps=0.5), lr=1e-3, total_updates=10
    )
    assert optimizer.multiplier_controller.schedules["qk_delay"].steps == 5
