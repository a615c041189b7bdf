"""Audit records, their seal, and replay (design §8).

One record per borrower decision, JSON-serialisable with sorted keys: tool
version, policy (its values and the sha256 of their canonical form, see
:mod:`agricredit.policy`), the sha256 of every input by role, the recorded
facts and verdict of each plot, and the decision (both scenarios, ceilings,
reasons). Ids in a record are those given to
:func:`agricredit.verify.verify_plots`: the caller passes pseudonyms (borrower,
holder), never names, national IDs or phones.

**The seal.** :func:`write_audit` numbers the records (``seq`` 0, 1, ...),
chains them (``prev_mac`` is the previous record's ``mac``; the first names
:data:`GENESIS`) and gives each an HMAC-SHA256 over its canonical line without
``mac`` (``mac``), with the *audit key* (:class:`AuditKey`, from
``AGRICREDIT_AUDIT_KEY``; at least 16 bytes and different from the pseudonym
key). It returns the entry ``manifest.json`` keeps under ``"audit"``: the
record count, the chain head (last MAC), the file's sha256, the key's
fingerprint and an HMAC over these. Without the key nobody can change, add,
remove or reorder a record, nor the manifest entry, unseen: a plain checksum
would not do, anyone can recompute it.

**Replay.** :func:`replay_file` checks the seal record by record (MAC, chain,
numbering, duplicates) and at the end against the manifest (count, head, file
hash), checks each embedded policy against its hash, and recomputes every
decision from the recorded facts with the same functions (:func:`replay`);
given records recomputed from the input files (:func:`records_by_borrower`),
it compares the recorded facts with them too. Every problem names the record
(``line N <borrower pseudonym>``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agricredit import __version__
from agricredit.credit import Decision, decide
from agricredit.errors import AuditMismatchError, InputError, PolicyError, PrivacyError
from agricredit.jsondata import canonical_json, json_ready
from agricredit.outputs import atomic_path
from agricredit.policy import Policy, policy_from_record
from agricredit.privacy import MIN_KEY_BYTES, PseudonymKey, secret_from_env
from agricredit.verify import Check, PlotFacts, PlotVerdict, verify_plot
from agricredit.visits import Visit, settle_verdicts

__all__ = ["SCHEMA", "GENESIS", "AUDIT_KEY_ENV_VAR", "DEMO_AUDIT_KEY", "AuditKey", "audit_record", "audit_records",
           "record_line", "seal_records", "write_audit", "replay", "ReplayReport", "replay_file", "recorded_policy",
           "records_by_borrower"]

#: /3: plot facts carry ``chain`` (industry-chain evidence), scenario crop lines ``yield_source``.
SCHEMA = "agricredit.audit/3"
#: What the first record's ``prev_mac`` names: 64 zeros (no record has this MAC).
GENESIS = "0" * 64
#: The fields the seal adds to a record.
SEAL_FIELDS = ("seq", "prev_mac", "mac")
#: The environment variable holding the audit key.
AUDIT_KEY_ENV_VAR = "AGRICREDIT_AUDIT_KEY"
#: The audit key of the bundled sample run. It is public, so a file sealed with
#: it can be forged by anyone: FOR THE SAMPLE DATA ONLY, NOT FOR PRODUCTION.
DEMO_AUDIT_KEY = "agricredit-sample-demo-audit-key-NOT-FOR-PRODUCTION"


@dataclass(frozen=True)
class AuditKey:
    """The secret key that seals audit records (HMAC-SHA256).

    Build it with :meth:`from_env` or :meth:`demo`; the secret never appears in
    ``repr``.

    Attributes
    ----------
    source
        ``"environment"`` or ``"demo"`` (the public sample key).
    """

    secret: bytes = field(repr=False)
    source: str

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise PrivacyError(f"the audit key is too short: at least {MIN_KEY_BYTES} bytes are needed")

    @classmethod
    def from_env(cls, *, pseudonym_key: PseudonymKey | None = None, sample: bool = False,
                 environ: Mapping[str, str] | None = None) -> AuditKey:
        """Return the key from ``AGRICREDIT_AUDIT_KEY``.

        Parameters
        ----------
        pseudonym_key
            The run's pseudonym key: the audit key must differ from it.
        sample
            The run is on the bundled sample (``--sample``): without the
            variable, the public :data:`DEMO_AUDIT_KEY` is used, and the
            variable may hold it.
        environ
            The environment to read (default ``os.environ``).

        Raises
        ------
        PrivacyError
            Not set (outside the sample), shorter than 16 bytes, the public demo
            key outside the sample, or equal to the pseudonym key.
        """
        found = secret_from_env(AUDIT_KEY_ENV_VAR, DEMO_AUDIT_KEY, sample=sample, environ=environ)
        if found is None:
            if not sample:
                raise PrivacyError(f"no audit key: set {AUDIT_KEY_ENV_VAR} (at least {MIN_KEY_BYTES} bytes of secret "
                                   "text, not the pseudonym key)")
            return cls.demo()
        key = cls(*found)
        if pseudonym_key is not None and hmac.compare_digest(key.secret, pseudonym_key.secret):
            raise PrivacyError(f"{AUDIT_KEY_ENV_VAR} must differ from the pseudonym key: one secret must not both "
                               "pseudonymise borrowers and seal the records that vouch for the decisions")
        return key

    @classmethod
    def demo(cls) -> AuditKey:
        """Return the public audit key of the sample run (anyone can forge what it seals)."""
        return cls(DEMO_AUDIT_KEY.encode("utf-8"), "demo")

    @property
    def fingerprint(self) -> str:
        """A short public tag of the key (12 hex characters), kept in the manifest."""
        return hmac.new(self.secret, b"agricredit audit key fingerprint", hashlib.sha256).hexdigest()[:12]

    def mac(self, text: str) -> str:
        """Return the hex HMAC-SHA256 of ``text`` (UTF-8) under this key."""
        return hmac.new(self.secret, text.encode("utf-8"), hashlib.sha256).hexdigest()


def record_line(record: Mapping[str, Any]) -> str:
    """Return a record as one line of canonical JSON (sorted keys, UTF-8 text, no spaces, no NaN): what the MAC covers
    (:func:`agricredit.jsondata.canonical_json`)."""
    return canonical_json(record)


def audit_record(decision: Decision, verdicts: Iterable[PlotVerdict], policy: Policy,
                 inputs: Mapping[str, str], tool_version: str = __version__,
                 visits: Iterable[Visit] = ()) -> dict[str, Any]:
    """Build the (unsealed) audit record of one borrower decision.

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
        JSON-ready (no NaN; :func:`record_line` writes its keys sorted); :func:`seal_records` adds the seal.
    """
    return _borrower_record(_run_header(policy, inputs, tool_version), decision, verdicts, tuple(visits))


def audit_records(decisions: Iterable[Decision], verdicts_of: Mapping[str, Sequence[PlotVerdict]], policy: Policy,
                  inputs: Mapping[str, str], *, visits_of: Mapping[str, Visit] | None = None,
                  tool_version: str = __version__) -> list[dict[str, Any]]:
    """Build the audit records of a run's decisions, as :func:`audit_record` of each, in the given order.

    The run's part of a record (schema, version, policy, input hashes) is built
    once: every record holds the same ``policy`` and ``inputs`` mappings, to
    read, never to change in place (:func:`write_audit` encodes each once).

    Parameters
    ----------
    decisions
        From :func:`agricredit.credit.decide_all`.
    verdicts_of
        Borrower ID → the verdicts of the borrower's plots.
    policy, inputs, tool_version
        As :func:`audit_record`.
    visits_of
        Plot ID → the field visit that settled it (:mod:`agricredit.visits`).

    Returns
    -------
    list of dict
    """
    header, visits_of = _run_header(policy, inputs, tool_version), visits_of or {}
    return [_borrower_record(header, decision, verdicts_of[decision.borrower_id],
                             tuple(visits_of[p] for p in decision.plot_ids if p in visits_of) if visits_of else ())
            for decision in decisions]


def _run_header(policy: Policy, inputs: Mapping[str, str], tool_version: str) -> dict[str, Any]:
    """The part of an audit record common to a run's decisions, JSON-ready."""
    return json_ready({"schema": SCHEMA, "tool_version": tool_version, "policy": policy.to_dict(),
                      "inputs": dict(inputs)})


_PLOT_ID_OF = operator.attrgetter("facts.plot_id")  # a verdict's plot ID (a sort key called in C)


def _borrower_record(header: Mapping[str, Any], decision: Decision, verdicts: Iterable[PlotVerdict],
                     visits: Sequence[Visit]) -> dict[str, Any]:
    """The unsealed record of one decision: ``header`` (:func:`_run_header`) and the borrower's part."""
    verdicts = sorted(verdicts, key=_PLOT_ID_OF)
    if tuple([v.facts.plot_id for v in verdicts]) != decision.plot_ids:
        raise InputError("the verdicts are not the plots the decision was made from", record=decision.borrower_id)
    own = {  # the to_dict forms are JSON-ready
        "borrower_id": decision.borrower_id,
        "decision": decision.to_dict(),
        "plots": [verdict.to_dict() for verdict in verdicts],
        **({"visits": json_ready([visit.to_dict() for visit in visits])} if visits else {}),
    }
    return dict(sorted({**header, **own}.items()))


def _unsealed(record: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in record.items() if name not in SEAL_FIELDS}


def _record_mac(record: Mapping[str, Any], key: AuditKey) -> str:
    return key.mac(record_line({name: value for name, value in record.items() if name != "mac"}))


def seal_records(records: Iterable[Mapping[str, Any]], key: AuditKey) -> Iterable[dict[str, Any]]:
    """Yield the records numbered, chained and MAC'd, in the given order.

    Each record gets ``seq`` (0, 1, ...), ``prev_mac`` (the previous record's
    ``mac``; :data:`GENESIS` for the first) and ``mac``: the hex
    HMAC-SHA256, under ``key``, of :func:`record_line` of the record with
    ``seq`` and ``prev_mac`` but without ``mac``.
    """
    for record, seq, prev_mac, mac, _ in _sealed_lines(records, key):
        yield {**_unsealed(record), "seq": seq, "prev_mac": prev_mac, "mac": mac}


#: Top-level members of a record that successive records usually share (the same object): encoded once for all.
_RUN_MEMBERS = ("policy", "inputs")


def _sealed_lines(records: Iterable[Mapping[str, Any]],
                  key: AuditKey) -> Iterator[tuple[Mapping[str, Any], int, str, str, str]]:
    """Yield ``(record, seq, prev_mac, mac, line)`` per record: the seal of :func:`seal_records` and the sealed
    record's :func:`record_line`.

    The line is built member by member (canonical JSON of a mapping is its sorted members' canonical JSON
    joined), so that each record is encoded once and a member shared with the previous record
    (:data:`_RUN_MEMBERS`) is not encoded again.
    """
    previous, shared = GENESIS, {}  # member name -> (the last value seen, its text)
    for seq, record in enumerate(records):
        members = {}
        for name, value in record.items():
            if name in SEAL_FIELDS:
                continue
            if name in _RUN_MEMBERS:
                last = shared.get(name)
                if last is None or last[0] is not value:
                    shared[name] = last = (value, record_line(value))
                members[name] = last[1]
            else:
                members[name] = record_line(value)
        members["seq"], members["prev_mac"] = record_line(seq), record_line(previous)
        mac = key.mac(_joined(members))
        members["mac"] = record_line(mac)
        yield record, seq, previous, mac, _joined(members)
        previous = mac


def _joined(members: Mapping[str, str]) -> str:
    """:func:`record_line` of a mapping whose members' values are given as their :func:`record_line` texts."""
    return "{" + ",".join(f"{_member_name(name)}:{members[name]}" for name in sorted(members)) + "}"


@functools.lru_cache(maxsize=64)
def _member_name(name: str) -> str:
    """:func:`record_line` of a member's name (a record has a dozen, the same in every record)."""
    return record_line(name)


def _entry_mac(entry: Mapping[str, Any], key: AuditKey) -> str:
    return key.mac("agricredit.audit manifest\n" + record_line({k: v for k, v in entry.items() if k != "mac"}))


def write_audit(records: Iterable[Mapping[str, Any]], path: str | Path, key: AuditKey) -> dict[str, Any]:
    """Seal the records (:func:`seal_records`) and write them as JSON Lines, atomically.

    Parameters
    ----------
    records
        Unsealed records of :func:`audit_record`, in the order to keep.
    path
        The ``audit.jsonl`` to write.
    key
        The audit key.

    Returns
    -------
    dict
        The manifest entry: ``records`` (count), ``chain_head`` (last MAC, or
        :data:`GENESIS` if none), ``sha256`` (of the file), ``key_fingerprint``
        and ``mac`` (HMAC over the other four), to store as ``manifest["audit"]``.
    """
    digest, count, head = hashlib.sha256(), 0, GENESIS
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        for _, _, _, mac, text in _sealed_lines(records, key):
            line = (text + "\n").encode("utf-8")
            handle.write(line)
            digest.update(line)
            count, head = count + 1, mac
    entry: dict[str, Any] = {"records": count, "chain_head": head, "sha256": digest.hexdigest(),
                             "key_fingerprint": key.fingerprint}
    entry["mac"] = _entry_mac(entry, key)
    return entry


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
    but the seal is compared (:func:`replay_file` checks the seal).

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
    if record.get("policy", {}).get("sha256") != policy.sha256:
        differences.append(f"policy.sha256: recorded {record.get('policy', {}).get('sha256')!r}, replayed with {policy.sha256!r}")
    visits = [Visit.from_dict(visit) for visit in record.get("visits", [])]
    verdicts = settle_verdicts([verify_plot(item, policy) for item in facts], visits, policy)
    fresh = audit_record(decide(borrower, verdicts, policy, borrower_checks), verdicts, policy, inputs, version, visits)
    found: list[str] = []
    _diff(json.loads(record_line(_unsealed(record))), fresh, "", found)
    differences.extend(line for line in found if not line.startswith("policy.sha256:"))
    return differences


@dataclass
class ReplayReport:
    """What :func:`replay_file` found.

    Attributes
    ----------
    total
        Number of records in the file.
    problems
        ``{"line N <borrower>": [problem, ...]}`` for every record that is not
        sealed, chained and reproduced exactly; ``"manifest.json"`` and
        ``"inputs"`` for problems of the file as a whole.
    """

    total: int = 0
    problems: dict[str, list[str]] = field(default_factory=dict)

    def add(self, where: str, found: Sequence[str]) -> None:
        """Record ``found`` (if any) under ``where``."""
        if found:
            self.problems.setdefault(where, []).extend(found)

    @property
    def first(self) -> str:
        """The first problem, on one line (``where: problem``), for the error message."""
        where, found = next(iter(self.problems.items()))
        return f"{where}: {found[0]}"


class _Chain:
    """Checks the seal of each record as it is read, then the end of the file against the manifest entry."""

    def __init__(self, key: AuditKey, key_problem: str | None):
        self.key, self.key_problem = key, key_problem
        self.previous: tuple[str, str] = ("the genesis value", GENESIS)  # (where, mac)
        self.lines_of: dict[str, str] = {}  # mac -> where, to name the record a broken link points to
        self.count = 0
        self.next_seq = 0  # one more than the previous record's seq: a gap is named once, not for every later record

    def check(self, where: str, record: Mapping[str, Any]) -> list[str]:
        mac, prev_mac = record.get("mac"), record.get("prev_mac")
        if not isinstance(mac, str) or not isinstance(prev_mac, str):
            return ["not sealed (no mac or prev_mac): not an agricredit audit record of this version"]
        found = []
        if self.key_problem is not None:
            found.append(self.key_problem)
        elif mac in self.lines_of:
            found.append(f"duplicate of {self.lines_of[mac]}")
        elif not hmac.compare_digest(mac, _record_mac(record, self.key)):
            found.append("MAC does not match: the record was changed after it was sealed (or forged without the key)")
        if prev_mac != self.previous[1]:
            named = self.lines_of.get(prev_mac)
            if self.count == 0:
                found.append("chain broken: the first record does not start from the genesis value "
                             "(records were removed from the start, or reordered)")
            elif prev_mac == GENESIS:
                found.append("chain broken: this record starts the chain, it was the first one (records reordered)")
            elif named is not None:
                found.append(f"chain broken: names {named} as the record before it, not {self.previous[0]} "
                             "(records deleted, duplicated or reordered)")
            else:
                found.append(f"chain broken: the record before it in the chain is missing after {self.previous[0]} "
                             "(deleted, or moved after it)")
        seq = record.get("seq")
        if seq != self.next_seq:
            found.append(f"seq {seq!r} where {self.next_seq} was expected")
        self.next_seq = seq + 1 if isinstance(seq, int) else self.next_seq + 1
        self.lines_of.setdefault(mac, where)
        self.previous = (where, mac)
        self.count += 1
        return found

    def finish(self, entry: Mapping[str, Any], file_sha256: str) -> list[str]:
        found = []
        if entry.get("records") != self.count:
            found.append(f"the manifest counts {entry.get('records')} records, the file has {self.count} "
                         "(records removed or added)")
        if entry.get("chain_head") != self.previous[1]:
            found.append(f"the manifest's chain head is not the MAC of the last record ({self.previous[0]}): "
                         "records were removed from or added at the end")
        if entry.get("sha256") != file_sha256:
            found.append("the file's sha256 is not the manifest's")
        return found


def _manifest_entry(path: Path) -> dict[str, Any]:
    """The manifest's ``audit`` entry (its seal is checked by :func:`_key_problem`)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(f"cannot read the manifest ({error.strerror}): without it, records removed from the end "
                         "cannot be detected; give it with --manifest", path=path) from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"not a JSON manifest ({error})", path=path) from error
    entry = manifest.get("audit") if isinstance(manifest, dict) else None
    if not isinstance(entry, dict):
        raise AuditMismatchError("no sealed audit entry in the manifest (written by an older version, or removed)",
                                 path=path)
    return entry


def _key_problem(entry: Mapping[str, Any], key: AuditKey, sample: bool) -> str | None:
    """Why no record of the file can be trusted with ``key``: demo key outside the sample, another key, a forged entry."""
    fingerprint = entry.get("key_fingerprint")
    if fingerprint == AuditKey.demo().fingerprint and not sample:
        return ("sealed with the public demo audit key, which anyone can use to forge records: "
                "accepted only with --sample")
    if fingerprint != key.fingerprint:
        return f"sealed with another audit key (fingerprint {fingerprint}; {AUDIT_KEY_ENV_VAR} has {key.fingerprint})"
    if not isinstance(entry.get("mac"), str) or not hmac.compare_digest(entry["mac"], _entry_mac(entry, key)):
        return ("the manifest's audit entry does not match its MAC (count, chain head or file hash changed "
                "after sealing): no record can be trusted")
    return None


def replay_file(path: str | Path, key: AuditKey, *, policy: Policy | None = None, manifest: str | Path | None = None,
                sample: bool = False, recomputed: Mapping[str, Mapping[str, Any]] | None = None) -> ReplayReport:
    """Check the seal of an ``audit.jsonl`` file and replay every record, reading it line by line.

    Parameters
    ----------
    path
        The audit file.
    key
        The audit key that sealed it (:meth:`AuditKey.from_env`).
    policy
        The policy to replay with; its sha256 must be the recorded one.
        ``None``: each record's embedded policy, which must match its recorded
        hash (a record whose policy does not is refused, not replayed).
    manifest
        The ``manifest.json`` holding the file's sealed entry (default: the one
        beside the audit file).
    sample
        Accept a file sealed with the public demo audit key (the sample run).
    recomputed
        Records recomputed from the input files, by borrower
        (:func:`records_by_borrower`): their facts and input hashes
        are compared with the recorded ones.

    Returns
    -------
    ReplayReport

    Raises
    ------
    InputError
        The file cannot be read, a line is not JSON, or there is no record.
    AuditMismatchError
        The manifest has no audit entry.

    Notes
    -----
    A file sealed with another key, with the demo key outside the sample, or
    whose manifest entry does not match its MAC fails every record with that
    reason.
    """
    path = Path(path)
    manifest_path = Path(manifest) if manifest is not None else path.with_name("manifest.json")
    entry = _manifest_entry(manifest_path)
    report, digest, seen = ReplayReport(), hashlib.sha256(), set()
    chain = _Chain(key, _key_problem(entry, key, sample))
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise InputError(f"cannot read audit file: {error.strerror}", path=path) from error
    with handle:
        for number, raw in enumerate(handle, start=1):
            digest.update(raw)
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise InputError(f"not a JSON line ({error})", path=path, record=f"line {number}") from error
            if not isinstance(record, dict):
                raise InputError("not an audit record", path=path, record=f"line {number}")
            report.total += 1
            where = f"line {number} {record.get('borrower_id')}"
            report.add(where, chain.check(where, record))
            try:
                used = policy if policy is not None else policy_from_record(record.get("policy"), source="policy")
            except PolicyError as error:
                report.add(where, [f"refused: {error.message}"])
                continue
            report.add(where, replay(record, used))
            if recomputed is not None:
                seen.add(record.get("borrower_id"))
                report.add(where, _compare_facts(record, recomputed.get(record.get("borrower_id"))))
    if report.total == 0:
        raise InputError("no audit records in the file", path=path)
    report.add(manifest_path.name, chain.finish(entry, digest.hexdigest()))
    if recomputed is not None:
        report.add("inputs", [f"borrower {b} is in the inputs but has no record" for b in sorted(set(recomputed) - seen)])
    return report


def _compare_facts(record: Mapping[str, Any], fresh: Mapping[str, Any] | None) -> list[str]:
    """Differences between a record's input hashes and plot facts and those recomputed from the inputs."""
    if fresh is None:
        return ["the borrower is not in the inputs"]
    found: list[str] = []
    _diff(record.get("inputs"), fresh.get("inputs"), "inputs", found)
    recorded = {plot.get("plot_id"): plot.get("facts") for plot in record.get("plots", [])}
    again = {plot["plot_id"]: plot["facts"] for plot in fresh.get("plots", [])}
    for plot_id in sorted(set(recorded) | set(again), key=str):
        _diff(recorded.get(plot_id), again.get(plot_id), f"plots[{plot_id}].facts", found)
    return [line.replace("replayed", "from the inputs") for line in found]


def recorded_policy(path: str | Path) -> Policy:
    """Return the policy embedded in the first record of an audit file, checked against its hash.

    Raises
    ------
    InputError
        The file cannot be read, or its first line is not a record.
    PolicyError
        The embedded policy does not validate or does not match its recorded sha256.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            number, raw = next(((n, line) for n, line in enumerate(handle, start=1) if line.strip()), (0, b""))
            record = json.loads(raw) if number else None
    except OSError as error:
        raise InputError(f"cannot read audit file: {error.strerror}", path=path) from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"not a JSON line ({error})", path=path, record="line 1") from error
    if not isinstance(record, dict):
        raise InputError("no audit record in the file", path=path)
    return policy_from_record(record.get("policy"), source=f"{path}: line {number}")


def records_by_borrower(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Index records recomputed from the input files by borrower (:func:`replay_file`'s ``recomputed``).

    Parameters
    ----------
    records
        Unsealed records of a fresh run on the recorded case with the
        recorded policy and the same pseudonym key
        (``agricredit.assess.run_assessment(...).audit``).

    Returns
    -------
    dict
        ``{borrower pseudonym: record}`` as JSON data (what a record on disk reads back as).
    """
    return {record["borrower_id"]: json.loads(record_line(record)) for record in records}
