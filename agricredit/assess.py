"""The main job: plots + satellite season + registry + declarations → borrower limits.

:func:`run_assessment` runs the whole pipeline (design §1) as plain functions
over plain data and returns an :class:`Assessment`; :func:`write_outputs`
writes the output folder of design §3 (``plots.geojson``, ``borrowers.csv``,
``borrowers.geojson``, ``audit.jsonl``, then ``manifest.json`` last), checks
every output for personal data and removes them all if any is found.

Borrowers and land holders appear only as keyed pseudonyms (design §8); plot
IDs are not personal and stay as given. Every output is a pure function of the
inputs, the policy, the pseudonym key and the tool version: rows are sorted by
ID, floats rounded at the output, JSON keys sorted, no timestamps.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from agricredit import __version__
from agricredit.audit import audit_record, record_line
from agricredit.credit import Decision, decide_all, explain
from agricredit.crop_model import load_crop_model
from agricredit.errors import InputError, InputNotFoundError, PrivacyError, SchemaError
from agricredit.outputs import (
    CategorizedStyle,
    atomic_path,
    sha256_file,
    staged_outputs,
    write_plot_table,
    write_qml,
    write_table,
    write_xlsx,
)
from agricredit.plots import DUPLICATE_ID, MISSING_ID, accepted, area_table, load_plots, rejected_ids, to_wgs84
from agricredit.policy import Policy, load_policy
from agricredit.privacy import PseudonymKey, find_pii, pseudonym, pseudonymise_borrowers
from agricredit.schema import BORROWER_FIELDS, PLOT_FIELDS, conformed_table, headers
from agricredit.season import assess_season, discover_acquisitions, observation_table, season_options, tile_hashes
from agricredit.seeds import crop_aliases
from agricredit.tables import read_borrowers, read_declarations, read_registry
from agricredit.verify import Check, Overlap, PlotFacts, PlotVerdict, verify_plots

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["OUTPUT_FILES", "Case", "Assessment", "load_case", "sample_case", "run_assessment", "write_outputs"]

log = logging.getLogger(__name__)

#: The output folder's files (manifest last): the plot and borrower layers as GeoJSON and GeoParquet with
#: their QGIS styles, the borrower table for spreadsheets, the audit records. Fields: :mod:`agricredit.schema`.
OUTPUT_FILES = ("plots.geojson", "plots.parquet", "plots.qml", "borrowers.csv", "borrowers.xlsx",
                "borrowers.geojson", "borrowers.parquet", "borrowers.qml", "audit.jsonl", "manifest.json")

#: Plots styled by light, borrowers by status (QGIS applies ``NAME.qml`` to ``NAME.geojson`` / ``.parquet``).
PLOT_STYLE = CategorizedStyle("light", (("green", "green: every source agrees", "26,150,65"),
                                        ("yellow", "yellow: a check lowered what the plot adds", "255,191,0"),
                                        ("red", "red: under review or unverifiable", "215,25,28"),
                                        ("", "rejected outline or record", "150,150,150")))
BORROWER_STYLE = CategorizedStyle("status", (("APPROVE", "APPROVE", "26,150,65"),
                                             ("REVIEW", "REVIEW: a person must look", "255,191,0"),
                                             ("DECLINE", "DECLINE: nothing verifiable to lend on", "215,25,28")))

#: Plot geometry statuses of :mod:`agricredit.plots` → the statuses :mod:`agricredit.verify` knows.
_GEOMETRY_STATUS = {"OK": "valid", "GEOMETRY_REPAIRED": "repaired", "GEOMETRY_INVALID": "invalid"}

#: Status of a plot that its own borrower did not declare (rejected, listed, the rest go on).
NO_DECLARATION = "NO_DECLARATION"

#: Coordinates in GeoJSON outputs: 6 decimals of a degree (~0.1 m), as RFC 7946 §11.2 suggests.
COORDINATE_DECIMALS = 6


@dataclass(frozen=True)
class Case:
    """Where the inputs of one assessment are, and how to read them.

    A case can be given as command-line options or as a TOML file
    (:func:`load_case`) with an ``[inputs]`` table (paths relative to the file)
    and an optional ``[options]`` table.
    """

    plots: Path
    tiles: tuple[Path, ...]
    registry: Path
    declarations: Path
    borrowers: Path
    policy: Path | None = None
    id_field: str = "plot_id"
    plots_crs: str | None = None
    encodings: dict[str, str] = field(default_factory=dict)  # table (or "*" for all) → text encoding
    start: dt.date | None = None
    end: dt.date | None = None
    crop_model: Path | None = None
    sensor: str | None = None  # the reader's sensor of raw products whose sensor is not detected

    def encoding_of(self, table: str) -> str | None:
        """The text encoding of ``table``'s CSV (``registry``, ``declarations``, ``borrowers``); ``None``: detect."""
        return self.encodings.get(table, self.encodings.get("*"))

    def input_paths(self) -> list[Path]:
        """Every input file or folder of the case (outputs must never replace one of them)."""
        paths = [self.plots, *self.tiles, self.registry, self.declarations, self.borrowers]
        return paths + [p for p in (self.policy, self.crop_model) if p is not None]


_CASE_INPUTS = {"plots", "tiles", "registry", "declarations", "borrowers", "policy", "crop_model"}
_CASE_OPTIONS = {"id_field", "plots_crs", "encoding", "start", "end", "sensor"}
_CASE_TABLES = ("registry", "declarations", "borrowers")


def load_case(path: str | Path) -> Case:
    """Read a case TOML file.

    Parameters
    ----------
    path
        A TOML file with ``[inputs]`` (``plots``, ``tiles`` (a path or a list),
        ``registry``, ``declarations``, ``borrowers``, optional ``policy`` and
        ``crop_model`` (a folder from ``agricredit train-crop``);
        relative to the file) and optional ``[options]`` (``id_field``,
        ``plots_crs``, ``encoding`` (of every table), ``start``, ``end``,
        ``sensor``) and optional ``[tables.NAME]`` with the ``encoding`` of
        one table (``registry``, ``declarations``, ``borrowers``), e.g.
        ``[tables.registry] encoding = "gbk"``.

    Returns
    -------
    Case
    """
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputNotFoundError(f"cannot read case file: {error.strerror}", path=path) from error
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InputError(f"not a UTF-8 TOML case file ({error})", path=path) from error
    unknown = sorted(set(document) - {"inputs", "options", "tables"})
    inputs, options, tables = document.get("inputs", {}), document.get("options", {}), document.get("tables", {})
    unknown += sorted(f"inputs.{k}" for k in set(inputs) - _CASE_INPUTS)
    unknown += sorted(f"options.{k}" for k in set(options) - _CASE_OPTIONS)
    unknown += sorted(f"tables.{k}" for k in set(tables) - set(_CASE_TABLES))
    if any(not isinstance(tables[t], dict) for t in tables):
        raise InputError("each [tables.NAME] is a table, e.g. [tables.registry] encoding = \"gbk\"", path=path)
    unknown += sorted(f"tables.{t}.{k}" for t in set(tables) & set(_CASE_TABLES) for k in set(tables[t]) - {"encoding"})
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r}", path=path)
    missing = sorted(_CASE_INPUTS - {"policy", "crop_model"} - set(inputs))
    if missing:
        raise InputError(f"missing inputs.{missing[0]}", path=path)
    base = path.parent
    tiles = inputs["tiles"] if isinstance(inputs["tiles"], list) else [inputs["tiles"]]
    return Case(
        plots=base / inputs["plots"],
        tiles=tuple(base / t for t in tiles),
        registry=base / inputs["registry"],
        declarations=base / inputs["declarations"],
        borrowers=base / inputs["borrowers"],
        policy=base / inputs["policy"] if "policy" in inputs else None,
        crop_model=base / inputs["crop_model"] if "crop_model" in inputs else None,
        id_field=options.get("id_field", "plot_id"),
        plots_crs=options.get("plots_crs"),
        encodings={**({"*": options["encoding"]} if "encoding" in options else {}),
                   **{t: tables[t]["encoding"] for t in sorted(tables) if "encoding" in tables[t]}},
        start=_as_date(options.get("start"), path, "options.start"),
        end=_as_date(options.get("end"), path, "options.end"),
        sensor=options.get("sensor"),
    )


def _as_date(value: Any, path: Path, key: str) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as error:
        raise InputError(f"{key} is not a date (YYYY-MM-DD)", path=path) from error


def sample_case() -> Case:
    """The case of the bundled sample data (``sample_tiles/case.toml`` of a source checkout)."""
    case_file = Path(__file__).resolve().parents[1] / "sample_tiles" / "case.toml"
    if not case_file.is_file():
        raise InputNotFoundError("the sample data ships with the source repository, not the installed package",
                                 path=case_file)
    return load_case(case_file)


@dataclass
class Assessment:
    """The result of one run: per-plot verdicts and rows, per-borrower decisions and audit records."""

    policy: Policy
    plots: gpd.GeoDataFrame  # one row per input plot, WGS84, schema.PLOT_FIELDS
    verdicts: list[PlotVerdict]
    decisions: list[Decision]
    borrowers: pd.DataFrame  # one row per borrower with a plot, schema.BORROWER_FIELDS
    audit: list[dict[str, Any]]
    rejected: dict[str, list[str]]  # reason → plot IDs left out (bad ID, geometry, declaration) or unverifiable
    inputs: dict[str, str]  # role → sha256
    key_fingerprint: str
    lang: str
    pii_reference: pd.DataFrame = field(repr=False)  # the borrower table, only to scan outputs for PII


def _stage(progress: Callable[[str], None] | None, message: str) -> None:
    """Report a stage once: to ``progress`` if given, else to the log (INFO)."""
    if progress is not None:
        progress(message)
    else:
        log.info(message)


def run_assessment(case: Case, key: PseudonymKey, *, policy: Policy | None = None, lang: str = "en",
                   progress: Callable[[str], None] | None = None,
                   count_dates: Callable[[int, int], None] | None = None) -> Assessment:
    """Run the whole pipeline on one case.

    Parameters
    ----------
    case
        Where the inputs are.
    key
        The pseudonym key (:class:`agricredit.privacy.PseudonymKey`).
    policy
        The policy; default: ``case.policy`` or the bundled ``seeds/policy.toml``.
    lang
        ``en`` or ``zh``: the language of the explanations.
    progress
        Called with a short message at each stage (the CLI prints them on
        stderr); without it, stages are logged at INFO.
    count_dates
        Called with ``(dates done, dates)`` during the zonal step, the long one.

    Returns
    -------
    Assessment
    """
    if lang not in ("en", "zh"):
        raise InputError(f"unknown language {lang!r} (en or zh)")
    policy = policy or load_policy(case.policy)
    # A bad model fails here, before any plot or tile is read.
    crop_model = load_crop_model(case.crop_model) if case.crop_model is not None else None

    _stage(progress, "reading plots and tables")
    checked = load_plots(case.plots, id_field=case.id_field, plots_crs=case.plots_crs,
                         repair_max_area_change=policy.area.repair_max_area_change)
    if "borrower_id" not in checked.columns:
        raise SchemaError("no borrower_id column in the plot file", path=case.plots)
    checked["borrower_id"] = checked["borrower_id"].astype(str)
    registry = read_registry(case.registry, encoding=case.encoding_of("registry"))
    declarations = read_declarations(case.declarations, encoding=case.encoding_of("declarations"),
                                     known_plots=set(checked["plot_id"].dropna()), known_crops=crop_aliases())
    borrowers = read_borrowers(case.borrowers, encoding=case.encoding_of("borrowers"))
    _check_borrowers(checked, borrowers, case)
    # A plot its own borrower did not declare cannot be assessed: it is rejected and listed, the rest go on.
    declared_by_drawer = set(zip(declarations["plot_id"], declarations["borrower_id"]))
    undeclared = [(pid, b) not in declared_by_drawer and status not in (DUPLICATE_ID, MISSING_ID)
                  for pid, b, status in zip(checked["plot_id"], checked["borrower_id"], checked["geometry_status"])]
    checked.loc[undeclared, "geometry_status"] = NO_DECLARATION
    checked.loc[undeclared, "geometry_reason"] = "no declaration by the borrower who drew the plot"
    # Records without a usable ID or declaration are rejected and listed; nothing is checked for them.
    identified = checked.loc[~checked["geometry_status"].isin((DUPLICATE_ID, MISSING_ID, NO_DECLARATION))]

    _stage(progress, "measuring plots (geodesic area, validity, overlaps)")
    areas = area_table(checked).set_index("plot_id", drop=False)
    good = accepted(checked)
    rejected = {code: sorted(ids) for code, ids in rejected_ids(checked).items()}

    if good.empty:
        counts = ", ".join(f"{code} {len(ids)}" for code, ids in sorted(rejected.items()))
        raise InputError(f"no plot can be assessed: all {len(checked)} are rejected ({counts})", path=case.plots)
    acquisitions = discover_acquisitions(list(case.tiles), case.start, case.end,
                                         **({"sensor": case.sensor} if case.sensor else {}))
    if not acquisitions:
        raise InputError("no acquisitions found in the tiles for the given period", path=case.tiles[0])
    _stage(progress, f"zonal statistics: {len(good)} plots x {len(acquisitions)} dates")
    long_table = observation_table(good, acquisitions, progress=count_dates)
    if long_table.empty:
        raise InputError(f"no tile of the season ({', '.join(map(str, case.tiles))}) covers any plot "
                         f"between {acquisitions[0].date} and {acquisitions[-1].date}", path=case.plots)

    _stage(progress, "season: phenology, crop fit, vigor")
    declared_crop = dict(zip(zip(declarations["plot_id"], declarations["borrower_id"]), declarations["declared_crop"]))
    good_ids = sorted(good["plot_id"].astype(str))
    drawn_mu = {pid: float(areas.at[pid, "area_mu"]) for pid in good_ids}
    season = assess_season(
        long_table,
        {pid: declared_crop[pid, borrower] for pid, borrower in zip(good["plot_id"], good["borrower_id"])},
        drawn_mu,
        plot_ids=good_ids,
        crop_model=crop_model,
        **season_options(policy),
    )

    not_covered = sorted(pid for pid, flags in season.flags.items() if any(f.code == "NO_COVERAGE" for f in flags))
    if not_covered:
        rejected["NO_COVERAGE"] = not_covered

    _stage(progress, "cross-verification and limits")
    borrower_alias = {b: pseudonym(key, "borrower", b) for b in sorted(set(checked["borrower_id"]))}
    facts = _plot_facts(identified, areas, registry, declarations, season, borrower_alias, key)
    verdicts = verify_plots(facts, policy)
    decisions = decide_all(verdicts, policy)

    inputs = _input_hashes(case, acquisitions, policy)
    verdicts_of: dict[str, list[PlotVerdict]] = {}
    for verdict in verdicts:
        verdicts_of.setdefault(verdict.borrower_id, []).append(verdict)
    audit = [audit_record(d, verdicts_of[d.borrower_id], policy, inputs) for d in decisions]

    public = pseudonymise_borrowers(borrowers, key)  # the allow-listed columns; refuses a pseudonym collision
    villages = dict(zip(public["pseudonym"], public["village"]))
    return Assessment(
        policy=policy,
        plots=_plot_rows(checked, areas, verdicts, season, borrower_alias),
        verdicts=verdicts,
        decisions=decisions,
        borrowers=_borrower_rows(decisions, verdicts_of, villages, policy, lang),
        audit=audit,
        rejected=rejected,
        inputs=inputs,
        key_fingerprint=key.fingerprint,
        lang=lang,
        pii_reference=borrowers,
    )


def _input_hashes(case: Case, acquisitions: Sequence[Any], policy: Policy) -> dict[str, str]:
    """sha256 of every input by role: the tables, the plots, the policy, each tile used and each tile index."""
    files = {"plots": case.plots, "registry": case.registry, "declarations": case.declarations,
             "borrowers": case.borrowers}
    if case.crop_model is not None:
        files.update({f"crop_model:{path.name}": path for path in sorted(case.crop_model.iterdir()) if path.is_file()})
    files.update({f"tile_index:{source.name}": source for source in case.tiles
                  if source.is_file() and source.suffix.lower() in (".csv", ".json")})  # manifests, STAC
    hashes = {role: sha256_file(path) for role, path in files.items()}
    hashes.update({f"tile:{key}": digest for key, digest in tile_hashes(acquisitions).items()})
    hashes["policy"] = policy.sha256
    return dict(sorted(hashes.items()))


def _check_borrowers(plots: gpd.GeoDataFrame, borrowers: pd.DataFrame, case: Case) -> None:
    """Every borrower of the plot file is in the borrower table."""
    unknown = sorted(set(plots["borrower_id"]) - set(borrowers["borrower_id"]))
    if unknown:
        raise SchemaError(f"{len(unknown)} borrower(s) of the plot file are not in the borrower table "
                          f"(first at plot {plots.loc[plots['borrower_id'] == unknown[0], 'plot_id'].iloc[0]})",
                          path=case.borrowers)


def _finite_or_nan(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _records(frame: pd.DataFrame, *key: str) -> dict[Any, dict[str, Any]]:
    """Rows of ``frame`` as dicts keyed by the ``key`` column(s) (a hash lookup per plot, not a pandas one)."""
    return {tuple(r[k] for k in key) if len(key) > 1 else r[key[0]]: r for r in frame.to_dict("records")}


def _plot_facts(checked: gpd.GeoDataFrame, areas: pd.DataFrame, registry: pd.DataFrame, declarations: pd.DataFrame,
                season: Any, alias: Mapping[str, str], key: PseudonymKey) -> list[PlotFacts]:
    """Gather what each source says about each plot into :class:`PlotFacts` (pseudonymous)."""
    registered = _records(registry, "plot_id")
    declared = _records(declarations, "plot_id", "borrower_id")
    features = _records(season.plots, "plot_id") if len(season.plots) else {}
    measured = _records(areas.reset_index(drop=True), "plot_id")
    owner = dict(zip(checked["plot_id"], checked["borrower_id"]))
    facts = []
    for row in checked.itertuples(index=False):
        plot_id = row.plot_id
        status = _GEOMETRY_STATUS.get(row.geometry_status, "rejected")
        usable = status in ("valid", "repaired")
        record = registered.get(plot_id)
        holder = record["holder_id"] if record else None
        own = declared.get((plot_id, row.borrower_id))
        feature = features.get(plot_id, {})
        overlaps = tuple(
            Overlap(other_plot_id=str(o["plot_id"]), other_borrower_id=alias[owner[o["plot_id"]]],
                    shared_m2=float(o["shared_m2"]))
            for o in measured[plot_id]["overlaps"]
        ) if usable else ()
        best_crop = feature.get("best_crop")
        facts.append(PlotFacts(
            plot_id=str(plot_id),
            borrower_id=alias[row.borrower_id],
            geometry_status=status,
            geometry_reason=str(row.geometry_reason or ""),
            drawn_mu=_finite_or_nan(measured[plot_id]["area_mu"]) if usable else math.nan,
            registered_mu=float(record["registered_mu"]) if record else math.nan,
            # Holders are pseudonymised like borrowers so that the ownership check compares like with like.
            registry_holder_id=pseudonym(key, "borrower", holder) if holder else None,
            declared_mu=float(own["declared_mu"]) if own else math.nan,
            declared_crop=str(own["declared_crop"]) if own else None,
            pixel_count=_finite_or_nan(feature.get("pixel_count")),  # the season's figure: one rule for TOO_FEW_PIXELS and vigor
            cropped_mu_at_peak=_finite_or_nan(feature.get("cropped_area_mu_at_peak")),
            peak_ndvi=_finite_or_nan(feature.get("peak_ndvi")),
            satellite_codes=tuple(Check.make(flag.code, **flag.figures) for flag in season.flags.get(plot_id, [])),
            vigor_factor=_finite_or_nan(feature.get("vigor_factor")),
            best_crop=best_crop if isinstance(best_crop, str) else None,
            overlaps=overlaps,
        ))
    return facts


def _round(value: Any, digits: int = 4) -> Any:
    """A check's figure for the ``details`` field: floats to ``digits`` decimals, NaN → ``None``."""
    if isinstance(value, (float, np.floating)):
        return round(float(value), digits) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _round_coordinates(geometry: Any) -> Any:
    """``geometry`` with coordinates rounded to :data:`COORDINATE_DECIMALS` (the same in every output format)."""
    if geometry is None or geometry.is_empty:
        return geometry
    return shapely.transform(geometry, lambda xy: np.round(xy, COORDINATE_DECIMALS))


def _plot_rows(checked: gpd.GeoDataFrame, areas: pd.DataFrame, verdicts: Sequence[PlotVerdict], season: Any,
               alias: Mapping[str, str]) -> gpd.GeoDataFrame:
    """One output row per input plot with the fields of :data:`agricredit.schema.PLOT_FIELDS`, WGS84."""
    by_id = {v.plot_id: v for v in verdicts}
    features = _records(season.plots, "plot_id") if len(season.plots) else {}
    records, geometries = [], []
    wgs = to_wgs84(checked)
    for plot_id, borrower, geometry_status, geometry in zip(checked["plot_id"], checked["borrower_id"],
                                                         checked["geometry_status"], wgs.geometry.values):
        plot_id = None if plot_id is None else str(plot_id)
        record: dict[str, Any] = {**features.get(plot_id, {}), "plot_id": plot_id, "borrower": alias[borrower],
                                  "geometry_status": str(geometry_status)}
        verdict = by_id.get(plot_id)
        if verdict is not None:
            record.update(verdict.areas)
            record.update({
                "verified_mu": verdict.contribution.mu_now,
                "verified_mu_if_confirmed": verdict.contribution.mu_if_confirmed,
                "declared_crop": verdict.facts.declared_crop,
                "light": verdict.light, "reason_codes": list(verdict.codes),
                "details": {"checks": [{"code": c.code, "figures": {k: _round(v) for k, v in c.figures.items()}}
                                       for c in verdict.checks]},
            })
        records.append(record)
        geometries.append(_round_coordinates(geometry))
    frame = gpd.GeoDataFrame(conformed_table(records, PLOT_FIELDS), geometry=geometries, crs="EPSG:4326")
    return frame.sort_values("plot_id", na_position="last", ignore_index=True)


def _borrower_rows(decisions: Sequence[Decision], verdicts_of: Mapping[str, list[PlotVerdict]],
                   villages: Mapping[str, str], policy: Policy, lang: str) -> pd.DataFrame:
    """One output row per borrower with the fields of :data:`agricredit.schema.BORROWER_FIELDS`."""
    records = []
    for decision in decisions:
        now, own = decision.now, verdicts_of[decision.borrower_id]
        records.append({
            "borrower": decision.borrower_id,
            "village": villages.get(decision.borrower_id, ""),
            "status": decision.status,
            "limit": decision.limit,
            "limit_if_confirmed": decision.limit_if_confirmed,
            "currency": decision.currency,
            "reason_codes": decision.reason_codes,
            "verified_mu": sum(v.contribution.mu_now for v in own),
            "need": now.need,
            "capacity": now.capacity,
            "cap": now.cap,
            "binding": now.binding,
            "plots": [v.plot_id for v in own],
            "explanation": explain(decision, policy, lang),
            "details": {"plots": [{"plot_id": v.plot_id, "verified_mu": _round(v.contribution.mu_now),
                                   "light": v.light, "reason_codes": list(v.codes)} for v in own]},
        })
    return conformed_table(records, BORROWER_FIELDS).sort_values("borrower", ignore_index=True)


def _borrower_geometries(assessment: Assessment) -> list[Any]:
    """Each borrower's usable plots dissolved into one valid (Multi)Polygon on the output coordinate grid."""
    usable = assessment.plots["geometry_status"].isin(("OK", "GEOMETRY_REPAIRED"))
    plots_of = assessment.plots.loc[usable].groupby("borrower").geometry.apply(list).to_dict()
    geometries = []
    for borrower in assessment.borrowers["borrower"]:
        own = plots_of.get(borrower)
        if not own:
            geometries.append(None)
            continue
        dissolved = shapely.union_all(own, grid_size=10.0 ** -COORDINATE_DECIMALS)
        geometries.append(dissolved if dissolved.is_valid else shapely.make_valid(dissolved))
    return geometries


def write_outputs(assessment: Assessment, folder: str | Path, *, csv_bom: bool = True) -> dict[str, Any]:
    """Write the output folder (design §3, schema in :mod:`agricredit.schema`); ``manifest.json`` last.

    Everything is written into a staging folder first, scanned for personal
    data (national-ID and phone patterns and the borrowers' own IDs and
    phones anywhere; their names in every text that comes from the inputs:
    plot IDs, villages, file names), and only then published into ``folder``,
    manifest last. An interrupted or refused run leaves no output behind; the
    outputs of an earlier run that this run does not write again are removed.
    Call :func:`agricredit.outputs.check_output_folder` first: this function
    replaces earlier outputs.

    Parameters
    ----------
    assessment
        The result of :func:`run_assessment`.
    folder
        The output folder (created if missing).
    csv_bom
        Start ``borrowers.csv`` with a UTF-8 byte-order mark, so that Excel
        on Chinese Windows reads it as UTF-8 rather than GBK.

    Returns
    -------
    dict
        The manifest.
    """
    lang = assessment.lang
    with staged_outputs(folder) as stage:
        plots = assessment.plots
        plots.to_parquet(stage / "plots.parquet", index=False)
        write_plot_table(plots, stage / "plots.geojson", decimals=COORDINATE_DECIMALS)
        write_qml(stage / "plots.qml", PLOT_STYLE)

        borrowers = gpd.GeoDataFrame(assessment.borrowers, geometry=_borrower_geometries(assessment), crs="EPSG:4326")
        write_table(assessment.borrowers, stage / "borrowers.csv", bom=csv_bom,
                    header=headers(BORROWER_FIELDS, lang))
        write_xlsx(assessment.borrowers, stage / "borrowers.xlsx", header=headers(BORROWER_FIELDS, lang),
                   sheet="借款人" if lang == "zh" else "borrowers")
        write_plot_table(borrowers, stage / "borrowers.geojson", decimals=COORDINATE_DECIMALS)
        borrowers.to_parquet(stage / "borrowers.parquet", index=False)
        write_qml(stage / "borrowers.qml", BORROWER_STYLE)

        with atomic_path(stage / "audit.jsonl") as tmp:
            tmp.write_text("".join(record_line(record) + "\n" for record in assessment.audit), encoding="utf-8")

        written = [stage / name for name in OUTPUT_FILES[:-1]]
        # The binary outputs (Parquet, xlsx) hold the same conformed rows as the text ones scanned here.
        _refuse_personal_data(assessment, {path: path.read_text(encoding="utf-8") for path in written
                                           if path.suffix not in (".parquet", ".xlsx")})
        manifest = {
            "tool": "agricredit",
            "tool_version": __version__,
            "policy": {"name": assessment.policy.meta.name, "version": assessment.policy.meta.version,
                       "sha256": assessment.policy.sha256},
            "pseudonym_key_fingerprint": assessment.key_fingerprint,
            "language": lang,
            "inputs": assessment.inputs,
            "outputs": {path.name: sha256_file(path) for path in written},
            "counts": {
                "plots": int(len(assessment.plots)),
                "borrowers": int(len(assessment.borrowers)),
                "status": {s: int(n) for s, n in sorted(assessment.borrowers["status"].value_counts().items())},
                "rejected_or_unverifiable_plots": {code: ids for code, ids in sorted(assessment.rejected.items())},
            },
        }
        text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        _refuse_personal_data(assessment, {stage / "manifest.json": text})
        with atomic_path(stage / "manifest.json") as tmp:
            tmp.write_text(text, encoding="utf-8")
    return manifest


def _refuse_personal_data(assessment: Assessment, texts: Mapping[Path, str], remove: Sequence[Path] = ()) -> None:
    """Raise :class:`PrivacyError` (removing ``texts``' files and ``remove``) if any text holds personal data."""
    people = assessment.pii_reference
    carried = "\n".join([*map(str, assessment.plots["plot_id"].dropna()), *map(str, assessment.borrowers["village"]),
                         *assessment.inputs])
    name_leaks = find_pii(carried, people[["name"]]) if "name" in people else []
    for path, text in texts.items():
        found = find_pii(text, people.drop(columns=["name"], errors="ignore"))
        if found or name_leaks:
            for output in [*texts, *remove]:
                output.unlink(missing_ok=True)
            where = found[0] if found else f"{name_leaks[0].split(' at ')[0]} in a plot ID, village or file name"
            raise PrivacyError(f"personal data found in an output ({where}); outputs removed", path=path)
