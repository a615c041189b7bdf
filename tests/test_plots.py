"""Plot ingestion, GCJ-02/BD-09 conversion, validity rules, geodesic area and overlaps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
import shapely.ops
from hypothesis import given, settings
from hypothesis import strategies as st

from agricredit import plots as P
from agricredit.errors import CRSError, SchemaError

GEOD = pyproj.Geod(ellps="WGS84")

# Published test vectors of eviltransform (python/test.py): WGS84 lat, lon → GCJ-02 lat, lon.
EVILTRANSFORM_VECTORS = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),
]


def _lonlat(rows, a, b):
    return np.array([[r[a + 1], r[a]] for r in rows])


def test_wgs84_to_gcj02_matches_published_vectors():
    got = P.wgs84_to_gcj02(_lonlat(EVILTRANSFORM_VECTORS, 0, 1))
    np.testing.assert_allclose(got, _lonlat(EVILTRANSFORM_VECTORS, 2, 3), atol=1e-6)


@pytest.mark.parametrize("forward,inverse", [(P.wgs84_to_gcj02, P.gcj02_to_wgs84), (P.wgs84_to_bd09, P.bd09_to_wgs84)])
def test_round_trip_better_than_half_a_metre(forward, inverse):
    rng = np.random.default_rng(3)
    wgs = np.column_stack([rng.uniform(74, 134, 2000), rng.uniform(18, 53, 2000)])
    shifted = forward(wgs)
    _, _, offset = GEOD.inv(wgs[:, 0], wgs[:, 1], shifted[:, 0], shifted[:, 1])
    assert np.median(offset) > 100  # the offsets are hundreds of metres
    back = inverse(shifted)
    _, _, error = GEOD.inv(wgs[:, 0], wgs[:, 1], back[:, 0], back[:, 1])
    assert error.max() < 0.5
    assert error.max() < 1e-3  # in fact millimetres


def test_outside_china_coordinates_are_unchanged():
    paris = np.array([[2.35, 48.85]])
    assert np.array_equal(P.wgs84_to_gcj02(paris), paris)
    assert np.array_equal(P.bd09_to_wgs84(paris), paris)


def _ellipsoid_quadrangle_area(lat1, lat2, dlon):
    """Analytic area between two parallels and two meridians on the WGS84 ellipsoid (m²)."""
    a, f = 6378137.0, 1 / 298.257223563
    b, e = a * (1 - f), math.sqrt(f * (2 - f))

    def q(lat):
        s = math.sin(math.radians(lat))
        return s / (1 - e * e * s * s) + math.log((1 + e * s) / (1 - e * s)) / (2 * e)

    return b * b * math.radians(dlon) / 2 * (q(lat2) - q(lat1))


def _gdf(geoms, crs="EPSG:4326", ids=None):
    ids = ids if ids is not None else [f"P{i}" for i in range(len(geoms))]
    return gpd.GeoDataFrame({"plot_id": ids}, geometry=list(geoms), crs=crs)


@pytest.mark.parametrize("lat", [0.0, 30.0, 60.0])
def test_one_hectare_square_matches_analytic_area(lat):
    dlat = 100 / 110_574.0
    # Longitude span that makes the analytic quadrangle exactly 1 ha.
    dlon = 1.0 * 10_000 / _ellipsoid_quadrangle_area(lat, lat + dlat, 1.0)
    box = shapely.box(120.0, lat, 120.0 + dlon, lat + dlat)
    table = P.area_table(P.check_geometries(_gdf([box])))
    assert table["area_ha"].iloc[0] == pytest.approx(1.0, rel=1e-4)
    assert table["area_mu"].iloc[0] == pytest.approx(15.0, rel=1e-4)
    assert table["perimeter_m"].iloc[0] == pytest.approx(400.0, rel=1e-2)


def test_plot_in_utm_has_same_area_as_in_wgs84():
    utm = shapely.Polygon([(500000, 3500000), (500180, 3500020), (500150, 3500160), (500010, 3500120)])
    a = P.area_table(P.check_geometries(_gdf([utm], crs="EPSG:32650")))
    wgs = _gdf([utm], crs="EPSG:32650").to_crs(4326)
    b = P.area_table(P.check_geometries(wgs))
    assert a["area_ha"].iloc[0] == pytest.approx(b["area_ha"].iloc[0], rel=1e-4)
    # and the geodesic area of the WGS84 ring, straight from pyproj
    direct, _ = GEOD.geometry_area_perimeter(shapely.orient_polygons(wgs.geometry.iloc[0]))
    assert a["area_ha"].iloc[0] * 10_000 == pytest.approx(abs(direct), rel=1e-4)


@settings(max_examples=30, deadline=None)
@given(st.floats(-60, 60), st.floats(-170, 170), st.floats(1e-4, 0.01), st.floats(1e-4, 0.01), st.floats(0.1, 0.9))
def test_area_is_additive_and_orientation_free(lat, lon, dlat, dlon, cut):
    whole = shapely.box(lon, lat, lon + dlon, lat + dlat)
    left = shapely.box(lon, lat, lon + cut * dlon, lat + dlat)
    right = shapely.box(lon + cut * dlon, lat, lon + dlon, lat + dlat)
    areas, _ = P.geodesic_area_perimeter(np.array([whole, left, right, whole.reverse()]))
    # Not exactly additive: a long geodesic edge bulges poleward more than its two halves.
    assert areas[0] == pytest.approx(areas[1] + areas[2], rel=1e-5)
    assert areas[3] == pytest.approx(areas[0], rel=1e-12)


def test_validity_rules_name_each_bad_plot():
    square = shapely.box(0, 0, 0.001, 0.001)
    bowtie = shapely.Polygon([(0, 0), (0.001, 0.001), (0.001, 0), (0, 0.001)])
    # A square with a tiny bowtie on its left side: self-intersecting, repair changes the area by 0.1 %.
    spike = shapely.Polygon([(0, 0), (0.001, 0), (0.001, 0.001), (0, 0.001), (0, 0.0006), (-0.00001, 0.0004),
                             (-0.00001, 0.0006), (0, 0.0004)])
    across = shapely.Polygon([(179.999, 0), (-179.999, 0), (-179.999, 0.001), (179.999, 0.001)])
    gdf = _gdf(
        [square, bowtie, spike, shapely.Polygon(), shapely.Point(0, 0), across, square, square, square],
        ids=["ok", "bow", "spike", "empty", "point", "am", "dup", "dup", None],
    )
    checked = P.check_geometries(gdf)
    status = list(checked["geometry_status"])
    assert status == ["OK", "GEOMETRY_INVALID", "GEOMETRY_REPAIRED", "GEOMETRY_EMPTY", "GEOMETRY_NOT_POLYGON",
                      "GEOMETRY_ANTIMERIDIAN", "DUPLICATE_ID", "DUPLICATE_ID", "MISSING_ID"]
    assert "Self-intersection" in checked["geometry_reason"].iloc[1]
    assert checked.geometry.iloc[2].is_valid
    assert list(P.accepted(checked)["plot_id"]) == ["ok", "spike"]


def test_overlaps_found_with_shared_geodesic_area():
    a = shapely.box(500000, 3500000, 500100, 3500100)
    b = shapely.box(500050, 3500000, 500150, 3500100)  # shares 50 × 100 m with a
    c = shapely.box(500150, 3500000, 500250, 3500100)  # touches b along an edge only
    gdf = P.check_geometries(_gdf([a, b, c], crs="EPSG:32650"))
    overlaps = P.find_overlaps(gdf)
    assert [o["plot_id"] for o in overlaps[0]] == ["P1"]
    assert [o["plot_id"] for o in overlaps[1]] == ["P0"]
    assert overlaps[2] == []
    shared = _gdf([a.intersection(b)], crs="EPSG:32650").to_crs(4326).geometry.iloc[0]
    expected, _ = GEOD.geometry_area_perimeter(shapely.orient_polygons(shared))
    assert overlaps[0][0]["shared_m2"] == pytest.approx(abs(expected), abs=0.01)
    assert overlaps[0][0]["shared_m2"] == pytest.approx(5000, rel=2e-3)  # UTM scale factor near the meridian


@pytest.mark.parametrize("suffix,driver", [(".geojson", None), (".gpkg", "GPKG"), (".shp", "ESRI Shapefile"), (".parquet", None)])
def test_every_file_format_reads_the_same(tmp_path, suffix, driver):
    gdf = _gdf([shapely.box(116.0, 40.0, 116.001, 40.001)], ids=["A7"])
    gdf["farmer"] = ["x"]
    path = tmp_path / f"plots{suffix}"
    if suffix == ".parquet":
        gdf.to_parquet(path)
    else:
        gdf.to_file(path, driver=driver)
    read = P.load_plots(path)
    assert list(read["plot_id"]) == ["A7"]
    assert pyproj.CRS(read.crs).equals(pyproj.CRS(4326))



def test_a_shapefiles_borrower_column_cut_to_ten_characters_is_read_as_borrower_id(tmp_path):
    gdf = gpd.GeoDataFrame({"parcel_number": ["A7", "A8"], "borrower_id": ["B1", None]},
                           geometry=[shapely.box(116.0, 39.0, 116.001, 39.001)] * 2, crs=4326)
    with pytest.warns(UserWarning, match="truncated"):
        gdf.to_file(tmp_path / "plots.shp", driver="ESRI Shapefile")
    read = P.read_plots(tmp_path / "plots.shp", id_field="parcel_number")
    assert list(read.columns) == ["plot_id", "borrower_id", "geometry"]
    assert read["plot_id"].tolist() == ["A7", "A8"] and read["borrower_id"].isna().tolist() == [False, True]
    assert read["borrower_id"].iloc[0] == "B1"
    # Other formats keep their names as they are: a GeoPackage with a column ``borrower_i`` has no borrower_id.
    gdf.rename(columns={"borrower_id": "borrower_i"}).to_file(tmp_path / "plots.gpkg", driver="GPKG")
    assert "borrower_id" not in P.read_plots(tmp_path / "plots.gpkg", id_field="parcel_number").columns

def test_id_field_and_missing_crs_errors(tmp_path):
    gdf = gpd.GeoDataFrame({"parcel": [12.0]}, geometry=[shapely.box(0, 0, 1, 1)])
    path = tmp_path / "nocrs.gpkg"
    gdf.to_file(path, driver="GPKG")
    with pytest.raises(CRSError, match="nocrs.gpkg"):
        P.read_plots(path, id_field="parcel")
    gdf.set_crs(4326).to_file(tmp_path / "ok.gpkg", driver="GPKG")
    assert list(P.read_plots(tmp_path / "ok.gpkg", id_field="parcel")["plot_id"]) == ["12"]
    with pytest.raises(SchemaError, match="plot_id"):
        P.read_plots(tmp_path / "ok.gpkg")


def test_gcj02_plots_are_moved_to_wgs84(tmp_path):
    wgs = shapely.box(116.40, 39.90, 116.401, 39.901)
    gcj = shapely.transform(wgs, P.wgs84_to_gcj02)
    path = tmp_path / "gcj.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"plot_id": "G1"}, "geometry": shapely.geometry.mapping(gcj)}]}))
    read = P.load_plots(path, plots_crs="gcj02")
    assert read.geometry.iloc[0].equals_exact(wgs, tolerance=1e-8)


def test_projected_coordinates_in_a_crs_less_geojson_and_an_empty_file_are_clear_errors(tmp_path):
    from agricredit.errors import CRSError, InputError
    from agricredit.plots import read_plots

    utm = tmp_path / "utm.geojson"
    utm.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"plot_id": "P1"},
        "geometry": {"type": "Polygon", "coordinates": [[[443000, 4175000], [443100, 4175000], [443100, 4175100],
                                                           [443000, 4175000]]]}}]}), encoding="utf-8")
    with pytest.raises(CRSError, match="utm.geojson: coordinates are not longitude/latitude"):
        read_plots(utm)
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}', encoding="utf-8")
    with pytest.raises(InputError, match="empty.geojson: no plots in the file"):
        read_plots(empty)


SAMPLE_PLOTS = Path(__file__).resolve().parents[1] / "sample_tiles" / "plots.geojson"


def cut_into_files(folder: Path) -> Path:
    """The sample's plots cut into a folder of three files in three formats (rows 0-99, 100-199, 200-), with a
    file and a subfolder that are not plot files beside them."""
    raw = gpd.read_file(SAMPLE_PLOTS)
    folder.mkdir()
    raw.iloc[:100].to_file(folder / "a-north.geojson", driver="GeoJSON")
    raw.iloc[100:200].to_parquet(folder / "b-middle.parquet")
    raw.iloc[200:].to_file(folder / "c-south.gpkg", driver="GPKG")
    (folder / "README.txt").write_text("township exports", encoding="utf-8")
    (folder / "old").mkdir()
    raw.iloc[:5].to_file(folder / "old" / "a-north.geojson", driver="GeoJSON")
    return folder


def test_a_folder_of_plot_files_reads_as_the_file_they_were_cut_from(tmp_path):
    folder = cut_into_files(tmp_path / "plots")
    whole, parts = P.load_plots(SAMPLE_PLOTS), P.load_plots(folder)
    assert list(parts.columns) == list(whole.columns) and parts.crs == whole.crs
    assert parts.drop(columns="geometry").equals(whole.drop(columns="geometry"))
    assert parts.geometry.to_wkb().tolist() == whole.geometry.to_wkb().tolist()
    # A row is named by its file and its place there.
    assert [(Path(name).name, count) for name, count in parts.attrs["files"]] == [
        ("a-north.geojson", 100), ("b-middle.parquet", 100), ("c-south.gpkg", len(whole) - 200)]
    assert [(Path(n).name, r) for n, r in map(lambda row: P.plot_record(parts, row), (0, 99, 100, 199, 200))] == [
        ("a-north.geojson", "row 0"), ("a-north.geojson", "row 99"), ("b-middle.parquet", "row 0"),
        ("b-middle.parquet", "row 99"), ("c-south.gpkg", "row 0")]
    assert P.plot_record(whole, 150) == (str(SAMPLE_PLOTS), "row 150")


def test_a_folder_of_plots_is_refused_in_one_line_naming_the_file_at_fault(tmp_path):
    from agricredit.errors import CorruptInputError, InputNotFoundError

    folder = cut_into_files(tmp_path / "plots")
    middle = folder / "b-middle.parquet"
    gpd.read_parquet(middle).to_crs(32618).to_parquet(middle)
    with pytest.raises(CRSError, match="b-middle.parquet: the plot files of a folder must share one CRS"):
        P.read_plots(folder)
    middle.write_bytes(b"PAR1 cut short")
    with pytest.raises(CorruptInputError, match="b-middle.parquet: cannot read plots"):
        P.read_plots(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no plots here", encoding="utf-8")
    with pytest.raises(InputNotFoundError, match="empty: no plot file in the folder"):
        P.read_plots(empty)



def test_a_plot_without_an_id_in_a_folder_is_named_by_its_file_and_its_own_row(tmp_path):
    raw = gpd.read_file(SAMPLE_PLOTS)
    raw.loc[[3, 107], "plot_id"] = None
    folder = tmp_path / "plots"
    folder.mkdir()
    raw.iloc[:100].to_file(folder / "a-north.geojson", driver="GeoJSON")
    raw.iloc[100:].to_parquet(folder / "b-south.parquet")
    assert P.rejected_ids(P.check_geometries(P.load_plots(folder)))["MISSING_ID"] == [
        "a-north.geojson: row 3", "b-south.parquet: row 7"]
    # One file (or a folder of one): its row, as before.
    raw.to_parquet(tmp_path / "whole.parquet")
    assert P.rejected_ids(P.check_geometries(P.load_plots(tmp_path / "whole.parquet")))["MISSING_ID"] == [
        "row 3", "row 107"]

# --------------------------------------------------------------------------- claims: outline accuracy, repeats, NaN

UTM50 = pyproj.Transformer.from_crs(32650, 4326, always_xy=True).transform  # North China Plain, zone 50N
LENGTH = 58.0  # m, the shared edge


def _strip_pair(band_m: float) -> gpd.GeoDataFrame:
    """Two 58 m x 60 m neighbours whose outlines overlap in a band ``band_m`` wide along their shared edge."""
    x0, y0 = 400_000.0, 4_000_000.0
    first = shapely.box(x0, y0, x0 + LENGTH, y0 + 60.0)
    second = shapely.box(x0, y0 + 60.0 - band_m, x0 + LENGTH, y0 + 120.0 - band_m)
    wgs = [shapely.ops.transform(UTM50, g) for g in (first, second)]
    return gpd.GeoDataFrame({"plot_id": ["A", "B"], "borrower_id": ["B1", "B2"]}, geometry=wgs, crs=4326)


def test_a_three_metre_band_is_174_square_metres_as_drawn():
    found = P.find_overlaps(_strip_pair(3.0))
    assert found[0][0]["shared_m2"] == pytest.approx(3.0 * LENGTH, rel=2e-3)  # UTM scale 0.9996 near the meridian


@pytest.mark.parametrize("accuracy", [1.0, 2.5])
@pytest.mark.parametrize("excess", [-0.5, 0.0, 0.5, 4.0])
def test_overlap_after_shrinking_by_the_outline_accuracy(accuracy, excess):
    # After a negative buffer of a on both, the band of width w keeps (w - 2a) x (58 - 2a), or nothing.
    band = 2 * accuracy + excess
    found = P.find_overlaps(_strip_pair(band), outline_accuracy_m=accuracy, tolerance_m2=0.0)
    if excess <= 0:
        assert found == [[], []]
    else:
        expected = excess * (LENGTH - 2 * accuracy)
        assert found[0][0]["shared_m2"] == pytest.approx(expected, rel=5e-3)


def test_shrink_outlines_uses_metres_in_the_plots_utm_zone():
    square = shapely.ops.transform(UTM50, shapely.box(400_000, 4_000_000, 400_100, 4_000_100))
    shrunk = P.shrink_outlines(np.array([square, None], dtype=object), 10.0)
    area, _ = P.geodesic_area_perimeter(shrunk[:1])
    assert area[0] == pytest.approx(80.0 * 80.0, rel=2e-3) and shrunk[1] is None
    thin = shapely.ops.transform(UTM50, shapely.box(400_000, 4_000_000, 400_004, 4_000_100))
    assert P.shrink_outlines(np.array([thin], dtype=object), 2.5)[0].is_empty  # narrower than 2 x 2.5 m


def test_repeated_area_makes_a_borrowers_plots_sum_to_their_union():
    x0, y0 = 400_000.0, 4_000_000.0
    boxes = {"P1": (0, 0, 100, 100), "P2": (50, 0, 150, 100), "P3": (0, 50, 150, 80), "P9": (0, 0, 100, 100)}
    geoms = [shapely.ops.transform(UTM50, shapely.box(x0 + a, y0 + b, x0 + c, y0 + d)) for a, b, c, d in boxes.values()]
    gdf = gpd.GeoDataFrame({"plot_id": list(boxes), "borrower_id": ["B1", "B1", "B1", "B2"]}, geometry=geoms, crs=4326)
    repeated = P.repeated_area_m2(gdf)
    area, _ = P.geodesic_area_perimeter(gdf.geometry.values)
    union, _ = P.geodesic_area_perimeter(np.array([shapely.union_all(geoms[:3])], dtype=object))
    assert (area[:3] - repeated[:3]).sum() == pytest.approx(union[0], rel=1e-6)
    # By hand in metres: P2 repeats 50 x 100 of P1; P3 (150 x 30) lies wholly inside P1 ∪ P2; B2's P9 repeats nothing.
    np.testing.assert_allclose(repeated, [0.0, 5000.0, 4500.0, 0.0], rtol=2e-3)


def test_non_finite_coordinates_are_rejected_not_a_geos_error():
    good = shapely.box(116.0, 39.0, 116.001, 39.001)
    bad = shapely.Polygon([(116.0, 39.0), (math.nan, 39.0), (116.001, 39.001), (116.0, 39.001)])
    inf = shapely.Polygon([(116.0, 39.0), (math.inf, 39.0), (116.001, 39.001), (116.0, 39.001)])
    gdf = gpd.GeoDataFrame({"plot_id": ["A", "B", "C"]}, geometry=[good, bad, inf], crs=4326)
    checked = P.check_geometries(gdf)
    assert list(checked["geometry_status"]) == ["OK", P.GEOMETRY_NOT_FINITE, P.GEOMETRY_NOT_FINITE]
    assert checked.geometry.iloc[1] is None
    table = P.area_table(checked)
    assert math.isnan(table["area_mu"].iloc[1]) and table["area_mu"].iloc[0] > 0
