"""A plot verdict as the audit record stores it, figure by figure (issue 16 §1, §5).

The audit form (:meth:`PlotVerdict.to_dict`) is what ``replay`` and an auditor
read; it is compared here with a form written out by hand from the plot's
facts and the policy's tolerances, and read back with :meth:`PlotFacts.from_dict`.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math

import pytest

from _plotfacts import POLICY, honest, policy_with
from _values import approx_equal
from agricredit.errors import InputError
from agricredit.seeds import load_reason_codes
from agricredit.verify import (
    AREA_EFFECT_CODES,
    HOLD_CODES,
    Check,
    Overlap,
    PlotFacts,
    check_plot,
    plot_contribution,
    verify_plot,
    verify_plots,
)

DECLARED_TOLERANCE, VIGOR_MIN = 0.03, 0.7  # seeds/policy.toml


def test_the_audit_form_of_a_plot_verdict():
    facts = honest("P1", mu=8.0, declared_mu=8.5, vigor_factor=0.5, peak_ndvi=0.41, satellite_codes=["LOW_VIGOR"],
                   overlaps=[{"other_plot_id": "Q9", "other_borrower_id": "B2", "shared_m2": 50.0}])
    neighbour = honest("Q9", "B2", mu=4.0)
    verdict = verify_plots([facts, neighbour], POLICY)[0]
    assert 8.5 > 8.0 * (1 + DECLARED_TOLERANCE) and 50.0 < 100.0 and 50.0 < 0.05 * 4.0 * 10000 / 15  # no double claim
    expected_facts = {
        "plot_id": "P1", "borrower_id": "B1", "geometry_status": "valid", "geometry_reason": "",
        "drawn_mu": 8.0, "registered_mu": 8.0, "registry_holder_id": "B1", "declared_mu": 8.5, "declared_crop": "maize",
        "pixel_count": 100.0, "cropped_mu_at_peak": 7.2, "peak_ndvi": 0.41,
        "satellite_codes": [{"code": "LOW_VIGOR", "severity": "reduce", "figures": {}}],
        "vigor_factor": 0.5, "best_crop": "maize",
        "overlaps": [{"other_plot_id": "Q9", "other_borrower_id": "B2", "shared_m2": 50.0, "other_drawn_mu": 4.0}],
    }
    expected = {
        "plot_id": "P1", "facts": expected_facts,
        "areas": {"drawn_mu": 8.0, "registered_mu": 8.0, "declared_mu": 8.5, "cropped_mu": 7.2},
        "verified_mu": 8.0, "excluded": False, "light": "yellow",
        "checks": [
            {"code": "AREA_OVER_DECLARED", "severity": "reduce",
             "figures": {"declared_mu": 8.5, "registered_mu": 8.0, "tolerance": DECLARED_TOLERANCE}},
            {"code": "LOW_VIGOR", "severity": "reduce", "figures": {"peak_ndvi": 0.41, "vigor_factor": VIGOR_MIN}},
        ],
        "mu_now": 8.0, "mu_if_confirmed": 8.0, "vigor_factor": VIGOR_MIN,
    }
    got = verdict.to_dict()
    assert approx_equal(got, expected, "verdict")
    # The facts read back from their audit form are the same facts (the overlap completed with the neighbour's area).
    assert PlotFacts.from_dict(got["facts"]) == verdict.facts


def test_unknown_figures_are_written_as_null():
    facts = honest("P1", mu=8.0, registered_mu=math.nan, peak_ndvi=math.nan, vigor_factor=math.nan)
    verdict = verify_plots([facts], POLICY)[0]
    form = verdict.to_dict()
    assert form["facts"]["registered_mu"] is None and form["areas"]["registered_mu"] is None
    assert form["facts"]["peak_ndvi"] is None and form["facts"]["vigor_factor"] is None
    assert form["vigor_factor"] == 1.0  # unknown vigor: the yield table as it is
    assert Overlap("Q1", "B2", 12.5).to_dict() == {"other_plot_id": "Q1", "other_borrower_id": "B2", "shared_m2": 12.5,
                                                   "other_drawn_mu": None}
    assert Overlap.coerce(("Q1", "B2", "12.5")) == Overlap("Q1", "B2", 12.5)
    assert Overlap.coerce(("Q1", "B2", 12.5, "3")).other_drawn_mu == 3.0
    assert Overlap.coerce({"other_plot_id": "Q1", "other_borrower_id": "B2", "shared_m2": 1, "other_drawn_mu": ""}) \
        .to_dict()["other_drawn_mu"] is None


# --------------------------------------------------------------------------- branches mutation testing found untested

M2_PER_MU = 10000 / 15


def figures_of(verdict_or_checks, code):
    checks = verdict_or_checks.checks if hasattr(verdict_or_checks, "checks") else verdict_or_checks
    return next(c.figures for c in checks if c.code == code)


def test_double_claim_rules():
    # A sliver plot (0.01 mu = 6.7 m²) sharing 0.5 m² with a stranger: 7.5 % of the smaller plot > 5 %.
    sliver = honest("P1", mu=0.01, pixel_count=100.0,
                    overlaps=[{"other_plot_id": "A0", "other_borrower_id": "B1", "shared_m2": 3.0},  # own plot: ignored
                              {"other_plot_id": "Z9", "other_borrower_id": "B2", "shared_m2": 0.5, "other_drawn_mu": 1.0}])
    claim = figures_of(check_plot(sliver, POLICY), "DOUBLE_CLAIM")
    assert claim["other_plot_ids"] == ["Z9"] and claim["share_of_smaller"] == pytest.approx(0.5 / (0.01 * M2_PER_MU))
    # No drawn area on either side: only the area rule can fire, and the share is unknown.
    unknown = honest("P1", mu=10.0, drawn_mu=math.nan,
                     overlaps=[{"other_plot_id": "Z9", "other_borrower_id": "B2", "shared_m2": 150.0}])
    claim = figures_of(check_plot(unknown, POLICY), "DOUBLE_CLAIM")
    assert claim["shared_m2"] == 150.0 and claim["share_of_smaller"] is None
    # An overlap of zero area is no claim.
    zero = honest("P1", overlaps=[{"other_plot_id": "Z9", "other_borrower_id": "B2", "shared_m2": 0.0, "other_drawn_mu": 0.001}])
    assert "DOUBLE_CLAIM" not in verify_plot(zero, POLICY).codes


def test_satellite_figures():
    few = verify_plot(honest("P1", pixel_count=1.0), POLICY)
    assert few.checks[0].figures == {"min_pixel_count": 4.0, "pixel_count": 1.0}
    uncovered = verify_plot(honest("P1", cropped_mu_at_peak=0.0, satellite_codes={"NO_COVERAGE": {"acquisitions": 0}}), POLICY)
    assert [(c.code, c.figures) for c in uncovered.checks] == [("NO_COVERAGE", {"acquisitions": 0})]
    small = verify_plot(honest("P1", mu=0.8, cropped_mu_at_peak=0.1), POLICY)  # under one mu, still checked
    assert small.codes == ("NOT_CULTIVATED",)
    reported = verify_plot(honest("P1", cropped_mu_at_peak=math.nan, satellite_codes=["NOT_CULTIVATED"]), POLICY)
    assert figures_of(reported, "NOT_CULTIVATED")["cropped_mu"] is None
    weak = verify_plot(honest("P1", peak_ndvi=math.nan, vigor_factor=math.nan, satellite_codes=["LOW_VIGOR"]), POLICY)
    assert figures_of(weak, "LOW_VIGOR") == {"peak_ndvi": None, "vigor_factor": None}


def test_unit_mix_ups():
    # The drawn outline alone is 15 × off (a unit cannot be wrong in a measured polygon, but the outline can be):
    # the registered and declared figures agree, so the drawn one is left out.
    drawn_off = verify_plot(honest("P1", mu=10.0, declared_mu=10.0, drawn_mu=10.0 / 15), POLICY)
    unit = figures_of(drawn_off, "AREA_UNIT_SUSPECTED")
    assert unit["inconsistent"] == ["drawn"] and drawn_off.contribution.mu_if_confirmed == 10.0
    assert unit["ratio"] == (10.0 / 15) / 10.0 and unit["tolerance"] == 0.15
    # No drawn area, registered and declared 15 × apart: nothing to trust, the smaller is kept.
    two = verify_plot(honest("P1", mu=10.0, drawn_mu=math.nan, declared_mu=150.0), POLICY)
    assert figures_of(two, "AREA_UNIT_SUSPECTED")["inconsistent"] == ["declared"]
    assert two.contribution.mu_if_confirmed == 10.0


def test_owner_mismatch_says_whether_the_holder_is_known():
    known = verify_plot(honest("P1", registry_holder_id="B7"), POLICY)
    unknown = verify_plot(honest("P1", registry_holder_id=None), POLICY)
    assert figures_of(known, "OWNER_MISMATCH") == {"holder_known": True}
    assert figures_of(unknown, "OWNER_MISMATCH") == {"holder_known": False}


def test_counterfactual_contributions_used_to_rank_reasons():
    over = honest("P1", mu=9.0, registered_mu=8.6, declared_mu=9.0)  # 9 > 8.6 × 1.03, drawn within 10 %
    checks = check_plot(over, POLICY)
    assert [c.code for c in checks] == ["AREA_OVER_DECLARED"]
    assert plot_contribution(over, checks, POLICY).mu_now == 8.6
    assert plot_contribution(over, checks, POLICY, frozenset({"AREA_OVER_DECLARED"})).mu_now == 9.0
    short = honest("P1", mu=12.0, declared_mu=math.nan, registered_mu=9.0)  # the registry is the smaller figure
    checks = check_plot(short, POLICY)
    assert [c.code for c in checks] == ["AREA_DRAWN_MISMATCH"]
    assert plot_contribution(short, checks, POLICY).mu_now == 9.0
    assert plot_contribution(short, checks, POLICY, frozenset({"AREA_DRAWN_MISMATCH"})).mu_now == 12.0
    weak = honest("P1", vigor_factor=0.5, satellite_codes=["LOW_VIGOR"])
    checks = check_plot(weak, POLICY)
    assert plot_contribution(weak, checks, POLICY).vigor_factor == 0.7
    assert plot_contribution(weak, checks, POLICY, frozenset({"LOW_VIGOR"})).vigor_factor == 1.0


def test_a_counterfactual_given_the_unignored_contribution_is_the_one_computed_in_full():
    # Plots whose areas or vigor each code changes, every set of up to three codes on them, every code removed.
    plots = [honest("P1", mu=9.0, registered_mu=8.6, declared_mu=9.0),
             honest("P2", mu=12.0, declared_mu=math.nan, registered_mu=9.0),
             honest("P3", vigor_factor=0.5, repeated_mu=2.5), honest("P4", vigor_factor=1.2, repeated_mu=20.0),
             honest("P5", registered_mu=math.nan, declared_mu=150.0)]
    codes = ["AREA_OVER_DECLARED", "AREA_DRAWN_MISMATCH", "SELF_OVERLAP", "LOW_VIGOR", "NOT_CULTIVATED", "VISIT_REJECTED",
             "GEOMETRY_INVALID", "AREA_ABSURD", "CLOUD_INSUFFICIENT", "DOUBLE_CLAIM", "GEOMETRY_REPAIRED",
             "OWN_YIELD_HISTORY"]
    assert AREA_EFFECT_CODES < set(codes) and not HOLD_CODES.isdisjoint(codes)
    compared = 0
    for facts in plots:
        for size in range(4):
            for fired in itertools.combinations(codes, size):
                checks = [Check(code, "review", {}) for code in fired]
                unignored = plot_contribution(facts, checks, POLICY)
                for code in load_reason_codes():
                    ignore = frozenset({code})
                    assert plot_contribution(facts, checks, POLICY, ignore, unignored=unignored) == \
                        plot_contribution(facts, checks, POLICY, ignore), (facts.plot_id, fired, code)
                    compared += 1
    assert compared > 50_000


def test_an_unknown_satellite_code_is_named():
    facts = dataclasses.replace(honest("P1"), satellite_codes=(Check("ZZ_CODE", "review"), Check("AA_CODE", "review"),
                                                               Check("CLOUD_INSUFFICIENT", "review")))
    with pytest.raises(InputError, match="satellite code AA_CODE is not one the season module may report"):
        check_plot(facts, POLICY)


def test_unknown_vigor_is_the_yield_table_even_with_a_bonus_allowed():
    lenient = policy_with("satellite", vigor_factor_max=1.1)
    assert verify_plot(honest("P1", vigor_factor=math.nan), lenient).contribution.vigor_factor == 1.0
    assert verify_plot(honest("P1", vigor_factor=1.05), lenient).contribution.vigor_factor == 1.05


def test_a_given_neighbour_area_is_kept_and_the_run_is_logged(caplog):
    plots = [honest("P1", overlaps=[{"other_plot_id": "Q9", "other_borrower_id": "B2", "shared_m2": 20.0,
                                     "other_drawn_mu": 4.0}]),
             honest("P2", cropped_mu_at_peak=0.0), honest("Q9", "B2", mu=6.0, registered_mu=math.nan)]
    with caplog.at_level(logging.INFO, logger="agricredit.verify"):
        verdicts = verify_plots(plots, POLICY)
    assert verdicts[0].facts.overlaps[0].other_drawn_mu == 4.0  # as recorded, not replaced by Q9's 6 mu
    assert verdicts[2].facts.overlaps[0].other_drawn_mu == 10.0  # the mirrored overlap gets P1's drawn area
    assert "verified 3 plots: 1 green, 1 yellow, 1 red" in caplog.messages


def test_facts_from_loose_records():
    with pytest.raises(InputError, match="^P1: unknown plot fact 'colour'$"):
        PlotFacts.from_dict({"plot_id": "P1", "borrower_id": "B1", "zone": 3, "colour": "red"})
    facts = PlotFacts.from_dict({"plot_id": "P1", "borrower_id": "B1", "geometry_status": "", "declared_crop": math.nan,
                                 "overlaps": " ", "satellite_codes": [
                                     {"code": "LOW_VIGOR", "figures": {"gap": 0.2}}, Check.make("CLOUD_INSUFFICIENT")]})
    assert facts.geometry_status == "valid" and facts.declared_crop is None and facts.overlaps == ()
    assert [(c.code, c.figures) for c in facts.satellite_codes] == [("CLOUD_INSUFFICIENT", {}), ("LOW_VIGOR", {"gap": 0.2})]
    assert PlotFacts.from_dict({"plot_id": "P1", "borrower_id": "B1", "satellite_codes": ""}).satellite_codes == ()
    reported = verify_plot(honest("P1", drawn_mu=math.nan, satellite_codes=["NOT_CULTIVATED"]), POLICY)
    assert figures_of(reported, "NOT_CULTIVATED")["drawn_mu"] is None


@pytest.mark.parametrize(("source", "value"), [("declared_mu", 0.0), ("declared_mu", -3.0),
                                               ("registered_mu", math.inf), ("declared_mu", math.inf)])
def test_an_area_that_is_zero_negative_or_infinite_is_no_source(source, value):
    """Only positive, finite areas are compared and verified: the smaller of the other two (within tolerance)."""
    areas = {"drawn_mu": 10.0, "registered_mu": 10.0, "declared_mu": 9.9}  # honest(): declared 1 % less
    verdict = verify_plot(honest("P1", mu=10.0, **{source: value}), POLICY)
    assert verdict.verified_mu == min(area for name, area in areas.items() if name != source)
    assert not {"AREA_DRAWN_MISMATCH", "AREA_OVER_DECLARED", "AREA_UNIT_SUSPECTED"} & set(verdict.codes)
