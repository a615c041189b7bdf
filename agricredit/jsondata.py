"""Plain JSON data from the values the pipeline holds (the audit records' form, design §8).

:func:`json_ready` turns a check's figures, industry-chain evidence or a
policy into what a JSON text reads back as: NaN and infinities as ``None``,
tuples as lists, numpy scalars as Python numbers, mapping keys as text.
The ``to_dict`` methods of :mod:`agricredit.verify` and :mod:`agricredit.credit`
apply it to their free-form parts only, so that an audit record is JSON-ready
as built, without a walk over all of it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["canonical_json", "json_bytes", "json_ready"]

#: The canonical JSON text (one encoder for all: a ``json.dumps`` call with options builds a new one).
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
#: Where orjson's text may differ from :data:`_CANONICAL`'s: a float under 10⁻⁴ (orjson writes ``0.000099`` and
#: ``1e-6`` where json writes ``9.9e-05`` and ``1e-06``). Text that merely looks so is encoded by json too.
#: (Looked for with ``in``: four times as fast as a regular expression of the two.)
_ORJSON_MAY_DIFFER = (b"0.0000", b"e-")


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value``: sorted keys, UTF-8 text, no spaces, no NaN.

    The text is that of ``json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False,
    separators=(",", ":"))``, which the audit records (:func:`agricredit.audit.record_line`) of every version and the
    outputs' JSON fields hold. orjson writes it about eight times as fast (a county's audit records are 260 MB), and
    is used unless its text may differ (:data:`_ORJSON_MAY_DIFFER`) or it refuses a value (an integer beyond 64 bits,
    a key that is not text, a float subclass): then json encodes it. (A NaN, which :func:`json_ready` data never
    holds, is written ``null`` by orjson where json refuses it.)
    """
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return _CANONICAL.encode(value)
    small, exponent = _ORJSON_MAY_DIFFER
    return _CANONICAL.encode(value) if small in text or exponent in text else text.decode("utf-8")

#: Types that are JSON as they are (a leaf of these is kept without a call).
_PLAIN = frozenset({str, int, bool, type(None)})
#: ``_TEXT_ONLY.issuperset(map(type, keys))``: whether every key is text, checked in C (no generator per key).
_TEXT_ONLY = frozenset({str})


def json_ready(value: Any, sort_keys: bool = False) -> Any:
    """Plain JSON data: NaN/inf as None, tuples as lists, numpy scalars as Python numbers, keys as text.

    Parameters
    ----------
    value
        Nested mappings, lists, tuples and scalars.
    sort_keys
        Order every mapping's keys by their text; otherwise text keys keep
        their order (canonical JSON sorts them when written) and other keys
        become text, in text order.

    Returns
    -------
    Any
        The same data as :func:`json.loads` of its JSON text would give, with
        non-finite floats as ``None``.
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict or isinstance(value, Mapping):
        if not sort_keys and _TEXT_ONLY.issuperset(map(type, value)):
            if _PLAIN.issuperset(map(type, value.values())):  # plain leaves only: copied in C
                return dict(value)
            return {name: item if type(item) in _PLAIN or (type(item) is float and math.isfinite(item))
                    else json_ready(item) for name, item in value.items()}
        return {str(name): json_ready(value[name], sort_keys) for name in sorted(value, key=str)}
    if kind is list or kind is tuple or isinstance(value, (list, tuple)):
        if _PLAIN.issuperset(map(type, value)):  # plain items only: copied in C
            return list(value)
        return [item if type(item) in _PLAIN or (type(item) is float and math.isfinite(item))
                else json_ready(item, sort_keys) for item in value]
    if hasattr(value, "item"):  # numpy scalar
        return json_ready(value.item(), sort_keys)
    return value


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON of a JSON-ready value (no NaN: :func:`agricredit.outputs._plain` it first).

    orjson encodes the county's layers (millions of coordinates) about eight times as fast as :mod:`json` and
    writes what ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))`` writes (shortest round-trip
    numbers), but for floats under 10⁻⁴, written as decimals (``0.00001``, the same number as ``1e-05``). A value
    orjson refuses (an integer beyond 64 bits) is encoded by :mod:`json`.
    """
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
