"""How tiles and products are found and read along the season → zonal path (folders, STAC items, options, reuse)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner
from ndvi_fixtures import (
    CRS,
    TRANSFORM_10,
    TRANSFORM_20,
    landsat_c2_folder,
    reference_ndvi,
    s2_dn,
    s2_safe,
    stac_item,
    write_tif,
)

from agricredit import acquisitions, raster, zonal
from agricredit.cli.main import cli
from agricredit.errors import InputError, MissingMetadataError

SHAPE = (40, 60)
ROWS, COLS = slice(3, 37), slice(2, 50)  # the plot, in pixels of TRANSFORM_10
CLEAR_SCL = np.full((SHAPE[0] // 2, SHAPE[1] // 2), 4, np.uint8)  # vegetation: nothing masked
S2_SCALE, S2_OFFSET = 1e-4, -0.1  # baseline >= 04.00
LANDSAT_SCALE, LANDSAT_OFFSET = 0.0000275, -0.2


def _plots() -> gpd.GeoDataFrame:
    x0, y0 = TRANSFORM_10 @ (COLS.start, ROWS.start)
    x1, y1 = TRANSFORM_10 @ (COLS.stop, ROWS.stop)
    return gpd.GeoDataFrame({"plot_id": ["A"]}, geometry=[shapely.box(x0, y1, x1, y0)], crs=CRS)


def _expected_mean(red, nir, scale, offset, nodata=0) -> float:
    """The plot covers whole pixels: its coverage-weighted mean is the plain mean of its valid pixels."""
    return float(np.nanmean(reference_ndvi(red, nir, scale, offset, nodata)[ROWS, COLS]))


def _s2_band_folder(folder: Path, red, nir, date="20220612") -> Path:
    """Sentinel-2 L2A band files directly in a folder, with no metadata (so no processing baseline)."""
    write_tif(folder / f"T50SLH_{date}T023551_B04_10m.tif", [red])
    write_tif(folder / f"T50SLH_{date}T023551_B08_10m.tif", [nir])
    write_tif(folder / f"T50SLH_{date}T023551_SCL_20m.tif", [CLEAR_SCL], transform=TRANSFORM_20)
    return folder


def _dn(seed):
    red, nir = s2_dn(SHAPE, seed=seed)
    return red, nir


# ----------------------------------------------------------------------------- folders holding several products


def test_folder_of_safe_products_gives_one_acquisition_each(tmp_path):
    dates = ["2022-06-12", "2022-07-02", "2022-07-22"]
    safes = [s2_safe(tmp_path / "tiles", *_dn(i), CLEAR_SCL, date=d) for i, d in enumerate(dates)]
    found = acquisitions.discover_acquisitions(tmp_path / "tiles")
    assert [a.date.isoformat() for a in found] == dates
    assert [a.paths for a in found] == [(s.resolve(),) for s in safes]


def test_folder_of_landsat_product_folders_gives_one_acquisition_each(tmp_path):
    dn = np.random.default_rng(5).integers(7273, 30000, (2, *SHAPE), dtype=np.uint16)
    first = landsat_c2_folder(tmp_path / "tiles", dn[0], dn[1], date="2021-07-04")
    second = landsat_c2_folder(tmp_path / "tiles", dn[1], dn[0], date="2021-07-20")
    (tmp_path / "tiles" / "readme.txt").write_text("two scenes")
    found = acquisitions.discover_acquisitions(tmp_path / "tiles")
    assert [(a.date.isoformat(), a.paths, a.sensors) for a in found] == [
        ("2021-07-04", (first.resolve(),), ("landsat-c2-l2",)), ("2021-07-20", (second.resolve(),), ("landsat-c2-l2",))]
    table = acquisitions.observation_table(_plots(), found)
    assert table["ndvi_mean"].tolist() == pytest.approx(
        [_expected_mean(dn[0], dn[1], LANDSAT_SCALE, LANDSAT_OFFSET), _expected_mean(dn[1], dn[0], LANDSAT_SCALE, LANDSAT_OFFSET)],
        abs=1e-5)


def test_open_product_refuses_a_folder_of_several_products(tmp_path):
    safes = [s2_safe(tmp_path / "tiles" / "2022", *_dn(i), CLEAR_SCL, date=d) for i, d in enumerate(["2022-06-12", "2022-07-02"])]
    with pytest.raises(InputError, match="2 products"):
        raster.open_product(tmp_path / "tiles")
    band_folder = _s2_band_folder(tmp_path / "tiles", *_dn(3))  # band files beside a folder of products
    assert [raster.is_product_folder(p) for p in (*safes, band_folder, band_folder / "2022")] == [True, True, False, False]
    assert raster.is_product_folder(_s2_band_folder(tmp_path / "alone", *_dn(4)))


def test_band_folder_is_one_product_and_loose_files_beside_products_are_read(tmp_path, caplog):
    red, nir = _dn(1)
    band_folder = _s2_band_folder(tmp_path / "tiles" / "scene", red, nir)
    safe = s2_safe(tmp_path / "tiles", *_dn(2), CLEAR_SCL, date="2022-07-02")
    ndvi_file = tmp_path / "tiles" / "NDVI_20220801.tif"
    write_tif(ndvi_file, [np.full(SHAPE, 0.5, np.float32)])  # an untagged float NDVI raster
    write_tif(tmp_path / "tiles" / "dem_20220901.tif", [red, red])  # not a product: skipped with a warning
    with caplog.at_level(logging.WARNING, logger="agricredit.season"):
        found = acquisitions.discover_acquisitions(tmp_path / "tiles", processing_baseline="04.00")
    assert [(a.date.isoformat(), a.paths) for a in found] == [
        ("2022-06-12", (band_folder.resolve(),)), ("2022-07-02", (safe.resolve(),)), ("2022-08-01", (ndvi_file.resolve(),))]
    assert "dem_20220901.tif" in caplog.text and "--bands" in caplog.text


# ----------------------------------------------------------------------------- errors and reader options


def test_band_folder_without_baseline_asks_for_it_and_the_option_reaches_the_reader(tmp_path):
    red, nir = _dn(3)
    _s2_band_folder(tmp_path / "season" / "scene", red, nir)
    with pytest.raises(MissingMetadataError, match="--processing-baseline"):
        acquisitions.discover_acquisitions(tmp_path / "season")
    found = acquisitions.discover_acquisitions(tmp_path / "season", processing_baseline="04.00")
    table = acquisitions.observation_table(_plots(), found)
    assert table["ndvi_mean"].tolist() == pytest.approx([_expected_mean(red, nir, S2_SCALE, S2_OFFSET)], abs=1e-5)
    # 02.14: no offset; the reader option decides the NDVI
    found = acquisitions.discover_acquisitions(tmp_path / "season", processing_baseline="02.14")
    table = acquisitions.observation_table(_plots(), found)
    assert table["ndvi_mean"].tolist() == pytest.approx([_expected_mean(red, nir, S2_SCALE, 0.0)], abs=1e-5)


def test_manifest_sensor_and_discovery_options_reach_the_reader(tmp_path):
    red, nir = _dn(4)
    tile = write_tif(tmp_path / "generic_20220610.tif", [red, nir], descriptions=["red", "nir"])  # no sensor in it
    expected = [_expected_mean(red, nir, 1.0, 0.0, nodata=None)]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"date,sensor,path\n2022-06-11,generic,{tile.name}\n")
    found = acquisitions.discover_acquisitions(manifest)
    assert [(a.date.isoformat(), a.sensors) for a in found] == [("2022-06-11", ("generic",))]
    table = acquisitions.observation_table(_plots(), found)
    assert table["date"].tolist() == ["2022-06-11"]  # the manifest's date wins over the file name's
    assert table["ndvi_mean"].tolist() == pytest.approx(expected, abs=1e-5)
    found = acquisitions.discover_acquisitions(tile, sensor="generic")
    assert acquisitions.observation_table(_plots(), found)["ndvi_mean"].tolist() == pytest.approx(expected, abs=1e-5)
    manifest.write_text(f"date,sensor,path\n2022-06-11,landsat-9,{tile.name}\n")
    with pytest.raises(InputError, match="unknown sensor 'landsat-9'"):
        acquisitions.discover_acquisitions(manifest)


# ----------------------------------------------------------------------------- products and STAC items in the zonal engine


def test_open_tile_reads_folders_stac_items_and_products(tmp_path):
    red, nir = _dn(5)
    safe = s2_safe(tmp_path, red, nir, CLEAR_SCL)
    write_tif(tmp_path / "data" / "B04.tif", [red])
    write_tif(tmp_path / "data" / "B08.tif", [nir])
    write_tif(tmp_path / "data" / "SCL.tif", [CLEAR_SCL], transform=TRANSFORM_20)
    item = stac_item(tmp_path / "item.json", {"red": "data/B04.tif", "nir": "data/B08.tif", "scl": "data/SCL.tif"},
                     {"datetime": "2023-05-01T03:00:00Z", "constellation": "sentinel-2", "s2:processing_baseline": "05.09"})
    product = raster.open_product(safe)
    tiles = [zonal.open_tile(safe), zonal.open_tile(item), zonal.open_tile(product, date=dt.date(2022, 6, 20))]
    assert [t.date for t in tiles] == ["2022-06-12", "2023-05-01", "2022-06-20"]
    assert tiles[2].product is product and tiles[2].path == str(safe)
    table = zonal.zonal_stats(_plots(), tiles)
    assert table["ndvi_mean"].tolist() == pytest.approx([_expected_mean(red, nir, S2_SCALE, S2_OFFSET)] * 3, abs=1e-5)
    found = acquisitions.discover_acquisitions([safe, item])
    assert acquisitions.observation_table(_plots(), found)["ndvi_mean"].tolist() == pytest.approx(
        [_expected_mean(red, nir, S2_SCALE, S2_OFFSET)] * 2, abs=1e-5)


def test_stats_cli_takes_a_product_folder(tmp_path):
    red, nir = _dn(6)
    safe = s2_safe(tmp_path, red, nir, CLEAR_SCL)
    plots = tmp_path / "plots.geojson"
    _plots().to_crs(4326).to_file(plots)
    out = tmp_path / "stats.csv"
    result = CliRunner().invoke(cli, ["stats", str(plots), str(safe), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["ndvi_mean"].tolist() == pytest.approx([_expected_mean(red, nir, S2_SCALE, S2_OFFSET)], abs=1e-4)


def test_each_product_is_opened_once_from_discovery_to_statistics(tmp_path, monkeypatch):
    for i, d in enumerate(["2022-06-12", "2022-07-02"]):
        s2_safe(tmp_path / "tiles", *_dn(i), CLEAR_SCL, date=d)
    calls = []
    original = raster.open_product
    monkeypatch.setattr(raster, "open_product", lambda path, **kw: calls.append(Path(path).name) or original(path, **kw))
    found = acquisitions.discover_acquisitions(tmp_path / "tiles")
    table = acquisitions.observation_table(_plots(), found)
    assert len(table) == 2 and len(calls) == 2 and len(set(calls)) == 2


def test_one_reader_per_tile_and_date_for_all_strips(tmp_path, monkeypatch):
    red, nir = _dn(7)
    scl = np.repeat(np.repeat(CLEAR_SCL, 2, axis=0), 2, axis=1)
    path = write_tif(tmp_path / "s2.tif", [red, nir, scl.astype(np.uint16)], descriptions=["B04", "B08", "SCL"],
                     tags={"AGRICREDIT_SENSOR": "s2-l2a", "ACQUISITION_DATE": "2022-06-12", "PROCESSING_BASELINE": "04.00"})
    tile = zonal.open_tile(path)
    opened = []
    original = raster._open
    monkeypatch.setattr(raster, "_open", lambda p: opened.append(p) or original(p))
    whole = zonal.zonal_stats(_plots(), [tile])
    monkeypatch.setattr(zonal, "_STRIP_ROWS", 4)  # 10 strips of the plot's rows
    in_strips = zonal.zonal_stats(_plots(), [tile])
    assert len(opened) == 2  # one file, opened once per pass, whatever the number of strips
    pd.testing.assert_frame_equal(whole, in_strips)
    assert whole["ndvi_mean"].tolist() == pytest.approx([_expected_mean(red, nir, S2_SCALE, S2_OFFSET)], abs=1e-5)


def test_read_ndvi_windows_match_the_reader(tmp_path):
    red, nir = _dn(8)
    product = raster.open_product(s2_safe(tmp_path, red, nir, CLEAR_SCL))
    window = raster.Window(5, 3, 20, 11)
    with raster.NdviReader(product) as reader:
        ndvi, cloud, _ = reader.read(window)
    expected = reference_ndvi(red, nir, S2_SCALE, S2_OFFSET)[3:14, 5:25]
    np.testing.assert_allclose(ndvi, expected, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(raster.read_ndvi(product, window)[0], ndvi)
    assert not cloud.any()


def test_ndvi_cog_without_clouds_reads_no_cloud(tmp_path):
    red, nir = _dn(9)
    red[:4] = 0  # no data: outside the footprint, not cloud
    product = raster.open_product(s2_safe(tmp_path, red, nir, CLEAR_SCL))
    out = tmp_path / "ndvi.tif"
    assert raster.write_ndvi_cog(product, out).cloud_fraction == 0
    ndvi, cloud = raster.read_ndvi(raster.open_product(out))
    assert np.isnan(ndvi[:4]).all() and not cloud.any()


# ----------------------------------------------------------------------------- encodings


def test_stac_item_is_read_as_utf8_whatever_the_locale(tmp_path):
    red, nir = _dn(10)
    write_tif(tmp_path / "B04.tif", [red])
    write_tif(tmp_path / "B08.tif", [nir])
    item = stac_item(tmp_path / "item.json", {"red": "B04.tif", "nir": "B08.tif"},
                     {"datetime": "2023-05-01T03:00:00Z", "title": "玉米 maïs", "s2:processing_baseline": "05.09",
                      "constellation": "sentinel-2", "s2:product_type": "S2MSI1C"})
    item.write_text(item.read_text(encoding="utf-8").replace("\\u7389\\u7c73 ma\\u00efs", "玉米 maïs"), encoding="utf-8")
    assert "玉米" in item.read_text(encoding="utf-8")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0",
           "PYTHONPATH": os.pathsep.join([str(Path(raster.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    code = ("import locale, sys; from agricredit.raster import open_product; "
            "assert locale.getpreferredencoding(False).lower() in ('ascii', 'ansi_x3.4-1968'), locale.getpreferredencoding(False); "
            "print(open_product(sys.argv[1]).sensor)")
    result = subprocess.run([sys.executable, "-X", "utf8=0", "-c", code, str(item)], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "s2-l1c"
