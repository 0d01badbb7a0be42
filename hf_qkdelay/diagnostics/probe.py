"""The probe's own forward pass: eager attention that records what it computes, plus stream hooks.

Training keeps its fast attention (SDPA). For a probe the model is switched, inside
`probe_mode`, to an attention implementation registered here under `PROBE_ATTENTION`. It is
transformers' eager attention (the same maths and the same masks as `attn_implementation=
"eager"`), but it also measures each head's attention and can replace one layer's pattern by
uniform causal attention. Forward hooks on every decoder block read the residual stream and
what each sublayer writes into it. Everything is restored on the way out of `probe_mode`.

NOTE: the probe reads Q and K after the model has prepared them (RoPE applied, GQA keys
repeated), so it needs no knowledge of the model family beyond finding its decoder blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import AttentionInterface, AttentionMaskInterface, PretrainedConfig
from transformers.masking_utils import eager_mask

from ..selection import find_attention_modules
from .metrics import (
    informative_queries,
    logit_statistics,
    masked_head_mean,
    normalized_attention_entropy,
)

PROBE_ATTENTION = "qk_diag_probe"

# Children of a decoder block that hold its feed-forward sublayer, by model family.
FFN_MODULE_NAMES = ("mlp", "feed_forward", "ffn")

# Config flags by which a family declares attention and FFN side by side on the same input
# (GPT-NeoX `use_parallel_residual`, Falcon `parallel_attn`), and families that always do.
PARALLEL_RESIDUAL_FLAGS = ("use_parallel_residual", "parallel_attn")
PARALLEL_RESIDUAL_MODEL_TYPES = ("gptj", "codegen", "phi", "cohere")

# Per-head attention quantities, in the order they are reported.
HEAD_QUANTITIES = ("attn_entropy", "attn_max_prob", "logit_max", "logit_std")
# Per-layer residual-stream quantities.
STREAM_QUANTITIES = ("resid_norm", "attn_write_energy", "ffn_write_energy")


@dataclass(frozen=True)
class DecoderLayout:
    """Where each decoder layer's block, attention and feed-forward modules are."""

    blocks: list[nn.Module]
    attentions: list[nn.Module]
    ffns: list[nn.Module]

    @property
    def num_layers(self) -> int:
        return len(self.blocks)


def declares_parallel_residual(config: PretrainedConfig | None) -> bool:
    """True when `config` says attention and FFN read the same stream and write side by side."""
    if config is None:
        return False
    if any(getattr(config, flag, False) is True for flag in PARALLEL_RESIDUAL_FLAGS):
        return True
    return getattr(config, "model_type", None) in PARALLEL_RESIDUAL_MODEL_TYPES


def find_decoder_layout(model: nn.Module) -> DecoderLayout:
    """Decoder blocks of `model`: the parent of each attention module, and its FFN child."""
    blocks, attentions, ffns = [], [], []
    for found in find_attention_modules(model):
        block_name = found.name.rsplit(".", 1)[0] if "." in found.name else ""
        block = model.get_submodule(block_name)
        ffn = next((getattr(block, n) for n in FFN_MODULE_NAMES if hasattr(block, n)), None)
        if ffn is None:
            children = [name for name, _ in block.named_children()]
            raise ValueError(
                f"decoder block `{block_name}` has no feed-forward child named any of "
                f"{list(FFN_MODULE_NAMES)} (its children: {children}); the diagnostics cannot "
                "measure its FFN writes."
            )
        blocks.append(block)
        attentions.append(found.module)
        ffns.append(ffn)
    return DecoderLayout(blocks, attentions, ffns)


@dataclass
class ProbeResult:
    """What one probe forward measured. Lists are indexed by layer."""

    loss: float
    # Per layer: quantity -> (H,) tensor, for HEAD_QUANTITIES.
    heads: list[dict[str, torch.Tensor]] = field(default_factory=list)
    # Per layer: quantity -> float, for STREAM_QUANTITIES.
    stream: list[dict[str, float]] = field(default_factory=list)
    # Per layer: the block's output at real tokens, (N, D), for representation drift.
    layer_outputs: list[torch.Tensor] = field(default_factory=list)
    # Per layer: attention probabilities (B, H, T, S), only when asked for.
    attention_probs: list[torch.Tensor] = field(default_factory=list)


class _AttentionRecorder:
    """State shared by the probe attention function during one forward pass."""

    def __init__(
        self,
        layer_of_module: dict[int, int],
        query_is_token: torch.Tensor | None,
        measure: bool,
        keep_probs: bool,
        uniform_layer: int | None,
    ):
        self.layer_of_module = layer_of_module
        self.query_is_token = query_is_token
        self.measure = measure
        self.keep_probs = keep_probs
        self.uniform_layer = uniform_layer
        self.heads: dict[int, dict[str, torch.Tensor]] = {}
        self.probs: dict[int, torch.Tensor] = {}


# The recorder of the probe forward in progress; None outside `probe_forward`.
_ACTIVE_RECORDER: _AttentionRecorder | None = None


def _probe_attention(
    module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs
):
    """Eager attention (as transformers computes it) that reports to the active recorder."""
    # Repeat grouped K/V heads so that every query head has its own (GQA, MQA).
    num_groups = query.shape[1] // key.shape[1]
    if num_groups > 1:
        key = key.repeat_interleave(num_groups, dim=1)
        value = value.repeat_interleave(num_groups, dim=1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5

    logits = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, H, T, S)
    if attention_mask is None:
        allowed = torch.ones_like(logits[:, :1], dtype=torch.bool)
        scores = logits
    elif attention_mask.dtype == torch.bool:
        allowed = attention_mask[..., : key.shape[-2]]
        scores = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
    else:
        additive = attention_mask[..., : key.shape[-2]]
        allowed = additive > torch.finfo(additive.dtype).min / 2
        scores = logits + additive
    probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)

    recorder = _ACTIVE_RECORDER
    layer = recorder.layer_of_module.get(id(module)) if recorder is not None else None
    if layer is not None:
        if recorder.measure:
            recorder.heads[layer] = _head_statistics(
                logits, probs, allowed, recorder.query_is_token
            )
        if recorder.keep_probs:
            recorder.probs[layer] = probs.detach().clone()
        if layer == recorder.uniform_layer:
            # Uniform over the keys each query may see; a query that sees none attends to nothing.
            uniform = allowed.to(probs.dtype).expand_as(probs)
            probs = uniform / uniform.sum(dim=-1, keepdim=True).clamp(min=1)

    output = torch.matmul(probs, value).transpose(1, 2).contiguous()  # (B, T, H, d)
    return output, probs


def _head_statistics(logits, probs, allowed, query_is_token) -> dict[str, torch.Tensor]:
    """Per-head averages over informative queries (real tokens that see two keys or more)."""
    informative = informative_queries(allowed, query_is_token)  # (B, 1 or H, T)
    probs = probs.float()
    entropy = normalized_attention_entropy(probs, allowed)  # (B, H, T)
    max_prob = probs.amax(dim=-1)  # (B, H, T)
    logit_max, logit_std = logit_statistics(logits.float(), allowed, informative)
    return {
        "attn_entropy": masked_head_mean(entropy, informative),
        "attn_max_prob": masked_head_mean(max_prob, informative),
        "logit_max": logit_max,
        "logit_std": logit_std,
    }


AttentionInterface.register(PROBE_ATTENTION, _probe_attention)
AttentionMaskInterface.register(PROBE_ATTENTION, eager_mask)


@contextmanager
def probe_mode(model: nn.Module) -> Iterator[None]:
    """Evaluation mode, no gradients, probe attention; all of it undone on exit.

    Each module's own `training` flag, every config's attention implementation and the torch
    RNG states (CPU and the model's accelerator) are put back exactly as they were, so that a
    training run with probes is bit-identical to one without.
    """
    training_flags = [(module, module.training) for module in model.modules()]
    configs = {id(c): c for c in _configs_of(model)}.values()
    implementations = [(config, config._attn_implementation_internal) for config in configs]
    device = next(model.parameters()).device
    # fork_rng always keeps the CPU generator; an accelerator's is kept for the model's device.
    on_accelerator = device.type != "cpu"
    rng = torch.random.fork_rng(
        devices=[device] if on_accelerator else [],
        device_type=device.type if on_accelerator else "cuda",
    )
    try:
        with rng, torch.no_grad():
            model.eval()
            for config in configs:
                config._attn_implementation_internal = PROBE_ATTENTION
            yield
    finally:
        for config, implementation in implementations:
            config._attn_implementation_internal = implementation
        for module, was_training in training_flags:
            module.training = was_training


def _configs_of(model: nn.Module) -> list[PretrainedConfig]:
    return [
        m.config
        for m in model.modules()
        if isinstance(getattr(m, "config", None), PretrainedConfig)
    ]


def probe_forward(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    layout: DecoderLayout | None = None,
    measure: bool = True,
    keep_attention_probs: bool = False,
    uniform_attention_layer: int | None = None,
) -> ProbeResult:
    """One forward of the probe batch through the recording attention; call inside `probe_mode`.

    `measure` collects the per-head and per-layer quantities (the reliance forwards skip it);
    `keep_attention_probs` also returns every layer's attention maps; `uniform_attention_layer`
    replaces that layer's attention by uniform causal attention.
    """
    global _ACTIVE_RECORDER
    layout = layout or find_decoder_layout(model)
    token_mask = attention_mask.bool() if attention_mask is not None else None
    labels = probe_labels(input_ids, token_mask)
    recorder = _AttentionRecorder(
        layer_of_module={id(module): i for i, module in enumerate(layout.attentions)},
        query_is_token=token_mask,
        measure=measure,
        keep_probs=keep_attention_probs,
        uniform_layer=uniform_attention_layer,
    )
    stream = _StreamHooks(layout, token_mask) if measure else None

    # Run the forward with the recorder active and, when measuring, the stream hooks on.
    _ACTIVE_RECORDER = recorder
    try:
        if stream is not None:
            stream.attach()
        outputs = model(
            input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False
        )
    finally:
        _ACTIVE_RECORDER = None
        if stream is not None:
            stream.detach()

    # Gather what was recorded, by layer.
    result = ProbeResult(loss=float(outputs.loss))
    if measure:
        missing = [i for i in range(layout.num_layers) if i not in recorder.heads]
        if missing:
            raise RuntimeError(
                f"the probe attention was not called for layers {missing}: the model does not "
                "dispatch attention through transformers' `AttentionInterface` "
                "(`config._attn_implementation`), which the diagnostics need."
            )
        result.heads = [recorder.heads[i] for i in range(layout.num_layers)]
        result.stream = stream.energies
        result.layer_outputs = stream.outputs
    if keep_attention_probs:
        result.attention_probs = [recorder.probs[i] for i in range(layout.num_layers)]
    return result


def probe_labels(input_ids: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    """Labels for the probe loss: a token counts when it and the position predicting it are real.

    Excluding predictions made from padding (the first token after left padding) keeps the loss
    independent of what a fully masked query computes.
    """
    if token_mask is None:
        return input_ids
    counted = token_mask.clone()
    counted[:, 1:] &= token_mask[:, :-1]
    return input_ids.masked_fill(~counted, -100)


class _StreamHooks:
    """Hooks on every block reading the residual stream and each sublayer's write into it.

    For layer `l` with input stream `x`, attention write `a` and FFN write `f`:
    `resid_norm` is the mean per-token L2 norm of `x`; `attn_write_energy` is
    sum ||a||^2 / sum ||x||^2 and `ffn_write_energy` is sum ||f||^2 / sum ||x + a||^2 (the
    stream the FFN writes into), sums over real tokens. This assumes sequential sublayers
    (GPT-2, LLaMA); for parallel attention and FFN the FFN ratio is relative to x + a too,
    and the callback warns about it (`declares_parallel_residual`).
    """

    def __init__(self, layout: DecoderLayout, token_mask: torch.Tensor | None):
        self.layout = layout
        self.token_mask = token_mask
        self.handles: list = []
        self._inputs: dict[int, torch.Tensor] = {}
        self._attention_writes: dict[int, torch.Tensor] = {}
        self._ffn_writes: dict[int, torch.Tensor] = {}
        self.energies: list[dict[str, float]] = [{} for _ in range(layout.num_layers)]
        self.outputs: list[torch.Tensor] = [torch.empty(0)] * layout.num_layers

    def attach(self) -> None:
        for layer, (block, attention, ffn) in enumerate(
            zip(self.layout.blocks, self.layout.attentions, self.layout.ffns)
        ):
            self.handles += [
                block.register_forward_pre_hook(self._block_input(layer), with_kwargs=True),
                attention.register_forward_hook(self._store(self._attention_writes, layer)),
                ffn.register_forward_hook(self._store(self._ffn_writes, layer)),
                block.register_forward_hook(self._block_output(layer)),
            ]

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _block_input(self, layer: int):
        def hook(module, args, kwargs):
            self._inputs[layer] = args[0] if args else kwargs["hidden_states"]

        return hook

    @staticmethod
    def _store(into: dict, layer: int):
        def hook(module, args, output):
            into[layer] = _first_tensor(output)

        return hook

    def _block_output(self, layer: int):
        def hook(module, args, output):
            stream_in = self._inputs.pop(layer).float()  # (B, T, D)
            attention_write = self._attention_writes.pop(layer).float()
            ffn_write = self._ffn_writes.pop(layer).float()
            output = _first_tensor(output)
            self.energies[layer] = {
                "resid_norm": self._token_mean(stream_in.norm(dim=-1)),
                "attn_write_energy": self._energy_ratio(attention_write, stream_in),
                "ffn_write_energy": self._energy_ratio(ffn_write, stream_in + attention_write),
            }
            tokens = output if self.token_mask is None else output[self.token_mask]
            self.outputs[layer] = tokens.reshape(-1, output.shape[-1]).float()  # (N, D)

        return hook

    def _token_mean(self, values: torch.Tensor) -> float:
        if self.token_mask is None:
            return float(values.mean())
        return float(values[self.token_mask].mean())

    def _energy_ratio(self, write: torch.Tensor, stream: torch.Tensor) -> float:
        return self._token_mean(write.square().sum(-1)) / self._token_mean(stream.square().sum(-1))


def _first_tensor(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output
