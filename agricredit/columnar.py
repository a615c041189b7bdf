"""Records (one dict a row) kept as columns: :class:`ColumnarRows`, the form in which the season rows of a chunk
travel from a Dask worker to the client and are put together (:class:`agricredit.season.SeasonRows`).

A list of dicts pickles key by key and value by value (0.2 s of a worker for the 5,000 rows of a county chunk) and
``pandas.DataFrame(records)`` walks every cell again. The columns pickle as arrays, are put together from chunks
and reordered array by array, and give the very frame ``pandas.DataFrame(records)`` would give: the columns in the
order of their first appearance in the rows, the same dtypes and the same values. A column whose every row holds
a Python ``float`` (or lacks the key), every row a Python ``int`` or every row a ``bool`` is kept as a
``float64``, ``int64`` or ``bool`` array (what pandas would infer); a column whose every row holds a
``numpy.datetime64`` of one unit as a ``datetime64`` array (those scalars pickle one by one, at 60 bytes each); a
column of text (``str``, or NaN where a row lacks the key) as the array of pandas' text dtype that pandas infers
from it (built on the worker rather than in the client); any other column as the rows' own objects. The
``datetime64`` and object columns are left to pandas' own inference, on the rows' own values, when the frame is
built.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ColumnarRows"]

#: A column: a numpy array, or pandas' text array.
ArrayLike = np.ndarray | pd.api.extensions.ExtensionArray

#: What a row lacking a key holds in a column (as ``pandas.DataFrame(records)`` fills it).
ABSENT = np.nan
#: The dtype pandas infers for a column of text (pandas 3: its ``str`` dtype; before: ``object``, no text kind).
TEXT = pd.DataFrame([{"text": "x"}]).dtypes.iloc[0]
OBJECT = np.dtype(object)


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
        they hold only ``numpy.datetime64`` values of that unit, pandas' text array where they hold only text (or
        lack the key) and pandas infers its text dtype, else ``object``.
    """

    keys: tuple[tuple[str, ...], ...]
    key_of: np.ndarray
    columns: Mapping[str, ArrayLike]

    def __len__(self) -> int:
        return len(self.key_of)

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> ColumnarRows:
        """The columns of ``records``."""
        found: dict[tuple[str, ...], int] = {}
        key_of = np.fromiter((found.setdefault(tuple(record), len(found)) for record in records), np.intp,
                             len(records))
        # pandas gathers the values (its own loop over the records), left as they are with dtype=object
        values = pd.DataFrame(list(records), dtype=object) if len(records) else pd.DataFrame()
        return cls(tuple(found), key_of, {name: _column(values[name].to_numpy()) for name in values.columns})

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
        return ColumnarRows(self.keys, self.key_of[order],
                            {name: values[order] for name, values in self.columns.items()})

    def column(self, name: str) -> ArrayLike:
        """The column ``name`` (all :data:`ABSENT` when no row holds the key)."""
        return self.columns[name] if name in self.columns else np.full(len(self), ABSENT)

    def to_frame(self) -> pd.DataFrame:
        """``pandas.DataFrame(records)``: the columns in the order of their first appearance in the rows (a row's
        keys in its order), each with the dtype pandas infers from the records' values."""
        if not len(self):
            return pd.DataFrame([])
        used, first = np.unique(self.key_of, return_index=True)
        names = list(dict.fromkeys(name for at in used[np.argsort(first)] for name in self.keys[at]))
        mixed = [name for name in names if isinstance(self.columns[name], np.ndarray)
                 and self.columns[name].dtype.kind in "OM"]
        # pandas' own inference of the records' values: a list of tuples takes the path of a list of dicts.
        inferred = pd.DataFrame(list(zip(*(_objects(self.columns[name]) for name in mixed))), columns=mixed) \
            if mixed else {}
        return pd.DataFrame({name: inferred[name] if name in inferred else self.columns[name] for name in names})


def _column(values: np.ndarray) -> ArrayLike:
    """One column of :meth:`ColumnarRows.from_records` from its values (objects, :data:`ABSENT` where a row lacks
    the key)."""
    kinds = set(map(type, values))
    if kinds == {float}:
        return values.astype(np.float64)
    if kinds == {bool}:
        return values.astype(bool)
    if kinds == {int}:
        try:
            return values.astype(np.int64)
        except OverflowError:  # pandas keeps such ints as objects (or unsigned): left to its inference
            pass
    if kinds == {np.datetime64} and len(set(map(operator.attrgetter("dtype"), values))) == 1:
        return np.array(values.tolist())
    if TEXT != OBJECT and (kinds == {str} or kinds == {str, float} and not any(
            value == value for value in values if type(value) is float)):  # text, NaN where absent
        return pd.array(values, dtype=TEXT)  # the array pandas' inference builds
    return values.copy()  # (not a view of all the records' values)


def _joined(parts: Sequence[tuple[ArrayLike | None, int]]) -> ArrayLike:
    """One column of :meth:`ColumnarRows.concat` from each part's column (``None``: no row of the part holds the
    key) and length, of the kind :func:`_column` gives the values of all parts together."""
    dtypes = {values.dtype for values, _ in parts if values is not None}
    absent = any(values is None and n for values, n in parts)
    dtype = dtypes.pop() if len(dtypes) == 1 else OBJECT
    if absent and isinstance(dtype, np.dtype) and dtype.kind in "ibM":  # beside NaN: objects, as pandas sees them
        dtype = OBJECT
    objects = isinstance(dtype, np.dtype) and dtype == OBJECT
    filled = [_absent(n, dtype) if values is None else _objects(values) if objects else values for values, n in parts]
    return np.concatenate(filled) if isinstance(dtype, np.dtype) else type(filled[0])._concat_same_type(filled)


def _absent(n: int, dtype: Any) -> ArrayLike:
    """``n`` rows without the key, in a column of ``dtype``."""
    if isinstance(dtype, np.dtype):
        return np.full(n, ABSENT, dtype)
    return pd.array(np.full(n, ABSENT, dtype=object), dtype=dtype)


def _objects(values: ArrayLike) -> np.ndarray:
    """A column's values as the rows' own objects (Python floats, ints, bools, text; ``numpy.datetime64`` scalars;
    NaN where a row lacks the key)."""
    if not isinstance(values, np.ndarray):
        return values.to_numpy(dtype=object)
    if values.dtype.kind == "M":  # (``astype(object)`` would give datetime.date or int)
        return np.fromiter(values, dtype=object, count=len(values))
    return values.astype(object, copy=False)
