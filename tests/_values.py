"""Comparison of an audit form (nested dicts and lists) with one written out by hand in a test."""

from __future__ import annotations

from typing import Any

import pytest


def approx_equal(got: Any, expected: Any, where: str = "value") -> bool:
    """``expected`` found in ``got``: its keys in the same order (fields added later may sit between them), equal
    values, floats to 1e-9 and written as floats (the JSON audit record writes "6700.0", not "6700")."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(expected) <= set(got), (where, list(got), list(expected))
        assert [k for k in got if k in expected] == list(expected), (where, list(got), list(expected))
        return all(approx_equal(got[k], v, f"{where}.{k}") for k, v in expected.items())
    if isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), (where, got, expected)
        return all(approx_equal(g, e, f"{where}[{i}]") for i, (g, e) in enumerate(zip(got, expected)))
    if isinstance(expected, float):
        assert isinstance(got, float) and got == pytest.approx(expected, abs=1e-9), (where, got, expected)
        return True
    assert got == expected, (where, got, expected)
    return True
