"""Every output of the sample run against the one schema (agricredit/schema.py, printed in the README).

The checks here are written independently of the schema module's formatter:
they read the files back (json, csv, openpyxl, pyarrow) and test each value
against what its kind promises (integers as integers, money in whole yuan,
fractions in [0, 1], one precision per kind, lists as ``A;B``, flat GeoJSON).
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import shapely
from click.testing import CliRunner
from openpyxl import load_workbook

from agricredit import schema
from agricredit.cli.main import cli
from agricredit.outputs import CategorizedStyle, qml_text
from agricredit.privacy import DEMO_PII_KEY

ROOT = Path(__file__).resolve().parents[1]
QGIS_STRUCTURE = json.loads((Path(__file__).parent / "data" / "qgis_3_28_categorized_style_structure.json")
                            .read_text(encoding="utf-8"))
NUMBER = {name for name, kind in schema.KINDS.items() if kind.json_type != "string"}


@pytest.fixture(scope="module")
def sample_output(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schema") / "out"
    result = CliRunner(env={"AGRICREDIT_PII_KEY": DEMO_PII_KEY}).invoke(
        cli, ["assess", "--sample", "-o", str(folder), "--no-progress"])
    assert result.exit_code == 3, result.output  # two planted invalid outlines are rejected
    return folder


def _check_value(kind: str, value, where: str) -> None:
    """What a value of ``kind`` must look like once read back (``None`` = missing, allowed everywhere)."""
    if value is None:
        return
    decimals = schema.KINDS[kind].decimals
    if kind in ("integer", "yuan"):
        assert isinstance(value, int) and not isinstance(value, bool), (where, value)
    elif kind in NUMBER:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (where, value)
        assert round(value, decimals) == value, (where, value, f"more than {decimals} decimals")
        if kind == "fraction":
            assert 0 <= value <= 1, (where, value)
        if kind == "ndvi":
            assert -1 <= value <= 1, (where, value)
    elif kind == "date":
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", value), (where, value)
    elif kind == "codes":
        assert isinstance(value, str) and "[" not in value and "," not in value, (where, value)
        assert all(re.fullmatch(r"[A-Za-z0-9_.:\-]+", item) for item in value.split(";") if value), (where, value)
    elif kind == "json":
        assert isinstance(json.loads(value), (dict, list)), (where, value)
    else:
        assert isinstance(value, str), (where, value)


def _csv_value(kind: str, text: str):
    """A CSV cell as a program would read it, by the schema's kind."""
    if text == "":
        return None
    if kind in ("integer", "yuan"):
        assert re.fullmatch(r"-?\d+", text), text  # never 130000.0
        return int(text)
    if kind in NUMBER:
        return float(text)
    return text


@pytest.mark.parametrize("name", ["plots.geojson", "borrowers.geojson"])
def test_geojson_properties_are_flat_and_follow_the_schema(sample_output, name):
    fields = schema.OUTPUT_TABLES[name.split(".")[0]]
    features = json.loads((sample_output / name).read_text(encoding="utf-8"))["features"]
    assert features
    for feature in features:
        properties = feature["properties"]
        assert list(properties) == [f.name for f in fields]
        for f in fields:
            assert not isinstance(properties[f.name], (list, dict)), (name, f.name)  # QGIS and Shapefile-safe
            _check_value(f.kind, properties[f.name], f"{name}:{f.name}")


def test_borrowers_csv_follows_the_schema(sample_output):
    with open(sample_output / "borrowers.csv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [f.name for f in schema.BORROWER_FIELDS]
    for row in rows[1:]:
        for f, text in zip(schema.BORROWER_FIELDS, row, strict=True):
            _check_value(f.kind, _csv_value(f.kind, text), f"borrowers.csv:{f.name}")


def test_borrowers_xlsx_follows_the_schema(sample_output):
    sheet = load_workbook(sample_output / "borrowers.xlsx", read_only=True).active
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == [f.name for f in schema.BORROWER_FIELDS]
    with open(sample_output / "borrowers.csv", encoding="utf-8-sig", newline="") as handle:
        assert len(rows) == len(list(csv.reader(handle)))
    for row in rows[1:]:
        for f, value in zip(schema.BORROWER_FIELDS, row, strict=True):
            _check_value(f.kind, value, f"borrowers.xlsx:{f.name}")


@pytest.mark.parametrize("name", ["plots.parquet", "borrowers.parquet"])
def test_geoparquet_columns_have_the_schema_types(sample_output, name):
    import pyarrow as pa

    fields = schema.OUTPUT_TABLES[name.split(".")[0]]
    parquet = pq.ParquetFile(sample_output / name)
    arrow = parquet.schema_arrow
    assert [n for n in arrow.names if n != "geometry"] == [f.name for f in fields]
    assert json.loads(arrow.metadata[b"geo"])["primary_column"] == "geometry"  # GeoParquet, not plain Parquet
    table = parquet.read()
    for f in fields:
        column_type = arrow.field(f.name).type
        if pa.types.is_null(column_type):
            continue  # every value missing in the sample
        expected = {"integer": pa.types.is_integer, "number": pa.types.is_floating,
                    "string": pa.types.is_string}[schema.KINDS[f.kind].json_type]
        assert expected(column_type), (name, f.name, column_type)
        for value in table.column(f.name).to_pylist():
            _check_value(f.kind, value, f"{name}:{f.name}")


@pytest.mark.parametrize("suffix", [".csv", ".geojson", ".parquet"])
def test_stats_outputs_follow_the_schema(tmp_path, suffix):
    out = tmp_path / f"stats{suffix}"
    result = CliRunner().invoke(cli, ["stats", str(ROOT / "sample_tiles" / "plots.geojson"),
                                      str(ROOT / "sample_tiles" / "season" / "manifest.csv"), "-o", str(out)])
    assert result.exit_code == 3, result.output
    names = [f.name for f in schema.STATS_FIELDS]
    if suffix == ".csv":
        with open(out, encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle))
        assert rows[0] == names
        records = [{f.name: _csv_value(f.kind, text) for f, text in zip(schema.STATS_FIELDS, row, strict=True)}
                   for row in rows[1:]]
    elif suffix == ".geojson":
        records = [f["properties"] for f in json.loads(out.read_text(encoding="utf-8"))["features"]]
        assert all(list(r) == names for r in records)
    else:
        table = pq.read_table(out)
        assert table.column_names == names
        records = table.to_pylist()
    assert len(records) == 317 * 10  # every accepted plot on every date
    for record in records:
        for f in schema.STATS_FIELDS:
            _check_value(f.kind, record[f.name], f"stats{suffix}:{f.name}")
    assert max(r["valid_frac"] for r in records) == 1.0  # clipped where it is made, not 1.0000000058


@pytest.mark.parametrize("suffix", [".csv", ".geojson", ".parquet"])
def test_area_outputs_follow_the_schema(tmp_path, suffix):
    out = tmp_path / f"area{suffix}"
    result = CliRunner().invoke(cli, ["area", str(ROOT / "sample_tiles" / "plots.geojson"), "-o", str(out)])
    assert result.exit_code == 3, result.output
    names = [f.name for f in schema.AREA_FIELDS]
    if suffix == ".csv":
        with open(out, encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle))
        assert rows[0] == names
        records = [{f.name: _csv_value(f.kind, text) for f, text in zip(schema.AREA_FIELDS, row, strict=True)}
                   for row in rows[1:]]
    elif suffix == ".geojson":
        records = [f["properties"] for f in json.loads(out.read_text(encoding="utf-8"))["features"]]
        assert all(list(r) == names for r in records)
    else:
        table = pq.read_table(out)
        assert [n for n in table.column_names if n != "geometry"] == names
        records = table.to_pylist()
    assert len(records) == 319  # every plot of the file, rejected ones with their reason
    for record in records:
        for f in schema.AREA_FIELDS:
            _check_value(f.kind, record[f.name], f"area{suffix}:{f.name}")


def test_the_readme_holds_the_schema_tables():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert schema.markdown() in readme


def test_borrower_geometries_are_valid_dissolved_plots(sample_output):
    plots = json.loads((sample_output / "plots.geojson").read_text(encoding="utf-8"))["features"]
    borrowers = json.loads((sample_output / "borrowers.geojson").read_text(encoding="utf-8"))["features"]
    usable = {}
    for plot in plots:
        if plot["properties"]["geometry_status"] in ("OK", "GEOMETRY_REPAIRED"):
            usable.setdefault(plot["properties"]["borrower"], []).append(shapely.geometry.shape(plot["geometry"]))
    for borrower in borrowers:
        own = usable.get(borrower["properties"]["borrower"])
        if not own:
            assert borrower["geometry"] is None
            continue
        geometry = shapely.geometry.shape(borrower["geometry"])
        assert geometry.is_valid, (borrower["properties"]["borrower"], shapely.is_valid_reason(geometry))
        # the plots dissolved on the 1e-6° output grid: vertices move by at most half a grid step
        union = shapely.union_all(own)
        assert abs(geometry.area - union.area) <= union.length * 1e-6


def test_overlapping_plots_of_one_borrower_dissolve_into_one_valid_polygon():
    from types import SimpleNamespace

    import geopandas as gpd
    import pandas as pd

    from agricredit.assess_outputs import _borrower_geometries

    first = shapely.box(0.0, 0.0, 0.001, 0.001)
    second = shapely.box(0.0005, 0.0, 0.0015, 0.001)  # the same field drawn again, half over the first
    assert not shapely.MultiPolygon([first, second]).is_valid  # what a plain collection of the plots would be
    plots = gpd.GeoDataFrame({"borrower": ["b1", "b1", "b2"], "geometry_status": ["OK", "OK", "GEOMETRY_INVALID"]},
                             geometry=[first, second, first], crs="EPSG:4326")
    geometries = _borrower_geometries(SimpleNamespace(plots=plots, borrowers=pd.DataFrame({"borrower": ["b1", "b2"]})))
    assert geometries[0].is_valid and geometries[0].geom_type == "Polygon"
    assert geometries[0].area == pytest.approx(0.0015 * 0.001, rel=1e-9)
    assert geometries[1] is None  # no usable plot, no outline


def test_money_is_whole_yuan_rounded_down():
    assert schema.format_value("yuan", 83028.52) == 83028
    assert schema.format_value("yuan", 18199.999999999) == 18200  # float noise is not a yuan lost
    assert schema.format_value("integer", 10.0) == 10 and isinstance(schema.format_value("integer", 10.0), int)
    with pytest.raises(ValueError):
        schema.format_value("integer", 10.5)


def test_fractions_outside_unit_interval_are_a_bug_not_clipped_silently():
    assert schema.format_value("fraction", 1.0000000058) == 1.0  # float noise rounds to 1.0 at 4 decimals
    with pytest.raises(ValueError):
        schema.format_value("fraction", 1.01)


def _paths(element: ET.Element, prefix: str = "") -> dict[str, set[str]]:
    path = f"{prefix}/{element.tag}"
    found = {path: set(element.attrib)}
    for child in element:
        for child_path, attributes in _paths(child, path).items():
            found.setdefault(child_path, set()).update(attributes)
    return found


@pytest.mark.parametrize("name,field,values", [("plots.qml", "light", {"green", "yellow", "red", ""}),
                                               ("borrowers.qml", "status", {"APPROVE", "REVIEW", "DECLINE"})])
def test_qgis_styles_have_the_structure_qgis_writes(sample_output, name, field, values):
    text = (sample_output / name).read_text(encoding="utf-8")
    assert text.splitlines()[0] == QGIS_STRUCTURE["doctype"]
    root = ET.fromstring(text)
    reference = {path: set(attributes) for path, attributes in QGIS_STRUCTURE["elements"].items()}
    for path, attributes in _paths(root).items():
        assert path in reference, path  # no element QGIS would not write there
        assert attributes <= reference[path], (path, attributes - reference[path])
    optional = {p for p in reference if "/layer/symbol" in p or "/source-symbol" in p}  # sub-symbols, the ramp's seed
    assert set(reference) - set(_paths(root)) <= optional  # nothing else missing
    renderer = root.find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == field
    categories = renderer.findall("categories/category")
    symbols = {s.get("name"): s for s in renderer.findall("symbols/symbol")}
    assert {c.get("value") for c in categories} == values
    for category in categories:
        assert category.get("type") in QGIS_STRUCTURE["category_types"]
        layer = symbols[category.get("symbol")].find("layer")
        assert layer.get("class") == "SimpleFill"
        options = {o.get("name"): o.get("value") for o in layer.find("Option")}
        assert set(options) == set(QGIS_STRUCTURE["simple_fill_options"])
        assert re.fullmatch(r"\d{1,3},\d{1,3},\d{1,3},\d{1,3}", options["color"])
    assert {o.get("type") for o in root.iter("Option") if o.get("type")} <= set(QGIS_STRUCTURE["option_types"])
    assert root.findtext("layerGeometryType") == QGIS_STRUCTURE["layer_geometry_type_polygon"]
    # the field styled is a field of the layer the style sits beside
    layer = json.loads((sample_output / name.replace(".qml", ".geojson")).read_text(encoding="utf-8"))
    assert field in layer["features"][0]["properties"]


def test_a_category_value_is_escaped_in_the_style():
    text = qml_text(CategorizedStyle("light", (('a"<&', "label 'x' & <y>", "1,2,3"),)))
    category = ET.fromstring(text).find("renderer-v2/categories/category")
    assert category.get("value") == 'a"<&' and category.get("label") == "label 'x' & <y>"
