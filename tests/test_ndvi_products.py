"""Opening products in every layout, radiometry, masks, bad inputs (tiny rasters built in tmp_path)."""

from __future__ import annotations

import datetime
import logging
import os

import numpy as np
import pytest
import rasterio
import rasterio.shutil

from agricredit import errors
from agricredit.raster import ndvi_dataarray, open_product, read_ndvi, write_ndvi_cog
from ndvi_fixtures import TRANSFORM_20, reference_ndvi, s2_dn, s2_safe, stac_item, write_tif

S2_TAGS = {"AGRICREDIT_SENSOR": "s2-l2a", "ACQUISITION_DATE": "2022-06-12", "PROCESSING_BASELINE": "04.00",
           "ADD_OFFSET": "-1000", "QUANTIFICATION_VALUE": "10000", "LICENSE": "CC0"}


def _scl(shape, seed=1):
    return np.random.default_rng(seed).integers(0, 12, shape, dtype=np.uint8)


def test_multiband_s2_l2a_with_tags(tmp_path):
    red, nir = s2_dn()
    red[0, 0] = 0  # no data
    scl = _scl(red.shape).astype(np.uint16)
    blue = np.full_like(red, 7)
    path = write_tif(tmp_path / "s2.tif", [blue, blue, red, nir, scl], descriptions=["B02", "B03", "B04", "B08", "SCL"], tags=S2_TAGS)
    product = open_product(path)
    assert (product.sensor, product.date, product.processing_baseline) == ("s2-l2a", datetime.date(2022, 6, 12), "04.00")
    assert product.mask_rule == "scl:0,1,3,8,9,10"
    ndvi, cloud = read_ndvi(product)
    expected = reference_ndvi(red, nir, 1e-4, -0.1)
    expected_cloud = np.isin(scl, [1, 3, 8, 9, 10]) & (red != 0)
    expected[expected_cloud | (scl == 0)] = np.nan
    np.testing.assert_allclose(ndvi, expected, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(cloud, expected_cloud)
    assert not cloud[0, 0]  # plain no data is not cloud


def test_s2_offset_before_and_after_baseline_04(tmp_path):
    red, nir = s2_dn()
    results = {}
    for baseline, offset in (("03.01", 0.0), ("04.00", -0.1)):
        tags = dict(S2_TAGS, PROCESSING_BASELINE=baseline, AGRICREDIT_SENSOR="s2-l1c")
        del tags["ADD_OFFSET"]
        path = write_tif(tmp_path / f"s2_{baseline}.tif", [red, nir], descriptions=["B04", "B08"], tags=tags)
        results[baseline], _ = read_ndvi(open_product(path))
        np.testing.assert_allclose(results[baseline], reference_ndvi(red, nir, 1e-4, offset), atol=1e-6, equal_nan=True)
    assert not np.allclose(results["03.01"], results["04.00"], equal_nan=True)


def test_s2_without_baseline_is_an_error_until_given(tmp_path):
    red, nir = s2_dn()
    path = write_tif(tmp_path / "s2.tif", [red, nir], descriptions=["B04", "B08"])
    with pytest.raises(errors.MissingMetadataError, match="--processing-baseline"):
        open_product(path)
    product = open_product(path, processing_baseline="04.00")
    np.testing.assert_allclose(read_ndvi(product)[0], reference_ndvi(red, nir, 1e-4, -0.1), atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("baseline,offset", [("04.00", -0.1), ("02.14", 0.0)])
def test_safe_folder_resamples_scl_nearest(tmp_path, baseline, offset):
    red, nir = s2_dn((40, 60))
    scl = _scl((20, 30))
    safe = s2_safe(tmp_path, red, nir, scl, baseline=baseline)
    product = open_product(safe)
    assert product.sensor == "s2-l2a" and product.date == datetime.date(2022, 6, 12)
    assert product.red.path.name.endswith("B04_10m.tif") and product.mask.path.name.endswith("SCL_20m.tif")
    ndvi, cloud = read_ndvi(product)
    scl10 = np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)
    expected_cloud = np.isin(scl10, [1, 3, 8, 9, 10])
    expected = reference_ndvi(red, nir, 1e-4, offset)
    expected[expected_cloud | (scl10 == 0)] = np.nan
    np.testing.assert_array_equal(cloud, expected_cloud)
    np.testing.assert_allclose(ndvi, expected, atol=1e-6, equal_nan=True)
    # --mask-classes changes the rule
    _, cloud = read_ndvi(open_product(safe, mask_classes="9"))
    np.testing.assert_array_equal(cloud, scl10 == 9)
    _, cloud = read_ndvi(open_product(safe, no_mask=True))
    assert not cloud.any()


def test_safe_l1c_folder(tmp_path):
    red, nir = s2_dn()
    safe = s2_safe(tmp_path, red, nir, None, baseline="04.00", level="L1C")
    product = open_product(safe)
    assert product.sensor == "s2-l1c" and product.mask is None
    np.testing.assert_allclose(read_ndvi(product)[0], reference_ndvi(red, nir, 1e-4, -0.1), atol=1e-6, equal_nan=True)


def test_landsat_c2_folder_scale_and_qa_bits(tmp_path):
    rng = np.random.default_rng(3)
    red = rng.integers(7273, 20000, (30, 30), dtype=np.uint16)
    nir = rng.integers(7273, 30000, (30, 30), dtype=np.uint16)
    qa = np.full((30, 30), 21824, np.uint16)  # clear land
    qa[0, :16] = [1 << b for b in range(16)]
    folder = tmp_path / "LC08_L2SP_123045_20210704_20210713_02_T1"
    stem = folder.name
    write_tif(folder / f"{stem}_SR_B4.TIF", [red])
    write_tif(folder / f"{stem}_SR_B5.TIF", [nir])
    write_tif(folder / f"{stem}_QA_PIXEL.TIF", [qa])
    write_tif(folder / f"{stem}_SR_B6.TIF", [nir])
    product = open_product(folder)
    assert (product.sensor, product.date, product.mask_rule) == ("landsat-c2-l2", datetime.date(2021, 7, 4), "qa_pixel:bits0-4")
    ndvi, cloud = read_ndvi(product)
    expected = reference_ndvi(red, nir, 0.0000275, -0.2)
    assert np.flatnonzero(cloud[0]).tolist() == [1, 2, 3, 4]
    expected[0, :5] = np.nan
    np.testing.assert_allclose(ndvi, expected, atol=1e-6, equal_nan=True)


def test_landsat_c1_folder_with_mtl(tmp_path):
    rng = np.random.default_rng(4)
    red = rng.integers(5000, 20000, (20, 20), dtype=np.uint16)
    nir = rng.integers(5000, 30000, (20, 20), dtype=np.uint16)
    bqa = np.full((20, 20), 2720, np.uint16)
    bqa[0, 0], bqa[0, 1], bqa[0, 2] = 2800, 1, 2720 | (3 << 11)  # cloud bit, fill, high cirrus
    folder = tmp_path / "LC08_L1TP_005004_20170410_20170414_01_T1"
    for band, data in (("B4", red), ("B5", nir), ("BQA", bqa), ("B10", red)):
        write_tif(folder / f"{folder.name}_{band}.TIF", [data])
    (folder / f"{folder.name}_MTL.txt").write_text(
        "GROUP = L1_METADATA_FILE\n  GROUP = PRODUCT_METADATA\n    DATE_ACQUIRED = 2017-04-10\n  END_GROUP = PRODUCT_METADATA\n"
        "  GROUP = METADATA_FILE_INFO\n    COLLECTION_NUMBER = 01\n  END_GROUP = METADATA_FILE_INFO\n"
        "  GROUP = RADIOMETRIC_RESCALING\n    REFLECTANCE_MULT_BAND_4 = 2.0000E-05\n    REFLECTANCE_MULT_BAND_5 = 2.0000E-05\n"
        "    REFLECTANCE_ADD_BAND_4 = -0.100000\n    REFLECTANCE_ADD_BAND_5 = -0.100000\n  END_GROUP = RADIOMETRIC_RESCALING\nEND_GROUP = L1_METADATA_FILE\nEND\n"
    )
    product = open_product(folder)
    assert (product.sensor, product.date, product.mask_rule) == ("landsat-c1", datetime.date(2017, 4, 10), "bqa-c1")
    ndvi, cloud = read_ndvi(product)
    assert cloud[0, :3].tolist() == [True, False, True] and cloud.sum() == 2
    expected = reference_ndvi(red, nir, 2e-5, -0.1)
    expected[0, :3] = np.nan
    np.testing.assert_allclose(ndvi, expected, atol=1e-6, equal_nan=True)


def test_landsat_precollection_bqa_detected(tmp_path):
    red, nir = s2_dn((10, 10))
    bqa = np.full((10, 10), 20480, np.uint16)
    bqa[0, 0] = 53248  # high cloud confidence
    path = write_tif(tmp_path / "l8.tif", [red, nir, bqa], descriptions=["B4", "B5", "BQA"])
    product = open_product(path)
    assert product.mask_rule == "bqa-pre"
    assert np.flatnonzero(read_ndvi(product)[1]).tolist() == [0]


def test_stac_item_with_relative_hrefs_and_raster_scale(tmp_path):
    red, nir = s2_dn()
    scl = _scl((20, 30))
    write_tif(tmp_path / "data" / "B04.tif", [red])
    write_tif(tmp_path / "data" / "B08.tif", [nir])
    write_tif(tmp_path / "data" / "SCL.tif", [scl], transform=TRANSFORM_20)
    props = {"datetime": "2023-05-01T03:00:00Z", "constellation": "sentinel-2", "s2:processing_baseline": "05.09"}
    item = stac_item(tmp_path / "item.json", {"red": "data/B04.tif", "nir": "./data/B08.tif", "scl": (tmp_path / "data" / "SCL.tif").as_uri()}, props)
    product = open_product(item)
    assert (product.sensor, product.date, product.processing_baseline) == ("s2-l2a", datetime.date(2023, 5, 1), "05.09")
    ndvi, _ = read_ndvi(product, rasterio.windows.Window(0, 0, 10, 10))
    expected = reference_ndvi(red, nir, 1e-4, -0.1)[:10, :10]
    scl10 = np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)[:10, :10]
    expected[np.isin(scl10, [0, 1, 3, 8, 9, 10])] = np.nan
    np.testing.assert_allclose(ndvi, expected, atol=1e-6, equal_nan=True)


def test_stac_remote_asset_refused(tmp_path):
    item = stac_item(tmp_path / "item.json", {"red": "https://example.com/B04.tif"}, {"constellation": "sentinel-2"})
    with pytest.raises(errors.InputError, match="remote"):
        open_product(item)


def test_generic_bands_scale_offset_nodata_and_mask_band(tmp_path):
    red = np.array([[100, 200, -9], [50, 0, 400]], np.int16)
    nir = np.array([[300, 100, 500], [50, 0, 800]], np.int16)
    mask = np.array([[0, 0, 0], [0, 0, 1]], np.int16)
    path = write_tif(tmp_path / "g.tif", [nir, red, mask])
    product = open_product(path, bands="red=2,nir=1,mask=3", scale=0.01, offset=0.5, nodata=-9)
    assert product.sensor == "generic" and product.mask_rule == "nonzero"
    ndvi, cloud = read_ndvi(product)
    expected = reference_ndvi(red, nir, 0.01, 0.5, nodata=-9)
    expected[1, 2] = np.nan
    np.testing.assert_allclose(ndvi, expected, atol=1e-6, equal_nan=True)
    assert cloud.tolist() == [[False] * 3, [False, False, True]]


def test_external_mask_resampled(tmp_path):
    red, nir = s2_dn((40, 60))
    path = write_tif(tmp_path / "s2.tif", [red, nir], descriptions=["B04", "B08"], tags=dict(S2_TAGS, AGRICREDIT_SENSOR="s2-l1c"))
    ext = np.zeros((20, 30), np.uint8)
    ext[0, 0] = 1
    mask = write_tif(tmp_path / "m.tif", [ext], transform=TRANSFORM_20)
    product = open_product(path, mask_path=mask)
    assert product.full_mask_rule == "none+external"
    _, cloud = read_ndvi(product)
    assert np.argwhere(cloud).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]


def test_dataarray_has_coords_and_crs(tmp_path):
    red, nir = s2_dn((40, 60))
    product = open_product(write_tif(tmp_path / "s2.tif", [red, nir], descriptions=["B04", "B08"], tags=S2_TAGS | {"AGRICREDIT_SENSOR": "s2-l1c"}))
    da = ndvi_dataarray(product, rasterio.windows.Window(10, 5, 20, 10))
    assert da.shape == (10, 20) and da.x[0] == 435730 + 105 and da.y[0] == 4179460 - 55
    assert "32618" in da.attrs["crs"] and da.attrs["transform"][2] == 435730 + 100
    np.testing.assert_array_equal(da.values, read_ndvi(product)[0][5:15, 10:30])


# ------------------------------------------------------------------ bad input


def test_missing_band(tmp_path):
    red, nir = s2_dn()
    path = write_tif(tmp_path / "s2.tif", [red, nir], descriptions=["B04", "B03"], tags=S2_TAGS)
    with pytest.raises(errors.MissingBandError, match="NIR"):
        open_product(path)
    folder = tmp_path / "f"
    write_tif(folder / "x_B04.tif", [red])
    write_tif(folder / "x_B08.tif", [nir])
    with pytest.raises(errors.MissingBandError, match="SCL"):
        open_product(folder, sensor="s2-l2a", processing_baseline="04.00")
    with pytest.raises(errors.MissingBandError, match="--bands"):
        open_product(write_tif(tmp_path / "plain.tif", [red, nir]))
    with pytest.raises(errors.MissingBandError, match="3 band"):
        open_product(write_tif(tmp_path / "three.tif", [red, nir, nir]), bands="red=1,nir=4")


def test_grid_and_crs_mismatch(tmp_path):
    red, nir = s2_dn((40, 60))
    folder = tmp_path / "grid"
    write_tif(folder / "x_B04.tif", [red])
    write_tif(folder / "x_B08.tif", [nir[:20, :30]], transform=TRANSFORM_20)
    with pytest.raises(errors.GridMismatchError, match="x_B08.tif"):
        open_product(folder, processing_baseline="04.00")
    folder = tmp_path / "crs"
    write_tif(folder / "x_B04.tif", [red])
    write_tif(folder / "x_B08.tif", [nir], crs="EPSG:32617")
    with pytest.raises(errors.CRSMismatchError, match="x_B08.tif"):
        open_product(folder, processing_baseline="04.00")


def test_missing_empty_corrupt_and_truncated_files(tmp_path):
    with pytest.raises(errors.InputNotFoundError, match="no such"):
        open_product(tmp_path / "nope.tif")
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(errors.CorruptInputError, match="empty.tif: file is empty"):
        open_product(tmp_path / "empty.tif")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all" * 10)
    with pytest.raises(errors.CorruptInputError, match="junk.tif"):
        open_product(tmp_path / "junk.tif")
    red, nir = s2_dn((300, 300))
    tags = S2_TAGS | {"AGRICREDIT_SENSOR": "s2-l1c"}
    src = write_tif(tmp_path / "full.tif", [red, nir], descriptions=["B04", "B08"], tags=tags)
    rasterio.shutil.copy(src, tmp_path / "deflate.tif", driver="GTiff", compress="deflate")
    data = (tmp_path / "deflate.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(errors.CorruptInputError, match="cut.tif"):
        product = open_product(tmp_path / "cut.tif")
        read_ndvi(product)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_path(tmp_path):
    path = write_tif(tmp_path / "s2.tif", list(s2_dn()), descriptions=["B04", "B08"], tags=S2_TAGS)
    path.chmod(0)
    with pytest.raises(errors.InputNotFoundError, match="permission"):
        open_product(path)


def test_no_valid_pixels_warns_and_writes_all_nan(tmp_path, caplog):
    red = np.zeros((20, 20), np.uint16)
    path = write_tif(tmp_path / "s2.tif", [red, red], descriptions=["B04", "B08"], tags=S2_TAGS | {"AGRICREDIT_SENSOR": "s2-l1c"})
    with caplog.at_level(logging.WARNING, logger="agricredit"):
        report = write_ndvi_cog(open_product(path), tmp_path / "out.tif")
    # An L1C tile without a mask of its own: the cloud fraction is unknown, not 0 or 1.
    assert report.cloud_fraction is None and report.valid_fraction == 0.0
    assert "no valid pixels (cloud fraction unknown)" in caplog.text and "unmasked" in caplog.text
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert np.isnan(ds.read(1)).all()


def test_sensor_ndvi_on_a_raw_product_is_a_clear_error(tmp_path):
    from agricredit.errors import SensorError
    from agricredit.raster import open_product

    path = tmp_path / "raw.tif"
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=2, dtype="uint16", crs="EPSG:32618",
                       transform=from_origin(0, 40, 10, 10)) as dst:
        dst.write(np.ones((2, 4, 4), dtype="uint16"))
    with pytest.raises(SensorError, match="not an NDVI raster"):
        open_product(path, sensor="ndvi")


def _products_of_every_kind(tmp_path):
    """One product per reading path: S2 L2A pixel-interleaved with SCL (one call for the bands), S2 L2A .SAFE (SCL
    at 20 m through a VRT), L1C with a GML cloud mask (rasterised shapes), Landsat C2 with QA_RADSAT (defect band),
    an external mask, an NDVI raster with a footprint mask, and the real sample products."""
    from ndvi_fixtures import clouds_gml, landsat_c2_folder

    red, nir = s2_dn((40, 60))
    red[0, :7] = 0  # no data
    nir[5, 5] = 65535
    x0, y0 = 435730.0, 4179460.0
    products = {
        "s2 interleaved": open_product(write_tif(tmp_path / "s2.tif", [red, nir, _scl(red.shape).astype(np.uint16)],
                                                 descriptions=["B04", "B08", "SCL"], tags=S2_TAGS)),
        "s2 safe": open_product(s2_safe(tmp_path / "safe", red, nir, _scl((20, 30)))),
        "l1c gml": open_product(s2_safe(tmp_path / "gml", red, nir, None, level="L1C", baseline="02.14",
                                        clouds_gml=clouds_gml([("OPAQUE", (x0, y0 - 100, x0 + 100, y0))]))),
        "landsat radsat": open_product(landsat_c2_folder(  # SR = 2.75e-5 DN - 0.2: positive past DN 7273
            tmp_path / "l8", red + 9000, nir + 12000, radsat=np.where(np.arange(60) % 7 == 0, 1 << 3, 0).astype(np.uint16)
            * np.ones((40, 1), np.uint16), mtl=True)),
        "external mask": open_product(
            write_tif(tmp_path / "ext.tif", [red, nir], descriptions=["B04", "B08"],
                      tags=dict(S2_TAGS, AGRICREDIT_SENSOR="s2-l1c")),
            mask_path=write_tif(tmp_path / "m.tif", [np.eye(20, 30, dtype=np.uint8)], transform=TRANSFORM_20)),
    }
    write_ndvi_cog(products["s2 interleaved"], tmp_path / "ndvi.tif")  # NDVI with its footprint mask
    products["ndvi raster"] = open_product(tmp_path / "ndvi.tif")
    sample = os.path.join(os.path.dirname(__file__), "..", "sample_tiles")
    products["sample l8 c1"] = open_product(os.path.join(sample, "l8_c1_cloudy.tif"))
    products["sample s2 l1c"] = open_product(os.path.join(sample, "s2_l1c_eastern_shore.tif"))
    return products


def test_reading_at_cells_gives_the_window_values_at_those_cells(tmp_path):
    # The zonal engine asks only for the cells its plots cover: NDVI, cloud and fill there must be the very values
    # of the whole window's arrays (same bits, NaN where NaN), for every kind of product and mask.
    from agricredit.raster import NdviReader

    rng = np.random.default_rng(3)
    for name, product in _products_of_every_kind(tmp_path).items():
        window = rasterio.windows.Window(3, 2, min(45, product.width - 3), min(30, product.height - 2))
        rows = rng.integers(0, int(window.height), 200)
        cols = rng.integers(0, int(window.width), 200)
        with NdviReader(product) as reader:
            whole = reader.read(window)
            at = reader.read(window, cells=(rows, cols))
        for full, part in zip(whole, at):
            assert part.shape == (200,) and part.dtype == full.dtype, name
            np.testing.assert_array_equal(part, full[rows, cols], err_msg=name)
        assert np.isfinite(whole[0]).any(), name
        if not name.startswith("sample"):  # the synthetic ones have invalid cells too (no data, saturated, masked)
            assert np.isnan(whole[0]).any(), name
