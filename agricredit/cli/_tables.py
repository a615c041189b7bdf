"""Shared by the commands that read plots: the run summary, thin sources, rejected plots and exit code 3."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

from agricredit.cli.main import PartialSuccess

log = logging.getLogger("agricredit")

#: A source holding records for fewer than this share of the assessable plots is worth a warning.
THIN_SOURCE_SHARE = 0.5


def summary(message: str) -> None:
    """Print the run's one-line summary on stderr (not with ``-q``: data stays alone on stdout)."""
    root = click.get_current_context().find_root()
    if not (isinstance(root.obj, dict) and root.obj.get("quiet")):
        click.echo(message, err=True)


def thin_sources(assessment: Any) -> dict[str, tuple[int, int]]:
    """Sources with records for under :data:`THIN_SOURCE_SHARE` of the assessable plots → ``(covered, plots)``
    (``assessment.coverage``: :func:`agricredit.facts.source_coverage`).

    A registry with one row for 319 plots sends every borrower to review: the
    run completes, and says why.
    """
    return {source: (n, plots) for source, (n, plots) in assessment.coverage.items()
            if plots and n < THIN_SOURCE_SHARE * plots}


def warn_thin_sources(assessment: Any) -> None:
    """Warn (one line per source) when a source covers under half of the assessable plots."""
    for source, (covered, total) in thin_sources(assessment).items():
        log.warning("the %s covers %d of %d assessable plots: the others go to review; check the %s input",
                    source, covered, total, source)


def exit_if_rejected(rejected: Any | Mapping[str, Sequence[str]]) -> None:
    """List the rejected plots on stderr by reason and exit with code 3 (call it after the outputs are written).

    Parameters
    ----------
    rejected
        The checked plots (:func:`agricredit.plots.load_plots`), or reason code →
        plot IDs as :func:`agricredit.plots.rejected_ids` gives (``Assessment.rejected``).
    """
    if not isinstance(rejected, Mapping):
        from agricredit.plots import rejected_ids

        rejected = rejected_ids(rejected)
    if not rejected:
        return
    for code, ids in sorted(rejected.items()):
        click.echo(f"rejected {code} ({len(ids)}): {', '.join(ids)}", err=True)
    sys.stdout.flush()
    raise PartialSuccess()
