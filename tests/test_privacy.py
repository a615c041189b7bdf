"""Privacy: keyed pseudonyms, CSV injection escaping, the PII scanner and log redaction."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import logging
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agricredit.outputs import staged_outputs
from agricredit.errors import PrivacyError
from agricredit.privacy import (
    DEMO_PII_KEY,
    KEY_ENV_VAR,
    PseudonymKey,
    RedactPII,
    escape_csv_cell,
    escape_csv_frame,
    Finding,
    PersonalDataGuard,
    check_allowed_fields,
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


@pytest.mark.parametrize("dtype", [object, "string[pyarrow]", "string[python]"])
def test_escape_csv_frame_finds_a_formula_in_any_cell_of_a_text_column(dtype):
    cells = ["maize", None, "ok", "-12.5", "\tcmd", "wheat", "=1+1"]
    frame = pd.DataFrame({"text": pd.Series(cells, dtype=dtype), "clean": pd.Series(["a", None, "b", "c", "d", "e", "f"],
                                                                                    dtype=dtype)})
    out = escape_csv_frame(frame)
    expected = [escape_csv_cell(cell) for cell in cells]
    assert [None if pd.isna(v) else v for v in out["text"]] == expected
    assert expected[4] == "'\tcmd" and expected[6] == "'=1+1"
    assert [None if pd.isna(v) else v for v in out["clean"]] == ["a", None, "b", "c", "d", "e", "f"]


def test_escape_csv_frame_judges_cells_of_other_values_one_by_one():
    frame = pd.DataFrame({"mixed": [["=x"], 3, "@home", {"k": "=v"}], "ints": pd.Series([1, -2, 3, 4], dtype=object)})
    out = escape_csv_frame(frame)
    assert out["mixed"].tolist() == [["=x"], 3, "'@home", {"k": "=v"}]
    assert out["ints"].tolist() == [1, -2, 3, 4]


# --------------------------------------------------------------------------- scanner


def test_find_pii_finds_planted_values_without_echoing_them():
    text = (
        '{"borrower": "b_1234", "note": "王小明 asked"}\n'
        "id=11010519491231002x phone 159-0000-1111\n"
        "contact Li Xiuying, unknown ID 320102198001011238, unknown mobile +86 13700001111\n"
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
        f"national ID pattern {at(3, '3201')}",  # nobody's, but a valid ID with its check character
    ]
    for value in ("王小明", "Li Xiuying", "13700001111", "320102198001011238", "11010519491231002"):
        assert not any(value in f for f in findings)


def test_id_pattern_needs_a_valid_check_character():
    # GB 11643: weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2, check "10X98765432"[sum % 11]; computed here by hand.
    body = "32010219800101123"
    total = sum(int(d) * w for d, w in zip(body, (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)))
    check = "10X98765432"[total % 11]
    assert check == "8"
    assert [f.split(" at ")[0] for f in find_pii(f"a {body}{check} b")] == ["national ID pattern"]
    assert find_pii(f"a {body}7 b") == []  # wrong check character: an 18-digit number, not an ID
    assert find_pii(f"a 9{body}{check} b") == []  # inside a longer number


@pytest.mark.parametrize(("value", "found"), [
    ("13812345678", True),  # the exact phone as the whole value
    (" 138-1234-5678 ", True),  # the whole value, written with separators
    ("+86 138 1234 5678", True),
    ("tel:13812345678;", True),  # the exact phone as a token
    ("call 138 1234 5678 now", True),  # 3-4-4 groups are one token
    ("8613812345678", True),  # with the country code
    ("913812345678", False),  # the phone's digits inside a longer number
    ("138123456780", False),
    ("0.13812345678", False),  # inside a decimal fraction
    ("259.13812345678", False),
    ("v13812345678x", False),  # inside a longer token
    ("3f13812345678a", False),  # inside a hex digest
    ("1381234567", False),  # one digit short
])
def test_phone_is_found_only_as_a_whole_value_or_token(value, found):
    assert bool(find_pii(value, BORROWERS)) is found, value


@pytest.mark.parametrize(("value", "found"), [
    ("王小明", True),  # the name alone in a field
    (" 王小明 ", True),
    ("王小明，额度 4,300 元", True),  # a whole CJK token
    ("借款人王小明", False),  # inside a longer Chinese word
    ("王小明村", False),
    ("Li Xiuying", True),
    ("li  xiuying", True),  # case and spacing
    ("Dr. Li Xiuying, village 2", True),
    ("Li Xiuyingfang", False),
    ("Li", False),  # only part of the name
])
def test_name_is_found_only_as_a_whole_value_or_token(value, found):
    assert bool(find_pii(value, BORROWERS)) is found, value


def test_two_character_name_inside_a_longer_word_is_no_finding():
    people = pd.DataFrame({"name": ["高峰", "玉米"], "source_row": [2, 3]})
    assert find_pii("生长高峰期长势低于同类作物地块", people) == []
    assert find_pii("玉米田", people) == []
    assert find_pii("峰值 NDVI 0.81：高峰", people) == ["borrower name (borrowers row 2) at line 1, column 14"]
    assert find_pii("高峰", people) == ["borrower name (borrowers row 2) at line 1, column 1"]


def test_find_pii_patterns_without_borrower_table():
    # Only national-ID shapes with a valid check character: an 11-digit number starting 13-19 may be a
    # plot or parcel number, so without the borrower table it is no finding.
    assert [f.split(" at ")[0] for f in find_pii("a 11010519491231002X b 13812345678")] == ["national ID pattern"]


def test_find_pii_clean_text():
    sha = hashlib.sha256(b"x").hexdigest()
    clean = (
        '{"pseudonym": "b_3f9c0a7e12d45b68", "village": "王家村", "limit_cny": 4300.0, "verified_mu": 9.813812345678,\n'
        f' "sha256": "{sha}", "ndvi": 0.13812345678, "ts": 1732613812345678, "etag": "0123abcd13812345678ffffffffffffffffffee", "area_m2": 123456789012345678901,\n'
        ' "explanation": "额度 4,300 元，核实面积 9.8 亩，玉米。借款人王小明之子", "policy": "2024-06-01T00:00:00Z"}\n'
    )
    assert find_pii(clean, BORROWERS) == []


@given(st.binary(min_size=32, max_size=32))
def test_find_pii_ignores_hashes(data):
    digest = hashlib.sha256(data).hexdigest()
    assert find_pii(f'"sha256": "{digest}"') == []


# --------------------------------------------------------------------------- scanning files


def _people(n=3):
    return pd.DataFrame({"national_id": ["11010519491231002X", "440524188001010014", "320102198001011238"][:n],
                         "phone": ["13812345678", "15900001111", "13700001111"][:n],
                         "name": ["王小明", "Li Xiuying", "高峰"][:n], "source_row": [2, 3, 4][:n]})


def test_scan_csv_names_file_row_and_column_never_the_value(tmp_path):
    path = tmp_path / "borrowers.csv"
    path.write_text("borrower,village,explanation\nb_1,王家村,额度 4300 元\nb_2,李庄,\"tel 159 0000 1111, call\"\n",
                    encoding="utf-8")
    guard = PersonalDataGuard.from_borrowers(_people())
    findings = list(guard.scan_file(path))
    assert findings == [Finding("borrowers.csv", "row 3", "explanation", "borrower phone (borrowers row 3)")]
    assert str(findings[0]) == "borrowers.csv: row 3, field 'explanation': borrower phone (borrowers row 3)"


def test_scan_geojson_names_feature_and_field(tmp_path):
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [116.123456, 39.138123]},
                 "properties": {"plot_id": f"P{i}", "peak_ndvi": 0.13812345678, "pixels": 13812345679}} for i in range(3)]
    features[2]["properties"]["note"] = "高峰"
    path = tmp_path / "plots.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=True), encoding="utf-8")
    guard = PersonalDataGuard.from_borrowers(_people())
    assert list(guard.scan_file(path)) == [Finding("plots.geojson", "feature 3", "note", "borrower name (borrowers row 4)")]
    features[0]["properties"]["pixels"] = 13812345678  # a phone written as a JSON number
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    assert [f.record for f in guard.scan_file(path)] == ["feature 1", "feature 3"]


def test_scan_jsonl_names_line_and_a_personal_key_without_quoting_it(tmp_path):
    path = tmp_path / "audit.jsonl"
    lines = [{"borrower_id": "b_1", "inputs": {"plots": "ab" * 32}}, {"borrower_id": "b_2", "inputs": {"王小明": "x"}}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    findings = list(PersonalDataGuard.from_borrowers(_people()).scan_file(path))
    assert findings == [Finding("audit.jsonl", "line 2", "key after inputs", "borrower name (borrowers row 2)")]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**20, max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=25,
)


def _reference(document):
    """Every key and string, and every non-negative integer of 11+ digits, in document order (what the lexer yields)."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield key
            yield from _reference(value)
    elif isinstance(document, list):
        for value in document:
            yield from _reference(value)
    elif isinstance(document, str):
        yield document
    elif isinstance(document, int) and not isinstance(document, bool) and document >= 10**10:
        yield str(document)


@given(json_values, st.integers(min_value=1, max_value=9), st.booleans())
def test_json_lexer_yields_every_value_whatever_the_chunk_boundaries(document, size, ascii_only):
    from agricredit.privacy import _json_values

    text = json.dumps({"type": "FeatureCollection", "x": document}, ensure_ascii=ascii_only)
    chunks = [text[i:i + size] for i in range(0, len(text), size)]
    assert [value for _, value in _json_values(chunks)] == list(_reference({"type": "FeatureCollection", "x": document}))


PEOPLE_TOKENS = ["11010519491231002X", "11010519491231002x", "13812345678", "8613812345678", "138 1234 5678",
                 "王小明", "Li Xiuying", "高峰", "320102198001011238"]


@given(st.lists(st.sampled_from(PEOPLE_TOKENS) | st.text(alphabet="0123456789xX .-_,:;\n王小明高峰李Lixuyng，。", max_size=12),
                max_size=8))
def test_byte_pass_never_clears_a_file_the_field_pass_would_flag(parts):
    """The byte pass (numpy, raw bytes) must be a superset of the exact token rule, or a leak could slip through."""
    text = "".join(parts)
    guard = PersonalDataGuard.from_borrowers(_people())
    flagged = any(True for line in text.split("\n") for _ in guard.find(line))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "out.txt"
        path.write_text(text, encoding="utf-8")
        assert guard.may_hold(path) or not flagged
        assert bool(list(guard.scan_file(path))) == flagged
        for ascii_only in (False, True):  # the same text as a JSON value, \u-escaped or not
            path = Path(folder) / "out.json"
            path.write_text(json.dumps({"note": text}, ensure_ascii=ascii_only), encoding="utf-8")
            found = list(guard.scan_file(path))
            assert bool(found) == any(True for _ in guard.find(text)), found


@pytest.mark.parametrize("escaped", ["\n", "\t", "\r", "\b", "\f", "\"", "\\"])
@pytest.mark.parametrize("ascii_only", [False, True])
def test_a_latin_name_right_after_a_json_escape_is_found(tmp_path, escaped, ascii_only):
    # the escape's letter (the n of \n) runs into the name in the file's bytes: the byte pass must not clear it
    guard = PersonalDataGuard.from_borrowers(_people())
    path = tmp_path / "audit.jsonl"
    path.write_text(json.dumps({"note": f"x{escaped}Li Xiuying{escaped}"}, ensure_ascii=ascii_only) + "\n",
                    encoding="utf-8")
    assert guard.may_hold(path)
    assert [f.what for f in guard.scan_file(path)] == ["borrower name (borrowers row 3)"]


def test_byte_pass_finds_a_token_cut_by_a_block_boundary(tmp_path, monkeypatch):
    import agricredit.privacy as privacy

    monkeypatch.setattr(privacy, "_BLOCK", 1000)
    guard = PersonalDataGuard.from_borrowers(_people())
    for offset in range(990, 1001):
        path = tmp_path / "audit.jsonl"
        path.write_text("x" * offset + " 王小明 13812345678\n", encoding="utf-8")
        assert guard.may_hold(path), offset
    path.write_text("x" * 995 + " 9.13812345678 王小明村\n", encoding="utf-8")
    assert list(guard.scan_file(path)) == []


# --------------------------------------------------------------------------- allow-lists and publication


def test_allowed_fields():
    check_allowed_fields("borrowers", ["borrower", "village", "limit"])
    with pytest.raises(PrivacyError, match="field 'name' is not on the allow-list of borrowers \\(and 1 more\\)"):
        check_allowed_fields("borrowers", ["borrower", "phone", "name"])
    with pytest.raises(PrivacyError, match="report.html has no allow-list"):
        check_allowed_fields("report.html", ["borrower"])


def _write(folder, names):
    for name, text in names.items():
        (folder / name).write_text(text, encoding="utf-8")


def test_a_leak_publishes_nothing_and_keeps_the_previous_outputs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _write(out, {"borrowers.csv": "borrower\nb_old\n", "manifest.json": '{"old": true}'})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    guard = PersonalDataGuard.from_borrowers(_people())
    with pytest.raises(PrivacyError) as raised:
        with staged_outputs(out, check=guard.check_folder) as staging:
            assert staging.parent == out
            _write(staging, {"borrowers.csv": "borrower,village\nb_1,王小明\n", "manifest.json": "{}"})
    message = str(raised.value)
    assert message == (f"{out / 'borrowers.csv'}: personal data in an output (row 2, field 'village': "
                       "borrower name (borrowers row 2)); nothing was published")
    assert "王小明" not in message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left behind


def test_clean_outputs_are_published_manifest_last(tmp_path, monkeypatch):
    out = tmp_path / "out"
    moved = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (moved.append(Path(b).name), real_replace(a, b)))
    with staged_outputs(out, check=PersonalDataGuard.from_borrowers(_people()).check_folder) as staging:
        _write(staging, {"manifest.json": "{}", "a.csv": "x\n1\n", "z.geojson": '{"type": "FeatureCollection"}'})
    assert moved == ["a.csv", "z.geojson", "manifest.json"]
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "manifest.json", "z.geojson"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_error_while_writing_publishes_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with staged_outputs(tmp_path / "out", check=PersonalDataGuard.from_borrowers(None).check_folder) as staging:
            _write(staging, {"a.csv": "x\n"})
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


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
    assert find_pii(f'"borrower": "b_{data.hex()}", "fingerprint": "{data.hex()[:12]}"', BORROWERS) == []
    assert find_pii('"borrower": "b_a13812345678b0c1"', BORROWERS) == []


@given(json_values, st.integers(min_value=1, max_value=9), st.lists(st.booleans(), min_size=1, max_size=40))
@example(document={'00"\x1f\x1f\x1f': [[False], -10000000000000000000], "": None}, size=5,
         skips=[False, True, False, True, True, True, True, False, False, False])  # resumed inside a long number
def test_json_lexer_follows_keys_and_features_through_skipped_chunks(document, size, skips):
    """Skipping chunks (no candidate) must not change the values read in the others, their fields, nor the features."""
    from agricredit.privacy import _json_values

    text = json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "x": document}] * 2})
    chunks = [text[i:i + size] for i in range(0, len(text), size)]
    decisions = iter(skips * (len(text) // len(skips) + 2))
    full = list(_json_values(chunks))
    read = list(_json_values(chunks, lambda buffer: next(decisions)))
    assert sum(value == "Feature" for _, value in read) == sum(value == "Feature" for _, value in full) == 2
    assert all(pair in full for pair in read)
    assert list(_json_values(chunks, lambda buffer: True)) == full


def test_publishing_into_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path / "out")
    with staged_outputs(".", check=PersonalDataGuard.from_borrowers(_people()).check_folder) as staging:
        assert staging.parent.resolve() == tmp_path / "out"
        _write(staging, {"manifest.json": "{}"})
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["manifest.json"]
