"""The sample's planted industry-chain cases (sample_tiles/case_chain.toml), end to end.

Each planted case gets its code and figures, and every limit equals a hand computation written here
with the conversion factors (1 t = 1000 kg, 1 斤 = 0.5 kg, 1 ha = 15 mu; seed norms maize 2.5 and
wheat 10 kg/mu) and the crop table's figures (cost CNY/mu, yield kg/mu, price CNY/kg) typed in.
Outputs are written to tmp_path; the sealed audit is replayed with the command line.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil

import pytest
from suite_keys import TEST_KEYS, TEST_PII_KEY

from agricredit.assess import load_case, run_assessment, sample_case
from agricredit.privacy import pseudonym
from agricredit.seeds import DEFAULT_POLICY_PATH

SAMPLE = DEFAULT_POLICY_PATH.parents[1] / "sample_tiles"
CASE = SAMPLE / "case_chain.toml"
ADVANCE, STEP = 0.6, 100.0
COST = {"maize": 639.5, "soybean": 547.18, "wheat": 639.5}
YIELD = {"maize": 435.5, "soybean": 132.7, "wheat": 385.4}
PRICE = {"maize": 2.18, "soybean": 4.00, "wheat": 2.34}
PARTNERS = ("SHOP-FQ-01", "SHOP-YY-02", "COOP-YJ-01", "GRAIN-XX-01", "C-0412")


def limit(lines, own_yield=None):
    """floor(min(need, capacity, cap) / 100) x 100 over (crop, mu) lines, the crop's yield replaced if given."""
    need = sum(mu * COST[crop] for crop, mu in lines)
    capacity = ADVANCE * sum(mu * (own_yield or {}).get(crop, YIELD[crop]) * PRICE[crop] for crop, mu in lines)
    return math.floor(round(min(need, capacity, 200000.0) / STEP, 6)) * STEP


@pytest.fixture(scope="module")
def runs():
    return run_assessment(load_case(CASE), TEST_PII_KEY), run_assessment(sample_case(), TEST_PII_KEY)


def of(assessment, borrower):
    alias = pseudonym(TEST_PII_KEY, "borrower", borrower)
    decision = next(d for d in assessment.decisions if d.borrower_id == alias)
    verdicts = {v.plot_id: v for v in assessment.verdicts if v.borrower_id == alias}
    return decision, verdicts


def check(verdict, code):
    return next(c for c in verdict.checks if c.code == code)


def test_planted_cases_are_listed_and_caught(runs):
    with open(SAMPLE / "chain" / "planted_cases.csv", encoding="utf-8", newline="") as handle:
        planted = list(csv.DictReader(handle))
    assert len(planted) == 6
    for case in planted:
        decision, verdicts = of(runs[0], case["borrower_id"])
        assert case["expected_code"] in verdicts[case["plot_id"]].codes, case
        assert decision.status == case["expected_status"], case


def test_seed_for_a_fifth_of_the_declared_area(runs):
    decision, verdicts = of(runs[0], "B046")
    figures = check(verdicts["P0126"], "INPUTS_BELOW_DECLARED").figures
    assert figures["implied_mu"] == pytest.approx(73.1 / 2.5)  # 29.24 mu of seed, a fifth of 146.16 declared
    assert figures["declared_mu"] == 146.16 and figures["implied_mu"] < 0.5 * 146.16
    mu = verdicts["P0126"].verified_mu
    assert decision.status == "REVIEW" and decision.limit == 0.0
    assert decision.limit_if_confirmed == limit([("maize", mu)]) == of(runs[1], "B046")[0].limit


def test_a_harvest_service_for_another_crop(runs):
    decision, verdicts = of(runs[0], "B085")
    figures = check(verdicts["P0232"], "CHAIN_OTHER_CROP").figures
    assert figures["chain_crop"] == "soybean" and figures["chain_mu"] == pytest.approx(4.0509 * 15)
    assert figures["sources"] == ["service:harvest"] and figures["supports_crop_mismatch"] is False
    assert decision.status == "REVIEW" and decision.limit == 0.0
    assert decision.limit_if_confirmed == limit([("maize", verdicts["P0232"].verified_mu)])
    # On a plot the satellite already flags (declared maize, fits wheat), a wheat harvest supports the finding.
    _, flagged = of(runs[0], "B091")
    assert check(flagged["P0251"], "CHAIN_OTHER_CROP").figures["supports_crop_mismatch"] is True
    assert "CROP_MISMATCH" in flagged["P0251"].codes


def test_three_seasons_of_sales_lower_capacity(runs):
    decision, verdicts = of(runs[0], "B076")
    mu = verdicts["P0214"].verified_mu
    kg = {"2020": 70 * 1000.0, "2021": 134000 * 0.5, "2022": 72500.0}  # t, 斤, kg
    history = check(verdicts["P0214"], "OWN_YIELD_HISTORY").figures
    assert history["seasons_kg_per_mu"] == pytest.approx({season: k / mu for season, k in kg.items()})
    assert history["yield_kg_per_mu"] == pytest.approx(70000.0 / mu)  # the median season
    assert "SALES_BELOW_EXPECTED_YIELD" in verdicts["P0214"].codes  # 250.4 < 0.6 x 435.5 kg/mu
    # capacity = 0.6 x mu x (70,000 kg / mu) x 2.18 = 91,560 -> 91,500, against 159,200 on the table yield.
    assert decision.limit == limit([("maize", mu)], {"maize": 70000.0 / mu}) == 91500.0
    assert of(runs[1], "B076")[0].limit == limit([("maize", mu)]) == 159200.0
    assert decision.status == "APPROVE"


def test_two_partners_clear_a_cloudy_review(runs):
    decision, verdicts = of(runs[0], "B083")
    before, _ = of(runs[1], "B083")
    assert before.status == "REVIEW" and "CLOUD_INSUFFICIENT" in before.reason_codes
    corroborated = check(verdicts["P0231"], "CHAIN_CORROBORATED").figures
    assert [item["code"] for item in corroborated["settled"]] == ["CLOUD_INSUFFICIENT"]
    # the harvest's mu and the seed's 斤 -> kg -> mu, in the order of the partners' pseudonyms
    assert sorted(corroborated["partner_mu"]) == pytest.approx([22.79, 455.8 * 0.5 / 10.0])
    assert "CLOUD_INSUFFICIENT" not in verdicts["P0231"].codes and verdicts["P0231"].light == "green"
    lines = [("soybean", verdicts["P0228"].verified_mu), ("wheat", verdicts["P0231"].verified_mu)]
    assert decision.status == "APPROVE" and decision.limit == decision.limit_if_confirmed == limit(lines)
    assert decision.limit == before.limit_if_confirmed


def test_borrowers_without_chain_rows_are_unchanged(runs):
    chain_borrowers = {pseudonym(TEST_PII_KEY, "borrower", b) for b in ("B046", "B072", "B076", "B083", "B085", "B091")}
    with_chain = {d.borrower_id: d for d in runs[0].decisions}
    for plain in runs[1].decisions:
        if plain.borrower_id not in chain_borrowers:
            assert with_chain[plain.borrower_id] == plain


@pytest.fixture(scope="module")
def assessed(tmp_path_factory):
    from click.testing import CliRunner

    from agricredit.cli.main import cli

    out = tmp_path_factory.mktemp("chain") / "out"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in TEST_KEYS.items():
            patch.setenv(name, value)
        result = CliRunner().invoke(cli, ["assess", str(CASE), "-o", str(out), "--no-progress"])
    assert result.exit_code == 3, result.output  # the two planted invalid plots, as without the chain tables
    return out


def _replay(*arguments):
    from click.testing import CliRunner

    from agricredit.cli.main import cli

    with pytest.MonkeyPatch.context() as patch:
        for name, value in TEST_KEYS.items():
            patch.setenv(name, value)
        return CliRunner().invoke(cli, ["replay", *map(str, arguments)])


def test_chain_files_are_hashed_and_partners_never_in_clear(assessed):
    manifest = json.loads((assessed / "manifest.json").read_text(encoding="utf-8"))
    for role, name in (("input_purchases", "input_purchases.csv"), ("machinery", "machinery.csv"),
                       ("sales", "sales.csv"), ("customer_map", "customer_map.csv")):
        assert manifest["inputs"][role] == hashlib.sha256((SAMPLE / "chain" / name).read_bytes()).hexdigest()
    record = json.loads((assessed / "audit.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert record["inputs"] == manifest["inputs"]
    for path in assessed.iterdir():
        data = path.read_bytes()
        for partner in PARTNERS:
            assert partner.encode() not in data, (path.name, partner)
    text = (assessed / "audit.jsonl").read_text(encoding="utf-8")
    assert pseudonym(TEST_PII_KEY, "partner", "COOP-YJ-01") in text


def test_replay_reproduces_every_chain_decision(assessed, tmp_path):
    audit = assessed / "audit.jsonl"
    done = _replay(audit)
    assert done.exit_code == 0 and done.stdout.endswith("120 of 120 decisions reproduced\n"), done.output
    same = _replay("--inputs", CASE, audit)
    assert same.exit_code == 0, same.output
    shutil.copytree(SAMPLE, tmp_path / "case")
    sales = tmp_path / "case" / "chain" / "sales.csv"
    sales.write_text(sales.read_text(encoding="utf-8").replace(",72500,kg", ",92500,kg"), encoding="utf-8")
    changed = _replay("--inputs", tmp_path / "case" / "case_chain.toml", audit)
    assert changed.exit_code == 1
    assert "inputs.sales: recorded" in changed.stdout and "plots[P0214].facts.chain" in changed.stdout


def test_a_bad_chain_row_is_set_aside_and_the_run_goes_on(runs, tmp_path):
    shutil.copytree(SAMPLE, tmp_path / "case")
    sales = tmp_path / "case" / "chain" / "sales.csv"
    sales.write_text(sales.read_text(encoding="utf-8") + "GRAIN-XX-01,C-0412,2022-12-01,maize,5,bags\n",
                     encoding="utf-8")
    assessment = run_assessment(load_case(tmp_path / "case" / "case_chain.toml"), TEST_PII_KEY)
    assert "sales.csv row 5 unit: not a known unit (expected one of kg, 公斤, 千克, t, 吨, jin, 斤)" in \
        assessment.rejected["BAD_TABLE_ROW"]
    assert assessment.decisions == runs[0].decisions
