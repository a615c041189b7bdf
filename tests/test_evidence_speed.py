"""The evidence task's shortcuts (issue 11), each against the plain way written here: the same values, to the bit."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from agricredit.columnar import ColumnarRows
from agricredit.evidence import _peak_days
from agricredit.templatecheck import _fitted_green_masks, _window_mask

NAT = np.datetime64("NaT", "D")


def _plain_peak_days(plot_ids, peaks):
    """The peak dates as :func:`agricredit.evidence.plot_evidence` formatted them one by one."""
    return {plot_id: str(np.datetime64(peak, "D")) for plot_id, peak in zip(plot_ids.tolist(), list(peaks))
            if peak is not None and not pd.isna(peak)}


@pytest.mark.parametrize("peaks", [
    [np.datetime64("2023-07-01"), NAT, np.datetime64("1969-12-31"), np.datetime64("2024-02-29")],  # days, one NaT
    [NAT, NAT, NAT, NAT],  # no plot with a peak
    [np.datetime64("2023-07-01T23:59:59.999", "ms"), np.datetime64("1969-12-31T12:00", "ms"),
     np.datetime64("NaT", "ms"), np.datetime64("1970-01-01T00:00:00.001", "ms")],  # times of day, either side of 1970
])
def test_peak_days_of_a_date_column_are_each_plots_own(peaks):
    rows = ColumnarRows.from_records([{"plot_id": f"p{k}", "peak_date": peak} for k, peak in enumerate(peaks)])
    plot_ids, column = rows.column("plot_id"), rows.column("peak_date")
    assert isinstance(column, np.ndarray) and column.dtype.kind == "M"  # the vectorised path
    found = _peak_days(plot_ids, column)
    assert found == _plain_peak_days(plot_ids, column)
    assert list(found) == [p for p, peak in zip(plot_ids, peaks) if not np.isnat(peak)]


def test_peak_days_of_a_column_of_objects_are_each_plots_own():
    peaks = [np.datetime64("2023-07-01"), None, np.nan, pd.Timestamp("2023-08-02 10:00"), dt.date(2023, 9, 3), NAT]
    column = np.array(peaks + [np.datetime64("2023-06-05", "ns")], dtype=object)
    plot_ids = pd.array([f"p{k}" for k in range(len(column))])
    assert _peak_days(plot_ids, column) == _plain_peak_days(plot_ids, column) == {
        "p0": "2023-07-01", "p3": "2023-08-02", "p4": "2023-09-03", "p6": "2023-06-05"}


@pytest.mark.parametrize("offset, inside", [(-9, False), (-8, True), (0, True), (8, True), (9, False)])
def test_fitted_green_masks_tell_a_window_without_observations(offset, inside):
    # the widened window of a green period 2023-06-01..2023-08-31 runs from 8 days before to 8 days after it
    periods = ((dt.date(2023, 6, 1), dt.date(2023, 8, 31)),)
    edge = np.datetime64("2023-06-01") if offset <= 0 else np.datetime64("2023-08-31")
    days = np.array([np.datetime64("2023-01-15"), edge + offset, np.datetime64("2023-12-20")], dtype="datetime64[D]")
    greens, found = _fitted_green_masks(days.tobytes(), periods)
    plain = _window_mask(days, [(lo - dt.timedelta(days=8), hi + dt.timedelta(days=8)) for lo, hi in periods])
    assert (found is not None) is inside is bool(plain.any())
    if inside:
        assert found.tobytes() == plain.tobytes()
    assert greens[0].tobytes() == _window_mask(days, [(dt.date(2023, 6, 9), dt.date(2023, 8, 23))]).tobytes()
