"""The coverage-weighted zonal engine against exactextract, shapely brute force and plain numpy."""

from __future__ import annotations

import datetime as dt

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.warp
import scipy.sparse as sp
import shapely
from exactextract import exact_extract
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin

from agricredit import coverage, zonal
from agricredit.errors import CRSError, MissingMetadataError

CRS = "EPSG:32650"
X0, Y0, RES = 500000.0, 4000600.0, 10.0


def write_ndvi(path, array, *, x0=X0, y0=Y0, crs=CRS, tags=None):
    height, width = array.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype="float32",
                       crs=crs, transform=from_origin(x0, y0, RES, RES)) as dst:
        dst.write(array.astype(np.float32), 1)
        if tags:
            dst.update_tags(**tags)
    return str(path)


def random_plots(rng, n, *, xmin=X0 - 40, xmax=X0 + 840, ymin=Y0 - 640, ymax=Y0 + 40):
    """Random plots of every awkward kind: sub-pixel, on the edge, with holes, multipolygons."""
    cx, cy = rng.uniform(xmin, xmax, n), rng.uniform(ymin, ymax, n)
    radius = rng.uniform(2, 90, n)
    geoms = list(shapely.buffer(shapely.points(cx, cy), radius, quad_segs=3))
    geoms[0] = shapely.box(X0 + 101, Y0 - 299, X0 + 104, Y0 - 296)  # 9 m², inside one pixel
    geoms[1] = shapely.box(X0 + 200, Y0 - 400, X0 + 300, Y0 - 300).difference(
        shapely.box(X0 + 230, Y0 - 370, X0 + 265, Y0 - 335))  # a hole
    geoms[2] = shapely.MultiPolygon([shapely.box(X0 + 5, Y0 - 95, X0 + 47, Y0 - 53),
                                     shapely.box(X0 + 503, Y0 - 207, X0 + 588, Y0 - 166)])
    geoms[3] = shapely.box(X0 - 55, Y0 - 120, X0 + 45, Y0 - 20)  # half off the tile's west edge
    return gpd.GeoDataFrame({"plot_id": [f"p{i}" for i in range(n)]}, geometry=geoms, crs=CRS)


@pytest.fixture
def ndvi_tile(tmp_path):
    rng = np.random.default_rng(7)
    array = rng.uniform(-0.2, 0.95, (60, 80)).astype(np.float32)
    array[5:12, 5:30] = np.nan  # clouds
    array[20:30, 20:40] = np.round(array[20:30, 20:40], 1)  # repeated values: quantiles merge them
    return write_ndvi(tmp_path / "S2_20230601_ndvi.tif", array), array


def test_coverage_weights_equal_brute_force_intersections():
    rng = np.random.default_rng(1)
    transform = from_origin(0, 50, 10, 10)  # 5 × 4 grid
    geoms = np.array([
        shapely.Polygon([(3, 3), (37, 8), (22, 46), (5, 31)]),
        shapely.box(11, 11, 14, 13),  # sub-pixel
        shapely.box(-5, 20, 15, 60),  # sticks out of the grid
        shapely.box(2, 2, 38, 48).difference(shapely.box(12, 12, 27, 33)),  # hole
        shapely.MultiPolygon([shapely.box(1, 41, 8, 49), shapely.box(31, 1, 49, 9)]),
        shapely.buffer(shapely.Point(*rng.uniform(10, 40, 2)), 7.3),
    ])
    weights = zonal.coverage_weights(geoms, transform, 5, 4)
    dense = np.zeros((len(geoms), 20))
    dense[:, weights.cells] = weights.matrix.toarray()
    cells = [shapely.box(10 * c, 50 - 10 * (r + 1), 10 * (c + 1), 50 - 10 * r) for r in range(4) for c in range(5)]
    brute = np.array([[shapely.intersection(g, cell).area / 100 for cell in cells] for g in geoms])
    np.testing.assert_allclose(dense, brute, atol=1e-6)
    np.testing.assert_allclose(weights.plot_cells, shapely.area(geoms) / 100)


def _brute_quantile(values, weights, q):
    """exactextract's weighted quantile, written out plainly (merge equal values, interpolate)."""
    merged: dict[float, float] = {}
    for v, w in zip(values, weights):
        if np.isfinite(v) and w > 0:
            merged[float(v)] = merged.get(float(v), 0.0) + float(w)
    if not merged:
        return np.nan
    x = sorted(merged)
    w = [merged[v] for v in x]
    n = len(x)
    cum, s = 0.0, []
    for i, wi in enumerate(w):
        s.append(i * wi + (n - 1) * cum)
        cum += wi
    target = q * cum * (n - 1)
    right = next((i for i, si in enumerate(s) if si > target), n)
    if right == 0:
        return x[0]
    if right == n:
        return x[-1]
    left = right - 1
    return x[left] + (target - s[left]) * (x[right] - x[left]) / (s[right] - s[left])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), st.sampled_from([np.float32, np.float64]))
def test_weighted_quantiles_match_brute_force(seed, q, dtype):
    rng = np.random.default_rng(seed)
    n_rows, n_cols = 6, 25
    dense = rng.uniform(0, 1, (n_rows, n_cols)) * (rng.uniform(0, 1, (n_rows, n_cols)) < 0.4)
    dense[0] = 0  # a row without values
    values = np.round(rng.uniform(-1, 1, n_cols), 1).astype(dtype)  # many ties, and -0.0 vs 0.0
    values[rng.uniform(0, 1, n_cols) < 0.2] = np.nan
    # float32 takes the packed-key sort, float64 the lexsort: both must agree with the definition.
    got = zonal.weighted_quantiles(sp.csr_matrix(dense), values, [q])[:, 0]
    expected = [_brute_quantile(values, dense[r], q) for r in range(n_rows)]
    np.testing.assert_allclose(got, expected, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("chunked", [False, True])
def test_stats_match_exactextract(ndvi_tile, monkeypatch, chunked):
    path, _ = ndvi_tile
    if chunked:  # the block-wise paths of large runs, on small data
        monkeypatch.setattr(coverage, "_CHUNK_ENTRIES", 500)
        monkeypatch.setattr(coverage, "_CHUNK_PLOTS", 7)
    plots = random_plots(np.random.default_rng(2), 150)
    ours = zonal.zonal_stats(plots, [path], threshold=0.4)
    ref = exact_extract(path, plots, ["mean", "median", "quantile(q=0.9)", "count"], include_cols=["plot_id"],
                        output="pandas")
    merged = ref.merge(ours, on="plot_id", how="left")
    touched = merged["count"] > 0
    for theirs, mine in [("mean", "ndvi_mean"), ("median", "ndvi_median"), ("quantile_90", "ndvi_p90")]:
        np.testing.assert_allclose(merged.loc[touched, mine], merged.loc[touched, theirs], atol=1e-6)
    assert merged.loc[~touched, "ndvi_mean"].isna().all()
    valid_cells = merged["valid_frac"] * shapely.area(plots.set_index("plot_id").loc[merged["plot_id"]].geometry.values) / 100
    np.testing.assert_allclose(valid_cells[touched], merged.loc[touched, "count"], rtol=1e-5)


def test_fractions_partial_flag_and_cropped_area(tmp_path):
    array = np.full((20, 20), 0.8, dtype=np.float32)
    array[:, 10:] = 0.2
    array[0:5, 0:5] = np.nan
    path = write_ndvi(tmp_path / "t_2023-07-01.tif", array)
    plots = gpd.GeoDataFrame({"plot_id": ["half", "cloudy", "outside"]}, geometry=[
        shapely.box(X0 + 50, Y0 - 150, X0 + 150, Y0 - 50),  # 5 px at 0.8, 5 px at 0.2 per row
        shapely.box(X0, Y0 - 100, X0 + 100, Y0),  # quarter of it under the NaN block
        shapely.box(X0 - 100, Y0 - 100, X0 + 100, Y0),  # half west of the tile
    ], crs=CRS).to_crs(4326)  # plots in WGS84 are reprojected to the tile
    table = zonal.zonal_stats(plots, [path], threshold=0.5).set_index("plot_id")
    assert table.loc["half", "ndvi_mean"] == pytest.approx(0.5, abs=1e-4)
    assert table.loc["half", "valid_frac"] == pytest.approx(1.0, abs=1e-4)
    area_mu = 100 * 100 / 10_000 * 15
    assert table.loc["half", "cropped_area_mu"] == pytest.approx(area_mu / 2, rel=1e-3)
    assert table.loc["cloudy", "cloud_frac"] == pytest.approx(0.25, abs=1e-4)
    assert table.loc["cloudy", "valid_frac"] == pytest.approx(0.75, abs=1e-4)
    assert table.loc["half", "flags"] == "" and table.loc["outside", "flags"] == zonal.PARTIAL_COVERAGE
    assert table.loc["outside", "covered_frac"] == pytest.approx(0.5, abs=1e-3)
    assert table.loc["outside", "pixel_count"] == pytest.approx(100, rel=1e-3)


def test_mosaic_of_one_date_equals_the_whole_raster_and_dates_stay_apart(tmp_path):
    rng = np.random.default_rng(5)
    full = rng.uniform(0, 0.9, (40, 60)).astype(np.float32)
    whole = write_ndvi(tmp_path / "whole_20230601.tif", full)
    west = write_ndvi(tmp_path / "a_west_20230601.tif", full[:, :30])
    east = write_ndvi(tmp_path / "b_east_20230601.tif", full[:, 30:], x0=X0 + 300)
    later = write_ndvi(tmp_path / "later.tif", full[:, :30] * 0 + 0.3, tags={"ACQUISITION_DATE": "2023-06-11"})
    plots = random_plots(rng, 40, xmin=X0, xmax=X0 + 600, ymin=Y0 - 400, ymax=Y0)
    reference = zonal.zonal_stats(plots, [whole])
    mosaic = zonal.zonal_stats(plots, [west, east, later])
    first = mosaic[mosaic["date"] == "2023-06-01"].reset_index(drop=True)
    columns = ["ndvi_mean", "ndvi_median", "ndvi_p90", "valid_frac", "pixel_count"]
    np.testing.assert_allclose(first[columns].to_numpy(float), reference[columns].to_numpy(float), atol=1e-9)
    second = mosaic[mosaic["date"] == "2023-06-11"]
    assert np.allclose(second["ndvi_mean"], 0.3)


def test_weights_built_once_for_all_dates(tmp_path, monkeypatch):
    rng = np.random.default_rng(9)
    paths = [write_ndvi(tmp_path / f"n_202306{d:02d}.tif", rng.uniform(0, 1, (30, 30))) for d in (1, 11, 21)]
    calls = []
    real = zonal.coverage_weights
    monkeypatch.setattr(zonal, "coverage_weights", lambda *a, **k: calls.append(1) or real(*a, **k))
    plots = random_plots(rng, 20, xmin=X0, xmax=X0 + 300, ymin=Y0 - 300, ymax=Y0)
    table = zonal.zonal_stats(plots, paths)
    assert len(calls) == 1
    assert sorted(table["date"].unique()) == ["2023-06-01", "2023-06-11", "2023-06-21"]
    for path, (_, rows) in zip(paths, table.groupby("date")):
        ref = exact_extract(path, plots, ["mean"], include_cols=["plot_id"], output="pandas")
        merged = rows.merge(ref, on="plot_id")
        np.testing.assert_allclose(merged["ndvi_mean"], merged["mean"], atol=1e-6)


def test_generator_yields_one_dict_per_plot_and_date(ndvi_tile):
    path, _ = ndvi_tile
    plots = random_plots(np.random.default_rng(4), 10)
    rows = list(zonal.gen_zonal_stats(plots, [path]))
    assert sorted(row["plot_id"] for row in rows) == sorted(plots["plot_id"])  # one dict per plot, none twice
    assert all(set(row) == set(zonal.STAT_COLUMNS) and row["date"] == "2023-06-01" for row in rows)
    frame = zonal.zonal_stats(plots, [path]).set_index("plot_id")
    for row in rows:  # the generator and its DataFrame wrapper agree on every figure of every row
        for column in ("ndvi_mean", "valid_frac", "pixel_count"):
            assert row[column] == pytest.approx(frame.at[row["plot_id"], column], nan_ok=True)


def test_tile_date_and_crs_errors(tmp_path):
    array = np.zeros((4, 4), dtype=np.float32)
    assert zonal.open_tile(write_ndvi(tmp_path / "x.tif", array, tags={"ACQUISITION_DATE": "2022-05-03"})).date == "2022-05-03"
    assert zonal.open_tile(write_ndvi(tmp_path / "T50_20210704T030541_ndvi.tif", array)).date == "2021-07-04"
    # A date given by the caller (a season manifest) wins over tags and names.
    assert zonal.open_tile(tmp_path / "x.tif", date=dt.date(2022, 6, 1)).date == "2022-06-01"
    assert zonal.open_tile(write_ndvi(tmp_path / "nodate2.tif", array), date=dt.date(2022, 6, 2)).date == "2022-06-02"
    with pytest.raises(MissingMetadataError, match="nodate.tif"):
        zonal.open_tile(write_ndvi(tmp_path / "nodate.tif", array))
    with pytest.raises(CRSError, match="nocrs"):
        zonal.open_tile(write_ndvi(tmp_path / "nocrs_20200101.tif", array, crs=None))


def test_tiles_of_one_date_on_two_crs_are_not_counted_twice(tmp_path):
    utm = write_ndvi(tmp_path / "utm_20230601.tif", np.full((30, 30), 0.6, dtype=np.float32))
    # The same place on a geographic grid (about 0.0001° pixels), same date.
    lon0, lat0 = rasterio.warp.transform(CRS, "EPSG:4326", [X0 - 50], [Y0 + 50])
    with rasterio.open(tmp_path / "geo_20230601.tif", "w", driver="GTiff", width=60, height=60, count=1,
                       dtype="float32", crs="EPSG:4326", transform=from_origin(lon0[0], lat0[0], 1e-4, 1e-4)) as dst:
        dst.write(np.full((60, 60), 0.6, dtype=np.float32), 1)
    plots = gpd.GeoDataFrame({"plot_id": ["A"]}, geometry=[shapely.box(X0 + 50, Y0 - 150, X0 + 150, Y0 - 50)], crs=CRS)
    row = zonal.zonal_stats(plots, [utm, str(tmp_path / "geo_20230601.tif")]).iloc[0]
    assert row["covered_frac"] == pytest.approx(1.0, abs=1e-3)
    assert row["ndvi_mean"] == pytest.approx(0.6)
    assert row["flags"] == ""
