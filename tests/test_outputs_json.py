"""GeoJSON layers are encoded by orjson (:func:`agricredit.outputs.json_bytes`): the text json writes, and valid."""

import json
import math

import geopandas as gpd
import pytest
import shapely

from agricredit.outputs import OutputError, json_bytes, write_plot_table


def _compact(value):
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


@pytest.mark.parametrize("value", [
    {"type": "Feature", "properties": {"plot_id": "P1", "名称": "小麦", "light": None, "ok": True, "n": 3},
     "geometry": {"type": "Polygon", "coordinates": [[[116.123456, 39.1], [116.2, 39.1], [116.2, 39.2],
                                                      [116.123456, 39.1]]]}},
    [0.1 + 0.2, -0.0, 1e16, 1.5e22, 5e-324, 0.0001, 123456789012345.6, 2**63 - 1, -2**63],
    {"text": "tab\there, quote \" backslash \\ control \x1f line sep \u2028 emoji \U0001F33E"},
])
def test_the_text_json_writes(value):
    assert json_bytes(value) == _compact(value)


def test_small_floats_are_decimals_of_the_same_number():
    assert json_bytes([1e-05]) == b"[0.00001]"  # json writes 1e-05
    assert json.loads(json_bytes([1e-05, 2.5e-07, 9.99e-05])) == [1e-05, 2.5e-07, 9.99e-05]


def test_integers_past_64_bits_fall_back_to_json():
    value = {"big": 2**70, "small": 1}
    assert json_bytes(value) == _compact(value)


def test_a_layer_is_the_collection_json_writes(tmp_path):
    plots = gpd.GeoDataFrame({"plot_id": ["B", "A"], "reason_codes": [["X", "Y"], []], "mu": [1.5, math.nan]},
                             geometry=[shapely.box(116.0, 39.0, 116.001, 39.001), None], crs="EPSG:4326")
    path = tmp_path / "plots.geojson"
    write_plot_table(plots, path, decimals=6)
    document = json.loads(path.read_bytes())
    assert path.read_bytes() == _compact(document)
    assert [f["properties"] for f in document["features"]] == [
        {"plot_id": "B", "reason_codes": '["X", "Y"]', "mu": 1.5}, {"plot_id": "A", "reason_codes": "[]", "mu": None}]
    ring = document["features"][0]["geometry"]["coordinates"][0]
    assert ring == [[116.001, 39.0], [116.001, 39.001], [116.0, 39.001], [116.0, 39.0], [116.001, 39.0]]  # CCW
    assert document["features"][1]["geometry"] is None


def test_a_text_sequence_holds_one_feature_per_record(tmp_path):
    plots = gpd.GeoDataFrame({"plot_id": ["A", "B"]}, geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 1, 2, 2)],
                             crs="EPSG:4326")
    path = tmp_path / "plots.geojsonl"
    write_plot_table(plots, path, decimals=6)
    records = path.read_bytes().split(b"\n")
    assert records[-1] == b"" and all(r.startswith(b"\x1e") for r in records[:-1])
    assert [json.loads(r[1:])["properties"]["plot_id"] for r in records[:-1]] == ["A", "B"]


def test_a_coordinate_that_is_not_a_number_is_refused(tmp_path):
    broken = shapely.Polygon([(0, 0), (1, 0), (1, math.nan), (0, 0)])
    plots = gpd.GeoDataFrame({"plot_id": ["A"]}, geometry=[broken], crs="EPSG:4326")
    with pytest.raises(OutputError, match="not a finite number"):
        write_plot_table(plots, tmp_path / "plots.geojson", decimals=6)
    assert not (tmp_path / "plots.geojson").exists()
