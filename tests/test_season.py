"""Season library: acquisitions, series, phenology and peer vigor (the crop check: tests/test_cropcheck.py)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely.geometry
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin
from scipy.optimize import brentq

from agricredit import acquisitions, series
from agricredit.errors import InputError, InputNotFoundError, MissingTileError, SchemaError


# ----------------------------------------------------------------------------- acquisitions


def _ndvi_tif(path, date: str) -> None:
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="float32",
                       crs="EPSG:32618", transform=from_origin(400000, 4200000, 10, 10), nodata=float("nan")) as dst:
        dst.write(np.full((1, 4, 4), 0.5, dtype="float32"))
        dst.update_tags(AGRICREDIT_PRODUCT="ndvi", ACQUISITION_DATE=date)


@pytest.fixture
def tile_folder(tmp_path):
    folder = tmp_path / "tiles"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    _ndvi_tif(folder / "a" / "S2_NDVI_20221215_T1.tif", "2022-12-15")
    _ndvi_tif(folder / "b" / "S2_NDVI_20221215_T2.tif", "2022-12-15")  # second tile, same date
    _ndvi_tif(folder / "a" / "S2_NDVI_20230110.tif", "2023-01-10")
    _ndvi_tif(folder / "a" / "S2_NDVI_20230720.tif", "2023-07-20")
    (folder / "notes.txt").write_text("not a tile")
    return folder


def test_discover_folder_groups_tiles_of_one_date(tile_folder):
    found = acquisitions.discover_acquisitions(tile_folder)
    assert [a.date for a in found] == [dt.date(2022, 12, 15), dt.date(2023, 1, 10), dt.date(2023, 7, 20)]
    assert len(found[0].paths) == 2 and all(p.is_absolute() for p in found[0].paths)


def test_discover_start_end_across_new_year(tile_folder):
    found = acquisitions.discover_acquisitions(tile_folder, start="2022-10-01", end="2023-06-30")
    assert [a.date.isoformat() for a in found] == ["2022-12-15", "2023-01-10"]
    with pytest.raises(InputError, match="start 2023-06-30 is after its end 2022-10-01"):
        acquisitions.discover_acquisitions(tile_folder, start="2023-06-30", end="2022-10-01")


def test_discover_manifest_relative_paths(tile_folder):
    manifest = tile_folder / "manifest.csv"
    manifest.write_text("date,sensor,path\n2023-01-10,s2-l2a,a/S2_NDVI_20230110.tif\n"
                        "2022-12-15,s2-l2a,a/S2_NDVI_20221215_T1.tif\n2022-12-15,s2-l2a,b/S2_NDVI_20221215_T2.tif\n")
    found = acquisitions.discover_acquisitions(manifest)
    assert [(a.date.isoformat(), len(a.paths), a.sensors) for a in found] == [
        ("2022-12-15", 2, ("s2-l2a",)), ("2023-01-10", 1, ("s2-l2a",))]
    manifest.write_text("date,sensor,path\n2023-01-10,s2-l2a,a/missing.tif\n2023-07-20,s2-l2a,a/S2_NDVI_20230720.tif\n")
    with pytest.raises(InputNotFoundError, match="manifest.csv: row 2: tile 'a/missing.tif' listed in the manifest"):
        acquisitions.discover_acquisitions(manifest)
    # With on_error, the missing tile is left out as a tile that cannot be opened, and discovery goes on.
    errors = []
    found = acquisitions.discover_acquisitions(manifest, on_error=lambda path, error: errors.append((path, error)))
    assert [a.date.isoformat() for a in found] == ["2023-07-20"]
    assert [(path, error.one_line()) for path, error in errors] == [
        (tile_folder / "a" / "missing.tif",
         f"{manifest}: row 2: tile 'a/missing.tif' listed in the manifest does not exist")]
    manifest.write_text("date,sensor,path\n2023-01-10,s2-l2a,\n")  # no path at all: an error of the manifest
    with pytest.raises(InputNotFoundError, match="row 2"):
        acquisitions.discover_acquisitions(manifest, on_error=lambda path, error: None)
    manifest.write_text("when,path\n")
    with pytest.raises(SchemaError, match="date"):
        acquisitions.discover_acquisitions(manifest)


def test_discover_stac_item_collection(tile_folder):
    def item(ident, when, href):
        return {"type": "Feature", "id": ident, "properties": {"datetime": when, "platform": "sentinel-2a"},
                "assets": {"ndvi": {"href": href, "roles": ["data"]}, "thumbnail": {"href": "x.png"}}}

    stac = tile_folder / "items.json"
    stac.write_text(json.dumps({"type": "FeatureCollection", "features": [
        item("x1", "2022-12-15T10:30:00Z", "a/S2_NDVI_20221215_T1.tif"),
        item("x2", "2022-12-15T10:30:05Z", "./b/S2_NDVI_20221215_T2.tif"),
        item("x3", "2023-07-20T10:30:00Z", "a/S2_NDVI_20230720.tif"),
    ]}))
    found = acquisitions.discover_acquisitions(stac, end=dt.date(2023, 7, 20))
    assert [(a.date.isoformat(), len(a.paths), a.sensors) for a in found] == [
        ("2022-12-15", 2, ("sentinel-2a",)), ("2023-07-20", 1, ("sentinel-2a",))]
    stac.write_text(json.dumps({"type": "FeatureCollection", "features": [item("x", "2023-01-01", "https://e.org/a.tif")]}))
    with pytest.raises(InputError, match="remote"):
        acquisitions.discover_acquisitions(stac)
    for document in ([1, 2], "items", 3, {"features": []}):  # JSON, but no STAC document
        stac.write_text(json.dumps(document))
        with pytest.raises(InputError, match="items.json: not a STAC Item or ItemCollection$"):
            acquisitions.discover_acquisitions(stac)
    for features in (5, [5], [{"type": "Feature"}, "x"]):
        stac.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
        with pytest.raises(InputError, match="items.json: an ItemCollection's features must be a list of STAC items$"):
            acquisitions.discover_acquisitions(stac)


def test_a_missing_stac_asset_is_reported_with_its_items_footprint(tile_folder):
    # An item of the season whose asset is not there: an error naming the item, or (on_error) the item left out with
    # its footprint (geometry, else 2D or 3D bbox, else none); a missing asset outside the season is not looked at.
    def item(when, href, **where):
        return {"type": "Feature", "properties": {"datetime": when}, "assets": {"ndvi": {"href": href}}, **where}

    square = {"type": "Polygon", "coordinates": [[[117, 36], [118, 36], [118, 37], [117, 37], [117, 36]]]}
    stac = tile_folder / "items.json"
    stac.write_text(json.dumps({"type": "FeatureCollection", "features": [
        item("2023-01-10", "a/S2_NDVI_20230110.tif"),
        item("2023-02-01", "a/gone-1.tif", geometry=square, bbox=[0, 0, 1, 1]),
        item("2023-03-01", "a/gone-2.tif", geometry=None, bbox=[117, 36, 118, 37]),
        item("2023-04-01", "a/gone-3.tif", bbox=[117, 36, -5, 118, 37, 9]),
        item("2023-05-01", "a/gone-4.tif"),
        item("2023-06-01", "a/gone-5.tif", geometry={"type": "Polygon", "coordinates": "x"}),
        item("2023-07-01", "a/gone-6.tif", geometry={"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}),
        item("2024-01-01", "a/gone-7.tif", geometry=square),
    ]}))
    with pytest.raises(MissingTileError, match=r"items\.json: item 2: asset 'a/gone-1\.tif' does not exist"):
        acquisitions.discover_acquisitions(stac, end="2023-12-31")
    seen = []
    found = acquisitions.discover_acquisitions(stac, end="2023-12-31", on_error=lambda path, error: seen.append(
        (path.name, error.record, error.footprint)))
    assert [a.date.isoformat() for a in found] == ["2023-01-10"]
    whole = shapely.geometry.shape(square)
    assert [(name, record) for name, record, _ in seen] == [(f"gone-{k}.tif", f"item {k + 1}") for k in range(1, 7)]
    footprints = [footprint for _, _, footprint in seen]
    assert footprints[0].equals(whole)  # the geometry wins over the bbox
    assert footprints[1].equals(whole) and footprints[2].equals(whole)  # the bbox, 2D and 3D
    assert footprints[3:] == [None, None, None]  # none given, unparsable, a self-intersecting outline


def test_discover_missing_source(tmp_path):
    with pytest.raises(InputNotFoundError, match="nope: no such file or folder"):
        acquisitions.discover_acquisitions([tmp_path / "nope"])


# ----------------------------------------------------------------------------- series and phenology


def test_plot_series_drops_low_valid_and_nan():
    table = pd.DataFrame({
        "plot_id": ["p"] * 4, "date": ["2023-05-01", "2023-05-11", "2023-05-21", "2023-05-31"],
        "ndvi_mean": [0.3, 0.9, np.nan, 0.5], "valid_frac": [1.0, 0.59, 1.0, 0.6], "cropped_area_mu": [0, 1, 2, 3],
    })
    s = series.plot_series(table, min_valid_fraction=0.6)["p"]
    assert s.dates.astype(str).tolist() == ["2023-05-01", "2023-05-31"]
    assert s.ndvi.tolist() == [0.3, 0.5] and s.n_acquisitions == 4
    with pytest.raises(SchemaError, match="valid_frac"):
        series.plot_series(table.drop(columns="valid_frac"))


def _double_logistic(t, t1=150.0, t2=250.0, k=0.08, base=0.2, amp=0.6):
    return base + amp / (1 + np.exp(-k * (t - t1))) - amp / (1 + np.exp(-k * (t - t2)))


def _analytic_crossings(t1=150.0, t2=250.0, k=0.08, lo=60.0, hi=340.0):
    """Exact 50 % crossings of the sampled-range curve, each side with its own base (as phenology())."""
    f = lambda t: _double_logistic(t, t1, t2, k)  # noqa: E731
    peak_t = (t1 + t2) / 2
    peak = f(peak_t)
    up = f(lo) + 0.5 * (peak - f(lo))
    down = f(hi) + 0.5 * (peak - f(hi))
    return brentq(lambda t: f(t) - up, lo, peak_t), brentq(lambda t: f(t) - down, peak_t, hi)


@pytest.mark.parametrize("step", [1, 5])
def test_phenology_matches_analytic_logistic(step):
    start = np.datetime64("2023-01-01")
    t = np.arange(59, 340, step).astype(float)  # day offsets from 1 January (doy - 1)
    dates = start + t.astype(int)
    feats = series.phenology(dates, _double_logistic(t))
    greenup, senescence = _analytic_crossings(lo=t[0], hi=t[-1])
    got_up = (feats["greenup_date"] - start).astype(int)
    got_down = (feats["senescence_date"] - start).astype(int)
    assert abs(got_up - greenup) <= 1 and abs(got_down - senescence) <= 1
    assert feats["season_length_days"] == pytest.approx(senescence - greenup, abs=0.5 if step == 1 else 1.5)
    assert feats["peak_ndvi"] == pytest.approx(_double_logistic(200.0), abs=1e-3)
    assert (feats["peak_date"] - start).astype(int) == pytest.approx(200, abs=step)
    # Integral of NDVI - base: the analytic integral of the curve minus its minimum.
    fine = np.linspace(t[0], t[-1], 200001)
    reference = np.trapezoid(_double_logistic(fine) - _double_logistic(t).min(), fine)
    assert feats["ndvi_integral"] == pytest.approx(reference, rel=0.01)


@pytest.mark.parametrize("method", ["whittaker", "savgol"])
def test_smoothed_phenology_noisy_sparse(method):
    rng = np.random.default_rng(3)
    start = np.datetime64("2023-01-01")
    t = np.arange(60, 340, 10)
    y = _double_logistic(t.astype(float)) + rng.normal(0, 0.015, len(t))
    days, curve = series.smooth_series(start + t, y, method)
    assert len(days) == t[-1] - t[0] + 1
    feats = series.phenology(days, curve)
    greenup, senescence = _analytic_crossings(lo=t[0], hi=t[-1])
    assert abs((feats["greenup_date"] - start).astype(int) - greenup) <= 5
    assert abs((feats["senescence_date"] - start).astype(int) - senescence) <= 5
    assert feats["peak_ndvi"] == pytest.approx(_double_logistic(200.0), abs=0.04)


def test_phenology_without_greenup_in_series():
    dates = np.datetime64("2023-06-01") + np.arange(0, 100, 10)
    feats = series.phenology(dates, np.linspace(0.8, 0.2, 10))  # starts at the peak
    assert np.isnat(feats["greenup_date"]) and not np.isnat(feats["senescence_date"])
    assert np.isnan(feats["season_length_days"])


def test_resample_doy_across_new_year():
    dates = np.datetime64("2022-12-21") + np.array([0, 20, 40])  # doy 355, 10 (2023), 30
    values = np.array([0.3, 0.5, 0.7])
    got = series.resample_doy(dates, values, np.array([355, 365, 10, 20, 30, 100]))
    # doy 365 of 2022 is 10 days after 2022-12-21; doy 20 of 2023 is 30 days after.
    np.testing.assert_allclose(got, [0.3, 0.4, 0.5, 0.6, 0.7, np.nan])


# ----------------------------------------------------------------------------- peer vigor


@settings(deadline=None)  # (the first example imports scipy.stats: run alone, it took 0.7 s)
@given(st.lists(st.sampled_from([0.5, 0.6, 0.62, 0.7, 0.8, 0.81]) | st.floats(0.3, 0.9), min_size=5, max_size=40))
def test_peer_percentiles_match_scipy_percentileofscore(peaks):
    from scipy.stats import percentileofscore

    from agricredit.season import peer_vigor

    plots = pd.DataFrame({"plot_id": [f"P{i}" for i in range(len(peaks))], "declared_crop": "maize",
                          "vigor_peak_ndvi": peaks, "pixel_count": 50.0})
    out = peer_vigor(plots, {f"P{i}": [] for i in range(len(peaks))}, min_peers=5)
    for k, peak in enumerate(peaks):
        others = peaks[:k] + peaks[k + 1:]
        assert out["peak_percentile"].iloc[k] == pytest.approx(percentileofscore(others, peak, kind="mean"))
    assert (out["peer_count"] == len(peaks)).all()
    assert out["peer_median_peak"].iloc[0] == pytest.approx(np.median(peaks))


def test_only_a_low_vigor_plot_is_marked_down():
    from agricredit.season import peer_vigor

    peaks = [0.80, 0.82, 0.78, 0.84, 0.79, 0.81, 0.55]
    plots = pd.DataFrame({"plot_id": [f"P{i}" for i in range(7)], "declared_crop": "soybean",
                          "vigor_peak_ndvi": peaks, "pixel_count": 50.0})
    flags = {f"P{i}": [] for i in range(7)}
    out = peer_vigor(plots, flags, low_vigor_percentile=10.0, low_vigor_min_gap=0.1, vigor_factor_max=1.0)
    assert [f.code for f in flags["P6"]] == ["LOW_VIGOR"]
    assert out["vigor_factor"].iloc[6] == 0.7  # 0.55 / 0.80 = 0.69, clipped to vigor_factor_min
    assert (out["vigor_factor"].iloc[:6] == 1.0).all()  # below-median honest plots are not marked down
    bonus = peer_vigor(plots, {f"P{i}": [] for i in range(7)}, vigor_factor_max=1.1)
    assert bonus["vigor_factor"].iloc[3] == pytest.approx(0.84 / np.median(peaks))
    assert bonus["vigor_factor"].iloc[2] == 1.0


def test_plots_without_a_declared_crop_have_no_peers():
    from agricredit.season import peer_vigor

    plots = pd.DataFrame({"plot_id": [f"P{i}" for i in range(7)],
                          "declared_crop": ["maize"] * 6 + [np.nan],  # pandas reads a missing crop as NaN
                          "vigor_peak_ndvi": [0.8, 0.81, 0.79, 0.8, 0.82, 0.78, 0.3], "pixel_count": 50.0})
    out = peer_vigor(plots, {f"P{i}": [] for i in range(7)})
    assert out["peer_count"].tolist() == [6] * 6 + [0] and out["vigor_factor"].iloc[6] == 1.0
