"""``agricredit season PLOTS TILES... -o OUT``: phenology, crop ranking and satellite checks per plot."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import click

from agricredit.cli.options import no_bom_opt, output_opt, overwrite_opt, progress_opt, season_opts

log = logging.getLogger(__name__)


def load_season_plots(plots_path: str, *, id_field: str, plots_crs: str | None,
                      repair_max_area_change: float) -> tuple[Any, Any]:
    """The checked plots and the accepted ones (cheap: no raster is read)."""
    from agricredit.plots import accepted, load_plots

    checked = load_plots(plots_path, id_field=id_field, plots_crs=plots_crs,
                         repair_max_area_change=repair_max_area_change)
    return checked, accepted(checked)


def season_acquisitions(tiles: tuple[str, ...], start: dt.date | None, end: dt.date | None,
                        sensor: str | None) -> list:
    """The acquisitions of TILES between ``start`` and ``end``; a usage error when there is none."""
    from agricredit.acquisitions import discover_acquisitions

    acquisitions = discover_acquisitions(list(tiles), start, end, **({"sensor": sensor} if sensor else {}))
    if not acquisitions:
        raise click.BadParameter("no acquisitions in the given period", param_hint="TILES")
    return acquisitions


def observe(good: Any, acquisitions: list, progress: bool | None, **zonal_options: Any) -> Any:
    """The zonal engine's long table of the accepted plots over the acquisitions, with a progress bar.

    ``zonal_options`` go to :func:`agricredit.acquisitions.observation_table` (``threshold``, ``keep_uncovered``).
    """
    from agricredit.cli._progress import Reporter
    from agricredit.cli.options import progress_enabled
    from agricredit.acquisitions import observation_table

    reporter = Reporter(progress_enabled(progress))
    reporter.stage(f"zonal statistics: {len(good)} plots x {len(acquisitions)} dates")
    try:
        return observation_table(good, acquisitions, progress=reporter.counter("zonal statistics", "date"),
                                 **zonal_options)
    finally:
        reporter.close()


@click.command()
@click.argument("plots", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("tiles", nargs=-1, required=True, type=click.Path(exists=True))
@output_opt
@season_opts
@click.option("--declarations", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Declarations table (borrower_id, plot_id, declared_crop, declared_area, area_unit; "
                   "CSV in any common encoding, xlsx or Parquet). Crops by code or Chinese name.")
@click.option("--crop-model", type=click.Path(exists=True, file_okay=False), default=None,
              help="A model folder from `agricredit train-crop`: rank crops by its probabilities.")
@click.option("--plot-id", default=None, help="With --chart: the plot to draw.")
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG of the plot's observations against each fitted crop template.")
@overwrite_opt
@no_bom_opt
@progress_opt
def command(plots: str, tiles: tuple[str, ...], output: Path, start: dt.date | None, end: dt.date | None,
            sensor: str | None, min_valid: float | None, smooth: str, id_field: str, plots_crs: str | None,
            policy_path: str | None, encodings: dict[str, str], declarations: str | None, crop_model: str | None,
            plot_id: str | None, chart: Path | None, overwrite: bool, no_bom: bool, progress: bool | None) -> None:
    """Per plot: phenology, crop ranking and the satellite checks of a season.

    TILES are files, folders, a manifest CSV (date,sensor,path) or a STAC JSON.
    OUT is .csv, .parquet or .geojson: one row per plot with peak NDVI and
    date, green-up / senescence (50 % of amplitude), season length, NDVI
    integral, cropped area at the peak, the crop ranking, the vigor factor and
    the flags NOT_CULTIVATED, CROP_MISMATCH, LOW_VIGOR, CLOUD_INSUFFICIENT
    (their figures in flag_figures). Policy numbers come from the policy file.
    A plot declared by several borrowers takes the declaration of its
    borrower_id in the plot file. Exit code 3: done, but some plots were rejected.

    \b
    Examples:
      agricredit season plots.geojson season/manifest.csv -o season.csv
      agricredit season plots.geojson tiles/ --start 2023-04-01 --end 2023-10-31 \\
          --declarations declarations.csv -o season.geojson --plot-id P0001 --chart p0001.png
    """
    from agricredit.cli._tables import exit_if_rejected
    from agricredit.outputs import check_output_file, output_kind, write_plot_table
    from agricredit.plots import area_mu
    from agricredit.policy import load_policy
    from agricredit.charts import season_chart
    from agricredit.season import assess_season, resolve_region, season_options, season_plot_table
    from agricredit.seeds import crop_aliases
    from agricredit.tables import declared_crop_by_plot, read_declarations

    if (plot_id is None) != (chart is None):
        raise click.UsageError("--plot-id and --chart go together")
    output_kind(output)  # an unknown output type fails before any work
    inputs = [plots, *tiles, *(p for p in (declarations, crop_model, policy_path) if p)]
    for path in (output, chart):
        if path is not None:
            check_output_file(path, inputs, overwrite=overwrite)
    policy = load_policy(policy_path)
    options = season_options(policy, min_valid_fraction=min_valid)
    declared = None
    if declarations:
        declared = read_declarations(declarations, known_crops=crop_aliases(),
                                     encoding=encodings.get("declarations", encodings.get("*")))
    model = None
    if crop_model:
        from agricredit.crop_model import load_crop_model

        model = load_crop_model(crop_model)
    checked, good = load_season_plots(plots, id_field=id_field, plots_crs=plots_crs,
                                      repair_max_area_change=policy.area.repair_max_area_change)
    ids = good["plot_id"].astype(str).tolist()
    options["region"] = resolve_region(options["region"], good)
    if plot_id is not None and plot_id not in ids:
        raise click.BadParameter(f"plot {plot_id!r} is not among the accepted plots of {plots}", param_hint="'--plot-id'")
    acquisitions = season_acquisitions(tiles, start, end, sensor)
    table = observe(good, acquisitions, progress)
    crops: dict[str, str] = {}
    if declared is not None:
        unknown = set(declared["plot_id"]) - set(checked["plot_id"].dropna().astype(str))
        if unknown:
            log.warning("%d declared plot(s) are not in the plot file", len(unknown))
        borrower_of = dict(zip(good["plot_id"], good["borrower_id"])) if "borrower_id" in good else None
        crops = declared_crop_by_plot(declared, borrower_of, plot_ids=ids)
    result = assess_season(table, crops, area_mu(good).to_dict(), plot_ids=ids, smoothing=smooth,
                           crop_model=model, **options)
    write_plot_table(season_plot_table(result, good), output, decimals=None, bom=not no_bom)
    if chart is not None:
        season_chart(result, plot_id, chart)
    counts = result.plots["flags"].str.split(";").explode().value_counts()
    log.info("flags: %s", ", ".join(f"{code} {n}" for code, n in counts.items() if code) or "none")
    exit_if_rejected(checked)
