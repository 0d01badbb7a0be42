"""Layer specifications: which decoder layers a rule governs.

Accepted forms (layers are 0-based, `L` is the number of decoder layers):

- `upper`: layers L//2 .. L-1 (the default for the Q/K delay);
- `lower`: layers 0 .. L//2 - 1 (for control runs);
- `top:K`: the last K layers; `bottom:K`: the first K;
- `all` and `none`;
- indices and inclusive ranges, comma-separated: `8-11`, `0,2,5-7`.
"""

from __future__ import annotations

import re

LAYER_SPEC_HELP = (
    "`upper` (layers L//2..L-1), `lower`, `top:K`, `bottom:K`, `all`, `none`, or 0-based "
    "indices and inclusive ranges such as `8-11` or `0,2,5-7`"
)

# Deep enough for any real index: checking the syntax alone must not reject a valid spec.
_SYNTAX_ONLY_DEPTH = 1 << 30

_KEYWORDS = ("upper", "lower", "all", "none")

_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")
_INDEX = re.compile(r"^\d+$")


def parse_layer_spec(
    spec: str | int | list | tuple, num_layers: int | None, argument: str = "qk_delay_layers"
) -> list[int]:
    """The sorted layer indices that `spec` names in a model of `num_layers` layers.

    Raises `ValueError` naming `argument` for a spec that is malformed, names a layer the
    model does not have, or holds a reversed range. With `num_layers=None` only the syntax
    is checked (the model is not known yet) and the result is meaningless.
    """
    if num_layers is None:
        if not (isinstance(spec, str) and spec.strip().lower() in _KEYWORDS):
            parse_layer_spec(spec, _SYNTAX_ONLY_DEPTH, argument)
        return []
    if num_layers <= 0:
        raise ValueError(f"the model has {num_layers} decoder layers; cannot select `{argument}`")
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = str(spec)
    if isinstance(spec, list | tuple):
        spec = ",".join(str(part) for part in spec)
    if not isinstance(spec, str):
        raise ValueError(
            f"`{argument}`={spec!r} is not a layer specification; accepted: {LAYER_SPEC_HELP}."
        )

    text = spec.strip().lower()
    half = num_layers // 2
    if text == "upper":
        return list(range(half, num_layers))
    if text == "lower":
        return list(range(0, half))
    if text == "all":
        return list(range(num_layers))
    if text == "none":
        return []
    for prefix in ("top:", "bottom:"):
        if text.startswith(prefix):
            count_text = text[len(prefix) :].strip()
            if not _INDEX.match(count_text) or int(count_text) < 1:
                raise ValueError(
                    f"`{argument}`={spec!r}: K in `{prefix}K` must be a positive integer."
                )
            if int(count_text) > num_layers:
                raise ValueError(
                    f"`{argument}`={spec!r}: K in `{prefix}K` must be an integer from 1 to "
                    f"{num_layers} (the model has {num_layers} layers)."
                )
            count = int(count_text)
            return (
                list(range(num_layers - count, num_layers))
                if prefix == "top:"
                else list(range(count))
            )

    layers: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if _INDEX.match(part):
            first = last = int(part)
        elif match := _RANGE.match(part):
            first, last = int(match.group(1)), int(match.group(2))
            if first > last:
                raise ValueError(
                    f"`{argument}`={spec!r}: the range `{part}` is reversed; write it as "
                    f"`{last}-{first}` (ranges are inclusive, low-high)."
                )
        else:
            raise ValueError(
                f"`{argument}`={spec!r} is not a layer specification; accepted: {LAYER_SPEC_HELP}."
            )
        if last >= num_layers:
            raise ValueError(
                f"`{argument}`={spec!r} names layer {last}, but the model has {num_layers} "
                f"decoder layers (0 to {num_layers - 1})."
            )
        layers.update(range(first, last + 1))
    return sorted(layers)
