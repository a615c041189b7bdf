"""Chips cut from the pixels the zonal stage kept (``KeptChips``) are the chips ``plot_chips`` reads, byte for byte.

Two Sentinel-2 L2A tiles (B04, B08, SCL pixel-interleaved in one GeoTIFF, as the county benchmark's) on one grid,
overlapping by 50 columns and taller than one of the zonal engine's read strips, on one date; the first of them
alone on a second date. The plots: inside a tile, across a strip's edge, at a tile's western edge, across the two
tiles (each way), larger than 64 pixels (decimated), under a cloud, off both tiles.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

import agricredit.zonal
from agricredit.acquisitions import Acquisition, discover_acquisitions, observation_table
from agricredit.batch import _claims_of, _observed_evidence, observe_chunk
from agricredit.plots import accepted, load_plots
from agricredit.policy import load_policy
from agricredit.raster import open_product, write_ndvi_cog
from agricredit.report.data import KeptChips, chip_array, plot_chips
from agricredit.season import season_options, split_season_options
from agricredit.zonal import _STRIP_ROWS, open_tile, zonal_stats
from ndvi_fixtures import CRS as S2_CRS
from ndvi_fixtures import TRANSFORM_10 as S2_TRANSFORM
from ndvi_fixtures import clouds_gml, s2_dn, s2_safe

CRS = "EPSG:32650"
X0, Y0 = 500_000.0, 4_000_000.0
HEIGHT = 1100  # rows: more than two read strips
WIDTH_A, WIDTH_B, B_COL = 700, 650, 650  # tile B starts at column 650 of tile A's grid (50 columns of overlap)
DATES = ("2023-06-25", "2023-07-20")
CLOUD = (slice(300, 320), slice(200, 230))  # SCL 9 (cloud, high probability) in tile A, rows and columns
SHAPE = (40, 60)  # of the small products of tests.ndvi_fixtures
SAMPLE = Path(__file__).resolve().parents[1] / "sample_tiles"


def _write_l2a(path, width, col0, seed, cloud=None):
    rng = np.random.default_rng(seed)
    red = rng.integers(1100, 1700, (HEIGHT, width)).astype(np.uint16)
    nir = rng.integers(1100, 4600, (HEIGHT, width)).astype(np.uint16)
    scl = np.full((HEIGHT, width), 4, np.uint16)
    if cloud is not None:
        scl[cloud] = 9
    with rasterio.open(path, "w", driver="GTiff", width=width, height=HEIGHT, count=3, dtype="uint16", nodata=0,
                       crs=CRS, transform=from_origin(X0 + 10.0 * col0, Y0, 10.0, 10.0), tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate") as dst:
        dst.update_tags(AGRICREDIT_SENSOR="s2-l2a", PROCESSING_BASELINE="05.09", QUANTIFICATION_VALUE="10000",
                        ADD_OFFSET="-1000")
        dst.descriptions = ("B04", "B08", "SCL")
        dst.write(np.stack([red, nir, scl]))
    return red, nir, scl


@pytest.fixture
def case(tmp_path):
    """The acquisitions (discovered from a manifest) and the plots (EPSG:4326)."""
    _write_l2a(tmp_path / "a_20230625.tif", WIDTH_A, 0, 1, CLOUD)
    _write_l2a(tmp_path / "b_20230625.tif", WIDTH_B, B_COL, 2)
    _write_l2a(tmp_path / "a_20230720.tif", WIDTH_A, 0, 3)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("date,sensor,path\n" + "".join(
        f"{date},s2-l2a,{name}\n" for date, name in ((DATES[0], "a_20230625.tif"), (DATES[0], "b_20230625.tif"),
                                                    (DATES[1], "a_20230720.tif"))))
    acquisitions = discover_acquisitions([manifest])

    def box(col, row, width, height):  # in pixels of the grid, from its north-west corner
        return shapely.box(X0 + 10.0 * col, Y0 - 10.0 * (row + height), X0 + 10.0 * (col + width), Y0 - 10.0 * row)

    plots = gpd.GeoDataFrame({"plot_id": ["inside", "strip", "west", "across_a", "across_b", "big", "cloudy", "off"]},
                             geometry=[box(100.3, 100.6, 12, 9), box(300.2, _STRIP_ROWS - 6.5, 14, 13),
                                       box(0.4, 700.2, 10, 10), box(670.5, 400.5, 40, 12),
                                       box(690.5, 800.5, 40, 12), box(350.5, 600.5, 110, 90),
                                       box(205.5, 303.5, 20, 12), box(1500.0, 50.0, 10, 10)],
                             crs=CRS).to_crs("EPSG:4326")
    return acquisitions, plots


def _kept(plots, acquisitions):
    kept = KeptChips()
    table = observation_table(plots, acquisitions, chips=kept)
    return table, kept


def _forbid_reads(monkeypatch):
    def no_read(tile):
        raise AssertionError(f"read {tile.path} again")

    monkeypatch.setattr(agricredit.zonal, "_tile_reader", no_read)


@pytest.mark.parametrize("date", DATES)
def test_chips_cut_from_the_kept_pixels_are_the_chips_read_from_the_tiles(case, date, monkeypatch):
    acquisitions, plots = case
    _, kept = _kept(plots, acquisitions)
    peaks = {plot_id: date for plot_id in plots["plot_id"]}
    read = plot_chips(plots, peaks, acquisitions)
    _forbid_reads(monkeypatch)  # every chip comes out of the kept pixels
    cut = plot_chips(plots, peaks, acquisitions, kept)
    assert cut.equals(read)
    expected = {"inside", "strip", "west", "across_a", "big", "cloudy"} | ({"across_b"} if date == DATES[0] else set())
    assert set(cut["plot_id"]) == expected
    assert cut.set_index("plot_id").at["big", "width"] <= 64  # decimated


def test_a_cloud_is_no_reading_in_the_kept_chip(case, monkeypatch):
    acquisitions, plots = case
    _, kept = _kept(plots, acquisitions)
    _forbid_reads(monkeypatch)
    chips = plot_chips(plots, {"cloudy": DATES[0]}, acquisitions, kept)
    values, transform, _ = chip_array(chips.iloc[0].to_dict())
    col0, row0 = round((transform.c - X0) / 10.0), round((Y0 - transform.f) / 10.0)
    rows, cols = np.mgrid[row0:row0 + values.shape[0], col0:col0 + values.shape[1]]
    under = (rows >= CLOUD[0].start) & (rows < CLOUD[0].stop) & (cols >= CLOUD[1].start) & (cols < CLOUD[1].stop)
    assert under.any() and (~under).any()
    assert np.array_equal(np.isnan(values), under)  # code 0 exactly under the cloud


def test_the_other_tile_of_a_date_gives_the_chips_whose_centroid_it_holds(case):
    acquisitions, plots = case
    _, kept = _kept(plots, acquisitions)
    chips = plot_chips(plots, {"across_a": DATES[0], "across_b": DATES[0]}, acquisitions, kept).set_index("plot_id")
    assert chips.at["across_a", "t2"] == X0 + 10.0 * (670 - 14)  # on tile A (its centroid), a 14-pixel margin
    assert chips.at["across_a", "t2"] + 10.0 * chips.at["across_a", "width"] == X0 + 10.0 * WIDTH_A  # clipped
    assert chips.at["across_b", "t2"] >= X0 + 10.0 * B_COL  # on tile B, which starts at column 650


def test_chips_the_kept_pixels_miss_are_read_and_the_same(case):
    acquisitions, plots = case
    _, kept = _kept(plots, acquisitions)
    peaks = {plot_id: DATES[0] for plot_id in plots["plot_id"]}
    read = plot_chips(plots, peaks, acquisitions)
    moved = pickle.loads(pickle.dumps(kept))  # sent to another process: nothing kept
    assert kept.nbytes > 0 and moved.nbytes == 0
    assert plot_chips(plots, peaks, acquisitions, moved).equals(read)
    kept.discard(DATES[0])  # a date whose tile failed
    assert plot_chips(plots, peaks, acquisitions, kept).equals(read)


def test_keeping_the_chips_pixels_changes_no_statistic(case):
    acquisitions, plots = case
    tiles = [open_tile(product, date=a.date) for a in acquisitions for product in a.products]
    kept = KeptChips()
    with_chips = zonal_stats(plots, tiles, chips=kept)
    pd.testing.assert_frame_equal(with_chips, zonal_stats(plots, tiles))
    # what is kept: each date's tiles over the chips' windows, at 6 bytes a pixel (three uint16 bands)
    assert 6 * (100 * 100) < kept.nbytes < 6 * (HEIGHT * (WIDTH_A + WIDTH_B) + HEIGHT * WIDTH_A)


def test_the_chained_evidence_task_uses_the_kept_pixels_once(case, monkeypatch):
    acquisitions, plots = case
    observed = observe_chunk(plots, acquisitions)
    options, _ = split_season_options(season_options(load_policy(), region="delmarva"))
    shared = ((np.datetime64(DATES[0]), np.datetime64(DATES[1])), acquisitions, options)
    claims = _claims_of(plots, {}, {})
    from_table = _observed_evidence(observed[0], plots, claims, *shared)
    with monkeypatch.context() as patch:
        _forbid_reads(patch)
        from_kept = _observed_evidence(observed, plots, claims, *shared)
    assert len(from_kept.chips) >= 6 and from_kept.chips.equals(from_table.chips)
    assert observed[2].nbytes == 0  # freed once used


# --------------------------------------------------------------------------- other product layouts, the sample


def _l2a_safe(root):
    red, nir = s2_dn(SHAPE)
    scl = np.full((SHAPE[0] // 2, SHAPE[1] // 2), 4, np.uint8)
    scl[3:6, 4:9] = 9  # cloud at 20 m: rows 6-11, columns 8-17 at 10 m
    return open_product(s2_safe(root, red, nir, scl))


def _l1c_classi(root):
    red, nir = s2_dn(SHAPE)
    classi = np.zeros((3, 7, 10), np.uint8)
    classi[0, 1, 1] = 1  # opaque cloud at 60 m: rows 6-11, columns 6-11 at 10 m
    return open_product(s2_safe(root, red, nir, None, level="L1C", baseline="04.00", classi=classi))


def _l1c_gml(root):
    red, nir = s2_dn(SHAPE)
    x0, y0 = S2_TRANSFORM.c, S2_TRANSFORM.f
    gml = clouds_gml([("OPAQUE", (x0 + 80, y0 - 160, x0 + 200, y0 - 60))])  # rows 6-15, columns 8-19
    return open_product(s2_safe(root, red, nir, None, level="L1C", baseline="02.14", clouds_gml=gml))


def _ndvi_cog(root):
    product = _l2a_safe(root)
    write_ndvi_cog(product, root / "ndvi_20220612.tif", workers=1)
    return open_product(root / "ndvi_20220612.tif")


@pytest.mark.parametrize("make", [_l2a_safe, _l1c_classi, _l1c_gml, _ndvi_cog],
                         ids=["L2A SCL at 20 m", "L1C MSK_CLASSI", "L1C GML clouds", "NDVI COG"])
def test_kept_chips_of_every_product_layout_are_the_chips_read(make, tmp_path, monkeypatch):
    product = make(tmp_path)
    acquisitions = [Acquisition(product.date, (product.path,), products=(product,))]
    x0, y0 = S2_TRANSFORM.c, S2_TRANSFORM.f
    plots = gpd.GeoDataFrame({"plot_id": ["cloud", "corner", "middle"]}, geometry=[
        shapely.box(x0 + 85, y0 - 135, x0 + 165, y0 - 75), shapely.box(x0 + 5, y0 - 55, x0 + 45, y0 - 5),
        shapely.box(x0 + 255, y0 - 305, x0 + 385, y0 - 215)], crs=S2_CRS)
    _, kept = _kept(plots, acquisitions)
    peaks = {plot_id: product.date.isoformat() for plot_id in plots["plot_id"]}
    read = plot_chips(plots, peaks, acquisitions)
    _forbid_reads(monkeypatch)
    cut = plot_chips(plots, peaks, acquisitions, kept)
    assert len(cut) == 3 and cut.equals(read)
    cloudy, _, _ = chip_array(cut.iloc[0].to_dict())
    assert np.isnan(cloudy).any() and not np.isnan(cloudy).all()


def test_kept_chips_of_the_sample_are_the_chips_read(monkeypatch):
    acquisitions = discover_acquisitions([SAMPLE / "season" / "manifest.csv"])
    plots = accepted(load_plots(SAMPLE / "plots.geojson"))
    _, kept = _kept(plots, acquisitions)
    for acquisition in acquisitions:
        peaks = {plot_id: acquisition.date.isoformat() for plot_id in plots["plot_id"]}
        read = plot_chips(plots, peaks, [acquisition])
        with monkeypatch.context() as patch:
            _forbid_reads(patch)
            cut = plot_chips(plots, peaks, [acquisition], kept)
        assert len(cut) == len(plots) and cut.equals(read)


def test_the_kept_pixels_of_many_windows_are_each_windows_own():
    from rasterio.windows import Window

    from agricredit.raster import RawWindow

    def grid(row0, col0, height, width):  # each pixel's value tells its row and column on the tile
        rows, cols = np.mgrid[row0:row0 + height, col0:col0 + width]
        return np.stack([rows * 1000 + cols, -(rows * 1000 + cols)])  # two bands on a leading axis

    kept = KeptChips()
    strips = [(0, 0, 100, 200), (100, 10, 150, 290), (300, 0, 100, 200)]  # a gap from row 250 to 300
    for row0, col0, height, width in reversed(strips):
        values = grid(row0, col0, height, width)
        kept.add("2023-06-25", "tile.tif", RawWindow(Window(col0, row0, width, height),
                                                     {"qa": values, "red": values[0] + 7}))

    def plain(c0, r0, c1, r1):  # every row held by a strip covering the window's columns, or None
        if all(any(top <= r < top + h and left <= c0 and c1 <= left + w for top, left, h, w in strips)
               for r in range(r0, r1)):
            return grid(r0, c0, r1 - r0, c1 - c0)
        return None

    windows = np.array([(5, 5, 60, 40), (10, 80, 150, 130), (10, 240, 150, 250),  # in one strip, across, to the end
                        (5, 80, 60, 130),  # across, but column 5 is not in the second strip
                        (20, 200, 60, 260), (20, 260, 60, 280), (20, 390, 60, 410),  # into, in, past the gap
                        (150, 20, 210, 60), (0, 0, 200, 100), (0, 0, 201, 100),  # past a strip's columns
                        (0, 300, 50, 310)])  # after the gap
    cut = kept.cut("2023-06-25", "tile.tif", windows)
    assert [raw is None for raw in cut] == [plain(*w) is None for w in windows.tolist()]
    assert sum(raw is not None for raw in cut) == 5
    for (c0, r0, c1, r1), raw in zip(windows.tolist(), cut):
        if raw is not None:
            assert np.array_equal(raw["qa"], plain(c0, r0, c1, r1))
            assert np.array_equal(raw["red"], plain(c0, r0, c1, r1)[0] + 7)
    assert kept.cut("2023-06-25", "other.tif", windows) == [None] * len(windows)
