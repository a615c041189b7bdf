"""Options shared by several commands, each defined once (the rasterio ``rio`` convention).

Callbacks turn raw strings into typed values or raise ``click.BadParameter``,
so command bodies get clean values and nothing expensive runs on a bad option.
This module imports only click and the standard library: ``--help`` stays fast.

============================  ==========================================================
option                        commands
============================  ==========================================================
``-o/--output``               area, stats, season, train-crop, verify (assess: a folder)
``--overwrite``               every command that writes
``--no-bom``                  every command that writes CSV
``--progress/--no-progress``  ndvi, stats, season, train-crop, verify, assess
``--start/--end``             stats, season, train-crop, verify, assess
``--sensor``                  ndvi, stats, season, train-crop, verify, assess
``--encoding``                season, train-crop, verify, assess (tables)
``--id-field``, ``--plots-crs``  every command that reads plots
============================  ==========================================================
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

#: Sensors of raw products (``agricredit.sensors.SENSORS``, written here so that --help does not import numpy).
SENSOR_NAMES = ("s2-l2a", "s2-l1c", "landsat-c2-l2", "landsat-c1", "generic")

#: Tables whose encoding ``--encoding TABLE=ENC`` may set.
TABLES = ("registry", "declarations", "borrowers", "labels", "input_purchases", "machinery", "sales", "customer_map")


def apply_options(options: list) -> Callable[[F], F]:
    """Decorate a command with a list of click options (in the listed order)."""

    def decorate(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


#: ``-o/--output``: a file path; ``-`` (stdout) is allowed only where the command says so.
output_opt = click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(dir_okay=True, writable=True, path_type=Path, allow_dash=True),
    help="Output path.",
)

#: ``--overwrite``: replace an existing output (never an input), as rio does.
overwrite_opt = click.option(
    "--overwrite",
    is_flag=True,
    help="Replace existing outputs (and write into a folder holding other files). Inputs are never replaced.",
)

#: ``--no-bom``: CSV without the UTF-8 byte-order mark (Excel on Chinese Windows needs it to read UTF-8).
no_bom_opt = click.option(
    "--no-bom",
    is_flag=True,
    help="Write CSV without the UTF-8 byte-order mark that tells Excel it is UTF-8 (for programs that choke on it).",
)

#: ``--progress/--no-progress``: bars with counts, rate and ETA on stderr; default: on when stderr is a terminal.
progress_opt = click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bars (count, rate, ETA) and stage lines on stderr [default: on when stderr is a terminal "
         "and without -q].",
)


def progress_enabled(value: bool | None) -> bool:
    """Whether to show progress: ``--progress``/``--no-progress`` if given, else stderr is a terminal and no ``-q``."""
    if value is not None:
        return value
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    quiet = bool(root and isinstance(root.obj, dict) and root.obj.get("quiet"))
    return not quiet and sys.stderr.isatty()


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


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=f"'{param.opts[0]}'") from None


def _end_date(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    end = _date(ctx, param, value)
    start = ctx.params.get("start")
    if end is not None and start is not None and end < start:
        raise click.BadParameter(f"{end} is before --start {start}", param_hint="'--end'")
    return end


#: ``--start/--end``: the acquisition dates used (inclusive), as ``datetime.date``.
period_opts = apply_options([
    click.option("--start", callback=_date, metavar="YYYY-MM-DD", is_eager=True,
                 help="First acquisition date used; a season may cross 1 January."),
    click.option("--end", callback=_end_date, metavar="YYYY-MM-DD", help="Last acquisition date used."),
])

#: ``--sensor``: the sensor of raw products whose sensor is not detected.
sensor_opt = click.option("--sensor", type=click.Choice(SENSOR_NAMES), default=None,
                          help="Sensor of raw products whose sensor is not detected (overrides detection).")


def _encodings(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """``ENC`` (every table) or ``TABLE=ENC`` (one table), repeatable → ``{table or "*": encoding}``."""
    import codecs

    encodings: dict[str, str] = {}
    for value in values:
        table, _, encoding = value.rpartition("=")
        table = table.strip().lower() or "*"
        if table != "*" and table not in TABLES:
            raise click.BadParameter(f"unknown table {table!r} (one of {', '.join(TABLES)})", param_hint="'--encoding'")
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise click.BadParameter(f"unknown text encoding {encoding!r}", param_hint="'--encoding'") from None
        encodings[table] = encoding.strip()
    return encodings


#: ``--encoding``: text encoding of CSV tables, all of them or one (``registry=gbk``); repeatable.
encoding_opt = click.option(
    "--encoding", "encodings", multiple=True, callback=_encodings, metavar="[TABLE=]ENC",
    help="Encoding of CSV tables: ENC for all, or TABLE=ENC for one (registry, declarations, borrowers, labels, "
         "input_purchases, machinery, sales, customer_map); "
         "repeatable [default: detected: UTF-8, else GB18030].")


#: The season period, filtering and policy of ``season`` / ``train-crop``.
season_opts = apply_options([
    period_opts,
    sensor_opt,
    click.option("--min-valid", type=click.FloatRange(0, 1), default=None,
                 help="Drop observations with a smaller valid fraction [default: policy satellite.min_valid_fraction]."),
    click.option("--smooth", type=click.Choice(["none", "savgol", "whittaker"]), default="none", show_default=True,
                 help="Smoothing of the series before reading phenology dates."),
    id_field_opt,
    plots_crs_opt,
    click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="Policy TOML [default: seeds/policy.toml]."),
    encoding_opt,
])


#: The inputs of ``assess`` / ``verify``, each overriding the case file's.
case_opts = apply_options([
    click.option("--sample", is_flag=True, help="Run on the bundled sample data (sample_tiles/case.toml)."),
    click.option("--plots", type=click.Path(exists=True, path_type=Path), help="Plot file (GeoJSON, GPKG, Shapefile, GeoParquet) with plot_id, borrower_id, or a folder of them (read in name order)."),
    click.option("--tiles", multiple=True, type=click.Path(exists=True, path_type=Path), help="Season tiles: a folder, a manifest CSV (date,sensor,path), a STAC JSON or files; repeatable."),
    click.option("--registry", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Land registry table (CSV/xlsx/Parquet)."),
    click.option("--declarations", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Declarations table."),
    click.option("--borrowers", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Borrower table."),
    click.option("--policy", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Policy TOML [default: seeds/policy.toml]."),
    click.option("--crop-model", type=click.Path(exists=True, file_okay=False, path_type=Path), help="A model folder from `agricredit train-crop`: the crop check uses its probabilities."),
    click.option("--input-purchases", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Industry-chain table: seed and fertiliser purchases (CSV/xlsx/Parquet)."),
    click.option("--machinery", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Industry-chain table: machinery services (ploughing, sowing, harvest)."),
    click.option("--sales", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Industry-chain table: produce sales of earlier seasons."),
    click.option("--customer-map", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Partners' customer IDs → borrower IDs, for chain rows with customer_id."),
    click.option("--id-field", default=None, help="Plot ID column [default: plot_id]."),
    plots_crs_opt,
    encoding_opt,
    period_opts,
    sensor_opt,
    click.option("--ephemeral-key", is_flag=True,
                 help="Without AGRICREDIT_PII_KEY, use a random pseudonym key (pseudonyms differ every run)."),
    overwrite_opt,
    progress_opt,
    click.option("--strict", is_flag=True,
                 help="Stop at the first bad table row, plot feature or tile (default: list it, reject or review its "
                      "records, finish the rest with exit code 3)."),
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
        if value is None or value == () or value == {}:
            continue
        if name == "encodings":
            value = {**values.get("encodings", {}), **value}
        values[name] = tuple(value) if name == "tiles" else value
    missing = [name for name in ("plots", "tiles", "registry", "declarations", "borrowers") if not values.get(name)]
    if missing:
        raise click.UsageError(f"missing input --{missing[0]} (or give a case file, or --sample)")
    return Case(**values)


def sample_only(sample: bool, options: dict[str, Any]) -> bool:
    """Whether the run is on the bundled sample alone (``--sample`` and no other input file): only then are the
    public demo keys accepted, so that ``--sample --borrowers real.csv`` cannot lend them to real borrowers."""
    return sample and not any(options.get(name) for name in ("plots", "tiles", "registry", "declarations", "borrowers",
                                                             "input_purchases", "machinery", "sales", "customer_map"))


def baseline_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Validate ``--processing-baseline`` (a Sentinel-2 baseline such as 04.00)."""
    from agricredit import sensors

    if value is not None and sensors.parse_baseline(value) is None:
        raise click.BadParameter(f"{value!r} is not a processing baseline (expected e.g. 04.00 or 02.14)",
                                 param_hint="'--processing-baseline'")
    return value
