"""The delay through transformers' Trainer: identity, logging, accumulation, resume."""

import json

import pytest
import torch

from hf_qkdelay import QKDelayArguments, attach_qk_delay
from hf_qkdelay.callback import PLAN_FILE
from hf_qkdelay.controller import UPDATES_KEY

from .helpers import assert_models_equal, make_trainer, tiny_gpt2, tiny_llama, token_blocks

MODELS = {"gpt2": tiny_gpt2, "llama": tiny_llama}


@pytest.fixture(scope="module")
def dataset(bpe_tokenizer, shakespeare_text):
    return token_blocks(bpe_tokenizer, shakespeare_text, 64)


def multipliers(trainer, after_step=0):
    return [
        entry["qk_delay/multiplier"]
        for entry in trainer.state.log_history
        if "qk_delay/multiplier" in entry and entry["step"] > after_step
    ]


@pytest.mark.parametrize("family", list(MODELS))
@pytest.mark.parametrize(
    "qk_args", [{"qk_delay_factor": 1.0}, {"qk_delay_layers": "none"}], ids=["factor1", "none"]
)
def test_no_delay_is_bit_identical_to_the_stock_trainer(family, qk_args, dataset, tmp_path):
    # Dropout on, weight decay on: RNG use and the decay groups must match the Trainer's own.
    build = MODELS[family]
    extra = {"dropout": 0.1} if family == "gpt2" else {"attention_dropout": 0.1}
    stock = build(**extra)
    make_trainer(stock, dataset, tmp_path / "stock", weight_decay=0.1).train()
    ours = build(**extra)
    trainer = make_trainer(ours, dataset, tmp_path / "ours", weight_decay=0.1)
    attach_qk_delay(trainer, QKDelayArguments(**qk_args))
    trainer.train()
    assert_models_equal(stock, ours)


@pytest.mark.parametrize("family", list(MODELS))
def test_multiplier_is_logged_every_step_and_plan_written_once(family, dataset, tmp_path):
    trainer = make_trainer(
        MODELS[family](), dataset, tmp_path, max_steps=6, lr_scheduler_type="cosine", warmup_steps=2
    )
    attach_qk_delay(
        trainer,
        QKDelayArguments(qk_delay_factor=0.1, qk_delay_steps=0.5, qk_delay_schedule="linear"),
    )
    trainer.train()
    # Window: 0.5 of 6 updates = 3; the value logged at step s is the one applied to update s - 1.
    assert multipliers(trainer) == pytest.approx([0.1, 0.4, 0.7, 1.0, 1.0, 1.0], abs=1e-12)
    # The Trainer's logged lr is the base (first) group's, untouched by the delay.
    lrs = [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e]
    assert lrs[:3] == pytest.approx([0.0, 1.5e-3, 3e-3])  # warmup peak, not scaled by m
    plan = json.loads((tmp_path / PLAN_FILE).read_text())
    (rule,) = plan["rules"]
    assert (
        rule["layers"] == [2, 3] and rule["schedule"]["steps"] == 3 and plan["total_updates"] == 6
    )
    assert len(rule["governed"]) == 8 if family == "gpt2" else 4
    assert (
        "c_attn.weight[q: features 0:32" in rule["governed"][0]
        or "q_proj.weight" in rule["governed"][0]
    )


def test_gradient_accumulation_advances_once_per_update(dataset, tmp_path):
    trainer = make_trainer(
        tiny_llama(), dataset, tmp_path, max_steps=4, gradient_accumulation_steps=3
    )
    attach_qk_delay(trainer, QKDelayArguments(qk_delay_factor=0.25, qk_delay_steps=2))
    trainer.train()
    assert multipliers(trainer) == [0.25, 0.25, 1.0, 1.0]
    assert trainer.optimizer.param_groups[0][UPDATES_KEY] == 4


@pytest.mark.parametrize("family", list(MODELS))
def test_resume_across_the_end_of_the_window_matches_the_uninterrupted_run(
    family, dataset, tmp_path
):
    qk_args = QKDelayArguments(qk_delay_factor=0.1, qk_delay_steps=4, qk_delay_schedule="cosine")
    settings = dict(
        max_steps=6,
        save_strategy="steps",
        save_steps=3,
        weight_decay=0.1,
        lr_scheduler_type="linear",
    )

    whole = MODELS[family]()
    trainer = make_trainer(whole, dataset, tmp_path / "whole", **settings)
    attach_qk_delay(trainer, qk_args)
    trainer.train()
    uninterrupted = multipliers(trainer)

    resumed = MODELS[family](seed=123)  # weights come from the checkpoint
    trainer = make_trainer(resumed, dataset, tmp_path / "resumed", **settings)
    attach_qk_delay(trainer, qk_args)
    trainer.train(resume_from_checkpoint=str(tmp_path / "whole" / "checkpoint-3"))
    # The history before the checkpoint is restored; the steps after it are logged anew.
    assert multipliers(trainer, after_step=3) == uninterrupted[3:]
    assert multipliers(trainer) == uninterrupted
    assert uninterrupted[2] < 1.0 and uninterrupted[3] < 1.0 and uninterrupted[4] == 1.0
    assert trainer.optimizer.param_groups[0][UPDATES_KEY] == 6
    for (name, a), (_, b) in zip(whole.named_parameters(), resumed.named_parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-7), name


def test_user_optimizer_choice_is_kept(dataset, tmp_path):
    trainer = make_trainer(tiny_gpt2(), dataset, tmp_path, max_steps=2, optim="sgd")
    attach_qk_delay(trainer, QKDelayArguments())
    trainer.train()
    assert type(trainer.optimizer.optimizer).__name__ == "SGD"


def test_bad_layers_fail_before_training_and_keep_existing_checkpoints(dataset, tmp_path):
    earlier = tmp_path / "out" / "checkpoint-5" / "model.safetensors"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"earlier run")
    trainer = make_trainer(tiny_gpt2(), dataset, tmp_path / "out")
    with pytest.raises(
        ValueError, match="`qk_delay_layers`='2-9' names layer 9, but the model has 4"
    ):
        attach_qk_delay(trainer, QKDelayArguments(qk_delay_layers="2-9"))
    assert earlier.read_bytes() == b"earlier run"
    assert trainer.state.global_step == 0


def test_ready_made_optimizer_is_refused(dataset, tmp_path):
    model = tiny_gpt2()
    optimizer = torch.optim.AdamW(model.parameters())
    from transformers import Trainer

    from .helpers import training_args

    trainer = Trainer(
        model=model,
        args=training_args(tmp_path),
        train_dataset=dataset,
        optimizers=(optimizer, None),
    )
    with pytest.raises(ValueError, match="ready-made optimizer"):
        attach_qk_delay(trainer, QKDelayArguments())


def test_callback_alone_is_refused(dataset, tmp_path):
    from hf_qkdelay import QKDelayCallback

    trainer = make_trainer(tiny_gpt2(), dataset, tmp_path)
    trainer.add_callback(QKDelayCallback())
    with pytest.raises(RuntimeError, match="attach_qk_delay"):
        trainer.train()


def test_optimizer_rebuilt_as_under_deepspeed_keeps_the_delay(dataset, tmp_path):
    # DeepSpeed's integration drops the Trainer's optimizer and calls create_optimizer()
    # again; the factory path must rebuild the groups, hooks and callback link.
    trainer = make_trainer(tiny_llama(), dataset, tmp_path, max_steps=3)
    callback = attach_qk_delay(trainer, QKDelayArguments(qk_delay_factor=0.5, qk_delay_steps=2))
    first = trainer.create_optimizer()
    trainer.optimizer = None
    second = trainer.create_optimizer()
    assert second is not first
    assert callback.controller is second.multiplier_controller
    assert [g["multiplier_rule"] for g in second.param_groups] == [None, None, "qk_delay"]


def test_window_longer_than_training_is_warned(dataset, tmp_path, caplog):
    trainer = make_trainer(tiny_gpt2(), dataset, tmp_path, max_steps=2)
    attach_qk_delay(trainer, QKDelayArguments(qk_delay_steps=50))
    with caplog.at_level("WARNING", logger="hf_qkdelay"):
        trainer.train()
    assert "window of 50 updates is longer than this run's 2 updates" in caplog.text


def test_resume_under_changed_rules_is_warned(dataset, tmp_path, caplog):
    settings = dict(max_steps=4, save_strategy="steps", save_steps=2)
    trainer = make_trainer(tiny_gpt2(), dataset, tmp_path / "run", **settings)
    attach_qk_delay(trainer, QKDelayArguments(qk_delay_factor=0.1, qk_delay_steps=3))
    trainer.train()
    resumed = make_trainer(tiny_gpt2(), dataset, tmp_path / "run", **settings)
    attach_qk_delay(resumed, QKDelayArguments(qk_delay_factor=0.5, qk_delay_steps=3))
    with caplog.at_level("WARNING", logger="hf_qkdelay"):
        resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))
    assert "resuming after 2 updates made under other multiplier rules" in caplog.text
    assert '"factor": 0.1' in caplog.text and '"factor": 0.5' in caplog.text
