"""hf_qkdelay.model_setup: model arguments, configs with overrides, model and tokenizer."""

from __future__ import annotations

import pytest

from hf_qkdelay.model_setup import (
    ModelArguments,
    build_config,
    build_model,
    build_tokenizer,
    describe_parameters,
    max_positions,
)


def test_gpt2_overrides_and_positions():
    config = build_config(
        ModelArguments(
            model_type="gpt2", config_overrides="n_layer=2,n_embd=64,n_head=2,n_positions=64"
        )
    )
    assert (config.n_layer, config.n_embd, config.n_head) == (2, 64, 2)
    assert max_positions(config) == 64


def test_llama_derived_sizes_follow_the_overrides():
    config = build_config(
        ModelArguments(
            model_type="llama",
            config_overrides="hidden_size=128,num_attention_heads=4,num_hidden_layers=2",
        )
    )
    assert config.head_dim == 32 and config.num_key_value_heads == 4
    config = build_config(
        ModelArguments(
            model_type="llama",
            config_overrides="hidden_size=128,num_attention_heads=4,num_key_value_heads=2",
        )
    )
    assert config.num_key_value_heads == 2


def test_model_matches_the_trained_tokenizer(bpe_tokenizer):
    model_args = ModelArguments(
        model_type="gpt2", config_overrides="n_layer=1,n_embd=32,n_head=2,n_positions=32"
    )
    model = build_model(model_args, build_config(model_args), bpe_tokenizer)
    assert model.config.vocab_size == len(bpe_tokenizer) == 512
    assert model.config.eos_token_id == bpe_tokenizer.eos_token_id
    # GPT-2 ties its output layer to the token embedding: counted once.
    unique = sum(p.numel() for p in model.parameters())
    assert describe_parameters(model).startswith(f"gpt2 model: {unique:,} trainable parameters")


def test_trained_tokenizer_has_the_requested_size(shakespeare_text):
    tokenizer = build_tokenizer(
        ModelArguments(model_type="gpt2", tokenizer_vocab_size=300),
        shakespeare_text.splitlines()[:500],
    )
    assert len(tokenizer) == 300 and tokenizer.pad_token == tokenizer.eos_token


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, r"No model: give `--model_type`"),
        ({"model_type": "gpt3"}, r"`--model_type`='gpt3' is not a model type"),
        (
            {"model_name_or_path": "some/model", "config_overrides": "n_layer=2"},
            r"`--config_overrides`='n_layer=2' describes a model built from scratch",
        ),
        (
            {"model_type": "gpt2", "tokenizer_vocab_size": 100},
            r"`--tokenizer_vocab_size`=100 is too small",
        ),
    ],
)
def test_bad_model_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelArguments(**kwargs)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            "n_layr=2",
            r"`--config_overrides`='n_layr=2': 'n_layr=2' cannot be applied to a gpt2 config \(key n_layr",
        ),
        ("n_layer=two", r"'n_layer=two' cannot be applied"),
        ("n_layer", r"entry 'n_layer' is not `key=value`"),
    ],
)
def test_bad_config_overrides(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_config(ModelArguments(model_type="gpt2", config_overrides=overrides))
