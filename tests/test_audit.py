"""Audit records: JSON-ready, deterministic, replayable; tampering shows up as a difference."""

from __future__ import annotations

import copy
import json
import math

import pytest

from _plotfacts import POLICY, honest
from agricredit import __version__
from agricredit.audit import audit_record, record_line, replay
from agricredit.credit import decide_all
from agricredit.errors import InputError
from agricredit.policy import load_policy
from agricredit.seeds import DEFAULT_POLICY_PATH
from agricredit.verify import verify_plots

INPUTS = {"plots": "a" * 64, "registry": "b" * 64, "declarations": "c" * 64}


def run(facts, policy=POLICY):
    verdicts = verify_plots(facts, policy)
    records = []
    for decision in decide_all(verdicts, policy):
        mine = [v for v in verdicts if v.borrower_id == decision.borrower_id]
        records.append(audit_record(decision, mine, policy, INPUTS))
    return records


FACTS = [
    honest("P1", "B1", mu=9.8),
    honest("P2", "B1", mu=6.0, declared_mu=12.0),
    honest("P3", "B2", mu=4.0, registered_mu=math.nan, overlaps=[("P1", "B1", 900.0)]),
    honest("P4", "B2", mu=3.0, vigor_factor=0.5, satellite_codes={"LOW_VIGOR": {"peer_median": 0.8}}),
    honest("P5", "B3", mu=2.0, cropped_mu_at_peak=0.0),
]


def parsed(records):
    return [json.loads(record_line(r)) for r in records]


def test_record_is_canonical_json_with_every_figure():
    records = run(FACTS)
    assert [r["borrower_id"] for r in records] == ["B1", "B2", "B3"]
    first = records[0]
    line = record_line(first)
    assert json.loads(line) == first and "NaN" not in line and "\n" not in line
    assert line == json.dumps(first, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert first["tool_version"] == __version__ and first["inputs"] == INPUTS
    assert first["policy"]["sha256"] == POLICY.sha256 and first["policy"]["credit"]["advance_rate"] == 0.6
    assert set(first) == {"schema", "tool_version", "policy", "inputs", "borrower_id", "decision", "plots", "record_sha256"}
    plot = first["plots"][1]
    assert plot["facts"]["declared_mu"] == 12.0 and plot["areas"]["registered_mu"] == 6.0
    assert [c["code"] for c in plot["checks"]] == ["AREA_OVER_DECLARED"]
    claimed = first["plots"][0]  # P1 carries the mirrored overlap with its figures, so replay needs nothing else
    assert [c["code"] for c in claimed["checks"]] == ["DOUBLE_CLAIM"]
    assert claimed["facts"]["overlaps"] == [{"other_borrower_id": "B2", "other_drawn_mu": 4.0, "other_plot_id": "P3", "shared_m2": 900.0}]
    assert first["decision"]["status"] == "REVIEW" and first["decision"]["limit_if_confirmed"] > first["decision"]["limit"]
    # nothing but the allow-listed, pseudonymous fields of the facts
    assert set(plot["facts"]) == set(honest().to_dict())


def test_replay_reproduces_every_decision():
    for record in parsed(run(FACTS)):
        assert replay(record, POLICY) == []


def test_records_do_not_depend_on_row_order():
    assert [record_line(r) for r in run(FACTS)] == [record_line(r) for r in run(FACTS[::-1])]


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda r: r["plots"][0]["facts"].__setitem__("registered_mu", 11.0), "plots[0].areas.registered_mu"),
    (lambda r: r["decision"].__setitem__("limit", r["decision"]["limit"] + 100.0), "decision.limit"),
    (lambda r: r["plots"][1]["checks"].pop(0), "plots[1].checks"),
    (lambda r: r["plots"][0]["facts"].__setitem__("declared_crop", "soybean"), "decision.now"),
])
def test_replay_catches_a_tampered_record(edit, expected):
    record = parsed(run(FACTS))[0]
    tampered = copy.deepcopy(record)
    edit(tampered)
    differences = replay(tampered, POLICY)
    assert any(line.startswith(expected) for line in differences), differences
    # a forger who also fixes the checksum is still caught by the recomputation
    assert any(not line.startswith("record_sha256") for line in differences)


def test_replay_with_another_policy_is_reported(tmp_path):
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace("advance_rate = 0.6", "advance_rate = 0.5")
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    other = load_policy(path)
    record = parsed(run(FACTS))[0]
    differences = replay(record, other)
    assert differences[0].startswith("policy.sha256: recorded")
    assert any(line.startswith("decision.limit:") for line in differences)
    assert any(line.startswith("policy.credit.advance_rate") for line in differences)


def test_audit_record_refuses_mismatched_verdicts():
    verdicts = verify_plots(FACTS, POLICY)
    decision = decide_all(verdicts, POLICY)[0]
    with pytest.raises(InputError, match="B1: the verdicts are not the plots"):
        audit_record(decision, verdicts, POLICY, INPUTS)


def test_not_a_record():
    with pytest.raises(InputError, match="not an agricredit audit record"):
        replay({"borrower_id": "B1"}, POLICY)


def test_an_empty_audit_file_is_an_error(tmp_path):
    from agricredit.audit import replay_file
    from agricredit.errors import InputError

    path = tmp_path / "audit.jsonl"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(InputError, match="no audit records"):
        replay_file(path)
