"""Sentinel-2: L1C cloud masks from the product, unmasked observations, saturated DNs, contradicting declarations.

References are written out here: reflectance = (DN - 1000) / 10000 from baseline 04.00,
DN / 10000 before; MSK_CLASSI band 1 opaque clouds, band 2 cirrus, band 3 snow/ice
(60 m); GML mask polygons of maskType OPAQUE and CIRRUS.
"""

from __future__ import annotations

import logging

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely.geometry import box

from agricredit import acquisitions, errors
from agricredit.raster import open_product, read_ndvi, write_ndvi_cog
from agricredit.zonal import zonal_stats
from ndvi_fixtures import clouds_gml, reference_ndvi, s2_dn, s2_safe, stac_item, write_tif

X0, Y0 = 435730.0, 4179460.0  # upper-left corner of the fixtures' 10 m grid (EPSG:32618)
SHAPE = (40, 60)


def _classi() -> np.ndarray:
    """MSK_CLASSI at 60 m over the 40 x 60 grid of 10 m pixels (7 x 10 cells)."""
    classi = np.zeros((3, 7, 10), np.uint8)
    classi[0, 0, 0] = 1  # opaque cloud: 10 m rows 0-5, cols 0-5
    classi[1, 1, 2] = 1  # cirrus: rows 6-11, cols 12-17
    classi[2, 2, 3] = 1  # snow/ice: not a cloud
    return classi


def _classi_cloud_10m() -> np.ndarray:
    cloud = np.zeros(SHAPE, bool)
    cloud[0:6, 0:6] = True
    cloud[6:12, 12:18] = True
    return cloud


def test_l1c_msk_classi_masks_opaque_clouds_and_cirrus(tmp_path):
    red, nir = s2_dn(SHAPE)
    product = open_product(s2_safe(tmp_path, red, nir, None, level="L1C", baseline="04.00", classi=_classi()))
    assert (product.mask_rule, product.cloud_masked) == ("msk_classi:opaque,cirrus", True)
    ndvi, cloud = read_ndvi(product)
    expected_cloud = _classi_cloud_10m()
    np.testing.assert_array_equal(cloud, expected_cloud)
    expected = reference_ndvi(red, nir, 1e-4, -0.1)
    expected[expected_cloud] = np.nan
    np.testing.assert_allclose(ndvi, expected, atol=1e-6, equal_nan=True)


def _gml_boxes():
    # Polygons on pixel edges: OPAQUE over rows 0-9 x cols 0-9, CIRRUS over rows 20-29 x cols 30-39.
    return [("OPAQUE", (X0, Y0 - 100, X0 + 100, Y0)), ("CIRRUS", (X0 + 300, Y0 - 300, X0 + 400, Y0 - 200))]


def test_l1c_gml_mask_before_baseline_04(tmp_path):
    red, nir = s2_dn(SHAPE)
    safe = s2_safe(tmp_path, red, nir, None, level="L1C", baseline="02.14", clouds_gml=clouds_gml(_gml_boxes()),
                   classi=_classi())  # both present: the baseline says which applies
    product = open_product(safe)
    assert (product.mask_rule, product.cloud_masked) == ("gml:opaque,cirrus", True)
    ndvi, cloud = read_ndvi(product)
    expected_cloud = np.zeros(SHAPE, bool)
    expected_cloud[0:10, 0:10] = True
    expected_cloud[20:30, 30:40] = True
    np.testing.assert_array_equal(cloud, expected_cloud)
    expected = reference_ndvi(red, nir, 1e-4, 0.0)
    expected[expected_cloud] = np.nan
    np.testing.assert_allclose(ndvi, expected, atol=1e-6, equal_nan=True)
    assert not list(safe.rglob("*.gfs"))  # reading the mask writes nothing into the product


def test_l1c_empty_gml_mask_is_masked_and_cloud_free(tmp_path):
    red, nir = s2_dn(SHAPE)
    product = open_product(s2_safe(tmp_path, red, nir, None, level="L1C", baseline="02.14", clouds_gml=clouds_gml([])))
    assert product.cloud_masked
    assert not read_ndvi(product)[1].any()
    report = write_ndvi_cog(product, tmp_path / "ndvi.tif")
    assert report.cloud_fraction == 0.0


def test_l1c_without_any_mask_is_unmasked_and_says_so(tmp_path, caplog):
    red, nir = s2_dn(SHAPE)
    with caplog.at_level(logging.WARNING, logger="agricredit"):
        product = open_product(s2_safe(tmp_path, red, nir, None, level="L1C", baseline="04.00"))
    assert (product.mask_rule, product.cloud_masked) == ("none", False)
    assert "unmasked" in caplog.text and "MSK_CLASSI" in caplog.text
    report = write_ndvi_cog(product, tmp_path / "ndvi.tif")
    assert report.cloud_fraction is None and report.as_dict()["cloud_fraction"] is None and not report.cloud_masked
    with rasterio.open(tmp_path / "ndvi.tif") as ds:
        tags = ds.tags()
    assert (tags["CLOUD_FRACTION"], tags["CLOUD_MASKED"], tags["MASK_RULE"]) == ("unknown", "no", "none")


def test_switching_the_mask_off_makes_the_observation_unmasked(tmp_path):
    red, nir = s2_dn(SHAPE)
    product = open_product(s2_safe(tmp_path, red, nir, None, level="L1C", classi=_classi()), no_mask=True)
    assert not product.cloud_masked and not read_ndvi(product)[1].any()


def test_observation_table_says_which_dates_were_cloud_masked(tmp_path):
    red, nir = s2_dn(SHAPE)
    masked = s2_safe(tmp_path / "a", red, nir, None, level="L1C", date="2022-06-12", classi=_classi())
    unmasked = s2_safe(tmp_path / "b", red, nir, None, level="L1C", date="2022-06-17")
    plots = gpd.GeoDataFrame({"plot_id": ["p1"]}, geometry=[box(X0 + 5, Y0 - 395, X0 + 595, Y0 - 5)], crs="EPSG:32618")
    table = zonal_stats(plots, [masked, unmasked]).set_index("date")
    assert table["cloud_masked"].to_dict() == {"2022-06-12": True, "2022-06-17": False}
    assert table["cloud_masked"].dtype == bool
    # The masked date loses the cloudy pixels (72 of 2400 pixels, less the plot's 5 m margin); the unmasked keeps all.
    assert table.loc["2022-06-12", "cloud_frac"] > 0 and table.loc["2022-06-17", "cloud_frac"] == 0


def test_corrupt_msk_classi_is_a_clear_error(tmp_path):
    red, nir = s2_dn(SHAPE)
    safe = s2_safe(tmp_path, red, nir, None, level="L1C")
    classi = next(safe.rglob("QI_DATA")) / "MSK_CLASSI_B00.jp2"
    write_tif(classi.with_suffix(".tif"), [np.zeros((7, 10), np.uint8)])
    with pytest.raises(errors.CorruptInputError, match="MSK_CLASSI_B00.tif: 1 band"):
        open_product(safe)


# ------------------------------------------------------------------ saturation


def test_l2a_saturated_dn_is_invalid_even_where_scl_says_vegetation(tmp_path):
    red, nir = s2_dn((2, 4))
    red[0, 0], nir[0, 1] = 65535, 65535
    scl = np.full((2, 4), 4, np.uint16)  # 4 = vegetation
    tags = {"AGRICREDIT_SENSOR": "s2-l2a", "PROCESSING_BASELINE": "04.00", "ACQUISITION_DATE": "2022-06-12"}
    path = write_tif(tmp_path / "s2.tif", [red, nir, scl], descriptions=["B04", "B08", "SCL"], tags=tags)
    for no_mask in (False, True):
        ndvi, cloud = read_ndvi(open_product(path, no_mask=no_mask))
        assert np.isnan(ndvi).tolist() == [[True, True, False, False], [False] * 4] and not cloud.any()
    # Without the rule, 65535 would pass as a reading: (65535 - 1000) vs a red of a few thousand DN.
    assert np.isfinite(reference_ndvi(red, nir, 1e-4, -0.1)[0, :2]).all()


# ------------------------------------------------------------------ contradictions


def _l2a_tile(tmp_path, *, tagged=True):
    red, nir = s2_dn((8, 8))
    scl = np.full((8, 8), 4, np.uint16)
    tags = {"AGRICREDIT_SENSOR": "s2-l2a"} if tagged else {}
    tags |= {"PROCESSING_BASELINE": "04.00", "ACQUISITION_DATE": "2022-06-12"}
    return write_tif(tmp_path / "l2a.tif", [red, nir, scl], descriptions=["B04", "B08", "SCL"], tags=tags)


@pytest.mark.parametrize("tagged,because", [(True, "tag AGRICREDIT_SENSOR=s2-l2a"), (False, "band SCL")])
def test_l2a_tile_declared_l1c_is_an_error_naming_both(tmp_path, tagged, because):
    path = _l2a_tile(tmp_path, tagged=tagged)
    with pytest.raises(errors.SensorError) as caught:
        open_product(path, sensor="s2-l1c")
    message = str(caught.value)
    assert message.startswith(str(path)) and "'s2-l1c'" in message and "'s2-l2a'" in message and because in message
    assert open_product(path, sensor="s2-l2a").mask_rule.startswith("scl:")


def test_manifest_row_contradicting_the_tile_is_an_error(tmp_path):
    path = _l2a_tile(tmp_path)
    manifest = tmp_path / "season.csv"
    manifest.write_text(f"date,sensor,path\n2022-06-12,s2-l1c,{path.name}\n")
    with pytest.raises(errors.SensorError, match=r"l2a.tif: the declared sensor 's2-l1c'.*say 's2-l2a'"):
        acquisitions.discover_acquisitions(manifest)


@pytest.mark.parametrize("declared", ["s2-l2a", "landsat-c2-l2"])
def test_safe_metadata_contradicted(tmp_path, declared):
    red, nir = s2_dn(SHAPE)
    safe = s2_safe(tmp_path, red, nir, None, level="L1C")
    with pytest.raises(errors.SensorError, match=r"MTD_MSIL1C.xml \(PRODUCT_TYPE S2MSI1C\) say 's2-l1c'"):
        open_product(safe, sensor=declared)


def test_landsat_family_contradicted_by_band_names(tmp_path):
    red, nir = s2_dn((8, 8))
    path = write_tif(tmp_path / "l8.tif", [red, nir], descriptions=["B4", "B5"])
    with pytest.raises(errors.SensorError, match="band names say 'landsat-c1'"):
        open_product(path, sensor="s2-l1c")


def test_stac_level_contradicted_but_a_silent_item_is_not(tmp_path):
    red, nir = s2_dn((8, 8))
    write_tif(tmp_path / "B04.tif", [red])
    write_tif(tmp_path / "B08.tif", [nir])
    props = {"constellation": "sentinel-2", "datetime": "2022-06-12T03:00:00Z", "s2:processing_baseline": "04.00"}
    assets = {"red": "B04.tif", "nir": "B08.tif"}
    said = stac_item(tmp_path / "l1c.json", assets, props | {"s2:product_type": "S2MSI1C"})
    with pytest.raises(errors.SensorError, match="s2:product_type S2MSI1C"):
        open_product(said, sensor="s2-l2a")
    silent = stac_item(tmp_path / "item.json", assets, props)  # no level: only the family is known
    with pytest.raises(errors.MissingBandError, match="SCL"):
        open_product(silent, sensor="s2-l2a")
