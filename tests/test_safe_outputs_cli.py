"""Outputs never destroy inputs (issue 10 §4), --overwrite (rio's convention), no partial output on Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agricredit.cli.main import EXIT_INTERRUPTED, cli
from agricredit.errors import OutputError
from agricredit.outputs import STAGING_PREFIX, check_output_file, check_output_folder, staged_outputs
from agricredit.privacy import DEMO_PII_KEY

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_tiles"
NAMES = ("plots.geojson", "borrowers.csv", "manifest.json")


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "in" / "plots.geojson"
    path.parent.mkdir()
    path.write_text('{"type": "FeatureCollection", "features": []}')
    return path


def test_an_output_file_that_is_an_input_is_refused_whatever_the_spelling_or_link(source, tmp_path):
    symlink, hardlink = tmp_path / "alias.geojson", tmp_path / "hard.geojson"
    symlink.symlink_to(source)
    os.link(source, hardlink)
    relative = Path(os.path.relpath(source, Path.cwd()))
    for output in (source, relative, source.parent / ".." / "in" / "plots.geojson", symlink, hardlink):
        with pytest.raises(OutputError, match="is an input"):
            check_output_file(output, [source], overwrite=True)
    with pytest.raises(OutputError, match="is an input"):  # the input given through the link, the output by name
        check_output_file(source, [hardlink], overwrite=True)


def test_an_existing_file_of_an_input_folder_is_never_replaced(source, tmp_path):
    with pytest.raises(OutputError, match="input folder"):
        check_output_file(source.parent / "plots.geojson", [source.parent], overwrite=True)
    check_output_file(source.parent / "new.csv", [source.parent], overwrite=False)  # a new file beside them is fine


def test_an_existing_output_file_needs_overwrite(source, tmp_path):
    existing = tmp_path / "areas.csv"
    existing.write_text("old")
    with pytest.raises(OutputError, match="--overwrite"):
        check_output_file(existing, [source], overwrite=False)
    check_output_file(existing, [source], overwrite=True)
    check_output_file(tmp_path / "new.csv", [source], overwrite=False)
    check_output_file("-", [source], overwrite=False)  # stdout


def test_a_folder_holding_an_input_is_refused_even_with_overwrite(source, tmp_path):
    for folder in (source.parent, source.parent.parent, tmp_path / "in" / "."):
        with pytest.raises(OutputError, match="holds the input"):
            check_output_folder(folder, [source], NAMES, overwrite=True)
    linked = tmp_path / "linked"
    linked.symlink_to(source.parent, target_is_directory=True)
    with pytest.raises(OutputError, match="holds the input"):
        check_output_folder(linked, [source], NAMES, overwrite=True)
    out = tmp_path / "out"
    out.mkdir()
    os.link(source, out / "plots.geojson")  # an output name hard-linked to an input elsewhere
    with pytest.raises(OutputError, match="holds the input"):
        check_output_folder(out, [source], NAMES, overwrite=True)


def test_a_folder_with_foreign_files_or_an_earlier_run_needs_overwrite(source, tmp_path):
    out = tmp_path / "out"
    check_output_folder(out, [source], NAMES, overwrite=False)  # missing: fine
    out.mkdir()
    check_output_folder(out, [source], NAMES, overwrite=False)  # empty: fine
    (out / "notes.docx").write_text("someone's work")
    with pytest.raises(OutputError, match="did not write .*notes.docx"):
        check_output_folder(out, [source], NAMES, overwrite=False)
    check_output_folder(out, [source], NAMES, overwrite=True)
    (out / "notes.docx").unlink()
    (out / "manifest.json").write_text("{}")
    with pytest.raises(OutputError, match="earlier run"):
        check_output_folder(out, [source], NAMES, overwrite=False)
    check_output_folder(out, [source], NAMES, overwrite=True)
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        check_output_folder(file, [source], NAMES, overwrite=True)


def test_publishing_replaces_the_earlier_run_and_removes_its_stale_outputs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.csv").write_text("from an earlier version")
    (out / "plots.geojson").write_text("old")
    (out / "notes.docx").write_text("not ours, not listed")
    (out / "manifest.json").write_text(json.dumps({"tool": "agricredit",
                                                   "outputs": {"old.csv": "x", "plots.geojson": "y"}}))
    with staged_outputs(out) as stage:
        (stage / "plots.geojson").write_text("new")
        (stage / "manifest.json").write_text(json.dumps({"tool": "agricredit", "outputs": {"plots.geojson": "z"}}))
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "notes.docx", "plots.geojson"]
    assert (out / "plots.geojson").read_text() == "new"


def test_another_tools_manifest_never_makes_us_delete_its_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "important.csv").write_text("someone's data")
    (out / "manifest.json").write_text(json.dumps({"tool": "other", "outputs": {"important.csv": "x"}}))
    with staged_outputs(out) as stage:
        (stage / "manifest.json").write_text(json.dumps({"tool": "agricredit", "outputs": {}}))
    assert (out / "important.csv").read_text() == "someone's data"


@pytest.mark.parametrize("interruption", [RuntimeError, KeyboardInterrupt])
def test_an_interrupted_run_publishes_nothing_and_keeps_the_earlier_run(tmp_path, interruption):
    out = tmp_path / "out"
    out.mkdir()
    (out / "plots.geojson").write_text("earlier")
    (out / "manifest.json").write_text("{}")
    with pytest.raises(interruption):
        with staged_outputs(out) as stage:
            (stage / "plots.geojson").write_text("half")
            raise interruption()
    assert _tree_digest(out) == {"manifest.json": hashlib.sha256(b"{}").hexdigest(),
                                 "plots.geojson": hashlib.sha256(b"earlier").hexdigest()}
    fresh = tmp_path / "fresh" / "out"
    with pytest.raises(interruption):
        with staged_outputs(fresh) as stage:
            (stage / "plots.geojson").write_text("half")
            raise interruption()
    assert not fresh.exists()  # the folder this run created goes too


def test_assess_into_the_input_folder_refuses_and_leaves_the_inputs_byte_identical(tmp_path):
    case = tmp_path / "in"
    shutil.copytree(SAMPLE, case)
    before = _tree_digest(case)
    environment = {**os.environ, "AGRICREDIT_PII_KEY": DEMO_PII_KEY, "PYTHONPATH": str(ROOT)}
    for extra in ([], ["--overwrite"]):
        result = subprocess.run([sys.executable, "-m", "agricredit", "assess", "case.toml", "-o", ".", *extra],
                                cwd=case, env=environment, capture_output=True, text=True, check=False)
        assert result.returncode == 1, result.stderr
        assert "holds the input" in result.stderr and "Traceback" not in result.stderr
        assert _tree_digest(case) == before


def test_assess_refuses_an_earlier_run_without_overwrite_and_replaces_it_with(tmp_path, monkeypatch):
    monkeypatch.setenv("AGRICREDIT_PII_KEY", DEMO_PII_KEY)
    out = tmp_path / "out"
    first = CliRunner().invoke(cli, ["assess", "--sample", "-o", str(out), "--no-progress"])
    assert first.exit_code == 3, first.output
    earlier = _tree_digest(out)
    again = CliRunner().invoke(cli, ["assess", "--sample", "-o", str(out), "--no-progress"])
    assert again.exit_code == 1 and "earlier run" in again.stderr and "--overwrite" in again.stderr
    assert _tree_digest(out) == earlier
    replaced = CliRunner().invoke(cli, ["assess", "--sample", "-o", str(out), "--no-progress", "--overwrite"])
    assert replaced.exit_code == 3, replaced.output
    assert _tree_digest(out) == earlier  # same inputs, same bytes
    assert not any(p.name.startswith(STAGING_PREFIX) for p in out.iterdir())


def test_ctrl_c_while_writing_exits_130_and_leaves_no_output(tmp_path, monkeypatch):
    import agricredit.assess_outputs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setenv("AGRICREDIT_PII_KEY", DEMO_PII_KEY)
    monkeypatch.setattr(agricredit.assess_outputs, "write_xlsx", interrupted)  # halfway through the outputs
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["assess", "--sample", "-o", str(out), "--no-progress"])
    assert result.exit_code == EXIT_INTERRUPTED, result.output
    assert "Interrupted" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_file_commands_refuse_to_replace_an_output_before_any_work(tmp_path, monkeypatch):
    existing = tmp_path / "areas.csv"
    existing.write_text("keep me")
    result = CliRunner().invoke(cli, ["area", str(SAMPLE / "plots.geojson"), "-o", str(existing)])
    assert result.exit_code == 1 and "--overwrite" in result.stderr
    assert existing.read_text() == "keep me"
    result = CliRunner().invoke(cli, ["area", str(SAMPLE / "plots.geojson"), "-o", str(SAMPLE / "plots.geojson"),
                                      "--overwrite"])
    assert result.exit_code == 1 and "is an input" in result.stderr
    import agricredit.raster

    monkeypatch.setattr(agricredit.raster, "open_product", lambda *a, **k: pytest.fail("opened the tile"))
    tile = SAMPLE / "s2_l1c_eastern_shore.tif"
    result = CliRunner().invoke(cli, ["ndvi", str(tile), "-o", str(tile), "--overwrite"])
    assert result.exit_code == 1 and "is an input" in result.stderr
    result = CliRunner().invoke(cli, ["ndvi", str(tile), "-o", str(tmp_path / "n.tif"), "--quicklook", str(existing)])
    assert result.exit_code == 1 and "--overwrite" in result.stderr
