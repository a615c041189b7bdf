"""``agricredit area`` end to end: input forms, output formats, exit code 3 on rejected plots."""

from __future__ import annotations

import json

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from agricredit.cli.main import cli

SQUARE = shapely.box(500000, 3500000, 500100, 3500100)
SHIFTED = shapely.box(500050, 3500000, 500150, 3500100)
BOWTIE = shapely.Polygon([(500000, 3500000), (500100, 3500100), (500100, 3500000), (500000, 3500100)])


def _features(geoms, ids):
    wgs = gpd.GeoSeries(geoms, crs="EPSG:32650").to_crs(4326)
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"code": i}, "geometry": shapely.geometry.mapping(g)} for g, i in zip(wgs, ids)]}


def test_area_from_stdin_to_geojson_stdout_with_overlaps():
    text = json.dumps(_features([SQUARE, SHIFTED], ["A", "B"]))
    result = CliRunner().invoke(cli, ["area", "-", "-o", "-", "--id-field", "code"], input=text)
    assert result.exit_code == 0, result.output
    features = json.loads(result.stdout)["features"]
    props = {f["properties"]["plot_id"]: f["properties"] for f in features}
    assert props["A"]["area_ha"] == pytest.approx(1.0, rel=2e-3)
    assert props["A"]["area_mu"] == pytest.approx(15 * props["A"]["area_ha"])
    assert all(not isinstance(v, (list, dict)) for p in props.values() for v in p.values())  # flat, as in QGIS
    assert json.loads(props["A"]["overlaps"])[0]["plot_id"] == "B"
    assert json.loads(props["B"]["overlaps"])[0]["shared_m2"] == pytest.approx(5000, rel=2e-3)


@pytest.mark.parametrize("name", ["out.csv", "out.parquet"])
def test_area_tables_and_exit_code_3_for_rejected(tmp_path, name):
    src = tmp_path / "plots.gpkg"
    gpd.GeoDataFrame({"plot_id": ["A", "BAD", "A2"]}, geometry=[SQUARE, BOWTIE, SHIFTED], crs="EPSG:32650").to_file(src)
    out = tmp_path / name
    result = CliRunner().invoke(cli, ["area", str(src), "-o", str(out)])
    assert result.exit_code == 3
    assert "rejected GEOMETRY_INVALID (1): BAD" in result.stderr
    table = pd.read_csv(out) if name.endswith(".csv") else gpd.read_parquet(out)
    assert list(table["geometry_status"]) == ["OK", "GEOMETRY_INVALID", "OK"]
    assert pd.isna(table["area_ha"].iloc[1])
    assert json.loads(table["overlaps"].iloc[0])[0]["plot_id"] == "A2"


def test_area_rejects_unknown_output_type(tmp_path):
    src = tmp_path / "p.geojson"
    src.write_text(json.dumps(_features([SQUARE], ["A"])))
    result = CliRunner().invoke(cli, ["area", str(src), "-o", str(tmp_path / "out.xlsx"), "--id-field", "code"])
    assert result.exit_code == 1 and "unknown output type" in result.stderr


def test_area_with_a_nan_coordinate_lists_the_plot_instead_of_a_traceback(tmp_path):
    document = json.loads(json.dumps(_features([SQUARE, SHIFTED], ["A", "B"])))
    document["features"][1]["geometry"]["coordinates"][0][1][0] = float("nan")
    (tmp_path / "plots.geojson").write_text(json.dumps(document), encoding="utf-8")  # NaN, as json.dumps writes it
    result = CliRunner().invoke(cli, ["area", str(tmp_path / "plots.geojson"), "-o", str(tmp_path / "out.csv"),
                                      "--id-field", "code"])
    assert result.exit_code == 3, result.output
    assert "rejected GEOMETRY_NOT_FINITE (1): B" in result.stderr
    table = pd.read_csv(tmp_path / "out.csv")
    assert list(table["geometry_status"]) == ["OK", "GEOMETRY_NOT_FINITE"]
