"""Audit records: JSON-ready, deterministic, replayable; sealed (HMAC, chain, manifest) so that tampering is named."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import math

import pytest

from _plotfacts import POLICY, honest
from agricredit import __version__
from agricredit.audit import (
    AUDIT_KEY_ENV_VAR,
    DEMO_AUDIT_KEY,
    GENESIS,
    AuditKey,
    audit_record,
    record_line,
    records_by_borrower,
    replay,
    replay_file,
    write_audit,
)
from agricredit.credit import decide_all
from agricredit.errors import AuditMismatchError, InputError, PrivacyError
from agricredit.policy import load_policy
from agricredit.privacy import DEMO_PII_KEY, KEY_ENV_VAR, PseudonymKey
from agricredit.seeds import DEFAULT_POLICY_PATH
from agricredit.verify import verify_plots

INPUTS = {"plots": "a" * 64, "registry": "b" * 64, "declarations": "c" * 64}
SECRET = b"the audit key of the county branch"
KEY = AuditKey(SECRET, "environment")
OTHER_KEY = AuditKey(b"somebody else's audit key, 2026", "environment")


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
    honest("P6", "B4", mu=5.0),
    honest("P7", "B5", mu=7.5),
]


def parsed(records):
    return [json.loads(record_line(r)) for r in records]


def canonical(document) -> bytes:
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sealed(tmp_path, key=KEY, records=None):
    """An audit file and its manifest as `assess` writes them; returns (audit path, list of line strings)."""
    audit = tmp_path / "audit.jsonl"
    entry = write_audit(run(FACTS) if records is None else records, audit, key)
    (tmp_path / "manifest.json").write_text(json.dumps({"audit": entry}), encoding="utf-8")
    return audit, audit.read_text(encoding="utf-8").splitlines()


def rewrite(audit, lines):
    audit.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def problems(audit, key=KEY, **options):
    return replay_file(audit, key, **options).problems


# --------------------------------------------------------------------------- records and the decision replay


def test_record_is_canonical_json_with_every_figure():
    records = run(FACTS)
    assert [r["borrower_id"] for r in records] == ["B1", "B2", "B3", "B4", "B5"]
    first = records[0]
    line = record_line(first)
    assert json.loads(line) == first and "NaN" not in line and "\n" not in line
    assert line == canonical(first).decode("utf-8")
    assert first["tool_version"] == __version__ and first["inputs"] == INPUTS
    assert first["policy"]["sha256"] == POLICY.sha256 and first["policy"]["credit"]["advance_rate"] == 0.6
    assert set(first) == {"schema", "tool_version", "policy", "inputs", "borrower_id", "decision", "plots"}
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
    tampered = copy.deepcopy(parsed(run(FACTS))[0])
    edit(tampered)
    differences = replay(tampered, POLICY)
    assert any(line.startswith(expected) for line in differences), differences


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


# --------------------------------------------------------------------------- the seal


def test_seal_is_hmac_sha256_chained_from_genesis(tmp_path):
    audit, lines = sealed(tmp_path)
    records = [json.loads(line) for line in lines]
    previous = "0" * 64
    assert GENESIS == previous
    for seq, record in enumerate(records):
        assert record["seq"] == seq and record["prev_mac"] == previous
        body = {k: v for k, v in record.items() if k != "mac"}
        assert record["mac"] == hmac.new(SECRET, canonical(body), hashlib.sha256).hexdigest()
        previous = record["mac"]
    entry = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))["audit"]
    assert entry["records"] == len(records) == 5 and entry["chain_head"] == previous
    assert entry["sha256"] == hashlib.sha256(audit.read_bytes()).hexdigest()
    assert entry["key_fingerprint"] == hmac.new(SECRET, b"agricredit audit key fingerprint", hashlib.sha256).hexdigest()[:12]
    unsigned = {k: v for k, v in entry.items() if k != "mac"}
    assert entry["mac"] == hmac.new(SECRET, b"agricredit.audit manifest\n" + canonical(unsigned), hashlib.sha256).hexdigest()
    report = replay_file(audit, KEY)
    assert report.total == 5 and report.problems == {}


def test_deleted_record_in_the_middle_is_named(tmp_path):
    audit, lines = sealed(tmp_path)
    rewrite(audit, lines[:2] + lines[3:])  # B3 deleted
    found = problems(audit)
    assert found["line 3 B4"][0] == ("chain broken: the record before it in the chain is missing after line 2 B2 "
                                     "(deleted, or moved after it)")
    assert "seq 3 where 2 was expected" in found["line 3 B4"]
    assert "the manifest counts 5 records, the file has 4 (records removed or added)" in found["manifest.json"]


def test_deleted_first_and_last_records_are_named(tmp_path):
    audit, lines = sealed(tmp_path)
    rewrite(audit, lines[1:])
    assert problems(audit)["line 1 B2"][0].startswith("chain broken: the first record does not start from the genesis")
    rewrite(audit, lines[:-1])  # the end of the chain stays intact: only the sealed manifest entry tells
    found = problems(audit)
    assert list(found) == ["manifest.json"]
    assert found["manifest.json"][1].startswith("the manifest's chain head is not the MAC of the last record (line 4 B4)")


def test_duplicated_record_is_named(tmp_path):
    audit, lines = sealed(tmp_path)
    rewrite(audit, lines[:3] + [lines[2]] + lines[3:])
    found = problems(audit)
    assert found["line 4 B3"][:2] == ["duplicate of line 3 B3",
                                      "chain broken: names line 2 B2 as the record before it, not line 3 B3 "
                                      "(records deleted, duplicated or reordered)"]
    assert found["line 4 B3"][2] == "seq 2 where 3 was expected"
    assert set(found) == {"line 4 B3", "manifest.json"}


def test_reordered_records_are_named(tmp_path):
    audit, lines = sealed(tmp_path)
    rewrite(audit, [lines[0], lines[2], lines[1], *lines[3:]])
    found = problems(audit)
    assert found["line 2 B3"][0] == "chain broken: the record before it in the chain is missing after line 1 B1 (deleted, or moved after it)"
    assert found["line 3 B2"][0] == "chain broken: names line 1 B1 as the record before it, not line 2 B3 (records deleted, duplicated or reordered)"
    assert found["line 4 B4"] == ["chain broken: names line 2 B3 as the record before it, not line 3 B2 (records deleted, duplicated or reordered)",
                                  "seq 3 where 2 was expected"]
    assert "line 1 B1" not in found


@pytest.mark.parametrize("checksum", [
    lambda body: hashlib.sha256(canonical(body)).hexdigest(),  # the old plain checksum, recomputed
    lambda body: hmac.new(DEMO_AUDIT_KEY.encode(), canonical(body), hashlib.sha256).hexdigest(),  # the public key
])
def test_forged_record_with_recomputed_checksum_is_named(tmp_path, checksum):
    """A forger makes B2's record consistent (facts, checks and limit recomputed) and recomputes what they can."""
    audit, lines = sealed(tmp_path)
    bigger = [f if f.borrower_id != "B2" else honest(f.plot_id, "B2", mu=f.drawn_mu * 3) for f in FACTS]
    forged = {**json.loads(record_line(run(bigger)[1])), **{k: json.loads(lines[1])[k] for k in ("seq", "prev_mac")}}
    assert forged["decision"]["limit"] > json.loads(lines[1])["decision"]["limit"]
    assert replay(forged, POLICY) == []  # the recomputation alone cannot see it
    forged["mac"] = checksum({k: v for k, v in forged.items() if k != "mac"})
    lines[1] = record_line(forged)
    rewrite(audit, lines)
    found = problems(audit)
    assert found["line 2 B2"] == ["MAC does not match: the record was changed after it was sealed (or forged without the key)"]
    assert "line 3 B3" in found  # it names the original B2 MAC as the one before it


def test_policy_swap_with_the_hash_kept_is_refused_even_with_a_valid_seal(tmp_path):
    """The issue's case: advance rate 0.6 -> 1.0 in the embedded policy, hash left as it was, the limit recomputed."""
    generous = load_policy(_policy_file(tmp_path, "advance_rate = 1.0"))
    forged = []
    for record in run(FACTS, policy=generous):
        record["policy"]["sha256"] = POLICY.sha256  # the hash of the real policy, kept
        forged.append(record)
    audit, _ = sealed(tmp_path, records=forged)  # even an insider holding the audit key cannot pass it
    found = problems(audit)
    assert set(found) == {f"line {n} B{n}" for n in range(1, 6)}
    assert found["line 1 B1"] == [f"refused: the embedded policy does not match its recorded sha256 {POLICY.sha256[:12]}… "
                                  f"(its values hash to {generous.sha256[:12]}…): the policy was changed after the record "
                                  "was written"]


def _policy_file(tmp_path, advance):
    path = tmp_path / "policy.toml"
    path.write_text(DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace("advance_rate = 0.6", advance), encoding="utf-8")
    return path


def test_wrong_audit_key_fails_every_record(tmp_path):
    audit, _ = sealed(tmp_path)
    found = problems(audit, key=OTHER_KEY)
    message = f"sealed with another audit key (fingerprint {KEY.fingerprint}; AGRICREDIT_AUDIT_KEY has {OTHER_KEY.fingerprint})"
    assert found["line 1 B1"] == [message] and len([w for w in found if w.startswith("line ")]) == 5


def test_resealed_file_with_a_copied_fingerprint_is_refused(tmp_path):
    audit, _ = sealed(tmp_path, key=OTHER_KEY)
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    manifest["audit"]["key_fingerprint"] = KEY.fingerprint
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert problems(audit)["line 1 B1"][0].startswith("the manifest's audit entry does not match its MAC")


def test_demo_sealed_file_is_refused_outside_the_sample(tmp_path):
    audit, _ = sealed(tmp_path, key=AuditKey.demo())
    assert problems(audit, key=AuditKey.demo())["line 1 B1"] == [
        "sealed with the public demo audit key, which anyone can use to forge records: accepted only with --sample"]
    assert problems(audit, key=AuditKey.demo(), sample=True) == {}


def test_replay_needs_the_manifest(tmp_path):
    audit, _ = sealed(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(InputError, match="cannot read the manifest .*records removed from the end cannot be detected"):
        replay_file(audit, KEY)
    (tmp_path / "manifest.json").write_text("{}", encoding="utf-8")
    with pytest.raises(AuditMismatchError, match="no sealed audit entry"):
        replay_file(audit, KEY)


def test_an_empty_audit_file_is_an_error(tmp_path):
    audit, _ = sealed(tmp_path)
    audit.write_text("\n", encoding="utf-8")
    with pytest.raises(InputError, match="no audit records"):
        replay_file(audit, KEY)


def test_recomputed_facts_are_compared(tmp_path):
    audit, _ = sealed(tmp_path)
    again = run([f if f.plot_id != "P6" else honest("P6", "B4", mu=5.5) for f in FACTS])
    found = problems(audit, recomputed=records_by_borrower(again))
    assert list(found) == ["line 4 B4"]
    assert "plots[P6].facts.drawn_mu: recorded 5.0, from the inputs 5.5" in found["line 4 B4"]
    assert problems(audit, recomputed=records_by_borrower(run(FACTS))) == {}
    assert problems(audit, recomputed=records_by_borrower(run(FACTS[:-1])))["line 5 B5"] == ["the borrower is not in the inputs"]


# --------------------------------------------------------------------------- keys


def test_audit_key_from_environment_rules():
    pii = PseudonymKey.from_env(environ={KEY_ENV_VAR: "a secret key of the county branch"})
    key = AuditKey.from_env(pseudonym_key=pii, environ={AUDIT_KEY_ENV_VAR: SECRET.decode()})
    assert key.secret == SECRET and key.source == "environment" and SECRET.decode() not in repr(key)
    with pytest.raises(PrivacyError, match="no audit key: set AGRICREDIT_AUDIT_KEY"):
        AuditKey.from_env(environ={})
    with pytest.raises(PrivacyError, match="AGRICREDIT_AUDIT_KEY is too short: 15 bytes"):
        AuditKey.from_env(environ={AUDIT_KEY_ENV_VAR: "x" * 15})
    with pytest.raises(PrivacyError, match="AGRICREDIT_AUDIT_KEY must differ from the pseudonym key"):
        AuditKey.from_env(pseudonym_key=pii, environ={AUDIT_KEY_ENV_VAR: "a secret key of the county branch"})
    assert AuditKey.from_env(environ={AUDIT_KEY_ENV_VAR: "x" * 16}).source == "environment"


def test_demo_keys_only_with_the_sample():
    with pytest.raises(PrivacyError, match="AGRICREDIT_AUDIT_KEY holds the public demo key, accepted only with --sample"):
        AuditKey.from_env(environ={AUDIT_KEY_ENV_VAR: DEMO_AUDIT_KEY})
    with pytest.raises(PrivacyError, match="AGRICREDIT_PII_KEY holds the public demo key, accepted only with --sample"):
        PseudonymKey.from_env(environ={KEY_ENV_VAR: DEMO_PII_KEY})
    pii = PseudonymKey.from_env(environ={KEY_ENV_VAR: DEMO_PII_KEY}, sample=True)
    assert pii.source == "demo"
    # The README's first command: the demo pseudonym key and no audit key, on the sample.
    key = AuditKey.from_env(pseudonym_key=pii, sample=True, environ={KEY_ENV_VAR: DEMO_PII_KEY})
    assert key.source == "demo" and key.secret == DEMO_AUDIT_KEY.encode() != pii.secret
    assert AuditKey.from_env(sample=True, environ={AUDIT_KEY_ENV_VAR: SECRET.decode()}).secret == SECRET


# --------------------------------------------------------------------------- the command line, on the sample

SAMPLE = DEFAULT_POLICY_PATH.parents[1] / "sample_tiles"


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """`assess --sample` exactly as the README's first command runs it: demo pseudonym key, no audit key."""
    from click.testing import CliRunner

    from agricredit.cli.main import cli

    out = tmp_path_factory.mktemp("sample") / "agricredit-output"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV_VAR, DEMO_PII_KEY)
        patch.delenv(AUDIT_KEY_ENV_VAR, raising=False)
        result = CliRunner().invoke(cli, ["assess", "--sample", "-o", str(out), "--no-progress"])
    assert result.exit_code == 3, result.output
    return out


def _replay(*arguments, **environment):
    from click.testing import CliRunner

    from agricredit.cli.main import cli

    with pytest.MonkeyPatch.context() as patch:
        for variable in (KEY_ENV_VAR, AUDIT_KEY_ENV_VAR):
            patch.delenv(variable, raising=False)
        for variable, value in environment.items():
            patch.setenv(variable, value)
        return CliRunner().invoke(cli, ["replay", *map(str, arguments)])


def test_sample_replays_with_the_demo_key_only_under_sample(sample_run):
    audit = sample_run / "audit.jsonl"
    done = _replay("--sample", audit)
    assert done.exit_code == 0, done.output
    assert done.stdout.endswith("120 of 120 decisions reproduced\n")
    refused = _replay(audit, AGRICREDIT_AUDIT_KEY=DEMO_AUDIT_KEY)
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
    assert "AGRICREDIT_AUDIT_KEY holds the public demo key, accepted only with --sample" in refused.stderr
    real_key = _replay(audit, AGRICREDIT_AUDIT_KEY=SECRET.decode())  # a demo-sealed file presented as real
    first = json.loads(audit.read_text(encoding="utf-8").splitlines()[0])["borrower_id"]
    assert real_key.exit_code == 1 and real_key.stderr.count("\n") == 1
    assert real_key.stderr == (f"Error: {audit}: 120 of 120 records fail replay; first: line 1 {first}: sealed with the "
                               "public demo audit key, which anyone can use to forge records: accepted only with --sample\n")


def test_a_deleted_line_fails_replay_with_one_line_naming_the_record(sample_run, tmp_path):
    lines = (sample_run / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "manifest.json").write_bytes((sample_run / "manifest.json").read_bytes())
    rewrite(tmp_path / "audit.jsonl", lines[:6] + lines[7:])
    result = _replay("--sample", tmp_path / "audit.jsonl")
    borrower = json.loads(lines[7])["borrower_id"]
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"Error: {tmp_path / 'audit.jsonl'}: 1 of 119 records fail replay; first: line 7 "
                                    f"{borrower}: chain broken: the record before it in the chain is missing after line 6")


def test_replay_with_inputs_recomputes_the_facts(sample_run, tmp_path):
    import shutil

    audit = sample_run / "audit.jsonl"
    same = _replay("--sample", "--inputs", SAMPLE / "case.toml", audit, AGRICREDIT_PII_KEY=DEMO_PII_KEY)
    assert same.exit_code == 0, same.output
    shutil.copytree(SAMPLE, tmp_path / "case")
    registry = tmp_path / "case" / "registry.csv"
    lines = registry.read_text(encoding="utf-8").splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if line.startswith("P0007,"))
    fields = lines[row].split(",")
    fields[2] = str(float(fields[2]) + 1.0)  # one registered area changed after the decision
    lines[row] = ",".join(fields)
    registry.write_text("".join(lines), encoding="utf-8")
    changed = _replay("--sample", "--inputs", tmp_path / "case" / "case.toml", audit, AGRICREDIT_PII_KEY=DEMO_PII_KEY)
    assert changed.exit_code == 1
    assert "inputs.registry: recorded" in changed.stdout
    assert "plots[P0007].facts.registered_mu: recorded" in changed.stdout


def test_demo_pseudonym_key_is_refused_on_real_data(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from agricredit.cli.main import cli

    monkeypatch.setenv(KEY_ENV_VAR, DEMO_PII_KEY)
    monkeypatch.setenv(AUDIT_KEY_ENV_VAR, SECRET.decode())
    result = CliRunner().invoke(cli, ["assess", str(SAMPLE / "case.toml"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.stderr == ("Error: AGRICREDIT_PII_KEY holds the public demo key, accepted only with --sample: "
                             "set a secret of your own for real borrowers\n")
    assert not (tmp_path / "out").exists()


def test_demo_keys_are_refused_when_the_sample_is_mixed_with_other_inputs(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from agricredit.cli.main import cli

    monkeypatch.setenv(KEY_ENV_VAR, DEMO_PII_KEY)
    monkeypatch.delenv(AUDIT_KEY_ENV_VAR, raising=False)
    result = CliRunner().invoke(cli, ["assess", "--sample", "--borrowers", str(SAMPLE / "borrowers.csv"),
                                      "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "holds the public demo key, accepted only with --sample" in result.stderr
    assert not (tmp_path / "out").exists()
