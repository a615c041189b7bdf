"""Policy files: the default loads; unknown, missing, mistyped and out-of-range keys are errors naming file and key."""

from __future__ import annotations

import hashlib
import json
import re

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pytest

from agricredit.errors import InputNotFoundError, PolicyError
from agricredit.policy import load_policy, policy_from_record
from agricredit.seeds import DEFAULT_POLICY_PATH

DEFAULT_TEXT = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
#: The integer keys of the policy (all other numbers are floats).
INT_KEYS = {"min_observations_in_window", "max_sowing_shift_days", "min_peers", "corroboration_min_partners",
            "sales_seasons", "sales_min_seasons", "season_grace_days"}


def write(tmp_path, text, name="policy.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def edited(pattern: str, replacement: str) -> str:
    text, count = re.subn(pattern, replacement, DEFAULT_TEXT, count=1, flags=re.MULTILINE)
    assert count == 1, pattern
    return text


def test_default_policy_loads_with_canonical_hash_and_values():
    policy = load_policy()
    document = tomllib.loads(DEFAULT_TEXT)
    # The reference: sorted keys, no spaces, every float key's value as a float, the version prefix.
    floats = {section: {k: float(v) if isinstance(v, (int, float)) and k not in INT_KEYS else v for k, v in table.items()}
              for section, table in document.items()}
    reference = "agricredit.policy/1\n" + json.dumps(floats, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert policy.sha256 == hashlib.sha256(reference.encode("utf-8")).hexdigest()
    assert policy.sha256 != hashlib.sha256(DEFAULT_POLICY_PATH.read_bytes()).hexdigest()
    as_dict = policy.to_dict()
    for section, table in document.items():
        assert as_dict[section] == pytest.approx(table) if section != "policy" else as_dict[section] == table
    assert policy.credit.rounding_step == 100.0 and policy.satellite.min_observations_in_window == 3


@pytest.mark.parametrize("spelling", ["150000", "150000.0", "1.5e5", "150_000", "150000.000"])
def test_integer_for_float_is_accepted_and_one_value_has_one_hash(tmp_path, spelling):
    path = write(tmp_path, edited(r"^cap_per_borrower = .*$", f"cap_per_borrower = {spelling}"))
    policy = load_policy(path)
    assert policy.credit.cap_per_borrower == 150000.0 and isinstance(policy.credit.cap_per_borrower, float)
    reference = load_policy(write(tmp_path, edited(r"^cap_per_borrower = .*$", "cap_per_borrower = 150000.0"), "ref.toml"))
    assert policy.sha256 == reference.sha256 != load_policy().sha256


def test_hash_ignores_comments_whitespace_and_key_order(tmp_path):
    lines = [line for line in DEFAULT_TEXT.splitlines() if not line.lstrip().startswith("#")]
    sections, current = {}, None
    for line in lines:
        if line.startswith("["):
            current = line
            sections[current] = []
        elif line.strip() and current:
            sections[current].append(line.replace(" = ", "   =\t"))
    # Sections in reverse order, keys reversed inside each, no comments, other spacing.
    text = "\n\n".join(header + "\n" + "\n".join(reversed(keys)) for header, keys in reversed(sections.items()))
    other = load_policy(write(tmp_path, text + "\n# a comment\n"))
    assert other.sha256 == load_policy().sha256
    assert load_policy(write(tmp_path, edited(r"^advance_rate = .*$", "advance_rate = 0.61"), "b.toml")).sha256 != other.sha256


def test_record_policy_must_match_its_hash():
    record = json.loads(json.dumps(load_policy().to_dict()))
    assert policy_from_record(record, source="audit.jsonl:1").sha256 == record["sha256"]
    forged = {**record, "credit": {**record["credit"], "advance_rate": 1.0}}  # the hash left as it was
    with pytest.raises(PolicyError, match=r"audit.jsonl:1: the embedded policy does not match its recorded sha256"):
        policy_from_record(forged, source="audit.jsonl:1")
    with pytest.raises(PolicyError, match="no policy with a sha256"):
        policy_from_record({k: v for k, v in record.items() if k != "sha256"})


@pytest.mark.parametrize(("pattern", "replacement", "key"), [
    (r"^\[credit\]$", "[credit]\nbonus_rate = 0.1", "credit.bonus_rate"),  # unknown key
    (r"^advance_rate = .*$", "", "credit.advance_rate"),  # missing key
    (r"^declared_over_tolerance = .*$", "declared_over_tolerance = 1.5", "area.declared_over_tolerance"),
    (r"^declared_over_tolerance = .*$", "declared_over_tolerance = -0.01", "area.declared_over_tolerance"),
    (r"^advance_rate = .*$", "advance_rate = 0.0", "credit.advance_rate"),  # open lower bound
    (r"^rounding_step = .*$", "rounding_step = -100.0", "credit.rounding_step"),
    (r"^rounding_step = .*$", 'rounding_step = "100"', "credit.rounding_step"),  # wrong type
    (r"^min_observations_in_window = .*$", "min_observations_in_window = 2.5", "satellite.min_observations_in_window"),
    (r"^double_claim_min_share = .*$", "double_claim_min_share = true", "area.double_claim_min_share"),
    (r"^low_vigor_percentile = .*$", "low_vigor_percentile = nan", "satellite.low_vigor_percentile"),
    (r"^vigor_factor_min = .*$", "vigor_factor_min = 1.2", "satellite.vigor_factor_min"),
    (r"^vigor_factor_max = .*$", "vigor_factor_max = 0.9", "satellite.vigor_factor_max"),
    (r'^area_unit = .*$', 'area_unit = "ha"', "policy.area_unit"),
    (r"^min_limit = .*$", "min_limit = 300000.0", "credit.min_limit"),
])
def test_bad_policy_names_file_and_key(tmp_path, pattern, replacement, key):
    path = write(tmp_path, edited(pattern, replacement), name="bad_policy.toml")
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    message = str(raised.value)
    assert str(path) in message and key in message
    assert "\n" not in message


def test_unknown_and_missing_sections(tmp_path):
    with pytest.raises(PolicyError, match=r"policy\.toml: unknown section \[bonus\]"):
        load_policy(write(tmp_path, DEFAULT_TEXT + "\n[bonus]\nx = 1\n"))
    without_credit = DEFAULT_TEXT[:DEFAULT_TEXT.index("[credit]")]
    with pytest.raises(PolicyError, match=r"missing section \[credit\]"):
        load_policy(write(tmp_path, without_credit))


@pytest.mark.parametrize("section", ["chain", "monitor"])
def test_an_optional_section_left_out_takes_the_seed_policy_values(tmp_path, section):
    start = DEFAULT_TEXT.index(f"[{section}]")
    end = DEFAULT_TEXT.find("\n[", start + 1)
    without = DEFAULT_TEXT[:start] + (DEFAULT_TEXT[end:] if end >= 0 else "")
    assert f"[{section}]" not in without
    policy = load_policy(write(tmp_path, without))
    assert getattr(policy, section) == getattr(load_policy(), section)
    assert policy.sha256 == load_policy().sha256  # hashed by values: the same policy


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(PolicyError, match="not a valid UTF-8 TOML"):
        load_policy(write(tmp_path, "[area\nx = "))
    with pytest.raises(InputNotFoundError, match="nowhere.toml"):
        load_policy(tmp_path / "nowhere.toml")
