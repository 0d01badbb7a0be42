"""Configuration of `qkd_gpt2`: transformers' GPT-2 with switchable FFN, norms, biases and positions.

NOTE: `save_pretrained` copies this file (and the files it imports relatively) next to the
weights for `trust_remote_code` loading, so it imports only transformers and relative modules.
"""

from huggingface_hub.dataclasses import strict
from transformers import GPT2Config
from transformers.modeling_rope_utils import RopeParameters

from .switches import check_shared_switches, matched_gated_width


@strict
class QKDGPT2Config(GPT2Config):
    r"""`GPT2Config` plus the switches of the component ablations; the defaults are stock GPT-2.

    A model built from the defaults holds exactly the parameters of transformers'
    `GPT2LMHeadModel` under the same names, so its checkpoints load there unchanged.

    Args (beyond `GPT2Config`'s):
        gated_ffn (`bool`, defaults to `False`):
            `True`: the FFN computes `c_proj(act(c_gate(x)) * c_fc(x))` (three matrices);
            `False`: GPT-2's `c_proj(act(c_fc(x)))`.
        ffn_activation (`str`, defaults to `"gelu_new"`):
            The FFN activation, any key of `transformers.activations.ACT2FN`. An alias of
            GPT-2's `activation_function` (the name stored in `config.json`).
        norm_type (`str`, defaults to `"layernorm"`):
            `"layernorm"` or `"rmsnorm"`, for `ln_1`, `ln_2` and `ln_f` alike.
        use_bias (`bool`, defaults to `True`):
            Biases on every projection (`c_attn`, `c_proj`, `c_fc`, `c_gate`) and norm, or none.
        position_embedding (`str`, defaults to `"learned"`):
            `"learned"`: GPT-2's absolute table `wpe`; `"rope"`: LLaMA's rotary embedding of the
            queries and keys (then there is no `wpe` parameter).
        rope_parameters (`dict`, *optional*):
            As in `LlamaConfig` (`rope_type`, `rope_theta`, default theta 10000); used with `"rope"`.
        match_ffn_params (`bool`, defaults to `False`):
            With `gated_ffn=True`, shrink the FFN width to 2/3 of `n_inner` (or `4 * n_embd`), so
            that the gated FFN has the weights of the ungated one it replaces.
        ffn_width_multiple (`int`, defaults to 64):
            The matched width is rounded to a multiple of this many units.

    The three dropout probabilities default to 0 here (0.1 in `GPT2Config`), as in LLaMA.
    """

    model_type = "qkd_gpt2"
    attribute_map = {**GPT2Config.attribute_map, "ffn_activation": "activation_function"}

    # Dropout is off unless set, as in LLaMA: a 0.1 default alone changes results and speed.
    resid_pdrop: float | int = 0.0
    embd_pdrop: float | int = 0.0
    attn_pdrop: float | int = 0.0

    # The switches; the defaults are GPT-2's own choices.
    gated_ffn: bool = False
    norm_type: str = "layernorm"
    use_bias: bool = True
    position_embedding: str = "learned"
    rope_parameters: RopeParameters | dict | None = None

    # FFN sizing for gated/ungated pairs with the same number of weights.
    match_ffn_params: bool = False
    ffn_width_multiple: int = 64

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.check_switches()

    def check_switches(self) -> None:
        """Raise `ValueError` for a bad switch; the model calls it again at construction, because
        `update_from_string` sets fields without running `__post_init__`."""
        check_shared_switches(self)
        if self.add_cross_attention:
            raise ValueError(
                "`add_cross_attention`=True is not supported by `qkd_gpt2` (a decoder-only model); "
                "use transformers' GPT2LMHeadModel for cross-attention."
            )

    @property
    def ffn_width(self) -> int:
        """The hidden width of the FFN that the model builds (`n_inner` is the ungated width)."""
        ungated_width = self.n_inner if self.n_inner is not None else 4 * self.n_embd
        if self.gated_ffn and self.match_ffn_params:
            return matched_gated_width(ungated_width, self.ffn_width_multiple)
        return ungated_width


__all__ = ["QKDGPT2Config"]
