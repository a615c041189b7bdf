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
from agricredit.acquisitions import discover_acquisitions, observation_table, tile_hashes
from agricredit.audit import audit_record, record_line
from agricredit.credit import Decision, decide_all, explain
from agricredit.crop_model import load_crop_model
from agricredit.errors import InputError, InputNotFoundError, OutputError, PrivacyError, SchemaError
from agricredit.outputs import atomic_path, sha256_file, write_geojson, write_table
from agricredit.plots import DUPLICATE_ID, MISSING_ID, accepted, area_table, load_plots, rejected_ids, to_wgs84
from agricredit.policy import Policy, load_policy
from agricredit.privacy import PseudonymKey, find_pii, pseudonym, pseudonymise_borrowers
from agricredit.season import assess_season, resolve_region, season_options
from agricredit.seeds import SEEDS_DIR, crop_aliases
from agricredit.tables import read_borrowers, read_declarations, read_registry
from agricredit.verify import Check, Overlap, PlotFacts, PlotVerdict, verify_plots

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["OUTPUT_FILES", "Case", "Assessment", "load_case", "sample_case", "run_assessment", "write_outputs"]

log = logging.getLogger(__name__)

#: The output folder's files, in the order they are written (manifest last).
OUTPUT_FILES = ("plots.geojson", "borrowers.csv", "borrowers.geojson", "audit.jsonl", "manifest.json")

#: The columns of ``borrowers.csv`` (an allow-list: nothing else leaves the tool).
BORROWER_COLUMNS = (
    "borrower", "village", "status", "limit", "limit_if_confirmed", "currency", "reason_codes",
    "verified_mu", "need", "capacity", "cap", "binding", "plots", "explanation",
)

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
    encoding: str | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    crop_model: Path | None = None
    region: str | None = None


_CASE_INPUTS = {"plots", "tiles", "registry", "declarations", "borrowers", "policy", "crop_model"}
_CASE_OPTIONS = {"id_field", "plots_crs", "encoding", "start", "end", "region"}


def load_case(path: str | Path) -> Case:
    """Read a case TOML file.

    Parameters
    ----------
    path
        A TOML file with ``[inputs]`` (``plots``, ``tiles`` (a path or a list),
        ``registry``, ``declarations``, ``borrowers``, optional ``policy`` and
        ``crop_model`` (a folder from ``agricredit train-crop``);
        relative to the file) and optional ``[options]`` (``id_field``,
        ``plots_crs``, ``encoding``, ``start``, ``end``, ``region``: a region of
        ``seeds/regions.csv`` whose crop calendars apply, overriding the policy's).

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
    unknown = sorted(set(document) - {"inputs", "options"})
    inputs, options = document.get("inputs", {}), document.get("options", {})
    unknown += sorted(f"inputs.{k}" for k in set(inputs) - _CASE_INPUTS)
    unknown += sorted(f"options.{k}" for k in set(options) - _CASE_OPTIONS)
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
        encoding=options.get("encoding"),
        start=_as_date(options.get("start"), path, "options.start"),
        end=_as_date(options.get("end"), path, "options.end"),
        region=options.get("region"),
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
    plots: gpd.GeoDataFrame  # one row per input plot, WGS84, output properties only
    verdicts: list[PlotVerdict]
    decisions: list[Decision]
    borrowers: pd.DataFrame  # one row per borrower with a plot, BORROWER_COLUMNS
    audit: list[dict[str, Any]]
    rejected: dict[str, list[str]]  # reason → plot IDs left out (bad ID, geometry, declaration) or unverifiable
    inputs: dict[str, str]  # role → sha256
    key_fingerprint: str
    lang: str
    pii_reference: pd.DataFrame = field(repr=False)  # the borrower table, only to scan outputs for PII


def _stage(progress: Callable[[str], None] | None, message: str) -> None:
    log.info(message)
    if progress is not None:
        progress(message)


def run_assessment(case: Case, key: PseudonymKey, *, policy: Policy | None = None, lang: str = "en",
                   progress: Callable[[str], None] | None = None) -> Assessment:
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
        Called with a short message at each stage (the CLI prints them on stderr).

    Returns
    -------
    Assessment
    """
    if lang not in ("en", "zh"):
        raise InputError(f"unknown language {lang!r} (en or zh)")
    policy = policy or load_policy(case.policy)

    _stage(progress, "reading plots and tables")
    checked = load_plots(case.plots, id_field=case.id_field, plots_crs=case.plots_crs,
                         repair_max_area_change=policy.area.repair_max_area_change)
    if "borrower_id" not in checked.columns:
        raise SchemaError("no borrower_id column in the plot file", path=case.plots)
    checked["borrower_id"] = checked["borrower_id"].astype(str)
    registry = read_registry(case.registry, encoding=case.encoding)
    declarations = read_declarations(case.declarations, encoding=case.encoding,
                                     known_plots=set(checked["plot_id"].dropna()), known_crops=crop_aliases())
    borrowers = read_borrowers(case.borrowers, encoding=case.encoding)
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
    acquisitions = discover_acquisitions(list(case.tiles), case.start, case.end)
    if not acquisitions:
        raise InputError("no acquisitions found in the tiles for the given period", path=case.tiles[0])
    _stage(progress, f"zonal statistics: {len(good)} plots x {len(acquisitions)} dates")
    long_table = observation_table(good, acquisitions)
    if long_table.empty:
        raise InputError(f"no tile of the season ({', '.join(map(str, case.tiles))}) covers any plot "
                         f"between {acquisitions[0].date} and {acquisitions[-1].date}", path=case.plots)

    _stage(progress, "season: phenology, crop fit, vigor")
    # One row per declared crop season (optional ``season`` column): "crop" or "crop:slot".
    seasons = declarations["season"] if "season" in declarations else [""] * len(declarations)
    declared_crops: dict[tuple[str, str], list[str]] = {}
    for pid, borrower, crop, slot in zip(declarations["plot_id"], declarations["borrower_id"],
                                         declarations["declared_crop"], seasons):
        declared_crops.setdefault((pid, borrower), []).append(f"{crop}:{slot}" if slot else crop)
    good_ids = sorted(good["plot_id"].astype(str))
    drawn_mu = {pid: float(areas.at[pid, "area_mu"]) for pid in good_ids}
    region = resolve_region(case.region or policy.satellite.region, good)
    season = assess_season(
        long_table,
        {pid: declared_crops[pid, borrower] for pid, borrower in zip(good["plot_id"], good["borrower_id"])},
        drawn_mu,
        plot_ids=good_ids,
        crop_model=load_crop_model(case.crop_model) if case.crop_model is not None else None,
        **season_options(policy, region=region),
    )

    not_covered = sorted(pid for pid, flags in season.flags.items() if any(f.code == "NO_COVERAGE" for f in flags))
    if not_covered:
        rejected["NO_COVERAGE"] = not_covered

    _stage(progress, "cross-verification and limits")
    borrower_alias = {b: pseudonym(key, "borrower", b) for b in sorted(set(checked["borrower_id"]))}
    facts = _plot_facts(identified, areas, registry, declarations, season, borrower_alias, key)
    verdicts = verify_plots(facts, policy)
    decisions = decide_all(verdicts, policy)

    inputs = _input_hashes(case, acquisitions, policy, region)
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


def _input_hashes(case: Case, acquisitions: Sequence[Any], policy: Policy, region: str) -> dict[str, str]:
    """sha256 of every input by role: the tables, the plots, the policy, each tile used and each tile index,
    and the crop calendars of the region the season was checked against (role ``region:<id>/<file>``)."""
    files = {"plots": case.plots, "registry": case.registry, "declarations": case.declarations,
             "borrowers": case.borrowers}
    if case.crop_model is not None:
        files.update({f"crop_model:{path.name}": path for path in sorted(case.crop_model.iterdir()) if path.is_file()})
    files.update({f"tile_index:{source.name}": source for source in case.tiles
                  if source.is_file() and source.suffix.lower() in (".csv", ".json")})  # manifests, STAC
    hashes = {role: sha256_file(path) for role, path in files.items()}
    hashes.update({f"tile:{key}": digest for key, digest in tile_hashes(acquisitions).items()})
    hashes["policy"] = policy.sha256
    hashes.update({f"region:{region}/{name}": sha256_file(SEEDS_DIR / name) for name in ("calendars.csv", "rotations.csv")})
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


#: Season features copied into ``plots.geojson``.
_SEASON_PROPERTIES = ("best_crop", "crop_ranking", "peak_ndvi", "peak_date", "greenup_date", "senescence_date",
                      "season_length_days", "ndvi_integral", "n_valid", "vigor_factor", "cropped_area_mu_at_peak")


def _round(value: Any, digits: int = 4) -> Any:
    if isinstance(value, (float, np.floating)):
        return round(float(value), digits) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (pd.Timestamp, np.datetime64, dt.date)):
        return str(np.datetime64(value, "D"))
    return value


def _plot_rows(checked: gpd.GeoDataFrame, areas: pd.DataFrame, verdicts: Sequence[PlotVerdict], season: Any,
               alias: Mapping[str, str]) -> gpd.GeoDataFrame:
    """One output row per input plot: the four areas, verified area, season features, light, reasons."""
    by_id = {v.plot_id: v for v in verdicts}
    features = _records(season.plots, "plot_id") if len(season.plots) else {}
    rows, geometries = [], []
    wgs = to_wgs84(checked)
    for plot_id, borrower, geometry_status, geometry in zip(checked["plot_id"], checked["borrower_id"],
                                                         checked["geometry_status"], wgs.geometry.values):
        verdict = by_id.get(str(plot_id))
        row: dict[str, Any] = {"plot_id": None if plot_id is None else str(plot_id), "borrower": alias[borrower],
                               "geometry_status": str(geometry_status)}
        if verdict is not None:
            row.update({name: _round(value) for name, value in verdict.areas.items()})
            row.update({
                "verified_mu": _round(verdict.contribution.mu_now),
                "verified_mu_if_confirmed": _round(verdict.contribution.mu_if_confirmed),
                "declared_crop": verdict.facts.declared_crop,
                "light": verdict.light, "reason_codes": list(verdict.codes),
                "checks": [{"code": c.code, "figures": {k: _round(v) for k, v in c.figures.items()}} for c in verdict.checks],
            })
        feature = features.get(None if plot_id is None else str(plot_id), {})
        row.update({name: _round(feature[name]) for name in _SEASON_PROPERTIES if name in feature})
        rows.append(row)
        geometries.append(geometry)
    frame = gpd.GeoDataFrame(rows, geometry=geometries, crs="EPSG:4326")
    return frame.sort_values("plot_id", na_position="last", ignore_index=True)


def _borrower_rows(decisions: Sequence[Decision], verdicts_of: Mapping[str, list[PlotVerdict]],
                   villages: Mapping[str, str], policy: Policy, lang: str) -> pd.DataFrame:
    rows = []
    for decision in decisions:
        now = decision.now
        rows.append({
            "borrower": decision.borrower_id,
            "village": villages.get(decision.borrower_id, ""),
            "status": decision.status,
            "limit": round(decision.limit, 2),
            "limit_if_confirmed": round(decision.limit_if_confirmed, 2),
            "currency": decision.currency,
            "reason_codes": ";".join(decision.reason_codes),
            "verified_mu": round(sum(v.contribution.mu_now for v in verdicts_of[decision.borrower_id]), 4),
            "need": round(now.need, 2),
            "capacity": round(now.capacity, 2),
            "cap": round(now.cap, 2),
            "binding": now.binding,
            "plots": ";".join(f"{v.plot_id}:{v.contribution.mu_now:.2f}mu:{v.light}" for v in verdicts_of[decision.borrower_id]),
            "explanation": explain(decision, policy, lang),
        })
    return pd.DataFrame(rows, columns=list(BORROWER_COLUMNS)).sort_values("borrower", ignore_index=True)


def write_outputs(assessment: Assessment, folder: str | Path) -> dict[str, Any]:
    """Write the output folder (design §3); ``manifest.json`` last, with the sha256 of each output.

    Every output is scanned for personal data before the manifest is written:
    national-ID and phone patterns and the borrowers' own IDs and phones
    anywhere; the borrowers' names in every text that comes from the inputs
    (plot IDs, villages, file names — the rest is the tool's own vocabulary,
    where a name such as 高峰 "peak" would be a false alarm). If anything is
    found, all outputs of this run are removed and :class:`PrivacyError` is raised.

    Returns
    -------
    dict
        The manifest.
    """
    folder = Path(folder)
    # A manifest vouches for a complete folder: the old one goes before anything is rewritten.
    try:
        (folder / "manifest.json").unlink(missing_ok=True)
    except OSError as error:
        raise OutputError(f"cannot write here: {error.strerror}", path=folder) from error
    plot_rows = assessment.plots.drop(columns="geometry").to_dict("records")
    plot_features = [{"geometry": geometry, "properties": row} for row, geometry in zip(plot_rows, assessment.plots.geometry)]
    write_geojson(plot_features, folder / "plots.geojson", decimals=COORDINATE_DECIMALS)

    write_table(assessment.borrowers, folder / "borrowers.csv")

    plots_of: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for row, geometry in zip(plot_rows, assessment.plots.geometry):
        plots_of.setdefault(row["borrower"], []).append((row, geometry))
    borrower_features = []
    for row in assessment.borrowers.to_dict("records"):
        own = plots_of[row["borrower"]]
        breakdown = [{k: plot[k] for k in ("plot_id", "verified_mu", "light", "reason_codes") if k in plot}
                     for plot, _ in own]
        usable = [geometry for plot, geometry in own if plot["geometry_status"] in ("OK", "GEOMETRY_REPAIRED")]
        borrower_features.append({"geometry": shapely.union_all(usable) if usable else None,
                                  "properties": {**row, "reason_codes": row["reason_codes"].split(";") if row["reason_codes"] else [],
                                                 "plots": breakdown}})
    write_geojson(borrower_features, folder / "borrowers.geojson", decimals=COORDINATE_DECIMALS)

    with atomic_path(folder / "audit.jsonl") as tmp:
        tmp.write_text("".join(record_line(record) + "\n" for record in assessment.audit), encoding="utf-8")

    written = [folder / name for name in OUTPUT_FILES[:-1]]
    _refuse_personal_data(assessment, {path: path.read_text(encoding="utf-8") for path in written})

    manifest = {
        "tool": "agricredit",
        "tool_version": __version__,
        "policy": {"name": assessment.policy.meta.name, "version": assessment.policy.meta.version,
                   "sha256": assessment.policy.sha256},
        "pseudonym_key_fingerprint": assessment.key_fingerprint,
        "language": assessment.lang,
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
    _refuse_personal_data(assessment, {folder / "manifest.json": text}, remove=written)
    with atomic_path(folder / "manifest.json") as tmp:
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
