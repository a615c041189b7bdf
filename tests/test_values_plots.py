"""``plots``: every rule at, just inside and just outside its threshold, messages and figures checked exactly.

References are independent of the module: pyproj's geodesic areas and UTM areas of use, shoelace areas worked
out by hand on integer coordinates, the published GCJ-02 box and the one-line error messages users read.
These tests came out of mutation testing (issue 16 §5, ``scripts/mutation.py plots``).
"""

from __future__ import annotations

import io
import json
import logging
import math
import sys
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely

from agricredit import plots as P
from agricredit.errors import CorruptInputError, CRSError, InputError, InputNotFoundError, SchemaError

GEOD = pyproj.Geod(ellps="WGS84")
UTM = "EPSG:32650"
X0, Y0 = 500_000.0, 4_000_000.0  # UTM 50N, North China Plain
M2_PER_MU = 10_000 / 15


def _utm_box(a, b, c, d):
    return shapely.box(X0 + a, Y0 + b, X0 + c, Y0 + d)


def _frame(geoms, ids=None, crs=UTM, index=None):
    ids = ids if ids is not None else [f"P{i}" for i in range(len(geoms))]
    return gpd.GeoDataFrame({"plot_id": ids}, geometry=list(geoms), crs=crs, index=index)


def _geodesic_m2(geom_utm) -> float:
    """pyproj's geodesic area of a UTM 50N polygon, taken to WGS84 by pyproj itself."""
    to_wgs = pyproj.Transformer.from_crs(UTM, 4326, always_xy=True)
    wgs = shapely.transform(geom_utm, lambda xy: np.column_stack(to_wgs.transform(xy[:, 0], xy[:, 1])))
    area, _ = GEOD.geometry_area_perimeter(shapely.orient_polygons(wgs))
    return abs(area)


def _write_geojson(path, features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return path


def _feature(ring, **properties):
    return {"type": "Feature", "properties": properties, "geometry": {"type": "Polygon", "coordinates": [ring]}}


def _figure_of_eight(width):
    """A 100 m square whose west edge loops out into a crossed lobe ``width`` m wide.

    By hand: the edges (0,60)→(−w,40) and (−w,60)→(0,40) cross at (−w/2, 50), cutting two triangles of
    20 × (w/2) / 2 = 5w m² each, one turning each way. The shoelace area is 10000 + 5w − 5w = 10000 m²; the
    valid repair keeps both, 10000 + 10w m²: the repair changes the area by w / 1000.
    """
    corners = [(0, 0), (100, 0), (100, 100), (0, 100), (0, 60), (-width, 40), (-width, 60), (0, 40)]
    return shapely.Polygon([(X0 + x, Y0 + y) for x, y in corners])


# --------------------------------------------------------------------------- repair threshold


@pytest.mark.parametrize("width, status", [(8, "GEOMETRY_REPAIRED"), (10, "GEOMETRY_INVALID"),
                                           (12, "GEOMETRY_INVALID")])
def test_repair_kept_only_below_one_percent_area_change(width, status):
    # 0.8 % just inside, 1 % at the threshold (rejected: the change must stay below it), 1.2 % outside.
    checked = P.check_geometries(_frame([_figure_of_eight(width)]))
    assert checked["geometry_status"].iloc[0] == status
    assert checked["geometry_reason"].iloc[0] == f"Self-intersection[{X0 - width / 2:.0f} {Y0 + 50:.0f}]"
    if status == "GEOMETRY_REPAIRED":
        assert checked.geometry.iloc[0].area == 10_000 + 10 * width
    else:
        assert checked.geometry.iloc[0].equals(_figure_of_eight(width))  # left as drawn


@pytest.mark.parametrize("limit, status", [(0.0079, "GEOMETRY_INVALID"), (0.008, "GEOMETRY_INVALID"),
                                           (0.0081, "GEOMETRY_REPAIRED")])
def test_repair_threshold_comes_from_the_caller(tmp_path, limit, status):
    # load_plots passes the policy's area.repair_max_area_change down; the 0.8 % repair is kept only above it.
    path = tmp_path / "plots.gpkg"
    _frame([_figure_of_eight(8)]).to_file(path, driver="GPKG")
    assert P.load_plots(path, repair_max_area_change=limit)["geometry_status"].iloc[0] == status


def test_a_spike_repair_keeps_the_polygon_and_drops_the_line():
    # make_valid returns GEOMETRYCOLLECTION(POLYGON, LINESTRING) for a zero-width spike: the polygon is kept.
    spiked = shapely.Polygon([(X0 + x, Y0 + y) for x, y in [(0, 0), (100, 0), (100, 100), (0, 100), (0, 50),
                                                              (-10, 50), (0, 50)]])
    checked = P.check_geometries(_frame([spiked]))
    assert checked["geometry_status"].iloc[0] == "GEOMETRY_REPAIRED"
    repaired = checked.geometry.iloc[0]
    assert repaired.geom_type == "Polygon" and repaired.equals(_utm_box(0, 0, 100, 100))


def test_a_crossed_lobe_and_a_spike_repair_keeps_the_multipolygon():
    # The 8 m crossed lobe on the west edge plus a 10 m spike on the east edge: make_valid returns
    # GEOMETRYCOLLECTION(MULTIPOLYGON(square, lobe), LINESTRING(spike)); the square and both triangles stay.
    corners = [(0, 0), (100, 0), (100, 50), (110, 50), (100, 50), (100, 100), (0, 100), (0, 60), (-8, 40), (-8, 60),
               (0, 40)]
    checked = P.check_geometries(_frame([shapely.Polygon([(X0 + x, Y0 + y) for x, y in corners])]))
    assert checked["geometry_status"].iloc[0] == "GEOMETRY_REPAIRED"
    assert checked["geometry_reason"].iloc[0] == f"Self-intersection[{X0 + 110:.0f} {Y0 + 50:.0f}]"
    assert checked.geometry.iloc[0].area == 10_080  # 10000 + 2 × 40 m², the shoelace area being 10000


# --------------------------------------------------------------------------- the other rules


def test_every_rule_names_its_reason_and_later_plots_are_still_checked(caplog):
    multi = shapely.MultiPolygon([_utm_box(0, 0, 50, 50), _utm_box(100, 0, 150, 50)])
    nan = shapely.Polygon([(X0, Y0), (math.nan, Y0), (X0 + 10, Y0 + 10), (X0, Y0 + 10)])
    geoms = [_utm_box(0, 0, 10, 10), _utm_box(0, 0, 10, 10), _utm_box(0, 0, 10, 10), shapely.Polygon(),
             shapely.LineString([(X0, Y0), (X0 + 5, Y0)]), nan, multi, _utm_box(0, 0, 10, 10)]
    ids = ["dup", "dup", None, "empty", "line", "nan", "multi", "ok"]
    with caplog.at_level(logging.INFO, logger="agricredit.plots"):
        checked = P.check_geometries(_frame(geoms, ids))
    assert list(zip(checked["geometry_status"], checked["geometry_reason"])) == [
        ("DUPLICATE_ID", "plot ID used more than once"), ("DUPLICATE_ID", "plot ID used more than once"),
        ("MISSING_ID", "no plot ID"), ("GEOMETRY_EMPTY", "empty geometry"),
        ("GEOMETRY_NOT_POLYGON", "LineString is not a polygon"),
        ("GEOMETRY_NOT_FINITE", "a coordinate is NaN or infinite"), ("OK", ""), ("OK", "")]
    assert [r.getMessage() for r in caplog.records if r.name == "agricredit.plots"] == ["6 of 8 plots rejected"]


@pytest.mark.parametrize("span, status", [(179.5, "OK"), (180.0, "OK"), (180.5, "GEOMETRY_ANTIMERIDIAN")])
def test_antimeridian_rule_at_a_span_of_180_degrees(span, status):
    checked = P.check_geometries(_frame([shapely.box(-span / 2, 0, span / 2, 0.001)], crs=4326))
    assert checked["geometry_status"].iloc[0] == status
    assert checked["geometry_reason"].iloc[0] == ("" if status == "OK" else "longitudes span more than 180 degrees")


def test_checked_plots_keep_their_index_and_crs():
    gdf = _frame([_utm_box(0, 0, 10, 10), _utm_box(20, 0, 30, 10)], index=[7, 3])
    checked = P.check_geometries(gdf)
    assert list(checked.index) == [7, 3]
    assert [g.bounds[0] - X0 for g in checked.geometry] == [0.0, 20.0]
    assert pyproj.CRS(checked.crs).equals(pyproj.CRS(UTM))


def test_no_plots_give_an_empty_checked_table():
    checked = P.check_geometries(_frame([]))
    assert len(checked) == 0 and {"geometry_status", "geometry_reason"} <= set(checked.columns)


def test_rejected_ids_name_missing_ids_by_row_number():
    gdf = gpd.GeoDataFrame({"plot_id": np.array(["A", None, "B", "B", "E", np.nan], dtype=object)},
                           geometry=[_utm_box(0, 0, 10, 10)] * 4 + [shapely.Polygon(), _utm_box(0, 0, 10, 10)],
                           crs=UTM)
    assert P.rejected_ids(P.check_geometries(gdf)) == {
        "MISSING_ID": ["row 1", "row 5"], "DUPLICATE_ID": ["B", "B"], "GEOMETRY_EMPTY": ["E"]}


# --------------------------------------------------------------------------- reading


def test_read_plots_error_messages_name_the_file(tmp_path):
    missing = tmp_path / "missing.geojson"
    with pytest.raises(InputNotFoundError) as error:
        P.read_plots(missing)
    assert str(error.value) == f"{missing}: plot file not found"
    broken = tmp_path / "broken.geojson"
    broken.write_text("this is not GeoJSON", encoding="utf-8")
    with pytest.raises(CorruptInputError) as error:
        P.read_plots(broken)
    assert str(error.value).startswith(f"{broken}: cannot read plots: ") and "\n" not in str(error.value)
    nocrs = tmp_path / "nocrs.gpkg"
    gpd.GeoDataFrame({"plot_id": ["A"]}, geometry=[shapely.box(0, 0, 1, 1)]).to_file(nocrs, driver="GPKG")
    with pytest.raises(CRSError) as error:
        P.read_plots(nocrs)
    assert str(error.value) == f"{nocrs}: plot file has no CRS; give one in the file (GeoJSON is WGS84 by RFC 7946)"
    table = tmp_path / "plots.csv"  # a table without any outline (GDAL reads it, as a plain table)
    pd.DataFrame({"plot_id": ["A"], "borrower_id": ["B1"]}).to_csv(table, index=False)
    with pytest.raises(InputError) as error:
        P.read_plots(table)
    assert str(error.value) == (f"{table}: no plot outlines: the file has no geometry (plots are GeoJSON, "
                                "GeoPackage, Shapefile or GeoParquet)")
    ok = _write_geojson(tmp_path / "ok.geojson", [_feature([[116, 40], [116.001, 40], [116.001, 40.001], [116, 40]],
                                                           code="A")])
    with pytest.raises(SchemaError) as error:
        P.read_plots(ok)
    assert str(error.value) == f"{ok}: no ID column 'plot_id' (use --id-field)"


@pytest.mark.parametrize("corner, accepted", [
    ((-180.0, 0.0), True), ((-180.5, 0.0), False),  # west
    ((179.0, 0.0), True), ((179.5, 0.0), False),  # east (the box is 1° wide)
    ((0.0, -90.0), True), ((0.0, -90.5), False),  # south
    ((0.0, 89.0), True), ((0.0, 89.5), False),  # north
])
def test_geographic_file_must_hold_longitudes_and_latitudes(tmp_path, corner, accepted):
    x, y = corner
    path = _write_geojson(tmp_path / "plots.geojson", [_feature([[x, y], [x + 1, y], [x + 1, y + 1], [x, y]],
                                                                plot_id="A")])
    if accepted:
        assert list(P.read_plots(path)["plot_id"]) == ["A"]
    else:
        with pytest.raises(CRSError, match="coordinates are not longitude/latitude .* although the file's CRS is "
                                           "geographic; RFC 7946 GeoJSON must be WGS84 — reproject the file or "
                                           "give its CRS"):
            P.read_plots(path)


def test_stdin_is_read_and_named(monkeypatch):
    ring = [[116, 40], [116.001, 40], [116.001, 40.001], [116, 40]]
    text = json.dumps({"type": "FeatureCollection", "features": [_feature(ring, code=7)]})
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    read = P.read_plots("-", id_field="code")
    assert list(read["plot_id"]) == ["7"] and read.attrs["source"] == "<stdin>"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    with pytest.raises(SchemaError) as error:
        P.read_plots("-")
    assert str(error.value) == "<stdin>: no ID column 'plot_id' (use --id-field)"


def test_a_feature_without_id_is_missing_not_the_text_nan(tmp_path):
    ring = [[116, 40], [116.001, 40], [116.001, 40.001], [116, 40]]
    path = _write_geojson(tmp_path / "plots.geojson", [_feature(ring, plot_id="A"), _feature(ring)])
    read = P.read_plots(path)
    assert read["plot_id"].iloc[0] == "A" and pd.isna(read["plot_id"].iloc[1])  # not the text "nan" or "None"
    assert read.attrs["source"] == str(path)
    checked = P.load_plots(path)
    assert list(checked["geometry_status"]) == ["OK", "MISSING_ID"]
    assert P.rejected_ids(checked) == {"MISSING_ID": ["row 1"]}


def test_a_nan_coordinate_is_read_without_a_numpy_warning(tmp_path):
    ring = [[116, 40], [float("nan"), 40], [116.001, 40.001], [116, 40]]
    path = _write_geojson(tmp_path / "plots.geojson", [_feature(ring, plot_id="A")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read = P.read_plots(path)
    assert len(read) == 1
    assert [str(w.message) for w in caught if "invalid value" in str(w.message)] == []


def test_geoparquet_suffix_is_read_as_parquet(tmp_path):
    path = tmp_path / "plots.geoparquet"
    _frame([shapely.box(116.0, 40.0, 116.001, 40.001)], ids=["G"], crs=4326).to_parquet(path)
    assert list(P.read_plots(path)["plot_id"]) == ["G"]


# --------------------------------------------------------------------------- GCJ-02 / BD-09


@pytest.mark.parametrize("lon, lat, inside", [
    (72.004, 40.0, True), (72.5, 40.0, True), (72.0039, 40.0, False),  # west edge of the box
    (137.8347, 40.0, True), (137.5, 40.0, True), (137.8348, 40.0, False), (138.5, 40.0, False),  # east
    (110.0, 0.8293, True), (110.0, 1.5, True), (110.0, 0.8292, False),  # south
    (110.0, 55.8271, True), (110.0, 55.5, True), (110.0, 55.8272, False), (110.0, 56.5, False),  # north
])
def test_gcj02_offset_applies_inside_the_published_box_edges_included(lon, lat, inside):
    # coordtransform's out_of_china: lng < 72.004 or lng > 137.8347 or lat < 0.8293 or lat > 55.8271.
    point = np.array([[lon, lat]])
    moved = GEOD.inv(lon, lat, *P.wgs84_to_gcj02(point)[0])[2]
    baidu = GEOD.inv(lon, lat, *P.wgs84_to_bd09(point)[0])[2]
    if inside:
        assert moved > 50 and baidu > 50
    else:
        assert moved == 0 and baidu == 0


def test_integer_coordinates_are_inverted_like_floats():
    as_int = np.array([[116, 40], [121, 31]])
    np.testing.assert_array_equal(P.gcj02_to_wgs84(as_int), P.gcj02_to_wgs84(as_int.astype(float)))
    np.testing.assert_array_equal(P.bd09_to_wgs84(as_int), P.bd09_to_wgs84(as_int.astype(float)))


def _lonlat_frame(crs="EPSG:4326", lon=116.404, lat=39.915, source=None):
    gdf = _frame([shapely.box(lon, lat, lon + 0.001, lat + 0.001)], ids=["G"], crs=crs)
    if source:
        gdf.attrs["source"] = source
    return gdf


def test_plots_crs_names_and_errors():
    reference = P.convert_chinese_crs(_lonlat_frame(), "gcj02").geometry.iloc[0]
    assert not reference.equals(_lonlat_frame().geometry.iloc[0])
    for spelling in ("GCJ-02", "gcj-02", "Gcj02"):
        assert P.convert_chinese_crs(_lonlat_frame(), spelling).geometry.iloc[0].equals(reference)
    baidu = P.convert_chinese_crs(_lonlat_frame(), "BD-09").geometry.iloc[0]
    assert baidu.equals(P.convert_chinese_crs(_lonlat_frame(), "bd09").geometry.iloc[0])
    with pytest.raises(InputError) as error:
        P.convert_chinese_crs(_lonlat_frame(), "wgs-84")
    assert str(error.value) == "unknown plots CRS 'wgs-84'; expected gcj02 or bd09"
    projected = _frame([_utm_box(0, 0, 10, 10)])
    projected.attrs["source"] = "field.gpkg"
    with pytest.raises(CRSError) as error:
        P.convert_chinese_crs(projected, "gcj02")
    assert str(error.value) == ("field.gpkg: --plots-crs gcj02 needs longitude/latitude coordinates, "
                                "file CRS is projected")


def test_lon_lat_plots_in_crs84_are_converted_and_labelled_wgs84():
    # OGC:CRS84 is WGS84 with longitude first (what GeoJSON means); the result is labelled EPSG:4326.
    converted = P.convert_chinese_crs(_lonlat_frame("OGC:CRS84"), "gcj02")
    assert converted.crs.to_epsg() == 4326
    assert converted.geometry.iloc[0].equals(P.convert_chinese_crs(_lonlat_frame(), "gcj02").geometry.iloc[0])


def test_warning_only_for_plots_outside_china(caplog):
    with caplog.at_level(logging.WARNING, logger="agricredit.plots"):
        P.convert_chinese_crs(_lonlat_frame(source="beijing.geojson"), "gcj02")
        assert caplog.records == []
        P.convert_chinese_crs(_lonlat_frame(lon=2.35, lat=48.85, source="paris.geojson"), "bd09")
        P.convert_chinese_crs(_lonlat_frame(lon=2.35, lat=48.85), "gcj02")
    assert [r.getMessage() for r in caplog.records] == [
        "paris.geojson: --plots-crs bd09 given, but the plots lie outside China, where GCJ-02/BD-09 equal WGS84; "
        "nothing is converted",
        "plots: --plots-crs gcj02 given, but the plots lie outside China, where GCJ-02/BD-09 equal WGS84; "
        "nothing is converted"]


# --------------------------------------------------------------------------- CRS, UTM zones


def test_to_wgs84_returns_lon_lat_frames_as_they_are():
    wgs = _lonlat_frame()
    crs84 = _lonlat_frame("OGC:CRS84")
    assert P.to_wgs84(wgs) is wgs and P.to_wgs84(crs84) is crs84  # same axes once ordered: no copy
    moved = P.to_wgs84(_frame([_utm_box(0, 0, 10, 10)]))
    assert moved.crs.to_epsg() == 4326


@pytest.mark.parametrize("lon, lat, epsg", [
    (-180.0, 0.0, 32601), (-174.5, 10.0, 32601), (-174.0, 10.0, 32602),  # zone 1 is [-180°, -174°)
    (116.5, 39.9, 32650), (117.0, -0.5, 32750), (3.0, 0.0, 32631), (3.0, -0.001, 32731),
    (179.9, 0.5, 32660), (180.0, 0.5, 32601),  # 180° is -180°
])
def test_utm_zone_of_a_point(lon, lat, epsg):
    code = P._utm_epsg(np.array([lon]), np.array([lat]))
    assert code.tolist() == [epsg] and code.dtype.kind == "i"  # integer codes, as pyproj.CRS.from_epsg takes
    area = pyproj.CRS.from_epsg(epsg).area_of_use  # the EPSG registry's own extent of that zone
    assert area.west <= (lon if lon < 180 else -180.0) <= area.east


# --------------------------------------------------------------------------- areas and overlaps


def test_area_mu_is_the_geodesic_area_by_plot_id():
    square, strip = _utm_box(0, 0, 100, 100), _utm_box(200, 0, 230, 50)
    series = P.area_mu(_frame([square, strip], ids=["S", "T"]))
    assert series.name == "area_mu" and series.index.name == "plot_id" and list(series.index) == ["S", "T"]
    np.testing.assert_allclose(series.to_numpy(), [_geodesic_m2(square) / M2_PER_MU, _geodesic_m2(strip) / M2_PER_MU],
                               rtol=1e-9)
    assert series["S"] == pytest.approx(15.0, rel=2e-3)  # 1 ha, UTM scale 0.9996 near the central meridian


def test_geodesic_area_of_missing_and_empty_geometries_is_nan():
    square, strip = _utm_box(0, 0, 100, 100), _utm_box(200, 0, 230, 50)
    wgs = gpd.GeoSeries([square, strip], crs=UTM).to_crs(4326).values
    area, perimeter = P.geodesic_area_perimeter(np.array([None, shapely.Polygon(), wgs[0], None, wgs[1]],
                                                         dtype=object))
    assert area.dtype == float and perimeter.dtype == float
    np.testing.assert_allclose(area, [np.nan, np.nan, _geodesic_m2(square), np.nan, _geodesic_m2(strip)],
                               rtol=1e-9)
    assert np.isnan(perimeter[[0, 1, 3]]).all() and perimeter[2] == pytest.approx(400, rel=2e-3)


def test_geodesic_area_of_holes_multipolygons_and_collections_is_pyprojs_to_the_last_bit():
    # The rings are measured one by one on coordinate arrays; the sums must be pyproj's own, in its order:
    # exterior + each hole (clockwise after orienting: negative), 0.0 + each part of a multipolygon.
    outer = _utm_box(0, 0, 300, 200)
    holed = outer.difference(_utm_box(20, 20, 60, 80)).difference(_utm_box(100, 30, 170, 90))
    parts = shapely.MultiPolygon([holed, _utm_box(400, 0, 450, 37.5), _utm_box(500, 10, 520, 30)])
    lines = shapely.GeometryCollection([_utm_box(600, 0, 650, 50), shapely.LineString([(700, 0), (750, 30)])])
    wgs = gpd.GeoSeries([holed, parts, lines, outer.exterior, outer.reverse()], crs=UTM).to_crs(4326).values
    area, perimeter = P.geodesic_area_perimeter(wgs)
    geod = pyproj.Geod(ellps="WGS84")
    expected = [geod.geometry_area_perimeter(g) for g in shapely.orient_polygons(np.asarray(wgs, dtype=object))]
    assert area.tolist() == [abs(a) for a, _ in expected] and perimeter.tolist() == [p for _, p in expected]
    # and against the plane: holes subtract, parts add (UTM scale ~0.9996 near the central meridian)
    assert area[0] == pytest.approx(300 * 200 - 40 * 60 - 70 * 60, rel=2e-3)
    assert area[1] == pytest.approx(
        area[0] + _geodesic_m2(_utm_box(400, 0, 450, 37.5)) + _geodesic_m2(_utm_box(500, 10, 520, 30)),
        rel=1e-12)
    assert area[4] == pytest.approx(300 * 200, rel=2e-3)


def _overlapping_pair(overlap_m: float):
    """Two 100 m squares whose columns overlap by ``overlap_m`` m (a strip ``overlap_m`` × 100 m)."""
    return _frame([_utm_box(0, 0, 100, 100), _utm_box(100 - overlap_m, 0, 200 - overlap_m, 100)], ids=["A", "B"])


def test_overlap_tolerance_at_and_around_the_shared_area():
    pair = _overlapping_pair(0.015)  # 1.5 m², above the default 1 m² tolerance
    shared = _geodesic_m2(_utm_box(99.985, 0, 100, 100))
    found = P.find_overlaps(pair)
    assert found[0][0]["plot_id"] == "B" and found[1][0]["plot_id"] == "A"
    assert found[0][0]["shared_m2"] == round(found[0][0]["shared_m2"], 2) == pytest.approx(shared, abs=0.005)
    assert P.find_overlaps(pair, tolerance_m2=shared - 0.01)[0] != []
    assert P.find_overlaps(pair, tolerance_m2=shared + 0.01) == [[], []]
    table = P.area_table(P.check_geometries(pair))  # area's default is the same 1 m²
    assert table["overlaps"].iloc[0][0]["plot_id"] == "B"
    wide = P.check_geometries(_overlapping_pair(0.05))  # 5 m²
    assert P.area_table(wide, overlap_tolerance_m2=10.0)["overlaps"].tolist() == [[], []]
    assert len(P.area_table(wide, overlap_tolerance_m2=4.0)["overlaps"].iloc[0]) == 1


def test_shared_area_is_rounded_to_square_centimetres():
    pair = _overlapping_pair(0.0777)
    shared = _geodesic_m2(_utm_box(99.9223, 0, 100, 100))
    assert round(shared, 3) != round(shared, 2)  # the rounding is visible on this pair
    assert P.find_overlaps(pair)[0][0]["shared_m2"] == round(shared, 2)


def test_area_table_of_plots_in_crs84_is_labelled_wgs84(tmp_path):
    # GeoParquet's default CRS is OGC:CRS84 (WGS84, longitude first); it used to end in a geopandas CRS-mismatch
    # traceback when the table was built.
    path = tmp_path / "plots.parquet"
    _lonlat_frame("OGC:CRS84").to_parquet(path)
    table = P.area_table(P.load_plots(path))
    assert table.crs.to_epsg() == 4326
    expected = P.area_table(P.check_geometries(_lonlat_frame()))
    assert table["area_mu"].tolist() == expected["area_mu"].tolist()


def test_area_table_rows_of_rejected_plots():
    gdf = P.check_geometries(_frame([_utm_box(0, 0, 100, 100), shapely.Polygon(), _utm_box(200, 0, 230, 50)],
                                    ids=["A", "E", "C"]))
    table = P.area_table(gdf)
    assert table.crs.to_epsg() == 4326
    assert table["perimeter_m"].dtype == float and np.isnan(table["perimeter_m"].iloc[1])
    assert table["geometry_reason"].tolist() == ["", "empty geometry", ""]
    assert table["area_mu"].iloc[2] == pytest.approx(_geodesic_m2(_utm_box(200, 0, 230, 50)) / M2_PER_MU, rel=1e-9)
    assert pd.isna(table["area_ha"].iloc[1]) and table["overlaps"].iloc[1] == []
