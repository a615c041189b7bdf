"""The figures of explanations (:func:`agricredit.credit._num`, cached) against the plain per-value formula."""

import math
import random

import numpy as np
import pytest

from agricredit.credit import _num


def _plain(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ", ".join(map(_plain, value)) if isinstance(value, (list, tuple)) else str(value)
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def test_numbers_read_as_the_plain_formula_whatever_came_before():
    rng = random.Random(3)
    values = [rng.uniform(-1e7, 1e7) for _ in range(2000)] + [rng.randint(-10**6, 10**6) for _ in range(500)]
    values += [0, 0.0, -0.0, -0.004, 0.005, 0.015, 1, 1.0, 1.5, 2.675, 10**17 + 1, 1e17, math.nan, math.inf, -math.inf,
               np.float64(3.14159), np.int64(7), True, False, None, "text", [1.0, 2.5], (3, -0.001)]
    for order in (values, values[::-1], values + values):
        assert [_num(v) for v in order] == [_plain(v) for v in order]


@pytest.mark.parametrize("first, then", [(1.0, 1), (1, 1.0), (True, 1), (-0.0, 0.0), (0.0, -0.0), (1e17, 10**17 + 1)])
def test_equal_numbers_of_other_types_share_the_cached_text_only_when_it_is_the_same(first, then):
    _num(first)
    assert _num(then) == _plain(then)
