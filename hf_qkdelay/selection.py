"""Finding the parameters, or slices of parameters, that a multiplier rule governs.

Attention projections come in two storage layouts, and both are described as data:

- `SeparateProjections`: Q, K and V each have their own module (LLaMA, Mistral, Qwen2).
  A governed projection is every trainable parameter under its module (weight, bias, and
  adapter weights such as LoRA's when PEFT wraps it).
- `FusedProjection`: one module computes Q, K and V together (GPT-2's `c_attn`, GPT-NeoX's
  `query_key_value`). Its output features are described by their order and by whether the
  [q | k | v] pattern repeats once per head; a governed projection is then a strided view
  of the fused weight and bias, never a copy of the whole matrix.

A new model family is supported by adding an entry to `ATTENTION_LAYOUTS`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .layers import parse_layer_spec

PROJECTIONS = ("q", "k", "v")


@dataclass(frozen=True, eq=False)
class ParamSlice:
    """A parameter, or the part of it along its output axis that one projection owns.

    For a fused projection the output axis is split into `groups` equal blocks (1 for
    GPT-2's [Q | K | V], the number of heads for GPT-NeoX's per-head layout) and the
    projection owns features `start:stop` of every block.
    """

    name: str
    param: nn.Parameter = field(repr=False)
    layer: int | None = None
    projection: str | None = None
    out_axis: int = 0
    groups: int = 1
    start: int = 0
    stop: int | None = None

    @property
    def is_whole(self) -> bool:
        return self.stop is None

    def view(self, tensor: torch.Tensor | None = None) -> torch.Tensor:
        """The governed part of `tensor` (default: the parameter's data), as a view."""
        tensor = self.param.detach() if tensor is None else tensor
        if self.is_whole:
            return tensor
        blocks = tensor.movedim(self.out_axis, 0).unflatten(0, (self.groups, -1))
        return blocks[:, self.start : self.stop]  # (groups, stop - start, *other axes)

    @property
    def numel(self) -> int:
        if self.is_whole:
            return self.param.numel()
        return (
            self.param.numel()
            // self.param.shape[self.out_axis]
            * self.groups
            * (self.stop - self.start)
        )

    def describe(self) -> str:
        if self.is_whole:
            return self.name
        width = self.param.shape[self.out_axis] // self.groups
        if self.groups == 1:
            where = f"{self.start}:{self.stop}"
        else:
            where = f"{self.start}:{self.stop} of each of {self.groups} blocks of {width}"
        return f"{self.name}[{self.projection}: features {where} on axis {self.out_axis}]"


@dataclass(frozen=True)
class SeparateProjections:
    """Q, K and V computed by separate modules, named here per projection."""

    modules: tuple[tuple[str, str], ...] = (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj"))

    def matches(self, module: nn.Module) -> bool:
        children = dict(module.named_children())
        return all(child in children for _, child in self.modules)

    def module_names(self) -> list[str]:
        return [child for _, child in self.modules]

    def slices(
        self, attention: nn.Module, prefix: str, layer: int, projection: str, config
    ) -> list[ParamSlice]:
        child_name = dict(self.modules)[projection]
        child = attention.get_submodule(child_name)
        return [
            ParamSlice(
                name=f"{prefix}.{child_name}.{name}",
                param=param,
                layer=layer,
                projection=projection,
            )
            for name, param in child.named_parameters()
            if param.requires_grad
        ]


@dataclass(frozen=True)
class FusedProjection:
    """Q, K and V computed by one module whose output features follow `order`.

    `per_head=False`: the output axis holds [all of Q | all of K | all of V] (GPT-2).
    `per_head=True`: it holds, for each head in turn, [q_h | k_h | v_h] (GPT-NeoX).
    """

    module: str
    per_head: bool = False
    order: tuple[str, ...] = ("q", "k", "v")

    def matches(self, module: nn.Module) -> bool:
        child = dict(module.named_children()).get(self.module)
        return child is not None and isinstance(getattr(child, "weight", None), torch.Tensor)

    def module_names(self) -> list[str]:
        return [self.module]

    def slices(
        self, attention: nn.Module, prefix: str, layer: int, projection: str, config
    ) -> list[ParamSlice]:
        fused = attention.get_submodule(self.module)
        # transformers' Conv1D stores its weight as (in, out); nn.Linear as (out, in).
        weight_out_axis = 1 if _is_conv1d(fused) else 0
        width = fused.weight.shape[weight_out_axis]
        groups, sizes = self._sections(config, width, prefix)
        start = sum(sizes[p] for p in self.order[: self.order.index(projection)])
        stop = start + sizes[projection]
        result = []
        for param_name, out_axis in (("weight", weight_out_axis), ("bias", 0)):
            param = getattr(fused, param_name, None)
            if isinstance(param, nn.Parameter) and param.requires_grad:
                result.append(
                    ParamSlice(
                        name=f"{prefix}.{self.module}.{param_name}",
                        param=param,
                        layer=layer,
                        projection=projection,
                        out_axis=out_axis,
                        groups=groups,
                        start=start,
                        stop=stop,
                    )
                )
        return result

    def _sections(self, config, width: int, prefix: str) -> tuple[int, dict[str, int]]:
        """(number of repeated blocks, features per projection in one block)."""
        num_heads, num_kv_heads, head_dim = _attention_shape(config, width)
        if self.per_head:
            groups, sizes = num_heads, {"q": head_dim, "k": head_dim, "v": head_dim}
        else:
            kv = num_kv_heads * head_dim
            groups, sizes = 1, {"q": num_heads * head_dim, "k": kv, "v": kv}
        if groups * sum(sizes[p] for p in self.order) != width:
            raise ValueError(
                f"`{prefix}.{self.module}` has {width} output features, but the layout "
                f"{self} with {num_heads} heads ({num_kv_heads} key/value heads) of size "
                f"{head_dim} expects {groups} x {sizes}: describe this model's layout."
            )
        return groups, sizes


# Recognised attention layouts, tried in order on every module of the model.
ATTENTION_LAYOUTS: dict[str, SeparateProjections | FusedProjection] = {
    "separate_q_k_v": SeparateProjections(),
    "gpt2_fused_qkv": FusedProjection(module="c_attn"),
    "neox_per_head_qkv": FusedProjection(module="query_key_value", per_head=True),
    "phi3_fused_qkv": FusedProjection(module="qkv_proj"),
}


def _is_conv1d(module: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, Conv1D)


def _attention_shape(config, fused_width: int) -> tuple[int, int, int]:
    """(heads, key/value heads, head size), from the config where it says so."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    num_heads = _first_attr(text_config, ("num_attention_heads", "n_head", "num_heads"))
    if num_heads is None:
        raise ValueError(
            f"cannot read the number of attention heads from {type(config).__name__}: looked "
            "for `num_attention_heads`, `n_head` and `num_heads`."
        )
    num_kv_heads = (
        _first_attr(text_config, ("num_key_value_heads", "n_head_kv", "num_kv_heads")) or num_heads
    )
    head_dim = getattr(text_config, "head_dim", None)
    if head_dim is None:
        hidden = _first_attr(text_config, ("hidden_size", "n_embd", "d_model"))
        head_dim = hidden // num_heads if hidden else fused_width // (num_heads + 2 * num_kv_heads)
    return int(num_heads), int(num_kv_heads), int(head_dim)


def _first_attr(config, names: Sequence[str]):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None


@dataclass(frozen=True)
class AttentionModule:
    name: str
    module: nn.Module
    layer: int
    layout_name: str
    layout: SeparateProjections | FusedProjection


def find_attention_modules(model: nn.Module) -> list[AttentionModule]:
    """The self-attention modules of a decoder, one per layer, in layer order.

    A module is an attention module when one of `ATTENTION_LAYOUTS` matches its children;
    its layer is the last integer in its qualified name (`model.layers.3.self_attn` -> 3).
    """
    found: dict[int, AttentionModule] = {}
    for name, module in model.named_modules():
        for layout_name, layout in ATTENTION_LAYOUTS.items():
            if not layout.matches(module):
                continue
            indices = [int(part) for part in name.split(".") if part.isdigit()]
            if not indices:
                continue
            layer = indices[-1]
            if layer in found:
                raise ValueError(
                    f"two attention modules in decoder layer {layer}: `{found[layer].name}` and "
                    f"`{name}`; select parameters by name (`params:` in a rule) instead."
                )
            found[layer] = AttentionModule(name, module, layer, layout_name, layout)
            break
    if not found:
        raise ValueError(_unrecognised_model_message(model))

    layers = sorted(found)
    if layers != list(range(len(layers))):
        raise ValueError(
            f"found attention modules for layers {layers}, which are not 0..{len(layers) - 1}; "
            "the decoder's layers could not be told apart."
        )
    config = getattr(model, "config", None)
    expected = (
        _first_attr(config.get_text_config(), ("num_hidden_layers", "n_layer")) if config else None
    )
    if expected is not None and expected != len(layers):
        raise ValueError(
            f"the config declares {expected} decoder layers but attention modules were found in "
            f"{len(layers)}: {[found[i].name for i in layers]}."
        )
    return [found[i] for i in layers]


def _unrecognised_model_message(model: nn.Module) -> str:
    looked_for = sorted(
        {name for layout in ATTENTION_LAYOUTS.values() for name in layout.module_names()}
    )
    candidates = [
        f"{name} ({type(module).__name__}: children {[c for c, _ in module.named_children()]})"
        for name, module in model.named_modules()
        if "attn" in name.rsplit(".", 1)[-1].lower() or "attention" in type(module).__name__.lower()
    ]
    found = (
        "; ".join(candidates[:6]) + (" ..." if len(candidates) > 6 else "")
        if candidates
        else "none"
    )
    return (
        f"no Q/K projection found in {type(model).__name__}: looked for attention modules with "
        f"children {looked_for} (layouts: {', '.join(ATTENTION_LAYOUTS)}). Attention modules "
        f"found: {found}. Add a layout to `hf_qkdelay.selection.ATTENTION_LAYOUTS` or select "
        "parameters by name with a rule's `params:` pattern."
    )


def select_projections(
    model: nn.Module,
    layers: str = "upper",
    projections: Sequence[str] = ("q", "k"),
    argument: str = "qk_delay_layers",
) -> list[ParamSlice]:
    """The trainable Q/K/V parameters (or fused slices) of the chosen decoder layers."""
    projections = tuple(projections)
    unknown = [p for p in projections if p not in PROJECTIONS]
    if unknown or not projections:
        raise ValueError(
            f"`qk_delay_targets`={','.join(projections)!r} names no projection or an unknown one; "
            f"accepted: any of {', '.join(PROJECTIONS)} (comma-separated)."
        )
    attention_modules = find_attention_modules(model)
    chosen = parse_layer_spec(layers, len(attention_modules), argument=argument)
    config = getattr(model, "config", None)
    slices = []
    for layer in chosen:
        attention = attention_modules[layer]
        for projection in projections:
            slices.extend(
                attention.layout.slices(attention.module, attention.name, layer, projection, config)
            )
    return slices


def select_by_pattern(model: nn.Module, pattern: str) -> list[ParamSlice]:
    """Whole trainable parameters whose name contains a match of the regular expression."""
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise ValueError(
            f"`params`={pattern!r} is not a valid regular expression: {error}."
        ) from None
    return [
        ParamSlice(name=name, param=param)
        for name, param in model.named_parameters()
        if param.requires_grad and regex.search(name)
    ]
