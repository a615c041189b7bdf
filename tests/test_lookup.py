"""``agricredit lookup``: the borrower row behind a pseudonym, only with the key."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from click.testing import CliRunner

from agricredit.cli.main import cli
from agricredit.privacy import PseudonymKey, pseudonym

SAMPLE = Path(__file__).resolve().parents[1] / "sample_tiles"
TABLE = SAMPLE / "borrowers.csv"
#: A key of the tests (the public demo key is accepted only with --sample).
SECRET = "report-tests-pseudonym-key-0123"
KEY = PseudonymKey(SECRET.encode(), "environment")


def _table_rows():
    with open(TABLE, encoding="utf-8") as handle:
        return {row["borrower_id"]: row for row in csv.DictReader(handle)}


def test_lookup_prints_the_row_of_each_pseudonym_in_the_order_asked(monkeypatch):
    monkeypatch.setenv("AGRICREDIT_PII_KEY", SECRET)
    asked = ["B052", "B001"]
    result = CliRunner().invoke(cli, ["lookup", *(pseudonym(KEY, "borrower", b) for b in asked), "--borrowers", str(TABLE)])
    assert result.exit_code == 0, result.output
    printed = list(csv.DictReader(io.StringIO(result.stdout)))
    table = _table_rows()
    assert [row["borrower_id"] for row in printed] == asked
    for row in printed:
        expected = table[row["borrower_id"]]
        assert row["pseudonym"] == pseudonym(KEY, "borrower", row["borrower_id"])
        assert (row["name"], row["national_id"], row["phone"], row["village"]) == (
            expected["name"], expected["national_id"], expected["phone"], expected["village"])


def test_lookup_refuses_without_the_key(monkeypatch):
    monkeypatch.delenv("AGRICREDIT_PII_KEY", raising=False)
    result = CliRunner().invoke(cli, ["lookup", pseudonym(KEY, "borrower", "B052"), "--borrowers", str(TABLE)])
    assert result.exit_code == 1
    assert "no pseudonym key" in result.stderr and result.stdout == ""


def test_lookup_with_another_key_finds_nobody(monkeypatch):
    monkeypatch.setenv("AGRICREDIT_PII_KEY", "some-other-key-of-enough-bytes")
    result = CliRunner().invoke(cli, ["lookup", pseudonym(KEY, "borrower", "B052"), "--borrowers", str(TABLE)])
    assert result.exit_code == 1
    assert "matches no borrower of the table with this key" in result.stderr and result.stdout == ""
    assert _table_rows()["B052"]["name"] not in result.output
