"""The ``agricredit`` command group.

Commands are discovered from the modules of :mod:`agricredit.cli`: a module
``foo_bar.py`` defining a click command named ``command`` becomes
``agricredit foo-bar``. A command module imports only click and
:mod:`agricredit.cli.options` at the top; the library (numpy, pandas,
rasterio ...) is imported inside the command body, so ``agricredit --help``
and ``--version`` start fast (``scripts/bench/bench_startup.py``).
"""

from __future__ import annotations

import atexit
import functools
import importlib
import logging
import os
import pkgutil
import sys
import warnings

import click

from agricredit import __version__
from agricredit.errors import AgricreditError

#: Modules of this package that are not commands.
_NOT_COMMANDS = frozenset({"main", "options"})

#: Exit code when the job finished but some records were rejected or sent to review-with-error.
EXIT_PARTIAL = 3

#: Exit code after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130

log = logging.getLogger("agricredit")

#: What a command handed to :func:`keep_until_exit` (only when :func:`main` ends the process after it).
_KEPT: list[object] = []
_ENDS_PROCESS = False


class PartialSuccess(click.exceptions.Exit):
    """Raise from a command whose job finished with rejected records (exit code 3)."""

    def __init__(self) -> None:
        super().__init__(EXIT_PARTIAL)


@functools.cache
def _command_modules() -> dict[str, str]:
    import agricredit.cli as package

    return {
        info.name.replace("_", "-"): f"{package.__name__}.{info.name}"
        for info in pkgutil.iter_modules(package.__path__)
        if info.name not in _NOT_COMMANDS and not info.name.startswith("_")
    }


def _redact(message: str) -> str:
    from agricredit.privacy import redact

    return redact(message)


class AgricreditGroup(click.Group):
    """A click group that finds commands lazily and maps library errors, Ctrl-C and warnings to exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_command_modules())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = _command_modules().get(cmd_name)
        if module_name is None:
            return None
        return importlib.import_module(module_name).command

    def invoke(self, ctx: click.Context):
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except AgricreditError as error:
            # One line, no traceback (unless -vv), the exit code of the error class.
            log.debug("traceback", exc_info=True)
            click.echo(f"Error: {_redact(error.one_line())}", err=True)
            ctx.exit(error.exit_code)
        except OSError as error:  # disk full, permission denied ... wherever it happens
            log.debug("traceback", exc_info=True)
            where = f"{error.filename}: " if error.filename else ""
            click.echo(f"Error: {_redact(where + (error.strerror or str(error)))}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            # Outputs are staged and published last, so nothing partial is left behind.
            click.echo("Interrupted: no output was written or replaced.", err=True)
            ctx.exit(EXIT_INTERRUPTED)


#: Library warnings → our own one-line messages (the category's name says which; the text is the library's).
_WARNING_MESSAGES = {
    "NotGeoreferencedWarning": "a raster has no georeferencing (no CRS or transform); its pixels cannot be "
                               "placed on the map",
}


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file=None, line: str | None = None) -> None:
    """Log a library warning as one line of our own on the ``agricredit`` logger (no source path or line)."""
    text = _WARNING_MESSAGES.get(category.__name__, str(message).strip().splitlines()[0] if str(message) else "")
    origin = category.__module__.split(".")[0]
    log.warning("%s (%s %s)", text, origin, category.__name__)


class _LazyRedaction(logging.Filter):
    """:class:`agricredit.privacy.RedactPII`, imported at the first record so that ``--help`` stays light."""

    def filter(self, record: logging.LogRecord) -> bool:
        from agricredit.privacy import RedactPII

        return RedactPII().filter(record)


def verbosity_level(verbose: int, quiet: int) -> int:
    """The log level of ``-v``/``-q`` counts: -vv DEBUG, -v INFO, default WARNING, -q ERROR, -qq CRITICAL.

    Quieter never means more output: ``-qq`` is the quietest level, not a wrap-around to DEBUG.
    """
    return {2: logging.DEBUG, 1: logging.INFO, 0: logging.WARNING, -1: logging.ERROR}.get(
        max(min(verbose - quiet, 2), -2), logging.CRITICAL)


#: Libraries that report through logging (GDAL messages via rasterio): shown as our one-line records, WARNING and up.
_LIBRARY_LOGGERS = ("rasterio", "pyogrio", "fiona")


def _configure_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_LazyRedaction())  # no national ID or phone number reaches stderr, whatever a message holds
    for name, logger_level in (("agricredit", level), *((n, max(level, logging.WARNING)) for n in _LIBRARY_LOGGERS)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logger_level)
        logger.propagate = False


@click.group(cls=AgricreditGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="agricredit")
@click.option("-v", "--verbose", count=True, help="More log on stderr: -v info (stage lines without bars), -vv debug "
                                                   "with tracebacks.")
@click.option("-q", "--quiet", count=True, help="Less on stderr: -q no warnings, bars or summary; -qq no log at all "
                                                 "(the Error line and rejected records still show).")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: int) -> None:
    """Cross-verified credit limits for farmers from satellite tiles, plots and registries.

    Data goes to stdout or -o; logs and progress go to stderr (progress bars
    on a terminal, off with -q or --no-progress). Exit codes: 0 done, 1
    failed, 2 usage error, 3 done but some records were rejected, 130
    interrupted (Ctrl-C; no partial output is left).

    \b
    Examples:
      agricredit assess --sample -o out
      agricredit stats plots.geojson season/manifest.csv -o stats.csv
      agricredit COMMAND --help
    """
    ctx.obj = {"quiet": quiet}
    _configure_logging(verbosity_level(verbose, quiet))


def keep_until_exit(*objects: object) -> None:
    """Keep ``objects`` (a command's results) alive until the process ends, when the command runs under
    :func:`main`: a county's run holds millions of objects, whose freeing one by one when the command returns
    takes seconds and changes nothing. Called in-process (tests, :class:`click.testing.CliRunner`), nothing is kept.
    """
    if _ENDS_PROCESS:
        _KEPT.extend(objects)


def main() -> None:
    """The ``agricredit`` console script (and ``python -m agricredit``): :func:`cli`, then the process ends with
    its exit code once the streams are flushed and the exit handlers have run (logging, Dask, multiprocessing),
    without tearing its objects down one by one (seconds at county scale; the outputs are all written by then)."""
    global _ENDS_PROCESS
    _ENDS_PROCESS = True
    try:
        cli()
        code: object = 0
    except SystemExit as stop:
        code = stop.code
    if code is None:
        code = 0
    elif not isinstance(code, int):  # as the interpreter does with sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
