"""The norm switch (`norm_type`, `use_bias`) shared by both model families.

NOTE: `save_pretrained` copies this file next to the model code (the modeling files import it
relatively), so it may import only what a fresh process with transformers has.
"""

import torch
from torch import nn
from transformers.models.llama.modeling_llama import LlamaRMSNorm


class BiasedRMSNorm(nn.Module):
    """LLaMA's RMSNorm plus an additive bias, so that `use_bias` means the same for both norms.

    Not a subclass of `LlamaRMSNorm`: a kernel swapped in for that class would drop the bias.
    """

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # Same arithmetic as LlamaRMSNorm: normalise in float32, scale in the input dtype.
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype) + self.bias

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.variance_epsilon}, bias=True"


def build_norm(norm_type: str, hidden_size: int, eps: float, use_bias: bool) -> nn.Module:
    """A norm over the last axis of size `hidden_size`; `norm_type` is checked by the config."""
    if norm_type == "layernorm":
        return nn.LayerNorm(hidden_size, eps=eps, bias=use_bias)
    if use_bias:
        return BiasedRMSNorm(hidden_size, eps=eps)
    return LlamaRMSNorm(hidden_size, eps=eps)
