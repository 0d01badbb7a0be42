import pytest

from hf_qkdelay.layers import parse_layer_spec


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("upper", [6, 7, 8, 9, 10, 11]),
        ("lower", [0, 1, 2, 3, 4, 5]),
        ("top:3", [9, 10, 11]),
        ("bottom:2", [0, 1]),
        ("all", list(range(12))),
        ("none", []),
        ("8-11", [8, 9, 10, 11]),
        ("0,2,5-7", [0, 2, 5, 6, 7]),
        (" 3 , 1 ", [1, 3]),
        ("4-4", [4]),
        (5, [5]),
    ],
)
def test_layer_specs(spec, expected):
    assert parse_layer_spec(spec, 12) == expected


def test_upper_half_of_odd_depth_takes_the_middle_layer():
    assert parse_layer_spec("upper", 5) == [2, 3, 4]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("12", "names layer 12, but the model has 12"),
        ("10-13", "names layer 13"),
        ("11-8", "reversed"),
        ("top:0", "K in `top:K`"),
        ("top:13", "K in `top:K`"),
        ("upper-half", "not a layer specification"),
        ("1,,2", "not a layer specification"),
        ("-1", "not a layer specification"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match="qk_delay_layers") as error:
        parse_layer_spec(spec, 12)
    assert message in str(error.value)
