"""Plain JSON data (:func:`agricredit.jsondata.json_ready`), against what :mod:`json` reads back."""

from __future__ import annotations

import json
import math

import numpy as np

from agricredit.jsondata import json_ready


def test_non_finite_floats_are_null_tuples_lists_numpy_scalars_python():
    value = {"a": (1, np.float64(2.5), np.int64(3), np.bool_(True)),
             "b": [math.nan, -math.inf, math.inf, np.float32(0.5)], "c": {"d": None, "e": "村"}}
    got = json_ready(value)
    assert got == {"a": [1, 2.5, 3, True], "b": [None, None, None, 0.5], "c": {"d": None, "e": "村"}}
    assert [type(x) for x in got["a"]] == [int, float, int, bool]
    assert json.loads(json.dumps(got, allow_nan=False)) == got  # plain JSON: NaN would have been refused


def test_text_keys_keep_their_order_unless_sorted():
    value = {"z": {"b": 1, "a": 2}, "a": [{"y": 1, "x": 2}]}
    assert list(json_ready(value)) == ["z", "a"] and list(json_ready(value)["z"]) == ["b", "a"]
    ordered = json_ready(value, sort_keys=True)
    assert list(ordered) == ["a", "z"] and list(ordered["z"]) == ["a", "b"] and list(ordered["a"][0]) == ["x", "y"]
    assert ordered == value


def test_other_keys_become_text_in_text_order():
    got = json_ready({2024: 510.0, 9: 1.0, 10: 2.0})
    assert list(got) == ["10", "2024", "9"]  # as the canonical JSON writes them, not 9 < 10 < 2024
    assert got == json.loads(json.dumps({2024: 510.0, 9: 1.0, 10: 2.0}))
    assert list(json_ready({1: "x", "a": "y"})) == ["1", "a"]  # keys of two types


def test_a_mapping_or_list_of_plain_leaves_is_a_copy_equal_to_the_item_by_item_form():
    for value in ({"a": 1, "b": "村", "c": None, "d": True}, ["a", 1, None, False], ("a", 2), {}, []):
        got = json_ready(value)
        assert got == json.loads(json.dumps(value)) and got is not value
        assert type(got) is (dict if isinstance(value, dict) else list)
    assert json_ready({"a": 1, "b": [2.5, math.nan], "c": -math.inf}) == {"a": 1, "b": [2.5, None], "c": None}
    assert json_ready([True, np.int64(3)]) == [True, 3] and type(json_ready([np.int64(3)])[0]) is int
