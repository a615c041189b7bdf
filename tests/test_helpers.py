"""Library helpers shared by the commands (and assess): units, crop aliases, declared crops, labels,
repair threshold, area in mu, season options and table, folder hashes, crop-model inputs."""

from __future__ import annotations

import datetime
import hashlib
import json
from decimal import Decimal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

from agricredit import acquisitions, crop_model, season, series, units
from agricredit import plots as P
from agricredit.errors import ModelError, SchemaError
from agricredit.outputs import sha256_file, sha256_path, write_plot_dates, write_plot_table
from agricredit.policy import load_policy
from agricredit.seeds import crop_aliases, load_crops
from agricredit.tables import declared_crop_by_plot, read_declarations, read_labels
from season_synth import SUMMER_DATES, Plot, synth_table

GEOD = pyproj.Geod(ellps="WGS84")


# --------------------------------------------------------------------------- units


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2))
def test_mu_m2_round_trip_and_exact_definition(mu):
    value = float(mu)
    assert units.m2_to_mu(units.mu_to_m2(value)) == pytest.approx(value, rel=1e-15)
    assert units.mu_to_m2(value) == pytest.approx(float(mu * 10000 / 15), rel=1e-15)


def test_unit_constants():
    assert units.MU_PER_HA == 15 and units.mu_to_m2(1.5) == 1000.0 and units.m2_to_mu(10_000.0) == 15.0
    assert units.M2_PER_MU == pytest.approx(666.6667, abs=1e-4)
    assert P.MU_PER_HA == units.MU_PER_HA  # one constant, re-exported for zonal


# --------------------------------------------------------------------------- crops and declarations


def test_crop_aliases_cover_codes_and_chinese_names():
    aliases = crop_aliases()
    assert aliases["玉米"] == "maize" and aliases["maize"] == "maize"
    assert set(aliases.values()) == set(load_crops())
    assert {c.name_zh for c in load_crops().values()} <= set(aliases)


def _declarations(tmp_path, rows, encoding="utf-8"):
    path = tmp_path / "declarations.csv"
    path.write_text("borrower_id,plot_id,declared_crop,declared_area,area_unit\n" + "\n".join(rows) + "\n",
                    encoding=encoding)
    return read_declarations(path, known_crops=crop_aliases())


def test_declared_crop_by_plot_translates_aliases_and_uses_the_plot_borrower(tmp_path):
    frame = _declarations(tmp_path, ["B1,P1,玉米,3,亩", "B2,P2, Soybean ,0.2,ha", "B2,P1,wheat,3,mu", "B3,P9,rice,1,mu"],
                          encoding="gbk")
    assert declared_crop_by_plot(frame, {"P1": "B2"}) == {"P1": "wheat", "P2": "soybean", "P9": "rice"}
    assert declared_crop_by_plot(frame, {"P1": "B1"}, plot_ids=["P1", "P2"]) == {"P1": "maize", "P2": "soybean"}
    # Declarations of plots outside the run do not matter.
    assert declared_crop_by_plot(frame, plot_ids=["P2"]) == {"P2": "soybean"}


@pytest.mark.parametrize("borrower_of,why", [(None, "borrower_id column"), ({"P1": "B7"}, "not among them")])
def test_plot_declared_by_several_borrowers_needs_its_borrower(tmp_path, borrower_of, why):
    frame = _declarations(tmp_path, ["B1,P1,maize,3,mu", "B2,P1,wheat,3,mu"])
    with pytest.raises(SchemaError, match=why) as caught:
        declared_crop_by_plot(frame, borrower_of)
    message = str(caught.value)
    assert "declarations.csv" in message and "row 3" in message and "P1" in message
    assert "B1" not in message and "B2" not in message


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize("fmt", ["gbk", "xlsx", "parquet"])
def test_read_labels_any_format(tmp_path, fmt):
    rows = [("007", "玉米", "甲"), ("P2", "", "乙"), ("P3", "Wheat", "乙")]
    if fmt == "gbk":
        path = tmp_path / "labels.txt"
        path.write_text("Plot_ID,Crop,group\n" + "".join(",".join(r) + "\n" for r in rows), encoding="gbk")
    elif fmt == "xlsx":
        import openpyxl

        path = tmp_path / "labels.xlsx"
        workbook = openpyxl.Workbook()
        for row in [("Plot_ID", "Crop", "group"), *rows]:
            workbook.active.append(row)
        workbook.save(path)
    else:
        path = tmp_path / "labels.bin"
        pd.DataFrame(rows, columns=["Plot_ID", "Crop", "group"]).to_parquet(path)
    frame = read_labels(path, "Crop")
    assert list(frame["plot_id"]) == ["007", "P2", "P3"] and list(frame["source_row"]) == [2, 3, 4]
    labels, groups = crop_model.training_labels(frame, "Crop", "Group")
    assert labels == {"007": "maize", "P3": "wheat"}  # 玉米 is maize; an empty label leaves the plot unlabelled
    assert groups == {"007": "甲", "P2": "乙", "P3": "乙"}


def test_read_labels_errors(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("plot_id,crop\nP1,maize\nP1,wheat\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="duplicate plot_id"):
        read_labels(path)
    with pytest.raises(SchemaError, match="required column is missing"):
        read_labels(path, "label")
    with pytest.raises(SchemaError, match="no group column"):
        crop_model.training_labels(pd.DataFrame({"plot_id": ["P1"], "crop": ["maize"]}), "crop", "borrower_id")


# --------------------------------------------------------------------------- plots


def _gdf(geoms, ids):
    return gpd.GeoDataFrame({"plot_id": ids}, geometry=geoms, crs="EPSG:4326")


def test_repair_threshold_is_a_parameter():
    # A square with a tiny bowtie on its left side: repair changes the area by 0.1 %.
    spike = shapely.Polygon([(0, 0), (0.001, 0), (0.001, 0.001), (0, 0.001), (0, 0.0006), (-0.00001, 0.0004),
                             (-0.00001, 0.0006), (0, 0.0004)])
    assert P.check_geometries(_gdf([spike], ["s"]))["geometry_status"].iloc[0] == "GEOMETRY_REPAIRED"
    strict = P.check_geometries(_gdf([spike], ["s"]), repair_max_area_change=0.0005)
    assert strict["geometry_status"].iloc[0] == "GEOMETRY_INVALID"
    assert P.check_geometries(_gdf([spike], ["s"]), repair_max_area_change=0.002)["geometry_status"].iloc[0] == \
        "GEOMETRY_REPAIRED"
    assert load_policy(None).area.repair_max_area_change == P.REPAIR_MAX_AREA_CHANGE


def test_area_mu_is_geodesic_and_keyed_by_plot_id():
    boxes = [shapely.box(116.0, 40.0, 116.001, 40.001), shapely.box(10.0, -30.0, 10.002, -29.999)]
    utm = gpd.GeoSeries(boxes, crs=4326).to_crs(32650)
    areas = P.area_mu(gpd.GeoDataFrame({"plot_id": ["a", "b"]}, geometry=utm))
    assert list(areas.index) == ["a", "b"] and areas.name == "area_mu"
    expected = [abs(GEOD.geometry_area_perimeter(shapely.orient_polygons(b))[0]) / 10_000 * 15 for b in boxes]
    np.testing.assert_allclose(areas.to_numpy(), expected, rtol=1e-6)


# --------------------------------------------------------------------------- outputs


def test_sha256_path_of_file_and_folder(tmp_path):
    product = tmp_path / "S2A.SAFE"
    (product / "GRANULE").mkdir(parents=True)
    (product / "MTD.xml").write_bytes(b"<x/>")
    (product / "GRANULE" / "B04.jp2").write_bytes(b"red")
    assert sha256_path(product / "MTD.xml") == sha256_file(product / "MTD.xml")
    lines = "".join(f"{name}\0{hashlib.sha256(data).hexdigest()}\n"
                    for name, data in (("GRANULE/B04.jp2", b"red"), ("MTD.xml", b"<x/>")))
    assert sha256_path(product) == hashlib.sha256(lines.encode()).hexdigest()
    (product / "GRANULE" / "B04.jp2").write_bytes(b"RED")
    assert sha256_path(product) != hashlib.sha256(lines.encode()).hexdigest()



def test_sha256_path_of_a_shapefile_covers_its_attributes(tmp_path):
    shapefile = tmp_path / "plots.shp"
    gdf = gpd.GeoDataFrame({"plot_id": ["P1"], "holder": ["B1"]}, geometry=[shapely.box(0, 0, 0.001, 0.001)],
                           crs=4326)
    gdf.to_file(shapefile, driver="ESRI Shapefile")
    (tmp_path / "plots.txt").write_text("not a part", encoding="utf-8")  # same stem, not a Shapefile part
    gdf.to_file(tmp_path / "other.shp", driver="ESRI Shapefile")  # another Shapefile beside it
    parts = sorted(p for p in tmp_path.iterdir() if p.stem == "plots" and p.suffix != ".txt")
    assert [p.suffix for p in parts] == [".cpg", ".dbf", ".prj", ".shp", ".shx"]
    lines = "".join(f"{p.name}\0{hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in parts)
    assert sha256_path(shapefile) == hashlib.sha256(lines.encode()).hexdigest()
    before = sha256_path(shapefile)
    gdf.assign(holder=["B2"]).to_file(shapefile, driver="ESRI Shapefile")  # same outlines, another borrower
    assert (tmp_path / "plots.shp").read_bytes() == (tmp_path / "other.shp").read_bytes()
    assert sha256_path(shapefile) != before

def test_write_plot_dates_long_table_or_flat_geojson(tmp_path):
    from agricredit.schema import STATS_FIELDS

    plots = _gdf([shapely.box(0, 0, 0.001, 0.001), shapely.box(1, 1, 1.001, 1.001)], ["A", "B"])
    table = pd.DataFrame({"plot_id": ["A", "A"], "date": ["2023-06-01", "2023-06-06"], "ndvi_mean": [0.3, np.nan]})
    write_plot_dates(table, plots, tmp_path / "long.csv")
    long = pd.read_csv(tmp_path / "long.csv")
    assert long.shape == (2, len(STATS_FIELDS)) and list(long.columns) == [f.name for f in STATS_FIELDS]
    write_plot_dates(table, plots, tmp_path / "flat.geojson")
    features = json.loads((tmp_path / "flat.geojson").read_text())["features"]
    assert [(f["properties"]["plot_id"], f["properties"]["date"]) for f in features] == [("A", "2023-06-01"),
                                                                                         ("A", "2023-06-06")]
    assert features[1]["properties"]["ndvi_mean"] is None and features[0]["properties"]["ndvi_mean"] == 0.3
    assert features[0]["geometry"]["type"] == "Polygon"


# --------------------------------------------------------------------------- season


def test_season_options_from_policy_with_overrides():
    policy = load_policy(None)
    options = season.season_options(policy, min_valid_fraction=None, min_peers=9)
    assert options["min_valid_fraction"] == policy.satellite.min_valid_fraction and options["min_peers"] == 9
    import inspect

    assert set(options) <= set(inspect.signature(season.assess_season).parameters)
    assert season.season_options(policy, min_valid_fraction=0.3)["min_valid_fraction"] == 0.3


def test_season_plot_table_orders_columns_and_adds_wgs84_geometry(tmp_path):
    plots = [Plot("a", "maize"), Plot("b", "soybean")]
    result = season.assess_season(synth_table(plots, SUMMER_DATES), {"a": "maize", "b": "soybean"}, region="delmarva")
    a_box = shapely.box(117.002, 40.0, 117.003, 40.001)
    geoms = gpd.GeoDataFrame({"plot_id": ["b", "a"]}, geometry=[shapely.box(117.0, 40.0, 117.001, 40.001), a_box],
                             crs="EPSG:4326").to_crs(32650)
    table = season.season_plot_table(result, geoms)
    assert list(table.columns[:4]) == ["plot_id", "declared_crop", "flags", "best_crop"]
    assert table.crs.to_epsg() == 4326 and list(table["plot_id"]) == ["a", "b"]
    assert table.geometry.iloc[0].equals_exact(a_box, tolerance=1e-9)
    write_plot_table(table, tmp_path / "season.parquet")
    assert gpd.read_parquet(tmp_path / "season.parquet")["flags"].tolist() == list(table["flags"])


# --------------------------------------------------------------------------- crop model


@pytest.fixture(scope="module")
def small_model():
    rng = np.random.default_rng(4)
    plots = [Plot(f"{crop}{i}", crop, int(rng.integers(-8, 9)), cloudy=rng.random(len(SUMMER_DATES)) < 0.3)
             for crop in ("maize", "wheat") for i in range(8)]
    table = synth_table(plots, SUMMER_DATES, seed=4)
    model = crop_model.train_crop_model(table, {p.plot_id: p.crop for p in plots},
                                        {p.plot_id: p.plot_id[-1] for p in plots}, min_valid_fraction=0.6, n_splits=2)
    return model, table


def test_prediction_uses_the_card_min_valid_fraction(small_model):
    model, table = small_model
    proba = model.predict_proba(table)
    expected = model.predict_proba_series(series.plot_series(table, min_valid_fraction=0.6))
    pd.testing.assert_frame_equal(proba, expected)
    # Cloudy observations (valid 0.1, NDVI + 0.3) let in by a laxer run threshold would change the features ...
    lax = model.predict_proba_series(series.plot_series(table, min_valid_fraction=0.05))
    assert not np.allclose(lax.to_numpy(), proba.to_numpy())
    # ... so a mismatch is refused, naming both values.
    with pytest.raises(ModelError, match="0.6.*0.05"):
        model.predict_proba_series(series.plot_series(table, min_valid_fraction=0.05), min_valid_fraction=0.05)
    model.check_min_valid_fraction(0.6)


def test_spatial_blocks_group_neighbours():
    # Plots 300 m apart on a line in UTM 50N; blocks of 1 km.
    xs = 500_000 + 300 * np.arange(8) + 50
    gdf = gpd.GeoDataFrame({"plot_id": [f"p{i}" for i in range(8)]},
                           geometry=[shapely.box(x, 4_400_050, x + 50, 4_400_100) for x in xs], crs=32650).to_crs(4326)
    blocks = crop_model.spatial_blocks(gdf, 1000.0)
    expected = {f"p{i}": f"block:{int((x + 25) // 1000)}:4400" for i, x in enumerate(xs)}
    assert blocks == expected


def test_training_input_hashes(tmp_path):
    plots = tmp_path / "plots.geojson"
    plots.write_text("{}")
    tile = tmp_path / "NDVI_20230601.tif"
    tile.write_bytes(b"tile")
    acquisition = acquisitions.Acquisition(date=datetime.date(2023, 6, 1), paths=(tile,))
    hashes = crop_model.training_input_hashes([plots], [acquisition])
    assert hashes == {"plots.geojson": sha256_file(plots), "2023-06-01/NDVI_20230601.tif": sha256_file(tile)}
