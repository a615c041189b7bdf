"""Privacy: keyed pseudonyms, CSV injection escaping, the PII scanner and log redaction."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agricredit.errors import PrivacyError
from agricredit.privacy import (
    DEMO_PII_KEY,
    KEY_ENV_VAR,
    PseudonymKey,
    RedactPII,
    escape_csv_cell,
    escape_csv_frame,
    find_pii,
    install_redaction,
    pseudonym,
    pseudonymise_borrowers,
    redact,
)

KEY_A = PseudonymKey.from_env(environ={KEY_ENV_VAR: "a secret key of the county branch"})
KEY_B = PseudonymKey.from_env(environ={KEY_ENV_VAR: "another secret key, other branch"})

BORROWERS = pd.DataFrame(
    {
        "borrower_id": ["B001", "0042"],
        "national_id": ["11010519491231002X", "440524188001010014"],
        "name": ["王小明", "Li Xiuying"],
        "phone": ["13812345678", "15900001111"],
        "village": ["王家村", "李庄"],
        "source_row": [2, 3],
    }
)


# --------------------------------------------------------------------------- keys


def test_key_from_environment(monkeypatch):
    monkeypatch.setenv(KEY_ENV_VAR, "密钥" * 3)  # 18 UTF-8 bytes, 6 characters
    key = PseudonymKey.from_env()
    assert key.source == "environment"
    assert "密钥" not in repr(key)


@pytest.mark.parametrize("value", ["", "short key", "x" * 15, "密钥密钥密"])  # the last is 15 bytes
def test_short_key_refused(value):
    with pytest.raises(PrivacyError, match="too short"):
        PseudonymKey.from_env(environ={KEY_ENV_VAR: value})


def test_no_key_refused_unless_ephemeral(caplog):
    with pytest.raises(PrivacyError, match=KEY_ENV_VAR):
        PseudonymKey.from_env(environ={})
    with caplog.at_level(logging.WARNING, logger="agricredit"):
        one = PseudonymKey.from_env(environ={}, allow_ephemeral=True)
        two = PseudonymKey.ephemeral()
    assert one.source == two.source == "ephemeral"
    assert pseudonym(one, "borrower", "B001") != pseudonym(two, "borrower", "B001")
    assert "not be stable" in caplog.text or "differ in every run" in caplog.text


def test_environment_key_wins_over_ephemeral():
    key = PseudonymKey.from_env(environ={KEY_ENV_VAR: "a secret key of the county branch"}, allow_ephemeral=True)
    assert key.source == "environment"


def test_demo_key_is_labelled(caplog):
    with caplog.at_level(logging.WARNING, logger="agricredit"):
        key = PseudonymKey.demo()
    assert key.source == "demo" and "NOT-FOR-PRODUCTION" in DEMO_PII_KEY
    assert "never for real borrowers" in caplog.text
    assert key.fingerprint == PseudonymKey.demo().fingerprint != KEY_A.fingerprint


# --------------------------------------------------------------------------- pseudonyms


def test_pseudonym_matches_hmac_reference():
    expected = hmac.new(b"a secret key of the county branch", b"borrower\x1fB001", hashlib.sha256).hexdigest()[:16]
    assert pseudonym(KEY_A, "borrower", "B001") == "b_" + expected
    assert pseudonym(KEY_A, "holder", "B001").startswith("h_")


@given(st.text(max_size=40))
def test_pseudonym_stable_and_separated(value):
    p = pseudonym(KEY_A, "borrower", value)
    assert p == pseudonym(KEY_A, "borrower", value)
    assert len(p) == 18 and p.startswith("b_") and int(p[2:], 16) >= 0
    assert p != pseudonym(KEY_B, "borrower", value)
    assert p[2:] != pseudonym(KEY_A, "holder", value)[2:]


def test_pseudonym_rejects_non_text():
    with pytest.raises(TypeError, match="value must be str, got int"):
        pseudonym(KEY_A, "borrower", 42)
    with pytest.raises(ValueError, match="kind must be lower-case letters"):
        pseudonym(KEY_A, "Borrower\x1f", "B001")


def test_pseudonymise_borrowers_keeps_only_allow_list():
    out = pseudonymise_borrowers(BORROWERS, KEY_A)
    assert list(out.columns) == ["pseudonym", "village"]
    assert set(out.pseudonym) == {pseudonym(KEY_A, "borrower", b) for b in BORROWERS.borrower_id}
    assert dict(zip(out.pseudonym, out.village))[pseudonym(KEY_A, "borrower", "B001")] == "王家村"
    assert out.pseudonym.is_monotonic_increasing
    assert find_pii(out.to_csv(index=False), BORROWERS) == []


# --------------------------------------------------------------------------- CSV injection


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-12.5", "-12.5"),  # a plain number written as text is not a formula
        ("+3", "+3"),
        ("maize", "maize"),
        ("a=b", "a=b"),
        ("", ""),
        (-12.5, -12.5),
        (-3, -3),
        (None, None),
    ],
)
def test_escape_csv_cell(value, expected):
    assert escape_csv_cell(value) == expected


def test_escape_csv_frame_keeps_numbers_numeric():
    frame = pd.DataFrame({"note": ["=cmd|' /C calc'!A0", "ok"], "limit": [-100.0, 4300.0], "=col": ["x", "@y"]})
    out = escape_csv_frame(frame)
    text = out.to_csv(index=False)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["note", "limit", "'=col"]
    assert rows[1] == ["'=cmd|' /C calc'!A0", "-100.0", "x"]
    assert rows[2] == ["ok", "4300.0", "'@y"]
    assert out["limit"].dtype == frame["limit"].dtype


# --------------------------------------------------------------------------- scanner


def test_find_pii_finds_planted_values_without_echoing_them():
    text = (
        '{"borrower": "b_1234", "note": "王小明 asked"}\n'
        "id=11010519491231002x phone 159-0000-1111\n"
        "contact Li Xiuying, unknown ID 320102198001011234, unknown mobile +86 13700001111\n"
    )
    lines = text.splitlines()

    def at(line, value):
        return f"at line {line}, column {lines[line - 1].index(value) + 1}"

    findings = find_pii(text, BORROWERS)
    assert findings == [
        f"borrower name (borrowers row 2) {at(1, '王小明')}",
        f"borrower national ID (borrowers row 2) {at(2, '1101')}",
        f"borrower phone (borrowers row 3) {at(2, '159-')}",
        f"borrower name (borrowers row 3) {at(3, 'Li X')}",
        f"national ID pattern {at(3, '3201')}",
        f"mobile number pattern {at(3, '1370')}",
    ]
    for value in ("王小明", "Li Xiuying", "13700001111", "320102198001011234", "11010519491231002"):
        assert not any(value in f for f in findings)


def test_find_pii_patterns_without_borrower_table():
    assert [f.split(" at ")[0] for f in find_pii("a 11010519491231002X b 13812345678")] == [
        "national ID pattern",
        "mobile number pattern",
    ]


def test_find_pii_clean_text():
    sha = hashlib.sha256(b"x").hexdigest()
    clean = (
        '{"pseudonym": "b_3f9c0a7e12d45b68", "village": "王家村", "limit_cny": 4300.0, "verified_mu": 9.812345678901,\n'
        f' "sha256": "{sha}", "ndvi": 0.13912345670, "ts": 1732612345678, "etag": "0123abcd13912345670ffffffffffffffffffee", "area_m2": 123456789012345678901,\n'
        ' "explanation": "额度 4,300 元，核实面积 9.8 亩，玉米。", "policy": "2024-06-01T00:00:00Z"}\n'
    )
    assert find_pii(clean, BORROWERS) == []


@given(st.binary(min_size=32, max_size=32))
def test_find_pii_ignores_hashes(data):
    digest = hashlib.sha256(data).hexdigest()
    assert find_pii(f'"sha256": "{digest}"') == []


# --------------------------------------------------------------------------- redaction


def test_redact_masks_ids_and_phones():
    message = "row 3: ID 11010519491231002X / 110105491231002, tel.138 1234 5678, phone 15900001111; area 12.5 mu"
    assert redact(message) == "row 3: ID [ID] / [ID], tel.[PHONE], phone [PHONE]; area 12.5 mu"


def test_log_filter_redacts_child_loggers_and_tracebacks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    parent = logging.getLogger("agricredit")
    level = parent.level
    parent.addHandler(handler)
    parent.setLevel(logging.INFO)  # other tests (the CLI's -q) may have raised it
    try:
        install_redaction()
        install_redaction()  # idempotent
        assert sum(isinstance(f, RedactPII) for f in handler.filters) == 1
        child = logging.getLogger("agricredit.tables")
        child.warning("bad row for %s, phone %s", "11010519491231002X", 13812345678)
        try:
            raise ValueError("id 440524188001010014")
        except ValueError:
            child.exception("failed")
    finally:
        parent.removeHandler(handler)
        parent.setLevel(level)
    output = stream.getvalue()
    assert "bad row for [ID], phone [PHONE]" in output
    assert "ValueError: id [ID]" in output
    assert find_pii(output, BORROWERS) == []


@given(st.binary(min_size=8, max_size=8))
def test_find_pii_ignores_pseudonyms_and_fingerprints(data):
    # A pseudonym's 16 hex characters or a 12-character key fingerprint can hold 11 digits by chance.
    assert find_pii(f'"borrower": "b_{data.hex()}", "fingerprint": "{data.hex()[:12]}"') == []
    assert find_pii('"borrower": "b_a13912345678b0c1"') == []


def test_find_pii_still_finds_a_phone_next_to_words():
    assert find_pii("call 13912345678 now") and find_pii("tel:13912345678;")
