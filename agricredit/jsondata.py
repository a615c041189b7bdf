"""Plain JSON data from the values the pipeline holds (the audit records' form, design §8).

:func:`json_ready` turns a check's figures, industry-chain evidence or a
policy into what a JSON text reads back as: NaN and infinities as ``None``,
tuples as lists, numpy scalars as Python numbers, mapping keys as text.
The ``to_dict`` methods of :mod:`agricredit.verify` and :mod:`agricredit.credit`
apply it to their free-form parts only, so that an audit record is JSON-ready
as built, without a walk over all of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["json_ready"]

#: Types that are JSON as they are (a leaf of these is kept without a call).
_PLAIN = frozenset({str, int, bool, type(None)})


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
        if not sort_keys and all(type(name) is str for name in value):
            return {name: item if type(item) in _PLAIN or (type(item) is float and math.isfinite(item))
                    else json_ready(item) for name, item in value.items()}
        return {str(name): json_ready(value[name], sort_keys) for name in sorted(value, key=str)}
    if kind is list or kind is tuple or isinstance(value, (list, tuple)):
        return [item if type(item) in _PLAIN or (type(item) is float and math.isfinite(item))
                else json_ready(item, sort_keys) for item in value]
    if hasattr(value, "item"):  # numpy scalar
        return json_ready(value.item(), sort_keys)
    return value
