"""Industry-chain tables and checks (agricredit.chain), against hand computations.

Conversion factors written here, independently of the code: 1 t = 1000 kg, 1 斤 = 0.5 kg,
1 ha = 15 mu; norms of seeds/chain_norms.csv: maize seed 2.5 kg/mu, wheat seed 10 kg/mu,
maize fertiliser 50 kg/mu. Table yield of maize 435.5 kg/mu (seeds/crops.csv, NBS-2023).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import pandas as pd
import pytest

from agricredit.chain import (ChainTables, PlotRef, chain_checks, chain_facts, load_norms, purchase_season,
                              read_chain_table, read_chain_tables, sale_season)
from agricredit.credit import decide, explain
from agricredit.errors import PolicyError, SchemaError
from agricredit.policy import ChainPolicy, load_policy
from agricredit.seeds import DEFAULT_POLICY_PATH
from agricredit.verify import Check, PlotFacts, verify_plot

POLICY = load_policy()
MAIZE_SEED, WHEAT_SEED, MAIZE_FERTILISER, MAIZE_YIELD = 2.5, 10.0, 50.0, 435.5


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


# --------------------------------------------------------------------------- norms and reading

def test_norms_are_the_cited_figures():
    norms = load_norms()
    assert norms["maize", "seed"] == MAIZE_SEED and norms["wheat", "seed"] == WHEAT_SEED
    assert norms["maize", "fertiliser"] == MAIZE_FERTILISER
    assert set(norms) == {(c, i) for c in ("maize", "soybean", "wheat", "rice") for i in ("seed", "fertiliser")}


SALES = """partner_id,borrower_id,date,crop,quantity,unit
G1,B1,2022-11-01,maize,2,t
G1,B1,2022-11-02,玉米,3000,斤
G1,B1,2022-11-03,maize,700,公斤
"""


def test_masses_convert_to_kg(tmp_path):
    table = read_chain_table(write(tmp_path / "sales.csv", SALES), "sales")
    assert table["amount"].tolist() == [2 * 1000.0, 3000 * 0.5, 700.0]
    assert table["crop"].tolist() == ["maize"] * 3 and table["borrower_id"].tolist() == ["B1"] * 3


def test_gbk_xlsx_and_parquet_read_like_utf8(tmp_path):
    text = ("partner_id,borrower_id,date,crop,service,quantity,unit,plot_ids\n"
            "M1,B1,2023-06-12,小麦,收获,2,公顷,P2;P1\nM1,B2,2023-04-01,maize,plough,12.5,亩,\n")
    utf8 = read_chain_table(write(tmp_path / "m.csv", text), "machinery")
    gbk = read_chain_table(write(tmp_path / "m_gbk.csv", text, "gbk"), "machinery")
    frame = pd.read_csv(tmp_path / "m.csv", dtype=str, keep_default_na=False)
    frame.to_excel(tmp_path / "m.xlsx", index=False)
    frame.to_parquet(tmp_path / "m.parquet", index=False)
    for other in (gbk, read_chain_table(tmp_path / "m.xlsx", "machinery"),
                  read_chain_table(tmp_path / "m.parquet", "machinery")):
        columns = ["partner_id", "borrower_id", "date", "crop", "item", "amount", "plot_ids"]
        assert other[columns].equals(utf8[columns])
    # Sorted by partner and date; 2 ha = 30 mu.
    assert utf8["amount"].tolist() == [12.5, 2 * 15.0] and utf8["item"].tolist() == ["plough", "harvest"]
    assert utf8["plot_ids"].tolist() == ["", "P1;P2"]
    frame["date"] = pd.to_datetime(frame["date"])  # real Excel date cells
    frame.to_excel(tmp_path / "dated.xlsx", index=False)
    assert read_chain_table(tmp_path / "dated.xlsx", "machinery")["date"].tolist() == ["2023-04-01", "2023-06-12"]


BAD = """partner_id,borrower_id,date,crop,input,quantity,unit
S1,B1,2023-03-01,maize,seed,10,kg
S1,B1,2023-13-01,maize,seed,10,kg
S1,B1,2023-03-01,cotton,seed,10,kg
S1,B1,2023-03-01,maize,pesticide,10,kg
S1,B1,2023-03-01,maize,seed,-4,kg
S1,B1,2023-03-01,maize,seed,10,bags
S1,,2023-03-01,maize,seed,10,kg
"""


def test_bad_rows_are_set_aside_one_by_one(tmp_path):
    path = write(tmp_path / "purchases.csv", BAD)
    table = read_chain_table(path, "input_purchases", isolate=True)
    reasons = dict(zip(table["source_row"], table["problem"]))
    assert reasons[2] == ""
    assert reasons[3].startswith("date:") and reasons[4].startswith("crop:") and reasons[5].startswith("input:")
    assert reasons[6].startswith("quantity:") and reasons[7].startswith("unit:")
    assert reasons[8].startswith("borrower_id:")
    with pytest.raises(SchemaError) as raised:
        read_chain_table(path, "input_purchases")
    assert str(path) in str(raised.value) and "row 3" in str(raised.value)


def test_customer_ids_map_to_borrowers(tmp_path):
    write(tmp_path / "map.csv", "partner_id,customer_id,borrower_id\nG1,C-1,B7\nG2,C-1,B8\n")
    write(tmp_path / "sales.csv", "partner_id,customer_id,date,crop,quantity,unit\nG1,C-1,2022-11-01,maize,1,t\n"
                                  "G2,C-1,2022-11-01,maize,2,t\nG1,C-9,2022-11-01,maize,3,t\n")
    tables = read_chain_tables({"sales": tmp_path / "sales.csv", "customer_map": tmp_path / "map.csv"},
                               lambda name: None, isolate=True)
    assert tables.sales["borrower_id"].tolist() == ["B7", "B8"]
    assert [(p.row, p.column) for p in tables.problems] == [(4, "customer_id")]


def test_a_customer_mapped_twice_is_a_problem(tmp_path):
    write(tmp_path / "map.csv", "partner_id,customer_id,borrower_id\nG1,C-1,B7\nG1,C-1,B8\n")
    with pytest.raises(SchemaError, match="customer mapped twice"):
        read_chain_tables({"customer_map": tmp_path / "map.csv"}, lambda name: None)


# --------------------------------------------------------------------------- seasons

@pytest.mark.parametrize("date, crop, season", [
    ("2023-03-10", "maize", 2023),   # seed before sowing
    ("2023-12-30", "maize", 2023),   # 60 days after the 31 October season end: at the grace
    ("2023-12-31", "maize", 2024),   # one day beyond
    ("2022-10-05", "wheat", 2023),   # winter wheat sown in October is harvested the next June
])
def test_purchase_season(date, crop, season):
    assert purchase_season(dt.date.fromisoformat(date), crop, 60) == season


@pytest.mark.parametrize("date, crop, season", [
    ("2023-01-15", "maize", 2022),   # last autumn's harvest sold in winter
    ("2022-09-01", "maize", 2022),   # season end 2022-10-31 is exactly 60 days later: at the grace
    ("2022-08-31", "maize", 2021),   # 61 days before the end: still the previous harvest
    ("2023-07-15", "wheat", 2023),
])
def test_sale_season(date, crop, season):
    assert sale_season(dt.date.fromisoformat(date), crop, 60) == season


# --------------------------------------------------------------------------- checks

def group(verified=100.0, declared=100.0, inputs=(), machinery=(), sales=(), crop="maize"):
    norms = {("maize", "seed"): MAIZE_SEED, ("maize", "fertiliser"): MAIZE_FERTILISER, ("wheat", "seed"): WHEAT_SEED,
             ("soybean", "seed"): 5.0}
    return {"season": 2023, "crop": crop, "plot_ids": ["P1"], "declared_mu": declared, "verified_mu": verified,
            "inputs": [{"partner": p, "crop": c, "input": i, "kg": kg, "kg_per_mu": norms[c, i], "mu": kg / norms[c, i]}
                       for p, c, i, kg in inputs],
            "machinery": [{"partner": p, "crop": c, "service": s, "mu": mu} for p, c, s, mu in machinery],
            "sales": [{"season": s, "kg": kg, "partners": ["g"]} for s, kg in sales]}


def codes(found):
    return {code: figures for code, figures in found[0]}


@pytest.mark.parametrize("kg, fires", [(125.0, False), (124.9, True), (200.0, False)])
def test_inputs_below_declared_at_half_the_declared_area(kg, fires):
    # 125 kg / 2.5 kg per mu = 50 mu = 0.5 x 100 declared mu: at the threshold, not below it.
    found = codes(chain_checks(group(inputs=[("s", "maize", "seed", kg)]), {}, None, POLICY))
    assert ("INPUTS_BELOW_DECLARED" in found) is fires
    if fires:
        assert found["INPUTS_BELOW_DECLARED"]["implied_mu"] == pytest.approx(124.9 / 2.5)


def test_the_larger_of_seed_and_fertiliser_counts():
    # seed for 20 mu, fertiliser for 3000 / 50 = 60 mu: 60 >= 50, no code.
    found = codes(chain_checks(group(inputs=[("s", "maize", "seed", 50.0), ("s", "maize", "fertiliser", 3000.0)]),
                               {}, None, POLICY))
    assert "INPUTS_BELOW_DECLARED" not in found


@pytest.mark.parametrize("mu, fires", [(115.0, False), (115.1, True), (85.0, False), (84.9, True)])
def test_machinery_area_against_verified_area(mu, fires):
    found = codes(chain_checks(group(machinery=[("m", "maize", "harvest", mu)]), {}, None, POLICY))
    assert ("MACHINERY_AREA_MISMATCH" in found) is fires
    if fires:
        assert found["MACHINERY_AREA_MISMATCH"] == {"service": "harvest", "serviced_mu": mu, "verified_mu": 100.0,
                                                    "tolerance": 0.15}


@pytest.mark.parametrize("mu, fires", [(50.0, True), (49.9, False)])
def test_another_crop_at_half_the_verified_area(mu, fires):
    prior = {"CROP_MISMATCH": ("review", {"best_crop": "soybean"})}
    found = codes(chain_checks(group(machinery=[("m", "soybean", "harvest", mu)]), prior, "soybean", POLICY))
    assert ("CHAIN_OTHER_CROP" in found) is fires
    if fires:
        assert found["CHAIN_OTHER_CROP"]["chain_crop"] == "soybean"
        assert found["CHAIN_OTHER_CROP"]["supports_crop_mismatch"] is True


def test_own_yield_is_the_median_bounded_by_the_table():
    found = codes(chain_checks(group(sales=[(2020, 30000.0), (2021, 25000.0), (2022, 28000.0)]), {}, None, POLICY))
    history = found["OWN_YIELD_HISTORY"]
    assert history["seasons_kg_per_mu"] == {"2020": 300.0, "2021": 250.0, "2022": 280.0}
    assert history["median_kg_per_mu"] == 280.0 and history["yield_kg_per_mu"] == 280.0
    assert "SALES_BELOW_EXPECTED_YIELD" not in found  # 280 >= 0.6 x 435.5 = 261.3
    high = codes(chain_checks(group(sales=[(2021, 60000.0), (2022, 62000.0)]), {}, None, POLICY))
    assert high["OWN_YIELD_HISTORY"]["median_kg_per_mu"] == 610.0
    assert high["OWN_YIELD_HISTORY"]["yield_kg_per_mu"] == pytest.approx(1.2 * MAIZE_YIELD)  # 522.6


def test_one_season_is_not_a_history():
    assert "OWN_YIELD_HISTORY" not in codes(chain_checks(group(sales=[(2022, 30000.0)]), {}, None, POLICY))


@pytest.mark.parametrize("kg_per_mu, fires", [(0.6 * MAIZE_YIELD, False), (261.0, True), (262.0, False)])
def test_sales_below_expected_yield_at_sixty_percent_of_the_table(kg_per_mu, fires):
    found = codes(chain_checks(group(verified=1.0, sales=[(2021, kg_per_mu), (2022, kg_per_mu)]), {}, None, POLICY))
    assert ("SALES_BELOW_EXPECTED_YIELD" in found) is fires


CLOUDY = {"CLOUD_INSUFFICIENT": ("review", {"min_observations": 3})}
TWO = [("shop", "maize", "seed", 0.9 * 100 * MAIZE_SEED)]


@pytest.mark.parametrize("harvest_mu, settled", [(90.0, True), (89.9, False)])
def test_two_partners_settle_a_satellite_review(harvest_mu, settled):
    found, taken = chain_checks(group(inputs=TWO, machinery=[("coop", "maize", "harvest", harvest_mu)]), CLOUDY, None,
                                POLICY)
    assert taken == (frozenset({"CLOUD_INSUFFICIENT"}) if settled else frozenset())
    if settled:
        (code, figures), = found
        assert code == "CHAIN_CORROBORATED" and figures["partners"] == ["coop", "shop"]
        assert figures["settled"] == [{"code": "CLOUD_INSUFFICIENT", "figures": {"min_observations": 3}}]


@pytest.mark.parametrize("code", ["CROP_MISMATCH", "SEASON_UNRECOGNISED", "TOO_FEW_PIXELS", "PARTIAL_COVERAGE",
                                  "NOT_CULTIVATED_UNCONFIRMED", "NO_COVERAGE", "TILE_UNREADABLE"])
def test_every_uncertain_satellite_review_is_settleable(code):
    both = group(inputs=TWO, machinery=[("coop", "maize", "harvest", 100.0)])
    assert chain_checks(both, {code: ("review", {})}, None, POLICY)[1] == frozenset({code})


def test_corroboration_never_settles_ownership_or_a_contradiction():
    both = dict(inputs=TWO, machinery=[("coop", "maize", "harvest", 100.0)])
    owner = {**CLOUDY, "OWNER_MISMATCH": ("review", {})}
    found, taken = chain_checks(group(**both), owner, None, POLICY)
    assert taken == frozenset() and codes((found, taken))["CHAIN_CORROBORATED"]["settled"] == []
    against = group(inputs=TWO, machinery=[("coop", "maize", "harvest", 100.0), ("coop", "soybean", "sow", 60.0)])
    found, taken = chain_checks(against, CLOUDY, None, POLICY)
    assert taken == frozenset() and "CHAIN_CORROBORATED" not in codes((found, taken))
    one_partner = group(inputs=TWO, machinery=[("shop", "maize", "harvest", 100.0)])
    assert chain_checks(one_partner, CLOUDY, None, POLICY)[1] == frozenset()


# --------------------------------------------------------------------------- evidence gathering

def test_rows_reach_the_groups_they_speak_for():
    rows = pd.DataFrame([
        # partner, borrower, date, crop, item, amount, plot_ids, season
        ("S", "B1", "2023-03-01", "maize", "seed", 25.0, "", ""),          # B1's maize group
        ("S", "B1", "2023-03-01", "soybean", "seed", 50.0, "", ""),        # B1 declared no soybean: every group
        ("M", "B1", "2023-06-10", "wheat", "harvest", 3.0, "P3", ""),      # names P3: the wheat group only
        ("S", "B1", "2022-03-01", "maize", "seed", 99.0, "", ""),          # last season: not counted
        ("S", "B2", "2023-03-01", "maize", "seed", 99.0, "", ""),          # another borrower
    ], columns=["partner_id", "borrower_id", "date", "crop", "item", "amount", "plot_ids", "season"])
    sales = pd.DataFrame([("G", "B1", "2022-11-01", "maize", "", 1000.0, "", ""),
                          ("G", "B1", "2019-11-01", "maize", "", 1000.0, "", ""),   # 2019 < 2023 - 3: too old
                          ("G", "B1", "2021-05-01", "maize", "", 500.0, "", "2021")],
                         columns=rows.columns)
    tables = ChainTables(input_purchases=rows.loc[rows["item"] == "seed"],
                         machinery=rows.loc[rows["item"] == "harvest"], sales=sales)
    plots = [PlotRef("P1", "B1", "maize", 10.0, 9.0), PlotRef("P2", "B1", "maize", 5.0, 5.0),
             PlotRef("P3", "B1", "wheat", 3.0, 3.0)]
    facts = chain_facts(tables, plots, 2023, lambda p: f"p_{p}", POLICY)
    maize, wheat = facts["B1", "P1"], facts["B1", "P3"]
    assert facts["B1", "P2"] is maize and maize["plot_ids"] == ["P1", "P2"]
    assert maize["declared_mu"] == 15.0 and maize["verified_mu"] == 14.0
    assert [(r["crop"], r["kg"], r["mu"]) for r in maize["inputs"]] == [("maize", 25.0, 25.0 / MAIZE_SEED),
                                                                         ("soybean", 50.0, 50.0 / 5.0)]
    assert maize["machinery"] == [] and [r["crop"] for r in wheat["inputs"]] == ["soybean"]
    assert wheat["machinery"] == [{"partner": "p_M", "crop": "wheat", "service": "harvest", "mu": 3.0}]
    assert maize["sales"] == [{"season": 2021, "kg": 500.0, "partners": ["p_G"]},
                              {"season": 2022, "kg": 1000.0, "partners": ["p_G"]}]


# --------------------------------------------------------------------------- verdicts and limits

def facts(**chain):
    return PlotFacts(plot_id="P1", borrower_id="b_1", drawn_mu=100.0, registered_mu=100.0, registry_holder_id="b_1",
                     declared_mu=100.0, declared_crop="maize", pixel_count=500.0, cropped_mu_at_peak=95.0,
                     satellite_codes=(Check.make("CLOUD_INSUFFICIENT"),), chain=group(**chain))


def test_a_settled_review_releases_the_plot_and_stays_visible():
    plain = verify_plot(dataclasses.replace(facts(), chain={}), POLICY)
    assert plain.light == "red" and plain.contribution.mu_now == 0.0
    settled = verify_plot(facts(inputs=TWO, machinery=[("coop", "maize", "harvest", 100.0)]), POLICY)
    assert settled.codes == ("CHAIN_CORROBORATED",) and settled.light == "green"
    assert settled.contribution.mu_now == 100.0
    assert settled.checks[0].figures["settled"][0]["code"] == "CLOUD_INSUFFICIENT"
    again = PlotFacts.from_dict(settled.facts.to_dict())
    assert again == settled.facts and verify_plot(again, POLICY) == settled


def test_capacity_uses_the_own_yield_by_the_formula():
    verdict = verify_plot(facts(inputs=TWO, machinery=[("coop", "maize", "harvest", 100.0)],
                                sales=[(2020, 25000.0), (2021, 24000.0), (2022, 26000.0)]), POLICY)
    decision = decide("b_1", [verdict], POLICY)
    # capacity = 0.6 x 100 mu x 250 kg/mu x 2.18 CNY/kg = 32,700; need = 100 x 639.5 = 63,950.
    assert decision.now.capacity == pytest.approx(0.6 * 100 * 250 * 2.18)
    assert decision.limit == 32700.0 and decision.status == "APPROVE"
    assert decision.now.lines[0].yield_source == "sales"
    table = 0.6 * 100 * MAIZE_YIELD * 2.18  # 56,963.4 -> 56,900
    history = next(r for r in decision.reasons if r.code == "OWN_YIELD_HISTORY")
    assert history.impact == math.floor(table / 100) * 100 - 32700.0
    assert "250 kg/mu (own sales history)" in explain(decision, POLICY)
    assert "250 公斤/亩（自有销售记录）" in explain(decision, POLICY, "zh")


# --------------------------------------------------------------------------- policy

def test_chain_section_is_optional_and_validated(tmp_path):
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    without = text[:text.index("[chain]")]
    assert load_policy(write(tmp_path / "a.toml", without)).chain == ChainPolicy() == POLICY.chain
    with pytest.raises(PolicyError, match="chain.inputs_min_share"):
        load_policy(write(tmp_path / "b.toml", text.replace("inputs_min_share = 0.5", "inputs_min_share = 1.5")))
    with pytest.raises(PolicyError, match="missing key chain.sales_seasons"):
        load_policy(write(tmp_path / "c.toml", text.replace("sales_seasons = 3\n", "")))
    with pytest.raises(PolicyError, match="sales_min_seasons must not exceed"):
        load_policy(write(tmp_path / "d.toml", text.replace("sales_min_seasons = 2", "sales_min_seasons = 4")))


# --------------------------------------------------------------------------- case file and options

def test_case_file_and_options_name_the_chain_tables(tmp_path):
    from agricredit.assess import load_case
    from agricredit.cli.options import resolve_case, sample_only

    sample = DEFAULT_POLICY_PATH.parents[1] / "sample_tiles"
    chain = load_case(sample / "case_chain.toml")
    assert chain.chain_paths() == {name: sample / "chain" / f"{name}.csv"
                                   for name in ("input_purchases", "machinery", "sales", "customer_map")}
    assert set(chain.chain_paths().values()) <= set(chain.input_paths())
    plain = resolve_case(sample / "case.toml", False, {"sales": sample / "chain" / "sales.csv"})
    assert plain.chain_paths() == {"sales": sample / "chain" / "sales.csv"}
    assert not sample_only(True, {"machinery": sample / "chain" / "machinery.csv"})  # no demo keys for real partners
    inputs = {name: sample / f"{name}.csv" for name in ("registry", "declarations", "borrowers")}
    lines = ["[inputs]", f'plots = "{sample / "plots.geojson"}"', f'tiles = "{sample / "season"}"',
             *(f'{name} = "{path}"' for name, path in inputs.items()),
             f'machinery = "{sample / "chain" / "machinery.csv"}"', "[tables.machinery]", 'encoding = "gbk"']
    (tmp_path / "case.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert load_case(tmp_path / "case.toml").encoding_of("machinery") == "gbk"


def test_a_table_without_borrower_or_customer_column_is_one_clear_error(tmp_path):
    path = write(tmp_path / "sales.csv", "partner_id,date,crop,quantity,unit\nG1,2022-11-01,maize,1,t\n")
    with pytest.raises(SchemaError) as raised:
        read_chain_table(path, "sales", isolate=True)
    assert str(path) in str(raised.value) and "borrower_id" in str(raised.value) and "\n" not in str(raised.value)


def test_explanations_spell_the_chain_figures_out():
    plot = dataclasses.replace(facts(machinery=[("coop", "maize", "harvest", 120.0), ("coop", "soybean", "sow", 60.0)]),
                               satellite_codes=())
    decision = decide("b_1", [verify_plot(plot, POLICY)], POLICY)
    assert decision.status == "REVIEW" and decision.limit == 0.0
    english, chinese = explain(decision, POLICY), explain(decision, POLICY, "zh")
    assert "harvest 120 mu vs verified 100 mu, beyond ±15%" in english
    assert "60 mu of soybean (sowing) against declared maize" in english
    assert "收获作业 120 亩，核实 100 亩，超出 ±15%" in chinese and "大豆 60 亩（播种作业），申报 玉米" in chinese
