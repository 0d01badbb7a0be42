"""lm-eval inside Trainer training: the callback, the final evaluation, the recipe arguments."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments

from hf_qkdelay.evaluation import (
    LMEvalArguments,
    LMEvalCallback,
    attach_lm_eval,
    evaluate_model,
    run_final_lm_eval,
)


def packed_blocks(tokenizer, text: str, block_size: int, num_blocks: int | None = None):
    ids = tokenizer(text)["input_ids"]
    starts = range(0, len(ids) - block_size, block_size)
    blocks = [torch.tensor(ids[start : start + block_size]) for start in starts][:num_blocks]
    return [{"input_ids": block, "labels": block} for block in blocks]


def training_arguments(output_dir, max_steps: int, **overrides) -> TrainingArguments:
    options = dict(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    return TrainingArguments(**{**options, **overrides})


class RecordTrainMode(TrainerCallback):
    """Added after the lm-eval callback: sees the model as that callback left it."""

    def __init__(self):
        self.training_at_step_end = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.training_at_step_end.append(model.training)


def test_arguments_parse_and_validate(corpus_file):
    (parsed,) = HfArgumentParser(LMEvalArguments).parse_args_into_dataclasses(
        [
            "--eval_tasks",
            "offline,piqa",
            "--eval_offline_text",
            str(corpus_file),
            "--eval_limit",
            "20",
            "--eval_interval_steps",
            "100",
        ]
    )
    assert parsed.eval_offline_text == [str(corpus_file)]
    assert parsed.eval_limit == 20 and isinstance(parsed.eval_limit, int)
    assert parsed.task_names() == [
        "offline_lastword",
        "offline_nextsentence",
        "offline_perplexity",
        "piqa",
    ]
    assert LMEvalArguments().task_names() == [] and not LMEvalArguments().enabled

    with pytest.raises(ValueError, match="`eval_batch_size`"):
        LMEvalArguments(eval_tasks="piqa", eval_batch_size=0)
    with pytest.raises(ValueError, match="`eval_limit`"):
        LMEvalArguments(eval_tasks="piqa", eval_limit=2.5)
    with pytest.raises(ValueError, match="`eval_interval_steps`"):
        LMEvalArguments(eval_tasks="piqa", eval_interval_steps=-1)
    with pytest.raises(ValueError, match="`eval_offline_text`"):
        LMEvalArguments(eval_tasks="offline", eval_offline_text=["/no/such/file.txt"])
    with pytest.raises(ValueError, match="`eval_offline_text`"):
        LMEvalArguments(eval_tasks="offline").task_names()
    for help_text in (f.metadata["help"] for f in LMEvalArguments.__dataclass_fields__.values()):
        assert help_text


def test_in_training_evaluation_logs_and_leaves_training_unchanged(
    make_tiny_gpt2, bpe_tokenizer, shakespeare_text, corpus_file, tmp_path
):
    dataset = packed_blocks(bpe_tokenizer, shakespeare_text, block_size=64, num_blocks=64)
    lm_eval_args = LMEvalArguments(
        eval_tasks="offline_nextsentence,offline_lastword",
        eval_offline_text=[str(corpus_file)],
        eval_limit=6,
        eval_batch_size=6,
        eval_interval_steps=2,
    )

    def train(with_lm_eval: bool):
        model = make_tiny_gpt2()
        trainer = Trainer(
            model=model,
            args=training_arguments(tmp_path / f"run-{with_lm_eval}", max_steps=4),
            train_dataset=dataset,
            processing_class=bpe_tokenizer,
        )
        callback = attach_lm_eval(trainer, lm_eval_args) if with_lm_eval else None
        recorder = RecordTrainMode()
        trainer.add_callback(recorder)
        trainer.train()
        return trainer, callback, recorder

    trainer, callback, recorder = train(with_lm_eval=True)
    assert isinstance(callback, LMEvalCallback)
    # Evaluated after update 2 only: update 4 ends training and is left to the final run.
    evaluated_steps = [
        entry["step"]
        for entry in trainer.state.log_history
        if "eval/offline_nextsentence/acc" in entry
    ]
    assert evaluated_steps == [2]
    logged = next(
        entry
        for entry in trainer.state.log_history
        if entry["step"] == 2 and "eval/offline_lastword/acc" in entry
    )
    assert {
        "eval/offline_lastword/perplexity",
        "eval/offline_nextsentence/acc_norm",
    } <= logged.keys()
    assert recorder.training_at_step_end == [True] * 4

    # Training with the evaluation ends with the same weights as training without it.
    reference, _, _ = train(with_lm_eval=False)
    for (name, weight), reference_weight in zip(
        trainer.model.state_dict().items(), reference.model.state_dict().values()
    ):
        assert torch.equal(weight, reference_weight), name

    # The final evaluation writes lm_eval_results.json into the run folder and logs.
    trainer.model.train()
    metrics = run_final_lm_eval(trainer, lm_eval_args)
    assert trainer.model.training
    saved = json.loads((tmp_path / "run-True" / "lm_eval_results.json").read_text())
    assert (
        saved["results"]["offline_nextsentence"]["acc,none"]
        == metrics["eval/offline_nextsentence/acc"]
    )
    assert (
        trainer.state.log_history[-1]["eval/offline_lastword/acc"]
        == metrics["eval/offline_lastword/acc"]
    )
    assert attach_lm_eval(trainer, LMEvalArguments(eval_tasks="piqa")) is None  # interval 0


@pytest.mark.slow
def test_trained_model_beats_chance_on_the_four_way_task(
    make_tiny_gpt2, bpe_tokenizer, shakespeare_text, corpus_file, tmp_path
):
    # The sentence-ending task (500 items by default) from the training corpus itself.
    options = dict(
        offline_text=[corpus_file],
        offline_cache_dir=tmp_path / "cache",
        batch_size=16,
        bootstrap_iters=0,
    )
    model = make_tiny_gpt2()
    untrained = evaluate_model(model, bpe_tokenizer, "offline_nextsentence", **options)
    untrained = untrained["results"]["offline_nextsentence"]
    for metric in ("acc,none", "acc_norm,none", "acc_mutual_info,none"):
        assert 0.15 <= untrained[metric] <= 0.35, metric

    dataset = packed_blocks(bpe_tokenizer, shakespeare_text, block_size=128)
    arguments = training_arguments(
        tmp_path / "run",
        max_steps=300,
        per_device_train_batch_size=16,
        learning_rate=3e-3,
        warmup_steps=20,
        lr_scheduler_type="cosine",
        logging_steps=100,
    )
    Trainer(model=model, args=arguments, train_dataset=dataset).train()

    trained = evaluate_model(model, bpe_tokenizer, "offline_nextsentence", **options)
    trained = trained["results"]["offline_nextsentence"]
    # How well an ending follows its context, with its own fluency taken out, is what a small
    # model learns first; raw acc and acc_norm stay near chance at this size.
    assert trained["acc_mutual_info,none"] >= untrained["acc_mutual_info,none"] + 0.03, (
        untrained,
        trained,
    )
