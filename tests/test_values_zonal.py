"""``zonal``: grids, mosaics, weights and the engine's options, against exactextract and plain numpy.

Each test pins a figure or rule at, just inside and just outside its edge, with the reference computed
independently (exactextract on one whole raster, a brute-force weighted quantile, pixel counts by hand).
These tests came out of mutation testing (issue 16 §5, ``scripts/mutation.py zonal``).
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import rasterio
import scipy.sparse as sp
import shapely
from exactextract import exact_extract
from rasterio import Affine
from rasterio.transform import from_origin

from agricredit import coverage, zonal
from test_zonal import _brute_quantile  # exactextract's weighted quantile written out plainly
from agricredit.errors import (
    CorruptInputError,
    GridMismatchError,
    InputNotFoundError,
    MissingBandError,
    MissingMetadataError,
)

CRS = "EPSG:32650"
X0, Y0, RES = 500_000.0, 4_000_600.0, 10.0
M2_PER_MU = 10_000 / 15


def write_ndvi(path, array, *, x0=X0, y0=Y0, res=RES, crs=CRS):
    height, width = array.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype="float32",
                       crs=crs, transform=from_origin(x0, y0, res, res)) as dst:
        dst.write(array.astype(np.float32), 1)
    return str(path)


def _tile(path, transform, width=10, height=10, crs=CRS, date="2023-06-01"):
    return zonal.Tile(str(path), date, pyproj.CRS(crs), transform, width, height)


def _plots(*boxes, crs=CRS):
    return gpd.GeoDataFrame({"plot_id": [f"p{i}" for i in range(len(boxes))]},
                            geometry=[shapely.box(*b) for b in boxes], crs=crs)


# --------------------------------------------------------------------------- grids


def test_tiles_of_one_lattice_share_one_grid_sized_to_their_union():
    # A lattice offset 3 m from round numbers; tiles given east before west and south before north.
    x0, y0 = X0 + 3, Y0 + 7
    tiles = [_tile("se", from_origin(x0 + 100, y0 - 50, RES, RES)), _tile("nw", from_origin(x0, y0, RES, RES)),
             _tile("far", from_origin(x0 + 1000, y0 - 200, RES, RES), width=5, height=4)]
    (grid,) = zonal._group_grids(tiles)
    assert grid.transform == from_origin(x0, y0, RES, RES)  # the north-west corner of the union
    assert (grid.width, grid.height) == (105, 24)  # 1000 m + 5 pixels east, 200 m + 4 pixels south
    assert grid.offsets == {"nw": (0, 0), "se": (5, 10), "far": (20, 100)}


@pytest.mark.parametrize("change", ["half pixel east", "half pixel north", "20 m pixels", "10 x 20 m pixels",
                                    "other CRS"])
def test_tiles_off_the_lattice_get_their_own_grid(change):
    base = _tile("a", from_origin(X0, Y0, RES, RES))
    other = {
        "half pixel east": _tile("b", from_origin(X0 + 105, Y0, RES, RES)),
        "half pixel north": _tile("b", from_origin(X0, Y0 + 105, RES, RES)),
        "20 m pixels": _tile("b", from_origin(X0, Y0, 20, 20)),
        "10 x 20 m pixels": _tile("b", from_origin(X0, Y0, 20, RES)),
        "other CRS": _tile("b", from_origin(X0, Y0, RES, RES), crs="EPSG:32651"),
    }[change]
    assert [list(g.offsets) for g in zonal._group_grids([base, other])] == [["a"], ["b"]]


def test_alignment_tolerance_is_a_millionth_of_a_pixel():
    # 1 m pixels from x = 0: a shift of exactly 1e-6 m is off the lattice, 0.9e-6 m is on it.
    first = _tile("a", from_origin(0.0, 100.0, 1.0, 1.0))
    on = _tile("b", from_origin(0.9e-6, 100.0, 1.0, 1.0))
    off = _tile("c", from_origin(1e-6, 100.0, 1.0, 1.0))
    assert len(zonal._group_grids([first, on])) == 1
    assert len(zonal._group_grids([first, off])) == 2


@pytest.mark.parametrize("transform", [Affine(RES, 0.5, X0, 0.0, -RES, Y0), Affine(RES, 0.0, X0, 0.5, -RES, Y0)])
def test_a_rotated_raster_is_refused_by_name(transform):
    with pytest.raises(GridMismatchError) as error:
        zonal._group_grids([_tile("rotated.tif", transform)])
    assert str(error.value) == "rotated.tif: rotated rasters are not supported"


@pytest.mark.parametrize("strip_rows, chunk", [(512, None), (3, None), (3, 40)])
@pytest.mark.parametrize("names", [("q1", "q2", "q3", "q4"), ("q4", "q3", "q2", "q1")])
def test_mosaic_of_quadrants_given_in_any_order_equals_the_whole_raster(tmp_path, monkeypatch, strip_rows, chunk,
                                                                       names):
    monkeypatch.setattr(zonal, "_STRIP_ROWS", strip_rows)  # 3: the tiles are read in strips of 3 grid rows
    if chunk:  # blocks of about 40 weights, one plot each: several blocks in every strip
        monkeypatch.setattr(coverage, "_CHUNK_ENTRIES", chunk)
    rng = np.random.default_rng(11)
    full = rng.uniform(-0.1, 0.9, (40, 60)).astype(np.float32)
    whole = write_ndvi(tmp_path / "whole.tif", full)
    se, ne, sw, nw = (f"{name}_20230601.tif" for name in names)  # read in the order of their names
    quadrants = [  # south-east first, north-west last: the union's origin is not the first tile's
        write_ndvi(tmp_path / se, full[25:, 35:], x0=X0 + 350, y0=Y0 - 250),
        write_ndvi(tmp_path / ne, full[:25, 35:], x0=X0 + 350),
        write_ndvi(tmp_path / sw, full[25:, :35], y0=Y0 - 250),
        write_ndvi(tmp_path / nw, full[:25, :35]),
    ]
    plots = _plots((X0 + 5, Y0 - 395, X0 + 595, Y0 - 5), (X0 + 333, Y0 - 272, X0 + 377, Y0 - 228),
                   (X0 + 12, Y0 - 388, X0 + 47, Y0 - 301), (X0 + 520, Y0 - 60, X0 + 590, Y0 - 10),
                   (X0 + 340, Y0 - 20, X0 + 361, Y0 - 1))  # one pixel of the north-west tile, 10 of the other
    ours = zonal.zonal_stats(plots, quadrants).set_index("plot_id")
    np.testing.assert_allclose(ours[["covered_frac", "valid_frac"]].to_numpy(float), 1.0, atol=1e-6)
    ref = exact_extract(whole, plots, ["mean", "median", "quantile(q=0.9)", "count"], include_cols=["plot_id"],
                        output="pandas").set_index("plot_id")
    np.testing.assert_allclose(ours["ndvi_mean"], ref["mean"], atol=1e-6)
    np.testing.assert_allclose(ours["ndvi_median"], ref["median"], atol=1e-6)
    np.testing.assert_allclose(ours["ndvi_p90"], ref["quantile_90"], atol=1e-6)
    np.testing.assert_allclose(ours["pixel_count"], ref["count"], rtol=1e-6)
    assert (ours["flags"] == "").all() and (ours["date"] == "2023-06-01").all()


@pytest.fixture
def two_grids(tmp_path):
    """One date on two grids side by side: 10 m pixels of 0.3 west of X0 + 100, 20 m pixels of 0.7 east of it."""
    west = write_ndvi(tmp_path / "west_20230601.tif", np.full((10, 10), 0.3, np.float32))
    east = write_ndvi(tmp_path / "east_20230601.tif", np.full((5, 5), 0.7, np.float32), x0=X0 + 100, res=20.0)
    return west, east


def test_a_plot_on_two_grids_of_one_date_gets_their_mosaic(two_grids):
    plots = _plots((X0 + 50, Y0 - 60, X0 + 150, Y0 - 20),  # 50 × 40 m on each grid
                   (X0 + 101, Y0 - 19, X0 + 104, Y0 - 16),  # 9 m², inside one 20 m pixel
                   (X0 + 10, Y0 - 90, X0 + 30, Y0 - 70))  # 2 × 2 pixels of the west grid
    for order in (two_grids, two_grids[::-1]):
        table = zonal.zonal_stats(plots, order, threshold=0.5).set_index("plot_id")
        both, tiny, west = table.loc["p0"], table.loc["p1"], table.loc["p2"]
        assert both["ndvi_mean"] == pytest.approx(0.5, abs=1e-6)  # equal areas at 0.3 and 0.7
        assert both["ndvi_median"] == pytest.approx(0.5, abs=1e-6)  # exactextract: halfway, equal weights
        assert both["pixel_count"] == pytest.approx(5 * 4 + 2.5 * 2, rel=1e-6)  # 10 m pixels + 20 m pixels
        assert (both["covered_frac"], both["valid_frac"]) == (pytest.approx(1.0), pytest.approx(1.0))
        assert both["cropped_area_mu"] == pytest.approx(zonal.area_mu_of(plots).iloc[0] / 2, rel=1e-5)
        assert tiny["ndvi_mean"] == pytest.approx(0.7, abs=1e-6) and tiny["valid_frac"] == pytest.approx(1.0)
        assert tiny["pixel_count"] == pytest.approx(9 / 400, rel=1e-5)
        assert tiny["cropped_area_mu"] == pytest.approx(9 / M2_PER_MU, rel=1e-3)  # 0.7 ≥ 0.5 on all 9 m²
        assert west["ndvi_p90"] == pytest.approx(0.3, abs=1e-6) and west["pixel_count"] == pytest.approx(4.0)


def test_more_plots_than_cells_on_two_grids(two_grids):
    # Nine plots inside one pixel of each grid: the rows are plots, not cells.
    boxes = [(X0 + 1 + i, Y0 - 9, X0 + 2 + i, Y0 - 8) for i in range(5)]
    boxes += [(X0 + 101 + 2 * i, Y0 - 9, X0 + 102 + 2 * i, Y0 - 8) for i in range(4)]
    table = zonal.zonal_stats(_plots(*boxes), two_grids)
    assert table["ndvi_mean"].round(6).tolist() == [0.3] * 5 + [0.7] * 4
    np.testing.assert_allclose(table["pixel_count"], [0.01] * 5 + [0.0025] * 4, rtol=1e-5)


def test_two_grids_in_blocks_give_the_same_figures(two_grids, monkeypatch):
    plots = _plots(*[(X0 + 7 * i, Y0 - 60, X0 + 7 * i + 60, Y0 - 20) for i in range(25)])
    whole = zonal.zonal_stats(plots, two_grids)
    monkeypatch.setattr(coverage, "_CHUNK_ENTRIES", 7)
    monkeypatch.setattr(coverage, "_CHUNK_PLOTS", 4)
    chunked = zonal.zonal_stats(plots, two_grids)
    columns = ["ndvi_mean", "ndvi_median", "ndvi_p90", "valid_frac", "covered_frac", "pixel_count"]
    np.testing.assert_allclose(chunked[columns].to_numpy(float), whole[columns].to_numpy(float), atol=1e-9)
    east_share = np.clip((np.arange(25) * 7 + 60 - 100) / 60, 0, 1)  # the part of each plot east of X0 + 100
    np.testing.assert_allclose(whole["ndvi_mean"], 0.3 + 0.4 * east_share, atol=1e-6)


def test_threshold_in_float32_on_two_grids(two_grids, tmp_path):
    west = write_ndvi(tmp_path / "west_20230601.tif", np.full((10, 10), 0.7, np.float32))
    plots = _plots((X0 + 50, Y0 - 60, X0 + 150, Y0 - 20))
    row = zonal.zonal_stats(plots, [west, two_grids[1]], threshold=0.7).iloc[0]
    assert row["cropped_area_mu"] == pytest.approx(zonal.area_mu_of(plots).iloc[0], rel=1e-5)  # both at 0.7


def test_shares_of_the_plot_never_exceed_one(tmp_path):
    # Coverage fractions are float32: their sum over a plot can pass its area by rounding, the share cannot.
    rng = np.random.default_rng(3)
    path = write_ndvi(tmp_path / "t_20230601.tif", rng.uniform(0.1, 0.9, (60, 80)).astype(np.float32))
    cloudy = write_ndvi(tmp_path / "t_20230611.tif", np.full((60, 80), np.nan, np.float32))
    centres = rng.uniform([X0 + 100, Y0 - 500], [X0 + 700, Y0 - 100], (300, 2))
    geoms = shapely.buffer(shapely.points(centres), rng.uniform(5, 60, 300), quad_segs=5)
    plots = gpd.GeoDataFrame({"plot_id": [f"p{i}" for i in range(300)]}, geometry=geoms, crs=CRS)
    weights = zonal.coverage_weights(geoms, from_origin(X0, Y0, RES, RES), 80, 60)
    raw = np.asarray(weights.matrix.sum(axis=1)).ravel() / weights.plot_cells
    assert raw.max() > 1  # the rounding is there to clip
    table = zonal.zonal_stats(plots, [path, cloudy])
    clear, clouded = table[table["date"] == "2023-06-01"], table[table["date"] == "2023-06-11"]
    assert clear["valid_frac"].max() == 1.0 and table["covered_frac"].max() == 1.0
    assert clouded["cloud_frac"].max() == 1.0
    np.testing.assert_allclose(clear["valid_frac"], 1.0, atol=1e-6)
    np.testing.assert_allclose(clouded["cloud_frac"], 1.0, atol=1e-6)


def test_strips_without_plots_are_skipped_and_later_strips_read(tmp_path, monkeypatch):
    monkeypatch.setattr(zonal, "_STRIP_ROWS", 3)
    full = np.random.default_rng(12).uniform(0, 0.9, (40, 20)).astype(np.float32)
    path = write_ndvi(tmp_path / "t_20230601.tif", full)
    plots = _plots((X0 + 3, Y0 - 25, X0 + 190, Y0 - 2), (X0 + 3, Y0 - 398, X0 + 190, Y0 - 361))  # rows 0-2, 36-39
    ours = zonal.zonal_stats(plots, [path])
    ref = exact_extract(path, plots, ["mean", "median"], include_cols=["plot_id"], output="pandas")
    np.testing.assert_allclose(ours["ndvi_mean"], ref["mean"], atol=1e-6)
    np.testing.assert_allclose(ours["ndvi_median"], ref["median"], atol=1e-6)


@pytest.mark.parametrize("strip_rows", [512, 4])
def test_a_first_tile_holding_every_cell_and_a_second_filling_its_clouds(tmp_path, monkeypatch, strip_rows):
    # Tile a covers all the plots (read without per-cell tests), with clouds (NaN) in places; tile b, same date
    # and grid, covers its east part and fills the clouds it can. Reference: exactextract on the mosaic written
    # out per pixel here (a where valid, else b where b covers, else NaN).
    monkeypatch.setattr(zonal, "_STRIP_ROWS", strip_rows)
    rng = np.random.default_rng(31)
    first = rng.uniform(-0.1, 0.9, (20, 30)).astype(np.float32)
    first[rng.uniform(0, 1, first.shape) < 0.3] = np.nan
    second = rng.uniform(-0.1, 0.9, (20, 15)).astype(np.float32)
    mosaic = first.copy()
    mosaic[:, 15:] = np.where(np.isnan(first[:, 15:]), second, first[:, 15:])
    a = write_ndvi(tmp_path / "a_20230601.tif", first)
    b = write_ndvi(tmp_path / "b_20230601.tif", second, x0=X0 + 150)
    whole = write_ndvi(tmp_path / "mosaic.tif", mosaic)
    plots = _plots((X0 + 3, Y0 - 197, X0 + 297, Y0 - 3), (X0 + 140, Y0 - 60, X0 + 165, Y0 - 40),
                   (X0 + 12, Y0 - 18, X0 + 18, Y0 - 12), (X0 + 210, Y0 - 110, X0 + 290, Y0 - 90))
    ours = zonal.zonal_stats(plots, [b, a]).set_index("plot_id")
    ref = exact_extract(whole, plots, ["mean", "median", "quantile(q=0.9)", "count"], include_cols=["plot_id"],
                        output="pandas").set_index("plot_id")
    np.testing.assert_allclose(ours["ndvi_mean"], ref["mean"], atol=1e-6)
    np.testing.assert_allclose(ours["ndvi_median"], ref["median"], atol=1e-6)
    np.testing.assert_allclose(ours["ndvi_p90"], ref["quantile_90"], atol=1e-6)
    areas = plots.set_index("plot_id").area / RES**2
    np.testing.assert_allclose(ours["valid_frac"], ref["count"] / areas, rtol=1e-6)
    np.testing.assert_allclose(ours["covered_frac"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(ours["cloud_frac"], 1 - ref["count"] / areas, atol=1e-6)


def test_a_cloud_in_an_earlier_tile_of_the_mosaic_is_inside_it(tmp_path):
    # Tiles a (west, clouded over its east half) and b (east, clear) of one date: the cloud lies inside tile a,
    # so it counts as cloud over a covered part of the plot, not as a part outside every tile.
    west = np.full((10, 10), 0.4, np.float32)
    west[:, 5:] = np.nan
    a = write_ndvi(tmp_path / "a_20230601.tif", west)
    b = write_ndvi(tmp_path / "b_20230601.tif", np.full((10, 10), 0.6, np.float32), x0=X0 + 100)
    row = zonal.zonal_stats(_plots((X0 + 50, Y0 - 100, X0 + 150, Y0)), [b, a]).iloc[0]
    assert row["covered_frac"] == pytest.approx(1.0)
    assert row["cloud_frac"] == pytest.approx(0.5) and row["valid_frac"] == pytest.approx(0.5)
    assert row["ndvi_mean"] == pytest.approx(0.6, abs=1e-6)


def _ndvi_product(path, ndvi, observed, mask_rule="none", x0=X0):
    """An NDVI raster as ``agricredit ndvi`` writes it: tagged, with an internal mask of the observed pixels."""
    with rasterio.open(path, "w", driver="GTiff", width=10, height=10, count=1, dtype="float32", crs=CRS,
                       transform=from_origin(x0, Y0, RES, RES)) as dst:
        dst.write(ndvi.astype(np.float32), 1)
        dst.write_mask(np.where(observed, 255, 0).astype(np.uint8))
        dst.update_tags(AGRICREDIT_PRODUCT="ndvi", MASK_RULE=mask_rule)
    return str(path)


def test_a_date_is_cloud_masked_only_if_every_tile_of_it_is(tmp_path):
    ndvi, observed = np.full((10, 10), 0.5), np.ones((10, 10), bool)
    masked = [_ndvi_product(tmp_path / f"m{i}_20230601.tif", ndvi, observed, "s2-scl", x0=X0 + 100 * i) for i in (0, 1)]
    mixed = [_ndvi_product(tmp_path / "m_20230611.tif", ndvi, observed, "s2-scl"),
             _ndvi_product(tmp_path / "u_20230611.tif", ndvi, observed, "none", x0=X0 + 100)]
    plain = write_ndvi(tmp_path / "p_20230621.tif", ndvi)
    table = zonal.zonal_stats(_plots((X0 + 50, Y0 - 60, X0 + 150, Y0 - 20)), [*masked, *mixed, plain])
    assert table["cloud_masked"].tolist() == [True, False, False]
    assert table["cloud_masked"].dtype == bool


def test_no_data_is_not_cloud_and_does_not_clear_another_tiles_cloud(tmp_path):
    # a: NaN observed (cloud) in the west half, NaN outside its footprint (no data) in the east half;
    # b, same date and grid: no data everywhere. The west half stays cloud, the east half is neither.
    nan = np.full((10, 10), np.nan)
    west = np.zeros((10, 10), bool)
    west[:, :5] = True
    a = _ndvi_product(tmp_path / "a_20230601.tif", nan, west)
    b = _ndvi_product(tmp_path / "b_20230601.tif", nan, np.zeros((10, 10), bool))
    plot = _plots((X0, Y0 - 100, X0 + 100, Y0))
    for tiles in ([a, b], [b, a]):
        row = zonal.zonal_stats(plot, tiles).iloc[0]
        assert (row["cloud_frac"], row["valid_frac"], row["covered_frac"]) == (pytest.approx(0.5), 0.0, 1.0)
        assert np.isnan(row["ndvi_mean"])


def test_plots_without_crs_and_the_weights_log(tmp_path, caplog):
    path = write_ndvi(tmp_path / "t_20230601.tif", np.full((10, 10), 0.5, np.float32))
    with pytest.raises(zonal.CRSError) as error:
        zonal.zonal_stats(_plots((X0, Y0 - 20, X0 + 20, Y0)).set_crs(None, allow_override=True), [path])
    assert str(error.value) == "plots have no CRS"
    with caplog.at_level("INFO", logger="agricredit.zonal"):
        zonal.zonal_stats(_plots((X0, Y0 - 20, X0 + 20, Y0), (X0 + 35, Y0 - 30, X0 + 45, Y0 - 20)), [path])
    messages = [r.getMessage() for r in caplog.records]
    assert "coverage weights: 2 plots, 1 blocks, 6 non-zero" in messages  # 2 × 2 and 2 × 1 pixels


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
def test_zero_and_negative_weights_do_not_count_as_values(q):
    values = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.9])
    # Row 0: explicit zeros on 0.1 and 0.9; row 1: a negative weight on 0.9; row 2: the same without them.
    data = np.array([0.0, 0.5, 1.0, 0.25, 0.0, 0.7, -0.3, 0.6, 0.5, 1.0, 0.25])
    rows = np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    cols = np.array([0, 1, 2, 3, 5, 1, 5, 1, 2, 3, 4])
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(3, 6))
    assert matrix.nnz == 11  # the zeros are stored entries
    got = zonal.weighted_quantiles(matrix, values, [q])[:, 0]
    dense = matrix.toarray()
    expected = [_brute_quantile(values, dense[r], q) for r in range(3)]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert got[1] == pytest.approx(0.2)  # one value left: 0.2 alone


@pytest.mark.parametrize("per_row, expected", [
    (1, [(0, 4, 4), (4, 4, 4)]),  # a block starts at the row holding entry 0, 4, 8 ...
    (2, [(0, 2, 4), (2, 2, 4), (4, 2, 4), (6, 2, 4)]),
    (3, [(0, 1, 3), (1, 1, 3), (2, 2, 6), (4, 1, 3), (5, 1, 3), (6, 2, 6)]),  # entries 4, 8 … 20: rows 1, 2, 4, 5, 6
])
def test_weights_are_cut_into_blocks_of_the_chunk_size(monkeypatch, per_row, expected):
    monkeypatch.setattr(coverage, "_CHUNK_ENTRIES", 4)
    matrix = sp.csr_matrix(np.kron(np.eye(8), np.ones((1, per_row))))  # 8 rows of per_row weights
    blocks = coverage.blocks_of(matrix)
    assert [(b.start, b.matrix.shape[0], b.matrix.nnz) for b in blocks] == expected
    values = np.arange(8 * per_row, dtype=float)
    np.testing.assert_allclose(zonal.weighted_quantiles(matrix, values, [0.0, 1.0]),
                               np.column_stack([values[::per_row], values[per_row - 1::per_row]]))


@pytest.mark.parametrize("q", [0.0, 0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0])
def test_weighted_quantiles_on_many_small_rows_match_the_definition(q):
    # 400 rows of 1 to 6 values with ties, tiny and equal weights: every branch of the interpolation.
    rng = np.random.default_rng(21)
    n_rows, n_cols = 400, 8
    dense = rng.choice([0.0, 0.0, 0.0, 1e-4, 0.25, 0.5, 1.0], (n_rows, n_cols)) * rng.uniform(0.5, 1, (n_rows, n_cols))
    dense[::7] = (dense[::7] > 0) * 1.0  # equal weights
    values = np.round(rng.uniform(-1, 1, n_cols), 1)
    got = zonal.weighted_quantiles(sp.csr_matrix(dense), values, [q])[:, 0]
    expected = [_brute_quantile(values, row, q) for row in dense]
    np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantiles_of_values_one_ulp_apart_or_tiny(dtype):
    # Neighbouring floats and values closer than 1e-7 keep their order (no rounding in the sort keys).
    base = dtype(0.3)
    values = np.array([np.nextafter(base, dtype(1)), base, np.nextafter(base, dtype(0)), 3e-8, 1e-8, 2e-8, -0.0, 0.0],
                      dtype=dtype)
    weights = np.array([[1.0, 1.0, 1.0, 0, 0, 0, 0, 0], [0, 0, 0, 1.0, 1.0, 1.0, 0, 0], [0, 0, 0, 0, 0, 0, 1.0, 2.0]])
    got = zonal.weighted_quantiles(sp.csr_matrix(weights), values, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(got[0], [values[2], values[1], values[0]])
    np.testing.assert_array_equal(got[1], [values[4], values[5], values[3]])
    np.testing.assert_array_equal(got[2], [0.0, 0.0, 0.0])  # -0.0 and 0.0 are one value


def test_coverage_weights_skip_missing_plots_in_every_block(monkeypatch):
    monkeypatch.setattr(coverage, "_CHUNK_PLOTS", 2)  # the first block of plots holds only missing ones
    geoms = np.array([None, shapely.Polygon(), shapely.box(1, 41, 9, 49), shapely.box(11, 31, 29, 49)], dtype=object)
    weights = zonal.coverage_weights(geoms, from_origin(0, 50, 10, 10), 5, 4)
    dense = np.zeros((4, 20))
    dense[:, weights.cells] = weights.matrix.toarray()
    np.testing.assert_allclose(dense.sum(axis=1), [0, 0, 0.64, 3.24], rtol=1e-6)
    np.testing.assert_allclose(weights.plot_cells[2:], [0.64, 3.24])


def test_coverage_weights_are_cut_into_blocks_of_the_chunk_size(monkeypatch):
    monkeypatch.setattr(coverage, "_CHUNK_ENTRIES", 4)
    geoms = np.array([shapely.box(10 * i + 1, 41, 10 * i + 9, 49) for i in range(5)], dtype=object)  # 1 cell each
    weights = zonal.coverage_weights(geoms, from_origin(0, 50, 10, 10), 5, 4)
    assert [(b.start, b.matrix.shape[0]) for b in weights.blocks] == [(0, 4), (4, 1)]
    np.testing.assert_allclose(weights.matrix.toarray(), np.eye(5) * 0.64, rtol=1e-6)


def test_cropped_threshold_is_compared_in_the_pixels_own_precision(tmp_path):
    # float32(0.7) = 0.699999988: a pixel stored as 0.7 is at the threshold 0.7, so it is cropped.
    assert float(np.float32(0.7)) < 0.7
    array = np.full((10, 10), 0.7, dtype=np.float32)
    array[:, 5:] = np.float32(0.7) - np.float32(1e-6)  # just under, in float32 too
    path = write_ndvi(tmp_path / "t_20230601.tif", array)
    plot = _plots((X0, Y0 - 100, X0 + 100, Y0))
    row = zonal.zonal_stats(plot, [path], threshold=0.7).iloc[0]
    area_mu = zonal.area_mu_of(plot).iloc[0]
    assert row["cropped_area_mu"] == pytest.approx(area_mu / 2, rel=1e-6)  # the west half only


# --------------------------------------------------------------------------- the engine's options


@pytest.fixture
def two_dates(tmp_path):
    array = np.full((10, 10), 0.8, dtype=np.float32)
    array[:, 5:] = 0.3
    return [write_ndvi(tmp_path / "a_20230601.tif", array), write_ndvi(tmp_path / "b_20230611.tif", array * 0.5)]


def test_generator_passes_every_option_through(two_dates, tmp_path):
    inside, outside = (X0, Y0 - 100, X0 + 100, Y0), (X0 + 500, Y0 - 100, X0 + 600, Y0)
    plots = _plots(inside, outside)
    calls = []
    default = list(zonal.gen_zonal_stats(plots, two_dates))
    assert [(r["plot_id"], r["date"]) for r in default] == [("p0", "2023-06-01"), ("p0", "2023-06-11")]
    assert default[0]["cropped_area_mu"] == pytest.approx(zonal.area_mu_of(plots).iloc[0] / 2, rel=1e-6)  # 0.8 ≥ 0.5
    rows = list(zonal.gen_zonal_stats(plots, two_dates, threshold=0.2, keep_uncovered=True,
                                      progress=lambda done, total: calls.append((done, total))))
    assert calls == [(1, 2), (2, 2)]
    assert [(r["plot_id"], r["flags"]) for r in rows] == [("p0", ""), ("p1", "NOT_COVERED")] * 2
    assert rows[0]["cropped_area_mu"] == pytest.approx(zonal.area_mu_of(plots).iloc[0], rel=1e-6)  # all ≥ 0.2
    uncovered = rows[1]
    assert (uncovered["covered_frac"], uncovered["valid_frac"], uncovered["cloud_frac"],
            uncovered["pixel_count"]) == (0, 0, 0, 0)
    assert np.isnan(uncovered["ndvi_mean"]) and np.isnan(uncovered["cropped_area_mu"])
    unreadable = _tile(tmp_path / "gone_20230621.tif", from_origin(X0, Y0, RES, RES), date="2023-06-21")
    with pytest.raises(rasterio.errors.RasterioIOError):
        list(zonal.gen_zonal_stats(plots, [*two_dates, unreadable]))
    failed = []
    kept = list(zonal.gen_zonal_stats(plots, [*two_dates, unreadable], on_error=lambda t, e: failed.append(t.path)))
    assert failed == [unreadable.path] and [r["date"] for r in kept] == ["2023-06-01", "2023-06-11"]


def test_the_table_passes_every_option_through(two_dates):
    plots = _plots((X0, Y0 - 100, X0 + 100, Y0), (X0 + 500, Y0 - 100, X0 + 600, Y0))
    calls = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # 0/0 for the uncovered plot is NaN, without numpy's warning
        table = zonal.zonal_stats(plots, two_dates, threshold=0.2, keep_uncovered=True,
                                  progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]
    assert list(table.index) == [0, 1, 2, 3]  # one running index over the dates
    assert table[["plot_id", "date", "flags"]].values.tolist() == [
        ["p0", "2023-06-01", ""], ["p1", "2023-06-01", "NOT_COVERED"],
        ["p0", "2023-06-11", ""], ["p1", "2023-06-11", "NOT_COVERED"]]
    assert table["cropped_area_mu"].iloc[0] == pytest.approx(zonal.area_mu_of(plots).iloc[0], rel=1e-6)
    assert list(zonal.zonal_stats(plots, two_dates)["plot_id"]) == ["p0", "p0"]


def test_an_unreadable_tile_is_left_out_and_its_date_kept_from_the_others(tmp_path, two_dates):
    # Two tiles of 2023-06-01 on two grids (10 m and 20 m pixels): the unreadable one is reported and left out.
    broken = _tile(tmp_path / "broken_20230601.tif", from_origin(X0, Y0, 20, 20), width=5, height=5)
    plots = _plots((X0, Y0 - 100, X0 + 50, Y0))
    failed = []
    table = zonal.zonal_stats(plots, [two_dates[0], broken], on_error=lambda t, e: failed.append((t.path, type(e))))
    assert failed == [(broken.path, rasterio.errors.RasterioIOError)]
    row = table.iloc[0]
    assert row["ndvi_mean"] == pytest.approx(0.8, abs=1e-6) and row["covered_frac"] == pytest.approx(1.0)


def test_dates_on_different_grids_and_an_unreadable_first_date(tmp_path, two_grids):
    # 2023-05-01: one unreadable tile; 2023-06-01: both grids; 2023-06-11: the 20 m grid only.
    east_later = write_ndvi(tmp_path / "east_20230611.tif", np.full((5, 5), 0.4, np.float32), x0=X0 + 100, res=20.0)
    gone = _tile(tmp_path / "gone_20230501.tif", from_origin(X0, Y0, RES, RES), date="2023-05-01")
    failed = []
    table = zonal.zonal_stats(_plots((X0 + 50, Y0 - 60, X0 + 150, Y0 - 20)), [gone, *two_grids, east_later],
                              on_error=lambda t, e: failed.append(t.date))
    assert failed == ["2023-05-01"]  # read (and failing) only because the plot lies on it
    assert table["date"].tolist() == ["2023-06-01", "2023-06-11"]
    np.testing.assert_allclose(table["ndvi_mean"], [0.5, 0.4], atol=1e-6)
    np.testing.assert_allclose(table["covered_frac"], [1.0, 0.5], atol=1e-6)


@pytest.mark.parametrize("outside_m, flag", [(0.005, ""), (0.02, "PARTIAL_COVERAGE")])
def test_partial_coverage_beyond_a_ten_thousandth_of_the_plot(tmp_path, outside_m, flag):
    # A 100 m wide plot sticking out of the tile's west edge by 0.005 m (5e-5 of it) or 0.02 m (2e-4).
    path = write_ndvi(tmp_path / "t_20230601.tif", np.full((20, 20), 0.5, np.float32))
    row = zonal.zonal_stats(_plots((X0 - outside_m, Y0 - 100, X0 + 100 - outside_m, Y0)), [path]).iloc[0]
    assert row["flags"] == flag
    assert row["covered_frac"] == pytest.approx(1 - outside_m / 100, abs=1e-6)


def test_no_readable_tile_gives_the_empty_table_with_its_columns(tmp_path):
    broken = _tile(tmp_path / "gone_20230601.tif", from_origin(X0, Y0, RES, RES))
    table = zonal.zonal_stats(_plots((X0, Y0 - 100, X0 + 50, Y0)), [broken], on_error=lambda t, e: None)
    assert table.empty and list(table.columns) == list(zonal.STAT_COLUMNS)


def test_open_tile_reads_tagged_ndvi_through_the_product_reader(tmp_path):
    ndvi, observed = np.full((10, 10), 0.5), np.ones((10, 10), bool)
    masked = _ndvi_product(tmp_path / "m_20230601.tif", ndvi, observed, "s2-scl")
    tile = zonal.open_tile(masked, sensor="s2-l2a")  # the sensor it was computed from: not a reason to re-read it
    assert tile.product is not None and tile.product.sensor == "ndvi"
    assert (tile.path, tile.date, tile.cloud_masked) == (masked, "2023-06-01", True)
    assert zonal.open_tile(masked, date=dt.date(2023, 7, 1)).date == "2023-07-01"  # the caller's date wins
    unmasked = zonal.open_tile(_ndvi_product(tmp_path / "u_20230601.tif", ndvi, observed))
    assert unmasked.product is not None and unmasked.cloud_masked is False
    plain = zonal.open_tile(write_ndvi(tmp_path / "p_20230601.tif", ndvi))
    assert plain.product is None and plain.cloud_masked is False
    again = zonal.open_tile(tile.product)  # a Product already opened is used as it is
    assert (again.path, again.date, again.product) == (masked, "2023-06-01", tile.product)
    assert zonal.open_tile(tile.product, date=dt.date(2023, 7, 2)).date == "2023-07-02"


SAMPLE_TILE = Path(__file__).resolve().parents[1] / "sample_tiles" / "season" / "S2_L2A_SIM_20230620.tif"


@pytest.mark.skipif(not SAMPLE_TILE.exists(), reason="sample data not built")
def test_open_tile_passes_reader_options():
    assert zonal.open_tile(SAMPLE_TILE).cloud_masked is True
    assert zonal.open_tile(SAMPLE_TILE, no_mask=True).cloud_masked is False


def test_open_tile_refuses_integer_rasters(tmp_path):
    counts = tmp_path / "dn_20230601.tif"  # one integer band: digital numbers, not NDVI
    with rasterio.open(counts, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint16", crs=CRS,
                       transform=from_origin(X0, Y0, RES, RES)) as dst:
        dst.write(np.ones((1, 4, 4), np.uint16))
    with pytest.raises(MissingBandError, match="band descriptions"):
        zonal.open_tile(counts)


def test_open_tile_messages(tmp_path):
    nocrs = write_ndvi(tmp_path / "nocrs_20200101.tif", np.zeros((4, 4)), crs=None)
    with pytest.raises(zonal.CRSError) as error:
        zonal.open_tile(nocrs)
    assert str(error.value) == f"{nocrs}: raster has no CRS"
    nodate = write_ndvi(tmp_path / "nodate.tif", np.zeros((4, 4)))
    with pytest.raises(MissingMetadataError) as error:
        zonal.open_tile(nodate)
    assert str(error.value) == f"{nodate}: no acquisition date (ACQUISITION_DATE tag or YYYYMMDD in the name)"


def test_missing_tile_path_is_named(tmp_path):
    with pytest.raises(InputNotFoundError) as error:
        zonal.open_tile(tmp_path / "none_20230601.tif")
    assert str(error.value) == f"{tmp_path / 'none_20230601.tif'}: tile not found"
    bad = tmp_path / "bad_20230601.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(CorruptInputError, match=f"^{bad}: cannot open raster: "):
        zonal.open_tile(bad)
