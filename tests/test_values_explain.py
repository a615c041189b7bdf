"""The figures behind each reason code in the plain-language explanation, word for word (English and Chinese).

Each expected text is written here by hand from the templates' meaning (areas in mu, thousands separators, at most
two decimals, the chain sources and crops named in the officer's language), never produced by the code under test.
"""

from __future__ import annotations

import dataclasses

import pytest

from _plotfacts import POLICY, honest
from agricredit.credit import Reason, decide, explain
from agricredit.seeds import load_reason_codes
from agricredit.verify import verify_plots

CATALOGUE = load_reason_codes()


def _explained(code: str, figures: dict, lang: str) -> str:
    """The explanation's part for one reason of impact 0 (the decision of one honest plot carrying it alone)."""
    decision = decide("B1", verify_plots([honest()], POLICY), POLICY)
    decision = dataclasses.replace(decision, reasons=(Reason(code, CATALOGUE[code].severity, 0.0, (), figures),))
    text = explain(decision, POLICY, lang)
    colon, end = (": ", ".") if lang == "en" else ("：", "。")
    entry = CATALOGUE[code].en if lang == "en" else CATALOGUE[code].zh
    head = f"{code}{colon}{entry.rstrip('.。')}"
    assert head in text and text.endswith(end), text
    tail = text[text.index(head) + len(head):-len(end)]
    return tail.removeprefix(" — ")


CHAIN_OTHER = {"chain_mu": 12.5, "chain_crop": "soybean", "sources": ["input:seed", "service:harvest", "input:lime"],
               "declared_crop": "maize"}
YIELDS = {"seasons_kg_per_mu": {"2022": 500.0, "2023": 1234.5}, "median_kg_per_mu": 867.25, "table_kg_per_mu": 435.5,
          "max_factor": 1.5, "yield_kg_per_mu": 653.25}
CORROBORATED = {"partners": ["shop-1", "coop-2", "mill-3"], "partner_mu": 10.0, "verified_mu": 12.0,
                "settled": [{"code": "INPUTS_BELOW_DECLARED"}, {"code": "MACHINERY_AREA_MISMATCH"}]}


@pytest.mark.parametrize(("code", "figures", "lang", "expected"), [
    ("CHAIN_OTHER_CROP", CHAIN_OTHER, "en", "12.5 mu of soybean (seed bought, harvest, input:lime) against declared maize"),
    ("CHAIN_OTHER_CROP", CHAIN_OTHER, "zh", "大豆 12.5 亩（种子购买, 收获作业, input:lime），申报 玉米"),
    ("MACHINERY_AREA_MISMATCH", {"service": "sow", "serviced_mu": 30, "verified_mu": 20.5, "tolerance": 0.2}, "en",
     "sowing 30 mu vs verified 20.5 mu, beyond ±20%"),
    ("MACHINERY_AREA_MISMATCH", {"service": "plough", "serviced_mu": 30, "verified_mu": 20.5, "tolerance": 0.2}, "zh",
     "耕地作业 30 亩，核实 20.5 亩，超出 ±20%"),
    ("OWN_YIELD_HISTORY", YIELDS, "en",
     "sales 2022: 500, 2023: 1,234.5 kg/mu, median 867.25 kg/mu (table 435.5, at most 1.5 × table): 653.25 kg/mu used"),
    ("OWN_YIELD_HISTORY", YIELDS, "zh",
     "往季销售 2022: 500, 2023: 1,234.5 公斤/亩，中位数 867.25 公斤/亩（参考 435.5，最多 1.5 倍）：按 653.25 公斤/亩计算"),
    ("CHAIN_CORROBORATED", CORROBORATED, "en",
     "3 partners confirm 10 mu of 12 mu; settled: INPUTS_BELOW_DECLARED, MACHINERY_AREA_MISMATCH"),
    ("CHAIN_CORROBORATED", {**CORROBORATED, "settled": []}, "zh", "3 个伙伴印证 10 亩（核实 12 亩）；了结：-"),
    ("CROP_MISMATCH", {"declared_crop": "maize", "best_crop": "rice"}, "en", "declared maize, fits rice better"),
    ("CROP_MISMATCH", {"declared_crop": "maize", "best_crop": "rice"}, "zh", "申报 玉米，更接近 稻谷"),
    ("AREA_UNIT_SUSPECTED", {"source_a": "registered", "mu_a": 15, "source_b": "declared", "mu_b": 1}, "en",
     "registered 15 mu vs declared 1 mu"),
    ("AREA_UNIT_SUSPECTED", {"source_a": "drawn", "mu_a": 15, "source_b": "registry-2", "mu_b": 1}, "zh",
     "勾画 15 亩，registry-2 1 亩"),
    ("AREA_OVER_DECLARED", {"declared_mu": 12, "registered_mu": 10, "tolerance": 0.05}, "en",
     "declared 12 mu vs registered 10 mu × 1.05"),
    ("SALES_BELOW_EXPECTED_YIELD", {"median_kg_per_mu": 1234567.891, "below_share": 0.5, "table_kg_per_mu": -0.0}, "en",
     "median 1,234,567.89 kg/mu < 0.5 × table 0 kg/mu"),
    ("DOUBLE_CLAIM", {"shared_m2": 12.345, "other_plot_ids": ["P2", "P3"]}, "en", "12.35 m² shared with P2, P3"),
    # A template whose figures are missing falls back to "key value" pairs (sorted); a None figure is left out.
    ("CROP_MISMATCH", {"declared_crop": "maize", "share": 0.25, "best_crop": None}, "en", "declared_crop maize, share 0.25"),
    # ... with the figures derived from the given ones; a figure the template does not show is left out of it.
    ("AREA_OVER_DECLARED", {"declared_mu": 12, "tolerance": 0.05}, "en",
     "declared_mu 12, factor 1.05, tolerance 0.05, tolerance_pct 5"),
    ("DOUBLE_CLAIM", {"shared_m2": 12.345, "other_plot_ids": ["P2"], "min_share": 0.1}, "en", "12.35 m² shared with P2"),
    # Equal numbers of other types read as their type: 1, 1.0 and True (a flag, not a number) in one list.
    ("TILE_UNREADABLE", {"tiles": [1, True, 1.0, -0.001, 1234.5]}, "en", "1, True, 1, 0, 1,234.5"),
])
def test_each_reasons_figures_read_as_written(code, figures, lang, expected):
    assert _explained(code, figures, lang) == expected


def test_a_reason_without_figures_adds_no_dash():
    assert _explained("OWNER_MISMATCH", {}, "en") == ""
