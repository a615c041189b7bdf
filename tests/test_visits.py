"""Field visits settle reviews: confirmed → limit_if_confirmed, rejected → the plot removed, measured area, replay."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from agricredit.assess import run_assessment, sample_case, write_outputs
from agricredit.audit import AuditKey, replay, replay_file
from agricredit.cli.main import cli
from agricredit.errors import InputError, SchemaError
from agricredit.policy import load_policy
from agricredit.privacy import DEMO_PII_KEY, PseudonymKey, pseudonym
from agricredit.visits import read_visits, settle_verdicts

KEY = PseudonymKey(DEMO_PII_KEY.encode(), "environment")
HEADER = "plot_id,visit_date,officer_id,crop_seen,measured_mu,reason_code,outcome\n"
#: Planted review plots of the sample: P0231 CLOUD_INSUFFICIENT, P0251 CROP_MISMATCH (declared maize),
#: P0083 AREA_UNIT_SUSPECTED (drawn 94.27 mu, registry in another unit).
VISITS = ("P0231,2023-08-02,OFF-017,wheat,,CLOUD_INSUFFICIENT,confirmed\n"
          "P0251,2023-08-03,OFF-017,maize,,CROP_MISMATCH,rejected\n"
          "P0083,2023-08-03,OFF-022,maize,90.5,AREA_UNIT_SUSPECTED,confirmed\n")


@pytest.fixture(scope="module")
def before():
    return run_assessment(sample_case(), KEY)


@pytest.fixture(scope="module")
def after(tmp_path_factory):
    path = tmp_path_factory.mktemp("visits") / "visits.csv"
    path.write_text(HEADER + VISITS, encoding="utf-8")
    return run_assessment(dataclasses.replace(sample_case(), visits=path), KEY)


def _row(assessment, plot_id):
    plot = assessment.plots.set_index("plot_id").loc[plot_id]
    return assessment.borrowers.set_index("borrower").loc[plot["borrower"]], plot


def test_a_confirmed_review_raises_the_limit_to_limit_if_confirmed(before, after):
    was, _ = _row(before, "P0231")
    now, plot = _row(after, "P0231")
    assert was["status"] == "REVIEW" and was["limit"] < was["limit_if_confirmed"]
    assert now["status"] == "APPROVE"
    assert now["limit"] == now["limit_if_confirmed"] == was["limit_if_confirmed"]
    assert "VISIT_CONFIRMED" in plot["reason_codes"] and "CLOUD_INSUFFICIENT" not in plot["reason_codes"]


def test_a_rejected_review_removes_the_plot(before, after):
    was, _ = _row(before, "P0251")
    now, plot = _row(after, "P0251")
    assert was["status"] == "REVIEW" and was["limit_if_confirmed"] > was["limit"]
    assert plot["verified_mu"] == plot["verified_mu_if_confirmed"] == 0
    assert now["status"] == "APPROVE" and now["limit"] == now["limit_if_confirmed"] == was["limit"]
    assert now["limit_if_confirmed"] < was["limit_if_confirmed"]
    assert "VISIT_REJECTED" in now["reason_codes"]


def test_a_measured_area_replaces_the_drawn_one(before, after):
    _, plot_before = _row(before, "P0083")
    now, plot = _row(after, "P0083")
    assert plot_before["drawn_mu"] == pytest.approx(94.2718, abs=1e-4)
    assert plot["drawn_mu"] == 90.5
    # the smallest consistent source is now the measured area, below the declaration and the registry
    assert plot["verified_mu"] == 90.5 == plot["verified_mu_if_confirmed"]
    assert now["status"] == "APPROVE"


def test_other_borrowers_are_not_touched(before, after):
    visited = {_row(before, p)[1]["borrower"] for p in ("P0231", "P0251", "P0083")}
    b0 = before.borrowers.set_index("borrower").drop(index=sorted(visited))
    b1 = after.borrowers.set_index("borrower").drop(index=sorted(visited))
    pd.testing.assert_frame_equal(b0, b1)


def test_visits_are_hashed_into_the_audit_records_and_replay_reproduces_them(after, tmp_path):
    records = [r for r in after.audit if "visits" in r]
    assert sorted(v["plot_id"] for r in records for v in r["visits"]) == ["P0083", "P0231", "P0251"]
    officer = pseudonym(KEY, "officer", "OFF-017")
    visit = next(v for r in records for v in r["visits"] if v["plot_id"] == "P0231")
    assert visit["officer"] == officer and len(visit["sha256"]) == 64
    assert not any("OFF-017" in json.dumps(r) for r in after.audit)  # officers only as pseudonyms
    policy = load_policy(None)
    for record in after.audit:
        assert replay(record, policy) == [], record["borrower_id"]
    forged = json.loads(json.dumps(records[0]))
    forged["visits"][0]["outcomes"] = {code: "confirmed" for code in forged["visits"][0]["outcomes"]}
    assert replay(forged, policy)  # an edited visit no longer reproduces the recorded decision
    write_outputs(after, tmp_path / "out", AuditKey.demo())
    report = replay_file(tmp_path / "out" / "audit.jsonl", AuditKey.demo(), sample=True)
    assert (report.total, report.problems) == (len(after.audit), {})


def _visits(tmp_path, body, name="visits.csv"):
    path = tmp_path / name
    path.write_text(HEADER + body, encoding="utf-8")
    return path


@pytest.mark.parametrize(("body", "message"), [
    ("P0231,2023-08-32,OFF-1,wheat,,CLOUD_INSUFFICIENT,confirmed\n", "row 2: visit_date '2023-08-32' is not a date"),
    ("P0231,2023-08-02,,wheat,,CLOUD_INSUFFICIENT,confirmed\n", "row 2: officer_id is empty"),
    ("P0231,2023-08-02,OFF-1,wheat,,CLOUD_INSUFFICIENT,maybe\n", "row 2: outcome 'maybe' is neither"),
    ("P0231,2023-08-02,OFF-1,wheat,,NOT_A_CODE,confirmed\n", "row 2: reason_code NOT_A_CODE is not in the catalogue"),
    ("P0231,2023-08-02,OFF-1,wheat,-3,,\n", "row 2: measured_mu '-3' is not a positive area"),
    ("P0231,2023-08-02,OFF-1,wheat,,,\n", "row 2: the row settles nothing"),
    ("P0231,2023-08-02,OFF-1,wheat,,CLOUD_INSUFFICIENT,confirmed\nP0231,2023-08-05,OFF-1,wheat,12,,\n",
     "row 3: plot P0231: visit_date differs"),
    ("P0231,2023-08-02,OFF-1,wheat,,CLOUD_INSUFFICIENT,confirmed\nP0231,2023-08-02,OFF-1,wheat,,CLOUD_INSUFFICIENT,"
     "rejected\n", "row 3: plot P0231: CLOUD_INSUFFICIENT is settled twice"),
])
def test_bad_visit_rows_are_one_line_errors(tmp_path, body, message):
    with pytest.raises(SchemaError) as caught:
        read_visits(_visits(tmp_path, body), KEY)
    assert message in str(caught.value) and "visits.csv" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("body", "message"), [
    ("P9999,2023-08-02,OFF-1,wheat,,CLOUD_INSUFFICIENT,confirmed\n", "row 2: plot P9999 is not in this run"),
    ("P0001,2023-08-02,OFF-1,soybean,,CLOUD_INSUFFICIENT,confirmed\n",
     "row 2: plot P0001 does not carry CLOUD_INSUFFICIENT: nothing to confirm"),
    ("P0231,2023-08-02,OFF-1,wheat,,NOT_CULTIVATED,rejected\n",
     "row 2: plot P0231 does not carry NOT_CULTIVATED: nothing to reject"),
    ("P0251,2023-08-02,OFF-1,wheat,,CROP_MISMATCH,confirmed\n", "CROP_MISMATCH confirmed but the crop seen (wheat)"),
])
def test_a_visit_the_run_cannot_apply_is_a_clear_error(before, tmp_path, body, message):
    path = _visits(tmp_path, body)
    with pytest.raises(InputError) as caught:
        settle_verdicts(before.verdicts, read_visits(path, KEY), before.policy, path=path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_a_visit_may_settle_only_review_codes(before, tmp_path):
    reduced = next(v for v in before.verdicts if any(c.severity == "reduce" for c in v.checks))
    code = next(c.code for c in reduced.checks if c.severity == "reduce")
    path = _visits(tmp_path, f"{reduced.plot_id},2023-08-02,OFF-1,{reduced.facts.declared_crop},,{code},confirmed\n")
    with pytest.raises(InputError, match="is not a review code"):
        settle_verdicts(before.verdicts, read_visits(path, KEY), before.policy, path=path)


def test_assess_with_a_bad_visit_fails_in_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("AGRICREDIT_PII_KEY", DEMO_PII_KEY)
    path = _visits(tmp_path, "P9999,2023-08-02,OFF-1,wheat,,CLOUD_INSUFFICIENT,confirmed\n")
    result = CliRunner().invoke(cli, ["assess", "--sample", "-o", str(tmp_path / "out"), "--visits", str(path)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {path}: row 2: plot P9999 is not in this run (or was rejected before any check)")
    assert not (tmp_path / "out").exists()


def test_an_xlsx_visits_table_with_area_confirmed_mu(tmp_path):
    path = tmp_path / "visits.xlsx"
    pd.DataFrame([{"plot_id": "P0083", "visit_date": "2023-08-03", "officer_id": "OFF-022", "crop_seen": "玉米",
                   "area_confirmed_mu": 90.5, "reason_code": "AREA_UNIT_SUSPECTED", "outcome": "Confirmed"}]
                 ).to_excel(path, index=False)
    (visit,) = read_visits(path, KEY)
    assert (visit.plot_id, visit.measured_mu, visit.crop_seen, visit.outcomes) == (
        "P0083", 90.5, "maize", (("AREA_UNIT_SUSPECTED", "confirmed"),))
