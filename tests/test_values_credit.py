"""What an officer and an auditor read of one decision, figure by figure (issue 16 §1, §5).

One hand-built borrower (an honest plot, a double claim under review, a
repaired outline) is decided and its whole audit form (:meth:`Decision.to_dict`)
and both explanations are compared with texts assembled here from the crop
economics of ``seeds/crops.csv`` and the formula of design §7. The other tests
pin the branches of :mod:`agricredit.credit` that mutation testing showed
untested: which scenario names the binding ceiling, impacts seen only in the
if-confirmed limit, zero impacts, plots without a declared crop, errors.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from _plotfacts import POLICY, honest
from _values import approx_equal
from agricredit.credit import compute_terms, decide
from agricredit.credit import explain as explain_decision
from agricredit.errors import InputError
from agricredit.verify import verify_plots

with open(Path(__file__).resolve().parents[1] / "seeds" / "crops.csv", encoding="utf-8") as _handle:
    ECONOMICS = {row["crop"]: (float(row["cost_cny_per_mu"]), float(row["yield_kg_per_mu"]), float(row["price_cny_per_kg"]))
                 for row in csv.DictReader(_handle)}
COST, YIELD, PRICE = ECONOMICS["maize"]
RATE, CAP, STEP = 0.6, 200000.0, 100.0  # seeds/policy.toml [credit]
M2_PER_MU = 10000 / 15


def floor_step(value):
    return math.floor(round(value / STEP, 6)) * STEP


def fig(value):
    """A figure as written for people: thousands separators, at most 2 decimals, no trailing zeros."""
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def decision_of(*facts):
    return decide("B1", [v for v in verify_plots(facts, POLICY) if v.borrower_id == "B1"], POLICY)


@pytest.fixture(scope="module")
def case():
    facts = [
        honest("P1", mu=9.8765, declared_mu=9.8765),
        honest("P2", mu=5.0, declared_mu=5.0, overlaps=[{"other_plot_id": "Q9", "other_borrower_id": "B2",
                                                         "shared_m2": 300.0, "other_drawn_mu": 4.0}]),
        honest("P3", mu=2.0, declared_mu=2.0, geometry_status="repaired", geometry_reason="Ring Self-intersection"),
    ]
    now_mu, confirmed_mu = 9.8765 + 2.0, 9.8765 + 2.0 + 5.0  # P2 is held for review
    terms = {}
    for name, mu in (("now", now_mu), ("if_confirmed", confirmed_mu)):
        need, capacity = mu * COST, RATE * mu * YIELD * PRICE
        assert capacity < need < CAP  # maize at the 2023 seeds: capacity binds
        terms[name] = {"mu": mu, "need": round(need, 2), "capacity": round(capacity, 2), "cap": CAP,
                       "limit": floor_step(capacity), "binding": "capacity",
                       "crops": [{"crop": "maize", "mu": mu, "vigor": 1.0, "cost_per_mu": COST, "yield_per_mu": YIELD,
                                  "price_per_kg": PRICE}]}
    now, confirmed = terms["now"], terms["if_confirmed"]
    expected = {
        "borrower_id": "B1", "status": "REVIEW", "limit": now["limit"], "limit_if_confirmed": confirmed["limit"],
        "currency": "CNY", "now": now, "if_confirmed": confirmed,
        "reasons": [
            {"code": "DOUBLE_CLAIM", "severity": "review", "impact": confirmed["limit"] - now["limit"], "plot_ids": ["P2"],
             "figures": {"min_area_m2": 100.0, "min_share": 0.05, "other_plot_ids": ["Q9"],
                         "share_of_smaller": 300.0 / (4.0 * M2_PER_MU), "shared_m2": 300.0}},
            {"code": "CAPACITY_LIMITED", "severity": "info", "impact": floor_step(now_mu * COST) - now["limit"],
             "plot_ids": [], "figures": {"need": now["need"], "capacity": now["capacity"]}},
            {"code": "GEOMETRY_REPAIRED", "severity": "info", "impact": 0.0, "plot_ids": ["P3"],
             "figures": {"reason": "Ring Self-intersection"}},
        ],
        "plot_ids": ["P1", "P2", "P3"],
    }
    return decision_of(*facts), expected


def test_the_audit_form_of_a_decision(case):
    decision, expected = case
    assert approx_equal(decision.to_dict(), expected, "decision")


def test_the_explanations_spell_out_every_figure(case):
    decision, expected = case
    now, confirmed = expected["now"], expected["if_confirmed"]
    double, ceiling = expected["reasons"][0], expected["reasons"][1]
    mu_now, mu_conf = fig(now["mu"]), fig(confirmed["mu"])
    english = (
        f"Review: limit {fig(now['limit'])} CNY on {mu_now} verified mu (maize {mu_now} mu); "
        f"{fig(confirmed['limit'])} CNY on {mu_conf} mu (maize {mu_conf} mu) if the plots under review are confirmed; "
        f"capacity-limited: need {fig(now['need'])} CNY = {mu_now} mu × {fig(COST)} CNY/mu, "
        f"capacity {fig(now['capacity'])} CNY = 0.6 × {mu_now} mu × {fig(YIELD)} kg/mu × {fig(PRICE)} CNY/kg, "
        f"cap 200,000 CNY; "
        f"DOUBLE_CLAIM (plots P2): The plot overlaps a plot claimed by another borrower — 300 m² shared with Q9, "
        f"lowered the limit by {fig(double['impact'])} CNY; "
        f"CAPACITY_LIMITED: The limit was set by the expected harvest value (repayment capacity) rather than the cost "
        f"of cultivation — capacity {fig(now['capacity'])} < need {fig(now['need'])}, lowered the limit by "
        f"{fig(ceiling['impact'])} CNY; "
        f"GEOMETRY_REPAIRED (plots P3): The plot outline was invalid and was repaired with less than 1% change in area"
        f" — Ring Self-intersection.")
    assert explain_decision(decision, POLICY, "en") == english
    chinese = (
        f"待复核：额度 {fig(now['limit'])} 元，核实面积 {mu_now} 亩（玉米 {mu_now} 亩）；"
        f"复核确认后额度 {fig(confirmed['limit'])} 元，面积 {mu_conf} 亩（玉米 {mu_conf} 亩）；"
        f"额度受还款能力限制：种植成本 {fig(now['need'])} 元 = {mu_now} 亩 × {fig(COST)} 元/亩, "
        f"还款能力 {fig(now['capacity'])} 元 = 0.6 × {mu_now} 亩 × {fig(YIELD)} 公斤/亩 × {fig(PRICE)} 元/公斤, "
        f"单户上限 200,000 元；"
        f"DOUBLE_CLAIM (地块 P2)：该地块与其他借款人申报的地块重叠 — 与 Q9 重叠 300 平方米, 使额度降低 {fig(double['impact'])} 元；"
        f"CAPACITY_LIMITED：额度受预期收成价值（还款能力）限制，而非种植成本 — 还款能力 {fig(now['capacity'])} < "
        f"种植成本 {fig(now['need'])}, 使额度降低 {fig(ceiling['impact'])} 元；"
        f"GEOMETRY_REPAIRED (地块 P3)：地块边界无效，已修复且面积变化小于1% — Ring Self-intersection。")
    assert explain_decision(decision, POLICY, "zh") == chinese


def test_the_binding_ceiling_is_named_from_the_limit_now_while_there_is_one():
    # Now: 0.9 mu of maize (capacity binds); if confirmed: + 1,000 mu held for review (the cap binds).
    small, held = honest("P1", mu=0.9, declared_mu=0.9), honest("P2", mu=1000.0, declared_mu=1000.0, registered_mu=math.nan)
    decision = decision_of(small, held)
    assert decision.now.binding == "capacity" and decision.if_confirmed.binding == "cap"
    assert "CAPACITY_LIMITED" in decision.reason_codes and "CAP_APPLIED" not in decision.reason_codes
    # Nothing verified now: the ceiling is named from the if-confirmed limit.
    only_held = decision_of(honest("P2", mu=10.0, declared_mu=10.0, registered_mu=math.nan))
    assert only_held.now.mu == 0 and only_held.if_confirmed.binding == "capacity"
    assert only_held.reason_codes == ("NO_REGISTRY_RECORD", "CAPACITY_LIMITED")
    capacity = RATE * 10 * YIELD * PRICE
    assert only_held.reasons[1].impact == floor_step(10 * COST) - floor_step(capacity)
    assert only_held.reasons[1].figures == {"need": round(10 * COST, 2), "capacity": round(capacity, 2)}


def test_cap_applied_names_the_cap():
    decision = decision_of(honest("P1", mu=1000.0, declared_mu=1000.0))
    cap_reason = next(r for r in decision.reasons if r.code == "CAP_APPLIED")
    assert cap_reason.figures == {"cap": CAP} and isinstance(cap_reason.figures["cap"], float)
    assert cap_reason.severity == "info" and cap_reason.plot_ids == ()
    assert cap_reason.impact == floor_step(RATE * 1000 * YIELD * PRICE) - CAP


def test_an_impact_seen_only_in_the_if_confirmed_limit():
    # P2 is held (CROP_MISMATCH) and drawn 30 % short: fixing the outline adds nothing now, 3 mu if confirmed.
    held = honest("P2", mu=10.0, declared_mu=10.0, drawn_mu=7.0, satellite_codes={"CROP_MISMATCH": {}}, best_crop="wheat")
    decision = decision_of(honest("P1", mu=10.0, declared_mu=10.0), held)
    mismatch = next(r for r in decision.reasons if r.code == "AREA_DRAWN_MISMATCH")
    confirmed_now = floor_step(RATE * 17.0 * YIELD * PRICE)
    confirmed_fixed = floor_step(RATE * 20.0 * YIELD * PRICE)
    assert decision.limit_if_confirmed == confirmed_now
    assert mismatch.impact == confirmed_fixed - confirmed_now > 0


def test_a_code_that_changes_nothing_has_zero_impact():
    decision = decision_of(honest("P1", mu=10.0, declared_mu=10.0, geometry_status="repaired", geometry_reason="fixed"))
    repaired = next(r for r in decision.reasons if r.code == "GEOMETRY_REPAIRED")
    assert repaired.impact == 0.0 and decision.reasons[0].code == "CAPACITY_LIMITED"


def test_plots_without_a_declared_crop():
    # A plot with no area from any source may lack a crop; the plots after it still count.
    nothing = honest("P0", mu=math.nan, crop=None)
    alone = decision_of(honest("P1", mu=10.0, declared_mu=10.0))
    both = decision_of(nothing, honest("P1", mu=10.0, declared_mu=10.0))
    assert both.limit == alone.limit > 0 and both.now.mu == 10.0
    # One that would add area cannot be valued without a crop: an error naming the plot.
    with pytest.raises(InputError, match="^P7: plot has no declared crop$") as raised:
        decision_of(honest("P7", mu=0.5, declared_mu=0.5, crop=None))
    assert raised.value.record == "P7"


def test_errors_name_what_is_wrong():
    with pytest.raises(InputError, match="^crop 'cotton' is not in the crop table$"):
        compute_terms([("cotton", 1.0, 1.0)], POLICY)
    with pytest.raises(InputError, match="^negative verified area -1.0$"):
        compute_terms([("maize", -1.0, 1.0)], POLICY)
    verdicts = verify_plots([honest("P1", "B1"), honest("P2", "B2"), honest("P3", "B3")], POLICY)
    with pytest.raises(InputError, match="^P2: plot belongs to another borrower$") as raised:
        decide("B1", verdicts, POLICY)
    assert raised.value.record == "P2"
    assert decide("B1", verdicts[:1], POLICY).borrower_id == "B1"


VIGOR_MIN = 0.7  # seeds/policy.toml satellite.vigor_factor_min


def ceilings(areas, vigor=None):
    """(need, capacity, limit) of {crop: mu}, with an optional {crop: vigor factor}, by design §7."""
    vigor = vigor or {}
    need = sum(mu * ECONOMICS[c][0] for c, mu in areas.items())
    capacity = RATE * sum(mu * ECONOMICS[c][1] * vigor.get(c, 1.0) * ECONOMICS[c][2] for c, mu in areas.items())
    return need, capacity, floor_step(min(need, capacity, CAP))


def test_explanation_of_mixed_crops_vigor_and_four_reasons():
    decision = decision_of(
        honest("P1", mu=12.0, declared_mu=12.0, drawn_mu=9.0),  # drawn 25 % short: AREA_DRAWN_MISMATCH
        honest("P2", mu=6.0, declared_mu=6.0, crop="soybean", vigor_factor=0.5, satellite_codes=["LOW_VIGOR"]),
        honest("P3", mu=10.0, declared_mu=10.0, registered_mu=10.0 / 15),  # registry in ha written as mu
        honest("P4", mu=3.0, declared_mu=3.0, crop="wheat", satellite_codes={"CROP_MISMATCH": {}}, best_crop="maize"))
    weak = {"soybean": VIGOR_MIN}
    need, capacity, limit = ceilings({"maize": 9, "soybean": 6}, weak)
    need_c, capacity_c, limit_c = ceilings({"maize": 19, "soybean": 6, "wheat": 3}, weak)
    assert capacity < need and capacity_c < need_c
    impacts = {
        "AREA_UNIT_SUSPECTED": ceilings({"maize": 19, "soybean": 6}, weak)[2] - limit,
        "CROP_MISMATCH": ceilings({"maize": 9, "soybean": 6, "wheat": 3}, weak)[2] - limit,
        "AREA_DRAWN_MISMATCH": max(ceilings({"maize": 12, "soybean": 6}, weak)[2] - limit,
                                   ceilings({"maize": 22, "soybean": 6, "wheat": 3}, weak)[2] - limit_c),
        "LOW_VIGOR": max(ceilings({"maize": 9, "soybean": 6})[2] - limit,
                         ceilings({"maize": 19, "soybean": 6, "wheat": 3})[2] - limit_c),
        "CAPACITY_LIMITED": floor_step(need) - limit,
    }
    severity = {"AREA_UNIT_SUSPECTED": 0, "CROP_MISMATCH": 0, "AREA_DRAWN_MISMATCH": 1, "LOW_VIGOR": 1, "CAPACITY_LIMITED": 2}
    ranked = sorted(impacts, key=lambda c: (-impacts[c], severity[c], c))[:4]
    assert decision.reason_codes == tuple(ranked) and "LOW_VIGOR" not in ranked  # the fifth reason is left out
    assert (decision.limit, decision.limit_if_confirmed) == (limit, limit_c)
    (cm, ym, pm), (cs, ys, ps) = ECONOMICS["maize"], ECONOMICS["soybean"]
    english = {
        "head": f"Review: limit {fig(limit)} CNY on 15 verified mu (maize 9 mu, soybean 6 mu); {fig(limit_c)} CNY on 28 mu "
                f"(maize 19 mu, soybean 6 mu, wheat 3 mu) if the plots under review are confirmed",
        "terms": f"capacity-limited: need {fig(need)} CNY = 9 mu × {fig(cm)} CNY/mu + 6 mu × {fig(cs)} CNY/mu, "
                 f"capacity {fig(capacity)} CNY = 0.6 × 9 mu × {fig(ym)} kg/mu × {fig(pm)} CNY/kg + 0.6 × 6 mu × "
                 f"{fig(ys)} kg/mu × 0.7 × {fig(ps)} CNY/kg, cap 200,000 CNY",
        "AREA_UNIT_SUSPECTED": "AREA_UNIT_SUSPECTED (plots P3): Two area figures differ by a factor near 15 (hectares "
                               "recorded as mu or the reverse) — drawn 10 mu vs registered 0.67 mu",
        "CAPACITY_LIMITED": "CAPACITY_LIMITED: The limit was set by the expected harvest value (repayment capacity) rather "
                            f"than the cost of cultivation — capacity {fig(capacity)} < need {fig(need)}",
        "AREA_DRAWN_MISMATCH": "AREA_DRAWN_MISMATCH (plots P1): The drawn plot and the registered area differ beyond the "
                               "tolerance; the smaller area is used — drawn 9 mu vs registered 12 mu, beyond ±10%",
        "CROP_MISMATCH": "CROP_MISMATCH (plots P4): The season's greenness profile fits another crop better than the "
                         "declared crop — declared wheat, fits maize better",
    }
    parts = [english["head"], english["terms"]] + [
        f"{english[c]}, lowered the limit by {fig(impacts[c])} CNY" for c in ranked]
    assert explain_decision(decision, POLICY, "en") == "; ".join(parts) + "."
    chinese = explain_decision(decision, POLICY, "zh")
    for text in ("核实面积 15 亩（玉米 9 亩, 大豆 6 亩）", "面积 28 亩（玉米 19 亩, 大豆 6 亩, 小麦 3 亩）",
                 f"+ 0.6 × 6 亩 × {fig(ys)} 公斤/亩 × 0.7 × {fig(ps)} 元/公斤",
                 "— 勾画 10 亩，登记 0.67 亩, 使额度降低", "— 勾画 9 亩，登记 12 亩，超出 ±10%, 使额度降低",
                 "— 申报 小麦，更接近 玉米, 使额度降低"):
        assert text in chinese, text


def test_explanation_below_the_minimum_limit_with_nothing_verified_now():
    decision = decision_of(honest("P1", mu=0.6, declared_mu=0.6, crop="rice", registered_mu=math.nan))
    need, capacity, limit_c = ceilings({"rice": 0.6})
    assert need < capacity and 0 < limit_c < 500 and decision.limit_if_confirmed == 0.0
    cost, yield_, price = ECONOMICS["rice"]
    assert explain_decision(decision, POLICY, "en") == (
        f"Review: limit 0 CNY on 0 verified mu (no crop); 0 CNY on 0.6 mu (rice 0.6 mu) if the plots under review are "
        f"confirmed; set by the cost of cultivation: need {fig(need)} CNY = 0.6 mu × {fig(cost)} CNY/mu, capacity "
        f"{fig(capacity)} CNY = 0.6 × 0.6 mu × {fig(yield_)} kg/mu × {fig(price)} CNY/kg, cap 200,000 CNY; "
        f"NO_REGISTRY_RECORD (plots P1): No land-registry record was found for the plot, lowered the limit by "
        f"{fig(limit_c)} CNY; BELOW_MIN_LIMIT: The limit is above 0 but below the policy's minimum limit, so it is "
        f"offered as 0 — limit {fig(limit_c)} < minimum 500, lowered the limit by {fig(limit_c)} CNY.")
    assert "（无作物）" in explain_decision(decision, POLICY, "zh") and f"额度 {fig(limit_c)} < 最低额度 500" in explain_decision(decision, POLICY, "zh")
    with pytest.raises(InputError, match="^unknown language 'fr' \\(expected 'en' or 'zh'\\)$"):
        explain_decision(decision, POLICY, "fr")


def test_explanation_branches():
    # A plain approval: no "if confirmed" clause, no minimum-limit clause.
    plain = explain_decision(decision_of(honest("P1", mu=10.0, declared_mu=10.0)), POLICY)
    assert "if the plots under review are confirmed" not in plain and "below the minimum" not in plain
    # Nothing verified at all: a limit of 0 is not "below the minimum limit" (there is nothing to lend on).
    nothing = explain_decision(decision_of(honest("P1", mu=10.0, declared_mu=10.0, cropped_mu_at_peak=0.0)), POLICY)
    assert "below the minimum" not in nothing
    # A limit of exactly min_limit is lent: no minimum-limit clause either.
    at_min = decision_of(honest("P1", mu=500 / ECONOMICS["rice"][0], declared_mu=500 / ECONOMICS["rice"][0], crop="rice"))
    assert at_min.limit == 500.0 and "below the minimum" not in explain_decision(at_min, POLICY)
    # 0.9 mu verified now (less than one mu): the formula shown is the one of the limit now.
    small = decision_of(honest("P1", mu=0.9, declared_mu=0.9),
                        honest("P2", mu=1000.0, declared_mu=1000.0, registered_mu=math.nan))
    assert f"need {fig(0.9 * COST)} CNY = 0.9 mu × {fig(COST)} CNY/mu" in explain_decision(small, POLICY)
    # Nothing now, exactly 1 mu if confirmed: the formula shown is the one of the limit if confirmed.
    one = decision_of(honest("P1", mu=1.0, declared_mu=1.0, registered_mu=math.nan))
    assert f"need {fig(COST)} CNY = 1 mu × {fig(COST)} CNY/mu" in explain_decision(one, POLICY)


def test_explanation_lists_every_plot_and_figure_of_a_reason():
    decision = decision_of(
        honest("P1", mu=10.0, declared_mu=10.0),
        honest("P2", mu=5.0, declared_mu=5.0, cropped_mu_at_peak=0.0),
        honest("P3", mu=5.0, declared_mu=5.0, cropped_mu_at_peak=0.0),
        honest("P4", mu=5.0, declared_mu=5.0, overlaps=[
            {"other_plot_id": "Q8", "other_borrower_id": "B2", "shared_m2": 200.0, "other_drawn_mu": 4.0},
            {"other_plot_id": "Q9", "other_borrower_id": "B3", "shared_m2": 300.0, "other_drawn_mu": 4.0}]),
        honest("P5", mu=5.0, declared_mu=5.0, satellite_codes={"NO_COVERAGE": {"acquisitions": 0, "tiles": 3}}))
    text = explain_decision(decision, POLICY)
    assert "NOT_CULTIVATED (plots P2, P3): " in text
    assert "— 300 m² shared with Q8, Q9, lowered" in text
    # a code without a sentence template lists its figures as "name value" pairs
    assert "NO_COVERAGE (plots P5): No satellite tile of the season covers the plot; it cannot be verified from " \
           "space — acquisitions 0, tiles 3, lowered" in text
