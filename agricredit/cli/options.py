"""Options shared by several commands (the rasterio ``rio`` convention)."""

from __future__ import annotations

from pathlib import Path

import click

#: ``-o/--output``: a file path; ``-`` (stdout) is allowed only where the command says so.
output_opt = click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(dir_okay=True, writable=True, path_type=Path, allow_dash=True),
    help="Output path.",
)

#: ``--progress/--no-progress``: progress bars on stderr.
progress_opt = click.option(
    "--progress/--no-progress",
    default=False,
    show_default=True,
    help="Show a progress bar on stderr.",
)
