#!/usr/bin/env python
"""Pretrain a causal language model with the upper-layer Q/K learning-rate delay.

    accelerate launch recipes/pretrain.py recipes/configs/quickstart.yaml [--flag value ...]
    python recipes/pretrain.py --model_type gpt2 --config_overrides n_layer=4,n_embd=128 \
        --train_file train.txt --validation_file valid.txt --block_size 128 \
        --max_steps 300 --output_dir runs/delay

A YAML file given first holds any flag by name; flags after it override it. `--help`
lists every flag: the model and tokenizer (hf_qkdelay.model_setup), the data
(hf_qkdelay.data), transformers' TrainingArguments, the Q/K delay (qk_delay_*), the
diagnostics (qk_diagnostics_*) and lm-eval (eval_*).

The run trains, evaluates on the validation blocks and writes into `--output_dir` the
safetensors weights, config, tokenizer and `all_results.json` (eval_loss, perplexity,
train_tokens, seed, the Q/K-delay settings and `run_config`, the flat dict of settings
that `hf-qkdelay compare` groups runs by). Every run trains, then evaluates:
`--do_train`, `--do_eval` and `--do_predict` are not consulted. An `--output_dir` that
already holds a run (checkpoints, weights or results) is refused unless the run resumes
(`--resume_from_checkpoint true` or a checkpoint path).
"""

from __future__ import annotations

import logging
import os
import sys

from transformers import (
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from hf_qkdelay import QKDelayArguments, attach_qk_delay
from hf_qkdelay.data import (
    DataArguments,
    check_block_size,
    iter_texts,
    limit_rows,
    load_text_datasets,
    resolve_block_size,
    tokenize_and_pack,
)
from hf_qkdelay.diagnostics import QKDiagnosticsArguments, attach_qk_diagnostics
from hf_qkdelay.evaluation import LMEvalArguments, attach_lm_eval, run_final_lm_eval
from hf_qkdelay.model_setup import (
    ModelArguments,
    build_config,
    build_model,
    build_tokenizer_once,
    describe_parameters,
    max_positions,
)
from hf_qkdelay.recipe_utils import (
    build_run_config,
    check_output_dir,
    parse_args_with_config,
    perplexity,
    resume_target,
    write_all_results,
)

ARGUMENT_GROUPS = (
    ModelArguments,
    DataArguments,
    TrainingArguments,
    QKDelayArguments,
    QKDiagnosticsArguments,
    LMEvalArguments,
)


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser(ARGUMENT_GROUPS)
    model_args, data_args, training_args, qk_args, diagnostics_args, lm_eval_args = (
        parse_args_with_config(parser, sys.argv[1:] if argv is None else argv)
    )

    # The library reports at INFO what it governs (layers, slices, parameter groups).
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("hf_qkdelay").setLevel(
        logging.INFO if training_args.process_index == 0 else logging.WARNING
    )

    # Refuse bad input before anything is read at length or written.
    check_output_dir(training_args.output_dir, training_args.resume_from_checkpoint)
    config = build_config(model_args)
    qk_args.check_layers(config.get_text_config().num_hidden_layers)
    if data_args.block_size is not None:
        check_block_size(data_args.block_size, max_positions(config))
    lm_eval_args.task_names()

    # Text, tokenizer and training blocks.
    with training_args.main_process_first(desc="loading text"):
        raw_datasets = load_text_datasets(data_args, cache_dir=model_args.cache_dir)
    tokenizer = build_tokenizer_once(model_args, iter_texts(raw_datasets["train"]), training_args)
    block_size = resolve_block_size(data_args.block_size, tokenizer, max_positions(config))
    with training_args.main_process_first(desc="tokenizing and packing"):
        blocks = tokenize_and_pack(
            raw_datasets,
            tokenizer,
            block_size,
            add_eos_token=data_args.add_eos_token,
            num_proc=data_args.preprocessing_num_workers,
        )
    train_dataset = limit_rows(blocks["train"], data_args.max_train_samples)
    eval_dataset = limit_rows(blocks["validation"], data_args.max_eval_samples)

    # The model, seeded so that its initial weights depend on --seed alone.
    set_seed(training_args.seed)
    model = build_model(model_args, config, tokenizer)
    if training_args.process_index == 0:
        print(describe_parameters(model))
        print(
            f"{len(train_dataset):,} training and {len(eval_dataset):,} validation blocks of {block_size} tokens"
        )

    # Count the tokens trained on with the Trainer's own counter.
    if training_args.include_num_input_tokens_seen == "no":
        training_args.include_num_input_tokens_seen = "all"

    # The Trainer, then the Q/K delay, diagnostics and lm-eval hooked into it.
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=default_data_collator,
    )
    attach_qk_delay(trainer, qk_args)
    attach_qk_diagnostics(trainer, diagnostics_args)
    attach_lm_eval(trainer, lm_eval_args, tokenizer=tokenizer)

    # Train, save, evaluate.
    train_result = trainer.train(
        resume_from_checkpoint=resume_target(training_args.resume_from_checkpoint)
    )
    trainer.save_model()
    trainer.save_state()
    eval_metrics = trainer.evaluate()

    # all_results.json: the scores, the tokens trained on and what defines the run.
    results = {
        **train_result.metrics,
        **eval_metrics,
        "perplexity": perplexity(eval_metrics["eval_loss"]),
        "train_tokens": trainer.state.num_input_tokens_seen,
        "train_updates": trainer.state.global_step,
        "block_size": block_size,
        "seed": training_args.seed,
        **qk_args.run_settings(),
        "run_config": {
            **build_run_config(model_args, data_args, qk_args, training_args=training_args),
            "block_size": block_size,
        },
    }
    if trainer.is_world_process_zero():
        path = write_all_results(training_args.output_dir, results)
        print(
            f"eval_loss {results['eval_loss']:.4f}  perplexity {results['perplexity']:.2f}  "
            f"train_tokens {results['train_tokens']:,}  -> {path}"
        )

    # lm-eval last, so that a failing task leaves the results above in place.
    lm_eval_metrics = run_final_lm_eval(trainer, lm_eval_args, tokenizer=tokenizer)
    if lm_eval_metrics:
        results.update(lm_eval_metrics)
        if trainer.is_world_process_zero():
            write_all_results(training_args.output_dir, results)
    return results


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        # Bad input: the message names the argument; a traceback would only bury it.
        if os.environ.get("HF_QKDELAY_TRACEBACK") == "1":
            raise
        sys.exit(f"pretrain.py: error: {error}")
