import math

import pytest

from hf_qkdelay.schedules import MultiplierSchedule


def test_constant_linear_cosine_values():
    constant = MultiplierSchedule("constant", factor=0.1, steps=4)
    linear = MultiplierSchedule("linear", factor=0.1, steps=4)
    cosine = MultiplierSchedule("cosine", factor=0.1, steps=4)
    assert [constant.value(t) for t in range(6)] == [0.1, 0.1, 0.1, 0.1, 1.0, 1.0]
    assert [linear.value(t) for t in range(6)] == pytest.approx(
        [0.1, 0.325, 0.55, 0.775, 1.0, 1.0], abs=1e-15
    )
    expected = [0.1 + 0.9 * (1 - math.cos(math.pi * t / 4)) / 2 for t in range(4)] + [1.0, 1.0]
    assert [cosine.value(t) for t in range(6)] == pytest.approx(expected, abs=1e-15)
    assert cosine.value(2) == pytest.approx(0.55, abs=1e-15)


def test_factor_zero_and_one():
    assert MultiplierSchedule("linear", factor=0.0, steps=10).value(0) == 0.0
    assert MultiplierSchedule("cosine", factor=1.0, steps=10).value(3) == 1.0
    assert MultiplierSchedule("constant", factor=1.0, steps=10).is_identity
    assert MultiplierSchedule("constant", factor=0.5, steps=0).is_identity
    assert MultiplierSchedule("constant", factor=0.5, steps=0).value(0) == 1.0


def test_fraction_of_training_is_resolved_like_warmup():
    schedule = MultiplierSchedule("constant", factor=0.1, steps=0.2)
    assert schedule.is_fraction
    assert schedule.resolve(100).steps == 20
    assert schedule.resolve(7).steps == 2  # ceil(1.4)
    assert schedule.resolve(2).steps == 1
    with pytest.raises(RuntimeError, match="fraction of training"):
        schedule.value(0)
    with pytest.raises(ValueError, match="total number of updates"):
        schedule.resolve(-1)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"factor": -0.1}, "qk_delay_factor"),
        ({"factor": 1.5}, "qk_delay_factor"),
        ({"steps": -1}, "qk_delay_steps"),
        ({"steps": 2.5}, "qk_delay_steps"),
        ({"steps": float("nan")}, "qk_delay_steps"),
        ({"kind": "exponential"}, "qk_delay_schedule"),
    ],
)
def test_bad_values_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument) as error:
        MultiplierSchedule(**kwargs)
    assert (
        "accepted" in str(error.value)
        or "give" in str(error.value)
        or "outside" in str(error.value)
    )
