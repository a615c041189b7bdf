"""Audit records and replay (design §8).

One record per borrower decision, JSON-serialisable with sorted keys: tool
version, policy (sha256 and values), the sha256 of every input by role, the
recorded facts and verdict of each plot, the decision (both scenarios, ceilings,
reasons) and ``record_sha256`` — the sha256 of the record's canonical JSON
without that field. The checksum catches edits made without recomputing it;
it is not a signature (anyone can recompute it), so keep audit files where
they cannot be rewritten, or sign them.

Ids in a record are those given to :func:`agricredit.verify.verify_plots`: the
caller passes pseudonyms (borrower, holder), never names, national IDs or phones.

:func:`replay` recomputes the checks and the limit from the recorded plot facts
with the same functions and lists every difference.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agricredit import __version__
from agricredit.credit import Decision, decide
from agricredit.errors import InputError
from agricredit.policy import Policy, policy_from_record
from agricredit.verify import Check, PlotFacts, PlotVerdict, verify_plot
from agricredit.visits import Visit, settle_verdicts

__all__ = ["SCHEMA", "audit_record", "record_line", "replay", "replay_file"]

SCHEMA = "agricredit.audit/1"


def _jsonable(value: Any) -> Any:
    """Plain JSON data: NaN/inf as None, tuples as lists, numpy scalars as Python numbers, sorted keys."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _jsonable(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if hasattr(value, "item"):  # numpy scalar
        return _jsonable(value.item())
    return value


def record_line(record: Mapping[str, Any]) -> str:
    """Return a record of :func:`audit_record` as one line of canonical JSON (sorted keys, UTF-8 text, no NaN)."""
    return json.dumps(record, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _checksum(record: Mapping[str, Any]) -> str:
    body = {key: value for key, value in record.items() if key != "record_sha256"}
    return hashlib.sha256(record_line(body).encode("utf-8")).hexdigest()


def audit_record(decision: Decision, verdicts: Iterable[PlotVerdict], policy: Policy,
                 inputs: Mapping[str, str], tool_version: str = __version__,
                 visits: Iterable[Visit] = ()) -> dict[str, Any]:
    """Build the audit record of one borrower decision.

    Parameters
    ----------
    decision
        From :func:`agricredit.credit.decide`.
    verdicts
        The verdicts of the borrower's plots (those the decision was made from).
    policy
        The policy used.
    inputs
        ``{role: sha256}`` of every input file (plots, registry, declarations, tiles ...).
    tool_version
        The agricredit version that made the decision.
    visits
        The field visits that settled the borrower's plots (:mod:`agricredit.visits`), each with its sha256.

    Returns
    -------
    dict
        JSON-ready (sorted keys, no NaN), including ``record_sha256``.
    """
    verdicts = sorted(verdicts, key=lambda v: v.plot_id)
    if tuple(v.plot_id for v in verdicts) != decision.plot_ids:
        raise InputError("the verdicts are not the plots the decision was made from", record=decision.borrower_id)
    record = _jsonable({
        "schema": SCHEMA,
        "tool_version": tool_version,
        "policy": policy.to_dict(),
        "inputs": dict(inputs),
        "borrower_id": decision.borrower_id,
        "decision": decision.to_dict(),
        "plots": [verdict.to_dict() for verdict in verdicts],
        **({"visits": [visit.to_dict() for visit in visits]} if visits else {}),
    })
    record["record_sha256"] = _checksum(record)
    return record


def _diff(recorded: Any, replayed: Any, where: str, out: list[str]) -> None:
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        for key in sorted(set(recorded) | set(replayed)):
            path = f"{where}.{key}" if where else key
            if key not in recorded:
                out.append(f"{path}: missing from the record (replayed {replayed[key]!r})")
            elif key not in replayed:
                out.append(f"{path}: recorded {recorded[key]!r}, not produced by the replay")
            else:
                _diff(recorded[key], replayed[key], path, out)
    elif isinstance(recorded, list) and isinstance(replayed, list) and len(recorded) == len(replayed):
        for index, (a, b) in enumerate(zip(recorded, replayed)):
            _diff(a, b, f"{where}[{index}]", out)
    elif recorded != replayed or type(recorded) is bool and type(replayed) is not bool:
        out.append(f"{where}: recorded {recorded!r}, replayed {replayed!r}")


def replay(record: Mapping[str, Any], policy: Policy) -> list[str]:
    """Recompute a decision from its audit record and list the differences.

    The plot checks, verdicts and the decision are recomputed from the recorded
    plot facts with :func:`agricredit.verify.verify_plot` and
    :func:`agricredit.credit.decide`, a fresh record is built, and every field
    is compared. The record's checksum and the policy hash are checked too.

    Parameters
    ----------
    record
        One audit record (a parsed line of ``audit.jsonl``).
    policy
        The policy to replay with (normally the one whose sha256 is recorded).

    Returns
    -------
    list of str
        One line per difference (``path: recorded X, replayed Y``); empty when
        the decision is reproduced exactly.
    """
    try:
        facts = [PlotFacts.from_dict(plot["facts"]) for plot in record["plots"]]
        borrower, inputs, version = record["borrower_id"], record["inputs"], record["tool_version"]
        borrower_checks = [Check.make(c["code"], **c["figures"]) for c in record["decision"].get("borrower_checks", [])]
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"not an agricredit audit record ({error!r})", record=record.get("borrower_id")) from error
    differences = []
    if record.get("schema") != SCHEMA:
        differences.append(f"schema: recorded {record.get('schema')!r}, expected {SCHEMA!r}")
    if record.get("record_sha256") != _checksum(record):
        differences.append("record_sha256: the record was changed after it was written")
    if record.get("policy", {}).get("sha256") != policy.sha256:
        differences.append(f"policy.sha256: recorded {record.get('policy', {}).get('sha256')!r}, replayed with {policy.sha256!r}")
    visits = [Visit.from_dict(visit) for visit in record.get("visits", [])]
    verdicts = settle_verdicts([verify_plot(item, policy) for item in facts], visits, policy)
    fresh = audit_record(decide(borrower, verdicts, policy, borrower_checks), verdicts, policy, inputs, version, visits)
    recorded = {key: value for key, value in record.items() if key != "record_sha256"}
    fresh.pop("record_sha256")
    found: list[str] = []
    _diff(json.loads(record_line(recorded)), fresh, "", found)
    differences.extend(line for line in found if not line.startswith("policy.sha256:"))
    return differences


def replay_file(path: str | Path, policy: Policy | None = None) -> tuple[int, dict[str, list[str]]]:
    """Replay every record of an ``audit.jsonl`` file.

    Parameters
    ----------
    path
        The audit file.
    policy
        The policy file's policy to replay with; its sha256 must be the
        recorded one. ``None``: each record's own recorded policy (validated
        like a policy file).

    Returns
    -------
    tuple
        The number of records, and ``{"line N <borrower>": differences}`` for
        every record that was not reproduced exactly.
    """
    path = Path(path)
    total, differing = 0, {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InputError(f"cannot read audit file: {error.strerror}", path=path) from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"not JSON ({error.msg})", path=path, record=f"line {number}") from error
        if not isinstance(record, dict):
            raise InputError("not an audit record", path=path, record=f"line {number}")
        total += 1
        used = policy if policy is not None else policy_from_record(record.get("policy"), source=f"{path}:{number}")
        differences = replay(record, used)
        if differences:
            differing[f"line {number} {record.get('borrower_id')}"] = differences
    if total == 0:
        raise InputError("no audit records in the file", path=path)
    return total, differing
