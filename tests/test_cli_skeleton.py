"""The command group: --version, --help, logging flags and the error path."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

import agricredit
from agricredit.cli import main as cli_main
from agricredit.errors import AgricreditError, CRSMismatchError, InputError


def test_version_prints_package_version():
    result = CliRunner().invoke(cli_main.cli, ["--version"])
    assert result.exit_code == 0
    assert agricredit.__version__ in result.output


def test_help_lists_every_command_module():
    result = CliRunner().invoke(cli_main.cli, ["--help"])
    assert result.exit_code == 0
    for name in cli_main._command_modules():
        assert name in result.output


def test_unknown_command_is_usage_error():
    result = CliRunner().invoke(cli_main.cli, ["no-such-command"])
    assert result.exit_code == 2


def test_library_error_becomes_one_line_and_exit_code(monkeypatch):
    @click.command()
    def boom():
        raise CRSMismatchError("plots are EPSG:4326, tile has no CRS", path="tile.tif", record="plot 7")

    monkeypatch.setattr(cli_main.AgricreditGroup, "get_command", lambda self, ctx, name: boom)
    monkeypatch.setattr(cli_main.AgricreditGroup, "list_commands", lambda self, ctx: ["boom"])
    result = CliRunner().invoke(cli_main.cli, ["boom"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: tile.tif: plot 7: plots are EPSG:4326, tile has no CRS"
    assert "Traceback" not in result.output


def test_error_hierarchy_mixes_in_builtins():
    assert issubclass(CRSMismatchError, AgricreditError)
    assert issubclass(CRSMismatchError, ValueError)
    with pytest.raises(ValueError, match="^bad$"):
        raise InputError("bad")


def test_error_message_is_folded_to_one_line():
    error = InputError("line one\nline two", path="a.csv", record=3)
    assert str(error) == "a.csv: 3: line one line two"


@pytest.mark.parametrize("flags,level", [([], "WARNING"), (["-v"], "INFO"), (["-vv"], "DEBUG"), (["-q"], "ERROR")])
def test_verbosity_flags_set_log_level(flags, level, monkeypatch):
    import logging

    @click.command()
    def noop():
        pass

    monkeypatch.setattr(cli_main.AgricreditGroup, "get_command", lambda self, ctx, name: noop)
    result = CliRunner().invoke(cli_main.cli, [*flags, "noop"])
    assert result.exit_code == 0
    assert logging.getLevelName(logging.getLogger("agricredit").level) == level


def test_error_line_and_logs_are_redacted(monkeypatch):
    import logging

    @click.command()
    def leak():
        logging.getLogger("agricredit.tables").warning("row 3 holder 110101199003077777 phone 13812345678")
        raise InputError("bad holder 110101199003077777")

    monkeypatch.setattr(cli_main.AgricreditGroup, "get_command", lambda self, ctx, name: leak)
    result = CliRunner().invoke(cli_main.cli, ["leak"])
    assert result.exit_code == 1
    assert "110101199003077777" not in result.stderr
    assert "13812345678" not in result.stderr
    assert "bad holder" in result.stderr
    assert "row 3 holder" in result.stderr


def test_an_os_error_anywhere_is_one_line_and_exit_1(monkeypatch):
    import errno

    @click.command()
    def full():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/plots.geojson")

    monkeypatch.setattr(cli_main.AgricreditGroup, "get_command", lambda self, ctx, name: full)
    result = CliRunner().invoke(cli_main.cli, ["full"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: /data/out/plots.geojson: No space left on device"
