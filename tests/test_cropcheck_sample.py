"""Swapped crop declarations through the whole assessment of the sample: wheat declared on soybean
fields and maize on wheat fields (crops of other seasons).

The sample season was simulated from the check's own templates, so it only shows that a
caught swap reaches the borrower's status and that honest borrowers stay clean; how well
the check separates crops is measured on independently generated seasons
(``tests/test_cropcheck.py``, ``scripts/bench/bench_cropcheck.py``, ``seeds/README.md``).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest

from agricredit.assess import run_assessment, sample_case
from agricredit.privacy import DEMO_PII_KEY, PseudonymKey, pseudonym

SAMPLE = Path(__file__).resolve().parents[1] / "sample_tiles"
KEY = PseudonymKey(DEMO_PII_KEY.encode(), "environment")
INFO_CODES = {"CAPACITY_LIMITED", "CAP_APPLIED"}
SWAP = {"soybean": "wheat", "wheat": "maize"}
PER_DIRECTION = 20

if not (SAMPLE / "season").is_dir():
    pytest.skip("sample_tiles/season not built in this checkout", allow_module_level=True)


def _read(name: str) -> list[dict[str, str]]:
    with open(SAMPLE / name, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def swapped(tmp_path_factory):
    """Assessment with PER_DIRECTION honest soybean plots declared wheat and as many wheat plots declared maize.

    Honest = neither the plot nor its borrower is a planted case; the plots are taken
    evenly through the sorted plot ids, not chosen by their fit.
    """
    planted_borrowers = {case["borrower_id"] for case in _read("planted_cases.csv")}
    rows = _read("declarations.csv")
    swapped_plots: dict[str, str] = {}
    for crop in SWAP:
        candidates = sorted(r["plot_id"] for r in rows
                            if r["declared_crop"] == crop and r["borrower_id"] not in planted_borrowers)
        step = len(candidates) // PER_DIRECTION
        swapped_plots.update({pid: crop for pid in candidates[::step][:PER_DIRECTION]})
    for row in rows:
        if row["plot_id"] in swapped_plots:
            row["declared_crop"] = SWAP[swapped_plots[row["plot_id"]]]
    path = tmp_path_factory.mktemp("swap") / "declarations.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    assessment = run_assessment(dataclasses.replace(sample_case(), declarations=path), KEY)
    swapped_borrowers = {r["borrower_id"] for r in rows if r["plot_id"] in swapped_plots}
    return assessment, swapped_plots, swapped_borrowers, planted_borrowers


def test_swapped_declarations_go_to_review(swapped):
    # Caught as CROP_MISMATCH, or CLOUD_INSUFFICIENT where the sample's clouded spring dates hid the
    # declared wheat season: a person looks either way. The target of issue 9: >= 95 % of swaps.
    assessment, swapped_plots, _, _ = swapped
    codes = assessment.plots.set_index("plot_id")["reason_codes"]
    for truth in SWAP:
        plots = [pid for pid, crop in swapped_plots.items() if crop == truth]
        assert len(plots) == PER_DIRECTION
        caught = [pid for pid in plots if "CROP_MISMATCH" in codes[pid]]
        clouded = [pid for pid in plots if "CLOUD_INSUFFICIENT" in codes[pid]]
        assert len(set(caught) | set(clouded)) >= 0.95 * len(plots), (truth, sorted(set(plots) - set(caught) - set(clouded)))
        assert len(caught) >= 0.7 * len(plots)


def test_a_caught_swap_sends_its_borrower_to_review(swapped):
    assessment, swapped_plots, _, _ = swapped
    plots = assessment.plots.set_index("plot_id")
    status = dict(zip(assessment.borrowers["borrower"], assessment.borrowers["status"]))
    rows = {r["plot_id"]: r["borrower_id"] for r in _read("declarations.csv")}
    for pid in swapped_plots:
        if {"CROP_MISMATCH", "CLOUD_INSUFFICIENT"} & set(plots.at[pid, "reason_codes"]):
            assert status[pseudonym(KEY, "borrower", rows[pid])] == "REVIEW", pid


def test_unswapped_honest_borrowers_get_no_spurious_code(swapped):
    assessment, _, swapped_borrowers, planted_borrowers = swapped
    untouched = {pseudonym(KEY, "borrower", b) for b in {r["borrower_id"] for r in _read("declarations.csv")}
                 - swapped_borrowers - planted_borrowers}
    honest = assessment.borrowers.loc[assessment.borrowers["borrower"].isin(untouched)]
    assert len(honest) > 40
    assert set(honest["status"]) == {"APPROVE"}
    for codes in honest["reason_codes"]:
        assert set(filter(None, codes.split(";"))) <= INFO_CODES


def test_the_region_taken_from_the_plots_is_in_every_audit_record(swapped):
    assessment, _, _, _ = swapped
    for record in assessment.audit:
        assert sorted(k for k in record["inputs"] if k.startswith("region:")) == [
            "region:delmarva/calendars.csv", "region:delmarva/rotations.csv"]
