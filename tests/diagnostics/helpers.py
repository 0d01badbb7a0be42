"""Tiny models and short real training runs for the diagnostics tests."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

BLOCK_SIZE = 32


def tiny_gpt2(vocab_size: int = 512, **overrides) -> GPT2LMHeadModel:
    config = dict(
        vocab_size=vocab_size,
        n_positions=BLOCK_SIZE,
        n_embd=32,
        n_layer=2,
        n_head=4,
        attn_implementation="sdpa",
    )
    config.update(overrides)
    return GPT2LMHeadModel(GPT2Config(**config))


def tiny_llama(vocab_size: int = 512, **overrides) -> LlamaForCausalLM:
    config = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention
        max_position_embeddings=BLOCK_SIZE,
        attn_implementation="sdpa",
    )
    config.update(overrides)
    return LlamaForCausalLM(LlamaConfig(**config))


def sharpen(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Re-draw the weights larger so that attention maps are far from uniform."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model


def train_short_run(
    output_dir,
    blocks: torch.Tensor,
    diagnostics: bool,
    learning_rate: float = 3e-3,
    max_steps: int = 6,
):
    """A few updates of a tiny GPT-2 (dropout on) on Shakespeare, optionally with diagnostics.

    The last 8 blocks are held out as the evaluation set, from which the probe batch is taken.
    Returns the Trainer.
    """
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments, set_seed

    from hf_qkdelay.diagnostics import QKDiagnosticsArguments, attach_qk_diagnostics

    set_seed(0)
    model = tiny_gpt2(n_layer=3)
    assert model.config.attn_pdrop > 0 and model.config.resid_pdrop > 0
    train_blocks, held_out_blocks = blocks[:-8].tolist(), blocks[-8:].tolist()
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        learning_rate=learning_rate,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"input_ids": train_blocks, "labels": train_blocks}),
        eval_dataset=Dataset.from_dict({"input_ids": held_out_blocks}),
    )
    if diagnostics:
        diagnostics_args = QKDiagnosticsArguments(
            qk_diagnostics_interval_steps=2, qk_diagnostics_probe_sequences=4
        )
        attach_qk_diagnostics(trainer, diagnostics_args)
    trainer.train()
    return trainer
