"""Atomic output files."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from agricredit.outputs import atomic_path, sha256_file


def test_atomic_path_renames_on_success_with_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "out.csv"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("a,b\n")
        assert not target.exists()
    assert target.read_text() == "a,b\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert list(target.parent.iterdir()) == [target]


def test_atomic_path_leaves_nothing_on_failure_and_keeps_old_file(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_sha256_file_matches_hashlib(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path, chunk_size=1 << 20) == hashlib.sha256(data).hexdigest()


def test_csv_tables_escape_spreadsheet_formulas_but_keep_numbers(tmp_path):
    import pandas as pd

    from agricredit.outputs import write_table

    path = tmp_path / "t.csv"
    write_table(pd.DataFrame({"plot_id": ["=HYPERLINK(\"http://x\")", "P1"], "area_mu": [-1.5, 2.0]}), path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[1].startswith("\"'=HYPERLINK") and lines[1].endswith(",-1.5")
    assert lines[2] == "P1,2.0"


def test_an_unwritable_place_is_an_output_error(tmp_path):
    from agricredit.errors import OutputError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="file"):
        with atomic_path(blocker / "out.csv"):
            pass
