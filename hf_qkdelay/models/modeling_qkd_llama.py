"""`qkd_llama`: transformers' LLaMA, with the modules that a switch changes swapped in.

The model is transformers' `LlamaModel` / `LlamaForCausalLM`: the attention stays at
`model.layers.{i}.self_attn` with separate `q_proj`, `k_proj`, `v_proj`, `o_proj` (biases
follow `use_bias` through LLaMA's own `attention_bias` / `mlp_bias`). A switch replaces only
the modules it concerns, after transformers has built the stock ones; with the defaults
nothing is replaced.

NOTE: `save_pretrained` copies this file and its relative imports next to the weights for
`trust_remote_code` loading, so it imports only torch, transformers and relative modules.
"""

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.models.llama.modeling_llama import (
    LlamaForCausalLM,
    LlamaModel,
    LlamaPreTrainedModel,
)
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_qkd_llama import QKDLlamaConfig
from .norms import build_norm


class UngatedMLP(nn.Module):
    """The plain two-matrix FFN `down_proj(act(up_proj(x)))`, named as in `LlamaMLP`."""

    def __init__(self, config: QKDLlamaConfig, intermediate_size: int) -> None:
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, intermediate_size, bias=config.use_bias)
        self.down_proj = nn.Linear(intermediate_size, config.hidden_size, bias=config.use_bias)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.up_proj(x)))


class NoRotation(nn.Module):
    """Stands in for `LlamaRotaryEmbedding` with learned absolute positions: cos 1 and sin 0,
    so LLaMA's attention code runs unchanged and its rotation is an exact identity."""

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.head_dim = head_dim

    def forward(
        self, x: torch.Tensor, position_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (*position_ids.shape, self.head_dim)  # (B, T, d), as the rotary embedding returns
        return x.new_ones(shape), x.new_zeros(shape)


class QKDLlamaModel(LlamaModel):
    """`LlamaModel` with the switched modules of `config` swapped in."""

    config: QKDLlamaConfig

    def __init__(self, config: QKDLlamaConfig) -> None:
        # `update_from_string` bypasses the config's own checks; repeat them before building.
        config.check_switches()
        super().__init__(config)

        # Norms: every norm follows `norm_type` and `use_bias`.
        replace_norms = config.norm_type != "rmsnorm" or config.use_bias
        if replace_norms:
            self.norm = self._build_norm(config)

        for layer in self.layers:
            if replace_norms:
                layer.input_layernorm = self._build_norm(config)
                layer.post_attention_layernorm = self._build_norm(config)
            if not config.gated_ffn:
                layer.mlp = UngatedMLP(config, config.ffn_width)

        # Positions: a learned absolute table added to the token embeddings, and no rotation.
        if config.position_embedding == "learned":
            self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
            self.rotary_emb = NoRotation(config.head_dim)

        # Initialise the swapped-in modules; transformers' weights are already initialised.
        self.post_init()

    @staticmethod
    def _build_norm(config: QKDLlamaConfig) -> nn.Module:
        return build_norm(
            config.norm_type, config.hidden_size, config.rms_norm_eps, config.use_bias
        )

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ):
        # Learned positions: add them to the token embeddings, then run LLaMA as it is.
        if self.config.position_embedding == "learned" and (input_ids is None) != (
            inputs_embeds is None
        ):
            if inputs_embeds is None:
                inputs_embeds = self.embed_tokens(input_ids)  # (B, T, E)
                input_ids = None
            if position_ids is None:
                # As `LlamaModel.forward` numbers them: after the tokens already in the cache.
                past_seen_tokens = cache.get_seq_length() if cache is not None else 0
                position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device)
                position_ids = (position_ids + past_seen_tokens).unsqueeze(0)  # (1, T)
            inputs_embeds = inputs_embeds + self.embed_positions(position_ids)

        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )


class QKDLlamaForCausalLM(LlamaForCausalLM):
    """`LlamaForCausalLM` over a `QKDLlamaModel`; with default switches its checkpoints are stock LLaMA."""

    config: QKDLlamaConfig

    def __init__(self, config: QKDLlamaConfig) -> None:
        # The body of `LlamaForCausalLM.__init__` with our base model: calling it would build,
        # initialise and throw away a whole stock `LlamaModel` first.
        LlamaPreTrainedModel.__init__(self, config)
        self.model = QKDLlamaModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()


__all__ = ["QKDLlamaForCausalLM", "QKDLlamaModel"]
