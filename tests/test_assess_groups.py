"""The verification and decision stage by groups of borrowers (``run_assessment(mapper=...)``): any grouping, run in
any order, gives the bytes of one group in one process."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import agricredit.assess as assess
from agricredit.assess import load_case, map_here, run_assessment, write_outputs
from agricredit.audit import AuditKey
from agricredit.errors import InputError
from agricredit.privacy import PseudonymKey

ROOT = Path(__file__).resolve().parents[1]
KEY = PseudonymKey(b"pseudonym key of the group tests", "environment")
AUDIT_KEY = AuditKey(b"audit key of the group tests", "environment")
#: Review plots of the sample with its chain tables that a field officer settles.
VISITS = ("plot_id,visit_date,officer_id,crop_seen,measured_mu,reason_code,outcome\n"
          "P0193,2023-08-02,OFF-017,wheat,,CLOUD_INSUFFICIENT,confirmed\n"
          "P0251,2023-08-03,OFF-017,maize,,CROP_MISMATCH,rejected\n"
          "P0083,2023-08-03,OFF-022,maize,90.5,AREA_UNIT_SUSPECTED,confirmed\n")


class Recorder:
    """A mapper that runs the jobs last first (as a cluster may) and returns the results in order; keeps the jobs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple]]] = []

    def __call__(self, function, jobs):
        self.calls.append((function.__name__, list(jobs)))
        results = [function(*job) for job in reversed(jobs)]
        return results[::-1]


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory):
    """The sample with its industry-chain tables and three field visits."""
    visits = tmp_path_factory.mktemp("visits") / "visits.csv"
    visits.write_text(VISITS, encoding="utf-8")
    return dataclasses.replace(load_case(ROOT / "sample_tiles" / "case_chain.toml"), visits=visits)


@pytest.fixture(scope="module")
def one_group(case, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("one") / "out"
    write_outputs(run_assessment(case, KEY, mapper=map_here), folder, AUDIT_KEY)
    return folder


@pytest.mark.parametrize("group_plots", [1, 7, 50])
def test_groups_of_borrowers_run_in_any_order_give_the_bytes_of_one_group(case, one_group: Path, tmp_path: Path,
                                                                           monkeypatch, group_plots: int) -> None:
    monkeypatch.setattr(assess, "_GROUP_PLOTS", group_plots)
    mapper = Recorder()
    assessment = run_assessment(case, KEY, mapper=mapper)
    write_outputs(assessment, tmp_path / "out", AUDIT_KEY)
    names = sorted(path.name for path in one_group.iterdir())
    assert names == sorted(path.name for path in (tmp_path / "out").iterdir())
    for name in names:
        assert (tmp_path / "out" / name).read_bytes() == (one_group / name).read_bytes(), name

    # The verdicts in plot order, the decisions in borrower order, as with one group.
    assert [(v.plot_id, v.borrower_id) for v in assessment.verdicts] == \
        sorted((v.plot_id, v.borrower_id) for v in assessment.verdicts)
    assert [d.borrower_id for d in assessment.decisions] == sorted(d.borrower_id for d in assessment.decisions)

    # With the chain tables: a first verification (plots in runs of `group_plots`), then the groups of borrowers.
    (first, verify_jobs), (second, decide_jobs) = mapper.calls
    assert (first, second) == ("_verify_group", "_decide_group")
    assert [len(facts) for facts, _ in verify_jobs[:-1]] == [group_plots] * (len(verify_jobs) - 1)
    assert sum(len(facts) for facts, _ in verify_jobs) == len(assessment.verdicts)
    owners = [{item.borrower_id for item in job[0]} for job in decide_jobs]
    borrowers = [job[1] for job in decide_jobs]
    # Every borrower in one group only, with all of their plots; the groups follow the borrowers' order; each group
    # but the last holds at least `group_plots` plots.
    assert [b for group in borrowers for b in group] == sorted(d.borrower_id for d in assessment.decisions)
    assert all(own <= set(group) for own, group in zip(owners, borrowers))
    assert all(len(job[0]) >= group_plots for job in decide_jobs[:-1])
    # Each visit goes to the group holding its plot.
    visited = {visit.plot_id: number for number, job in enumerate(decide_jobs) for visit in job[3]}
    assert sorted(visited) == ["P0083", "P0193", "P0251"]
    assert all(visit in {item.plot_id for item in decide_jobs[number][0]} for visit, number in visited.items())
    assert len(decide_jobs) > 1


def test_a_visit_to_a_plot_of_no_group_is_refused_before_any_group_runs(case, tmp_path: Path) -> None:
    visits = tmp_path / "visits.csv"
    visits.write_text(VISITS.splitlines()[0] + "\nP9999,2023-08-02,OFF-1,wheat,,CLOUD_INSUFFICIENT,confirmed\n",
                      encoding="utf-8")
    mapper = Recorder()
    with pytest.raises(InputError, match="row 2: plot P9999 is not in this run"):
        run_assessment(dataclasses.replace(case, visits=visits), KEY, mapper=mapper)
    assert [name for name, _ in mapper.calls] == ["_verify_group"]
