"""Entropy, logit statistics and CKA against values the maths gives exactly."""

from __future__ import annotations

import math

import torch

from hf_qkdelay.diagnostics.metrics import (
    attention_entropy,
    informative_queries,
    linear_cka,
    logit_statistics,
    masked_head_mean,
    normalized_attention_entropy,
)

T = 12
# Float64 rounding only: the sum of i equal terms p log p is log i to about 1e-15.
EXACT = dict(rtol=0, atol=1e-12)


def causal(length: int = T) -> torch.Tensor:
    return torch.ones(length, length, dtype=torch.bool).tril()[None, None]  # (1, 1, T, T)


def uniform_causal(allowed: torch.Tensor) -> torch.Tensor:
    allowed = allowed.double()
    return allowed / allowed.sum(dim=-1, keepdim=True).clamp(min=1)


def test_uniform_causal_attention_has_entropy_log_i_and_normalised_entropy_1_at_every_query():
    allowed = causal()
    probs = uniform_causal(allowed)
    expected = torch.log(torch.arange(1, T + 1, dtype=torch.float64))  # query i sees i + 1 keys
    torch.testing.assert_close(attention_entropy(probs, allowed)[0, 0], expected, **EXACT)
    normalized = normalized_attention_entropy(probs, allowed)[0, 0]
    torch.testing.assert_close(normalized, torch.ones(T, dtype=torch.float64), **EXACT)
    assert normalized[0] == 1.0  # the first query sees one key: 1 by convention, not 0/0


def test_one_hot_attention_has_normalised_entropy_0_and_no_nan():
    allowed = causal()
    # Each query puts all its mass on one visible key (here key i // 2).
    probs = torch.zeros(1, 1, T, T, dtype=torch.float64)
    probs[0, 0, torch.arange(T), torch.arange(T) // 2] = 1.0
    normalized = normalized_attention_entropy(probs, allowed)[0, 0]
    assert not normalized.isnan().any()
    assert torch.equal(normalized[1:], torch.zeros(T - 1, dtype=torch.float64))
    # The first query (one key) is both one-hot and uniform; it is left out of the averages.
    informative = informative_queries(allowed, None)
    assert informative[0, 0].tolist() == [False] + [True] * (T - 1)
    assert masked_head_mean(normalized[None, None], informative).item() == 0.0


def test_padding_is_excluded_from_keys_and_from_averaged_queries():
    # Left padding of 4 tokens: padded keys are not visible, padded queries see no key.
    padding = 4
    token = torch.ones(1, T, dtype=torch.bool)
    token[0, :padding] = False
    allowed = causal() & token[:, None, None, :]
    probs = uniform_causal(allowed)
    # Garbage where the model's softmax puts mass on nothing it may see (padded queries).
    probs[0, 0, :padding] = torch.softmax(torch.randn(padding, T, dtype=torch.float64), dim=-1)
    normalized = normalized_attention_entropy(probs, allowed)
    assert not normalized.isnan().any()
    torch.testing.assert_close(
        normalized[0, 0, padding:], torch.ones(T - padding, dtype=torch.float64), **EXACT
    )
    informative = informative_queries(allowed, token)
    assert informative[0, 0].tolist() == [False] * (padding + 1) + [True] * (T - padding - 1)
    torch.testing.assert_close(masked_head_mean(normalized, informative).item(), 1.0, **EXACT)
    # Mass on a padded key is ignored: the entropy counts visible keys only.
    leaked = probs.clone()
    leaked[0, 0, -1, 0] = 0.5
    assert (
        attention_entropy(leaked, allowed)[0, 0, -1] == attention_entropy(probs, allowed)[0, 0, -1]
    )


def test_masked_head_mean_averages_per_head_over_weighted_queries():
    values = torch.tensor([[[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]]])  # (B=1, H=2, T=3)
    weights = torch.tensor([[[False, True, True]]])  # (B, 1, T)
    assert masked_head_mean(values, weights).tolist() == [2.5, 25.0]


def test_logit_statistics_use_visible_pairs_of_informative_queries():
    allowed = causal(3)
    logits = torch.tensor(
        [[[[9.0, -5.0, -5.0], [1.0, 3.0, -5.0], [2.0, 4.0, 6.0]]]]
    )  # (1, 1, 3, 3)
    informative = informative_queries(allowed, None)  # queries 1 and 2
    logit_max, logit_std = logit_statistics(logits, allowed, informative)
    visible = torch.tensor([1.0, 3.0, 2.0, 4.0, 6.0])
    assert logit_max.tolist() == [6.0]
    torch.testing.assert_close(logit_std, visible.std(unbiased=False)[None])


def test_linear_cka_is_1_under_rotation_and_scaling_and_symmetric():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=generator)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=generator))
    assert math.isclose(linear_cka(x, x), 1.0, abs_tol=1e-12)
    assert math.isclose(linear_cka(x, 3.0 * x @ rotation + 1.0), 1.0, abs_tol=1e-12)
    y = torch.randn(200, 16, generator=generator)
    assert math.isclose(linear_cka(x, y), linear_cka(y, x), abs_tol=1e-12)
    assert linear_cka(x, y) < 0.2
