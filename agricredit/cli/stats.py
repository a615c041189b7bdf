"""``agricredit stats PLOTS TILES... -o OUT``: coverage-weighted NDVI statistics per plot per date."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from agricredit.cli._tables import exit_if_rejected
from agricredit.cli.options import id_field_opt, output_opt, plots_crs_opt, progress_opt
from agricredit.outputs import output_kind, write_plot_dates
from agricredit.plots import accepted, load_plots
from agricredit.zonal import open_tile, zonal_stats

log = logging.getLogger(__name__)


@click.command()
@click.argument("plots", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("tiles", nargs=-1, required=True, type=click.Path(dir_okay=True))
@output_opt
@id_field_opt
@plots_crs_opt
@click.option("--threshold", type=click.FloatRange(-1, 1), default=None,
              help="NDVI at or above which covered area counts as cropped [default: from the crop table].")
@progress_opt
def command(plots: str, tiles: tuple[str, ...], output: Path, id_field: str, plots_crs: str | None,
            threshold: float | None, progress: bool) -> None:
    """Per plot per date: NDVI mean/median/p90, valid and cloud fractions, cropped area.

    TILES are NDVI rasters (from `agricredit ndvi`) or raw products; their date
    comes from the ACQUISITION_DATE tag or a YYYYMMDD / YYYY-MM-DD in the file
    name. Tiles of one date are mosaicked; dates are never mixed. OUT is .csv
    or .parquet (one row per plot and date) or .geojson (one feature per plot,
    dates nested). Rejected plots are listed on stderr; the exit code is then 3.
    """
    output_kind(output)  # an unknown output type fails before any work
    checked = load_plots(plots, id_field=id_field, plots_crs=plots_crs)
    good = accepted(checked)
    opened = [open_tile(path) for path in tiles]
    if progress:
        with click.progressbar(length=len({t.date for t in opened}), label="dates", file=sys.stderr) as bar:
            table = zonal_stats(good, opened, threshold=threshold, progress=lambda done, total: bar.update(1))
    else:
        table = zonal_stats(good, opened, threshold=threshold)
    missing = sorted(set(good["plot_id"]) - set(table["plot_id"]))
    if missing:
        log.warning("%d plot(s) not covered by any tile: %s", len(missing), ", ".join(missing[:20]))
    write_plot_dates(table, good, output)
    exit_if_rejected(checked)
