"""The per-plot evidence computed for all plots at once equals, to the last bit, each plot computed alone.

The references are written here as the plain per-plot loops (one curve, one plot, one chip at a time) that the
batched code replaced: phenology of one curve, the split of one plot's rows, the cropped evidence of one plot, the
observations one fit keeps, the byte code of one chip.
"""

from __future__ import annotations

import datetime as dt
import pickle

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import rasterio.windows
import shapely
from rasterio.transform import from_origin

from agricredit.acquisitions import Acquisition
from agricredit.report.data import CHIP_MAX_PIXELS, chip_array, encode_ndvi, plot_chips
from agricredit.season import UNMASKED_CLOUD_DROP, _kept_observations, _window_evidence
from agricredit.series import PlotSeries, normalise_table, phenology, phenology_many, split_series


def _same(a, b) -> bool:
    """Equal values of equal types, NaN and NaT included (their pickles, one value at a time)."""
    return type(a) is type(b) and pickle.dumps(a) == pickle.dumps(b)


# --------------------------------------------------------------------------- phenology


def _reference_phenology(days, ndvi):
    """One curve's phenology, one crossing at a time (the per-curve loop ``phenology`` had)."""
    nat = np.datetime64("NaT", "D")
    features = {"peak_ndvi": np.nan, "peak_date": nat, "base_ndvi": np.nan, "amplitude": np.nan,
                "greenup_date": nat, "senescence_date": nat, "season_length_days": np.nan, "ndvi_integral": np.nan}
    if len(days) == 0:
        return features
    t = (days - days[0]).astype(float)
    y = np.asarray(ndvi, dtype=float)
    peak = int(np.argmax(y))
    base = float(np.min(y))
    features.update(peak_ndvi=float(y[peak]), peak_date=days[peak], base_ndvi=base, amplitude=float(y[peak] - base))
    features["ndvi_integral"] = float(np.trapezoid(y - base, t)) if len(y) > 1 else 0.0

    def crossing(level, i, j):
        return float(t[i]) if y[j] == y[i] else float(t[i] + (level - y[i]) * (t[j] - t[i]) / (y[j] - y[i]))

    left, right = y[: peak + 1], y[peak:]
    greenup = senescence = np.nan
    level_up = left.min() + 0.5 * (y[peak] - left.min())
    below = np.flatnonzero(left[:-1] < level_up)
    if below.size and y[peak] > left.min():
        greenup = crossing(level_up, below[-1], below[-1] + 1)
    level_down = right.min() + 0.5 * (y[peak] - right.min())
    under = np.flatnonzero(right[1:] < level_down)
    if under.size and y[peak] > right.min():
        j = peak + under[0] + 1
        senescence = crossing(level_down, j - 1, j)
    if np.isfinite(greenup):
        features["greenup_date"] = days[0] + np.timedelta64(int(round(greenup)), "D")
    if np.isfinite(senescence):
        features["senescence_date"] = days[0] + np.timedelta64(int(round(senescence)), "D")
    if np.isfinite(greenup) and np.isfinite(senescence):
        features["season_length_days"] = senescence - greenup
    return features


def _curves(count, seed=3):
    """Curves of 0 to 24 samples: random, rounded (ties and flats), constant, a logistic season."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        n = int(rng.integers(0, 25))
        days = np.sort(rng.choice(np.arange(19000, 19400), n, replace=False)).astype("datetime64[D]")
        t = (days - days[0]).astype(float) if n else np.zeros(0)
        yield days, (rng.uniform(-0.2, 0.9, n), np.round(rng.uniform(0, 1, n), 1), np.full(n, 0.3),
                     0.2 + 0.6 / (1 + np.exp(-(t - 100) / 10)) - 0.6 / (1 + np.exp(-(t - 250) / 10)))[k % 4]


def test_phenology_of_many_curves_is_each_curves_own_to_the_bit():
    curves = list(_curves(2000))
    days = np.datetime64("2023-03-01") + np.arange(200)  # a smoothed daily curve (more than 128 samples)
    curves.append((days, 0.2 + 0.5 * np.sin(np.arange(200) / 200 * np.pi) ** 2))
    got = phenology_many([d for d, _ in curves], [y for _, y in curves])
    for (d, y), features in zip(curves, got):
        expected = _reference_phenology(d, y)
        assert list(features) == list(expected)
        assert all(_same(features[key], expected[key]) for key in expected), (d, y, features, expected)
        assert all(_same(a, b) for a, b in zip(phenology(d, y).values(), expected.values()))


def test_phenology_of_no_curve_and_of_one_sample():
    assert phenology_many([], []) == []
    one = phenology_many([np.array(["2023-05-01"], dtype="datetime64[D]")], [np.array([0.4])])[0]
    assert one["peak_ndvi"] == 0.4 and one["amplitude"] == 0.0 and one["ndvi_integral"] == 0.0
    assert np.isnat(one["greenup_date"]) and np.isnan(one["season_length_days"])


# --------------------------------------------------------------------------- split_series


def _reference_split(frame, min_valid_fraction, stat):
    """One plot's rows at a time (the per-plot loop ``split_series`` had)."""
    out = {}
    for plot_id, rows in frame.groupby("plot_id", sort=True):
        dates = rows["date"].to_numpy().astype("datetime64[D]")
        values, valid = rows[stat].to_numpy(float), rows["valid_frac"].to_numpy(float)
        covered = rows["covered_frac"].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            ok = (valid / covered >= min_valid_fraction) & (covered > 0) & np.isfinite(values)
        keep = np.flatnonzero(ok)
        keep = keep[np.r_[dates[keep][1:] != dates[keep][:-1], True]] if len(keep) else keep
        out[plot_id] = PlotSeries(
            plot_id, dates[keep], values[keep], rows["cropped_area_mu"].to_numpy(float)[keep], len(rows),
            float(rows["pixel_count"].median()) if "pixel_count" in rows else np.nan, valid[keep], covered[keep],
            rows["cloud_masked"].to_numpy(bool)[keep], float(np.nanmax(covered, initial=0.0)),
            np.unique(dates[~ok]))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_split_series_is_each_plots_own_split(seed):
    rng = np.random.default_rng(seed)
    n = 400
    table = pd.DataFrame({
        "plot_id": rng.choice([f"P{i}" for i in range(30)], n),
        "date": pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 20, n) * 10, "D"),  # repeated dates
        "valid_frac": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0, 1, n)),
        "cropped_area_mu": rng.uniform(0, 5, n),
        "ndvi_mean": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(-0.1, 0.9, n)),
        "pixel_count": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0, 50, n)),
        "covered_frac": np.where(rng.random(n) < 0.1, np.nan,
                                 np.where(rng.random(n) < 0.1, 0.0, rng.uniform(0.5, 1, n))),
        "cloud_masked": rng.random(n) < 0.8,
    })
    table = table.drop(columns=["pixel_count"] if seed % 2 else ["covered_frac"] if seed % 3 == 0 else [])
    frame = normalise_table(table, "ndvi_mean")
    got, expected = split_series(frame, 0.6, "ndvi_mean"), _reference_split(frame, 0.6, "ndvi_mean")
    assert list(got) == sorted(expected)
    for plot_id, s in expected.items():
        for name in PlotSeries.__dataclass_fields__:
            a, b = getattr(got[plot_id], name), getattr(s, name)
            assert (np.array_equal(a, b, equal_nan=a.dtype.kind == "f") and a.dtype == b.dtype
                    if isinstance(b, np.ndarray) else _same(a, b)), (plot_id, name, a, b)


def test_split_series_of_no_rows():
    assert split_series(normalise_table(pd.DataFrame(
        {"plot_id": [], "date": [], "valid_frac": [], "cropped_area_mu": [], "ndvi_mean": []}), "ndvi_mean"),
        0.6, "ndvi_mean") == {}


# --------------------------------------------------------------------------- cropped evidence, kept observations


def _plot(n, rng, plot_id="p"):
    dates = np.datetime64("2023-04-01") + np.sort(rng.choice(200, n, replace=False))
    return PlotSeries(plot_id, dates, np.round(rng.uniform(0, 0.9, n), 1), np.round(rng.uniform(0, 9, n), 0), n,
                      50.0, np.round(rng.uniform(0.6, 1.0, n), 1), np.ones(n), rng.random(n) < 0.7, 1.0)


def _reference_evidence(s, drawn, threshold, window):
    """One plot's cropped evidence (the per-plot code the batch replaced)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (s.cropped_area_mu / (s.valid_frac * drawn) if np.isfinite(drawn) and drawn > 0
                 else np.where(s.ndvi >= threshold, 1.0, 0.0))
    share = np.fmin(np.fmax(share, 0.0), 1.0)
    evidence = {"share": share, "cropped_share": np.nan, "cropped_measured_share": np.nan, "cropped_date": None,
                "cropped_area_mu_at_peak": np.nan, "in_window": None}
    candidates = np.flatnonzero(window)
    if len(candidates):
        pick = candidates[np.lexsort((-s.valid_frac[candidates], -share[candidates]))[0]]
        ndvi = s.ndvi[candidates]
        evidence.update(cropped_share=float(share[pick]), cropped_measured_share=float(s.valid_frac[pick]),
                        cropped_date=str(s.dates[pick]),
                        cropped_area_mu_at_peak=float(share[pick] * drawn) if np.isfinite(drawn) else np.nan,
                        in_window=(float(ndvi.max()), float(np.ptp(ndvi)), float(share[candidates].max()),
                                   int(np.count_nonzero(s.cloud_masked[candidates])), len(candidates)))
    return evidence


def test_cropped_evidence_of_many_plots_is_each_plots_own():
    rng = np.random.default_rng(11)
    plots = [_plot(int(rng.integers(0, 9)), rng, f"p{k}") for k in range(300)]
    drawn = [[10.0, np.nan, 0.0, 2.5, -1.0][k % 5] for k in range(len(plots))]
    thresholds = [[0.45, 0.5][k % 2] for k in range(len(plots))]
    windows = [rng.random(len(s.dates)) < 0.6 for s in plots]
    got = _window_evidence(plots, drawn, thresholds, windows)
    for s, d, t, w, evidence in zip(plots, drawn, thresholds, windows, got):
        expected = _reference_evidence(s, d, t, w)
        assert np.array_equal(evidence["share"], expected["share"])
        for key in ("cropped_share", "cropped_measured_share", "cropped_date", "cropped_area_mu_at_peak"):
            assert _same(evidence[key], expected[key]), (key, evidence[key], expected[key])
        seen = evidence["in_window"]
        assert (seen is None if expected["in_window"] is None else
                (seen.peak, seen.amplitude, seen.most, seen.clear, seen.usable) == expected["in_window"])
    assert _window_evidence([], [], [], []) == []


def test_kept_observations_of_many_plots_are_each_plots_own():
    rng = np.random.default_rng(5)
    plots = [_plot(int(rng.integers(0, 8)), rng, f"p{k}") for k in range(300)]
    curves = [None if k % 7 == 0 else s.ndvi + rng.choice([-0.2, 0.0, 0.1, 0.2], len(s.dates))
              for k, s in enumerate(plots)]
    for s, curve, keep in zip(plots, curves, _kept_observations(plots, curves)):
        expected = np.ones(len(s.dates), bool)
        if curve is not None:
            clouded = ~s.cloud_masked & (s.ndvi < curve - UNMASKED_CLOUD_DROP)
            expected = ~clouded if np.count_nonzero(~clouded) >= 3 else expected
        assert keep.dtype == bool and np.array_equal(keep, expected)


# --------------------------------------------------------------------------- chips


def _reference_code(values: np.ndarray) -> np.ndarray:
    """One byte per pixel: 0 without a reading, else round((NDVI + 1) · 127) + 1 (constants of the chips' format)."""
    out = np.zeros(values.shape, np.uint8)
    seen = ~np.isnan(values)
    out[seen] = np.rint((np.clip(values[seen], -1, 1) + np.float32(1)) * np.float32(127)).astype(np.uint8) + 1
    return out


def test_encode_ndvi_with_a_cloud_mask_is_the_masked_ndvis_code():
    rng = np.random.default_rng(2)
    values = rng.uniform(-1.5, 1.5, (40, 50)).astype(np.float32)
    values[rng.random(values.shape) < 0.1] = np.nan
    values[0, :6] = [-1.0, 1.0, 0.0, 0.5 / 127, -0.5 / 127, 1.5 / 127]  # at and around the half steps
    cloud = rng.random(values.shape) < 0.2
    assert np.array_equal(encode_ndvi(values, cloud), _reference_code(np.where(cloud, np.nan, values)))
    assert np.array_equal(encode_ndvi(values), _reference_code(values))
    assert encode_ndvi(values[0, :2]).tolist() == [1, 255]


def test_chips_of_many_plots_over_tiles_and_dates_are_each_windows_own_pixels(tmp_path):
    """40 plots on two dates of a 1200-pixel tile (several read cells): each chip is its window read alone."""
    crs, origin, size = "EPSG:32650", (500_000.0, 4_000_000.0), 1200
    rng = np.random.default_rng(7)
    acquisitions = []
    for day in (dt.date(2023, 6, 1), dt.date(2023, 7, 15)):
        ndvi = rng.uniform(-0.2, 0.95, (size, size)).astype(np.float32)
        ndvi[rng.random(ndvi.shape) < 0.05] = np.nan
        path = tmp_path / f"ndvi_{day:%Y%m%d}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="float32", crs=crs,
                           transform=from_origin(*origin, 10.0, 10.0), tiled=True, blockxsize=256,
                           blockysize=256) as dst:
            dst.write(ndvi, 1)
        acquisitions.append(Acquisition(day, (path,)))
    x0, y0 = origin
    sides = rng.uniform(30.0, 900.0, 40)  # small plots and plots decimated to CHIP_MAX_PIXELS
    corners = rng.uniform(200.0, 10_800.0, (40, 2))
    plots = gpd.GeoDataFrame({"plot_id": [f"p{k:02d}" for k in range(40)]}, geometry=[
        shapely.box(x0 + cx, y0 - cy - side, x0 + cx + side, y0 - cy) for (cx, cy), side in zip(corners, sides)],
        crs=crs)
    peaks = {f"p{k:02d}": ("2023-06-01", "2023-07-15")[k % 2] for k in range(40)}
    chips = plot_chips(plots, peaks, acquisitions).set_index("plot_id")
    assert sorted(chips.index) == sorted(peaks)
    for plot_id, row in chips.iterrows():
        _, transform, _ = chip_array({**row, "plot_id": plot_id})
        stride = int(round(transform.a / 10.0))
        col0, row0 = int(round((transform.c - x0) / 10.0)), int(round((y0 - transform.f) / 10.0))
        height, width = int(row["height"]), int(row["width"])
        assert max(height, width) <= CHIP_MAX_PIXELS
        with rasterio.open(acquisitions[0 if peaks[plot_id] == "2023-06-01" else 1].paths[0]) as src:
            window = rasterio.windows.Window(col0, row0, min(size - col0, width * stride),
                                             min(size - row0, height * stride))
            alone = src.read(1, window=window)[::stride, ::stride][:height, :width]
        assert row["date"] == peaks[plot_id]
        assert np.frombuffer(row["ndvi"], np.uint8).reshape(height, width).tolist() == _reference_code(alone).tolist()


# --------------------------------------------------------------------------- finish_season's columns


@pytest.mark.parametrize("column", [
    pd.Series(np.array(["2023-06-25", "NaT", "1969-12-31"], dtype="datetime64[s]")),
    pd.Series([np.datetime64("2023-06-25"), None, np.datetime64("1969-12-31")], dtype=object),
    pd.Series([dt.date(2023, 6, 25), np.nan, dt.date(1969, 12, 31)], dtype=object),
])
def test_iso_column_is_each_values_iso_day(column):
    from agricredit.season import _iso, _iso_column

    expected = ["2023-06-25", None, "1969-12-31"]
    assert _iso_column(column) == expected
    assert [_iso(value) for value in column] == expected
    assert all(type(day) is str for day in _iso_column(column) if day is not None)


def test_iso_column_without_any_date():
    from agricredit.season import _iso_column

    assert _iso_column(pd.Series([None, None], dtype=object)) == [None, None]
    assert _iso_column(pd.Series([], dtype="datetime64[s]")) == []


def test_flag_columns_are_each_plots_codes_and_json_dumps_of_its_figures():
    import json

    from agricredit.columnar import ColumnarRows
    from agricredit.season import Flag, SeasonRows, finish_season

    flags = {
        "A": [],
        "B": [Flag("CLOUD_INSUFFICIENT", {"window_start": "2023-05-01", "valid_in_window": np.int64(2), "crop": "maize",
                                          "green_period_unseen": True, "window_end": None})],
        "C": [Flag("PARTIAL_COVERAGE", {"max_covered_frac": np.float64(0.5), "min_covered_fraction": -0.0}),
              Flag("NOT_CULTIVATED", {"cropped_share": 0.1, "share": float("nan"), "note": "é\"\n"})],
    }
    rows = [{"plot_id": plot_id, "declared_crop": None, "n_acquisitions": 1, "peak_date": None, "greenup_date": None,
             "senescence_date": None} for plot_id in flags]
    period = (np.datetime64("2023-01-01"), np.datetime64("2023-12-31"))
    plots = finish_season(SeasonRows(ColumnarRows.from_records(rows), flags, {}, {}, period)).plots
    assert plots["flags"].tolist() == ["", "CLOUD_INSUFFICIENT", "PARTIAL_COVERAGE;NOT_CULTIVATED"]
    assert plots["flag_figures"].tolist() == [
        "{}",
        '{"CLOUD_INSUFFICIENT": {"crop": "maize", "green_period_unseen": true, "valid_in_window": 2, '
        '"window_end": null, "window_start": "2023-05-01"}}',
        '{"NOT_CULTIVATED": {"cropped_share": 0.1, "note": "\\u00e9\\"\\n", "share": NaN}, '
        '"PARTIAL_COVERAGE": {"max_covered_frac": 0.5, "min_covered_fraction": -0.0}}',
    ]
    assert plots["flag_figures"].tolist()[1:] == [
        json.dumps({f.code: f.figures for f in flags[p]}, sort_keys=True, default=lambda v: v.item()) for p in "BC"]
    assert plots[["peak_date", "greenup_date", "senescence_date"]].isna().all().all()


def test_figures_texts_are_json_dumps_of_each_plots_figures_whatever_repeats():
    import json

    from agricredit.season import Flag, _figures_texts

    # values equal in Python but encoded apart (1, 1.0, True, np.int64(1); 0.0 and -0.0), each repeated
    values = [1, 1.0, True, np.int64(1), np.float64(1.0), 0.0, -0.0, None, "1", float("nan"), float("inf")]
    found = [[Flag("LOW_VIGOR", {"gap": value})] for value in values] * 2 + [[]] + [
        [Flag("PARTIAL_COVERAGE", {"max_covered_frac": 0.5}), Flag("LOW_VIGOR", {"gap": value})] for value in values]
    expected = [json.dumps({f.code: f.figures for f in plot_flags}, sort_keys=True, default=lambda v: v.item())
                if plot_flags else "{}" for plot_flags in found]
    assert _figures_texts(found) == expected
    assert len(set(expected)) == 2 * (len(values) - 2) + 1  # (np.int64(1) encodes as 1, np.float64(1.0) as 1.0)


def test_iso_column_of_repeated_days_is_each_values_iso_day():
    from agricredit.season import _iso, _iso_column

    days = np.array(["2023-06-25", "NaT", "2023-06-25", "2023-01-02", "NaT", "1969-12-31"] * 50, dtype="datetime64[s]")
    column = pd.Series(days[np.random.default_rng(3).permutation(len(days))])
    assert _iso_column(column) == [_iso(value) for value in column]
