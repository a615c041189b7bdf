"""Records kept as columns (:class:`agricredit.columnar.ColumnarRows`) against pandas' own ``DataFrame(records)``."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pandas as pd
import pytest

from agricredit.columnar import ColumnarRows

D = np.datetime64

#: Records of every kind of value a season row holds (and some it does not), keys in varying order and missing.
RECORDS = [
    {"plot_id": "P1", "n": 3, "ok": True, "x": 1.5, "peak": D("2023-05-02"), "day": D("2023-05-02"), "mixed": 1,
     "note": "é"},
    {"n": 0, "plot_id": "P2", "x": None, "peak": None, "day": D("2023-06-01"), "extra": 7, "mixed": "a"},
    {"plot_id": "P3", "n": 2**70, "ok": False, "x": np.float64(2.5), "day": D("NaT", "D"), "pair": (1, 2)},
    {"plot_id": None, "n": 5, "ok": 1, "x": float("nan"), "peak": D("NaT"), "day": D("2023-07-01"), "late": 0.5,
     "note": "b"},
    {"plot_id": "P5", "n": 6, "ok": True, "x": 0.25, "peak": D("2023-05-02T10", "h"), "day": D("2023-08-01"),
     "mixed": 2.5, "late": 1.0},
]


def _assert_same_frame(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(actual, expected, check_exact=True, check_index_type=True, check_column_type=True)
    assert list(actual.columns) == list(expected.columns)
    assert list(actual.dtypes) == list(expected.dtypes)
    assert type(actual.index) is type(expected.index)


def test_the_columns_give_the_frame_pandas_builds_from_the_records_in_any_row_order() -> None:
    for records in itertools.permutations(RECORDS):
        _assert_same_frame(ColumnarRows.from_records(list(records)).to_frame(), pd.DataFrame(list(records)))


def test_plain_columns_are_arrays_and_the_rest_the_rows_own_objects() -> None:
    rows = ColumnarRows.from_records(RECORDS[:2] + RECORDS[4:])
    kinds = {name: values.dtype for name, values in rows.columns.items()}
    assert kinds["n"] == np.int64 and kinds["day"] == np.dtype("datetime64[D]")
    assert kinds["ok"] == object  # bools beside a row without the key (NaN): pandas keeps objects
    assert ColumnarRows.from_records([RECORDS[0], RECORDS[4]]).columns["ok"].dtype == bool
    assert kinds["late"] == np.float64 and np.isnan(rows.columns["late"]).tolist() == [True, True, False]
    assert kinds["extra"] == object  # an int beside rows without the key
    assert kinds["plot_id"] == pd.StringDtype(na_value=np.nan)  # pandas' text dtype, built with the columns
    assert ColumnarRows.from_records(RECORDS).columns["plot_id"].dtype == object  # text and None
    assert kinds["x"] == object and kinds["mixed"] == object
    assert kinds["peak"] == object  # datetime64 of two units, and None: left to pandas
    assert rows.columns["x"].tolist()[1] is None
    # a column of datetimes pickles as an array, not as one reduced scalar a row
    as_records = [{"day": D("2023-05-02") + k} for k in range(1000)]
    assert len(pickle.dumps(ColumnarRows.from_records(as_records))) < 20_000 < len(pickle.dumps(as_records)) / 3


@pytest.mark.parametrize("cuts", list(itertools.product([False, True], repeat=len(RECORDS) - 1)))
def test_parts_put_together_are_the_records_at_once(cuts: tuple[bool, ...]) -> None:
    bounds = [0, *[k + 1 for k, cut in enumerate(cuts) if cut], len(RECORDS)]
    parts = [ColumnarRows.from_records(RECORDS[a:b]) for a, b in itertools.pairwise(bounds)]
    joined, whole = ColumnarRows.concat(parts), ColumnarRows.from_records(RECORDS)
    assert {k: v.dtype for k, v in joined.columns.items()} == {k: v.dtype for k, v in whole.columns.items()}
    _assert_same_frame(joined.to_frame(), pd.DataFrame(RECORDS))


def test_an_empty_part_changes_nothing_and_no_rows_make_pandas_empty_frame() -> None:
    empty = ColumnarRows.from_records([])
    _assert_same_frame(empty.to_frame(), pd.DataFrame([]))
    _assert_same_frame(ColumnarRows.concat([empty, ColumnarRows.from_records(RECORDS), empty]).to_frame(),
                       pd.DataFrame(RECORDS))
    _assert_same_frame(ColumnarRows.concat([]).to_frame(), pd.DataFrame([]))


def test_taken_rows_are_the_records_in_that_order() -> None:
    order = np.array([4, 1, 3, 0, 2])
    rows = ColumnarRows.from_records(RECORDS).take(order)
    # the column order follows the rows' new order: "extra" (row 1) now comes before "late" (rows 3, 4)
    _assert_same_frame(rows.to_frame(), pd.DataFrame([RECORDS[k] for k in order]))
    assert rows.column("plot_id").tolist() == ["P5", "P2", None, "P1", "P3"]
    assert np.isnan(rows.column("nowhere")).all() and len(rows.column("nowhere")) == 5
