"""Limits: the formula against hand-computed cases, status, reason ranking, explanations, invariants."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _plotfacts import POLICY, honest, policy_with
from agricredit.credit import compute_terms, decide, decide_all, explain
from agricredit.verify import verify_plots

# The crop economics, read from seeds/crops.csv with the csv module (not through agricredit.seeds).
with open(Path(__file__).resolve().parents[1] / "seeds" / "crops.csv", encoding="utf-8") as _handle:
    _ECONOMICS = {row["crop"]: (float(row["cost_cny_per_mu"]), float(row["yield_kg_per_mu"]), float(row["price_cny_per_kg"]))
                  for row in csv.DictReader(_handle)}
MAIZE_COST, MAIZE_YIELD, MAIZE_PRICE = _ECONOMICS["maize"]
SOY_COST, SOY_YIELD, SOY_PRICE = _ECONOMICS["soybean"]
ADVANCE_RATE, CAP, STEP = 0.6, 200000.0, 100.0  # seeds/policy.toml [credit]


def floor_to(value, step=STEP):
    return math.floor(round(value / step, 6)) * step


def figure(value):
    """A figure as the explanation prints it: thousands separators, at most 2 decimals, no trailing zeros."""
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def decision_for(*facts, policy=POLICY, borrower="B1"):
    verdicts = verify_plots(facts, policy)
    return decide(borrower, [v for v in verdicts if v.borrower_id == borrower], policy)


def test_capacity_bound_limit_by_hand():
    decision = decision_for(honest(mu=9.8, declared_mu=9.8))
    capacity = ADVANCE_RATE * 9.8 * MAIZE_YIELD * MAIZE_PRICE  # 5,582.41 CNY with the 2023 seeds
    need = 9.8 * MAIZE_COST  # 6,267.10 CNY
    assert capacity < need and floor_to(capacity) < floor_to(need), "the seeds no longer make this case capacity-bound"
    assert decision.now.capacity == pytest.approx(capacity) and decision.now.need == pytest.approx(need)
    assert decision.status == "APPROVE" and decision.limit == floor_to(capacity) == decision.limit_if_confirmed
    assert decision.reason_codes == ("CAPACITY_LIMITED",)
    assert decision.reasons[0].impact == floor_to(need) - floor_to(capacity)  # the limit if capacity did not bind


def test_need_bound_limit_by_hand():
    policy = policy_with("credit", advance_rate=0.8)
    decision = decision_for(honest(mu=10.0, declared_mu=10.0), policy=policy)
    need, capacity = 10 * MAIZE_COST, 0.8 * 10 * MAIZE_YIELD * MAIZE_PRICE  # 6,395 and 7,595.12 CNY
    assert need < capacity, "the seeds no longer make this case need-bound"
    assert decision.now.need == pytest.approx(need) and decision.now.capacity == pytest.approx(capacity)
    assert decision.now.binding == "need" and decision.limit == floor_to(need) and decision.reasons == ()


def test_cap_bound_limit_by_hand():
    decision = decision_for(honest(mu=500.0, declared_mu=500.0, pixel_count=1e4))
    lower_ceiling = min(500 * MAIZE_COST, ADVANCE_RATE * 500 * MAIZE_YIELD * MAIZE_PRICE)  # capacity 284,817 CNY
    assert lower_ceiling > CAP
    assert decision.limit == CAP and decision.now.binding == "cap"
    reason = decision.reasons[0]
    assert reason.code == "CAP_APPLIED" and reason.impact == floor_to(lower_ceiling) - CAP


@pytest.mark.parametrize("step", [100.0, 1000.0, 1.0, 0.01])
def test_rounding_down_to_the_step(step):
    decision = decision_for(honest(mu=9.8, declared_mu=9.8), policy=policy_with("credit", rounding_step=step))
    capacity = ADVANCE_RATE * 9.8 * MAIZE_YIELD * MAIZE_PRICE  # 5,582.4132: every step cuts something off
    assert decision.limit == pytest.approx(math.floor(round(capacity / step, 6)) * step) and decision.limit < capacity


def test_mixed_crops_and_vigor_by_hand():
    decision = decision_for(honest("P1", mu=5.0, declared_mu=5.0),
                            honest("P2", mu=3.0, declared_mu=3.0, crop="soybean", vigor_factor=0.9))
    need = 5 * MAIZE_COST + 3 * SOY_COST
    capacity = 0.6 * (5 * MAIZE_YIELD * MAIZE_PRICE + 3 * 0.9 * SOY_YIELD * SOY_PRICE)
    assert decision.now.need == pytest.approx(need) and decision.now.capacity == pytest.approx(capacity)
    assert decision.limit == math.floor(capacity / 100) * 100
    assert [line.crop for line in decision.now.lines] == ["maize", "soybean"]


def test_below_min_limit_is_declined():
    decision = decision_for(honest(mu=0.5, declared_mu=0.5))
    capacity = ADVANCE_RATE * 0.5 * MAIZE_YIELD * MAIZE_PRICE  # 284.8 CNY < min_limit 500
    assert decision.status == "DECLINE" and decision.limit == 0.0 == decision.limit_if_confirmed
    assert decision.now.limit == floor_to(capacity) > 0  # the computed figure stays visible


def test_not_cultivated_only_plot_is_declined_with_its_reason():
    decision = decision_for(honest(cropped_mu_at_peak=0.1))
    assert decision.status == "DECLINE" and decision.reason_codes[0] == "NOT_CULTIVATED"
    assert decision.reasons[0].impact == decision_for(honest()).limit


def test_over_declared_is_approved_on_the_registered_area():
    decision = decision_for(honest(mu=10.0, declared_mu=20.0), honest("P2", mu=5.0))
    assert decision.status == "APPROVE" and "AREA_OVER_DECLARED" in decision.reason_codes
    assert decision.now.mu == pytest.approx(10.0 + 4.95)


def test_review_keeps_both_limits():
    decision = decision_for(honest("P1", mu=10.0), honest("P2", mu=8.0, registered_mu=math.nan))
    assert decision.status == "REVIEW"
    assert decision.limit == decision_for(honest("P1", mu=10.0)).limit
    assert decision.limit_if_confirmed == decision_for(honest("P1", mu=10.0), honest("P2", mu=8.0, registered_mu=8.0)).limit
    no_registry = next(r for r in decision.reasons if r.code == "NO_REGISTRY_RECORD")
    assert no_registry.impact == decision.limit_if_confirmed - decision.limit and no_registry.plot_ids == ("P2",)


def test_owner_mismatch_is_review_counted_only_once_the_lease_is_confirmed():
    decision = decision_for(honest("P1", mu=10.0), honest("P2", mu=8.0, registry_holder_id="B7"))
    assert decision.status == "REVIEW"
    assert decision.limit == decision_for(honest("P1", mu=10.0)).limit
    assert decision.limit_if_confirmed == decision_for(honest("P1", mu=10.0), honest("P2", mu=8.0)).limit
    assert decision.reasons[0].code == "OWNER_MISMATCH"


def test_reasons_ranked_by_impact_then_code():
    decision = decision_for(honest("P1", mu=10.0), honest("P2", mu=6.0, cropped_mu_at_peak=0.0),
                            honest("P3", mu=2.0, pixel_count=1.0))
    impacts = {r.code: r.impact for r in decision.reasons}
    assert decision.reason_codes == ("NOT_CULTIVATED", "TOO_FEW_PIXELS", "CAPACITY_LIMITED")
    assert impacts["NOT_CULTIVATED"] > impacts["TOO_FEW_PIXELS"] > impacts["CAPACITY_LIMITED"]
    # equal impacts: by severity then code name
    tied = decision_for(honest("P1", mu=10.0), honest("P2", mu=5.0, cropped_mu_at_peak=0.0), honest("P3", mu=5.0, pixel_count=1.0))
    assert tied.reasons[0].impact == tied.reasons[1].impact
    # TOO_FEW_PIXELS is a review code since issue 9 (a plot too small for the sensor goes to a person): it ranks first
    assert tied.reason_codes[:2] == ("TOO_FEW_PIXELS", "NOT_CULTIVATED")


def test_at_most_four_reasons_and_review_code_kept():
    facts = [honest("P1", mu=20.0), honest("P2", mu=6.0, cropped_mu_at_peak=0.0), honest("P3", mu=5.0, pixel_count=1.0),
             honest("P4", mu=4.0, drawn_mu=3.0), honest("P5", mu=4.0, vigor_factor=0.5, satellite_codes=["LOW_VIGOR"]),
             honest("P6", mu=3.0, cropped_mu_at_peak=0.0, satellite_codes={"CLOUD_INSUFFICIENT": {}}),
             honest("P7", mu=3.0, cropped_mu_at_peak=0.0, satellite_codes={"CLOUD_INSUFFICIENT": {}}, registered_mu=math.nan)]
    decision = decision_for(*facts)
    assert len(decision.reasons) == 4 and decision.status == "REVIEW"
    assert any(r.severity == "review" for r in decision.reasons)


def test_explanation_names_the_figures_in_both_languages():
    decision = decision_for(honest("P1", mu=9.8, declared_mu=9.8), honest("P2", mu=10.0, declared_mu=20.1, drawn_mu=12.0))
    english = explain(decision, POLICY, "en")
    for text in (f"{decision.limit:,.0f} CNY", "9.8 mu", f"{figure(MAIZE_YIELD)} kg/mu", f"{figure(MAIZE_PRICE)} CNY/kg",
                 "0.6 ×", f"{figure(MAIZE_COST)} CNY/mu", "declared 20.1 mu vs registered 10 mu × 1.03", "capacity-limited",
                 "AREA_OVER_DECLARED (plots P2)"):
        assert text in english
    chinese = explain(decision, POLICY, "zh")
    for text in (f"{decision.limit:,.0f} 元", "玉米", f"{figure(MAIZE_YIELD)} 公斤/亩", f"{figure(MAIZE_PRICE)} 元/公斤",
                 "申报 20.1 亩，登记 10 亩 × 1.03", "额度受还款能力限制", "申报面积超过登记面积"):
        assert text in chinese
    review = decision_for(honest("P1", mu=9.8), honest("P2", mu=5.0, registered_mu=math.nan))
    assert f"{review.limit_if_confirmed:,.0f} CNY on" in explain(review, POLICY) and "复核确认后额度" in explain(review, POLICY, "zh")


# --------------------------------------------------------------------------- properties

CROPS = ["maize", "soybean", "wheat", "rice"]
FLAWS = [
    {}, {"registered_mu": math.nan}, {"registry_holder_id": "B9"}, {"cropped_mu_at_peak": 0.0}, {"pixel_count": 1.0},
    {"satellite_codes": {"CLOUD_INSUFFICIENT": {}}}, {"satellite_codes": {"CROP_MISMATCH": {}}, "best_crop": "wheat"},
    {"satellite_codes": ["LOW_VIGOR"], "vigor_factor": 0.6}, {"geometry_status": "invalid"},
    {"declared_factor": 2.0}, {"drawn_factor": 0.7}, {"registered_factor": 1 / 15}, {"vigor_factor": 1.08},
]

plot_strategy = st.tuples(st.floats(0.05, 400.0), st.sampled_from(CROPS), st.sampled_from(range(len(FLAWS))))


def build(plots):
    facts = []
    for number, (mu, crop, flaw_index) in enumerate(plots):
        flaw = dict(FLAWS[flaw_index])
        drawn = mu * flaw.pop("drawn_factor", 1.0)
        registered = mu * flaw.pop("registered_factor", 1.0)
        declared = mu * 0.99 * flaw.pop("declared_factor", 1.0)
        changes = {"drawn_mu": drawn, "registered_mu": registered, "declared_mu": declared, "cropped_mu_at_peak": drawn * 0.9}
        changes.update(flaw)
        facts.append(honest(f"P{number:03d}", "B1", mu=mu, crop=crop, **changes))
    return facts


@settings(max_examples=60, deadline=None)
@given(st.lists(plot_strategy, min_size=1, max_size=6))
def test_decision_invariants(plots):
    decision = decision_for(*build(plots))
    cap, step = POLICY.credit.cap_per_borrower, POLICY.credit.rounding_step
    for limit in (decision.limit, decision.limit_if_confirmed):
        assert 0.0 <= limit <= cap
        assert limit == 0.0 or limit >= POLICY.credit.min_limit
        assert math.isclose(limit / step, round(limit / step))
    assert decision.limit_if_confirmed >= decision.limit
    assert 0 <= len(decision.reasons) <= 4
    if decision.status == "REVIEW":
        assert any(r.severity == "review" for r in decision.reasons)
    if decision.limit < decision.limit_if_confirmed:
        assert decision.status == "REVIEW"  # a held-back amount is never silent
    honest_limit = decision_for(*build([(mu, crop, 0) for mu, crop, _ in plots])).limit
    if decision.limit < honest_limit or decision.limit_if_confirmed < honest_limit:
        assert decision.reasons, "a reduction without a reason code"


@settings(max_examples=60, deadline=None)
@given(st.lists(plot_strategy, min_size=1, max_size=6), st.integers(0, 5), st.floats(0.0, 1.0))
def test_limit_never_rises_when_a_verified_area_falls(plots, which, shrink):
    which %= len(plots)
    smaller = [(mu * shrink if i == which else mu, crop, flaw) for i, (mu, crop, flaw) in enumerate(plots)]
    before, after = decision_for(*build(plots)), decision_for(*build(smaller))
    assert after.now.limit <= before.now.limit and after.if_confirmed.limit <= before.if_confirmed.limit


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(CROPS), st.floats(0, 1000), st.floats(0.7, 1.1)), max_size=8), st.floats(0, 1))
def test_terms_monotone_in_each_area(items, shrink):
    full = compute_terms(items, POLICY)
    for index in range(len(items)):
        reduced = [(c, mu * shrink if i == index else mu, v) for i, (c, mu, v) in enumerate(items)]
        assert compute_terms(reduced, POLICY).limit <= full.limit


@settings(max_examples=30, deadline=None)
@given(st.lists(plot_strategy, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_decisions_do_not_depend_on_row_order(plots, rng):
    facts = build(plots)
    facts = [f.__class__.from_dict({**f.to_dict(), "borrower_id": f"B{i % 3}", "registry_holder_id":
                                    f"B{i % 3}" if f.registry_holder_id == "B1" else f.registry_holder_id})
             for i, f in enumerate(facts)]
    shuffled = facts[:]
    rng.shuffle(shuffled)
    first = decide_all(verify_plots(facts, POLICY), POLICY)
    second = decide_all(verify_plots(shuffled, POLICY), POLICY)
    assert [d.to_dict() for d in first] == [d.to_dict() for d in second]
    assert [explain(d, POLICY, "zh") for d in first] == [explain(d, POLICY, "zh") for d in second]


def test_field_drawn_twice_gives_the_limit_of_one_field_by_hand():
    # 30 mu of maize drawn twice (P2 repeats P1 entirely): REVIEW, and if confirmed one 29.7 mu field is financed.
    first = honest("P1", mu=30.0, overlaps=[("P2", "B1", 18000.0)])
    second = honest("P2", mu=30.0, repeated_mu=30.0)
    decision = decision_for(first, second)
    need = 29.7 * MAIZE_COST  # 18,993.15 CNY
    capacity = ADVANCE_RATE * 29.7 * MAIZE_YIELD * MAIZE_PRICE  # 16,918.13 CNY with the 2023 seeds: binds
    assert capacity < need and floor_to(capacity) < floor_to(need), "the seeds no longer make this case capacity-bound"
    assert decision.status == "REVIEW" and decision.limit == 0.0
    assert decision.if_confirmed.mu == pytest.approx(29.7)
    assert decision.if_confirmed.need == pytest.approx(need) and decision.if_confirmed.capacity == pytest.approx(capacity)
    assert decision.limit_if_confirmed == floor_to(capacity)  # 16,900 CNY
    assert decision.reason_codes[0] == "SELF_OVERLAP"


def test_borrower_without_plots_is_review_with_no_plots():
    decisions = decide_all(verify_plots([honest("P1", "B1")], POLICY), POLICY, borrower_ids=["B1", "B2"])
    assert [d.borrower_id for d in decisions] == ["B1", "B2"]
    empty = decisions[1]
    assert empty.status == "REVIEW" and empty.reason_codes == ("NO_PLOTS",)
    assert empty.limit == empty.limit_if_confirmed == 0.0 and empty.plot_ids == ()
    assert "NO_PLOTS" in explain(empty, POLICY) and "NO_PLOTS" in explain(empty, POLICY, "zh")


def test_borrower_level_review_holds_the_whole_limit():
    from agricredit.verify import Check

    bad_row = [Check.make("BORROWER_RECORD_INVALID", reason="national_id has a wrong check digit (GB 11643-1999)")]
    verdicts = verify_plots([honest(mu=9.8, declared_mu=9.8)], POLICY)
    decision = decide("B1", verdicts, POLICY, bad_row)
    capacity = ADVANCE_RATE * 9.8 * MAIZE_YIELD * MAIZE_PRICE  # 5,582.41 CNY with the 2023 seeds
    assert capacity < 9.8 * MAIZE_COST, "the seeds no longer make this case capacity-bound"
    assert decision.status == "REVIEW" and decision.limit == 0.0
    assert decision.limit_if_confirmed == floor_to(capacity)  # 5,500 CNY, as without the bad row
    assert decision.reason_codes[0] == "BORROWER_RECORD_INVALID" and decision.reasons[0].impact == floor_to(capacity)
