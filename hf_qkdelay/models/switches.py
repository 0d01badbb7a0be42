"""The architecture switches shared by `qkd_gpt2` and `qkd_llama`: accepted values and checks.

NOTE: this file is copied next to the model code by `save_pretrained` (the configuration files
import it relatively), so it may import only what a fresh process with transformers has.
"""

from transformers.activations import ACT2FN

NORM_TYPES = ("layernorm", "rmsnorm")
POSITION_EMBEDDINGS = ("learned", "rope")


def check_shared_switches(config) -> None:
    """Raise `ValueError` naming the field, the value and what is accepted for a bad switch."""
    _check_choice("norm_type", config.norm_type, NORM_TYPES)
    _check_choice("position_embedding", config.position_embedding, POSITION_EMBEDDINGS)
    if config.ffn_activation not in ACT2FN:
        raise ValueError(
            f"`ffn_activation`={config.ffn_activation!r} is not an activation transformers knows; "
            f"use one of {sorted(ACT2FN)} (transformers.activations.ACT2FN)."
        )
    if config.ffn_width_multiple < 1:
        raise ValueError(
            f"`ffn_width_multiple`={config.ffn_width_multiple} must be a positive number of units "
            "(the FFN width is rounded to a multiple of it when `match_ffn_params` is on)."
        )
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if config.position_embedding == "rope" and head_dim % 2:
        raise ValueError(
            f"`position_embedding`='rope' rotates pairs of channels, so it needs an even head size, "
            f"got {head_dim} (`hidden_size`={config.hidden_size}, `num_attention_heads`="
            f"{config.num_attention_heads}): change either, or use 'learned'."
        )


def round_to_multiple(numerator: int, denominator: int, multiple: int) -> int:
    """`numerator / denominator` rounded to the nearest positive multiple of `multiple` (halves up).

    Integer arithmetic, so that the FFN width never depends on float rounding.
    """
    units = (2 * numerator + denominator * multiple) // (2 * denominator * multiple)
    return max(1, units) * multiple


def matched_gated_width(ungated_width: int, multiple: int) -> int:
    """The width of a gated FFN (3 matrices) with the weights of an ungated one (2 matrices)."""
    return round_to_multiple(2 * ungated_width, 3, multiple)


def matched_ungated_width(gated_width: int, multiple: int) -> int:
    """The width of an ungated FFN (2 matrices) with the weights of a gated one (3 matrices)."""
    return round_to_multiple(3 * gated_width, 2, multiple)


def _check_choice(name: str, value, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        choices = ", ".join(repr(choice) for choice in accepted)
        raise ValueError(f"`{name}`={value!r} is not supported: use one of {choices}.")
