"""The evidence task's shortcuts (issue 11), each against the plain way written here: the same values, to the bit."""

from __future__ import annotations

import datetime as dt
import pickle

import numpy as np
import pandas as pd
import pytest

from agricredit.columnar import ColumnarRows
from agricredit.cropfit import SeasonFit, SystemFit, _frozen, explanations_for
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


def test_frozen_fits_made_without_init_are_the_constructors():
    season = explanations_for("ncp")[0].seasons[0]
    dates = {"sowing": dt.date(2023, 6, 10), "harvest": dt.date(2023, 10, 1)}
    fitted = np.array([0.2, 0.5, 0.3])
    made = SeasonFit(season, -3, 0.41, 0.82, dates)
    fast = _frozen(SeasonFit, {"season": season, "shift_days": -3, "amplitude": 0.41, "scale": 0.82, "dates": dates})
    assert type(fast) is SeasonFit and fast == made and fast.__dict__ == made.__dict__
    assert pickle.dumps(fast) == pickle.dumps(made) and fast.harvest_year == made.harvest_year
    system = SystemFit("maize", 0.1, 0.09, 0.2, (made,), fitted)
    fast_system = _frozen(SystemFit, {"name": "maize", "score": 0.1, "rmse": 0.09, "offset": 0.2, "seasons": (fast,),
                                      "fitted": fitted})
    assert fast_system == system and fast_system.__dict__.keys() == system.__dict__.keys()
    assert fast_system.fitted is fitted and fast_system.label == system.label and repr(fast_system) == repr(system)
    with pytest.raises(AttributeError):
        fast_system.score = 0.0  # still frozen


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
