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

#: ``--id-field``: the plot file's ID column.
id_field_opt = click.option(
    "--id-field",
    default="plot_id",
    show_default=True,
    help="Column of the plot file holding the plot ID.",
)

#: ``--plots-crs``: plots drawn on Chinese phone maps (GCJ-02 / BD-09 lon/lat) are converted to WGS84.
plots_crs_opt = click.option(
    "--plots-crs",
    type=click.Choice(["gcj02", "bd09"], case_sensitive=False),
    default=None,
    help="Plot coordinates are GCJ-02 (AMap, Tencent) or BD-09 (Baidu) longitude/latitude; convert to WGS84.",
)
