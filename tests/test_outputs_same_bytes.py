"""The writers' column-wise fast paths give what the libraries they stand in for give, value for value.

References: openpyxl's own in-memory worksheet (xlsx rows), shapely's ``mapping`` of each geometry (GeoJSON),
``json.dumps`` (audit lines), :func:`agricredit.schema.format_value` one value at a time (schema columns).
"""

from __future__ import annotations

import gc
import io
import json
import math
import zipfile

import numpy as np
import openpyxl
import pandas as pd
import pytest
import shapely

from _plotfacts import POLICY, honest
from agricredit.audit import AuditKey, audit_record, audit_records, record_line, seal_records, write_audit
from agricredit.credit import decide_all
from agricredit import outputs
from agricredit.outputs import (_plain_column, _rfc7946_geometries, _sheet_rows_xml, gc_paused, gc_young_only, write_plot_table,
                                write_xlsx)
from agricredit.privacy import escape_csv_frame
from agricredit.schema import KINDS, format_column, format_value
from agricredit.verify import verify_plots

# ----------------------------------------------------------------------------- xlsx


def _sheet_xml(path) -> bytes:
    with zipfile.ZipFile(path) as book:
        return book.read("xl/worksheets/sheet1.xml")


def _openpyxl_sheet_xml(table: pd.DataFrame, header: list[str]) -> bytes:
    """The sheet openpyxl writes from an in-memory worksheet holding the same (escaped) rows."""
    flat = escape_csv_frame(table)
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(header)
    for row in flat.itertuples(index=False):
        sheet.append([None if isinstance(v, float) and math.isnan(v) else v for v in row])
    sheet.freeze_panes = "A2"
    buffer = io.BytesIO()
    book.save(buffer)
    return _sheet_xml(buffer)


PLAIN = pd.DataFrame({
    "text": ["东村", "a & b <c> \"d\" 'e'", "", "=SUM(A1:A2)", "-12.5", "=", "x" * 300],
    "integer": [0, -3, 2**53 + 1, 10**17, 7, None, 1],
    "number": [0.1 + 0.2, -0.0, 1e-7, 123456.789, 2.5e16, float("nan"), 1 / 3],
}, dtype=object)


@pytest.mark.parametrize("odd", [None, " leading space", "trailing space ", "#N/A", "two\nlines", True,
                                 np.float32(0.1)])
def test_xlsx_rows_are_those_openpyxl_writes(tmp_path, odd):
    table = PLAIN.copy()
    if odd is not None:  # one value openpyxl converts itself: it writes every row
        table.loc[1, "text"] = odd
    header = ["文本", "integer", "number"]
    write_xlsx(table, tmp_path / "t.xlsx", header=header, sheet="Sheet")
    assert _sheet_xml(tmp_path / "t.xlsx") == _openpyxl_sheet_xml(table, header)
    rows = list(openpyxl.load_workbook(tmp_path / "t.xlsx").active.iter_rows(values_only=True))
    assert rows[0] == tuple(header) and rows[3][2] == 1e-7
    assert rows[1] == ("东村", 0, 0.3)  # 0.1 + 0.2 to 16 digits, as openpyxl writes numbers


@pytest.mark.parametrize(("odd", "written_here"), [(None, True), ("#N/A", False), (" x", False), (True, False)])
def test_xlsx_rows_are_written_here_unless_openpyxl_converts_a_value(odd, written_here):
    table = PLAIN.copy()
    if odd is not None:
        table.loc[1, "text"] = odd
    table = escape_csv_frame(table)
    rows = list(zip(*(_plain_column(table[column]) for column in table.columns)))
    assert (_sheet_rows_xml(rows, first_row=2) is not None) is written_here


@pytest.mark.parametrize("rows_per_piece", [1, 2, 3, 6, 7, 8])
def test_xlsx_rows_in_pieces_are_the_workbook_written_whole(tmp_path, monkeypatch, rows_per_piece):
    # 7 rows in pieces of fewer, as many and more rows; the sheet streamed into its zip entry
    monkeypatch.setattr(outputs, "XLSX_ROWS_PER_PIECE", rows_per_piece)
    header = ["文本", "integer", "number"]
    write_xlsx(PLAIN, tmp_path / "t.xlsx", header=header, sheet="Sheet")
    assert _sheet_xml(tmp_path / "t.xlsx") == _openpyxl_sheet_xml(PLAIN, header)
    # the same bytes as each entry written whole by zipfile.writestr
    with zipfile.ZipFile(tmp_path / "t.xlsx") as written, zipfile.ZipFile(tmp_path / "whole.xlsx", "w") as whole:
        for info in written.infolist():
            whole.writestr(info, written.read(info))
    assert (tmp_path / "t.xlsx").read_bytes() == (tmp_path / "whole.xlsx").read_bytes()


def test_xlsx_of_an_empty_table_has_the_header_only(tmp_path):
    write_xlsx(PLAIN.iloc[:0], tmp_path / "t.xlsx", header=list(PLAIN.columns))
    assert _sheet_xml(tmp_path / "t.xlsx") == _openpyxl_sheet_xml(PLAIN.iloc[:0], list(PLAIN.columns))


# ----------------------------------------------------------------------------- GeoJSON

SQUARE = [(0.1234567, 0.0), (0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]  # clockwise: written counter-clockwise
HOLE = [(0.2, 0.2), (0.4, 0.2), (0.4, 0.4)]
GEOMETRIES = [
    shapely.Polygon(SQUARE),
    shapely.Polygon(SQUARE, [HOLE]),
    shapely.MultiPolygon([shapely.Polygon(SQUARE), shapely.Polygon([(5, 5), (6, 5), (6, 6)], [])]),
    None,
    shapely.Polygon(),
    shapely.Point(116.1234567, 39.9876543),
    shapely.LineString([(0, 0), (1, 1)]),
    shapely.Polygon([(x, y, 3.0) for x, y in SQUARE]),
    shapely.GeometryCollection([shapely.Point(1, 2), shapely.Polygon(SQUARE)]),
    shapely.MultiPolygon([shapely.Polygon(SQUARE), shapely.Polygon()]),
]


@pytest.mark.parametrize("decimals", [None, 6, 2])
def test_geojson_geometries_are_shapely_mappings_of_oriented_rounded_outlines(decimals):
    expected = []
    for geometry in GEOMETRIES:
        if geometry is None or geometry.is_empty:
            expected.append(None)
            continue
        if decimals is not None:
            geometry = shapely.transform(geometry, lambda xy: np.round(xy, decimals))  # 2D, as before
        expected.append(shapely.geometry.mapping(shapely.orient_polygons(geometry)))
    found = _rfc7946_geometries(GEOMETRIES, decimals)
    assert json.dumps(found) == json.dumps(expected)
    assert found[0]["coordinates"][0][0] == [round(0.1234567, decimals) if decimals else 0.1234567, 0.0]


def test_plot_table_properties_are_plain_json(tmp_path):
    import geopandas as gpd

    table = gpd.GeoDataFrame({"plot_id": ["A", "B"], "mu": [1.5, float("nan")], "n": [1, 2],
                              "codes": [["X", "Y"], []], "flag": [True, False]},
                             geometry=[GEOMETRIES[0], None], crs="EPSG:4326")
    write_plot_table(table, tmp_path / "t.geojson", decimals=6)
    features = json.loads((tmp_path / "t.geojson").read_text(encoding="utf-8"))["features"]
    assert [f["properties"] for f in features] == [
        {"plot_id": "A", "mu": 1.5, "n": 1, "codes": '["X", "Y"]', "flag": True},
        {"plot_id": "B", "mu": None, "n": 2, "codes": "[]", "flag": False}]
    assert features[1]["geometry"] is None


# ----------------------------------------------------------------------------- audit


def _records():
    facts = [honest("P1", "B1", mu=9.8), honest("P2", "B1", mu=6.0, declared_mu=12.0),
             honest("P3", "B2", mu=4.0, registered_mu=math.nan, overlaps=[("P1", "B1", 900.0)])]
    verdicts = verify_plots(facts, POLICY)
    decisions = decide_all(verdicts, POLICY)
    verdicts_of = {d.borrower_id: [v for v in verdicts if v.borrower_id == d.borrower_id] for d in decisions}
    return decisions, verdicts_of


def test_audit_records_are_each_decisions_audit_record():
    decisions, verdicts_of = _records()
    inputs = {"plots": "a" * 64}
    assert audit_records(decisions, verdicts_of, POLICY, inputs) == [
        audit_record(d, verdicts_of[d.borrower_id], POLICY, inputs) for d in decisions]


def test_audit_lines_are_the_canonical_json_of_the_sealed_records(tmp_path):
    decisions, verdicts_of = _records()
    records = audit_records(decisions, verdicts_of, POLICY, {"plots": "a" * 64})
    key = AuditKey(b"the audit key of the county branch", "environment")
    write_audit(records, tmp_path / "audit.jsonl", key)
    expected = [json.dumps(r, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
                for r in seal_records(records, key)]
    assert (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines() == expected
    assert record_line({"b": [1.5, None], "a": "村"}) == '{"a":"村","b":[1.5,null]}'


# ----------------------------------------------------------------------------- schema columns

VALUES = [None, float("nan"), float("inf"), -0.0, 0.0, 0.123456789, 1.0, 2, 3.0, np.float64(0.55555), np.int64(4),
          np.float32(0.25), "2023-05-05T00:00:00", "text", ["A", "B"], ("C",), {"b": 1, "a": [2]}, pd.NaT]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_column_is_formatted_as_its_values_one_by_one(kind):
    expected, usable = [], []
    for value in VALUES:
        try:
            expected.append(format_value(kind, value))
            usable.append(value)
        except (TypeError, ValueError):
            continue
    assert format_column(kind, usable) == expected
    assert [type(v) for v in format_column(kind, usable)] == [type(v) for v in expected]


@pytest.mark.parametrize("value", [1.00005, -0.00005, 1.2, -1.0])
def test_a_fraction_column_refuses_what_format_value_refuses(value):
    refused = 1.0 < round(value, 4) or round(value, 4) < 0.0
    if refused:
        with pytest.raises(ValueError, match="outside"):
            format_column("fraction", [0.5, value])
    else:
        assert format_column("fraction", [value]) == [format_value("fraction", value)]


# ----------------------------------------------------------------------------- gc


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_paused_restores_the_collector_as_it_was(enabled):
    (gc.enable if enabled else gc.disable)()
    try:
        with pytest.raises(RuntimeError), gc_paused():
            assert not gc.isenabled()
            raise RuntimeError
        assert gc.isenabled() is enabled
    finally:
        gc.enable()


class _Tracked:  # an object the collector tracks (a plain dict of numbers may be untracked)
    def __init__(self) -> None:
        self.cells = [[]]


@pytest.mark.parametrize("promote", [True, False])
def test_gc_paused_promotes_what_the_block_made_to_the_oldest_generation_only_when_asked(promote):
    gc.collect()
    try:
        with gc_paused(promote=promote):
            made = _Tracked()
        oldest = gc.get_objects(generation=2)
        assert any(item is made for item in oldest) is promote
        assert gc.isenabled() and gc.is_tracked(made)
    finally:
        gc.enable()


def _automatic_collections() -> tuple[list[int], bool]:
    """The generations the collector walked on its own while tracked objects were made and kept (as many as half of
    what it tracks: a full collection waits until the objects that outlived the young ones are a quarter of the
    oldest generation), and whether a reference cycle made first was freed by then."""
    import weakref

    walked: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            walked.append(info["generation"])

    cycle = _Tracked()
    cycle.cells[0].append(cycle)
    alive = weakref.ref(cycle)
    del cycle
    gc.callbacks.append(record)
    try:
        kept = [_Tracked() for _ in range(len(gc.get_objects()) // 2 + 1000)]
        del kept
    finally:
        gc.callbacks.remove(record)
    return walked, alive() is None


def test_gc_young_only_collects_young_cycles_but_never_the_oldest_generation():
    thresholds = gc.get_threshold()
    gc.collect()
    try:
        gc.set_threshold(20, 2, 2)
        walked, freed = _automatic_collections()
        assert 2 in walked and freed  # the control: these thresholds do make full collections
        with gc_young_only():
            assert gc.get_threshold()[:2] == (20, 2)
            walked, freed = _automatic_collections()
        assert walked and 2 not in walked and set(walked) <= {0, 1}
        assert freed  # a young cycle is still freed
        assert gc.get_threshold() == (20, 2, 2)
    finally:
        gc.set_threshold(*thresholds)


def test_gc_young_only_restores_the_thresholds_after_an_error():
    thresholds = gc.get_threshold()
    try:
        gc.set_threshold(500, 7, 9)
        with pytest.raises(RuntimeError), gc_young_only():
            assert gc.get_threshold()[2] > 10**9
            raise RuntimeError
        assert gc.get_threshold() == (500, 7, 9)
    finally:
        gc.set_threshold(*thresholds)


# ----------------------------------------------------------------------------- borrower outlines


def test_borrower_outlines_are_each_borrowers_own_union():
    from types import SimpleNamespace

    import geopandas as gpd

    from agricredit.assess_outputs import _borrower_geometries

    square = shapely.box(116.0, 39.0, 116.001, 39.001)
    shifted = shapely.box(116.0005, 39.0000004, 116.0015, 39.0010004)  # overlaps the square, off the 1e-6 grid
    far = shapely.box(116.01, 39.01, 116.011, 39.011)
    plots = gpd.GeoDataFrame({"borrower": ["b1", "b1", "b1", "b2", "b3", "b4"],
                              "geometry_status": ["OK", "GEOMETRY_REPAIRED", "OK", "OK", "GEOMETRY_INVALID", "OK"]},
                             geometry=[square, shifted, far, far, square, square], crs="EPSG:4326")
    borrowers = pd.DataFrame({"borrower": ["b0", "b1", "b2", "b3"]})  # b0 and b3: no usable plot; b4 not a borrower
    expected = [None, shapely.union_all([square, shifted, far], grid_size=1e-6), shapely.union_all([far], grid_size=1e-6),
                None]
    found = _borrower_geometries(SimpleNamespace(plots=plots, borrowers=borrowers))
    assert [None if g is None else g.wkb for g in found] == [None if g is None else g.wkb for g in expected]
    assert found[1].geom_type == "MultiPolygon" and found[1].is_valid
