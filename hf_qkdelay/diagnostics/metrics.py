"""The mathematics of the diagnostics: attention entropy, masked averages, logit statistics, CKA.

Everything here is a pure function of tensors, so that it can be tested against values the
maths gives exactly (the entropy of a uniform distribution over `n` keys is `log n`).
"""

from __future__ import annotations

import torch


def attention_entropy(probs: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each query's attention over the keys it may see.

    `probs` is `(..., T, S)`; `allowed` (broadcastable to it) is True where a query may attend
    to a key. Probability mass on keys that are not allowed is ignored (it is zero after a
    masked softmax). Returns `(..., T)`.
    """
    probs = torch.where(allowed, probs, torch.zeros((), dtype=probs.dtype, device=probs.device))
    # xlogy gives 0 * log 0 = 0, so keys with zero probability add nothing.
    return -torch.special.xlogy(probs, probs).sum(dim=-1)


def normalized_attention_entropy(probs: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Entropy divided by the log of the number of visible keys: 1 = uniform, 0 = one-hot.

    A query that sees a single key (the first query of a causal sequence) has no choice to
    make, so its distribution is both uniform and one-hot; it gets 1 (uniform) rather than
    0/0. A query that sees no key at all (a left-padding query) also gets 1; both kinds are
    left out of the averages by `informative_queries`. Returns `(..., T)`.
    """
    entropy = attention_entropy(probs, allowed)
    num_keys = allowed.sum(dim=-1).expand_as(entropy).to(entropy.dtype)
    has_choice = num_keys >= 2
    # Clamp the denominator so that the unused branch of `where` stays finite.
    normalized = entropy / torch.log(num_keys.clamp(min=2))
    return torch.where(has_choice, normalized, torch.ones_like(normalized))


def informative_queries(allowed: torch.Tensor, query_is_token: torch.Tensor | None) -> torch.Tensor:
    """Which queries enter the per-head averages: real tokens that see at least two keys.

    `allowed` is `(B, 1 or H, T, S)`; `query_is_token` is `(B, T)` (False at padding) or None.
    Returns a boolean `(B, 1 or H, T)`.
    """
    informative = allowed.sum(dim=-1) >= 2
    if query_is_token is not None:
        informative = informative & query_is_token[:, None, :].bool()
    return informative


def masked_head_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean of `values` `(B, H, T)` over batch and queries where `weights` is True, per head.

    Returns `(H,)`; a head with no weighted query gets NaN (there is nothing to report).
    """
    weights = weights.expand_as(values).to(values.dtype)
    return (values * weights).sum(dim=(0, 2)) / weights.sum(dim=(0, 2))


def logit_statistics(
    logits: torch.Tensor, allowed: torch.Tensor, informative: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Max and standard deviation, per head, of the attention logits over visible pairs.

    `logits` is `(B, H, T, S)` before the mask is added; pairs count when the key is allowed
    and the query is informative. Returns two `(H,)` tensors.
    """
    pairs = (allowed & informative[..., None]).expand_as(logits)
    num_pairs = pairs.sum(dim=(0, 2, 3)).to(logits.dtype)
    zeros = torch.zeros((), dtype=logits.dtype, device=logits.device)
    logit_max = torch.where(pairs, logits, torch.full_like(logits, -torch.inf)).amax(dim=(0, 2, 3))
    mean = torch.where(pairs, logits, zeros).sum(dim=(0, 2, 3)) / num_pairs
    centred = torch.where(pairs, logits - mean[None, :, None, None], zeros)
    variance = centred.square().sum(dim=(0, 2, 3)) / num_pairs
    return logit_max, variance.sqrt()


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment between two `(N, D)` representations of the same N inputs.

    1 when one is an orthogonal transform and scaling of the other, 0 when unrelated
    (Kornblith et al. 2019, https://arxiv.org/abs/1905.00414). Computed in float64 through the
    `D x D` cross-covariances, which are small for the widths we probe.
    """
    x = x.double() - x.double().mean(dim=0, keepdim=True)
    y = y.double() - y.double().mean(dim=0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.T @ x).square()
    norm_x = torch.linalg.matrix_norm(x.T @ x)
    norm_y = torch.linalg.matrix_norm(y.T @ y)
    return float(cross / (norm_x * norm_y))
