"""Configuration of `qkd_llama`: transformers' LLaMA with switchable FFN, norms, biases and positions.

NOTE: `save_pretrained` copies this file (and the files it imports relatively) next to the
weights for `trust_remote_code` loading, so it imports only transformers and relative modules.
"""

from huggingface_hub.dataclasses import strict
from transformers import LlamaConfig

from .switches import check_shared_switches, matched_ungated_width


@strict
class QKDLlamaConfig(LlamaConfig):
    r"""`LlamaConfig` plus the switches of the component ablations; the defaults are stock LLaMA.

    A model built from the defaults holds exactly the parameters of transformers'
    `LlamaForCausalLM` under the same names, so its checkpoints load there unchanged.

    Args (beyond `LlamaConfig`'s):
        gated_ffn (`bool`, defaults to `True`):
            `True`: LLaMA's `down_proj(act(gate_proj(x)) * up_proj(x))`; `False`: a plain
            two-matrix FFN `down_proj(act(up_proj(x)))`.
        ffn_activation (`str`, defaults to `"silu"`):
            The FFN activation, any key of `transformers.activations.ACT2FN`. An alias of
            LLaMA's `hidden_act` (the name stored in `config.json`).
        norm_type (`str`, defaults to `"rmsnorm"`):
            `"rmsnorm"` or `"layernorm"`, for `input_layernorm`, `post_attention_layernorm` and
            the final `norm` alike.
        use_bias (`bool`, defaults to `False`):
            Biases on every projection (`q/k/v/o_proj`, `gate/up/down_proj`) and norm, or none.
            LLaMA's own `attention_bias` and `mlp_bias` follow it (they are kept in
            `config.json` so that stock loaders build the same projections).
        position_embedding (`str`, defaults to `"rope"`):
            `"rope"`: LLaMA's rotary embedding; `"learned"`: GPT-2's absolute table, added to the
            token embeddings as `model.embed_positions`, and no rotation.
        match_ffn_params (`bool`, defaults to `False`):
            With `gated_ffn=False`, widen the FFN to 3/2 of `intermediate_size`, so that the
            ungated FFN has the weights of the gated one it replaces.
        ffn_width_multiple (`int`, defaults to 64):
            The matched width is rounded to a multiple of this many units.
    """

    model_type = "qkd_llama"
    attribute_map = {**LlamaConfig.attribute_map, "ffn_activation": "hidden_act"}

    # The switches; the defaults are LLaMA's own choices.
    gated_ffn: bool = True
    norm_type: str = "rmsnorm"
    use_bias: bool = False
    position_embedding: str = "rope"

    # FFN sizing for gated/ungated pairs with the same number of weights.
    match_ffn_params: bool = False
    ffn_width_multiple: int = 64

    def __post_init__(self, **kwargs):
        # Biases are one switch here: partial biases would make `use_bias` lie.
        if (self.attention_bias or self.mlp_bias) and not self.use_bias:
            raise ValueError(
                f"`attention_bias`={self.attention_bias} and `mlp_bias`={self.mlp_bias} with "
                "`use_bias`=False: qkd_llama has biases everywhere or nowhere; set `use_bias`=True."
            )
        self.attention_bias = self.mlp_bias = self.use_bias
        super().__post_init__(**kwargs)
        self.check_switches()

    def check_switches(self) -> None:
        """Raise `ValueError` for a bad switch and align LLaMA's bias fields with `use_bias`; the
        model calls it again at construction, because `update_from_string` sets fields without
        running `__post_init__`."""
        check_shared_switches(self)
        self.attention_bias = self.mlp_bias = self.use_bias

    @property
    def ffn_width(self) -> int:
        """The hidden width of the FFN that the model builds (`intermediate_size` is the gated width)."""
        if not self.gated_ffn and self.match_ffn_params:
            return matched_ungated_width(self.intermediate_size, self.ffn_width_multiple)
        return self.intermediate_size


__all__ = ["QKDLlamaConfig"]
