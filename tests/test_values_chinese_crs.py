"""GCJ-02 and BD-09 against published reference vectors (issue 16 §2), not only round trips.

Source of the vectors: the README of wandergis/coordtransform (MIT; commit
606c6f3b57b6f1d60458793fea39928d2b11b637, section "result"), whose forward
formulas are the public reconstruction agricredit uses. For the input point
(116.404, 39.915) it publishes:

    bd09togcj02:   [ 116.39762729119315, 39.90865673957631 ]
    gcj02tobd09:   [ 116.41036949371029, 39.92133699351021 ]
    wgs84togcj02:  [ 116.41024449916938, 39.91640428150164 ]
    gcj02towgs84:  [ 116.39775550083061, 39.91359571849836 ]

Its two inverses (bd09togcj02, gcj02towgs84) are one-step approximations, good
to about a metre; agricredit inverts exactly by iteration, so they are checked
here to within that approximation, and the exact inverse by its forward image.
"""

from __future__ import annotations

import json

import numpy as np
import pyproj
import pytest

from agricredit import plots as P

POINT = np.array([[116.404, 39.915]])
WGS84_TO_GCJ02 = (116.41024449916938, 39.91640428150164)
GCJ02_TO_BD09 = (116.41036949371029, 39.92133699351021)
BD09_TO_GCJ02_APPROX = (116.39762729119315, 39.90865673957631)
GCJ02_TO_WGS84_APPROX = (116.39775550083061, 39.91359571849836)
GEOD = pyproj.Geod(ellps="WGS84")


def metres(a, b) -> float:
    return GEOD.inv(a[0], a[1], b[0], b[1])[2]


def test_wgs84_to_gcj02_published_vector():
    np.testing.assert_allclose(P.wgs84_to_gcj02(POINT)[0], WGS84_TO_GCJ02, rtol=0, atol=1e-9)


def test_bd09_published_vector_from_its_gcj02_point():
    # The WGS84 point whose GCJ-02 image is (116.404, 39.915) has the published BD-09 image of that GCJ-02 point.
    wgs = P.gcj02_to_wgs84(POINT)
    np.testing.assert_allclose(P.wgs84_to_gcj02(wgs)[0], POINT[0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(P.wgs84_to_bd09(wgs)[0], GCJ02_TO_BD09, rtol=0, atol=1e-9)


def test_inverses_agree_with_the_published_approximations():
    wgs = P.gcj02_to_wgs84(POINT)[0]
    assert metres(wgs, GCJ02_TO_WGS84_APPROX) < 1.0
    # BD-09 (116.404, 39.915) → WGS84 → GCJ-02 is Baidu's published GCJ-02 point, to the approximation's metre.
    gcj = P.wgs84_to_gcj02(P.bd09_to_wgs84(POINT))[0]
    assert metres(gcj, BD09_TO_GCJ02_APPROX) < 1.0
    # and the exact inverse lands where the forward formula says: BD-09 of the result is the input, to 1e-9°
    np.testing.assert_allclose(P.wgs84_to_bd09(P.bd09_to_wgs84(POINT))[0], POINT[0], rtol=0, atol=1e-9)


def test_offsets_have_the_published_size():
    # GCJ-02 moves Beijing by roughly 500-600 m; BD-09 adds about another 700 m (both from the vectors above).
    assert 400 < metres(POINT[0], WGS84_TO_GCJ02) < 800
    assert 500 < metres(POINT[0], GCJ02_TO_BD09) < 900


@pytest.mark.parametrize("crs, published", [("gcj02", WGS84_TO_GCJ02), ("bd09", None)])
def test_plots_in_chinese_crs_are_loaded_at_the_published_wgs84_point(tmp_path, crs, published):
    """A plot drawn on a phone map (GCJ-02 or BD-09 vertices) is loaded in WGS84 where the vectors put it."""
    if crs == "gcj02":
        wgs_corner = POINT[0]  # WGS84 (116.404, 39.915) is drawn at the published GCJ-02 point
        drawn_corner = np.array(published)
    else:
        wgs_corner = P.gcj02_to_wgs84(POINT)[0]  # the WGS84 point whose BD-09 image is published
        drawn_corner = np.array(GCJ02_TO_BD09)
    ring = [drawn_corner + d for d in ([0, 0], [0.001, 0], [0.001, 0.001], [0, 0.001], [0, 0])]
    path = tmp_path / "phone.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"plot_id": "G1"},
        "geometry": {"type": "Polygon", "coordinates": [[list(map(float, p)) for p in ring]]}}]}), encoding="utf-8")
    loaded = P.load_plots(path, plots_crs=crs)
    first = np.array(loaded.geometry.iloc[0].exterior.coords[0])
    assert metres(first, wgs_corner) < 0.01
