"""The output assembly of an assessment (:mod:`agricredit.assess_outputs`, issue 16 §5), on figures written here.

Verdicts and decisions are built by hand with distinct figures (no two areas or sums alike, the
"now" and "if confirmed" scenarios apart), so a field taken from the wrong source, a swapped pair
or a wrong rounding shows. Rows are compared with those constants; files are read back with
``csv``, ``json``, ``openpyxl``, ``geopandas`` and ``hashlib``, never with the writer's own helpers.
Coordinates are checked against ``pyproj`` (UTM 50N → WGS84) rounded to 6 decimals here.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pyproj
import pytest
import shapely
from shapely.geometry import box

from agricredit import __version__
from agricredit.assess import Assessment
from agricredit.assess_outputs import _borrower_geometries, _borrower_rows, _plot_rows, _round, _rounded, write_outputs
from agricredit.audit import AuditKey
from agricredit.credit import Decision, Reason, Terms
from agricredit.policy import load_policy
from agricredit.privacy import PersonalDataGuard
from agricredit.schema import BORROWER_FIELDS, PLOT_FIELDS
from agricredit.verify import Check, Contribution, PlotFacts, PlotVerdict

POLICY = load_policy(None)
UTM50N = "EPSG:32650"
AUDIT_KEY = AuditKey(b"assess-outputs test audit key, not a real one", "environment")
# Outlines in UTM 50N (near 117° E, 39° N): P1 a 60 m square; P2 and P4 two 40 m squares side by side (one
# 80 × 40 m rectangle once dissolved); P3 rejected; a feature without an ID.
X0, Y0 = 500123.4567, 4316789.0123
OUTLINES = {
    "P2": box(X0, Y0, X0 + 40, Y0 + 40),
    "P4": box(X0 + 40, Y0, X0 + 80, Y0 + 40),
    "P1": box(X0 + 200, Y0, X0 + 260, Y0 + 60),
    "P3": box(X0 + 400, Y0, X0 + 430, Y0 + 30),
    None: box(X0 + 600, Y0, X0 + 610, Y0 + 10),
}
CHECKED = gpd.GeoDataFrame({  # object columns holding None, as agricredit.plots leaves a missing ID
    "plot_id": pd.Series(["P2", "P4", "P1", "P3", None], dtype=object),
    "borrower_id": pd.Series(["alice", "alice", "bob", "alice", None], dtype=object),
    "geometry_status": ["OK", "OK", "GEOMETRY_REPAIRED", "GEOMETRY_INVALID", "MISSING_ID"],
}, geometry=list(OUTLINES.values()), crs=UTM50N)
ALIAS = {"alice": "b-alice", "bob": "b-bob", None: None}


def _verdict(plot_id, borrower, drawn, registered, declared, cropped, now, confirmed, light, checks=(), crop="maize"):
    facts = PlotFacts(plot_id=plot_id, borrower_id=borrower, drawn_mu=drawn, registered_mu=registered,
                      declared_mu=declared, cropped_mu_at_peak=cropped, declared_crop=crop)
    return PlotVerdict(facts, tuple(checks), confirmed, False, light, Contribution(now, confirmed, 1.0))


FIGURES = {"ratio": 0.123456789, "plots": np.int64(3), "missing": math.nan, "name": "x", "count": 2,
           "share": np.float32(0.5)}
V2 = _verdict("P2", "b-alice", 10.12344, 9.5, 11.25, 8.75, 7.5, 9.25, "yellow",
              [Check.make("AREA_OVER_DECLARED", **FIGURES), Check.make("TOO_FEW_PIXELS")])
V4 = _verdict("P4", "b-alice", 3.0, 3.125, 2.875, 2.5, 1.25, 1.75, "green")
V1 = _verdict("P1", "b-bob", 5.40625, 5.5, 5.25, math.nan, 0.0, 5.25, "red", [Check.make("TOO_FEW_PIXELS")],
              crop="wheat")
VERDICTS = [V2, V4, V1]
SEASON = SimpleNamespace(plots=pd.DataFrame({
    "plot_id": ["P1", "P2", "P4"],
    "declared_crop": ["soybean", "soybean", "soybean"],  # the verdict's (the declaration's) crop wins
    "best_crop": ["wheat", "maize", "maize"],
    "peak_ndvi": [0.612345, 0.80004, 0.7],
    "n_valid": [np.int64(12), np.int64(14), np.int64(15)],
    "cropped_measured_share": [0.25, 0.875, 1.0],
}))


def _plot_table():
    return _plot_rows(CHECKED, VERDICTS, SEASON, ALIAS)


def _terms(mu, need, capacity, cap, limit, binding):
    return Terms((), mu, need, capacity, cap, limit, binding)


DECISIONS = [
    Decision("b-bob", "REVIEW", 0.0, 3150.0, "CNY", _terms(0.0, 0.0, 0.0, 200000.0, 0.0, "need"),
             _terms(5.25, 4200.9, 3150.75, 200000.0, 3150.0, "capacity"),
             (Reason("TOO_FEW_PIXELS", "review", 3150.0, ("P1",), {}),), ("P1",)),
    Decision("b-alice", "APPROVE", 5460.0, 6600.0, "CNY", _terms(8.75, 7001.6, 5460.4, 200000.0, 5460.0, "capacity"),
             _terms(11.0, 8800.2, 6600.8, 200000.0, 6600.0, "capacity"),
             (Reason("AREA_OVER_DECLARED", "reduce", 1140.0, ("P2",), {}),), ("P2", "P4")),
]
VERDICTS_OF = {"b-alice": [V2, V4], "b-bob": [V1]}
VILLAGES = {"b-alice": "东村"}


def _borrower_table(lang="en"):
    return _borrower_rows(DECISIONS, VERDICTS_OF, VILLAGES, POLICY, lang)


def _wgs84_rounded(geometry):
    to_wgs = pyproj.Transformer.from_crs(UTM50N, "EPSG:4326", always_xy=True)
    return [(round(x, 6), round(y, 6)) for x, y in (to_wgs.transform(*p) for p in geometry.exterior.coords)]


# ----------------------------------------------------------------------------- plot rows


def test_plot_rows_carry_the_verdict_figures_by_plot():
    rows = _plot_table().set_index("plot_id", drop=False)
    p2 = rows.loc["P2"]
    assert (p2.borrower, p2.geometry_status, p2.light, p2.declared_crop) == ("b-alice", "OK", "yellow", "maize")
    assert (p2.drawn_mu, p2.registered_mu, p2.declared_mu, p2.cropped_mu) == (10.1234, 9.5, 11.25, 8.75)
    assert (p2.verified_mu, p2.verified_mu_if_confirmed) == (7.5, 9.25)
    assert p2.reason_codes == "AREA_OVER_DECLARED;TOO_FEW_PIXELS"
    assert (p2.best_crop, p2.peak_ndvi, p2.n_valid, p2.cropped_measured_share) == ("maize", 0.8, 14, 0.875)
    p1 = rows.loc["P1"]
    assert (p1.borrower, p1.geometry_status, p1.light, p1.declared_crop) == ("b-bob", "GEOMETRY_REPAIRED", "red", "wheat")
    assert (p1.drawn_mu, p1.registered_mu, p1.declared_mu, p1.cropped_mu) == (5.4062, 5.5, 5.25, None)
    assert (p1.verified_mu, p1.verified_mu_if_confirmed) == (0.0, 5.25)
    assert (p1.reason_codes, p1.peak_ndvi, p1.best_crop) == ("TOO_FEW_PIXELS", 0.6123, "wheat")


def test_a_plot_without_a_verdict_keeps_its_status_and_nothing_else():
    rows = _plot_table()
    p3 = rows.set_index("plot_id", drop=False).loc["P3"]
    assert (p3.borrower, p3.geometry_status) == ("b-alice", "GEOMETRY_INVALID")
    for name in ("light", "reason_codes", "declared_crop", "drawn_mu", "verified_mu", "verified_mu_if_confirmed",
                 "best_crop", "details"):
        assert p3[name] is None, name
    last = rows.iloc[-1]
    assert (last.plot_id, last.borrower, last.geometry_status) == (None, None, "MISSING_ID")


def test_plot_rows_when_every_plot_has_a_verdict_are_those_of_the_row_by_row_filling():
    # Every plot with a verdict (each verdict column taken whole) against the same plots among others without
    # one (filled row by row); a repeated season row: its last.
    season = SimpleNamespace(plots=pd.concat([SEASON.plots.iloc[[0]].assign(peak_ndvi=0.1), SEASON.plots],
                                             ignore_index=True))
    with_verdicts = _plot_rows(CHECKED.iloc[:3], VERDICTS[::-1], season, ALIAS)  # (not in the rows' order)
    among_others = _plot_rows(CHECKED, VERDICTS, season, ALIAS)
    expected = among_others[among_others["plot_id"].isin(["P1", "P2", "P4"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(with_verdicts, expected)
    assert with_verdicts["peak_ndvi"].tolist()[0] == among_others["peak_ndvi"].tolist()[0] != "0.1"


def test_plot_rows_are_sorted_by_id_with_the_unnamed_last():
    table = _plot_table()
    assert list(table["plot_id"]) == ["P1", "P2", "P3", "P4", None] and list(table.index) == [0, 1, 2, 3, 4]


def test_plot_details_round_each_figure_to_four_decimals():
    details = json.loads(_plot_table().set_index("plot_id", drop=False).loc["P2", "details"])
    assert details == {"checks": [
        {"code": "AREA_OVER_DECLARED", "figures": {"count": 2, "missing": None, "name": "x", "plots": 3, "ratio": 0.1235,
                                              "share": 0.5}},
        {"code": "TOO_FEW_PIXELS", "figures": {}},
    ]}
    assert isinstance(details["checks"][0]["figures"]["plots"], int)


def test_a_checks_figures_are_rounded_figure_by_figure_or_kept_when_none_is_a_float():
    for figures in ({"a": 1, "b": "x", "c": None, "d": True, "e": ["P1", 0.123456]},
                    {"a": 1, "r": 0.123456, "n": math.nan, "f": np.float32(0.5), "i": np.int64(3), "t": (1.5,)}, {}):
        rounded = _rounded(figures)
        assert rounded == {name: _round(value) for name, value in figures.items()}
        assert [type(value) for value in rounded.values()] == [type(_round(value)) for value in figures.values()]
    plain = {"a": 1, "b": "x", "c": None, "e": ["P1", 0.123456]}
    assert _rounded(plain) is plain  # only encoded: no copy
    assert _round(0.123456) == 0.1235 and _round(math.inf) is None and _round(np.float64(2.00004)) == 2.0


def test_plot_geometries_are_wgs84_rounded_to_six_decimals():
    table = _plot_table()
    assert table.crs.to_epsg() == 4326
    for plot_id, geometry in zip(table["plot_id"], table.geometry):
        assert list(geometry.exterior.coords) == _wgs84_rounded(OUTLINES[plot_id]), plot_id


def test_an_empty_geometry_is_written_as_it_is():
    checked = CHECKED.iloc[:1].copy()
    checked.geometry = [shapely.Polygon()]
    table = _plot_rows(checked, VERDICTS, SimpleNamespace(plots=pd.DataFrame()), ALIAS)
    assert table.geometry.iloc[0].is_empty
    assert table["best_crop"].iloc[0] is None and table["verified_mu"].iloc[0] == 7.5  # no season table: no features


# ----------------------------------------------------------------------------- borrower rows


def test_borrower_rows_carry_the_decision_now_and_the_sum_of_the_plots():
    rows = _borrower_table()
    assert list(rows["borrower"]) == ["b-alice", "b-bob"] and list(rows.index) == [0, 1]
    alice, bob = rows.iloc[0], rows.iloc[1]
    assert (alice.village, alice.status, alice.currency, alice.binding) == ("东村", "APPROVE", "CNY", "capacity")
    assert (alice.limit, alice.limit_if_confirmed) == (5460, 6600)
    assert (alice.need, alice.capacity, alice.cap) == (7001, 5460, 200000)  # whole yuan, rounded down
    assert alice.verified_mu == 8.75  # 7.5 + 1.25: the plots' areas now
    assert (alice.reason_codes, alice.plots) == ("AREA_OVER_DECLARED", "P2;P4")
    assert (bob.village, bob.status, bob.limit, bob.limit_if_confirmed) == ("", "REVIEW", 0, 3150)
    assert (bob.need, bob.capacity, bob.binding, bob.verified_mu) == (0, 0, "need", 0.0)
    assert (bob.reason_codes, bob.plots) == ("TOO_FEW_PIXELS", "P1")


def test_borrower_details_list_each_plot_now():
    details = json.loads(_borrower_table().iloc[0].details)
    assert details == {"plots": [
        {"plot_id": "P2", "verified_mu": 7.5, "light": "yellow", "reason_codes": ["AREA_OVER_DECLARED", "TOO_FEW_PIXELS"]},
        {"plot_id": "P4", "verified_mu": 1.25, "light": "green", "reason_codes": []},
    ]}


@pytest.mark.parametrize("lang, words", [("en", "Approved: limit 5,460 CNY"), ("zh", "批准：额度 5,460 元")])
def test_borrower_explanation_is_in_the_language_asked(lang, words):
    explanation = _borrower_table(lang).iloc[0].explanation
    assert explanation.startswith(words)


# ----------------------------------------------------------------------------- borrower outlines


def test_a_borrowers_usable_plots_dissolve_into_one_outline():
    plots = _plot_table()
    geometries = _borrower_geometries(SimpleNamespace(plots=plots, borrowers=_borrower_table()))
    alice, bob = geometries
    expected_alice = shapely.Polygon(_wgs84_rounded(box(X0, Y0, X0 + 80, Y0 + 40)))  # P2 ∪ P4, not rejected P3
    assert alice.geom_type == "Polygon" and alice.is_valid
    assert alice.symmetric_difference(expected_alice).area < 1e-12
    assert bob.equals(shapely.Polygon(_wgs84_rounded(OUTLINES["P1"])))  # a repaired outline is usable


@pytest.mark.parametrize("unusable, outlines", [("P1", ["P2P4", None]), ("P2P4", [None, "P1"])])
def test_a_borrower_without_a_usable_plot_has_no_outline(unusable, outlines):
    plots = _plot_table()
    plots.loc[plots["plot_id"].isin([unusable[i:i + 2] for i in (0, 2)]), "geometry_status"] = "GEOMETRY_INVALID"
    expected = {"P2P4": shapely.Polygon(_wgs84_rounded(box(X0, Y0, X0 + 80, Y0 + 40))),
                "P1": shapely.Polygon(_wgs84_rounded(OUTLINES["P1"]))}
    geometries = _borrower_geometries(SimpleNamespace(plots=plots, borrowers=_borrower_table()))
    assert len(geometries) == 2
    for geometry, name in zip(geometries, outlines):
        assert geometry is None if name is None else geometry.symmetric_difference(expected[name]).area < 1e-12


def test_dissolved_outlines_are_on_the_six_decimal_grid():
    # two triangles whose edges cross between grid points: the crossings are snapped to 1e-6°
    a = shapely.Polygon([(117.000001, 39.000003), (117.001235, 39.000003), (117.0006, 39.001111)])
    b = shapely.Polygon([(117.000001, 39.0006), (117.001235, 39.0006), (117.0006, 38.9995)])
    plots = gpd.GeoDataFrame({"borrower": ["b", "b"], "geometry_status": ["OK", "OK"]}, geometry=[a, b],
                             crs="EPSG:4326")
    outline = _borrower_geometries(SimpleNamespace(plots=plots, borrowers=pd.DataFrame({"borrower": ["b"]})))[0]
    coordinates = shapely.get_coordinates(outline)
    assert len(coordinates) > 8  # the crossings are vertices
    np.testing.assert_array_equal(coordinates, np.round(coordinates, 6))
    union = a.union(b)
    assert outline.symmetric_difference(union).area < union.length * 0.5e-6  # vertices moved by half a step at most


def test_a_dissolved_outline_is_made_valid():
    touching = gpd.GeoDataFrame({"borrower": ["b", "b"], "geometry_status": ["OK", "OK"]},  # corners touch: a bow tie
                                geometry=[box(0, 0, 1, 1), box(1, 1, 2, 2)], crs="EPSG:4326")
    outline = _borrower_geometries(SimpleNamespace(plots=touching, borrowers=pd.DataFrame({"borrower": ["b"]})))[0]
    assert outline.is_valid and outline.area == pytest.approx(2.0)


# ----------------------------------------------------------------------------- files


def _assessment(lang="en"):
    borrowers = pd.DataFrame({"borrower_id": ["alice", "bob"], "name": ["Alice Example", "Bob Example"],
                              "phone": ["13800138000", "13900139000"], "national_id": ["110101199001011234",
                                                                                      "110101199001015678"]})
    return Assessment(policy=POLICY, plots=_plot_table(), verdicts=VERDICTS, decisions=DECISIONS,
                      borrowers=_borrower_table(lang), audit=[], rejected={"GEOMETRY_INVALID": ["P3"],
                                                                           "MISSING_ID": ["第5个要素"]},
                      inputs={"plots": "ab" * 32}, key_fingerprint="fingerprint-1", lang=lang,
                      pii_guard=PersonalDataGuard.from_borrowers(borrowers))


@pytest.fixture
def written(tmp_path):
    """The output folder and manifest, written for each test (a module fixture would hide from mutmut which tests
    cover write_outputs: it counts only the test whose setup ran it)."""
    folder = tmp_path / "out"
    return folder, write_outputs(_assessment(), folder, AUDIT_KEY)


def test_the_plot_layer_holds_the_rows(written):
    folder, _ = written
    layer = json.loads((folder / "plots.geojson").read_text(encoding="utf-8"))
    properties = {f["properties"]["plot_id"]: f["properties"] for f in layer["features"]}
    assert list(properties) == ["P1", "P2", "P3", "P4", None]
    p2 = properties["P2"]
    assert (p2["drawn_mu"], p2["registered_mu"], p2["declared_mu"], p2["cropped_mu"]) == (10.1234, 9.5, 11.25, 8.75)
    assert (p2["verified_mu"], p2["verified_mu_if_confirmed"], p2["light"]) == (7.5, 9.25, "yellow")
    geometry = next(f["geometry"] for f in layer["features"] if f["properties"]["plot_id"] == "P4")
    assert [tuple(p) for p in geometry["coordinates"][0]] == _wgs84_rounded(OUTLINES["P4"])
    parquet = gpd.read_parquet(folder / "plots.parquet")
    assert parquet.crs.to_epsg() == 4326 and list(parquet.columns) == [f.name for f in PLOT_FIELDS] + ["geometry"]
    assert pq.read_schema(folder / "plots.parquet").pandas_metadata["index_columns"] == []  # no index column
    assert [None if pd.isna(v) else v for v in parquet["verified_mu"]] == [0.0, 7.5, None, 1.25, None]


def test_the_borrower_table_and_layers_hold_the_rows(written):
    folder, _ = written
    raw = (folder / "borrowers.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert [(r["borrower"], r["village"], r["status"], r["limit"], r["limit_if_confirmed"], r["verified_mu"],
             r["need"], r["capacity"]) for r in rows] == [
        ("b-alice", "东村", "APPROVE", "5460", "6600", "8.75", "7001", "5460"),
        ("b-bob", "", "REVIEW", "0", "3150", "0.0", "0", "0")]
    sheet = openpyxl.load_workbook(folder / "borrowers.xlsx").worksheets[0]
    assert sheet.title == "borrowers"
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][:4] == ("borrower", "village", "status", "limit")
    assert values[1][:4] == ("b-alice", "东村", "APPROVE", 5460)
    layer = json.loads((folder / "borrowers.geojson").read_text(encoding="utf-8"))
    assert [(f["properties"]["borrower"], f["properties"]["limit"]) for f in layer["features"]] == [
        ("b-alice", 5460), ("b-bob", 0)]
    outline = shapely.geometry.shape(layer["features"][0]["geometry"])
    assert outline.symmetric_difference(shapely.Polygon(_wgs84_rounded(box(X0, Y0, X0 + 80, Y0 + 40)))).area < 1e-12
    parquet = gpd.read_parquet(folder / "borrowers.parquet")
    assert parquet.crs.to_epsg() == 4326 and list(parquet.columns) == [f.name for f in BORROWER_FIELDS] + ["geometry"]
    assert pq.read_schema(folder / "borrowers.parquet").pandas_metadata["index_columns"] == []
    assert list(parquet["borrower"]) == ["b-alice", "b-bob"] and parquet.geometry.iloc[1].equals(
        shapely.Polygon(_wgs84_rounded(OUTLINES["P1"])))


def test_the_styles_colour_plots_by_light_and_borrowers_by_status(written):
    folder, _ = written
    plots, borrowers = (folder / "plots.qml").read_text(encoding="utf-8"), (folder / "borrowers.qml").read_text(
        encoding="utf-8")
    assert 'attr="light"' in plots and 'value="yellow"' in plots and "255,191,0" in plots
    assert 'attr="status"' in borrowers and 'value="DECLINE"' in borrowers and "215,25,28" in borrowers


def test_the_manifest_lists_every_file_with_its_hash_and_the_counts(written):
    folder, manifest = written
    assert json.loads((folder / "manifest.json").read_text(encoding="utf-8")) == manifest
    files = sorted(p.name for p in folder.iterdir() if p.name != "manifest.json")
    assert files == sorted(["plots.geojson", "plots.parquet", "plots.qml", "borrowers.csv", "borrowers.xlsx",
                            "borrowers.geojson", "borrowers.parquet", "borrowers.qml", "chips.parquet",
                            "series.parquet", "audit.jsonl"])
    assert manifest["outputs"] == {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in files}
    assert manifest["counts"] == {"plots": 5, "borrowers": 2, "status": {"APPROVE": 1, "REVIEW": 1},
                                  "rejected_or_unverifiable_plots": {"GEOMETRY_INVALID": ["P3"],
                                                                     "MISSING_ID": ["第5个要素"]}}
    assert (manifest["tool"], manifest["tool_version"], manifest["language"]) == ("agricredit", __version__, "en")
    assert manifest["policy"] == {"name": "agricredit-default", "version": "2026.1", "sha256": POLICY.sha256}
    assert manifest["pseudonym_key_fingerprint"] == "fingerprint-1"
    assert manifest["inputs"] == {"plots": "ab" * 32}
    assert manifest["audit"]["records"] == 0
    text = (folder / "manifest.json").read_text(encoding="utf-8")
    assert text.endswith("}\n") and text.startswith('{\n  "audit"')  # indented, keys sorted
    assert '"第5个要素"' in text  # UTF-8, not \u escapes


def test_chinese_outputs_and_no_byte_order_mark(tmp_path):
    manifest = write_outputs(_assessment("zh"), tmp_path, AUDIT_KEY, csv_bom=False)
    raw = (tmp_path / "borrowers.csv").read_bytes()
    assert raw.startswith("借款人代号,村,状态".encode())
    sheet = openpyxl.load_workbook(tmp_path / "borrowers.xlsx").worksheets[0]
    assert sheet.title == "借款人" and next(sheet.iter_rows(values_only=True))[:3] == ("借款人代号", "村", "状态")
    assert manifest["language"] == "zh"


def test_large_layers_become_geojson_text_sequences_at_the_threshold(tmp_path, written):
    folder, _ = written
    size = (folder / "plots.geojson").stat().st_size
    assert size > (folder / "borrowers.geojson").stat().st_size
    at = tmp_path / "at"
    manifest = write_outputs(_assessment(), at, AUDIT_KEY, geojsonseq_min_bytes=size)
    assert not (at / "plots.geojson").exists() and (at / "borrowers.geojson").exists()
    lines = (at / "plots.geojsonl").read_text(encoding="utf-8").split("\n")[:-1]  # RS JSON LF (RFC 8142)
    assert len(lines) == 5 and all(line.startswith("\x1e") for line in lines)
    assert json.loads(lines[1].lstrip("\x1e"))["properties"]["verified_mu"] == 7.5
    assert "plots.geojsonl" in manifest["outputs"] and "plots.geojson" not in manifest["outputs"]
    above = tmp_path / "above"
    write_outputs(_assessment(), above, AUDIT_KEY, geojsonseq_min_bytes=size + 1)
    assert (above / "plots.geojson").exists() and not (above / "plots.geojsonl").exists()
    small = tmp_path / "small"
    write_outputs(_assessment(), small, AUDIT_KEY, geojsonseq_min_bytes=1)
    assert sorted(p.name for p in small.glob("*.geojson*")) == ["borrowers.geojsonl", "plots.geojsonl"]
    borrowers = (small / "borrowers.geojsonl").read_text(encoding="utf-8").split("\n")
    assert json.loads(borrowers[0].lstrip("\x1e"))["properties"]["borrower"] == "b-alice"


def test_a_borrowers_name_in_an_output_publishes_nothing(tmp_path):
    from agricredit.errors import PrivacyError

    assessment = _assessment()
    assessment.borrowers.loc[0, "village"] = "Alice Example"
    with pytest.raises(PrivacyError, match="name"):
        write_outputs(assessment, tmp_path / "out", AUDIT_KEY)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _with_audit(assessment):
    from agricredit.audit import audit_records

    verdicts_of = {d.borrower_id: [v for v in assessment.verdicts if v.borrower_id == d.borrower_id]
                   for d in assessment.decisions}
    assessment.audit = audit_records(assessment.decisions, verdicts_of, POLICY, assessment.inputs)
    return assessment


def test_the_outputs_are_the_same_bytes_written_in_one_process_or_two(tmp_path, monkeypatch):
    two = write_outputs(_with_audit(_assessment()), tmp_path / "two", AUDIT_KEY)
    monkeypatch.delattr("os.fork")  # as on Windows: everything in this process
    one = write_outputs(_with_audit(_assessment()), tmp_path / "one", AUDIT_KEY)
    assert two["audit"]["records"] == len(DECISIONS) and one == two
    names = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "one").iterdir()) and "audit.jsonl" in names
    for name in names:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name


def _name_in_the_plot_layer(assessment):  # plots.geojson: written and scanned by a child process
    assessment.plots.loc[0, "geometry_status"] = "Bob Example"


def _name_in_the_borrower_table(assessment):  # borrowers.csv (the first found, by name; this process's), .geojson, .xlsx
    assessment.borrowers.loc[1, "village"] = "Bob Example"


def _name_in_the_audit(assessment):  # audit.jsonl: written and scanned by the other child process
    assessment.audit[1]["borrower_id"] = "Bob Example"


@pytest.mark.parametrize("fork", [True, False])
@pytest.mark.parametrize(("plant", "found"), [
    (_name_in_the_plot_layer, r"out/plots\.geojson: personal data in an output \(feature 1, field 'geometry_status': "),
    (_name_in_the_borrower_table, r"out/borrowers\.csv: personal data in an output \(row 3, field 'village': "),
    (_name_in_the_audit, r"out/audit\.jsonl: personal data in an output \(line 2, "),
])
def test_a_name_in_an_output_of_any_writer_publishes_nothing(tmp_path, monkeypatch, fork, plant, found):
    from agricredit.errors import PrivacyError

    if not fork:
        monkeypatch.delattr("os.fork")
    assessment = _with_audit(_assessment())
    plant(assessment)
    with pytest.raises(PrivacyError, match=found + ".*borrower name"):
        write_outputs(assessment, tmp_path / "out", AUDIT_KEY)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("fork", [True, False])
def test_an_audit_field_off_the_allow_list_publishes_nothing(tmp_path, monkeypatch, fork):
    from agricredit.errors import PrivacyError

    if not fork:
        monkeypatch.delattr("os.fork")
    out = tmp_path / "out"
    write_outputs(_with_audit(_assessment()), out, AUDIT_KEY)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assessment = _with_audit(_assessment())
    assessment.audit[1]["phone"] = "(a field no audit record may hold)"  # checked where the records are read
    with pytest.raises(PrivacyError, match="^field 'phone' is not on the allow-list of audit.jsonl$"):
        write_outputs(assessment, out, AUDIT_KEY)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the earlier outputs stay as they were
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left behind


@pytest.mark.parametrize("fork", [True, False])
def test_a_name_in_the_layer_this_process_writes_and_scans_publishes_nothing(tmp_path, monkeypatch, fork):
    import agricredit.assess_outputs as assess_outputs
    from agricredit.errors import PrivacyError

    if not fork:
        monkeypatch.delattr("os.fork")
    write_plot_table = assess_outputs.write_plot_table

    def with_a_name_in_the_borrower_layer(table, path, **options):
        if str(path).endswith("borrowers.geojson"):  # only there: the CSV and xlsx (the children's) stay clean
            table = table.assign(village="Bob Example")
        return write_plot_table(table, path, **options)

    monkeypatch.setattr(assess_outputs, "write_plot_table", with_a_name_in_the_borrower_layer)
    found = r"out/borrowers\.geojson: personal data in an output \(feature 1, field 'village': borrower name"
    with pytest.raises(PrivacyError, match=found):
        write_outputs(_with_audit(_assessment()), tmp_path / "out", AUDIT_KEY)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_plots_lying_apart_stand_side_by_side_and_the_others_are_dissolved():
    # a: two plots far apart (side by side, in their order); b: one plot; c: two overlapping plots (dissolved);
    # d: plots whose boxes meet without the plots touching (dissolved: the same area); e: no usable plot
    far = [box(117.0, 39.0, 117.001, 39.001), box(117.01, 39.0, 117.011, 39.001)]
    overlapping = [box(117.1, 39.1, 117.102, 39.101), box(117.101, 39.1, 117.103, 39.101)]
    l_shape = shapely.Polygon([(117.2, 39.2), (117.203, 39.2), (117.203, 39.201), (117.201, 39.201),
                               (117.201, 39.203), (117.2, 39.203)])
    in_the_corner = box(117.2015, 39.2015, 117.2025, 39.2025)  # inside the L's box, not touching the L
    plots = gpd.GeoDataFrame(
        {"borrower": ["a", "b", "c", "a", "c", "d", "d", "e"],
         "geometry_status": ["OK", "GEOMETRY_REPAIRED", "OK", "OK", "OK", "OK", "OK", "GEOMETRY_INVALID"]},
        geometry=[far[1], box(117.05, 39.05, 117.051, 39.051), overlapping[0], far[0], overlapping[1], l_shape,
                  in_the_corner, box(117.3, 39.3, 117.301, 39.301)], crs="EPSG:4326")
    borrowers = pd.DataFrame({"borrower": ["a", "b", "c", "d", "e"]})
    outlines = _borrower_geometries(SimpleNamespace(plots=plots, borrowers=borrowers))
    a, b, c, d, e = outlines
    assert a.geom_type == "MultiPolygon" and [p.equals(q) for p, q in zip(a.geoms, [far[1], far[0]])] == [True, True]
    assert b.equals(plots.geometry[1]) and b.geom_type == "Polygon"
    assert c.geom_type == "Polygon" and c.equals(shapely.union_all(overlapping))
    assert d.equals(shapely.union_all([l_shape, in_the_corner])) and d.geom_type == "MultiPolygon"
    assert e is None
    for outline, own in zip((a, b, c, d), ([0, 3], [1], [2, 4], [5, 6])):
        reference = shapely.union_all(plots.geometry.to_numpy()[own], grid_size=1e-6)
        assert outline.is_valid and outline.equals(reference)
        np.testing.assert_array_equal(shapely.get_coordinates(outline), np.round(shapely.get_coordinates(outline), 6))
