"""Sensor facts: baselines, dates, QA bit rules, NDVI arithmetic (pure functions)."""

from __future__ import annotations

import datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from agricredit import sensors
from agricredit.raster import ndvi_from_dn, parse_bands
from ndvi_fixtures import reference_ndvi


@pytest.mark.parametrize(
    "baseline,offset",
    [("04.00", -1000.0), ("05.09", -1000.0), ("N0400", -1000.0), ("03.01", 0.0), ("02.14", 0.0), ("N0209", 0.0), ("4.0", -1000.0)],
)
def test_s2_add_offset_by_baseline(baseline, offset):
    assert sensors.s2_add_offset(baseline) == offset


def test_bad_baseline_is_refused():
    with pytest.raises(ValueError, match="not a processing baseline: 'latest'"):
        sensors.s2_add_offset("latest")


@pytest.mark.parametrize(
    "text,date",
    [
        ("S2A_MSIL2A_20220612T023551_N0400_R103", datetime.date(2022, 6, 12)),
        ("LC08_L2SP_123045_20210704_20210713_02_T1_SR_B4.TIF", datetime.date(2021, 7, 4)),
        ("ndvi_2023-05-01.tif", datetime.date(2023, 5, 1)),
        ("s2_B04.jp2", None),
        ("x_20221399.tif", None),
    ],
)
def test_parse_date(text, date):
    assert sensors.parse_date(text) == date


def test_sensor_from_band_names():
    assert sensors.sensor_from_band_names(["x_SR_B4.TIF", "x_SR_B5.TIF", "x_QA_PIXEL.TIF"]) == "landsat-c2-l2"
    assert sensors.sensor_from_band_names(["T_B04_10m.jp2", "T_B08_10m.jp2", "T_SCL_20m.jp2"]) == "s2-l2a"
    assert sensors.sensor_from_band_names(["s2_B04.jp2", "s2_B08.jp2", "s2_B10.jp2"]) == "s2-l1c"
    assert sensors.sensor_from_band_names(["l8_B4.tif", "l8_B5.tif", "l8_BQA.tif", "l8_B10.tif"]) == "landsat-c1"
    assert sensors.sensor_from_band_names(["a.tif"]) is None


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_scl_mask_classes(dtype):
    # uint8/uint16 (SCL alone, or read in one call with the uint16 bands) go through a look-up table, the rest
    # through np.isin: the same classes either way, and values past the class range (300, 65535) are not listed.
    scl = np.array([*range(12), 255, *([300, 65535] if dtype in (np.uint16, np.float32) else [])], dtype=dtype)
    fill, cloud = sensors.scl_mask(scl)
    assert fill.tolist() == [c == 0 for c in scl.tolist()]
    assert cloud.dtype == bool and np.flatnonzero(cloud).tolist() == [1, 3, 8, 9, 10]
    _, cloud = sensors.scl_mask(scl, sensors.parse_mask_classes("8,9"))
    assert np.flatnonzero(cloud).tolist() == [8, 9]
    _, cloud = sensors.scl_mask(scl, [0])
    assert not cloud.any()


@pytest.mark.parametrize("bit", range(16))
def test_qa_pixel_bits(bit):
    fill, cloud = sensors.qa_pixel_mask(np.array([1 << bit], np.uint16))
    assert fill[0] == (bit == 0)
    assert cloud[0] == (1 <= bit <= 4)


def test_bqa_c1_bits():
    clear = (1 << 5) | (1 << 7) | (1 << 9) | (1 << 11)  # low confidence of everything: 2720
    values = np.array([clear, 1, clear | 1 << 4, 3 << 5, 3 << 7, 3 << 11, 2 << 5, 1 << 2], np.uint16)
    fill, cloud = sensors.bqa_c1_mask(values)
    assert fill.tolist() == [False, True, False, False, False, False, False, False]
    assert cloud.tolist() == [False, False, True, True, True, True, False, False]
    assert not sensors.bqa_is_precollection(values)


def test_bqa_precollection_bits():
    values = np.array([20480, 61440, 53248, 28672, 36864, 1], np.uint16)
    fill, cloud = sensors.bqa_precollection_mask(values)
    assert cloud.tolist() == [False, True, True, True, False, False]
    assert fill.tolist() == [False] * 5 + [True]
    assert sensors.bqa_is_precollection(values)


def test_parse_bands():
    assert parse_bands("red=3,nir=4,mask=5") == {"red": 3, "nir": 4, "mask": 5}
    for bad, named in (("red=3", "'red=3' needs both red= and nir="), ("red=0,nir=1", "bad band mapping 'red=0'"),
                       ("blue=1,red=2,nir=3", "bad band mapping 'blue=1'"), ("red=x,nir=2", "bad band mapping 'red=x'")):
        with pytest.raises(ValueError, match=named):
            parse_bands(bad)


def test_uint16_extremes_and_zero_denominator():
    red = np.array([0, 65535, 100, 5000, 0, 1000, 1000], np.uint16)
    nir = np.array([65535, 65535, 50, 100, 0, 1000, 1001], np.uint16)
    ndvi, fill = ndvi_from_dn(red, nir, scale=1e-4, offset=0.0, nodata=None)
    expected = [1.0, 0.0, -50 / 150, -4900 / 5100, np.nan, 0.0, 1 / 2001]
    np.testing.assert_allclose(ndvi, expected, atol=1e-7)
    assert not fill.any()
    # With the S2 -1000 offset, DN 1000 is reflectance 0: a zero sum is NaN, never inf.
    ndvi, _ = ndvi_from_dn(red, nir, scale=1e-4, offset=-0.1, nodata=0)
    assert np.isnan(ndvi[[0, 4, 5]]).all()
    assert np.isfinite(ndvi[[1, 6]]).all() and np.all(np.abs(ndvi[np.isfinite(ndvi)]) <= 1)


@settings(max_examples=60, deadline=None)
@given(
    red=arrays(np.uint16, (8, 8), elements=st.integers(0, 65535)),
    nir=arrays(np.uint16, (8, 8), elements=st.integers(0, 65535)),
    offset_dn=st.sampled_from([0.0, -1000.0]),
)
def test_ndvi_matches_float64_reference(red, nir, offset_dn):
    ndvi, fill = ndvi_from_dn(red, nir, scale=1e-4, offset=offset_dn / 1e4, nodata=0, saturated=65535)
    expected = reference_ndvi(red, nir, 1e-4, offset_dn / 1e4)
    expected[(red == 65535) | (nir == 65535)] = np.nan  # saturated: never a reading
    np.testing.assert_array_equal(fill, (red == 0) | (nir == 0))  # saturation is not no data
    assert ndvi.dtype == np.float32
    assert not np.isinf(ndvi).any()
    np.testing.assert_array_equal(np.isnan(ndvi), np.isnan(expected))
    np.testing.assert_allclose(ndvi, expected, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("text,spacecraft", [
    ("LANDSAT_5", "LANDSAT_5"), ("LT04_L2SP_123045_19880704_20200917_02_T1", "LANDSAT_4"),
    ("LE07_L1TP_123045_20030502_20161208_01_T1", "LANDSAT_7"), ("LC09_L2SP_x", "LANDSAT_9"),
    ("LT51240322011185IKR00", "LANDSAT_5"), ("l8_c1_cloudy.tif", "LANDSAT_8"), ("landsat-9", "LANDSAT_9"),
    ("S2A_MSIL2A_20220612T023551_N0400", None), ("L2A_T50SLH_A036377", None), ("T50SLH_B04_10m.jp2", None), (None, None),
])
def test_landsat_spacecraft_from_metadata_and_names(text, spacecraft):
    assert sensors.landsat_spacecraft(text) == spacecraft


def test_landsat_band_names_by_spacecraft():
    # USGS: TM/ETM+ red = band 3, NIR = band 4; OLI red = band 4, NIR = band 5.
    expected = {"LANDSAT_4": ("SR_B3", "SR_B4"), "LANDSAT_5": ("SR_B3", "SR_B4"), "LANDSAT_7": ("SR_B3", "SR_B4"),
                "LANDSAT_8": ("SR_B4", "SR_B5"), "LANDSAT_9": ("SR_B4", "SR_B5")}
    for spacecraft, (red, nir) in expected.items():
        assert sensors.landsat_bands("landsat-c2-l2", spacecraft) == {"red": red, "nir": nir}
        assert sensors.landsat_bands("landsat-c1", spacecraft) == {"red": red[3:], "nir": nir[3:]}
    with pytest.raises(ValueError, match="not supported"):
        sensors.landsat_bands("landsat-c1", "LANDSAT_2")
    assert not sensors.band_token("B3").search("LT05_SR_B3.TIF") and sensors.band_token("B3").search("LT05_B3.TIF")


def test_msk_classi_opaque_and_cirrus_are_cloud_snow_is_not():
    stack = np.array([[[1, 0, 0, 0]], [[0, 1, 0, 0]], [[0, 0, 1, 0]]], np.uint8)
    fill, cloud = sensors.apply_mask_rule("msk_classi:opaque,cirrus", stack)
    assert cloud.tolist() == [[True, True, False, False]] and not fill.any()
