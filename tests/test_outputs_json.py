"""GeoJSON layers (:func:`agricredit.outputs.json_bytes`) and audit records (:func:`agricredit.audit.record_line`)
are encoded by orjson: the text json writes."""

import json
import math
import random
import struct
from pathlib import Path

import geopandas as gpd
import orjson
import pytest
import shapely

from agricredit.audit import record_line
from agricredit.jsondata import _ORJSON_MAY_DIFFER
from agricredit import outputs
from agricredit.outputs import OutputError, json_bytes, write_plot_table


def _compact(value, sort_keys=False):
    """The standard library's compact JSON of ``value`` (sorted keys: the audit's canonical form)."""
    return json.dumps(value, sort_keys=sort_keys, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@pytest.mark.parametrize("value", [
    {"type": "Feature", "properties": {"plot_id": "P1", "名称": "小麦", "light": None, "ok": True, "n": 3},
     "geometry": {"type": "Polygon", "coordinates": [[[116.123456, 39.1], [116.2, 39.1], [116.2, 39.2],
                                                      [116.123456, 39.1]]]}},
    [0.1 + 0.2, -0.0, 1e16, 1.5e22, 5e-324, 0.0001, 123456789012345.6, 2**63 - 1, -2**63],
    {"text": "tab\there, quote \" backslash \\ control \x1f line sep \u2028 emoji \U0001F33E"},
])
def test_the_text_json_writes(value):
    assert json_bytes(value) == _compact(value).encode("utf-8")


def test_small_floats_are_decimals_of_the_same_number():
    assert json_bytes([1e-05]) == b"[0.00001]"  # json writes 1e-05
    assert json.loads(json_bytes([1e-05, 2.5e-07, 9.99e-05])) == [1e-05, 2.5e-07, 9.99e-05]


def test_integers_past_64_bits_fall_back_to_json():
    value = {"big": 2**70, "small": 1}
    assert json_bytes(value) == _compact(value).encode("utf-8")


def test_a_layer_is_the_collection_json_writes(tmp_path):
    plots = gpd.GeoDataFrame({"plot_id": ["B", "A"], "reason_codes": [["X", "Y"], []], "mu": [1.5, math.nan]},
                             geometry=[shapely.box(116.0, 39.0, 116.001, 39.001), None], crs="EPSG:4326")
    path = tmp_path / "plots.geojson"
    write_plot_table(plots, path, decimals=6)
    document = json.loads(path.read_bytes())
    assert path.read_bytes() == _compact(document).encode("utf-8")
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


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7])
def test_a_layer_written_in_batches_is_the_collection_json_writes(tmp_path, monkeypatch, capsys, n):
    # 3 features a batch: none, under, at, just past, at twice, just past twice and past two batches
    monkeypatch.setattr(outputs, "FEATURE_BATCH", 3)
    plots = gpd.GeoDataFrame({"plot_id": [f"P{i}" for i in range(n)], "codes": [["X"] * (i % 2) for i in range(n)],
                              "mu": [i + 0.5 for i in range(n)]},
                             geometry=[shapely.box(116 + i / 1000, 39, 116.0005 + i / 1000, 39.0005) for i in range(n)],
                             crs="EPSG:4326")
    expected = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": shapely.geometry.mapping(shapely.orient_polygons(geometry)),
         "properties": {"plot_id": f"P{i}", "codes": json.dumps(["X"] * (i % 2)), "mu": i + 0.5}}
        for i, geometry in enumerate(plots.geometry)]}
    write_plot_table(plots, tmp_path / "plots.geojson", decimals=None)
    assert json.loads((tmp_path / "plots.geojson").read_bytes()) == json.loads(json.dumps(expected))
    assert (tmp_path / "plots.geojson").read_bytes() == _compact(json.loads(json.dumps(expected))).encode("utf-8")
    write_plot_table(plots, tmp_path / "plots.geojsonl", decimals=None)
    assert (tmp_path / "plots.geojsonl").read_bytes() == b"".join(
        b"\x1e" + _compact(json.loads(json.dumps(f))).encode("utf-8") + b"\n" for f in expected["features"])
    write_plot_table(plots, Path("-"), decimals=None)
    assert capsys.readouterr().out == _compact(json.loads(json.dumps(expected))) + "\n"


def test_a_coordinate_that_is_not_a_number_is_refused(tmp_path):
    broken = shapely.Polygon([(0, 0), (1, 0), (1, math.nan), (0, 0)])
    plots = gpd.GeoDataFrame({"plot_id": ["A"]}, geometry=[broken], crs="EPSG:4326")
    with pytest.raises(OutputError, match="not a finite number"):
        write_plot_table(plots, tmp_path / "plots.geojson", decimals=6)
    assert not (tmp_path / "plots.geojson").exists()


# ----------------------------------------------------------------------------- the audit's canonical JSON




_CHARACTERS = "aZ09 _-.:/\"\\\n\t\x00\x1f\x7f\u2028éü中文村麦\U0001F33E"


def _random_value(rng, depth=0):
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-2**rng.randrange(1, 80), 2**rng.randrange(1, 80))
    if kind == 2:  # any finite float, from its bits
        value = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        return value if math.isfinite(value) else 0.0
    if kind == 3:  # a float of the size areas, money and shares have, rounded as outputs round them
        return round(rng.uniform(-1e6, 1e6) * 10.0 ** rng.randint(-8, 8), rng.randint(0, 12))
    if kind in (4, 5):
        return "".join(rng.choice(_CHARACTERS) for _ in range(rng.randrange(12)))
    if kind in (6, 7):
        return {"".join(rng.choice(_CHARACTERS) for _ in range(rng.randrange(1, 6))): _random_value(rng, depth + 1)
                for _ in range(rng.randrange(5))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]


def test_record_line_is_the_json_text_audit_files_hold():
    rng = random.Random(20261202)
    by_orjson = 0
    for _ in range(5000):
        record = {str(k): _random_value(rng) for k in range(rng.randrange(1, 6))}
        assert record_line(record) == _compact(record, sort_keys=True)
        try:
            text = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            continue
        if not any(marker in text for marker in _ORJSON_MAY_DIFFER):  # what record_line leaves to orjson: json's text
            assert text.decode("utf-8") == _compact(record, sort_keys=True)
            by_orjson += 1
    assert by_orjson > 1000


@pytest.mark.parametrize("value", [9.9e-05, 1.2345e-05, 1e-06, 2.5e-07, 1e-10, -3e-300, 5e-324, 1e16, 1.5e300,
                                   0.0001, 2**63, -2**63 - 1, 2**64, "0.00001 e-5 text"])
def test_record_line_of_the_values_orjson_writes_otherwise(value):
    record = {"figure": value, "nested": [{"z": value, "a": 1}]}
    assert record_line(record) == _compact(record, sort_keys=True)


def test_record_line_of_keys_and_numbers_orjson_refuses():
    class Figure(float):
        pass

    for record in ({"a": {1: "one"}}, {"a": Figure(0.5)}, {"a": [2**70]}):
        assert record_line(record) == _compact(record, sort_keys=True)
