"""``raster``'s per-pixel kernels (issue 11): the DN comparisons and the NaN of every mask set at once, against
plain numpy written out here."""

from __future__ import annotations

import numpy as np
import pytest

from agricredit import raster


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
@pytest.mark.parametrize("value", [0, 0.0, 255, 65535.0, -1, 70000, 0.5, -32768, np.nan])
def test_dn_equal_is_the_float_comparison(dtype, value):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else np.finfo(dtype)
    band = np.array([info.min, 0, 1, 254, 255, 256 % (int(info.max) + 1), info.max], dtype=dtype)
    expected = band.astype(np.float64) == np.float64(value)
    got = raster._equal(band, value)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, expected)


def test_ndvi_from_dn_sets_nan_where_any_rule_says_so_and_clips_the_rest():
    # red, nir per pixel: valid, no data in either band, saturated, reflectance sum <= 0, NDVI beyond 1 (clipped).
    red = np.array([1500, 0, 1200, 65535, 400, 500, 900], np.uint16)
    nir = np.array([3000, 2000, 0, 3000, 400, 600, 1200], np.uint16)
    ndvi, fill = raster.ndvi_from_dn(red, nir, scale=1e-4, offset=-0.1, nodata=0, saturated=65535)
    n, r = nir.astype(np.float32), red.astype(np.float32)
    denominator = n + r + np.float32(-2000.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        plain = np.clip((n - r) / denominator, np.float32(-1), np.float32(1))
    invalid = (red == 0) | (nir == 0) | (red == 65535) | (nir == 65535) | ~(denominator > 0)
    plain[invalid] = np.nan
    np.testing.assert_array_equal(ndvi.view(np.uint32), plain.view(np.uint32))  # the very bits, NaN included
    assert fill.tolist() == [False, True, True, False, False, False, False]
    assert np.isnan(ndvi[[1, 2, 3, 4, 5]]).all() and ndvi[6] == 1.0 and ndvi[0] == np.float32(1500) / np.float32(2500)
