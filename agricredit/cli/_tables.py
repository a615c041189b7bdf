"""Shared by the commands that read plots: listing rejected plots and exit code 3."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import click
import pandas as pd

from agricredit.cli.main import PartialSuccess
from agricredit.plots import rejected_ids


def exit_if_rejected(rejected: pd.DataFrame | Mapping[str, Sequence[str]]) -> None:
    """List the rejected plots on stderr by reason and exit with code 3 (call it after the outputs are written).

    Parameters
    ----------
    rejected
        The checked plots (:func:`agricredit.plots.load_plots`), or reason code →
        plot IDs as :func:`agricredit.plots.rejected_ids` gives (``Assessment.rejected``).
    """
    if isinstance(rejected, pd.DataFrame):
        rejected = rejected_ids(rejected)
    if not rejected:
        return
    for code, ids in sorted(rejected.items()):
        click.echo(f"rejected {code} ({len(ids)}): {', '.join(ids)}", err=True)
    sys.stdout.flush()
    raise PartialSuccess()
