"""Shared by ``area``, ``stats`` and ``season``: listing rejected plots and exit code 3."""

from __future__ import annotations

import click
import pandas as pd

from agricredit.cli.main import PartialSuccess
from agricredit.outputs import output_kind, write_geojson, write_table  # noqa: F401  (re-exported for the commands)
from agricredit.plots import rejected_ids

def exit_if_rejected(checked: pd.DataFrame) -> None:
    """List the rejected plots on stderr by reason and exit with code 3 (after the outputs are written)."""
    rejected = rejected_ids(checked)
    if not rejected:
        return
    for code, ids in sorted(rejected.items()):
        click.echo(f"rejected {code} ({len(ids)}): {', '.join(ids)}", err=True)
    raise PartialSuccess()
