"""Credit limits per borrower from plot verdicts and the policy (design §7).

``need = Σ mu × cost_cny_per_mu(crop)``,
``capacity = advance_rate × Σ mu × yield_kg_per_mu(crop) × vigor × price_cny_per_kg(crop)``,
``limit = floor(min(need, capacity, cap) / step) × step`` — with the declared
crop's economics from ``seeds/crops.csv``. Where a plot carries
OWN_YIELD_HISTORY (:mod:`agricredit.chain`: the borrower's own sales of
earlier seasons), capacity uses that check's ``yield_kg_per_mu`` for the crop
instead of the table's (its counterfactual restores the table yield). Two
scenarios are computed: *now* (plots under review add nothing) and *if
confirmed* (they add their verified area). A limit below the policy's
``min_limit`` is offered as 0.

Status: REVIEW when any plot or the borrower has a review-severity code (a
person decides); otherwise DECLINE when the limit is below ``min_limit``;
APPROVE otherwise.

Borrower-level codes (not tied to one plot) hold the whole limit for review:
the limit now is 0 and ``limit_if_confirmed`` what the plots give.
NO_PLOTS is one of them, added by :func:`decide` for a borrower with no plot
verdict at all (no plot in the plot file, or every plot rejected before
verification): REVIEW, not DECLINE, because an applicant whose plots went
missing is a gap in the data a person can fill, not evidence of no land.
BORROWER_RECORD_INVALID (a bad row of the borrower table) is another.

Reasons: each code found on the borrower's plots is scored by a counterfactual
— the limit recomputed with that code's effect removed (see
:func:`agricredit.verify.plot_contribution`); its impact is the larger rise of
the now / if-confirmed limit. The binding ceiling adds CAPACITY_LIMITED
(impact: the limit without the capacity ceiling minus the limit) or
CAP_APPLIED. A limit above 0 but below ``min_limit``, offered as 0, adds
BELOW_MIN_LIMIT (impact: the limit forgone), so a DECLINE always names why. At most four reasons, ranked by impact, then severity, then code;
a REVIEW always keeps at least one review code among them.
"""

from __future__ import annotations

import functools
import math
import operator
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agricredit.errors import InputError
from agricredit.jsondata import json_ready
from agricredit.policy import Policy
from agricredit.seeds import load_crops, load_reason_codes
from agricredit.verify import Check, Contribution, PlotVerdict, plot_contribution

__all__ = ["CropLine", "Terms", "Reason", "Decision", "compute_terms", "decide", "decide_all", "explain", "MAX_REASONS"]

MAX_REASONS = 4
#: Chain evidence sources (:func:`agricredit.chain.chain_checks`) in plain words.
_CHAIN_SOURCES = {"input:seed": ("seed bought", "种子购买"), "input:fertiliser": ("fertiliser bought", "化肥购买"),
                  "service:plough": ("ploughing", "耕地作业"), "service:sow": ("sowing", "播种作业"),
                  "service:harvest": ("harvest", "收获作业")}
_SEVERITY_RANK = {"review": 0, "reduce": 1, "info": 2}
_PLOT_ID_OF = operator.attrgetter("facts.plot_id")  # a verdict's plot ID (a sort key called in C)


@dataclass(frozen=True)
class CropLine:
    """One crop's share of a scenario: verified mu, vigor-weighted mu and the crop's economics."""

    crop: str
    mu: float
    vigor_mu: float  # Σ mu × vigor factor
    cost_per_mu: float
    yield_per_mu: float
    price_per_kg: float
    yield_source: str = "table"  # 'table' (seeds/crops.csv) | 'sales' (the borrower's own sales history)

    @property
    def vigor(self) -> float:
        """The mu-weighted mean vigor factor (1 when there is no area)."""
        return self.vigor_mu / self.mu if self.mu > 0 else 1.0


@dataclass(frozen=True)
class Terms:
    """One scenario (now or if confirmed): the three ceilings and the rounded limit."""

    lines: tuple[CropLine, ...]
    mu: float
    need: float
    capacity: float
    cap: float
    limit: float
    binding: str  # 'need' | 'capacity' | 'cap'

    def to_dict(self) -> dict[str, Any]:
        """Return the scenario as a JSON-ready mapping, money rounded to cents."""
        return {
            "mu": self.mu, "need": round(self.need, 2), "capacity": round(self.capacity, 2), "cap": round(self.cap, 2),
            "limit": round(self.limit, 2), "binding": self.binding,
            "crops": [{"crop": l.crop, "mu": l.mu, "vigor": l.vigor, "cost_per_mu": l.cost_per_mu,
                       "yield_per_mu": l.yield_per_mu, "yield_source": l.yield_source, "price_per_kg": l.price_per_kg}
                      for l in self.lines],
        }


@dataclass(frozen=True)
class Reason:
    """A reason code on a decision, with how much it lowered the limit and where it came from."""

    code: str
    severity: str
    impact: float
    plot_ids: tuple[str, ...]
    figures: dict

    def to_dict(self) -> dict[str, Any]:
        """Return the reason as a JSON-ready mapping."""
        return {"code": self.code, "severity": self.severity, "impact": round(self.impact, 2),
                "plot_ids": list(self.plot_ids), "figures": json_ready(self.figures)}


@dataclass(frozen=True)
class Decision:
    """A borrower's decision: status, the limit now and if confirmed, both scenarios, ranked reasons."""

    borrower_id: str
    status: str  # 'APPROVE' | 'REVIEW' | 'DECLINE'
    limit: float
    limit_if_confirmed: float
    currency: str
    now: Terms
    if_confirmed: Terms
    reasons: tuple[Reason, ...]
    plot_ids: tuple[str, ...]
    borrower_checks: tuple[Check, ...] = ()  # given to :func:`decide` (NO_PLOTS is added there, not listed here)

    @property
    def reason_codes(self) -> tuple[str, ...]:
        return tuple(reason.code for reason in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as a JSON-ready mapping, money rounded to cents (to read: when the two scenarios are
        the same terms, :func:`decide`'s when no plot is held, ``now`` and ``if_confirmed`` are the same mapping)."""
        now = self.now.to_dict()
        return {
            "borrower_id": self.borrower_id, "status": self.status, "limit": round(self.limit, 2),
            "limit_if_confirmed": round(self.limit_if_confirmed, 2), "currency": self.currency,
            "now": now, "if_confirmed": now if self.if_confirmed is self.now else self.if_confirmed.to_dict(),
            "reasons": [reason.to_dict() for reason in self.reasons], "plot_ids": list(self.plot_ids),
            "borrower_checks": [check.to_dict() for check in self.borrower_checks],
        }


def _round_down(value: float, step: float) -> float:
    # round() first so that 4300.0000000001 / 4299.9999999999 from float noise land on the same step
    return math.floor(round(value / step, 6)) * step


def compute_terms(items: Iterable[tuple[str, float, float]], policy: Policy,
                  own_yields: Mapping[str, float] | None = None) -> Terms:
    """Compute need, capacity, cap and the rounded limit for one scenario.

    Parameters
    ----------
    items
        ``(crop, verified_mu, vigor_factor)`` per plot; order does not matter
        (sums are exact, :func:`math.fsum`, grouped by crop in name order).
    policy
        The validated policy.
    own_yields
        Crop → the borrower's own yield (kg/mu) replacing the table's.

    Returns
    -------
    Terms
    """
    crops, own_yields = load_crops(), own_yields or {}
    grouped: dict[str, tuple[list[float], list[float]]] = {}  # crop → (its plots' mu, their mu × vigor)
    for crop, mu, vigor in items:
        pairs = grouped.get(crop)
        if pairs is None:
            if crop not in crops:
                raise InputError(f"crop {crop!r} is not in the crop table")
            pairs = grouped[crop] = ([], [])
        if mu < 0:
            raise InputError(f"negative verified area {mu!r}")
        pairs[0].append(mu)
        pairs[1].append(mu * vigor)
    fsum = math.fsum
    lines = tuple(
        CropLine(crop, fsum(mus), fsum(vigor_mus), crops[crop].cost_cny_per_mu,
                 own_yields.get(crop, crops[crop].yield_kg_per_mu), crops[crop].price_cny_per_kg,
                 "sales" if crop in own_yields else "table")
        for crop, (mus, vigor_mus) in sorted(grouped.items()))
    credit = policy.credit
    need = fsum([line.mu * line.cost_per_mu for line in lines])
    capacity = credit.advance_rate * fsum([line.vigor_mu * line.yield_per_mu * line.price_per_kg for line in lines])
    cap = credit.cap_per_borrower
    binding, lowest = "need", need  # the lowest ceiling; on a tie, the first of need, capacity, cap
    if capacity < lowest:
        binding, lowest = "capacity", capacity
    if cap < lowest:
        binding, lowest = "cap", cap
    limit = max(0.0, _round_down(lowest, credit.rounding_step))
    return Terms(lines, fsum([line.mu for line in lines]), need, capacity, cap, limit, binding)


def _scenarios(verdicts: list[PlotVerdict], contributions: Iterable[Contribution], policy: Policy,
               own_yields: Mapping[str, float], memo: dict[tuple, Terms], hold_all: bool = False
               ) -> tuple[Terms, Terms]:
    """The now and if-confirmed terms of ``verdicts`` adding ``contributions`` (one each, in their order);
    ``hold_all`` (a borrower-level review) makes every plot add 0 now.

    ``memo`` holds the terms already computed with ``own_yields``, by their items: the scenarios of a borrower's
    decision and counterfactuals often add the same (the now and if-confirmed ones when no plot is held; a
    counterfactual's if-confirmed one when the code only held plots).
    """
    now, confirmed = [], []
    for verdict, contribution in zip(verdicts, contributions):
        crop = verdict.facts.declared_crop
        if crop is None:
            if contribution.mu_if_confirmed > 0:
                raise InputError("plot has no declared crop", record=verdict.plot_id)
            continue
        now.append((crop, 0.0 if hold_all else contribution.mu_now, contribution.vigor_factor))
        confirmed.append((crop, contribution.mu_if_confirmed, contribution.vigor_factor))
    scenarios = []
    for items in (tuple(now), tuple(confirmed)):
        terms = memo.get(items)
        if terms is None:
            terms = memo[items] = compute_terms(items, policy, own_yields)
        scenarios.append(terms)
    return scenarios[0], scenarios[1]


def _without(code: str, verdicts: list[PlotVerdict], carrying: list[PlotVerdict], policy: Policy,
             own_yields: Mapping[str, float], memo: dict[tuple, Terms], unheld: tuple[Terms, Terms]
             ) -> tuple[Terms, Terms]:
    """The terms with ``code``'s effect removed (:func:`agricredit.verify.plot_contribution`): only the plots
    ``carrying`` it are recomputed, the others add their verdict's contribution (the same, with nothing to remove);
    when no contribution changes and the yields stay, the terms without removal, ``unheld``."""
    ignore = frozenset({code})
    changed = {id(v): contribution for v in carrying
               if (contribution := plot_contribution(v.facts, v.checks, policy, ignore, unignored=v.contribution))
               != v.contribution}
    if code == "OWN_YIELD_HISTORY":
        own_yields, memo = {}, {}
    elif not changed:
        return unheld
    return _scenarios(verdicts, [changed.get(id(v), v.contribution) for v in verdicts], policy, own_yields, memo)


def _ceiling_reason(terms: Terms, policy: Policy) -> Reason | None:
    if terms.binding == "need":
        return None
    step = policy.credit.rounding_step
    if terms.binding == "capacity":
        without = _round_down(min(terms.need, terms.cap), step)
        return Reason("CAPACITY_LIMITED", "info", without - terms.limit, (),
                      {"need": round(terms.need, 2), "capacity": round(terms.capacity, 2)})
    without = _round_down(min(terms.need, terms.capacity), step)
    return Reason("CAP_APPLIED", "info", without - terms.limit, (), {"cap": round(terms.cap, 2)})


def decide(borrower_id: str, verdicts: Iterable[PlotVerdict], policy: Policy,
           borrower_checks: Iterable[Check] = ()) -> Decision:
    """Decide one borrower's limit, status and reasons from the verdicts of their plots.

    Parameters
    ----------
    borrower_id
        The borrower's pseudonym.
    verdicts
        The verdicts of all the borrower's plots (any order); none adds NO_PLOTS.
    policy
        The validated policy.
    borrower_checks
        Failed checks of the borrower rather than of a plot (e.g.
        BORROWER_RECORD_INVALID); one of review severity holds the whole limit.

    Returns
    -------
    Decision
    """
    verdicts = sorted(verdicts, key=_PLOT_ID_OF)
    strangers = [v.plot_id for v in verdicts if v.facts.borrower_id != borrower_id]
    if strangers:
        raise InputError("plot belongs to another borrower", record=strangers[0])
    given = tuple(sorted({c.code: c for c in borrower_checks}.values(), key=lambda c: c.code))
    own_checks = list(given)
    if not verdicts and not any(c.code == "NO_PLOTS" for c in own_checks):
        own_checks.append(Check.make("NO_PLOTS"))
    # Each code on the plots: the plots carrying it and its first check on the first of them.
    carrying: dict[str, tuple[list[PlotVerdict], Check]] = {}
    severities = {c.severity for c in own_checks}
    own_yields: dict[str, float] = {}
    for verdict in verdicts:
        for check in verdict.checks:
            severities.add(check.severity)
            found = carrying.get(check.code)
            if found is None:
                carrying[check.code] = ([verdict], check)
            elif found[0][-1] is not verdict:
                found[0].append(verdict)
            if check.code == "OWN_YIELD_HISTORY":
                own_yields[verdict.facts.declared_crop] = check.figures["yield_kg_per_mu"]
    hold_all = any(c.severity == "review" for c in own_checks)
    contributions, memo = [v.contribution for v in verdicts], {}
    unheld = _scenarios(verdicts, contributions, policy, own_yields, memo)
    now, confirmed = (_scenarios(verdicts, contributions, policy, own_yields, memo, hold_all=True) if hold_all
                      else unheld)
    min_limit = policy.credit.min_limit
    offered = now.limit if now.limit >= min_limit else 0.0
    offered_if_confirmed = confirmed.limit if confirmed.limit >= min_limit else 0.0
    status = "REVIEW" if "review" in severities else "DECLINE" if offered_if_confirmed == 0.0 else "APPROVE"

    catalogue = load_reason_codes()
    reasons = []
    for code in sorted(carrying):
        plots, first = carrying[code]
        now_without, confirmed_without = _without(code, verdicts, plots, policy, own_yields, memo, unheld)
        impact = max(now_without.limit - now.limit, confirmed_without.limit - confirmed.limit, 0.0)
        reasons.append(Reason(code, catalogue[code].severity, impact, tuple(v.facts.plot_id for v in plots),
                              first.figures))
    # A borrower-level review's impact is what releasing the hold adds, when it is the only one.
    released = unheld[0].limit - now.limit if hold_all else 0.0
    holding = [c.code for c in own_checks if c.severity == "review"]
    for check in own_checks:
        reasons.append(Reason(check.code, check.severity, released if holding == [check.code] else 0.0, (), check.figures))
    ceiling = _ceiling_reason(now if now.mu > 0 else confirmed, policy)
    if ceiling is not None:
        reasons.append(ceiling)
    forgone = max(now.limit - offered, confirmed.limit - offered_if_confirmed)
    if forgone > 0:
        reasons.append(Reason("BELOW_MIN_LIMIT", "info", forgone, (),
                              {"limit": forgone, "min_limit": min_limit}))
    reasons.sort(key=lambda r: (-r.impact, _SEVERITY_RANK[r.severity], r.code))
    chosen = reasons[:MAX_REASONS]
    if status == "REVIEW" and not any(r.severity == "review" for r in chosen):
        chosen[-1] = next(r for r in reasons if r.severity == "review")
    return Decision(borrower_id, status, offered, offered_if_confirmed, policy.meta.currency, now, confirmed,
                    tuple(chosen), tuple(v.plot_id for v in verdicts), given)


def decide_all(verdicts: Iterable[PlotVerdict], policy: Policy, borrower_ids: Iterable[str] = (),
               borrower_checks: Mapping[str, Iterable[Check]] | None = None) -> list[Decision]:
    """Group verdicts by borrower and decide each; sorted by borrower id.

    Parameters
    ----------
    verdicts
        The plot verdicts of the run.
    policy
        The validated policy.
    borrower_ids
        Borrowers to decide even without a verdict (the whole borrower table):
        those get NO_PLOTS.
    borrower_checks
        Borrower pseudonym → borrower-level failed checks (see :func:`decide`).
    """
    groups: dict[str, list[PlotVerdict]] = {borrower: [] for borrower in borrower_ids}
    for verdict in verdicts:
        groups.setdefault(verdict.borrower_id, []).append(verdict)
    checks = borrower_checks or {}
    return [decide(borrower, groups[borrower], policy, checks.get(borrower, ())) for borrower in sorted(groups)]


# --------------------------------------------------------------------------- explanation

_WORDS = {
    "en": {
        "APPROVE": "Approved", "REVIEW": "Review", "DECLINE": "Declined", "mu": "mu", "kg_mu": "kg/mu",
        "per_kg": "{cur}/kg", "per_mu": "{cur}/mu", "money": "{amount} {cur}",
        "head": "{status}: limit {limit} on {mu} verified mu ({crops})",
        "review": "; {limit_c} on {mu_c} mu ({crops_c}) if the plots under review are confirmed",
        "need": "need {need} = {parts}", "capacity": "capacity {capacity} = {parts}", "cap": "cap {cap}",
        "binding": {"need": "set by the cost of cultivation", "capacity": "capacity-limited", "cap": "set by the per-borrower cap"},
        "below_min": "below the minimum limit of {min}", "none": "no crop",
        "impact": "lowered the limit by {impact}", "sep": "; ", "end": ".", "plots": "plots", "colon": ": ",
        "drawn": "drawn", "registered": "registered", "declared": "declared", "own_sales": " (own sales history)",
    },
    "zh": {
        "APPROVE": "批准", "REVIEW": "待复核", "DECLINE": "拒绝", "mu": "亩", "kg_mu": "公斤/亩",
        "per_kg": "{cur}/公斤", "per_mu": "{cur}/亩", "money": "{amount} {cur}",
        "head": "{status}：额度 {limit}，核实面积 {mu} 亩（{crops}）",
        "review": "；复核确认后额度 {limit_c}，面积 {mu_c} 亩（{crops_c}）",
        "need": "种植成本 {need} = {parts}", "capacity": "还款能力 {capacity} = {parts}", "cap": "单户上限 {cap}",
        "binding": {"need": "额度由种植成本决定", "capacity": "额度受还款能力限制", "cap": "额度受单户上限限制"},
        "below_min": "低于最低额度 {min}", "none": "无作物",
        "impact": "使额度降低 {impact}", "sep": "；", "end": "。", "plots": "地块", "colon": "：",
        "drawn": "勾画", "registered": "登记", "declared": "申报", "own_sales": "（自有销售记录）",
    },
}

# Figures behind each code, in plain words; a template whose figures are missing falls back to "key value" pairs.
_DETAILS = {
    "en": {
        "AREA_OVER_DECLARED": "declared {declared_mu} mu vs registered {registered_mu} mu × {factor}",
        "AREA_DRAWN_MISMATCH": "drawn {drawn_mu} mu vs registered {registered_mu} mu, beyond ±{tolerance_pct}%",
        "AREA_UNIT_SUSPECTED": "{source_a} {mu_a} mu vs {source_b} {mu_b} mu",
        "NOT_CULTIVATED": "cropped {cropped_mu} mu < {min_share} × drawn {drawn_mu} mu",
        "CROP_MISMATCH": "declared {declared_crop}, fits {best_crop} better",
        "LOW_VIGOR": "peak NDVI {peak_ndvi}, vigor factor {vigor_factor}",
        "TOO_FEW_PIXELS": "{pixel_count} pixels < {min_pixel_count}",
        "DOUBLE_CLAIM": "{shared_m2} m² shared with {other_plot_ids}",
        "GEOMETRY_INVALID": "{reason}",
        "GEOMETRY_REPAIRED": "{reason}",
        "OWNER_MISMATCH": "",
        "CLOUD_INSUFFICIENT": "fewer than {min_observations} valid observations",
        "CAPACITY_LIMITED": "capacity {capacity} < need {need}",
        "CAP_APPLIED": "cap {cap}",
        "BELOW_MIN_LIMIT": "limit {limit} < minimum {min_limit}",
        "SELF_OVERLAP": "{shared_m2} m² shared with {other_plot_ids} beyond {outline_accuracy_m} m of outline accuracy",
        "AREA_ABSURD": "drawn {drawn_mu} mu, more than {max_ratio} × the registered and declared areas",
        "DUPLICATE_PLOT_ID": "",
        "DECLARATION_CONTESTED": "also declared by {other_declarants}",
        "NO_PLOTS": "",
        "BORROWER_RECORD_INVALID": "{reason}",
        "TILE_UNREADABLE": "{tiles}",
        "INPUTS_BELOW_DECLARED": "purchases imply {implied_mu} mu < {min_share} × declared {declared_mu} mu",
        "CHAIN_OTHER_CROP": "{chain_mu} mu of {chain_crop} ({sources}) against declared {declared_crop}",
        "MACHINERY_AREA_MISMATCH": "{service} {serviced_mu} mu vs verified {verified_mu} mu, beyond ±{tolerance_pct}%",
        "OWN_YIELD_HISTORY": "sales {seasons_kg_per_mu} kg/mu, median {median_kg_per_mu} kg/mu "
                             "(table {table_kg_per_mu}, at most {max_factor} × table): {yield_kg_per_mu} kg/mu used",
        "SALES_BELOW_EXPECTED_YIELD": "median {median_kg_per_mu} kg/mu < {below_share} × table {table_kg_per_mu} kg/mu",
        "CHAIN_CORROBORATED": "{partner_count} partners confirm {partner_mu} mu of {verified_mu} mu; settled: {settled}",
        "PROCESSING_FAILED": "{reason}",
    },
    "zh": {
        "AREA_OVER_DECLARED": "申报 {declared_mu} 亩，登记 {registered_mu} 亩 × {factor}",
        "AREA_DRAWN_MISMATCH": "勾画 {drawn_mu} 亩，登记 {registered_mu} 亩，超出 ±{tolerance_pct}%",
        "AREA_UNIT_SUSPECTED": "{source_a} {mu_a} 亩，{source_b} {mu_b} 亩",
        "NOT_CULTIVATED": "种植面积 {cropped_mu} 亩 < {min_share} × 勾画 {drawn_mu} 亩",
        "CROP_MISMATCH": "申报 {declared_crop}，更接近 {best_crop}",
        "LOW_VIGOR": "峰值 NDVI {peak_ndvi}，长势系数 {vigor_factor}",
        "TOO_FEW_PIXELS": "{pixel_count} 个像元 < {min_pixel_count}",
        "DOUBLE_CLAIM": "与 {other_plot_ids} 重叠 {shared_m2} 平方米",
        "GEOMETRY_INVALID": "{reason}",
        "GEOMETRY_REPAIRED": "{reason}",
        "OWNER_MISMATCH": "",
        "CLOUD_INSUFFICIENT": "有效观测少于 {min_observations} 次",
        "CAPACITY_LIMITED": "还款能力 {capacity} < 种植成本 {need}",
        "CAP_APPLIED": "上限 {cap}",
        "BELOW_MIN_LIMIT": "额度 {limit} < 最低额度 {min_limit}",
        "SELF_OVERLAP": "与 {other_plot_ids} 重叠 {shared_m2} 平方米，超出勾画精度 {outline_accuracy_m} 米",
        "AREA_ABSURD": "勾画 {drawn_mu} 亩，超过登记和申报面积的 {max_ratio} 倍",
        "DUPLICATE_PLOT_ID": "",
        "DECLARATION_CONTESTED": "另由 {other_declarants} 申报",
        "NO_PLOTS": "",
        "BORROWER_RECORD_INVALID": "{reason}",
        "TILE_UNREADABLE": "{tiles}",
        "INPUTS_BELOW_DECLARED": "购买农资折合 {implied_mu} 亩 < {min_share} × 申报 {declared_mu} 亩",
        "CHAIN_OTHER_CROP": "{chain_crop} {chain_mu} 亩（{sources}），申报 {declared_crop}",
        "MACHINERY_AREA_MISMATCH": "{service} {serviced_mu} 亩，核实 {verified_mu} 亩，超出 ±{tolerance_pct}%",
        "OWN_YIELD_HISTORY": "往季销售 {seasons_kg_per_mu} 公斤/亩，中位数 {median_kg_per_mu} 公斤/亩"
                             "（参考 {table_kg_per_mu}，最多 {max_factor} 倍）：按 {yield_kg_per_mu} 公斤/亩计算",
        "SALES_BELOW_EXPECTED_YIELD": "中位数 {median_kg_per_mu} 公斤/亩 < {below_share} × 参考 {table_kg_per_mu} 公斤/亩",
        "CHAIN_CORROBORATED": "{partner_count} 个伙伴印证 {partner_mu} 亩（核实 {verified_mu} 亩）；了结：{settled}",
        "PROCESSING_FAILED": "{reason}",
    },
}


def _num(value: Any) -> str:
    """A figure for people: thousands separators, at most 2 decimals, no trailing zeros."""
    kind = type(value)
    if kind is float or kind is int:
        return _number(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ", ".join(map(_num, value)) if isinstance(value, (list, tuple)) else str(value)
    return _number(value)


# The same few figures (the policy's, the crop table's, round amounts) recur across a run's explanations.
@functools.lru_cache(maxsize=1 << 14, typed=True)
def _number(value: float) -> str:
    """:func:`_num` of a number (not a bool)."""
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _figures(reason: Reason, lang: str, only: frozenset[str] | None = None) -> dict[str, str]:
    """A reason's figures in plain words, with those derived from them; ``only``: of the figures given, these."""
    words = _WORDS[lang]
    figures = {key: _num(value) for key, value in reason.figures.items()
               if value is not None and (only is None or key in only)}
    if "tolerance" in reason.figures:
        figures["factor"] = _num(1 + reason.figures["tolerance"])
        figures["tolerance_pct"] = _num(100 * reason.figures["tolerance"])
    for key in ("source_a", "source_b"):
        if key in figures:
            figures[key] = words.get(figures[key], figures[key])
    if "seasons_kg_per_mu" in reason.figures:
        figures["seasons_kg_per_mu"] = ", ".join(f"{season}: {_num(value)}"
                                                 for season, value in reason.figures["seasons_kg_per_mu"].items())
    if reason.code == "CHAIN_CORROBORATED":
        figures["partner_count"] = _num(len(reason.figures["partners"]))
        figures["settled"] = ", ".join(item["code"] for item in reason.figures["settled"]) or "-"
    if lang == "zh":
        crops = load_crops()
        for key in ("declared_crop", "best_crop", "chain_crop"):
            if reason.figures.get(key) in crops:
                figures[key] = crops[reason.figures[key]].name_zh
    index = 1 if lang == "zh" else 0
    if "sources" in reason.figures:
        figures["sources"] = ", ".join(_CHAIN_SOURCES.get(s, (s, s))[index] for s in reason.figures["sources"])
    if reason.code == "MACHINERY_AREA_MISMATCH":
        figures["service"] = _CHAIN_SOURCES[f"service:{reason.figures['service']}"][index]
    return figures


def _detail(reason: Reason, lang: str) -> str:
    """The figures behind a reason: its template of :data:`_DETAILS` filled in, else every figure as "key value"."""
    template = _DETAILS[lang].get(reason.code)
    if template is not None:
        try:  # only the figures the template shows are formatted
            return template.format_map(_figures(reason, lang, _template_fields(template)))
        except KeyError:
            pass
    return ", ".join(f"{k} {v}" for k, v in sorted(_figures(reason, lang).items()))


@functools.cache
def _template_fields(template: str) -> frozenset[str]:
    """The names a :data:`_DETAILS` template fills in."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)


def explain(decision: Decision, policy: Policy, lang: str = "en") -> str:
    """A plain-language explanation of a decision, built from the catalogue text and the figures.

    Parameters
    ----------
    decision
        From :func:`decide`.
    policy
        The policy the decision was made with (advance rate, minimum limit).
    lang
        ``'en'`` or ``'zh'``.

    Returns
    -------
    str
        One paragraph: status and limit, the three ceilings with their formulas,
        which one bound, then each reason with its figures and impact.
    """
    if lang not in _WORDS:
        raise InputError(f"unknown language {lang!r} (expected 'en' or 'zh')")
    w, crops, catalogue = _WORDS[lang], load_crops(), load_reason_codes()
    cur = "元" if lang == "zh" and decision.currency == "CNY" else decision.currency

    def money(amount: float) -> str:
        return w["money"].format(amount=_number(round(amount, 2)), cur=cur)  # (round() gives a number)

    def crops_of(scenario: Terms) -> str:
        names = [f"{crops[l.crop].name_zh if lang == 'zh' else l.crop} {_num(l.mu)} {w['mu']}" for l in scenario.lines if l.mu > 0]
        return ", ".join(names) or w["none"]

    now, confirmed = decision.now, decision.if_confirmed
    parts = [w["head"].format(status=w[decision.status], limit=money(decision.limit), mu=_num(now.mu), crops=crops_of(now))]
    if decision.limit_if_confirmed != decision.limit or confirmed.mu != now.mu:
        parts[0] += w["review"].format(limit_c=money(decision.limit_if_confirmed), mu_c=_num(confirmed.mu),
                                       crops_c=crops_of(confirmed))
    terms = now if now.mu > 0 or confirmed.mu == 0 else confirmed
    lines = [l for l in terms.lines if l.mu > 0]
    if lines:
        mu, rate = w["mu"], _num(policy.credit.advance_rate)
        per_mu, per_kg = w["per_mu"].format(cur=cur), w["per_kg"].format(cur=cur)
        need_parts = " + ".join(f"{_num(l.mu)} {mu} × {_num(l.cost_per_mu)} {per_mu}" for l in lines)
        capacity_parts = " + ".join(
            f"{rate} × {_num(l.mu)} {mu} × {_num(l.yield_per_mu)} {w['kg_mu']}"
            + (w["own_sales"] if l.yield_source == "sales" else "")
            + (f" × {_num(l.vigor)}" if l.vigor != 1 else "") + f" × {_num(l.price_per_kg)} {per_kg}"
            for l in lines)
        parts.append(w["binding"][terms.binding] + w["colon"] + ", ".join([
            w["need"].format(need=money(terms.need), parts=need_parts),
            w["capacity"].format(capacity=money(terms.capacity), parts=capacity_parts),
            w["cap"].format(cap=money(terms.cap))]))
    if 0 < terms.limit < policy.credit.min_limit and "BELOW_MIN_LIMIT" not in decision.reason_codes:
        parts.append(w["below_min"].format(min=money(policy.credit.min_limit)))
    for reason in decision.reasons:
        entry = catalogue[reason.code]
        text = reason.code + (f" ({w['plots']} {', '.join(reason.plot_ids)})" if reason.plot_ids else "")
        text += w["colon"] + (entry.en if lang == "en" else entry.zh).rstrip(".。")
        detail = _detail(reason, lang)
        if detail:
            text += f" — {detail}"
        if reason.impact > 0:
            text += f", {w['impact'].format(impact=money(reason.impact))}"
        parts.append(text)
    return w["sep"].join(parts) + w["end"]
