"""`qkd_gpt2`: transformers' GPT-2, with the modules that a switch changes swapped in.

The model is transformers' `GPT2Model` / `GPT2LMHeadModel`: blocks stay at `transformer.h.{i}`
with the fused Q/K/V projection `attn.c_attn` as a `Conv1D` (weight (E, 3E), Q = columns
[0:E], K = [E:2E], V = [2E:3E]). A switch replaces only the modules it concerns, after
transformers has built the stock ones; with the defaults nothing is replaced.

NOTE: `save_pretrained` copies this file and its relative imports next to the weights for
`trust_remote_code` loading, so it imports only torch, transformers and relative modules.
"""

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.gpt2.modeling_gpt2 import (
    GPT2MLP,
    GPT2Attention,
    GPT2LMHeadModel,
    GPT2Model,
    GPT2PreTrainedModel,
    eager_attention_forward,
)
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
from transformers.pytorch_utils import Conv1D

from .configuration_qkd_gpt2 import QKDGPT2Config
from .norms import build_norm


class BiaslessConv1D(Conv1D):
    """GPT-2's `Conv1D` (weight (in, out), output axis 1) with no bias parameter (`bias` is None)."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__(nf, nx)
        self.bias = None

    def __repr__(self) -> str:
        return f"BiaslessConv1D(nf={self.nf}, nx={self.nx})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.mm(x.view(-1, x.size(-1)), self.weight)  # (B*T, nx) @ (nx, nf)
        return x.view(size_out)


def build_conv1d(nf: int, nx: int, use_bias: bool) -> Conv1D:
    return Conv1D(nf, nx) if use_bias else BiaslessConv1D(nf, nx)


class NoPositionEmbedding(nn.Module):
    """Stands in for `wpe` with rotary positions: `GPT2Model.forward` always adds
    `wpe(position_ids)`, and adding this zero leaves the token embeddings exact."""

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        # A 0-dim float tensor: broadcasts, and keeps the dtype of the embeddings it is added to.
        return torch.zeros((), device=position_ids.device)


class QKDGPT2Attention(GPT2Attention):
    """GPT-2 self-attention, optionally without biases and with rotary positions on Q and K."""

    def __init__(self, config: QKDGPT2Config, layer_idx: int | None = None) -> None:
        super().__init__(config, is_cross_attention=False, layer_idx=layer_idx)
        if not config.use_bias:
            self.c_attn = BiaslessConv1D(3 * self.embed_dim, self.embed_dim)
            self.c_proj = BiaslessConv1D(self.embed_dim, self.embed_dim)
        # LLaMA's rotary embedding, so that both families rotate exactly alike.
        self.rotary_emb = (
            LlamaRotaryEmbedding(config) if config.position_embedding == "rope" else None
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        cache=None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = False,
        **kwargs,
    ):
        if self.rotary_emb is None:
            return super().forward(
                hidden_states,
                cache=cache,
                attention_mask=attention_mask,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                output_attentions=output_attentions,
                **kwargs,
            )

        # GPT-2's self-attention path with Q and K rotated before the cache and the scores:
        # split the fused (B, T, 3E) output into (B, H, T, d) queries, keys and values.
        query, key, value = self.c_attn(hidden_states).split(self.split_size, dim=2)
        head_shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        query, key, value = (t.view(head_shape).transpose(1, 2) for t in (query, key, value))

        # `GPT2Model.forward` passes every block the `position_ids` it used (cache offset included).
        cos, sin = self.rotary_emb(value, kwargs["position_ids"])
        query, key = apply_rotary_pos_emb(query, key, cos, sin)

        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx, kwargs=kwargs)

        if self.config._attn_implementation == "eager" and self.reorder_and_upcast_attn:
            attn_output, attn_weights = self._upcast_and_reordered_attn(
                query, key, value, attention_mask
            )
        else:
            attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
                self.config._attn_implementation, eager_attention_forward
            )
            attn_output, attn_weights = attention_interface(
                self,
                query,
                key,
                value,
                attention_mask,
                dropout=self.attn_dropout.p if self.training else 0.0,
                scaling=self.scaling,
                **kwargs,
            )

        attn_output = attn_output.reshape(*attn_output.shape[:-2], -1).contiguous()  # (B, T, E)
        attn_output = self.resid_dropout(self.c_proj(attn_output))
        return attn_output, attn_weights


class QKDGPT2MLP(GPT2MLP):
    """GPT-2's FFN, optionally gated (`c_proj(act(c_gate(x)) * c_fc(x))`) and without biases.

    A subclass of `GPT2MLP`, so that GPT-2's depth-scaled initialisation of `c_proj` applies.
    """

    def __init__(self, intermediate_size: int, config: QKDGPT2Config) -> None:
        super().__init__(intermediate_size, config)
        embed_dim = config.hidden_size
        if not config.use_bias:
            self.c_fc = BiaslessConv1D(intermediate_size, embed_dim)
            self.c_proj = BiaslessConv1D(embed_dim, intermediate_size)
        self.c_gate = (
            build_conv1d(intermediate_size, embed_dim, config.use_bias)
            if config.gated_ffn
            else None
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.c_gate is None:
            return super().forward(hidden_states)
        hidden_states = self.act(self.c_gate(hidden_states)) * self.c_fc(hidden_states)  # (B, T, F)
        hidden_states = self.c_proj(hidden_states)
        return self.dropout(hidden_states)


class InitialiseAsGPT2:
    """Initialise as transformers initialises its own GPT-2.

    For classes outside transformers ("custom code"), transformers skips `_init_weights` on
    modules that hold no parameter of their own, and GPT-2 applies its depth-scaled
    initialisation of `c_proj` (std `initializer_range / sqrt(2 * n_layer)`) on exactly such
    modules, the attention and the MLP. Every init here goes through
    `transformers.initialization`, which leaves loaded weights alone, so the shortcut is not
    needed.
    """

    def _initialize_weights(self, module, is_custom_code: bool = False):
        super()._initialize_weights(module, is_custom_code=False)


class QKDGPT2Model(InitialiseAsGPT2, GPT2Model):
    """`GPT2Model` with the switched modules of `config` swapped in."""

    config: QKDGPT2Config

    def __init__(self, config: QKDGPT2Config) -> None:
        # `update_from_string` bypasses the config's own checks; repeat them before building.
        config.check_switches()
        super().__init__(config)

        # Norms: every norm follows `norm_type` and `use_bias`.
        replace_norms = config.norm_type != "layernorm" or not config.use_bias
        if replace_norms:
            self.ln_f = self._build_norm(config)

        for layer_idx, block in enumerate(self.h):
            if replace_norms:
                block.ln_1 = self._build_norm(config)
                block.ln_2 = self._build_norm(config)
            if config.position_embedding == "rope" or not config.use_bias:
                block.attn = QKDGPT2Attention(config, layer_idx=layer_idx)
            if config.gated_ffn or not config.use_bias:
                block.mlp = QKDGPT2MLP(config.ffn_width, config)

        # Positions: rotary positions enter in the attention, so the absolute table goes.
        if config.position_embedding == "rope":
            self.wpe = NoPositionEmbedding()

        # Initialise the swapped-in modules; transformers' weights are already initialised.
        self.post_init()

    @staticmethod
    def _build_norm(config: QKDGPT2Config) -> nn.Module:
        return build_norm(
            config.norm_type, config.hidden_size, config.layer_norm_epsilon, config.use_bias
        )


class QKDGPT2LMHeadModel(InitialiseAsGPT2, GPT2LMHeadModel):
    """`GPT2LMHeadModel` over a `QKDGPT2Model`; with default switches its checkpoints are stock GPT-2."""

    config: QKDGPT2Config

    def __init__(self, config: QKDGPT2Config) -> None:
        # The body of `GPT2LMHeadModel.__init__` with our base model: calling it would build,
        # initialise and throw away a whole stock `GPT2Model` first.
        GPT2PreTrainedModel.__init__(self, config)
        # transformers guesses the loss from the class name, which ours does not match.
        self.loss_type = "ForCausalLM"
        self.transformer = QKDGPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()


__all__ = ["QKDGPT2LMHeadModel", "QKDGPT2Model"]
