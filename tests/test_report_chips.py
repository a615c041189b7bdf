"""NDVI chips of plots (``agricredit.report.data.plot_chips``) against rasterio's own window arithmetic."""

from __future__ import annotations

import datetime as dt
import math

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.windows
import shapely
from rasterio.transform import Affine, from_origin

from agricredit.acquisitions import Acquisition
from agricredit.report.data import CHIP_MARGIN, CHIP_MAX_PIXELS, chip_array, plot_chips

CRS = "EPSG:32650"
ORIGIN = (500_000.0, 4_000_000.0)
SIZE = 600  # pixels of 10 m


@pytest.fixture
def tile(tmp_path):
    """An untagged NDVI raster: NDVI = (column + 1000 · row) / 10⁶, NaN in a 5 × 5 patch (counted as cloud)."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    ndvi = ((cols + 1000.0 * rows) / 1e6).astype(np.float32)
    ndvi[100:105, 100:105] = np.nan
    path = tmp_path / "ndvi_20230715.tif"
    with rasterio.open(path, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="float32",
                       crs=CRS, transform=from_origin(*ORIGIN, 10.0, 10.0), tiled=True, blockxsize=256,
                       blockysize=256) as dst:
        dst.write(ndvi, 1)
    return path, ndvi


def _box(x, y, w, h, angle=0.0):
    return shapely.affinity.rotate(shapely.box(x, y, x + w, y + h), angle, origin="centroid")


def _expected_window(geometry, transform):
    """The chip window as the docstring defines it, with rasterio.windows.from_bounds."""
    minx, miny, maxx, maxy = geometry.bounds
    pad = max(CHIP_MARGIN * max(maxx - minx, maxy - miny), 3 * 10.0)
    w = rasterio.windows.from_bounds(minx - pad, miny - pad, maxx + pad, maxy + pad, transform)
    col0, row0 = max(0, math.floor(w.col_off)), max(0, math.floor(w.row_off))
    col1, row1 = min(SIZE, math.ceil(w.col_off + w.width)), min(SIZE, math.ceil(w.row_off + w.height))
    return rasterio.windows.Window(col0, row0, col1 - col0, row1 - row0)


def test_chips_match_rasterio_windows_transforms_and_pixels(tile):
    path, ndvi = tile
    x0, y0 = ORIGIN
    plots = gpd.GeoDataFrame(
        {"plot_id": ["inside", "rotated", "edge", "big", "off", "patch"]},
        geometry=[
            _box(x0 + 1003.0, y0 - 2507.0, 120.0, 80.0),
            _box(x0 + 3001.5, y0 - 4004.5, 150.0, 60.0, angle=33.0),
            _box(x0 + 5950.0, y0 - 1000.0, 100.0, 100.0),  # centroid inside, crosses the east edge: clipped
            _box(x0 + 2000.0, y0 - 5000.0, 1500.0, 1200.0),  # larger than 64 pixels: decimated
            _box(x0 + 5990.0, y0 - 3000.0, 100.0, 100.0),  # centroid east of the tile: no chip
            _box(x0 + 1000.0, y0 - 1050.0, 50.0, 50.0),  # over the NaN patch
        ], crs=CRS).to_crs("EPSG:4326")
    peaks = {pid: "2023-07-15" for pid in plots["plot_id"]}
    acquisitions = [Acquisition(dt.date(2023, 7, 15), (path,))]
    chips = plot_chips(plots, peaks, acquisitions).set_index("plot_id")
    assert sorted(chips.index) == ["big", "edge", "inside", "patch", "rotated"]
    transform = from_origin(*ORIGIN, 10.0, 10.0)
    local = plots.to_crs(CRS).set_index("plot_id").geometry
    for plot_id, row in chips.iterrows():
        window = _expected_window(local[plot_id], transform)
        stride = max(1, math.ceil(max(window.height, window.width) / CHIP_MAX_PIXELS))
        expected_transform = rasterio.windows.transform(window, transform) @ Affine.scale(stride)
        values, chip_transform, crs = chip_array({**row, "plot_id": plot_id})
        assert tuple(chip_transform)[:6] == tuple(expected_transform)[:6]
        assert rasterio.crs.CRS.from_wkt(crs) == rasterio.crs.CRS.from_string(CRS)
        block = ndvi[window.row_off:window.row_off + window.height:stride,
                     window.col_off:window.col_off + window.width:stride]
        assert values.shape == block.shape
        np.testing.assert_allclose(values, block, atol=0.5 / 127 + 1e-6)  # one byte per pixel
        assert np.array_equal(np.isnan(values), np.isnan(block))
    assert chips.at["edge", "width"] < chips.at["inside", "width"] + 20  # clipped at the tile's east edge
    assert chips.at["big", "width"] <= CHIP_MAX_PIXELS and chips.at["big", "t0"] == 10.0 * 4
    assert np.isnan(chip_array(chips.loc["patch"].to_dict())[0]).any()


def test_first_tile_of_a_date_wins_and_plots_without_a_peak_get_no_chip(tile, tmp_path):
    path, _ = tile
    other = tmp_path / "z_ndvi_20230715.tif"  # the same grid, later in path order, all 0.5
    with rasterio.open(other, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="float32", crs=CRS,
                       transform=from_origin(*ORIGIN, 10.0, 10.0)) as dst:
        dst.write(np.full((SIZE, SIZE), 0.5, np.float32), 1)
    x0, y0 = ORIGIN
    plots = gpd.GeoDataFrame({"plot_id": ["a", "b"]}, geometry=[_box(x0 + 1000.0, y0 - 2000.0, 100.0, 100.0),
                                                                _box(x0 + 3000.0, y0 - 2000.0, 100.0, 100.0)],
                             crs=CRS)
    chips = plot_chips(plots, {"a": "2023-07-15"}, [Acquisition(dt.date(2023, 7, 15), (other, path))])
    assert chips["plot_id"].tolist() == ["a"]
    values, _, _ = chip_array(chips.iloc[0].to_dict())
    assert not np.allclose(values, 0.5, atol=0.01)  # read from ndvi_20230715.tif, first by path
