"""The reduce step in groups of borrowers, each group in its own process: the same run, whatever the grouping."""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
from pathlib import Path

import pandas as pd
import pytest

import agricredit.assess as assess
from agricredit.assess import _borrower_groups, load_case, run_assessment, sample_case, write_outputs
from agricredit.audit import AuditKey
from agricredit.errors import InputError
from agricredit.outputs import LoadedOnRead, map_in_processes
from agricredit.privacy import DEMO_PII_KEY, PseudonymKey
from agricredit.verify import PlotFacts

KEY = PseudonymKey(DEMO_PII_KEY.encode(), "environment")
CHAIN_CASE = Path(__file__).resolve().parents[1] / "sample_tiles" / "case_chain.toml"
#: Planted review plots of the sample settled by a visit (see tests/test_visits.py).
VISITS = ("plot_id,visit_date,officer_id,crop_seen,measured_mu,reason_code,outcome\n"
          "P0231,2023-08-02,OFF-017,wheat,,CLOUD_INSUFFICIENT,confirmed\n"
          "P0251,2023-08-03,OFF-017,maize,,CROP_MISMATCH,rejected\n"
          "P0083,2023-08-03,OFF-022,maize,90.5,AREA_UNIT_SUSPECTED,confirmed\n")


def _in_parts(monkeypatch, parts: int) -> None:
    """Make every run's reduce step use ``parts`` processes, however few its plots."""
    monkeypatch.setattr(assess, "REDUCE_PART_MIN_PLOTS", 1)
    monkeypatch.setattr(assess, "_cores", lambda: parts)


@pytest.fixture(scope="module")
def visited_case(tmp_path_factory):
    path = tmp_path_factory.mktemp("reduce") / "visits.csv"
    path.write_text(VISITS, encoding="utf-8")
    return dataclasses.replace(sample_case(), visits=path)


@pytest.fixture(scope="module")
def in_one_process(visited_case):
    return run_assessment(visited_case, KEY)


def _same_run(ours, theirs) -> None:
    # by repr: a NaN figure (no peak) pickled back from a child is another float object, and NaN != NaN
    assert repr(ours.verdicts) == repr(theirs.verdicts)
    assert repr(ours.decisions) == repr(theirs.decisions)
    assert ours.audit == theirs.audit
    pd.testing.assert_frame_equal(ours.borrowers, theirs.borrowers)
    pd.testing.assert_frame_equal(ours.plots, theirs.plots)


@pytest.mark.parametrize("parts", [2, 5])
def test_the_sample_with_visits_in_groups_of_borrowers_is_the_same_run(visited_case, in_one_process, monkeypatch,
                                                                        parts):
    assert {"CLOUD_INSUFFICIENT", "CROP_MISMATCH"} <= {c.code for v in in_one_process.verdicts for c in v.checks}
    assert any(record.get("visits") for record in in_one_process.audit)  # the visits reached the audit records
    _in_parts(monkeypatch, parts)
    in_parts = run_assessment(visited_case, KEY)
    assert in_parts.coverage == in_one_process.coverage
    _same_run(in_parts, in_one_process)  # (the verdicts and decisions of the groups done in children: made again)


def test_the_sources_coverage_is_counted_on_the_verdicts_facts(in_one_process):
    sound = [v.facts for v in in_one_process.verdicts if v.facts.geometry_status in ("valid", "repaired")]
    assert in_one_process.coverage == {
        "registry": (sum(math.isfinite(f.registered_mu) for f in sound), len(sound)),
        "declarations": (sum(math.isfinite(f.declared_mu) for f in sound), len(sound)),
        "satellite season": (sum(math.isfinite(f.peak_ndvi) for f in sound), len(sound))}
    assert len(sound) == 317  # the sample's 319 plots but its 2 planted invalid outlines


def test_the_industry_chain_sample_in_groups_of_borrowers_is_the_same_run(monkeypatch):
    case = load_case(CHAIN_CASE)
    alone = run_assessment(case, KEY)
    assert any(v.facts.chain for v in alone.verdicts)  # the chain's evidence reached the plots
    _in_parts(monkeypatch, 3)
    _same_run(run_assessment(case, KEY), alone)


def test_a_visit_no_group_can_settle_is_the_runs_one_line_error(visited_case, monkeypatch, tmp_path):
    path = tmp_path / "visits.csv"
    path.write_text(VISITS + "P0001,2023-08-02,OFF-1,soybean,,CLOUD_INSUFFICIENT,confirmed\n", encoding="utf-8")
    _in_parts(monkeypatch, 4)
    with pytest.raises(InputError) as caught:
        run_assessment(dataclasses.replace(visited_case, visits=path), KEY)
    assert str(caught.value) == (f"{path}: row 5: plot P0001 does not carry CLOUD_INSUFFICIENT: nothing to confirm")


def _facts(borrowers: list[str]) -> list[PlotFacts]:
    return [PlotFacts(plot_id=f"P{i:03d}", borrower_id=b, geometry_status="valid", drawn_mu=1.0, registered_mu=1.0,
                      declared_mu=1.0, declared_crop="maize") for i, b in enumerate(borrowers)]


def test_groups_hold_consecutive_borrowers_with_about_as_many_plots_each():
    facts = _facts(["b"] * 6 + ["a"] * 3 + ["d"] * 3 + ["c"] * 4)  # a 3, b 6, c 4, d 3 plots; e none
    groups = _borrower_groups(facts, ["a", "b", "c", "d", "e"], 2)
    borrowers_of = [sorted({f.borrower_id for f in group_facts} | set(table)) for group_facts, table in groups]
    # weights (plots + 1): a 4, b 7, c 5, d 4, e 1 → 21; middles a 2, b 7.5, c 13.5 (past 21 / 2), d 18, e 20.5
    assert borrowers_of == [["a", "b"], ["c", "d", "e"]]
    assert [table for _, table in groups] == [["a", "b"], ["c", "d", "e"]]
    for group_facts, _ in groups:  # each group's facts keep the order they came in
        assert group_facts == [f for f in facts if f in group_facts]
    assert sorted(f.plot_id for g, _ in groups for f in g) == sorted(f.plot_id for f in facts)


def test_more_groups_than_borrowers_leaves_no_empty_group():
    groups = _borrower_groups(_facts(["a", "a", "b"]), ["a", "b", "c"], 8)
    assert [sorted({f.borrower_id for f in g} | set(t)) for g, t in groups] == [["a"], ["b"], ["c"]]
    assert _borrower_groups([], [], 3) == [([], [])]
    assert _borrower_groups([], ["a"], 1) == [([], ["a"])]


def test_map_in_processes_keeps_the_order_and_runs_each_other_item_in_a_child():
    results = map_in_processes(lambda item: (item * item, os.getpid()), [1, 2, 3])
    assert [value for value, _ in results] == [1, 4, 9]
    pids = [pid for _, pid in results]
    assert pids[0] == os.getpid() and len(set(pids)) == 3
    assert map_in_processes(lambda item: item, []) == []


@pytest.mark.parametrize("failing", [0, 2])
def test_map_in_processes_raises_the_first_failing_items_error(failing):
    def job(item):
        if item >= failing:
            raise InputError(f"item {item} failed", record=str(item))
        return item

    with pytest.raises(InputError, match=f"^{failing}: item {failing} failed$"):
        map_in_processes(job, [0, 1, 2, 3])


def test_the_first_group_takes_its_weight_in_plots():
    facts = _facts(["a"] * 9 + ["b"] * 9 + ["c"] * 9 + ["d"] * 9 + ["e"] * 9)  # each borrower weighs 10: 50
    borrowers_of = lambda groups: [sorted({f.borrower_id for f in g} | set(t)) for g, t in groups]  # noqa: E731
    assert borrowers_of(_borrower_groups(facts, [], 2)) == [["a", "b"], ["c", "d", "e"]]  # ends at 25: c's middle
    # first weight 1.5: ends at 30 and 50 (c's middle, 25, falls before 30); 2/3: ends at 20 and 50
    assert borrowers_of(_borrower_groups(facts, [], 2, first_weight=1.5)) == [["a", "b", "c"], ["d", "e"]]
    assert borrowers_of(_borrower_groups(facts, [], 2, first_weight=2 / 3)) == [["a", "b"], ["c", "d", "e"]]
    # three groups, first weight 2: ends at 25, 37.5, 50; a middle on an end (c's, 25) goes to the next group
    assert borrowers_of(_borrower_groups(facts, [], 3, first_weight=2)) == [["a", "b"], ["c", "d"], ["e"]]


def test_a_split_runs_verdicts_decisions_and_records_are_unpickled_only_when_read(visited_case, in_one_process,
                                                                                  monkeypatch, caplog, tmp_path):
    _in_parts(monkeypatch, 2)
    with caplog.at_level("INFO", logger="agricredit.verify"):
        split = run_assessment(visited_case, KEY)
    lights = [v.light for v in in_one_process.verdicts]
    counted = f"verified {len(lights)} plots: {lights.count('green')} green, {lights.count('yellow')} yellow, " \
              f"{lights.count('red')} red"
    assert min(lights.count(light) for light in ("green", "yellow", "red")) > 0
    assert counted in caplog.messages  # counted from the plot fields, the verdicts unread
    for made in (split.verdicts, split.decisions, split.audit):
        assert isinstance(made, LoadedOnRead) and made._items is None  # the outputs were made without them
    manifest = write_outputs(split, tmp_path / "out", AuditKey.demo())
    assert split.audit._items is None  # the audit records were read by the child process that wrote them
    assert manifest["audit"]["records"] == len(split.audit) == len(in_one_process.audit)
    assert split.audit == in_one_process.audit and split.audit._items is not None
    assert len(split.verdicts) == len(in_one_process.verdicts) and split.verdicts._items is None
    assert len(split.decisions) == len(in_one_process.decisions)
    assert [v.plot_id for v in split.verdicts] == [v.plot_id for v in in_one_process.verdicts]
    assert split.decisions[0] == in_one_process.decisions[0]


def test_loaded_on_read_loads_once_and_behaves_as_the_list():
    calls = []

    def load():
        calls.append(1)
        return ["a", "b", "c"]

    items = LoadedOnRead(load, 3)
    assert len(items) == 3 and calls == []
    assert items == ["a", "b", "c"] and ["a", "b", "c"] == items and items != ["a", "b"]
    assert (items[1], items[-1], items[:2], list(items), "c" in items) == ("b", "c", ["a", "b"], ["a", "b", "c"], True)
    assert repr(items) == "['a', 'b', 'c']" and pickle.loads(pickle.dumps(items)) == ["a", "b", "c"]
    assert type(pickle.loads(pickle.dumps(items))) is list
    assert items == LoadedOnRead(lambda: ["a", "b", "c"], 3)
    assert calls == [1]
    with pytest.raises(ValueError, match="2 items loaded, 3 announced"):
        LoadedOnRead(lambda: ["a", "b"], 3)[0]
