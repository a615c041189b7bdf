"""``agricredit season PLOTS TILES... -o OUT``: phenology, crop ranking and satellite checks per plot."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from pathlib import Path
from typing import Any

import click
import pandas as pd

from agricredit.cli.options import output_opt, progress_opt
from agricredit.errors import SchemaError
from agricredit.season import assess_season, discover_acquisitions, observation_table, season_chart

log = logging.getLogger(__name__)

#: Output columns first in this order (the per-crop fit columns follow).
LEAD_COLUMNS = ["plot_id", "declared_crop", "flags", "best_crop", "crop_ranking", "best_score", "declared_score",
                "n_acquisitions", "n_valid", "n_valid_in_window", "window_start", "window_end", "pixel_count",
                "peak_ndvi", "peak_date", "greenup_date", "senescence_date", "season_length_days", "ndvi_integral",
                "base_ndvi", "amplitude", "cropped_area_mu_at_peak", "drawn_area_mu", "cropped_share",
                "fitted_peak_ndvi", "vigor_peak_ndvi", "peer_count", "peer_median_peak", "peak_percentile", "vigor_factor",
                "flag_figures"]

season_period_opts = [
    click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None,
                 help="First acquisition date used (YYYY-MM-DD); a season may cross 1 January."),
    click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last acquisition date used."),
    click.option("--min-valid", type=click.FloatRange(0, 1), default=None,
                 help="Drop observations with a smaller valid fraction [default: policy satellite.min_valid_fraction]."),
    click.option("--smooth", type=click.Choice(["none", "savgol", "whittaker"]), default="none", show_default=True,
                 help="Smoothing of the series before reading phenology dates."),
    click.option("--id-field", default="plot_id", show_default=True, help="Column of the plot file holding the plot ID."),
    click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="Policy TOML [default: seeds/policy.toml]."),
]


def apply_options(options: list) -> Any:
    """Decorate a command with a list of click options (in order)."""

    def decorate(function: Any) -> Any:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def satellite_kwargs(policy_path: str | None, **overrides: Any) -> dict[str, Any]:
    """The policy's ``[satellite]`` numbers that :func:`assess_season` takes, with CLI overrides."""
    from agricredit.policy import load_policy

    satellite = dataclasses.asdict(load_policy(policy_path).satellite)
    accepted = inspect.signature(assess_season).parameters
    kwargs = {key: value for key, value in satellite.items() if key in accepted}
    kwargs.update({key: value for key, value in overrides.items() if value is not None})
    return kwargs


def season_long_table(plots_path: str, tiles: tuple[str, ...], *, id_field: str, start: Any, end: Any,
                      progress: bool) -> tuple[Any, Any, pd.DataFrame, list]:
    """Load plots, discover acquisitions, run the zonal engine.

    Returns ``(checked plots, accepted plots, long table, acquisitions)``.
    """
    from agricredit.plots import accepted, load_plots

    acquisitions = discover_acquisitions(list(tiles), start.date() if start else None, end.date() if end else None)
    if not acquisitions:
        raise click.BadParameter("no acquisitions in the given period", param_hint="TILES")
    checked = load_plots(plots_path, id_field=id_field)
    good = accepted(checked)
    log.info("%d plots, %d dates", len(good), len(acquisitions))
    if progress:
        import sys

        with click.progressbar(length=len(acquisitions), label="dates", file=sys.stderr) as bar:
            table = observation_table(good, acquisitions, progress=lambda done, total: bar.update(1))
    else:
        table = observation_table(good, acquisitions)
    return checked, good, table, acquisitions


def drawn_area_mu(plots: Any) -> dict[str, float]:
    """Geodesic area (mu) of each accepted plot."""
    from agricredit.plots import geodesic_area_perimeter, to_wgs84

    area_m2, _ = geodesic_area_perimeter(to_wgs84(plots).geometry.values)
    return dict(zip(plots["plot_id"].astype(str), area_m2 / 10_000.0 * 15.0))


def read_declared_crops(path: str) -> dict[str, str]:
    """``plot_id`` → declared crop from a CSV/xlsx/Parquet with ``plot_id, declared_crop`` (encoding detected)."""
    import io

    from agricredit.tables import read_text

    if Path(path).suffix.lower() in (".xlsx", ".parquet"):
        frame = pd.read_excel(path, dtype=str) if path.lower().endswith(".xlsx") else pd.read_parquet(path)
    else:
        frame = pd.read_csv(io.StringIO(read_text(path)), dtype=str, keep_default_na=False)
    missing = {"plot_id", "declared_crop"} - set(frame.columns)
    if missing:
        raise SchemaError(f"missing columns {sorted(missing)}", path=path)
    duplicated = frame["plot_id"].duplicated()
    if duplicated.any():
        raise SchemaError("plot declared twice", path=path, record=f"row {int(duplicated.to_numpy().argmax()) + 2}")
    return {str(p): str(c).strip().lower() for p, c in zip(frame["plot_id"], frame["declared_crop"]) if str(c).strip()}


def write_plots_output(plots_table: pd.DataFrame, good: Any, output: Path) -> None:
    """Write the per-plot table as CSV/Parquet, or GeoJSON with the plots' WGS84 geometry."""
    from agricredit.cli._tables import output_kind, write_geojson, write_table
    from agricredit.plots import to_wgs84

    ordered = plots_table[[c for c in LEAD_COLUMNS if c in plots_table] + [c for c in plots_table if c not in LEAD_COLUMNS]]
    if output_kind(output) == "geojson":
        geometry = dict(zip(good["plot_id"].astype(str), to_wgs84(good).geometry.values))
        write_geojson([{"geometry": geometry.get(row["plot_id"]), "properties": row}
                       for row in ordered.to_dict("records")], output)
    else:
        write_table(ordered, output)


@click.command()
@click.argument("plots", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("tiles", nargs=-1, required=True, type=click.Path(exists=True))
@output_opt
@apply_options(season_period_opts)
@click.option("--declarations", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Table with plot_id, declared_crop (CSV in any common encoding, xlsx or Parquet).")
@click.option("--crop-model", type=click.Path(exists=True, file_okay=False), default=None,
              help="A model folder from `agricredit train-crop`: rank crops by its probabilities.")
@click.option("--plot-id", default=None, help="With --chart: the plot to draw.")
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG of the plot's observations against each fitted crop template.")
@progress_opt
def command(plots: str, tiles: tuple[str, ...], output: Path, start: Any, end: Any, min_valid: float | None,
            smooth: str, id_field: str, policy_path: str | None, declarations: str | None,
            crop_model: str | None, plot_id: str | None, chart: Path | None, progress: bool) -> None:
    """Per plot: phenology, crop ranking and the satellite checks of a season.

    TILES are files, folders, a manifest CSV (date,sensor,path) or a STAC JSON.
    OUT is .csv, .parquet or .geojson: one row per plot with peak NDVI and
    date, green-up / senescence (50 % of amplitude), season length, NDVI
    integral, cropped area at the peak, the crop ranking, the vigor factor and
    the flags NOT_CULTIVATED, CROP_MISMATCH, LOW_VIGOR, CLOUD_INSUFFICIENT
    (their figures in flag_figures). Policy numbers come from the policy file.
    """
    from agricredit.cli.main import PartialSuccess

    if (plot_id is None) != (chart is None):
        raise click.UsageError("--plot-id and --chart go together")
    kwargs = satellite_kwargs(policy_path, min_valid_fraction=min_valid)
    declared = read_declared_crops(declarations) if declarations else {}
    model = None
    if crop_model:
        from agricredit.crop_model import load_crop_model

        model = load_crop_model(crop_model)
    checked, good, table, _ = season_long_table(plots, tiles, id_field=id_field, start=start, end=end, progress=progress)
    ids = good["plot_id"].astype(str).tolist()
    unknown = sorted(set(declared) - set(checked["plot_id"].astype(str)))
    if unknown:
        log.warning("%d declared plot(s) are not in the plot file", len(unknown))
    result = assess_season(table, {p: declared[p] for p in ids if p in declared}, drawn_area_mu(good), plot_ids=ids,
                           smoothing=smooth, crop_model=model, **kwargs)
    write_plots_output(result.plots, good, output)
    if chart is not None:
        season_chart(result, plot_id, chart)
    counts = result.plots["flags"].str.split(";").explode().value_counts()
    log.info("flags: %s", ", ".join(f"{code} {n}" for code, n in counts.items() if code) or "none")
    rejected = checked.loc[~checked.index.isin(good.index)]
    if len(rejected):
        click.echo(f"{len(rejected)} plot(s) rejected for their geometry: {', '.join(map(str, rejected['plot_id']))}", err=True)
        raise PartialSuccess()
