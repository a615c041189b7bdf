"""The main job: plots + satellite season + registry + declarations → borrower limits.

:func:`run_assessment` runs the whole pipeline (design §1) as plain functions
over plain data and returns an :class:`Assessment`; :func:`write_outputs`
writes the output folder of design §3 (``plots.geojson``, ``borrowers.csv``,
``borrowers.geojson``, ``audit.jsonl``, then ``manifest.json`` last) into a
staging folder, checks every output for personal data and publishes them only
if none is found.

Borrowers and land holders appear only as keyed pseudonyms (design §8); plot
IDs are not personal and stay as given. Every output is a pure function of the
inputs, the policy, the pseudonym key and the tool version: rows are sorted by
ID, floats rounded at the output, JSON keys sorted, no timestamps.

Per-record isolation (design §9): a bad table row (``BAD_TABLE_ROW``), a plot
feature without ID, borrower or declaration, with an unknown borrower or a
NaN coordinate, an absurd outline (``AREA_ABSURD``) and an unreadable tile
(``TILE_UNREADABLE``) are listed in :attr:`Assessment.rejected` and only their
own records are rejected or held for review; the rest of the run completes.
``strict=True`` stops at the first bad row, feature or tile instead.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import os
import pickle
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.transform
import shapely

from agricredit.acquisitions import Acquisition, discover_acquisitions, observation_table, tile_hashes
from agricredit.assess_outputs import (OUTPUT_FILES, VERDICT_LIGHT, _borrower_rows, _plot_rows, plot_outlines,
                                       verdict_fields_of, write_outputs)
from agricredit.audit import audit_records
from agricredit.chain import ChainTables, PlotRef, chain_facts, read_chain_tables
from agricredit.credit import Decision, decide_all
from agricredit.crop_model import load_crop_model
from agricredit.errors import AgricreditError, InputError, InputNotFoundError, MissingTileError, SchemaError
from agricredit.evidence import Evidence, plot_evidence
from agricredit.facts import (MISSING_BORROWER, NO_DECLARATION, UNCHECKED, UNKNOWN_BORROWER, claimed_facts,
                              plot_facts, source_coverage)
from agricredit.outputs import LoadedOnRead, gc_paused, gc_young_only, map_in_processes, sha256_file, sha256_path
from agricredit.plots import (GEOMETRY_REPAIRED, STATUS_OK, area_mu, load_plots, overlaps_and_repeats, plot_record,
                              rejected_ids)
from agricredit.policy import Policy, load_policy
from agricredit.privacy import PersonalDataGuard, PseudonymKey, pseudonym, pseudonymise_borrowers
from agricredit.season import finish_season, resolve_region, season_options, season_period, split_season_options
from agricredit.seeds import SEEDS_DIR, crop_aliases
from agricredit.tables import read_borrowers, read_declarations, read_registry
from agricredit.units import m2_to_mu
from agricredit.visits import Visit, check_visited_plots, read_visits, settle_verdicts
from agricredit.verify import (Check, PlotFacts, PlotVerdict, drawn_area_absurd, log_lights, verify_plot,
                               verify_plots)

if TYPE_CHECKING:
    from agricredit.zonal import Tile

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["OUTPUT_FILES", "Case", "Assessment", "Observer", "Evaluator", "load_case", "case_from_document", "read_toml", "sample_case", "run_assessment", "write_outputs"]

log = logging.getLogger(__name__)

#: A plot whose drawn area is absurd against its registry and declaration: rejected alone, no overlaps, no zonal.
AREA_ABSURD = "AREA_ABSURD"
#: Table rows set aside, under this reason in ``Assessment.rejected``.
BAD_TABLE_ROW = "BAD_TABLE_ROW"


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
    input_purchases: Path | None = None  # industry-chain tables (agricredit.chain), each optional
    machinery: Path | None = None
    sales: Path | None = None
    customer_map: Path | None = None
    visits: Path | None = None  # field visits that settle reviews (agricredit.visits)
    region: str | None = None  # a region of seeds/regions.csv whose crop calendars apply (None: the policy's)

    def encoding_of(self, table: str) -> str | None:
        """The text encoding of ``table``'s CSV (``registry``, ``declarations``, ``borrowers``, a chain table).

        ``None``: detect it.
        """
        return self.encodings.get(table, self.encodings.get("*"))

    def input_paths(self) -> list[Path]:
        """Every input file or folder of the case (outputs must never replace one of them)."""
        paths = [self.plots, *self.tiles, self.registry, self.declarations, self.borrowers]
        return paths + [p for p in (self.policy, self.crop_model, self.visits, *self.chain_paths().values())
                        if p is not None]

    def chain_paths(self) -> dict[str, Path]:
        """The industry-chain tables given (``input_purchases``, ``machinery``, ``sales``, ``customer_map``)."""
        return {name: getattr(self, name) for name in _CHAIN_INPUTS if getattr(self, name) is not None}


_CHAIN_INPUTS = ("input_purchases", "machinery", "sales", "customer_map")
_CASE_INPUTS = {"plots", "tiles", "registry", "declarations", "borrowers", "policy", "crop_model", "visits",
                *_CHAIN_INPUTS}
_OPTIONAL_INPUTS = {"policy", "crop_model", "visits", *_CHAIN_INPUTS}
_CASE_OPTIONS = {"id_field", "plots_crs", "encoding", "start", "end", "sensor", "region"}
_CASE_TABLES = ("registry", "declarations", "borrowers", *_CHAIN_INPUTS)


def load_case(path: str | Path) -> Case:
    """Read a case TOML file.

    Parameters
    ----------
    path
        A TOML file with ``[inputs]`` (``plots``, ``tiles`` (a path or a list),
        ``registry``, ``declarations``, ``borrowers``, optional ``policy``,
        ``crop_model`` (a folder from ``agricredit train-crop``), ``visits``
        (field visits, :mod:`agricredit.visits`) and the industry-chain
        tables ``input_purchases``, ``machinery``, ``sales`` and
        ``customer_map`` (:mod:`agricredit.chain`); relative to the file) and
        optional ``[options]`` (``id_field``, ``plots_crs``, ``encoding`` (of
        every table), ``start``, ``end``, ``sensor``, ``region``: a region of
        ``seeds/regions.csv`` whose crop calendars apply, overriding the
        policy's) and optional ``[tables.NAME]`` with the ``encoding`` of one
        table (``registry``, ``declarations``, ``borrowers`` or a chain
        table), e.g. ``[tables.registry] encoding = "gbk"``.

    Returns
    -------
    Case
    """
    path = Path(path)
    return case_from_document(read_toml(path), path)


def read_toml(path: Path) -> dict[str, Any]:
    """A UTF-8 TOML file as a dict; one clear error naming the file when it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputNotFoundError(f"cannot read case file: {error.strerror}", path=path) from error
    except UnicodeDecodeError as error:
        raise InputError(f"not UTF-8 text: {error.reason} at byte {error.start}", path=path) from error
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"not valid TOML: {error}", path=path) from error


def case_from_document(document: Mapping[str, Any], path: Path, *, extra: Sequence[str] = ()) -> Case:
    """The :class:`Case` of a parsed case TOML ``document`` read from ``path`` (see :func:`load_case`).

    ``extra`` names further top-level tables the caller reads itself (e.g. ``batch``).
    """
    unknown = sorted(set(document) - {"inputs", "options", "tables", *extra})
    inputs, options, tables = document.get("inputs", {}), document.get("options", {}), document.get("tables", {})
    unknown += sorted(f"inputs.{k}" for k in set(inputs) - _CASE_INPUTS)
    unknown += sorted(f"options.{k}" for k in set(options) - _CASE_OPTIONS)
    unknown += sorted(f"tables.{k}" for k in set(tables) - set(_CASE_TABLES))
    if any(not isinstance(tables[t], dict) for t in tables):
        raise InputError("each [tables.NAME] is a table, e.g. [tables.registry] encoding = \"gbk\"", path=path)
    unknown += sorted(f"tables.{t}.{k}" for t in set(tables) & set(_CASE_TABLES) for k in set(tables[t]) - {"encoding"})
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r}", path=path)
    missing = sorted(_CASE_INPUTS - _OPTIONAL_INPUTS - set(inputs))
    if missing:
        raise InputError(f"missing inputs.{missing[0]}", path=path)
    base = path.parent
    tiles = inputs["tiles"] if isinstance(inputs["tiles"], list) else [inputs["tiles"]]
    if not tiles:
        raise InputError("inputs.tiles is empty: name tile folders, manifests (CSV) or STAC ItemCollections (JSON)",
                         path=path)
    for name, value in sorted(inputs.items()):
        if not all(isinstance(v, str) and v for v in (tiles if name == "tiles" else [value])):
            raise InputError(f"inputs.{name} must be a path (a non-empty string)"
                             + (", or a list of them" if name == "tiles" else ""), path=path)
    start, end = (_as_date(options.get(key), path, f"options.{key}") for key in ("start", "end"))
    if start is not None and end is not None and start > end:
        raise InputError(f"options.start {start} is after options.end {end}", path=path)
    return Case(
        plots=base / inputs["plots"],
        tiles=tuple(base / t for t in tiles),
        registry=base / inputs["registry"],
        declarations=base / inputs["declarations"],
        borrowers=base / inputs["borrowers"],
        policy=base / inputs["policy"] if "policy" in inputs else None,
        crop_model=base / inputs["crop_model"] if "crop_model" in inputs else None,
        **{name: base / inputs[name] for name in _CHAIN_INPUTS if name in inputs},
        visits=base / inputs["visits"] if "visits" in inputs else None,
        id_field=options.get("id_field", "plot_id"),
        plots_crs=options.get("plots_crs"),
        encodings={**({"*": options["encoding"]} if "encoding" in options else {}),
                   **{t: tables[t]["encoding"] for t in sorted(tables) if "encoding" in tables[t]}},
        start=start,
        end=end,
        sensor=options.get("sensor"),
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
    plots: gpd.GeoDataFrame  # one row per input plot, WGS84, schema.PLOT_FIELDS
    verdicts: Sequence[PlotVerdict]  # a list (:class:`agricredit.outputs.LoadedOnRead` when the reduce was split)
    decisions: Sequence[Decision]  # idem
    borrowers: pd.DataFrame  # one row per borrower of the borrower table (NO_PLOTS when none), schema.BORROWER_FIELDS
    audit: Sequence[dict[str, Any]]  # idem
    rejected: dict[str, list[str]]  # reason → records set aside: plot IDs, table rows, unreadable tiles
    inputs: dict[str, str]  # role → sha256
    key_fingerprint: str
    lang: str
    #: the borrowers' IDs, phones and names that no output may hold (:meth:`PersonalDataGuard.from_borrowers`)
    pii_guard: PersonalDataGuard = field(repr=False)
    chips: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)  # agricredit.report.data.plot_chips
    series: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)  # agricredit.report.data.season_series
    #: borrower → outline of the usable plots (agricredit.assess_outputs.borrower_outlines); None: made when written
    outlines: dict[str, Any] | None = field(default=None, repr=False)
    #: source → how many of the plots with a sound outline it has a figure for, and of how many
    #: (:func:`agricredit.facts.source_coverage`)
    coverage: dict[str, tuple[int, int]] = field(default_factory=dict)


def _stage(progress: Callable[[str], None] | None, message: str) -> None:
    """Report a stage once: to ``progress`` if given, else to the log (INFO)."""
    if progress is not None:
        progress(message)
    else:
        log.info(message)


#: The zonal stage: ``observe(plots, acquisitions, on_error=..., progress=...)`` → the long observation table
#: (one row per plot and date, rows by date then by plot in the order of ``plots``), as
#: :func:`agricredit.acquisitions.observation_table`; :mod:`agricredit.batch` gives one that maps chunks on Dask.
#: Plots whose evidence could not be computed are named in the table's ``attrs["failed_plots"]`` (plot ID → why):
#: they are held for review (``PROCESSING_FAILED``) and listed in ``Assessment.rejected``.
#: An observer may also have ``prefetch(plots, acquisitions)``: it is then called as soon as the plot file is
#: checked, with the plots that may be assessed (sound outline, a borrower; a superset of the plots it is later
#: called with), so that it can start while the tables are read and the claims measured; and
#: ``chain_evidence(declared, drawn_mu, options)``: called before it with those arguments of the evaluator, so
#: that it can start the evidence of the plots whose observations are in.
Observer = Callable[..., pd.DataFrame]
#: The per-plot evidence stage: called as :func:`agricredit.evidence.plot_evidence` with every assessed plot;
#: :mod:`agricredit.batch` gives one that maps it on the zonal stage's chunks.
Evaluator = Callable[..., Evidence]


@gc_young_only()  # a full collection walks the whole run: the plots' tables, facts, verdicts and rows
def run_assessment(case: Case, key: PseudonymKey, *, policy: Policy | None = None, lang: str = "en",
                   progress: Callable[[str], None] | None = None, strict: bool = False,
                   count_dates: Callable[[int, int], None] | None = None,
                   observe: Observer = observation_table, evaluate: Evaluator = plot_evidence) -> Assessment:
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
    strict
        Stop at the first bad row of a table, bad plot feature or unreadable
        tile. By default each is listed in ``Assessment.rejected`` and only its
        own records are rejected or sent to review (design §9).
    count_dates
        Called with ``(dates done, dates)`` during the zonal step, the long one.
    observe
        The zonal stage (:data:`Observer`); by default
        :func:`agricredit.acquisitions.observation_table` in this process.
    evaluate
        The per-plot evidence stage (:data:`Evaluator`); by default
        :func:`agricredit.evidence.plot_evidence` of every plot in this process.

    Returns
    -------
    Assessment
    """
    if lang not in ("en", "zh"):
        raise InputError(f"unknown language {lang!r} (en or zh)")
    policy = policy or load_policy(case.policy)
    # A bad model or visits table fails here, before any plot or tile is read.
    crop_model = load_crop_model(case.crop_model) if case.crop_model is not None else None
    visits = read_visits(case.visits, key, encoding=case.encoding_of("visits")) if case.visits is not None else []

    inputs, claims, acquisitions, unopened = _read_and_measure(case, policy, strict, observe, progress)
    checked, registry, declarations, borrowers = inputs.plots, inputs.registry, inputs.declarations, inputs.borrowers
    rejected, good = inputs.rejected, claims.good
    # The evidence stage's per-plot inputs (an observer that chains it gets them before the zonal stage ends).
    region, declared, drawn_mu, options, peer_options = _evidence_inputs(case, policy, claims, declarations,
                                                                         crop_model)
    if hasattr(observe, "chain_evidence"):
        observe.chain_evidence(declared, drawn_mu, options)
    table_ids = sorted(set(borrowers["borrower_id"]) - {""})
    borrower_alias = {b: pseudonym(key, "borrower", b)
                      for b in sorted(set(table_ids) | set(checked["borrower_id"].dropna()))}
    row_alias = {**borrower_alias, None: None}  # a plot row's borrower → pseudonym (none: none)
    # What needs neither the satellite nor the season is made on a thread while the zonal stage runs (in a batch,
    # the client waits on its workers then): the plots' claimed facts, the borrowers' public table and the guard
    # that scans the outputs for their personal data (one after the other; pseudonymising refuses a collision).
    usable_rows = borrowers.loc[borrowers["borrower_id"] != ""].drop_duplicates("borrower_id")
    claimed_done, public_done, guard_done = _in_background(
        1, (_claimed_facts, checked, claims, policy, registry, borrower_alias, key),
        (pseudonymise_borrowers, usable_rows, key), (PersonalDataGuard.from_borrowers, borrowers))
    long_table, unread_tiles, failed_plots = _observe(case, good, strict, acquisitions, unopened, observe, progress,
                                                      count_dates, rejected)

    # While the evidence is computed, on threads that end with their one task: the input files (tiles: gigabytes
    # at county scale) are hashed (hashlib and file reads release the GIL), and the plots' output outlines and the
    # borrowers' are made (GEOS releases it too).
    hashes_done, outlines_done = _in_background(2, (_input_hashes, case, acquisitions, policy, region),
                                                (plot_outlines, checked, row_alias))
    _stage(progress, "season: phenology, crop fit, vigor; NDVI chips and series for the report")
    evidence = evaluate(long_table, good, declared, drawn_mu, season_period(long_table), acquisitions, options)
    season = finish_season(evidence.season, **peer_options)

    not_covered = sorted(pid for pid, flags in season.flags.items() if any(f.code == "NO_COVERAGE" for f in flags))
    if not_covered:
        rejected["NO_COVERAGE"] = not_covered

    _stage(progress, "cross-verification and limits")
    with gc_paused(promote=True):  # no collection while the per-plot and per-borrower objects are built
        # (sorted, overlaps completed: as :func:`agricredit.verify.complete_overlaps` returns them)
        facts = plot_facts(claimed_done.result(), season, unread_tiles, failed_plots)
        if inputs.chain is not None:
            facts = _with_chain(facts, verify_plots(facts, policy), inputs.chain, claims, key,
                                _season_year(case, acquisitions), policy)
        public = public_done.result()  # the allow-listed columns
        hashes = hashes_done.result()
        reduce = _Reduce(policy, lang, visits, case.visits, hashes,
                         {borrower_alias[b]: [Check.make("BORROWER_RECORD_INVALID", reason=why)]
                          for b, why in inputs.bad_borrowers.items()},
                         dict(zip(public["pseudonym"], public["village"])))
        verdicts, verdict_fields, decisions, audit, borrower_rows = reduce.run(
            facts, [borrower_alias[b] for b in table_ids])
        log_lights([fields[VERDICT_LIGHT] for _, fields in verdict_fields])
        geometries, order, outlines = outlines_done.result()
        return Assessment(
            policy=policy,
            plots=_plot_rows(checked, verdicts, season, row_alias, verdict_fields, geometries, order),
            verdicts=verdicts,
            decisions=decisions,
            borrowers=borrower_rows,
            audit=audit,
            rejected={code: sorted(set(ids)) for code, ids in rejected.items()},  # a duplicated ID is listed once
            inputs=hashes,
            key_fingerprint=key.fingerprint,
            lang=lang,
            pii_guard=guard_done.result(),
            chips=evidence.chips,
            series=evidence.series,
            outlines=outlines,
            coverage=source_coverage(facts),
        )


def _read_and_measure(case: Case, policy: Policy, strict: bool, observe: Observer,
                      progress: Callable[[str], None] | None
                      ) -> tuple[_Inputs, _Claims, list[Acquisition], dict[str, str]]:
    """The first stages of :func:`run_assessment`: the plots and tables read (the zonal stage prefetched meanwhile,
    if ``observe`` can), the claims measured, the plots set aside listed in the inputs' ``rejected``; and the season's
    acquisitions and the tiles that could not be opened. Raises :class:`InputError` when no plot can be assessed."""
    _stage(progress, "reading plots and tables")
    discovered: list[tuple[list[Acquisition], dict[str, str]]] = []  # by the prefetch, if the observer has one
    inputs = _read_inputs(case, policy, strict, _prefetch(case, strict, observe, discovered))

    _stage(progress, "measuring plots (geodesic area, validity, overlaps)")
    claims = _measure_claims(inputs.plots, inputs.registry, inputs.declarations, policy)
    for code, ids in rejected_ids(inputs.plots).items():
        inputs.rejected.setdefault(code, []).extend(ids)
    if claims.good.empty:
        counts = ", ".join(f"{code} {len(ids)}" for code, ids in sorted(inputs.rejected.items()))
        raise InputError(f"no plot can be assessed: all {len(inputs.plots)} are rejected ({counts})", path=case.plots)
    return (inputs, claims, *(discovered[0] if discovered else _discover(case, strict)))


def _in_background(threads: int, *calls: tuple[Any, ...]) -> list[Future[Any]]:
    """Start each ``(function, *arguments)`` of ``calls`` on ``threads`` threads that end with the last one."""
    pool = ThreadPoolExecutor(max_workers=threads)
    started = [pool.submit(*call) for call in calls]
    pool.shutdown(wait=False)
    return started


#: Plots per part below which the reduce step is not split across processes (a fork and the results' pickling
#: cost more than the part's verification).
REDUCE_PART_MIN_PLOTS = 4000
#: What a part done in a child costs beyond the same part done in this process, as a share of it: it runs slower
#: there (copy-on-write faults on the pages it touches) and its results are pickled, then unpickled here once this
#: process's part is done (the audit records as bytes, unpickled only if read). At 100,000 plots (means of 6 to 12
#: runs) the reduce took 7.5 s with this process's part 1.3 to 1.45 times the child's (in plots); 8.2 and 7.8 s
#: with 1.3 and 1.45 times when the audit records were unpickled here. Since the child no longer sends its verdicts
#: and decisions back, this process still waited for it 0.4-0.8 s with 1.45 times, 1.2-1.5 s with 1.2 times and
#: 2.7-2.8 s with as many plots (2 runs each, the county's reduce replayed from a pickle).
REDUCE_CHILD_OVERHEAD = 0.45


@dataclass(frozen=True)
class _Reduce:
    """The reduce step of a run (design §6, §7): each plot verified, visits settled, each borrower decided, the
    audit records and the borrowers' output rows; by borrower, so that groups of borrowers can be done in separate
    processes (:func:`agricredit.outputs.map_in_processes`) and joined to the same result."""

    policy: Policy
    lang: str
    visits: Sequence[Visit]
    visits_path: Path | None
    hashes: Mapping[str, str]
    borrower_checks: Mapping[str, list[Check]]  # borrower pseudonym → borrower-level failed checks
    villages: Mapping[str, str]  # borrower pseudonym → village

    def run(self, facts: Sequence[PlotFacts], table_borrowers: Sequence[str], *, parts: int | None = None
            ) -> tuple[Sequence[PlotVerdict], list[tuple[str, tuple[Any, ...]]], Sequence[Decision],
                       Sequence[dict[str, Any]], pd.DataFrame]:
        """The verdicts (by plot ID) and each one's plot ID and plot fields
        (:func:`agricredit.assess_outputs.verdict_fields_of`), the decisions and audit records (by borrower) and the
        borrowers' output table of ``facts`` (:func:`agricredit.verify.complete_overlaps`) and of the borrowers of
        the borrower table ``table_borrowers`` (pseudonyms), in ``parts`` groups of borrowers (default: one per
        :data:`REDUCE_PART_MIN_PLOTS` plots, at most one per core).

        The outputs are made of the fields and borrower rows. The audit records of the groups done in child
        processes come back pickled and are unpickled only when read (:class:`agricredit.outputs.LoadedOnRead`), by
        the process that writes them (:func:`agricredit.assess_outputs.write_outputs`); their verdicts and decisions
        do not come back (pickling them took a child 0.8 s at 40,000 plots), and are made again here if read.
        """
        if self.visits:
            check_visited_plots(self.visits, {f.plot_id for f in facts}, path=self.visits_path)
        if parts is None:
            parts = max(1, min(_cores(), len(facts) // REDUCE_PART_MIN_PLOTS))
        groups = _borrower_groups(facts, table_borrowers, parts, first_weight=1 + REDUCE_CHILD_OVERHEAD)
        results = map_in_processes(self._part, [(group, k > 0) for k, group in enumerate(groups)])
        keys = [key for part in results for key in part.keys]
        order = sorted(range(len(keys)), key=keys.__getitem__)  # by plot ID, then borrower (stable)
        fields = [item for part in results for item in part.fields]

        @functools.cache
        def objects(k: int) -> tuple[list[PlotVerdict], list[Decision]]:  # group k's verdicts and decisions
            return results[k].objects or self._decided(*groups[k])

        def verdicts() -> list[PlotVerdict]:
            every = [v for k in range(len(results)) for v in objects(k)[0]]
            return [every[i] for i in order]

        n_decisions = sum(part.n_decisions for part in results)
        return (LoadedOnRead(verdicts, len(order)), [(keys[i][0], fields[i]) for i in order],
                LoadedOnRead(lambda: [d for k in range(len(results)) for d in objects(k)[1]], n_decisions),
                LoadedOnRead(lambda: [r for part in results for r in part.audit_records()], n_decisions),
                pd.concat([part.borrowers for part in results], ignore_index=True).sort_values(
                    "borrower", ignore_index=True))

    def _decided(self, facts: list[PlotFacts], table_borrowers: list[str]
                 ) -> tuple[list[PlotVerdict], list[Decision]]:
        """The verdicts of one group's ``facts`` (visits settled) and the decisions of its borrowers."""
        verdicts = [verify_plot(item, self.policy) for item in facts]
        if self.visits:
            plot_ids = {f.plot_id for f in facts}
            verdicts = settle_verdicts(verdicts, [v for v in self.visits if v.plot_id in plot_ids], self.policy,
                                       path=self.visits_path)
        return verdicts, decide_all(verdicts, self.policy, borrower_ids=table_borrowers,
                                    borrower_checks=self.borrower_checks)

    def _part(self, task: tuple[tuple[list[PlotFacts], list[str]], bool]) -> _ReducedPart:
        (facts, table_borrowers), in_child = task
        verdicts, decisions = self._decided(facts, table_borrowers)
        verdicts_of: dict[str, list[PlotVerdict]] = {d.borrower_id: [] for d in decisions}
        for verdict in verdicts:
            verdicts_of[verdict.borrower_id].append(verdict)
        audit = audit_records(decisions, verdicts_of, self.policy, self.hashes,
                              visits_of={v.plot_id: v for v in self.visits})
        borrowers = _borrower_rows(decisions, verdicts_of, self.villages, self.policy, self.lang)

        return _ReducedPart([(v.plot_id, v.borrower_id) for v in verdicts], [verdict_fields_of(v) for v in verdicts],
                            pickle.dumps(audit, protocol=pickle.HIGHEST_PROTOCOL) if in_child else audit, borrowers,
                            len(decisions), None if in_child else (verdicts, decisions))


@dataclass
class _ReducedPart:
    """What one group of borrowers of :class:`_Reduce` gives: each verdict's plot and borrower IDs and plot fields,
    the audit records (pickled when made in a child process, so that the parent unpickles them only if they are
    read), the borrowers' output rows, and the verdicts and decisions themselves (``None`` from a child process)."""

    keys: list[tuple[str, str]]
    fields: list[tuple[Any, ...]]
    audit: list[dict[str, Any]] | bytes
    borrowers: pd.DataFrame
    n_decisions: int
    objects: tuple[list[PlotVerdict], list[Decision]] | None

    def audit_records(self) -> list[dict[str, Any]]:
        """The audit records (unpickled at the first call)."""
        if isinstance(self.audit, bytes):
            self.audit = pickle.loads(self.audit)
        return self.audit


def _borrower_groups(facts: Sequence[PlotFacts], table_borrowers: Sequence[str], parts: int, *,
                     first_weight: float = 1.0) -> list[tuple[list[PlotFacts], list[str]]]:
    """``facts`` and ``table_borrowers`` in at most ``parts`` groups of consecutive borrowers (by pseudonym) with
    about as many plots each (a borrower counts its plots and one), the first ``first_weight`` times as many as
    each other; each group's facts in the order of ``facts``."""
    plots_of: dict[str, int] = dict.fromkeys(table_borrowers, 0)
    for item in facts:
        plots_of[item.borrower_id] = plots_of.get(item.borrower_id, 0) + 1
    ordered = sorted(plots_of)
    weights = np.array([plots_of[b] + 1 for b in ordered], dtype=float)  # a borrower without plots: a decision
    middles = np.cumsum(weights) - weights / 2  # each borrower goes to the group its weight's middle falls in
    shares = np.array([first_weight] + [1.0] * (parts - 1))
    ends = np.cumsum(shares) / shares.sum() * weights.sum()
    groups_at = np.minimum(parts - 1, np.searchsorted(ends, middles, side="right"))
    group_of = dict(zip(ordered, groups_at.tolist()))
    groups: list[tuple[list[PlotFacts], list[str]]] = [([], []) for _ in range(parts)]
    for item in facts:
        groups[group_of[item.borrower_id]][0].append(item)
    for borrower in table_borrowers:
        groups[group_of[borrower]][1].append(borrower)
    return [group for group in groups if group[0] or group[1]] or [([], [])]


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _prefetch(case: Case, strict: bool, observe: Observer, discovered: list[Any]
              ) -> Callable[[gpd.GeoDataFrame], None] | None:
    """What :func:`_read_inputs` calls with the checked plots when ``observe`` has a ``prefetch`` (:data:`Observer`):
    it finds the season's acquisitions (kept in ``discovered``) and hands the observer the plots that may be
    assessed (a sound outline, a borrower)."""
    if not hasattr(observe, "prefetch"):
        return None

    def prefetch(checked: gpd.GeoDataFrame) -> None:
        discovered.append(_discover(case, strict))
        candidates = checked["geometry_status"].isin((STATUS_OK, GEOMETRY_REPAIRED)) & checked["borrower_id"].notna()
        observe.prefetch(checked.loc[candidates], discovered[0][0])

    return prefetch


@gc_paused(promote=True)  # no collection walks while the per-plot and per-row objects are built (so _read_inputs, _measure_claims)
def _evidence_inputs(case: Case, policy: Policy, claims: _Claims, declarations: pd.DataFrame, crop_model: Any
                     ) -> tuple[str, dict[str, list[str]], dict[str, float], dict[str, Any], dict[str, Any]]:
    """The region, then the evidence stage's declared crops, drawn areas and options of the assessed plots, and the
    peer-vigor options of :func:`agricredit.season.finish_season`."""
    good = claims.good
    region = resolve_region(case.region or policy.satellite.region, good)
    row_options, peer_options = split_season_options(season_options(policy, region=region))
    drawn_mu = {pid: claims.drawn_mu[pid] for pid in good["plot_id"].astype(str).tolist()}
    return (region, _declared_crops(declarations, claims, good), drawn_mu, {**row_options, "crop_model": crop_model},
            peer_options)


def _discover(case: Case, strict: bool) -> tuple[list[Acquisition], dict[str, _Unopened]]:
    """The season's acquisitions, and the tiles that could not even be opened (path → why and footprint;
    ``strict``: raise).

    Such a tile is listed. When its listing tells where it lies (a STAC item's geometry), the plots under it are
    held as under a tile whose pixels cannot be read; otherwise (a corrupt file, a manifest row) no plot is known to
    be under it, and the season is judged on the other tiles (thin evidence then goes to review).
    """
    unopened: dict[str, _Unopened] = {}

    def on_error(path: Path, error: AgricreditError) -> None:
        footprint = error.footprint if isinstance(error, MissingTileError) else None
        unopened.setdefault(str(path), _Unopened(error.message, footprint))

    acquisitions = discover_acquisitions(list(case.tiles), case.start, case.end, on_error=None if strict else on_error,
                                         **({"sensor": case.sensor} if case.sensor else {}))
    if not acquisitions:
        why = ""  # (each tile that could not be opened was left out: a season of those alone says why)
        if unopened:
            path, unread = min(unopened.items())
            why = f"; {len(unopened)} tile(s) could not be opened, the first {Path(path).name}: {unread.why}"
        raise InputError(f"no acquisitions found in the tiles for the given period{why}", path=case.tiles[0])
    return acquisitions, unopened


class _Unopened(NamedTuple):
    """A tile that could not be opened: why, and its footprint in WGS84 when its listing gives one."""

    why: str
    footprint: Any = None


def _observe(case: Case, good: gpd.GeoDataFrame, strict: bool, acquisitions: list[Acquisition],
             unopened: dict[str, _Unopened], observe: Observer, progress: Callable[[str], None] | None,
             count_dates: Callable[[int, int], None] | None,
             rejected: dict[str, list[str]]) -> tuple[pd.DataFrame, dict[str, list[str]], dict[str, str]]:
    """Run the zonal stage, listing bad tiles (``unopened`` and unreadable) in ``rejected`` (per-record isolation).

    A tile whose pixels cannot be read, or that is missing where its listing
    places it, holds the plots under it. Returns the long table, the unread
    tiles under each plot and the plots whose evidence failed (a batch chunk).
    """
    _stage(progress, f"zonal statistics: {len(good)} plots x {len(acquisitions)} dates")
    unreadable: dict[str, tuple[Tile, str]] = {}
    on_error = None if strict else lambda tile, error: unreadable.setdefault(
        tile.path, (tile, error.message if isinstance(error, AgricreditError) else str(error)))
    long_table = observe(good, acquisitions, on_error=on_error, progress=count_dates)
    unread_tiles = _plots_under(good, [*(_tile_footprint(tile) for tile, _ in unreadable.values()),
                                       *((path, "EPSG:4326", tile.footprint) for path, tile in unopened.items()
                                         if tile.footprint is not None)])
    failed_plots = long_table.attrs.get("failed_plots", {})
    if failed_plots:
        rejected["PROCESSING_FAILED"] = sorted(failed_plots)
    unread = {**{path: tile.why for path, tile in unopened.items()},
              **{path: why for path, (_, why) in unreadable.items()}}
    if unread:
        rejected["TILE_UNREADABLE"] = [f"{Path(path).name}: {why}" for path, why in sorted(unread.items())]
    if long_table.empty:
        raise InputError(f"no tile of the season ({', '.join(map(str, case.tiles))}) covers any plot "
                         f"between {acquisitions[0].date} and {acquisitions[-1].date}", path=case.plots)
    return long_table, unread_tiles, failed_plots


def _declared_crops(declarations: pd.DataFrame, claims: _Claims, good: gpd.GeoDataFrame) -> dict[str, list[str]]:
    """Each assessed plot's declared crop seasons ("crop" or "crop:slot", optional ``season`` column).

    A contested plot takes the crops of the declarant the claims step chose.
    """
    crops = declarations["declared_crop"].tolist()
    if "season" in declarations:
        crops = [f"{crop}:{slot}" if slot else crop for crop, slot in zip(crops, declarations["season"].tolist())]
    by_declarant: dict[tuple[str, str], list[str]] = {}
    for declarant, crop in zip(zip(declarations["plot_id"].tolist(), declarations["borrower_id"].tolist()), crops):
        by_declarant.setdefault(declarant, []).append(crop)
    # A plot's own borrower's declaration is the one chosen when there is one (_measure_claims).
    return {pid: by_declarant.get((pid, borrower))
            or by_declarant[pid, claims.declaration[pid, borrower]["borrower_id"]]
            for pid, borrower in zip(good["plot_id"].tolist(), good["borrower_id"].tolist())}


@dataclass
class _Inputs:
    """The tables and checked plots of a case, with the records set aside (per-record isolation)."""

    plots: gpd.GeoDataFrame
    registry: pd.DataFrame
    declarations: pd.DataFrame  # sound rows only
    borrowers: pd.DataFrame  # every row (the personal-data scan needs them all)
    bad_borrowers: dict[str, str]  # borrower_id → why its row is bad
    rejected: dict[str, list[str]]  # reason → records set aside (plot IDs, or ``file row N column: reason``)
    chain: ChainTables | None = None  # the industry-chain tables, when the case has any


@gc_paused(promote=True)
def _read_inputs(case: Case, policy: Policy, strict: bool,
                 plots_read: Callable[[gpd.GeoDataFrame], None] | None = None) -> _Inputs:
    """Read the plots and the three tables; mark the plots whose borrower or declaration is missing.

    ``plots_read`` is called with the checked plots before the tables are read.
    """
    checked = load_plots(case.plots, id_field=case.id_field, plots_crs=case.plots_crs,
                         repair_max_area_change=policy.area.repair_max_area_change)
    if "borrower_id" not in checked.columns:
        raise SchemaError("no borrower_id column in the plot file", path=case.plots)
    checked["borrower_id"] = pd.Series([(v.strip() or None) if type(v) is str else _id_or_none(v)  # text: most
                                        for v in checked["borrower_id"].tolist()], index=checked.index, dtype=object)
    if strict and checked["borrower_id"].isna().any():
        path, record = plot_record(checked, int(np.flatnonzero(checked["borrower_id"].isna().to_numpy())[0]))
        raise SchemaError("feature has no borrower_id", path=path, record=record)
    if plots_read is not None:
        plots_read(checked)
    isolate = not strict
    registry = read_registry(case.registry, encoding=case.encoding_of("registry"), isolate=isolate)
    declarations = read_declarations(case.declarations, encoding=case.encoding_of("declarations"), isolate=isolate,
                                     known_plots=set(checked["plot_id"].dropna().tolist()), known_crops=crop_aliases())
    borrowers = read_borrowers(case.borrowers, encoding=case.encoding_of("borrowers"), isolate=isolate)
    chain = read_chain_tables(case.chain_paths(), case.encoding_of, isolate=isolate) if case.chain_paths() else None
    rejected: dict[str, list[str]] = {}
    problems = [p for table in (registry, declarations, borrowers) for p in table.attrs.get("problems", [])]
    for problem in [*problems, *(chain.problems if chain is not None else ())]:
        rejected.setdefault(BAD_TABLE_ROW, []).append(
            f"{Path(problem.path).name} row {problem.row} {problem.column}: {problem.reason}")
    sound = {name: table.loc[table["problem"] == ""] if "problem" in table else table
             for name, table in (("registry", registry), ("declarations", declarations))}
    bad_borrowers = {}
    if "problem" in borrowers:
        bad_borrowers = {b: why for b, why in zip(borrowers["borrower_id"].tolist(), borrowers["problem"].tolist())
                         if why and b}
    known = set(borrowers["borrower_id"].tolist()) - {""}
    unknown = sorted({b for b in checked["borrower_id"].dropna().tolist() if b not in known})
    if unknown and strict:
        first = checked.loc[checked["borrower_id"] == unknown[0], "plot_id"].iloc[0]
        raise SchemaError(f"{len(unknown)} borrower(s) of the plot file are not in the borrower table "
                          f"(first at plot {first})", path=case.borrowers)
    _mark(checked, checked["borrower_id"].isna().to_numpy(), MISSING_BORROWER, "no borrower_id")
    _mark(checked, checked["borrower_id"].astype(object).isin(unknown).to_numpy(), UNKNOWN_BORROWER,
          "borrower_id not in the borrower table")
    # A plot nobody declared cannot be assessed: it is rejected and listed, the rest go on.
    declared = set(sound["declarations"]["plot_id"].tolist())
    # (isin on object values: pandas' Arrow strings convert a large value set element by element)
    _mark(checked, ~checked["plot_id"].astype(object).isin(declared).to_numpy(), NO_DECLARATION,
          "no declaration for the plot")
    return _Inputs(checked, sound["registry"], sound["declarations"], borrowers, bad_borrowers, rejected, chain)


def _id_or_none(value: Any) -> str | None:
    """An ID cell as text; missing (None, pandas' NA), NaN and blank are None (integral floats lose their ``.0``)."""
    if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip() or None


def _mark(checked: gpd.GeoDataFrame, where: np.ndarray, status: str, reason: str) -> None:
    """Give ``status`` to the plots at ``where`` not already set aside for want of an ID, borrower or declaration."""
    where = where & ~checked["geometry_status"].isin(UNCHECKED).to_numpy()
    checked.loc[where, "geometry_status"] = status
    checked.loc[where, "geometry_reason"] = reason


@dataclass
class _Claims:
    """What the plot file claims, measured: drawn areas, overlaps, repeated areas, declarations per plot."""

    good: gpd.GeoDataFrame  # accepted, sane plots that go on to the satellite
    drawn_mu: dict[str, float]
    overlaps: dict[str, list[dict[str, Any]]]
    repeated_mu: dict[str, float]
    declaration: dict[tuple[str, str], dict[str, Any]]  # (plot, plot file's borrower) → the declaration used
    other_declarants: dict[tuple[str, str], list[str]]  # (plot, plot file's borrower) → the other declarants


@gc_paused(promote=True)
def _measure_claims(checked: gpd.GeoDataFrame, registry: pd.DataFrame, declarations: pd.DataFrame,
                    policy: Policy) -> _Claims:
    """Areas, absurd outlines (rejected alone) and contested declarations; the overlaps and repeats are
    measured later (:func:`_with_overlaps`).

    A plot declared only by borrowers other than the plot file's takes the
    declaration of the first of them (by ID) and is held for review as contested.
    """
    by_plot: dict[str, list[dict[str, Any]]] = {}
    ordered = declarations.sort_values(["plot_id", "borrower_id"])
    columns = {name: ordered[name].tolist() for name in ordered.columns}  # to_dict("records"), without its boxing
    for pid, values in zip(columns["plot_id"], zip(*columns.values())):
        by_plot.setdefault(pid, []).append(dict(zip(columns, values)))
    declaration, others = {}, {}
    plot_ids, borrower_ids = checked["plot_id"].tolist(), checked["borrower_id"].tolist()
    for pid, borrower in zip(plot_ids, borrower_ids):
        records = by_plot.get(pid)
        if records is None or borrower is None:
            continue
        if len(records) == 1:  # most plots: one declaration, the plot file's borrower's or contested
            declaration[pid, borrower] = records[0]
            if records[0]["borrower_id"] != borrower:
                others[pid, borrower] = [records[0]["borrower_id"]]
            continue
        own = [r for r in records if r["borrower_id"] == borrower]
        declaration[pid, borrower] = (own or records)[0]
        contest = sorted({r["borrower_id"] for r in records} - {borrower})
        if contest:
            others[pid, borrower] = contest
    ok = checked["geometry_status"].isin((STATUS_OK, GEOMETRY_REPAIRED)).to_numpy()
    drawn = dict(zip(checked.loc[ok, "plot_id"].tolist(), area_mu(checked.loc[ok]).to_numpy()))
    registered = dict(zip(registry["plot_id"].tolist(), registry["registered_mu"].tolist()))
    absurd = [is_ok and drawn_area_absurd(drawn[pid], registered.get(pid, math.nan),
                                          declaration.get((pid, b), {}).get("declared_mu", math.nan), policy)
              for is_ok, pid, b in zip(ok.tolist(), plot_ids, borrower_ids)]
    _mark(checked, np.asarray(absurd, dtype=bool), AREA_ABSURD, "drawn area absurd against registry and declaration")
    good = checked.loc[checked["geometry_status"].isin((STATUS_OK, GEOMETRY_REPAIRED))]
    return _Claims(good=good, drawn_mu=drawn, overlaps={}, repeated_mu={}, declaration=declaration,
                   other_declarants=others)


def _with_overlaps(claims: _Claims, policy: Policy) -> _Claims:
    """``claims`` (of :func:`_measure_claims`, without overlaps) with the good plots' overlaps on shrunk outlines
    and repeated areas."""
    found, repeated = overlaps_and_repeats(claims.good, outline_accuracy_m=policy.area.outline_accuracy_m)
    good_ids = claims.good["plot_id"].tolist()
    return replace(claims, overlaps=dict(zip(good_ids, found)), repeated_mu=dict(zip(good_ids, m2_to_mu(repeated))))


def _claimed_facts(checked: gpd.GeoDataFrame, claims: _Claims, policy: Policy, *rest: Any) -> list[PlotFacts]:
    """:func:`agricredit.facts.claimed_facts` of ``claims`` once their overlaps are measured: both on a thread
    while the zonal stage runs, as nothing before the facts needs the overlaps (the evidence stage, chained on a
    cluster, starts meanwhile)."""
    return claimed_facts(checked, _with_overlaps(claims, policy), *rest)


def _input_hashes(case: Case, acquisitions: Sequence[Any], policy: Policy, region: str) -> dict[str, str]:
    """sha256 of every input by role: the tables, the plots, the policy, each tile used and each tile index,
    and the crop calendars of the region the season was checked against (role ``region:<id>/<file>``)."""
    files = {"plots": case.plots, "registry": case.registry, "declarations": case.declarations,
             "borrowers": case.borrowers, **({"visits": case.visits} if case.visits is not None else {}),
             **case.chain_paths()}
    if case.crop_model is not None:
        files.update({f"crop_model:{path.name}": path for path in sorted(case.crop_model.iterdir()) if path.is_file()})
    files.update({f"tile_index:{source.name}": source for source in case.tiles
                  if source.is_file() and source.suffix.lower() in (".csv", ".json")})  # manifests, STAC
    hashes = {role: sha256_path(path) for role, path in files.items()}  # (plots: a file or a folder)
    hashes.update({f"tile:{key}": digest for key, digest in tile_hashes(acquisitions).items()})
    hashes["policy"] = policy.sha256
    hashes.update({f"region:{region}/{name}": sha256_file(SEEDS_DIR / name) for name in ("calendars.csv", "rotations.csv")})
    return dict(sorted(hashes.items()))


def _tile_footprint(tile: Tile) -> tuple[str, Any, Any]:
    """A tile's path, CRS and footprint (its grid's bounds in that CRS), as :func:`_plots_under` takes them."""
    return tile.path, tile.crs, shapely.box(*rasterio.transform.array_bounds(tile.height, tile.width, tile.transform))


def _plots_under(plots: gpd.GeoDataFrame, footprints: Sequence[tuple[str, Any, Any]]) -> dict[str, list[str]]:
    """Plot ID → the names of the tiles whose footprint it touches (``footprints``: each tile's path, CRS and
    footprint in that CRS)."""
    found: dict[str, list[str]] = {}
    for path, crs, footprint in sorted(footprints, key=lambda item: item[0]):
        touched = plots.to_crs(crs).intersects(footprint).to_numpy()
        for plot_id in plots["plot_id"].to_numpy()[touched]:
            found.setdefault(plot_id, []).append(Path(path).name)
    return found


def _season_year(case: Case, acquisitions: Sequence[Any]) -> int:
    """The assessed season (harvest year): that of ``case.end``, else of the last acquisition."""
    return case.end.year if case.end is not None else max(a.date for a in acquisitions).year


def _with_chain(facts: list[PlotFacts], verdicts: Sequence[PlotVerdict], chain: ChainTables, claims: _Claims,
                key: PseudonymKey, season: int, policy: Policy) -> list[PlotFacts]:
    """The facts with each plot's industry-chain evidence (partners pseudonymised), from a first verification.

    The evidence of a borrower's declared-crop group is compared with the group's verified area, so the plots
    are verified once without it (the verified areas) and once with it.
    """
    by_pseudonym = {(v.plot_id, v.borrower_id): v for v in verdicts}
    alias = {borrower: pseudonym(key, "borrower", borrower) for _, borrower in claims.declaration}
    refs = []
    for (plot_id, borrower), declaration in sorted(claims.declaration.items()):
        verdict = by_pseudonym.get((str(plot_id), alias[borrower]))
        if verdict is not None and not verdict.excluded:
            refs.append(PlotRef(str(plot_id), borrower, str(declaration["declared_crop"]),
                                float(declaration["declared_mu"]), verdict.contribution.mu_if_confirmed))
    found = chain_facts(chain, refs, season, lambda partner: pseudonym(key, "partner", partner), policy)
    evidence = {(alias[borrower], plot_id): group for (borrower, plot_id), group in found.items()}
    return [replace(f, chain=evidence[f.borrower_id, f.plot_id]) if (f.borrower_id, f.plot_id) in evidence else f
            for f in facts]
