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
