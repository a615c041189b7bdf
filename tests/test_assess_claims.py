"""Claims and per-record isolation end to end: the sample with awkward records planted in a temporary copy.

One copy of the sample carries every case of issue 10's Claims and Crashes lists at once (each touches
its own borrowers), so one assessment checks them all; limits are checked against the crop table by hand.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyproj
import pytest
from shapely.geometry import box, mapping
from shapely.ops import transform

from agricredit.assess import load_case, run_assessment, write_outputs
from agricredit.errors import CorruptInputError, InputError, MissingTileError, SchemaError
from agricredit.privacy import pseudonym
from agricredit.seeds import load_crops
from suite_keys import TEST_AUDIT_KEY, TEST_KEYS, TEST_PII_KEY

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_tiles"
KEY = TEST_PII_KEY
POLICY_OUTLINE_M = 2.5  # seeds/policy.toml [area] outline_accuracy_m
ADVANCE_RATE, STEP = 0.6, 100.0  # seeds/policy.toml [credit]
TO_WGS84 = pyproj.Transformer.from_crs(32618, 4326, always_xy=True).transform  # the sample lies in UTM 18N


def alias(borrower_id: str) -> str:
    return pseudonym(KEY, "borrower", borrower_id)


def national_id(body17: str) -> str:
    """An 18-character ID with its GB 11643-1999 check character (weights 2^(17-i) mod 11)."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    return body17 + "10X98765432"[sum(int(d) * w for d, w in zip(body17, weights)) % 11]


def utm_rectangle(x0: float, y0: float, width: float, height: float) -> dict:
    return mapping(transform(TO_WGS84, box(x0, y0, x0 + width, y0 + height)))


def feature(properties, geometry) -> dict:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def append_rows(path: Path, rows: list[str]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(row + "\n" for row in rows))


def edit_rows(path: Path, change) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], *filter(None, (change(line) for line in lines[1:]))]) + "\n", encoding="utf-8")


# Neighbours far east of the tiles (no coverage: they go to review anyway; what matters is DOUBLE_CLAIM).
X0, Y0 = 560_000.0, 4_150_000.0
EDGE = 58.0  # m: a 3 m band along a 58 m shared edge is 174 m²


def build_awkward_case(folder: Path) -> Path:
    shutil.copytree(SAMPLE, folder)
    plots = json.loads((folder / "plots.geojson").read_text(encoding="utf-8"))
    by_id = {f["properties"]["plot_id"]: f for f in plots["features"]}
    new = [
        feature({"plot_id": "P0011", "borrower_id": "B001"}, by_id["P0011"]["geometry"]),  # duplicated ID
        feature({"plot_id": "P0019B", "borrower_id": "B007"}, by_id["P0019"]["geometry"]),  # one field drawn twice
        # Honest neighbours: 3 m band along a 58 m edge; careless ones: 10 m band.
        feature({"plot_id": "PN1", "borrower_id": "BN1"}, utm_rectangle(X0, Y0, EDGE, 60.0)),
        feature({"plot_id": "PN2", "borrower_id": "BN2"}, utm_rectangle(X0, Y0 + 57.0, EDGE, 60.0)),
        feature({"plot_id": "PN3", "borrower_id": "BN3"}, utm_rectangle(X0 + 500, Y0, EDGE, 60.0)),
        feature({"plot_id": "PN4", "borrower_id": "BN4"}, utm_rectangle(X0 + 500, Y0 + 50.0, EDGE, 60.0)),
        # 10 km x 10 km (10,000 ha) over the whole sample, registered and declared as 10 mu.
        feature({"plot_id": "PHUGE", "borrower_id": "BHUGE"}, mapping(box(-75.75, 37.65, -75.64, 37.74))),
        feature({"plot_id": "PNOB"}, utm_rectangle(X0 + 1000, Y0, 60.0, 60.0)),  # no borrower_id
        feature(None, utm_rectangle(X0 + 1500, Y0, 60.0, 60.0)),  # "properties": null
        feature({"plot_id": "PGHOST", "borrower_id": "BGHOST"}, utm_rectangle(X0 + 2000, Y0, 60.0, 60.0)),  # not in the table
    ]
    plots["features"].extend(new)
    ring = by_id["P0035"]["geometry"]["coordinates"][0]
    ring[1] = [float("nan"), ring[1][1]]
    (folder / "plots.geojson").write_text(json.dumps(plots), encoding="utf-8")  # json writes NaN, as a careless exporter

    append_rows(folder / "registry.csv", [
        "P0019B,B007,0.3902,ha,耕地,农村土地承包经营权确权登记",
        *(f"PN{i},BN{i},5.2,mu,耕地,农村土地承包经营权确权登记" for i in range(1, 5)),
        "PHUGE,BHUGE,10,mu,耕地,农村土地承包经营权确权登记",
    ])
    # P0004 is declared by B003, not by B002 whom the plot file names.
    edit_rows(folder / "declarations.csv", lambda line: line if not line.startswith("B002,P0004,") else None)
    append_rows(folder / "declarations.csv", [
        "B003,P0004,wheat,3.30,mu",
        "B007,P0019B,soybean,5.68,mu",
        *(f"BN{i},PN{i},maize,5.2,mu" for i in range(1, 5)),
        "BHUGE,PHUGE,maize,10,mu",
        "B010,PNOPE,maize,3,mu",  # a declaration for a plot that is not in the plot file
    ])
    ids = iter(f"4107271980010{n:04d}" for n in range(1, 100))
    # B008's national ID gets a wrong check digit.
    edit_rows(folder / "borrowers.csv", lambda line: line if not line.startswith("B008,") else _bad_check_digit(line))
    append_rows(folder / "borrowers.csv", [
        *(f"BN{i},{national_id(next(ids))},,,延津县南屯村" for i in range(1, 5)),
        f"BHUGE,{national_id(next(ids))},,,延津县南屯村",
        f"BNONE,{national_id(next(ids))},,,延津县南屯村",  # a borrower without any plot
    ])
    return folder / "case.toml"


def _bad_check_digit(line: str) -> str:
    cells = line.split(",")
    good = cells[1]
    cells[1] = good[:17] + next(c for c in "0123456789" if c != good[17])
    return ",".join(cells)


@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    case_file = build_awkward_case(tmp_path_factory.mktemp("awkward") / "case")
    assessment = run_assessment(load_case(case_file), KEY)
    return case_file, assessment


def verdicts_of(assessment, borrower_id):
    return {v.plot_id: v for v in assessment.verdicts if v.borrower_id == alias(borrower_id)}


def decision_of(assessment, borrower_id):
    return next(d for d in assessment.decisions if d.borrower_id == alias(borrower_id))


def limit_by_hand(verdicts, scenario: str) -> float:
    """floor(min(need, capacity, cap) / step) × step from the verdicts' areas and the crop table."""
    crops = load_crops()
    need = capacity = 0.0
    for verdict in verdicts:
        contribution = verdict.contribution
        mu = contribution.mu_now if scenario == "now" else contribution.mu_if_confirmed
        crop = crops[verdict.facts.declared_crop]
        need += mu * crop.cost_cny_per_mu
        capacity += ADVANCE_RATE * mu * contribution.vigor_factor * crop.yield_kg_per_mu * crop.price_cny_per_kg
    return math.floor(round(min(need, capacity, 200000.0) / STEP, 6)) * STEP


def test_field_drawn_twice_counts_once(awkward):
    _, assessment = awkward
    verdicts = verdicts_of(assessment, "B007")
    assert [c.code for c in verdicts["P0019"].checks] == [c.code for c in verdicts["P0019B"].checks] == ["SELF_OVERLAP"]
    assert verdicts["P0019B"].facts.repeated_mu == pytest.approx(verdicts["P0019"].facts.drawn_mu, rel=1e-9)
    assert verdicts["P0019B"].contribution.mu_if_confirmed == 0.0
    decision = decision_of(assessment, "B007")
    assert decision.status == "REVIEW" and "SELF_OVERLAP" in decision.reason_codes
    # If confirmed: P0019 once (its smallest source, declared 5.68 mu) and P0020, not P0019 twice.
    assert decision.if_confirmed.mu == pytest.approx(5.68 + verdicts["P0020"].contribution.mu_if_confirmed)
    assert decision.limit_if_confirmed == limit_by_hand(verdicts.values(), "if_confirmed")
    assert decision.limit == limit_by_hand(verdicts.values(), "now")  # P0020 alone


def test_neighbours_sharing_an_edge_are_not_double_claims(awkward):
    _, assessment = awkward
    codes = {v.plot_id: [c.code for c in v.checks] for v in assessment.verdicts}
    assert "DOUBLE_CLAIM" not in codes["PN1"] and "DOUBLE_CLAIM" not in codes["PN2"]
    # A 10 m band: (10 - 2 x 2.5) x (58 - 2 x 2.5) = 265 m² remain after shrinking, above 100 m².
    assert "DOUBLE_CLAIM" in codes["PN3"] and "DOUBLE_CLAIM" in codes["PN4"]
    shared = next(c for c in next(v for v in assessment.verdicts if v.plot_id == "PN3").checks if c.code == "DOUBLE_CLAIM")
    expected = (10.0 - 2 * POLICY_OUTLINE_M) * (EDGE - 2 * POLICY_OUTLINE_M)
    assert shared.figures["shared_m2"] == pytest.approx(expected, rel=2e-3)  # UTM scale 0.9996-1.0004 here


def test_absurd_outline_is_rejected_alone(awkward):
    _, assessment = awkward
    huge = next(v for v in assessment.verdicts if v.plot_id == "PHUGE")
    assert [c.code for c in huge.checks] == ["AREA_ABSURD"] and huge.contribution.mu_if_confirmed == 0.0
    assert assessment.rejected["AREA_ABSURD"] == ["PHUGE"]
    # It covers every sample plot, yet only the planted double claims and the careless neighbours are DOUBLE_CLAIM.
    double = sorted(v.plot_id for v in assessment.verdicts if "DOUBLE_CLAIM" in v.codes)
    assert double == ["P0076", "P0077", "P0310", "P0311", "PN3", "PN4"]
    assert decision_of(assessment, "BHUGE").status == "REVIEW"


def test_duplicated_plot_id_sends_its_borrower_to_review(awkward):
    _, assessment = awkward
    decision = decision_of(assessment, "B001")
    verdicts = verdicts_of(assessment, "B001")
    assert [c.code for c in verdicts["P0011"].checks] == ["DUPLICATE_PLOT_ID"]
    assert decision.status == "REVIEW" and "DUPLICATE_PLOT_ID" in decision.reason_codes
    assert decision.limit == 1100.0  # P0001 alone, as before, but no longer an APPROVE
    # If confirmed, P0011 adds the smaller of its registered 75.48 and declared 75.26 mu.
    assert verdicts["P0011"].contribution.mu_if_confirmed == pytest.approx(75.26)
    assert decision.limit_if_confirmed == limit_by_hand(verdicts.values(), "if_confirmed") > 20000
    assert "P0011" in assessment.rejected["DUPLICATE_ID"]


def test_contested_declaration_sends_the_plot_borrower_to_review(awkward):
    _, assessment = awkward
    verdicts = verdicts_of(assessment, "B002")
    contested = next(c for c in verdicts["P0004"].checks if c.code == "DECLARATION_CONTESTED")
    assert contested.figures == {"other_declarants": [alias("B003")]}
    assert verdicts["P0004"].facts.declared_mu == 3.30  # B003's declaration is the only one
    decision = decision_of(assessment, "B002")
    assert decision.status == "REVIEW" and decision.limit == limit_by_hand(verdicts.values(), "now")
    assert decision.limit_if_confirmed == limit_by_hand(verdicts.values(), "if_confirmed") > decision.limit


def test_every_borrower_of_the_table_is_decided(awkward):
    _, assessment = awkward
    with open(SAMPLE / "borrowers.csv", encoding="utf-8") as handle:
        table = [row["borrower_id"] for row in csv.DictReader(handle)]
    expected = {alias(b) for b in [*table, "BN1", "BN2", "BN3", "BN4", "BHUGE", "BNONE"]}
    assert set(assessment.borrowers["borrower"]) == expected
    row = assessment.borrowers.set_index("borrower").loc[alias("BNONE")]
    assert (row["status"], row["reason_codes"], row["limit"], row["limit_if_confirmed"]) == ("REVIEW", "NO_PLOTS", 0, 0)


def test_bad_national_id_holds_that_borrower_only(awkward):
    _, assessment = awkward
    decision = decision_of(assessment, "B008")
    assert decision.status == "REVIEW" and decision.limit == 0.0
    assert decision.reason_codes[0] == "BORROWER_RECORD_INVALID"
    assert decision.limit_if_confirmed == limit_by_hand(verdicts_of(assessment, "B008").values(), "if_confirmed") > 0
    listed = assessment.rejected["BAD_TABLE_ROW"]
    assert any(entry.startswith("borrowers.csv row") and "wrong check digit" in entry for entry in listed)


def test_bad_rows_and_features_are_listed_and_the_rest_completes(awkward):
    _, assessment = awkward
    listed = assessment.rejected
    assert any(e.startswith("declarations.csv row") and "not in the plot file" in e for e in listed["BAD_TABLE_ROW"])
    assert listed["MISSING_BORROWER"] == ["PNOB"]
    assert listed["UNKNOWN_BORROWER"] == ["PGHOST"]
    assert len(listed["MISSING_ID"]) == 1 and listed["MISSING_ID"][0].startswith("row ")
    assert "P0035" in listed["GEOMETRY_NOT_FINITE"]
    p0035 = next(v for v in assessment.verdicts if v.plot_id == "P0035")
    assert [c.code for c in p0035.checks] == ["GEOMETRY_INVALID"]
    assert decision_of(assessment, "B010").status == "APPROVE"  # its stray declaration is dropped, nothing else
    assert decision_of(assessment, "B011").status == "REVIEW"


def test_cli_finishes_with_exit_3_and_one_line_per_rejected_kind(awkward, tmp_path):
    case_file, assessment = awkward
    env = {**os.environ, **TEST_KEYS, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "agricredit", "-q", "assess", str(case_file), "-o",
                             str(tmp_path / "out"), "--no-progress"], env=env, capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    for code in ("AREA_ABSURD", "BAD_TABLE_ROW", "DUPLICATE_ID", "GEOMETRY_NOT_FINITE", "MISSING_BORROWER", "MISSING_ID",
                 "UNKNOWN_BORROWER"):
        assert f"rejected {code} (" in result.stderr, code
    with open(tmp_path / "out" / "borrowers.csv", encoding="utf-8-sig") as handle:
        rows = {row["borrower"]: row for row in csv.DictReader(handle)}
    assert rows[alias("BNONE")]["status"] == "REVIEW" and len(rows) == len(assessment.borrowers)
    strict = subprocess.run([sys.executable, "-m", "agricredit", "-q", "assess", str(case_file), "-o",
                             str(tmp_path / "strict"), "--no-progress", "--strict"], env=env, capture_output=True, text=True)
    assert strict.returncode == 1 and "Traceback" not in strict.stderr
    assert len(strict.stderr.strip().splitlines()) == 1 and not (tmp_path / "strict" / "manifest.json").exists()


def test_outputs_of_the_awkward_case_are_written(awkward, tmp_path):
    _, assessment = awkward
    manifest = write_outputs(assessment, tmp_path / "out", TEST_AUDIT_KEY)
    assert manifest["counts"]["borrowers"] == len(assessment.borrowers)
    document = json.loads((tmp_path / "out" / "borrowers.geojson").read_text(encoding="utf-8"))
    nobody = next(f for f in document["features"] if f["properties"]["borrower"] == alias("BNONE"))
    assert nobody["geometry"] is None and nobody["properties"]["plots"] == ""


@pytest.mark.parametrize("mutation", ["bad_id", "no_borrower"])
def test_strict_stops_at_the_first_bad_record(tmp_path, mutation):
    folder = tmp_path / "case"
    shutil.copytree(SAMPLE, folder)
    if mutation == "bad_id":
        edit_rows(folder / "borrowers.csv", lambda line: line if not line.startswith("B008,") else _bad_check_digit(line))
        match = "borrowers.csv: row .*wrong check digit"
    else:
        plots = json.loads((folder / "plots.geojson").read_text(encoding="utf-8"))
        del plots["features"][3]["properties"]["borrower_id"]
        (folder / "plots.geojson").write_text(json.dumps(plots), encoding="utf-8")
        match = "plots.geojson: row 3: feature has no borrower_id"
    with pytest.raises(SchemaError, match=match):
        run_assessment(load_case(folder / "case.toml"), KEY, strict=True)


def test_corrupt_tile_among_many_holds_only_the_plots_under_it(tmp_path):
    folder = tmp_path / "case"
    shutil.copytree(SAMPLE, folder)
    tile = folder / "season" / "S2_L2A_SIM_20230620.tif"
    data = tile.read_bytes()
    tile.write_bytes(data[: len(data) // 2])  # a download cut in half: the header opens, the pixels do not
    assessment = run_assessment(load_case(folder / "case.toml"), KEY)
    assert [entry.split(":")[0] for entry in assessment.rejected["TILE_UNREADABLE"]] == [tile.name]
    held = [v for v in assessment.verdicts if "TILE_UNREADABLE" in v.codes]
    assert held and all(v.contribution.mu_now == 0.0 for v in held)
    assert {c.figures["tiles"][0] for v in held for c in v.checks if c.code == "TILE_UNREADABLE"} == {tile.name}
    with pytest.raises(CorruptInputError, match="cannot read pixels"):
        run_assessment(load_case(folder / "case.toml"), KEY, strict=True)


MISSING_TILE = "S2_L2A_SIM_20230620.tif"


def season_with_a_missing_stac_asset(season: Path) -> tuple[Path, Any]:
    """The sample's season in ``season`` (a copy) listed as a STAC ItemCollection ``items.json``, an item per tile,
    with :data:`MISSING_TILE` gone and its item's geometry the western half of the plots' extent; returns the
    collection and that footprint (WGS84)."""
    shutil.copytree(SAMPLE / "season", season)
    west, south, east, north = gpd.read_file(SAMPLE / "plots.geojson").total_bounds
    footprint = box(west - 0.01, south - 0.01, (west + east) / 2, north + 0.01)
    with open(season / "manifest.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    items = [{"type": "Feature", "stac_version": "1.0.0", "id": row["path"][:-4],
              "geometry": mapping(footprint) if row["path"] == MISSING_TILE else None,
              "properties": {"datetime": f"{row['date']}T15:50:00Z"},
              "assets": {"data": {"href": row["path"], "type": "image/tiff; application=geotiff", "roles": ["data"]}},
              "links": []} for row in rows]
    collection = season / "items.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": items}), encoding="utf-8")
    (season / MISSING_TILE).unlink()
    return collection, footprint


def test_a_season_of_tiles_that_cannot_be_opened_says_why_in_its_one_line(tmp_path):
    (tmp_path / "fake.tif").write_text("not a TIFF", encoding="utf-8")
    for rows, first in [("2023-06-01,s2-l2a,gone.tif\n", "gone.tif: tile 'gone.tif' listed in the manifest does not "
                                                         "exist"),
                        ("2023-06-01,s2-l2a,fake.tif\n2023-07-01,s2-l2a,gone.tif\n",
                         "fake.tif: cannot open raster: ")]:
        manifest = tmp_path / "manifest.csv"
        manifest.write_text("date,sensor,path\n" + rows, encoding="utf-8")
        case = dataclasses.replace(load_case(SAMPLE / "case.toml"), tiles=(manifest,))
        with pytest.raises(InputError) as error:
            run_assessment(case, KEY)
        count = rows.count("\n")
        assert str(error.value).startswith(f"{manifest}: no acquisitions found in the tiles for the given period; "
                                           f"{count} tile(s) could not be opened, the first {first}")


def test_a_missing_stac_asset_holds_the_plots_its_item_lies_over(tmp_path):
    # The item's geometry says where the missing tile lies: exactly the assessed plots touching it are held
    # (TILE_UNREADABLE: to review, nothing counted), as under a tile whose pixels cannot be read.
    collection, footprint = season_with_a_missing_stac_asset(tmp_path / "season")
    case = dataclasses.replace(load_case(SAMPLE / "case.toml"), tiles=(collection,))
    assessment = run_assessment(case, KEY)
    assert assessment.rejected["TILE_UNREADABLE"] == [f"{MISSING_TILE}: asset '{MISSING_TILE}' does not exist"]
    outlines = gpd.read_file(SAMPLE / "plots.geojson").set_index("plot_id").geometry
    assessed = [v.plot_id for v in assessment.verdicts if v.plot_id not in assessment.rejected["GEOMETRY_INVALID"]]
    under = sorted(plot_id for plot_id in assessed if outlines[plot_id].intersects(footprint))
    held = [v for v in assessment.verdicts if "TILE_UNREADABLE" in v.codes]
    assert sorted(v.plot_id for v in held) == under and 100 < len(under) < len(assessed) - 100
    assert all(v.contribution.mu_now == 0.0 for v in held)
    assert {c.figures["tiles"][0] for v in held for c in v.checks if c.code == "TILE_UNREADABLE"} == {MISSING_TILE}
    with pytest.raises(MissingTileError, match=rf"items\.json: item 5: asset '{MISSING_TILE}' does not exist"):
        run_assessment(case, KEY, strict=True)


def test_tile_that_cannot_be_opened_is_listed_and_the_run_completes(tmp_path):
    folder = tmp_path / "case"
    shutil.copytree(SAMPLE, folder)
    tile = folder / "season" / "S2_L2A_SIM_20230620.tif"
    tile.write_bytes(b"not a GeoTIFF at all" * 100)  # no header: no footprint, no date
    assessment = run_assessment(load_case(folder / "case.toml"), KEY)
    (entry,) = assessment.rejected["TILE_UNREADABLE"]
    assert entry.startswith(f"{tile.name}: ") and "cannot open raster" in entry
    assert not any("TILE_UNREADABLE" in v.codes for v in assessment.verdicts)  # its footprint is unknown
    used = sorted(role.split("/")[-1] for role in assessment.inputs if role.startswith("tile:"))
    assert len(used) == 9 and tile.name not in used  # the run went on with the other nine dates
    assert len(assessment.decisions) == 120
    with pytest.raises(CorruptInputError, match="cannot open raster"):
        run_assessment(load_case(folder / "case.toml"), KEY, strict=True)


def test_audit_records_of_held_borrowers_replay_exactly(awkward):
    from agricredit.audit import replay

    _, assessment = awkward
    held = {alias("B008"), alias("BNONE"), alias("B001")}
    records = [r for r in assessment.audit if r["borrower_id"] in held]
    assert len(records) == 3
    for record in records:
        assert replay(json.loads(json.dumps(record)), assessment.policy) == [], record["borrower_id"]


def test_verify_command_isolates_too(awkward, tmp_path):
    case_file, _ = awkward
    env = {**os.environ, **TEST_KEYS, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "agricredit", "-q", "verify", str(case_file), "-o", str(tmp_path / "plots.csv")]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert "rejected UNKNOWN_BORROWER (1): PGHOST" in result.stderr
    strict = subprocess.run([*command[:-2], "-o", str(tmp_path / "strict.csv"), "--strict"], env=env,
                            capture_output=True, text=True)
    assert strict.returncode == 1 and "Traceback" not in strict.stderr and not (tmp_path / "strict.csv").exists()


@pytest.mark.parametrize("dtype", [object, "float64", "Int64", "str"])
def test_a_missing_borrower_id_is_missing_whatever_the_column_type(dtype):
    # A GeoParquet plot file may carry borrower IDs as nullable integers: a missing one is pandas' NA there,
    # which must not become the borrower "<NA>" (then UNKNOWN_BORROWER instead of MISSING_BORROWER).
    from agricredit.assess import _id_or_none

    values = [7, None, 12] if dtype != "str" else ["7", None, "12"]
    column = pd.Series(values, dtype=dtype)
    assert [_id_or_none(v) for v in column.tolist()] == ["7", None, "12"]
