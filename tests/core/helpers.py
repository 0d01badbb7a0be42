"""Tiny models and Trainer runs shared by the tests of the Q/K-delay core."""

from __future__ import annotations

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Trainer,
    TrainingArguments,
)

VOCAB = 512
BLOCK = 32


def tiny_gpt2(seed: int = 0, dropout: float = 0.0, **overrides) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=4,
        n_embd=32,
        n_head=4,
        n_positions=BLOCK,
        vocab_size=VOCAB,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        **overrides,
    )
    return GPT2LMHeadModel(config)


def tiny_llama(seed: int = 0, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        num_hidden_layers=4,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=BLOCK,
        vocab_size=VOCAB,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        **overrides,
    )
    return LlamaForCausalLM(config)


def tiny_neox(seed: int = 0) -> GPTNeoXForCausalLM:
    """GPT-NeoX: a fused `query_key_value` laid out per head as [q_h | k_h | v_h]."""
    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        num_hidden_layers=4,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        max_position_embeddings=BLOCK,
        vocab_size=VOCAB,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPTNeoXForCausalLM(config)


def token_blocks(tokenizer, text: str, count: int, block: int = BLOCK) -> list[dict]:
    """`count` consecutive blocks of `block` tokens of real text, as a list dataset."""
    ids = tokenizer(text).input_ids
    if len(ids) < count * block:
        raise ValueError(f"text too short for {count} blocks of {block}")
    return [
        {
            "input_ids": torch.tensor(ids[i * block : (i + 1) * block]),
            "labels": torch.tensor(ids[i * block : (i + 1) * block]),
        }
        for i in range(count)
    ]


def training_args(output_dir, **overrides) -> TrainingArguments:
    settings = dict(
        output_dir=str(output_dir),
        use_cpu=True,
        report_to=[],
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_steps=6,
        logging_steps=1,
        save_strategy="no",
        seed=0,
        data_seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    settings.update(overrides)
    return TrainingArguments(**settings)


def make_trainer(model, dataset, output_dir, **overrides) -> Trainer:
    return Trainer(model=model, args=training_args(output_dir, **overrides), train_dataset=dataset)


def assert_models_equal(first, second) -> None:
    for (name, a), (_, b) in zip(first.named_parameters(), second.named_parameters()):
        assert torch.equal(a, b), f"{name} differs"
