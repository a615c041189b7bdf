"""The ``agricredit`` command group.

Commands are discovered from the modules of :mod:`agricredit.cli`: a module
``foo_bar.py`` defining a click command named ``command`` becomes
``agricredit foo-bar``. Modules are imported only when their command runs (or
``--help`` lists them), so ``agricredit --version`` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys

import click

from agricredit import __version__
from agricredit.errors import AgricreditError
from agricredit.privacy import install_redaction, redact

#: Modules of this package that are not commands.
_NOT_COMMANDS = frozenset({"main", "options"})

#: Exit code when the job finished but some records were rejected or sent to review-with-error.
EXIT_PARTIAL = 3


class PartialSuccess(click.exceptions.Exit):
    """Raise from a command whose job finished with rejected records (exit code 3)."""

    def __init__(self) -> None:
        super().__init__(EXIT_PARTIAL)


def _command_modules() -> dict[str, str]:
    import agricredit.cli as package

    return {
        info.name.replace("_", "-"): f"{package.__name__}.{info.name}"
        for info in pkgutil.iter_modules(package.__path__)
        if info.name not in _NOT_COMMANDS and not info.name.startswith("_")
    }


class AgricreditGroup(click.Group):
    """A click group that finds commands lazily and maps library errors to exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_command_modules())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = _command_modules().get(cmd_name)
        if module_name is None:
            return None
        return importlib.import_module(module_name).command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AgricreditError as error:
            # One line, no traceback (unless -v -v), the exit code of the error class.
            logging.getLogger("agricredit").debug("traceback", exc_info=True)
            click.echo(f"Error: {redact(error.one_line())}", err=True)
            ctx.exit(error.exit_code)
        except OSError as error:  # disk full, permission denied ... wherever it happens
            logging.getLogger("agricredit").debug("traceback", exc_info=True)
            where = f"{error.filename}: " if error.filename else ""
            click.echo(f"Error: {redact(where + (error.strerror or str(error)))}", err=True)
            ctx.exit(1)


def _configure_logging(verbosity: int) -> None:
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("agricredit")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    install_redaction()  # no national ID or phone number reaches stderr, whatever a message holds


@click.group(cls=AgricreditGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="agricredit")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("-q", "--quiet", count=True, help="Only errors on stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: int) -> None:
    """Cross-verified credit limits for farmers from satellite tiles, plots and registries.

    Data goes to stdout or -o; logs and progress go to stderr. Exit codes:
    0 done, 1 failed, 2 usage error, 3 done but some records were rejected.
    """
    _configure_logging(verbose - quiet)
