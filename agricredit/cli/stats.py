"""``agricredit stats PLOTS TILES... -o OUT``: coverage-weighted NDVI statistics per plot per date."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import click

from agricredit.cli.options import (
    baseline_callback,
    id_field_opt,
    no_bom_opt,
    output_opt,
    overwrite_opt,
    period_opts,
    plots_crs_opt,
    progress_opt,
    sensor_opt,
)

log = logging.getLogger(__name__)

#: Sources that date their own tiles (a manifest's date column, STAC datetimes): --date does not apply.
_SELF_DATED = (".csv", ".json", ".geojson")


def _acquisitions(tiles: tuple[str, ...], date: dt.date | None, start: dt.date | None, end: dt.date | None,
                  **reader_options: Any) -> list:
    """The acquisitions of TILES as ``season`` finds them, within ``start``/``end``; ``date`` dates them as one.

    Without ``date`` an undated tile is an error naming it. With ``date`` the
    tiles must be one acquisition: their own dates (if any) are overridden, and
    tiles of several dates are a usage error.
    """
    from agricredit.errors import MissingMetadataError
    from agricredit.acquisitions import discover_acquisitions

    if date is not None and any(Path(t).suffix.lower() in _SELF_DATED for t in tiles):
        raise click.UsageError("--date dates raster files and product folders; a manifest CSV or STAC JSON "
                               "dates its own tiles")
    if date is not None and (start is not None or end is not None):
        raise click.UsageError("--date names the one acquisition; --start/--end select among dated ones")
    try:
        acquisitions = discover_acquisitions(list(tiles), start, end, **reader_options)
    except MissingMetadataError as error:
        if date is None:
            raise MissingMetadataError("no acquisition date; pass --date or put YYYYMMDD in the file name",
                                       path=error.path) from error
        return discover_acquisitions(list(tiles), date=date, **reader_options)
    if date is not None and len(acquisitions) > 1:
        raise click.UsageError(f"--date applies to one acquisition; the tiles hold {len(acquisitions)} dates "
                               f"({acquisitions[0].date} … {acquisitions[-1].date})")
    if date is not None and acquisitions:
        acquisitions = [dataclasses.replace(acquisitions[0], date=date)]
    return acquisitions


@click.command()
@click.argument("plots", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("tiles", nargs=-1, required=True, type=click.Path(exists=True))
@output_opt
@id_field_opt
@plots_crs_opt
@click.option("--threshold", type=click.FloatRange(-1, 1), default=None,
              help="NDVI at or above which covered area counts as cropped [default: from the crop table].")
@click.option("--date", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Acquisition date (YYYY-MM-DD) of the tiles when they are one acquisition; overrides metadata.")
@period_opts
@sensor_opt
@click.option("--processing-baseline", callback=baseline_callback, metavar="NN.NN", default=None,
              help="Sentinel-2 processing baseline when the product carries none.")
@overwrite_opt
@no_bom_opt
@progress_opt
def command(plots: str, tiles: tuple[str, ...], output: Path, id_field: str, plots_crs: str | None,
            threshold: float | None, date: dt.datetime | None, start: dt.date | None, end: dt.date | None,
            sensor: str | None, processing_baseline: str | None, overwrite: bool, no_bom: bool,
            progress: bool | None) -> None:
    """Per plot per date: NDVI mean/median/p90, valid and cloud fractions, cropped area.

    TILES are files (NDVI rasters from `agricredit ndvi` or raw products),
    folders, a manifest CSV (date,sensor,path) or a STAC JSON, found as
    `season` finds them. A tile's date comes from the manifest, its metadata
    (ACQUISITION_DATE tag) or a YYYYMMDD / YYYY-MM-DD in its file name; --date
    dates tiles that are one acquisition (needed when they carry no date);
    --start/--end keep the dates between them. Tiles of one date are
    mosaicked; dates are never mixed. OUT is .csv or .parquet (one row per
    plot and date) or .geojson (one feature per plot, dates nested). Every
    accepted plot is in OUT: a plot outside every tile of a date gets
    covered_frac 0, no NDVI and the flag NOT_COVERED. Rejected plots are
    listed on stderr; the exit code is then 3.

    \b
    Examples:
      agricredit stats plots.geojson season/manifest.csv -o stats.csv
      agricredit stats plots.geojson tiles/ --start 2023-05-01 --end 2023-09-30 -o stats.parquet
      agricredit stats plots.geojson ndvi.tif --date 2023-07-30 -o - > stats.geojson
    """
    from agricredit.cli._tables import exit_if_rejected
    from agricredit.cli.season import observe
    from agricredit.outputs import check_output_file, output_kind, write_plot_dates
    from agricredit.plots import accepted, load_plots
    from agricredit.zonal import NOT_COVERED

    output_kind(output)  # an unknown output type fails before any work
    check_output_file(output, [plots, *tiles], overwrite=overwrite)
    reader = {k: v for k, v in (("sensor", sensor), ("processing_baseline", processing_baseline)) if v is not None}
    acquisitions = _acquisitions(tiles, None if date is None else date.date(), start, end, **reader)
    if not acquisitions:
        raise click.BadParameter("no tiles found" + (" in the given period" if start or end else ""),
                                 param_hint="TILES")
    checked = load_plots(plots, id_field=id_field, plots_crs=plots_crs)
    good = accepted(checked)
    table = observe(good, acquisitions, progress, threshold=threshold, keep_uncovered=True)
    missing = sorted(set(good["plot_id"]) - set(table.loc[table["flags"] != NOT_COVERED, "plot_id"]))
    if missing:
        log.warning("%d plot(s) not covered by any tile (flag %s): %s", len(missing), NOT_COVERED,
                    ", ".join(map(str, missing[:20])) + (" …" if len(missing) > 20 else ""))
    write_plot_dates(table, good, output, bom=not no_bom)
    exit_if_rejected(checked)
