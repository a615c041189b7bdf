"""Landsat products by spacecraft: band maps, scale/offset, QA_RADSAT, unsupported products.

Reference values are computed here from the USGS constants written out (Collection 2
Level-2 surface reflectance = DN x 0.0000275 - 0.2; TM/ETM+ red band 3, NIR band 4;
OLI red band 4, NIR band 5), never from the reader's own tables.
"""

from __future__ import annotations

import datetime
import json

import numpy as np
import pytest

from agricredit import errors
from agricredit.raster import open_product, read_ndvi
from ndvi_fixtures import landsat_c2_folder, stac_item, write_tif

C2_SCALE, C2_OFFSET = 0.0000275, -0.2
SPACECRAFTS = ["LANDSAT_4", "LANDSAT_5", "LANDSAT_7", "LANDSAT_8", "LANDSAT_9"]
# A vegetation pixel: red reflectance 0.04, NIR 0.40, SWIR1 0.20 -> DN = (reflectance + 0.2) / 0.0000275.
RED_DN, NIR_DN, SWIR_DN = 8727, 21818, 14545


def _reflectance(dn: int | np.ndarray) -> np.ndarray:
    return np.asarray(dn, np.float64) * C2_SCALE + C2_OFFSET


def _vegetation(shape=(6, 8)):
    return (np.full(shape, RED_DN, np.uint16), np.full(shape, NIR_DN, np.uint16), np.full(shape, SWIR_DN, np.uint16))


def _expected_ndvi(red_dn, nir_dn):
    r, n = _reflectance(red_dn), _reflectance(nir_dn)
    return (n - r) / (n + r)


@pytest.mark.parametrize("spacecraft", SPACECRAFTS)
@pytest.mark.parametrize("mtl", [True, False], ids=["mtl", "product-id-only"])
def test_vegetation_pixel_is_082_on_every_spacecraft(tmp_path, spacecraft, mtl):
    red, nir, swir = _vegetation()
    folder = landsat_c2_folder(tmp_path, red, nir, spacecraft=spacecraft, swir=swir, mtl=mtl)
    product = open_product(folder)
    assert (product.sensor, product.spacecraft) == ("landsat-c2-l2", spacecraft)
    ndvi, cloud = read_ndvi(product)
    assert not cloud.any()
    assert _expected_ndvi(RED_DN, NIR_DN) == pytest.approx(0.818, abs=1e-3)
    np.testing.assert_allclose(ndvi, _expected_ndvi(RED_DN, NIR_DN), atol=1e-6)
    # Landsat 8 band numbers on a TM/ETM+ folder would read NIR as red and SWIR1 as NIR: NDVI -0.33.
    assert (_reflectance(SWIR_DN) - _reflectance(NIR_DN)) / (_reflectance(SWIR_DN) + _reflectance(NIR_DN)) == pytest.approx(
        -1 / 3, abs=1e-3)


def test_mtl_spacecraft_wins_over_a_renamed_folder_and_l2_rescaling_over_l1(tmp_path):
    red, nir, swir = _vegetation()
    folder = landsat_c2_folder(tmp_path, red, nir, spacecraft="LANDSAT_5", swir=swir, mtl=True, name="scene_a")
    product = open_product(folder)
    assert (product.spacecraft, product.date) == ("LANDSAT_5", datetime.date(2021, 7, 4))
    assert (product.scale, product.offset) == (2.75e-05, -0.2)  # the MTL's Level-2 group, not its Level-1 decoy
    np.testing.assert_allclose(read_ndvi(product)[0], _expected_ndvi(RED_DN, NIR_DN), atol=1e-6)


def test_unknown_spacecraft_is_an_error_not_a_guess(tmp_path):
    red, nir, _ = _vegetation()
    qa = np.full(red.shape, 21824, np.uint16)
    path = write_tif(tmp_path / "scene.tif", [red, nir, qa], descriptions=["SR_B4", "SR_B5", "QA_PIXEL"])
    with pytest.raises(errors.SensorError, match="scene.tif.*Landsat spacecraft"):
        open_product(path)
    tagged = write_tif(tmp_path / "tagged.tif", [red, nir, qa], descriptions=["SR_B3", "SR_B4", "QA_PIXEL"],
                       tags={"SPACECRAFT_ID": "LANDSAT_7"})
    product = open_product(tagged)
    assert product.spacecraft == "LANDSAT_7" and product.red.index == 1 and product.nir.index == 2
    np.testing.assert_allclose(read_ndvi(product)[0], _expected_ndvi(RED_DN, NIR_DN), atol=1e-6)


@pytest.mark.parametrize("spacecraft,invalid_bits,valid_bits", [
    # TM/ETM+: bit 2 band 3 (red), bit 3 band 4 (NIR), bit 9 dropped pixel; bit 0 (band 1) and bit 4 (band 5) harmless.
    ("LANDSAT_5", [2, 3, 9], [0, 1, 4, 6, 11]),
    ("LANDSAT_7", [2, 3, 9], [0, 1, 4, 6, 8]),
    # OLI: bit 3 band 4 (red), bit 4 band 5 (NIR), bit 11 terrain occlusion; bit 2 (band 3) and bit 9 harmless.
    ("LANDSAT_8", [3, 4, 11], [0, 1, 2, 5, 9]),
    ("LANDSAT_9", [3, 4, 11], [0, 1, 2, 5, 9]),
])
def test_qa_radsat_saturation_and_defects_are_invalid(tmp_path, spacecraft, invalid_bits, valid_bits):
    red, nir, _ = _vegetation((1, 10))
    radsat = np.zeros((1, 10), np.uint16)
    bits = invalid_bits + valid_bits
    radsat[0, : len(bits)] = [1 << b for b in bits]
    product = open_product(landsat_c2_folder(tmp_path, red, nir, spacecraft=spacecraft, radsat=radsat))
    ndvi, cloud = read_ndvi(product)
    assert np.isnan(ndvi[0]).tolist() == [True] * len(invalid_bits) + [False] * (10 - len(invalid_bits))
    assert not cloud.any()  # saturation is not cloud


def test_saturated_dn_is_never_a_reading_even_without_qa(tmp_path):
    red, nir, _ = _vegetation((1, 4))
    red[0, 0], nir[0, 1] = 65535, 65535
    for no_mask in (False, True):
        ndvi, cloud = read_ndvi(open_product(landsat_c2_folder(tmp_path / str(no_mask), red, nir), no_mask=no_mask))
        assert np.isnan(ndvi[0]).tolist() == [True, True, False, False] and not cloud.any()


def _mtl(folder, text):
    (folder / f"{folder.name}_MTL.txt").write_text(f"GROUP = LANDSAT_METADATA_FILE\n{text}END_GROUP = LANDSAT_METADATA_FILE\nEND\n")


def test_tm_collection1_with_band_specific_rescaling_is_refused(tmp_path):
    red, nir, _ = _vegetation()
    folder = tmp_path / "LT05_L1TP_123045_20110704_20161009_01_T1"
    for band, data in (("B3", red), ("B4", nir), ("BQA", np.full(red.shape, 672, np.uint16))):
        write_tif(folder / f"{folder.name}_{band}.TIF", [data])
    _mtl(folder, '  SPACECRAFT_ID = "LANDSAT_5"\n  COLLECTION_NUMBER = 01\n  DATE_ACQUIRED = 2011-07-04\n'
         "  GROUP = RADIOMETRIC_RESCALING\n    REFLECTANCE_MULT_BAND_3 = 1.0122E-03\n    REFLECTANCE_ADD_BAND_3 = -0.003\n"
         "    REFLECTANCE_MULT_BAND_4 = 1.2889E-03\n    REFLECTANCE_ADD_BAND_4 = -0.004\n  END_GROUP = RADIOMETRIC_RESCALING\n")
    with pytest.raises(errors.SensorError, match=r"red \(band 3\) and NIR \(band 4\) have different reflectance rescaling"):
        open_product(folder)


@pytest.mark.parametrize("metadata,message", [
    ('  SPACECRAFT_ID = "LANDSAT_5"\n  SENSOR_ID = "MSS"\n  COLLECTION_NUMBER = 02\n  PROCESSING_LEVEL = "L1GS"\n', "MSS"),
    ('  SPACECRAFT_ID = "LANDSAT_8"\n  COLLECTION_NUMBER = 02\n  PROCESSING_LEVEL = "L1TP"\n', "Level-2"),
])
def test_unsupported_landsat_products_say_so(tmp_path, metadata, message):
    red, nir, _ = _vegetation()
    folder = tmp_path / "LC08_L1TP_123045_20210704_20210713_02_T1"
    for band, data in (("B4", red), ("B5", nir), ("QA_PIXEL", np.full(red.shape, 21824, np.uint16))):
        write_tif(folder / f"{folder.name}_{band}.TIF", [data])
    _mtl(folder, metadata)
    with pytest.raises(errors.SensorError, match=message):
        open_product(folder)


@pytest.mark.parametrize("form", ["xml", "json"])
def test_mtl_in_xml_and_json_forms(tmp_path, form):
    red, nir, swir = _vegetation()
    folder = landsat_c2_folder(tmp_path, red, nir, spacecraft="LANDSAT_7", swir=swir, name="scene_b")
    groups = {"PRODUCT_CONTENTS": {"COLLECTION_NUMBER": "02", "PROCESSING_LEVEL": "L2SP"},
              "IMAGE_ATTRIBUTES": {"SPACECRAFT_ID": "LANDSAT_7", "SENSOR_ID": "ETM", "DATE_ACQUIRED": "2003-05-02"},
              "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS": {"REFLECTANCE_MULT_BAND_3": "2.75E-05", "REFLECTANCE_ADD_BAND_3": "-0.2",
                                                        "REFLECTANCE_MULT_BAND_4": "2.75E-05", "REFLECTANCE_ADD_BAND_4": "-0.2"}}
    if form == "json":
        text = json.dumps({"LANDSAT_METADATA_FILE": groups})
    else:
        text = "<LANDSAT_METADATA_FILE>" + "".join(
            f"<{g}>" + "".join(f"<{k}>{v}</{k}>" for k, v in items.items()) + f"</{g}>" for g, items in groups.items()
        ) + "</LANDSAT_METADATA_FILE>"
    (folder / f"scene_b_MTL.{form}").write_text(text)
    product = open_product(folder)
    assert (product.sensor, product.spacecraft, product.date) == ("landsat-c2-l2", "LANDSAT_7", datetime.date(2003, 5, 2))
    np.testing.assert_allclose(read_ndvi(product)[0], _expected_ndvi(RED_DN, NIR_DN), atol=1e-6)


def test_stac_item_platform_names_the_spacecraft(tmp_path):
    red, nir, swir = _vegetation()
    folder = landsat_c2_folder(tmp_path, red, nir, spacecraft="LANDSAT_5", swir=swir)
    assets = {key: str(next(folder.glob(f"*_{band}.TIF"))) for key, band in
              (("red", "SR_B3"), ("nir08", "SR_B4"), ("swir16", "SR_B5"), ("qa_pixel", "QA_PIXEL"))}
    item = stac_item(tmp_path / "item.json", assets, {"platform": "landsat-5", "datetime": "2011-07-04T03:00:00Z"})
    product = open_product(item)
    assert (product.sensor, product.spacecraft) == ("landsat-c2-l2", "LANDSAT_5")
    np.testing.assert_allclose(read_ndvi(product)[0], _expected_ndvi(RED_DN, NIR_DN), atol=1e-6)
