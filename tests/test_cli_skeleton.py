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


def _script(*args: str, code: str = "from agricredit.cli.main import main; main()"):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, exit_code", [(["--version"], 0), (["no-such-command"], 2)])
def test_the_console_script_ends_with_the_command_s_exit_code_and_flushed_output(args, exit_code):
    result = _script(*args)
    assert result.returncode == exit_code
    if exit_code == 0:
        assert result.stdout == f"agricredit, version {agricredit.__version__}\n"
    else:
        assert result.stderr.rstrip().endswith("Error: No such command 'no-such-command'.")


def test_the_console_script_flushes_a_long_output_and_runs_the_exit_handlers():
    # A pipe buffers stdout: everything a command printed reaches it; the exit handlers still run (the process
    # skips only the freeing of its objects).
    code = ("import atexit, click, agricredit.cli.main as m\n"
            "atexit.register(lambda: print('handler ran'))\n"
            "@click.command()\n"
            "def lines():\n"
            "    m.keep_until_exit(list(range(10)))\n"
            "    for k in range(20000): click.echo(f'line {k}')\n"
            "m.AgricreditGroup.get_command = lambda self, ctx, name: lines\n"
            "m.main()\n"
            "print('not reached')\n")
    result = _script("lines", code=code)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [f"line {k}" for k in range(20000)] + ["handler ran"]


def test_a_string_exit_is_printed_and_exits_1():
    code = "import sys, agricredit.cli.main as m\nm.cli = lambda: sys.exit('stopped: reason')\nm.main()\n"
    result = _script(code=code)
    assert (result.returncode, result.stderr) == (1, "stopped: reason\n")


def test_results_are_kept_only_when_the_process_ends_with_the_command(monkeypatch):
    import gc
    import weakref

    class Result:
        pass

    monkeypatch.setattr(cli_main, "_KEPT", [])
    kept_in_process = Result()
    ref = weakref.ref(kept_in_process)
    cli_main.keep_until_exit(kept_in_process)
    del kept_in_process
    gc.collect()
    assert ref() is None  # tests and CliRunner: nothing lingers
    monkeypatch.setattr(cli_main, "_ENDS_PROCESS", True)
    kept = Result()
    cli_main.keep_until_exit(kept)
    assert cli_main._KEPT == [kept]
