"""Options shared by several commands (the rasterio ``rio`` convention)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

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

def apply_options(options: list) -> Callable[[F], F]:
    """Decorate a command with a list of click options (in the listed order)."""

    def decorate(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


#: The season period, filtering and policy of ``season`` / ``train-crop``.
season_opts = apply_options([
    click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None,
                 help="First acquisition date used (YYYY-MM-DD); a season may cross 1 January."),
    click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last acquisition date used."),
    click.option("--min-valid", type=click.FloatRange(0, 1), default=None,
                 help="Drop observations with a smaller valid fraction [default: policy satellite.min_valid_fraction]."),
    click.option("--smooth", type=click.Choice(["none", "savgol", "whittaker"]), default="none", show_default=True,
                 help="Smoothing of the series before reading phenology dates."),
    id_field_opt,
    plots_crs_opt,
    click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="Policy TOML [default: seeds/policy.toml]."),
])


#: The inputs of ``assess`` / ``verify``, each overriding the case file's.
case_opts = apply_options([
    click.option("--plots", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Plot file (GeoJSON, GPKG, Shapefile, GeoParquet) with plot_id, borrower_id."),
    click.option("--tiles", multiple=True, type=click.Path(exists=True, path_type=Path), help="Season tiles: a folder, a manifest CSV (date,sensor,path), a STAC JSON or files; repeatable."),
    click.option("--registry", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Land registry table (CSV/xlsx/Parquet)."),
    click.option("--declarations", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Declarations table."),
    click.option("--borrowers", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Borrower table."),
    click.option("--policy", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Policy TOML [default: seeds/policy.toml]."),
    click.option("--crop-model", type=click.Path(exists=True, file_okay=False, path_type=Path), help="A model folder from `agricredit train-crop`: the crop check uses its probabilities."),
    click.option("--id-field", default=None, help="Plot ID column [default: plot_id]."),
    plots_crs_opt,
    click.option("--encoding", default=None, help="Encoding of the CSV tables [default: detected: UTF-8, else GB18030]."),
    click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First acquisition date used."),
    click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last acquisition date used."),
])


def resolve_case(case_file: Path | None, sample: bool, options: dict[str, Any]):
    """Build the :class:`agricredit.assess.Case` from a case file, ``--sample`` and the input options."""
    import dataclasses

    from agricredit.assess import Case, load_case, sample_case

    if case_file is not None and sample:
        raise click.UsageError("give a case file or --sample, not both")
    values: dict[str, Any] = {}
    if case_file is not None:
        values = dataclasses.asdict(load_case(case_file))
    elif sample:
        values = dataclasses.asdict(sample_case())
    for name, value in options.items():
        if value is None or value == ():
            continue
        if name in ("start", "end"):
            value = value.date()
        values[name] = tuple(value) if name == "tiles" else value
    missing = [name for name in ("plots", "tiles", "registry", "declarations", "borrowers") if not values.get(name)]
    if missing:
        raise click.UsageError(f"missing input --{missing[0]} (or give a case file, or --sample)")
    return Case(**values)


def sample_only(sample: bool, options: dict[str, Any]) -> bool:
    """Whether the run is on the bundled sample alone (``--sample`` and no other input file): only then are the
    public demo keys accepted, so that ``--sample --borrowers real.csv`` cannot lend them to real borrowers."""
    return sample and not any(options.get(name) for name in ("plots", "tiles", "registry", "declarations", "borrowers"))


def baseline_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Validate ``--processing-baseline`` (a Sentinel-2 baseline such as 04.00)."""
    from agricredit import sensors

    if value is not None and sensors.parse_baseline(value) is None:
        raise click.BadParameter(f"{value!r} is not a processing baseline (expected e.g. 04.00 or 02.14)",
                                 param_hint="'--processing-baseline'")
    return value
