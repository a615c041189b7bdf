"""Field visits settle reviews (人工尽调, the lender's own due diligence).

A visits table (CSV or ``.xlsx``) has one row per plot and reason code the
officer settled: ``plot_id, visit_date, officer_id, crop_seen, measured_mu,
reason_code, outcome`` (``outcome``: ``confirmed`` or ``rejected``;
``measured_mu``, also read from a column ``area_confirmed_mu``, may be given
alone, with an empty code and outcome: a measurement on the ground).

:func:`settle_verdict` applies one plot's visit to its verdict, as a pure
function of the recorded facts, the visit and the policy (so ``replay``
reproduces it):

- a measured area replaces the drawn one, and the plot is checked again;
- a confirmed review code is taken off the plot (``VISIT_CONFIRMED``, info,
  records it): the plot adds what ``limit_if_confirmed`` promised;
- a rejected one removes the plot from the limit (``VISIT_REJECTED``).

Officer IDs are pseudonymised like borrowers (kind ``officer``); each visit
carries the sha256 of its canonical JSON, and the audit record lists them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agricredit.errors import InputError, SchemaError
from agricredit.policy import Policy
from agricredit.privacy import PseudonymKey, pseudonym
from agricredit.seeds import crop_aliases, load_reason_codes
from agricredit.verify import Check, PlotVerdict, plot_contribution, verify_plot

__all__ = ["OUTCOMES", "VISIT_COLUMNS", "Visit", "read_visits", "settle_verdict", "settle_verdicts", "check_visited_plots"]

#: What an officer can say of a review code.
OUTCOMES = ("confirmed", "rejected")
#: Columns of a visits table (``measured_mu`` may be named ``area_confirmed_mu``).
VISIT_COLUMNS = ("plot_id", "visit_date", "officer_id", "crop_seen", "measured_mu", "reason_code", "outcome")


@dataclass(frozen=True)
class Visit:
    """What one visit found on one plot (the officer as a pseudonym)."""

    plot_id: str
    visit_date: str
    officer: str
    crop_seen: str
    measured_mu: float | None
    outcomes: tuple[tuple[str, str], ...]  # (reason code, confirmed | rejected), sorted
    rows: tuple[int, ...]  # rows of the visits table (for error messages)

    def to_dict(self) -> dict[str, Any]:
        """The visit as recorded in the audit record, with the sha256 of its canonical JSON."""
        body = {"plot_id": self.plot_id, "visit_date": self.visit_date, "officer": self.officer,
                "crop_seen": self.crop_seen, "measured_mu": self.measured_mu,
                "outcomes": {code: outcome for code, outcome in self.outcomes}}
        text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return {**body, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Visit:
        """The inverse of :meth:`to_dict` (the ``sha256`` is checked by the audit replay, not here)."""
        return cls(str(record["plot_id"]), str(record["visit_date"]), str(record["officer"]),
                   str(record["crop_seen"]), record["measured_mu"],
                   tuple(sorted(record["outcomes"].items())), ())


def _row_error(path: Path, row: int, reason: str) -> SchemaError:
    return SchemaError(reason, path=path, record=f"row {row}")


def read_visits(path: str | Path, key: PseudonymKey, encoding: str | None = None) -> list[Visit]:
    """Read a visits table; one :class:`Visit` per plot (its rows merged), sorted by plot.

    Raises
    ------
    SchemaError
        A missing column; on a row: an empty plot ID or officer, a bad date,
        outcome or area, a code not in the catalogue, two rows of one plot
        that disagree on date, officer, crop or measured area. One line:
        file, row, reason.
    """
    from agricredit.tables import read_raw_table, require_columns

    path = Path(path)
    raw = read_raw_table(path, encoding)
    if "area_confirmed_mu" in raw.columns and "measured_mu" not in raw.columns:
        raw.columns = ["measured_mu" if c == "area_confirmed_mu" else c for c in raw.columns]
        raw.rows = [(row, {("measured_mu" if k == "area_confirmed_mu" else k): v for k, v in rec.items()})
                    for row, rec in raw.rows]
    require_columns(raw, [c for c in VISIT_COLUMNS if c != "measured_mu"])
    catalogue, aliases = load_reason_codes(), crop_aliases()
    merged: dict[str, dict[str, Any]] = {}
    for row, rec in raw.rows:
        plot_id, officer = rec["plot_id"], rec["officer_id"]
        if not plot_id or not officer:
            raise _row_error(path, row, f"{'plot_id' if not plot_id else 'officer_id'} is empty")
        try:
            date = dt.date.fromisoformat(rec["visit_date"][:10]).isoformat()
        except ValueError:
            raise _row_error(path, row, f"visit_date {rec['visit_date']!r} is not a date (YYYY-MM-DD)") from None
        measured = None
        if rec.get("measured_mu"):
            try:
                measured = float(rec["measured_mu"])
            except ValueError:
                measured = math.nan
            if not (math.isfinite(measured) and measured > 0):
                raise _row_error(path, row, f"measured_mu {rec['measured_mu']!r} is not a positive area in mu")
        code, outcome = rec["reason_code"].upper(), rec["outcome"].lower()
        if bool(code) != bool(outcome):
            raise _row_error(path, row, "reason_code and outcome go together")
        if code and code not in catalogue:
            raise _row_error(path, row, f"reason_code {code} is not in the catalogue (seeds/reason_codes.csv)")
        if outcome and outcome not in OUTCOMES:
            raise _row_error(path, row, f"outcome {rec['outcome']!r} is neither confirmed nor rejected")
        if not code and measured is None:
            raise _row_error(path, row, "the row settles nothing: give a reason_code and outcome, or measured_mu")
        crop = aliases.get(rec["crop_seen"].strip().lower(), rec["crop_seen"].strip().lower())
        seen = {"visit_date": date, "officer": pseudonym(key, "officer", officer), "crop_seen": crop}
        visit = merged.setdefault(plot_id, {**seen, "measured_mu": None, "outcomes": {}, "rows": []})
        for name, value in seen.items():
            if visit[name] != value:
                raise _row_error(path, row, f"plot {plot_id}: {name} differs from its earlier row {visit['rows'][0]}")
        if measured is not None:
            if visit["measured_mu"] not in (None, measured):
                raise _row_error(path, row, f"plot {plot_id}: two measured areas")
            visit["measured_mu"] = measured
        if code:
            if code in visit["outcomes"]:
                raise _row_error(path, row, f"plot {plot_id}: {code} is settled twice")
            visit["outcomes"][code] = outcome
        visit["rows"].append(row)
    return [Visit(plot_id, v["visit_date"], v["officer"], v["crop_seen"], v["measured_mu"],
                  tuple(sorted(v["outcomes"].items())), tuple(v["rows"])) for plot_id, v in sorted(merged.items())]


def settle_verdict(verdict: PlotVerdict, visit: Visit, policy: Policy) -> PlotVerdict:
    """The plot's verdict once ``visit`` settles it (see the module docstring).

    Raises
    ------
    InputError
        The visit settles a code the plot does not carry, or one that is not a
        review code, or confirms CROP_MISMATCH with another crop seen.
    """
    facts = verdict.facts
    if visit.measured_mu is not None:
        facts = dataclasses.replace(facts, drawn_mu=float(visit.measured_mu))
        verdict = verify_plot(facts, policy)
    carried = {check.code: check for check in verdict.checks}
    for code, outcome in visit.outcomes:
        if code not in carried:
            raise InputError(f"plot {visit.plot_id} does not carry {code}: nothing to {outcome.removesuffix('ed')}")
        if carried[code].severity != "review":
            raise InputError(f"{code} on plot {visit.plot_id} is not a review code: visits settle reviews only")
        if code == "CROP_MISMATCH" and outcome == "confirmed" and visit.crop_seen != facts.declared_crop:
            raise InputError(f"plot {visit.plot_id}: CROP_MISMATCH confirmed but the crop seen ({visit.crop_seen}) "
                             f"is not the declared one ({facts.declared_crop})")
    settled = {code for code, _ in visit.outcomes}
    figures = {"visit_date": visit.visit_date, "officer": visit.officer}
    checks = [check for check in verdict.checks if check.code not in settled]
    confirmed = sorted(code for code, outcome in visit.outcomes if outcome == "confirmed")
    rejected = sorted(code for code, outcome in visit.outcomes if outcome == "rejected")
    if confirmed:
        checks.append(Check.make("VISIT_CONFIRMED", codes=";".join(confirmed), **figures))
    if rejected:
        checks.append(Check.make("VISIT_REJECTED", codes=";".join(rejected), **figures))
    checks.sort(key=lambda check: check.code)
    contribution = plot_contribution(facts, checks, policy)  # VISIT_REJECTED zeroes the plot (verify.ZERO_CODES)
    severities = {check.severity for check in checks}
    light = "red" if verdict.excluded or "review" in severities else "yellow" if "reduce" in severities else "green"
    return PlotVerdict(facts, tuple(checks), contribution.mu_if_confirmed, verdict.excluded, light, contribution)


def settle_verdicts(verdicts: Iterable[PlotVerdict], visits: Sequence[Visit], policy: Policy, *,
                    path: str | Path | None = None) -> list[PlotVerdict]:
    """Every verdict, those of visited plots settled; a visit for a plot not in the run is an error.

    Raises
    ------
    InputError
        Naming the visits file and row: an unknown plot, or what :func:`settle_verdict` refuses.
    """
    verdicts = list(verdicts)
    by_plot = {visit.plot_id: visit for visit in visits}
    check_visited_plots(visits, {verdict.plot_id for verdict in verdicts}, path=path)
    settled = []
    for verdict in verdicts:
        visit = by_plot.get(verdict.plot_id)
        try:
            settled.append(verdict if visit is None else settle_verdict(verdict, visit, policy))
        except InputError as error:
            raise InputError(error.message, path=path, record=_rows(visit)) from error
    return settled


def check_visited_plots(visits: Sequence[Visit], plot_ids: Collection[str], *, path: str | Path | None = None) -> None:
    """Refuse a visit for a plot not among ``plot_ids`` (the run's verified plots), naming the visits file and row.

    Raises
    ------
    InputError
        The first such visit.
    """
    for visit in visits:
        if visit.plot_id not in plot_ids:
            raise InputError(f"plot {visit.plot_id} is not in this run (or was rejected before any check)",
                             path=path, record=_rows(visit))


def _rows(visit: Visit) -> str | None:
    return f"row {visit.rows[0]}" if visit.rows else None
