"""Records (one dict a row) kept as columns: :class:`ColumnarRows`, the form in which the season rows of a chunk
travel from a Dask worker to the client and are put together (:class:`agricredit.season.SeasonRows`).

A list of dicts pickles key by key and value by value (0.2 s of a worker for the 5,000 rows of a county chunk) and
``pandas.DataFrame(records)`` walks every cell again. The columns pickle as arrays, are put together from chunks
and reordered array by array, and give the very frame ``pandas.DataFrame(records)`` would give: the columns in the
order of their first appearance in the rows, the same dtypes and the same values. A column whose every row holds
a Python ``float`` (or lacks the key), every row a Python ``int`` or every row a ``bool`` is kept as a
``float64``, ``int64`` or ``bool`` array (what pandas would infer); a column whose every row holds a
``numpy.datetime64`` of one unit as a ``datetime64`` array (those scalars pickle one by one, at 60 bytes each); any
other column as the rows' own objects. The ``datetime64`` and object columns are left to pandas' own inference,
on the rows' own values, when the frame is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ColumnarRows"]

#: What a row lacking a key holds in a column (as ``pandas.DataFrame(records)`` fills it).
ABSENT = np.nan


@dataclass(frozen=True)
class ColumnarRows:
    """Records as columns.

    Attributes
    ----------
    keys
        The distinct key sequences of the records (each dict's keys in its order).
    key_of
        Each row's key sequence (positions into ``keys``).
    columns
        Every column over all rows, :data:`ABSENT` where a row lacks the key: ``float64``, ``int64`` or ``bool``
        where the rows hold only Python floats (or lack the key), only ints or only bools, ``datetime64`` where
        they hold only ``numpy.datetime64`` values of that unit, else ``object``.
    """

    keys: tuple[tuple[str, ...], ...]
    key_of: np.ndarray
    columns: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.key_of)

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> ColumnarRows:
        """The columns of ``records``."""
        found: dict[tuple[str, ...], int] = {}
        key_of = np.fromiter((found.setdefault(tuple(record), len(found)) for record in records), np.intp,
                             len(records))
        names = dict.fromkeys(name for keys in found for name in keys)
        return cls(tuple(found), key_of,
                   {name: _column([record.get(name, ABSENT) for record in records]) for name in names})

    @classmethod
    def concat(cls, parts: Sequence[ColumnarRows]) -> ColumnarRows:
        """The rows of ``parts`` one after the other (as :meth:`from_records` of all their records)."""
        found: dict[tuple[str, ...], int] = {}
        key_of = [np.array([found.setdefault(keys, len(found)) for keys in part.keys], np.intp)[part.key_of]
                  for part in parts]
        names = dict.fromkeys(name for part in parts for name in part.columns)
        return cls(tuple(found), np.concatenate([np.zeros(0, np.intp), *key_of]),
                   {name: _joined([(part.columns.get(name), len(part)) for part in parts]) for name in names})

    def take(self, order: np.ndarray) -> ColumnarRows:
        """The rows at the positions ``order``, in that order."""
        return ColumnarRows(self.keys, self.key_of[order], {name: values[order] for name, values in self.columns.items()})

    def column(self, name: str) -> np.ndarray:
        """The column ``name`` (all :data:`ABSENT` when no row holds the key)."""
        return self.columns[name] if name in self.columns else np.full(len(self), ABSENT)

    def to_frame(self) -> pd.DataFrame:
        """``pandas.DataFrame(records)``: the columns in the order of their first appearance in the rows (a row's
        keys in its order), each with the dtype pandas infers from the records' values."""
        if not len(self):
            return pd.DataFrame([])
        used, first = np.unique(self.key_of, return_index=True)
        names = list(dict.fromkeys(name for at in used[np.argsort(first)] for name in self.keys[at]))
        mixed = [name for name in names if self.columns[name].dtype.kind in "OM"]
        # pandas' own inference of the records' values: a list of tuples takes the path of a list of dicts.
        inferred = pd.DataFrame(list(zip(*(_objects(self.columns[name]) for name in mixed))), columns=mixed) \
            if mixed else {}
        return pd.DataFrame({name: inferred[name] if name in inferred else self.columns[name] for name in names})


def _column(values: list[Any]) -> np.ndarray:
    """One column of :meth:`ColumnarRows.from_records` (its values, :data:`ABSENT` where a row lacks the key)."""
    kinds = set(map(type, values))
    if kinds == {float}:
        return np.array(values, dtype=np.float64)
    if kinds == {bool}:
        return np.array(values, dtype=bool)
    if kinds == {int}:
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:  # pandas keeps such ints as objects (or unsigned): left to its inference
            pass
    if kinds == {np.datetime64} and len({value.dtype for value in values}) == 1:
        return np.array(values)
    return np.fromiter(values, dtype=object, count=len(values))


def _joined(parts: Sequence[tuple[np.ndarray | None, int]]) -> np.ndarray:
    """One column of :meth:`ColumnarRows.concat` from each part's column (``None``: no row of the part holds the
    key) and length, of the kind :func:`_column` gives the values of all parts together."""
    dtypes = {values.dtype for values, _ in parts if values is not None}
    absent = any(values is None and n for values, n in parts)
    dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(object)
    if absent and dtype.kind in "ibM":  # beside absent values (NaN): objects, as pandas sees them
        dtype = np.dtype(object)
    return np.concatenate([np.full(n, ABSENT, dtype) if values is None else
                           _objects(values) if dtype == object else values for values, n in parts])


def _objects(values: np.ndarray) -> np.ndarray:
    """A column's values as the rows' own objects (Python floats, ints, bools; ``numpy.datetime64`` scalars)."""
    if values.dtype.kind == "M":  # (``astype(object)`` would give datetime.date or int)
        return np.fromiter(values, dtype=object, count=len(values))
    return values.astype(object, copy=False)
