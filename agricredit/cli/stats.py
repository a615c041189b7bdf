"""``agricredit stats PLOTS TILES... -o OUT``: coverage-weighted NDVI statistics per plot per date."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from agricredit.cli._tables import exit_if_rejected, output_kind, write_geojson, write_table
from agricredit.cli.options import id_field_opt, output_opt, plots_crs_opt, progress_opt
from agricredit.plots import accepted, load_plots, to_wgs84
from agricredit.zonal import default_threshold, open_tile, zonal_stats

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
    kind = output_kind(output)
    checked = load_plots(plots, id_field=id_field, plots_crs=plots_crs)
    good = accepted(checked)
    opened = [open_tile(path) for path in tiles]
    threshold = default_threshold() if threshold is None else threshold
    if progress:
        with click.progressbar(length=len({t.date for t in opened}), label="dates", file=sys.stderr) as bar:
            table = zonal_stats(good, opened, threshold=threshold, progress=lambda done, total: bar.update(1))
    else:
        table = zonal_stats(good, opened, threshold=threshold)
    missing = sorted(set(good["plot_id"]) - set(table["plot_id"]))
    if missing:
        log.warning("%d plot(s) not covered by any tile: %s", len(missing), ", ".join(missing[:20]))
    if kind == "geojson":
        per_plot = {pid: group.drop(columns="plot_id").to_dict("records") for pid, group in table.groupby("plot_id")}
        wgs = to_wgs84(good)
        write_geojson([{"geometry": g, "properties": {"plot_id": pid, "dates": per_plot.get(pid, [])}}
                       for pid, g in zip(wgs["plot_id"], wgs.geometry.values)], output)
    else:
        write_table(table, output)
    exit_if_rejected(checked)
