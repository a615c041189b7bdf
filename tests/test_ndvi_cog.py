"""Writing NDVI COGs block by block, reading them back, quicklook, the CLI command."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from agricredit.cli.main import cli
from agricredit.raster import open_product, read_ndvi, write_ndvi_cog
from ndvi_fixtures import reference_ndvi, s2_dn, write_tif

TAGS = {"AGRICREDIT_SENSOR": "s2-l2a", "ACQUISITION_DATE": "2022-06-12", "PROCESSING_BASELINE": "04.00",
        "ADD_OFFSET": "-1000", "SIMULATED": "yes"}
SHAPE = (700, 600)  # several 512 blocks, partial edge blocks


@pytest.fixture
def tile(tmp_path):
    red, nir = s2_dn(SHAPE, seed=5)
    red[:, :40] = 0  # outside the footprint
    scl = np.full(SHAPE, 4, np.uint16)
    scl[100:200, 300:400] = 9
    path = write_tif(tmp_path / "S2_20220612.tif", [red, nir, scl], descriptions=["B04", "B08", "SCL"], tags=TAGS)
    expected = reference_ndvi(red, nir, 1e-4, -0.1)
    expected[100:200, 300:400] = np.nan
    return path, expected


def test_cog_equals_reference_and_round_trips(tile, tmp_path):
    path, expected = tile
    out = tmp_path / "out" / "ndvi.tif"
    report = write_ndvi_cog(open_product(path), out, quicklook=tmp_path / "q.png", workers=2)
    footprint = SHAPE[0] * (SHAPE[1] - 40)
    assert report.cloud_fraction == pytest.approx(100 * 100 / footprint)
    assert report.valid_fraction == pytest.approx(np.isfinite(expected).mean())
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.profile["compress"] == "deflate" and ds.block_shapes[0] == (512, 512)
        assert ds.dtypes[0] == "float32" and np.isnan(ds.nodata) and ds.overviews(1)
        tags, descriptions, band_scale, band_offset = ds.tags(), ds.descriptions, ds.scales, ds.offsets
        np.testing.assert_allclose(ds.read(1), expected, atol=1e-6, equal_nan=True)
    assert tags["AGRICREDIT_PRODUCT"] == "ndvi" and tags["AGRICREDIT_SENSOR"] == "s2-l2a"
    assert tags["ACQUISITION_DATE"] == "2022-06-12" and tags["PROCESSING_BASELINE"] == "04.00"
    assert tags["MASK_RULE"] == "scl:0,1,3,8,9,10" and tags["SIMULATED"] == "yes" and tags["CLOUD_MASKED"] == "yes"
    assert float(tags["CLOUD_FRACTION"]) == pytest.approx(report.cloud_fraction, abs=1e-6)
    # Honest metadata: the band is NDVI, no tag reads as a scale or offset of NDVI; the inputs' radiometry
    # is recorded under SOURCE_* names.
    assert descriptions == ("NDVI",)
    assert not {"SCALE", "OFFSET", "ADD_OFFSET", "scale_factor", "add_offset"} & set(tags)
    assert (tags["SOURCE_REFLECTANCE_SCALE"], tags["SOURCE_REFLECTANCE_OFFSET"], tags["SOURCE_ADD_OFFSET_DN"]) == (
        "0.0001", "-0.1", "-1000")
    assert band_scale == (1.0,) and band_offset == (0.0,)
    assert (tmp_path / "q.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = open_product(out)
    assert (again.sensor, again.date) == ("ndvi", datetime.date(2022, 6, 12))
    ndvi, cloud = read_ndvi(again)
    np.testing.assert_allclose(ndvi, expected, atol=1e-6, equal_nan=True)
    expected_cloud = np.zeros(SHAPE, bool)
    expected_cloud[100:200, 300:400] = True
    np.testing.assert_array_equal(cloud, expected_cloud)  # NaN outside the footprint is not cloud


def test_ndvi_raster_date_from_file_name(tmp_path):
    ndvi = np.full((4, 4), 0.5, np.float32)
    product = open_product(write_tif(tmp_path / "field_2023-07-01.tif", [ndvi], tags={"AGRICREDIT_PRODUCT": "ndvi"}))
    assert product.sensor == "ndvi" and product.date == datetime.date(2023, 7, 1)


def test_cli_writes_cog_and_summary(tile, tmp_path):
    path, expected = tile
    out = tmp_path / "ndvi.tif"
    result = CliRunner().invoke(cli, ["ndvi", str(path), "-o", str(out), "--quicklook", str(tmp_path / "q.png")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["sensor"] == "s2-l2a" and summary["date"] == "2022-06-12"
    with rasterio.open(out) as ds:
        np.testing.assert_allclose(ds.read(1), expected, atol=1e-6, equal_nan=True)


def test_cli_refuses_stdout_and_reports_missing_baseline(tmp_path):
    red, nir = s2_dn((8, 8))
    path = write_tif(tmp_path / "s2.tif", [red, nir], descriptions=["B04", "B08"])
    result = CliRunner().invoke(cli, ["ndvi", str(path), "-o", "-"])
    assert result.exit_code == 2 and "not to stdout" in result.stderr
    result = CliRunner().invoke(cli, ["ndvi", str(path), "-o", str(tmp_path / "o.tif")])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "--processing-baseline" in result.stderr and "s2.tif" in result.stderr
    assert not (tmp_path / "o.tif").exists()
    result = CliRunner().invoke(cli, ["ndvi", str(path), "-o", str(tmp_path / "o.tif"), "--processing-baseline", "02.14"])
    assert result.exit_code == 0
    with rasterio.open(tmp_path / "o.tif") as ds:
        np.testing.assert_allclose(ds.read(1), reference_ndvi(red, nir, 1e-4, 0.0), atol=1e-6, equal_nan=True)


def test_cli_generic_bands(tmp_path):
    red, nir = s2_dn((8, 8))
    path = write_tif(tmp_path / "g.tif", [nir, red])
    out = tmp_path / "o.tif"
    result = CliRunner().invoke(cli, ["ndvi", str(path), "-o", str(out), "--bands", "red=2,nir=1", "--nodata", "0"])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds:
        np.testing.assert_allclose(ds.read(1), reference_ndvi(red, nir, 1.0, 0.0), atol=1e-6, equal_nan=True)


def _sample_s2() -> list[Path]:
    root = Path(__file__).resolve().parents[1] / "sample_tiles"
    return sorted(p for p in root.rglob("*.tif") if "s2" in p.name.lower() or "sentinel" in p.name.lower()) if root.exists() else []


@pytest.mark.skipif(not _sample_s2(), reason="no sample Sentinel-2 COG in sample_tiles/")
def test_sample_sentinel2_cog_against_numpy(tmp_path):
    """The reference uses the Sentinel-2 formula written here, reflectance = (DN + ADD_OFFSET) / 10000 with the
    tile's own ADD_OFFSET tag (or -1000 from its PROCESSING_BASELINE >= 04.00), not the reader's scale and offset."""
    path = _sample_s2()[0]
    with rasterio.open(path) as ds:
        tags, names = ds.tags(), list(ds.descriptions)
        red, nir = ds.read(names.index("B04") + 1), ds.read(names.index("B08") + 1)
        scl = ds.read(names.index("SCL") + 1) if "SCL" in names else None
    if "ADD_OFFSET" in tags:
        add_offset = float(tags["ADD_OFFSET"])
    else:
        add_offset = -1000.0 if tags.get("PROCESSING_BASELINE", "00.00") >= "04.00" else 0.0
    expected = reference_ndvi(red, nir, 1 / 10000, add_offset / 10000)
    expected[(red == 65535) | (nir == 65535)] = np.nan  # saturated DN
    if scl is not None:
        expected[np.isin(scl, [0, 1, 3, 8, 9, 10])] = np.nan
    write_ndvi_cog(open_product(path), tmp_path / "ndvi.tif")
    with rasterio.open(tmp_path / "ndvi.tif") as ds:
        np.testing.assert_allclose(ds.read(1), expected, atol=1e-6, equal_nan=True)
    assert np.isfinite(expected).mean() > 0.5  # the comparison covers most of the tile


def test_ndvi_output_must_be_a_geotiff_name(tmp_path):
    from click.testing import CliRunner

    from agricredit.cli.main import cli

    result = CliRunner().invoke(cli, ["ndvi", "whatever.tif", "-o", str(tmp_path / "n.png")])
    assert result.exit_code == 2 and "name it .tif" in result.output
    assert not (tmp_path / "n.png").exists()
