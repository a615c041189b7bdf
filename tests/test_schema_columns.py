"""Whole-column formatting (:func:`agricredit.schema.format_column`) against :func:`format_value` one value at a time."""

import math
import random

import pytest

from agricredit.schema import KINDS, format_column, format_value

DECIMAL_KINDS = sorted(kind for kind, spec in KINDS.items() if spec.decimals is not None)


def _one_by_one(kind, values):
    return [format_value(kind, value) for value in values]


def _ties(decimals):
    """Decimal halves at ``decimals`` (2.675, 0.285 ...), whose doubles lie just under or over the half."""
    rng = random.Random(decimals)
    texts = [f"{rng.randint(0, 10**6)}.{rng.randint(0, 10**decimals - 1):0{decimals}d}5" for _ in range(2000)]
    return [float(t) for t in texts] + [-float(t) for t in texts[:500]]


@pytest.mark.parametrize("kind", DECIMAL_KINDS)
def test_a_float_column_rounds_as_python_round_does(kind):
    decimals = KINDS[kind].decimals
    rng = random.Random(11)
    values = [rng.uniform(-1e4, 1e4) for _ in range(3000)] + [rng.random() for _ in range(3000)]
    values += _ties(decimals) + [0.5, 0.125, 2.5, 1e-12, -1e-12, -0.0, 0.0, 1e17, -3.3e20, 2.0**50 / 10**decimals]
    values += [None, math.nan, math.inf, -math.inf]
    if kind == "fraction":
        values = [v for v in values if v is None or not math.isfinite(v) or 0.0 <= round(v, decimals) <= 1.0]
    expected = _one_by_one(kind, values)
    got = format_column(kind, values)
    assert got == expected
    assert [type(v) for v in got] == [type(v) for v in expected]
    assert all(math.copysign(1.0, v) == 1.0 for v in got if v == 0.0)  # no -0.0


def test_the_scaled_products_near_a_half_are_the_ones_python_decides():
    # 2.675 is stored as 2.67499999999999982236431605997495353221893310546875: Python's round gives 2.67
    # although 2.675 * 100 is 267.49999999999997 and 1.005 * 100 is 100.49999999999999 (round: 1.0).
    assert format_column("metres", [2.675, 1.005, 0.285]) == [2.67, 1.0, 0.28]
    assert format_column("mu", [0.00005, 0.00015, 1.00005]) == [round(0.00005, 4), round(0.00015, 4), round(1.00005, 4)]


@pytest.mark.parametrize("value, refused", [(1.0, False), (1.00004, False), (1.00005, True), (0.0, False),
                                            (-0.00004, False), (-0.00005, True)])
def test_a_float_fraction_column_is_refused_at_and_past_one(value, refused):
    # round(1.00004, 4) is 1.0 and round(-0.00004, 4) is -0.0 (written 0.0): kept; 1.0001 and -0.0001 are not
    if refused:
        with pytest.raises(ValueError, match=f"fraction {round(value, 4)!r} outside"):
            format_column("fraction", [0.5, None, value, 2.0])
    else:
        assert format_column("fraction", [0.5, None, value]) == _one_by_one("fraction", [0.5, None, value])


@pytest.mark.parametrize("kind, values", [
    ("date", ["2023-05-05T00:00:00", "2023-06-01", None, "", "x"]),
    ("integer", [0, 7, -3, None, 2.0, math.nan, 2**53 - 1]),
    ("yuan", [0.0, 1234.999999, 1234.9999994, 1e7 + 0.5, -0.2, None, math.nan, math.inf, 5]),
])
def test_date_count_and_money_columns_are_formatted_as_one_by_one(kind, values):
    got = format_column(kind, values)
    assert got == _one_by_one(kind, values)
    assert [type(v) for v in got] == [type(v) for v in _one_by_one(kind, values)]


def test_a_count_too_large_for_a_float_is_refused_as_format_value_refuses():
    with pytest.raises(ValueError, match="not an integer"):
        format_value("integer", 2**60 + 1)
    with pytest.raises(ValueError, match="not an integer"):
        format_column("integer", [1, 2**60 + 1])
