"""Plot-level review codes and the season's findings as check_plot passes them on: codes and figures exactly.

Figures are the facts given here or the policy's values read from ``seeds/policy.toml`` with tomllib (not
through agricredit's policy loader).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from _plotfacts import POLICY, honest
from agricredit.verify import PlotFacts, check_plot

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
with open(SEEDS / "policy.toml", "rb") as _handle:
    RAW_POLICY = tomllib.load(_handle)


def _codes(facts):
    return {c.code: (c.severity, c.figures) for c in check_plot(facts, POLICY)}


def test_an_absurd_area_is_the_only_check_with_its_figures():
    ratio = RAW_POLICY["area"]["absurd_area_ratio"]
    facts = honest(mu=10.0, drawn_mu=10.0 * ratio + 1, declared_mu=9.0, registered_mu=10.0, processing_failed="x")
    assert _codes(facts) == {"AREA_ABSURD": ("review", {"declared_mu": 9.0, "drawn_mu": 10.0 * ratio + 1,
                                                        "max_ratio": ratio, "registered_mu": 10.0})}
    unknown = honest(mu=10.0, drawn_mu=10.0 * ratio + 1, declared_mu=9.0, registered_mu=math.nan)
    assert _codes(unknown)["AREA_ABSURD"][1]["registered_mu"] is None


@pytest.mark.parametrize(("changes", "code", "figures"), [
    ({"geometry_status": "duplicate", "geometry_reason": "plot_id P1 appears in rows 3 and 7"}, "DUPLICATE_PLOT_ID",
     {"reason": "plot_id P1 appears in rows 3 and 7"}),
    ({"unread_tiles": ("b.tif", "a.tif")}, "TILE_UNREADABLE", {"tiles": ["a.tif", "b.tif"]}),
    ({"processing_failed": "chunk 4: worker lost"}, "PROCESSING_FAILED", {"reason": "chunk 4: worker lost"}),
    ({"other_declarants": ("Bz", "Ba")}, "DECLARATION_CONTESTED", {"other_declarants": ["Ba", "Bz"]}),
])
def test_plot_level_review_codes_carry_their_figures(changes, code, figures):
    found = _codes(PlotFacts.from_dict({**honest().to_dict(), **changes}))
    assert found[code] == ("review", figures)


@pytest.mark.parametrize("code", ["SEASON_UNRECOGNISED", "PARTIAL_COVERAGE"])
def test_season_findings_are_passed_on_with_their_figures(code):
    facts = honest(satellite_codes={code: {"best_rmse": 0.21, "covered_share": 0.6}})
    assert _codes(facts)[code] == ("review", {"best_rmse": 0.21, "covered_share": 0.6})


def test_not_cultivated_unconfirmed_keeps_the_areas_and_the_seasons_figures():
    facts = honest(mu=10.0, cropped_mu_at_peak=2.0, satellite_codes={"NOT_CULTIVATED_UNCONFIRMED": {"clear": 1}})
    found = _codes(facts)
    assert "NOT_CULTIVATED" not in found
    assert found["NOT_CULTIVATED_UNCONFIRMED"] == ("review", {
        "clear": 1, "cropped_mu": 2.0, "drawn_mu": 10.0, "min_share": RAW_POLICY["satellite"]["cultivated_min_share"]})


def test_facts_as_json_lists_tuples_sorts_the_chain_and_leaves_out_an_empty_failure():
    facts = PlotFacts.from_dict({**honest().to_dict(), "other_declarants": ("B9", "B3"), "unread_tiles": ("t.tif",),
                                 "chain": {"z": {"b": 1, "a": 2}, "a": [1]}})
    out = facts.to_dict()
    assert out["other_declarants"] == ["B3", "B9"] and out["unread_tiles"] == ["t.tif"]
    assert list(out["chain"]) == ["a", "z"] and list(out["chain"]["z"]) == ["a", "b"]
    assert "processing_failed" not in out and list(out).index("chain") > list(out).index("unread_tiles")
    failed = PlotFacts.from_dict({**honest().to_dict(), "processing_failed": "chunk 2"}).to_dict()
    assert failed["processing_failed"] == "chunk 2"


def test_a_double_claim_carries_the_policys_figures_and_no_repeated_area():
    area = RAW_POLICY["area"]
    shared = area["double_claim_min_area_m2"] + 1.0
    facts = honest(mu=10.0, overlaps=[("P2", "B2", shared, 10.0)], repeated_mu=0.3)
    assert _codes(facts)["DOUBLE_CLAIM"] == ("review", {
        "min_area_m2": area["double_claim_min_area_m2"], "min_share": area["double_claim_min_share"],
        "other_plot_ids": ["P2"], "outline_accuracy_m": area["outline_accuracy_m"],
        "share_of_smaller": pytest.approx(shared / (10.0 * 10_000 / 15)), "shared_m2": shared})
