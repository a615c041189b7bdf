"""County-scale runs on Dask distributed: ``agricredit batch CONFIG`` (issue 11).

The batch runs the very pipeline of :func:`agricredit.assess.run_assessment`
with its two per-plot stages mapped on a Dask cluster (a
:class:`distributed.LocalCluster` by default, or an existing scheduler), one
task per spatial chunk of plots: the zonal statistics (:func:`observe_chunk`)
and then, once the season's period is known, the per-plot evidence (features,
crop fits, satellite checks, NDVI chips: :func:`agricredit.evidence.plot_evidence`)
on the chunk's own observations. Chunks are the cells of a square grid laid
over the plots' centroids in the first tile's CRS, so that a task reads only
the windows its plots need from each date. The reduce step (vigor peers,
double claims, checks, limits per borrower, outputs) runs on the per-plot
table in this process, through the same code as ``assess``: the outputs are
the same bytes as ``assess`` on the same inputs, whatever the number of
workers or chunks.

Resume: every finished chunk's observations are written (temporary name, then
renamed) to ``OUTPUT/.agricredit-batch/chunk-NNNNN.parquet`` and recorded in
the ledger ``ledger.json`` (:mod:`agricredit.ledger`) with the file's sha256
and the hash of the chunk's plots; the ledger's header holds the hashes of the
configuration and of the inputs. ``resume=True`` reuses the chunks whose
result files still verify and refuses a ledger written for another
configuration or other inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pickle
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from affine import Affine

from agricredit.acquisitions import Acquisition, observation_table, tile_hashes
from agricredit.assess import Case, _in_background, case_from_document, read_toml
from agricredit.errors import AgricreditError, InputError, OutputError
from agricredit.evidence import Evidence, plot_evidence
from agricredit.ledger import Ledger, finished_chunks
from agricredit.outputs import atomic_path, gc_young_only, output_folder_entries
from agricredit.privacy import RedactPII
from agricredit.report.data import KeptChips
from agricredit.season import season_period

__all__ = ["BatchConfig", "BatchRun", "ChunkFailure", "DaskObserver", "FAILURES", "LOCAL_WORKER_CONFIG",
           "MIN_MEMORY_PER_WORKER", "SEQUENCE_FILES",
           "WORK_FOLDER",
           "chunk_plots", "load_batch_config", "observe_chunk", "refuse_an_unfinished_run", "run_batch"]

log = logging.getLogger(__name__)

#: The batch's own folder inside the output folder: the ledger, the chunks' results, the run log.
WORK_FOLDER = ".agricredit-batch"
#: The run log in the batch's folder: the stage lines, the chunks that failed, Dask's warnings and errors.
RUN_LOG = "run.log"
#: The GeoJSON layers past ``geojsonseq_min_bytes``, as RFC 8142 text sequences (instead of ``NAME.geojson``).
SEQUENCE_FILES = ("plots.geojsonl", "borrowers.geojsonl")
#: The plots of failed chunks and those unreadable tiles hold, a row per plot and reason (``chunk,plot_id,reason``);
#: absent when none.
FAILURES = "failures.csv"

#: glibc's allocator settings of the local workers (environment variables): see :data:`LOCAL_WORKER_CONFIG`.
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": 256 * 2**20, "MALLOC_TRIM_THRESHOLD_": 512 * 2**20, "MALLOC_ARENA_MAX": 1}
#: Dask settings of the local workers, whose map tasks are array work on chunks of bounded memory. glibc's allocator
#: keeps the arrays of a task in one heap, reused by the next task, rather than mapping each large one afresh (the
#: kernel then zeroes every page of it again): arrays under 256 MiB come from the heap (a window of a 25 km chunk is
#: 38 MB, its NDVI 50 MB; past 32 MB glibc maps each one), up to 512 MiB of free heap is kept, and the task threads
#: share the one heap (a thread's own heaps are at most 64 MB, so large arrays would be mapped there all the same).
#: Eight chunks in a row took 0.4 s of system time instead of 2.2-2.8 s and 12-22 % less time in all, at the same
#: peak memory; the county's batch, 4 % less CPU and wall time on average (7 interleaved pairs). (Dask's own
#: ``MALLOC_TRIM_THRESHOLD_=65536`` maps and unmaps every large array: the zonal tasks took 1.4x as long.) No
#: profiler samples each task's stack every 10 ms, and the event loops of the workers, nannies and scheduler check
#: that they are not blocked once a second, not every 20 ms (an idle local cluster of 2 workers used 15 % of a core,
#: 5 % after; the Dask CPU beside the map tasks fell by a fifth). A loop blocked 3 s is still logged
#: (``distributed.admin.tick.limit``). Variables set in the environment win over these, as Dask does.
LOCAL_WORKER_CONFIG = {**{f"distributed.nanny.pre-spawn-environ.{name}": value
                          for name, value in MALLOC_SETTINGS.items()},
                       "distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s"}

_BATCH_KEYS = {"output", "chunk_size_m", "workers", "memory_per_worker", "geojsonseq_min_bytes"}


@dataclass(frozen=True)
class BatchConfig:
    """A batch configuration: the case (as in a case TOML) and the ``[batch]`` table.

    Attributes
    ----------
    case
        The inputs and reading options (``[inputs]``, ``[options]``, ``[tables.NAME]``).
    output
        The output folder (``[batch] output``, relative to the file).
    chunk_size_m
        The side of a chunk's grid cell in metres of the tile CRS.
    workers
        Local workers (``None``: one per core).
    memory_per_worker
        Memory limit of each local worker (Dask's notation, e.g. ``"2GiB"``).
    geojsonseq_min_bytes
        GeoJSON outputs at least this large are also written as RFC 8142 text sequences (``None``: never).
    sha256
        Hash of the settings that change results (everything but ``workers`` and ``memory_per_worker``).
    """

    case: Case
    output: Path
    chunk_size_m: float = 25_000.0
    workers: int | None = None
    memory_per_worker: str = "2GiB"
    geojsonseq_min_bytes: int | None = None
    sha256: str = field(default="", compare=False)


def load_batch_config(path: str | Path) -> BatchConfig:
    """Read a batch TOML file: a case file (:func:`agricredit.assess.load_case`) plus a ``[batch]`` table.

    Parameters
    ----------
    path
        The TOML file; ``[batch]`` keys: ``output`` (required), ``chunk_size_m``
        (default 25000: at 10 m, a 10980² grid in 26 chunks; the blocks that the plots on a chunk's edge
        share with the next chunk are read twice, 1.5 reads of the grid in all, against 2.2 at 10000),
        ``workers`` (default: one per core), ``memory_per_worker``
        (default ``"2GiB"``, at least :data:`MIN_MEMORY_PER_WORKER`), ``geojsonseq_min_bytes``.

    Returns
    -------
    BatchConfig
    """
    path = Path(path)
    document = read_toml(path)
    case = case_from_document(document, path, extra=("batch",))
    batch = document.get("batch", {})
    if not isinstance(batch, dict):
        raise InputError("[batch] must be a table", path=path)
    unknown = sorted(set(batch) - _BATCH_KEYS)
    if unknown:
        raise InputError(f"unknown key batch.{unknown[0]}", path=path)
    if "output" not in batch:
        raise InputError("missing batch.output", path=path)
    chunk = batch.get("chunk_size_m", 25_000.0)
    workers = batch.get("workers")
    threshold = batch.get("geojsonseq_min_bytes")
    if not isinstance(chunk, (int, float)) or isinstance(chunk, bool) or not math.isfinite(chunk) or chunk <= 0:
        raise InputError("batch.chunk_size_m must be a positive number of metres", path=path)
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise InputError("batch.workers must be a whole number >= 1", path=path)
    if threshold is not None and (not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 0):
        raise InputError("batch.geojsonseq_min_bytes must be a whole number of bytes >= 0", path=path)
    memory = _memory_per_worker(batch.get("memory_per_worker", "2GiB"), path)
    settings = {k: v for k, v in document.items() if k != "batch"}
    settings["batch"] = {"chunk_size_m": float(chunk), "geojsonseq_min_bytes": threshold}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    return BatchConfig(case=case, output=path.parent / batch["output"], chunk_size_m=float(chunk), workers=workers,
                       memory_per_worker=memory, geojsonseq_min_bytes=threshold,
                       sha256=digest)


#: The least memory a local worker may be given: a worker takes about 250 MB once its libraries are loaded, and a
#: county chunk's task about 1 GB more (measured at 5,356 plots and 6 dates, 1.2 GB in all).
MIN_MEMORY_PER_WORKER = 512 * 2**20


def _memory_per_worker(value: Any, path: Path) -> str:
    """``[batch] memory_per_worker`` checked: a size in Dask's notation (``"2GiB"``, ``"1500MB"``) or a whole number
    of bytes, at least :data:`MIN_MEMORY_PER_WORKER`; returned as text."""
    from dask.utils import format_bytes, parse_bytes

    try:
        size = parse_bytes(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    except ValueError:
        size = None
    if size is None or size < MIN_MEMORY_PER_WORKER:
        raise InputError(f"batch.memory_per_worker must be a size of at least {format_bytes(MIN_MEMORY_PER_WORKER)} "
                         f"such as \"2GiB\", not {value!r}", path=path)
    return str(value)


def chunk_plots(plots: gpd.GeoDataFrame, crs: Any, size_m: float) -> list[np.ndarray]:
    """Group plots by location: the cells of a ``size_m`` grid in ``crs`` over the plots' centroids (found in the
    plots' own CRS, then projected: a chunk is a group of neighbours, and projecting points rather than outlines
    takes a hundredth of the time).

    Returns
    -------
    list of numpy.ndarray
        Positions into ``plots`` (ascending), one array per non-empty cell,
        cells in (row, column) order.
    """
    if plots.empty:
        return []
    centroids = shapely.centroid(plots.geometry.to_numpy())
    x, y = pyproj.Transformer.from_crs(plots.crs, crs, always_xy=True).transform(
        shapely.get_x(centroids), shapely.get_y(centroids))
    rows, columns = np.floor(np.asarray(y) / size_m), np.floor(np.asarray(x) / size_m)
    # One number per cell, in (row, column) order: the row, then the column's place among the columns.
    cell = (rows - rows.min()) * (columns.max() - columns.min() + 1) + (columns - columns.min())
    _, cell_of = np.unique(cell, return_inverse=True)
    order = np.argsort(cell_of, kind="stable")  # (a stable sort: each cell's positions stay ascending)
    return np.split(order, np.flatnonzero(np.diff(cell_of[order])) + 1)


@dataclass(frozen=True)
class ChunkFailure:
    """Rows of ``failures.csv``: a chunk whose task raised, or the plots of a chunk that an unreadable tile holds;
    the chunk's number, the plots and why."""

    chunk: int
    plot_ids: tuple[str, ...]
    reason: str


@gc_young_only()
def observe_chunk(plots: gpd.GeoDataFrame, acquisitions: Sequence[Acquisition]
                  ) -> tuple[pd.DataFrame, list[dict[str, Any]], KeptChips]:
    """The map task: the observation table of one chunk of plots, the tiles it could not read and the pixels it read
    around the plots' chips.

    Returns
    -------
    (pandas.DataFrame, list of dict, KeptChips)
        The long table (:func:`agricredit.acquisitions.observation_table`),
        each unreadable tile as a plain record (:func:`_tile_record`) and the decompressed pixels of the chip
        windows at every date (:class:`agricredit.report.data.KeptChips`: for the chained evidence task on the
        same worker; empty once sent elsewhere).
    """
    unreadable: list[dict[str, Any]] = []

    def on_error(tile: Any, error: Exception) -> None:
        unreadable.append(_tile_record(tile, error.message if isinstance(error, AgricreditError) else str(error)))

    kept = KeptChips()
    return observation_table(plots, acquisitions, on_error=on_error, chips=kept), unreadable, kept


def _tile_record(tile: Any, why: str) -> dict[str, Any]:
    """A tile's footprint and the reason it was not read, as JSON-ready values (kept in the ledger)."""
    return {"path": str(tile.path), "date": str(tile.date), "crs": tile.crs.to_wkt(),
            "transform": list(tile.transform)[:6], "width": int(tile.width), "height": int(tile.height), "why": why}


def _tile_of(record: dict[str, Any]) -> Any:
    from agricredit.zonal import Tile

    return Tile(path=record["path"], date=record["date"], crs=pyproj.CRS.from_wkt(record["crs"]),
                transform=Affine(*record["transform"]), width=record["width"], height=record["height"])


@dataclass
class _Started:
    """The zonal tasks submitted for some plots: their chunks (positions into ``plots``), the chunks the ledger
    held (``parts``, ``unread``) and the pending futures (→ chunk number and plots); ``ledger`` once opened, the
    tiles' hashes it is opened with (``tiles``: being computed on a thread) and the finished chunks it does not list
    yet (``unrecorded``)."""

    acquisitions: list[Acquisition]
    plots: gpd.GeoDataFrame
    chunks: list[np.ndarray]
    parts: dict[int, pd.DataFrame] = field(default_factory=dict)
    unread: list[dict[str, Any]] = field(default_factory=list)
    pending: dict[Any, tuple[int, gpd.GeoDataFrame]] = field(default_factory=dict)
    tiles: Future[dict[str, str]] | None = None
    unrecorded: list[tuple[Any, ...]] = field(default_factory=list)
    ledger: Ledger | None = None


@dataclass
class _Chain:
    """The evidence tasks started chunk by chunk (:meth:`DaskObserver.chain_evidence`): their inputs, the guessed
    period and acquisitions, and the futures by chunk number."""

    declared: Mapping[str, Any]
    drawn_mu: Mapping[str, float]
    options: Mapping[str, Any]
    period: tuple[np.datetime64, np.datetime64] | None = None
    acquisitions: list[Acquisition] = field(default_factory=list)
    futures: dict[int, Any] = field(default_factory=dict)
    # The futures' results, fetched as each task ends (on the client's event loop, while this process goes on).
    results: Any = None

    def add(self, number: int, future: Any) -> None:
        """Keep ``future``, chunk ``number``'s evidence task, and fetch its result as soon as it ends."""
        from distributed import as_completed

        self.futures[number] = future
        if self.results is None:
            self.results = as_completed([future], with_results=True)
        else:
            self.results.add(future)


class DaskObserver:
    """The zonal stage (and, with :meth:`evaluate`, the evidence stage) of :func:`agricredit.assess.run_assessment`
    mapped on Dask by spatial chunk.

    Parameters
    ----------
    client
        A :class:`distributed.Client`, or anything with its ``submit``, ``cancel`` and ``gather`` (:func:`run_batch`
        gives a client still connecting, whose first use waits for it).
    config
        The batch configuration (chunk size, the configuration hash).
    work
        The batch's folder (ledger, chunk results).
    resume
        Reuse the chunks the ledger lists whose result files verify; refuse a
        ledger of another configuration or other inputs. Without it, an
        earlier ledger is discarded.
    fail_fast
        Stop at the first failing chunk; otherwise its plots are listed in
        :attr:`failures` and the rest go on.
    count_chunks, count_evidence
        Called with ``(chunks done, chunks)`` in the zonal stage and in the evidence stage (:meth:`evaluate`).
    task
        The map task of the zonal stage, :func:`observe_chunk` or one with its signature.
    """

    def __init__(self, client: Any, config: BatchConfig, work: Path, *, resume: bool = False, fail_fast: bool = False,
                 count_chunks: Callable[[int, int], None] | None = None,
                 count_evidence: Callable[[int, int], None] | None = None, task: Callable[..., Any] = observe_chunk
                 ) -> None:
        self.client, self.config, self.work, self.task = client, config, work, task
        self.resume, self.fail_fast = resume, fail_fast
        self.count_chunks, self.count_evidence = count_chunks, count_evidence
        self.failures: list[ChunkFailure] = []
        self.reused = 0
        # Each chunk's number, plots and observations (None: the chunk failed), for the evidence stage.
        self._chunks: list[tuple[int, gpd.GeoDataFrame, pd.DataFrame | None]] = []
        self._started: _Started | None = None  # the zonal tasks :meth:`prefetch` submitted
        self._chain: _Chain | None = None  # the evidence tasks started by chunk (:meth:`chain_evidence`)

    def chain_evidence(self, declared: Mapping[str, Any], drawn_mu: Mapping[str, float],
                       options: Mapping[str, Any]) -> None:
        """Start each chunk's evidence task (:meth:`evaluate`'s arguments but the period) as soon as its
        observations are in, on the worker that holds them, with the acquisitions' first and last day as the
        season's period; :meth:`evaluate` keeps these tasks when the period proves to be that (the first and the
        last date each cover some assessed plot), and starts them again otherwise."""
        self._chain = _Chain(declared, drawn_mu, options)

    def _submit_evidence(self, chain: _Chain, observed: Any, plots: gpd.GeoDataFrame) -> Any:
        """Submit the evidence task of one chunk's ``plots`` on its ``observed`` table (or zonal future), with the
        inputs of ``chain``; ahead of the zonal tasks still waiting (a higher priority), so that the pixels a zonal
        task kept for the chips are used and freed before the worker reads another chunk."""
        claims = _claims_of(plots, chain.declared, chain.drawn_mu)
        return self.client.submit(_observed_evidence, observed, plots, claims, chain.period, chain.acquisitions,
                                  chain.options, pure=False, priority=1)

    def prefetch(self, plots: gpd.GeoDataFrame, acquisitions: Sequence[Acquisition]) -> None:
        """Start the zonal tasks of ``plots`` while the client reads the tables and measures the claims.

        ``plots`` may be more than the plots the run assesses (those with a sound outline and a borrower, before
        the tables tell which are declared and sane): :meth:`__call__` keeps the assessed plots' rows. A plot's
        figures do not depend on the other plots, so the result is the same as chunking the assessed plots alone.
        """
        self._started = self._submit(plots, acquisitions)

    def __call__(self, plots: gpd.GeoDataFrame, acquisitions: Sequence[Acquisition], *,
                 on_error: Callable[[Any, Exception], None] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
        """The observation table of ``plots`` (:data:`agricredit.assess.Observer`); progress is counted in chunks
        (``count_chunks``), not in dates, so ``progress`` is not called."""
        from distributed import as_completed

        started, self._started = self._started, None
        if started is None or started.acquisitions != list(acquisitions) or \
                not _among(plots["plot_id"], started.plots["plot_id"]).all():
            if started is not None:
                self.client.cancel(list(started.pending))
            started = self._submit(plots, acquisitions)
        parts, unread, pending, chunks = started.parts, started.unread, started.pending, started.chunks
        # The chunks' assessed plots (a prefetched chunk may hold plots the run does not assess).
        assessed = _among(started.plots["plot_id"], plots["plot_id"])
        own_plots = {number: started.plots.iloc[positions[assessed[positions]]]
                     for number, positions in enumerate(chunks) if assessed[positions].any()}
        chain = self._chain
        if chain is not None:  # each chunk's evidence starts as soon as its observations are in
            chain.period, chain.acquisitions = _first_and_last_day(acquisitions), list(acquisitions)
            for number in _largest_first([parts.get(n, ()) for n in range(len(chunks))]):
                if number in parts and number in own_plots:
                    chain.add(number, self._submit_evidence(chain, parts[number], own_plots[number]))
        done = len(parts)
        if self.count_chunks is not None:
            self.count_chunks(done, len(chunks))
        for future in as_completed(list(pending)):
            # (The chunk's result, once its evidence task has read it, is freed on the worker: kept there, the
            # pixels it reported by their size would count towards the worker's memory and have results spilled.)
            number, subset = pending.pop(future)
            try:
                table, unreadable = future.result()[:2]
            except Exception as error:  # a failing chunk: isolated (or, with fail_fast, the end of the run)
                why = _chunk_failure(error, self.work / RUN_LOG)
                if self.fail_fast:
                    self.client.cancel([*pending, *(chain.futures.values() if chain is not None else ())])
                    self._record(started, wait=True)
                    raise AgricreditError(f"chunk {number} failed: {why}") from error
                log.warning("chunk %d (%d plots) failed: %s", number, len(subset), why)
                kept = _among(subset["plot_id"], plots["plot_id"])
                if kept.any():
                    self.failures.append(ChunkFailure(number, tuple(subset.loc[kept, "plot_id"].astype(str)), why))
            else:
                parts[number] = table
                unread.extend(unreadable)
                if chain is not None and number in own_plots:  # the observations stay on the worker
                    chain.add(number, self._submit_evidence(chain, future, own_plots[number]))
                self._record(started, number, subset, table, unreadable)
            done += 1
            if self.count_chunks is not None:
                self.count_chunks(done, len(chunks))
        self._record(started, wait=True)
        for record in {r["path"]: r for r in unread}.values():
            if on_error is not None:
                on_error(_tile_of(record), AgricreditError(record["why"]))
        self._chunks = [(number, subset, None if number not in parts else _rows_of(parts[number], subset))
                        for number, subset in own_plots.items()]
        table = _combine(plots, [own for _, _, own in self._chunks if own is not None])
        table.attrs["failed_plots"] = {pid: f"chunk {f.chunk}: {f.reason}" for f in self.failures for pid in f.plot_ids}
        return table

    def _submit(self, plots: gpd.GeoDataFrame, acquisitions: Sequence[Acquisition]) -> _Started:
        """Chunk ``plots`` and submit a zonal task per chunk the ledger does not hold (with ``resume``).

        Without ``resume`` the tasks are submitted first and the tiles are hashed for the ledger (whose inputs hash
        reads every tile) on a thread while they run: the chunks that finish meanwhile get their evidence tasks at
        once (their kept pixels, left waiting on the workers, would have results spilled) and are listed in the
        ledger once it is open.
        """
        tile_crs = acquisitions[0].products[0].crs if acquisitions[0].products and acquisitions[0].products[0] else None
        chunks = chunk_plots(plots, tile_crs or plots.crs, self.config.chunk_size_m)
        started = _Started(list(acquisitions), plots, chunks)
        if self.resume:
            started.ledger = self._open_ledger(tile_hashes(acquisitions))
        else:
            started.tiles = _in_background(1, (tile_hashes, acquisitions))[0]
        for number in _largest_first(chunks):
            subset = plots.iloc[chunks[number]]
            entry = started.ledger.finished(number, subset) if started.ledger is not None else None
            if entry is not None:
                started.parts[number] = started.ledger.read(entry)
                started.unread.extend(entry["unreadable"])
                self.reused += 1
                continue
            started.pending[self.client.submit(self.task, subset, acquisitions, pure=False)] = (number, subset)
        log.info("zonal tasks submitted: %d chunks of %d (%d plots)", len(started.pending), len(chunks), len(plots))
        return started

    def evaluate(self, table: pd.DataFrame, plots: gpd.GeoDataFrame, declared: Mapping[str, Any],
                 drawn_mu: Mapping[str, float], period: tuple[np.datetime64, np.datetime64],
                 acquisitions: Sequence[Acquisition], options: Mapping[str, Any]) -> Evidence:
        """The per-plot evidence stage of :func:`agricredit.assess.run_assessment` (:data:`agricredit.assess.Evaluator`)
        mapped on the chunks of the zonal stage: one task per chunk, on the chunk's own observations.

        The plots of a failed chunk have no observations: they get their (``NO_COVERAGE``) rows here, beside
        ``PROCESSING_FAILED``. A task that raises here stops the run (the evidence is a pure function of the
        observations, so it fails only on a bug or a lost cluster).
        """
        parts = [_chunk_evidence(table.iloc[:0], subset, _claims_of(subset, declared, drawn_mu), period, acquisitions,
                                 options) for _, subset, own in self._chunks if own is None]
        chain, self._chain = self._chain, None
        if chain is not None and (chain.period, chain.acquisitions, chain.declared, chain.drawn_mu, chain.options) \
                == (period, list(acquisitions), declared, drawn_mu, options):
            log.info("season evidence: %d chunk tasks started as their observations came in", len(chain.futures))
        else:  # not chained, or the season's first or last day was not the guess: the evidence starts now
            if chain is not None:
                self.client.cancel(list(chain.futures.values()))
                log.info("season evidence: the season runs %s to %s, not from the first to the last acquisition: "
                         "its chunk tasks start again", *period)
            chain = _Chain(declared, drawn_mu, options, period, list(acquisitions))
            mapped = [(number, subset, own) for number, subset, own in self._chunks if own is not None]
            for k in _largest_first([subset for _, subset, _ in mapped]):
                chain.add(mapped[k][0], self._submit_evidence(chain, mapped[k][2], mapped[k][1]))
        pending = list(chain.futures.values())
        if self.count_evidence is not None:
            self.count_evidence(0, len(pending))
        for done in range(1, len(pending) + 1):
            try:
                parts.append(next(chain.results)[1])
            except Exception as error:
                for other in pending:
                    other.cancel()
                raise AgricreditError("the season evidence of a chunk failed: "
                                      + _chunk_failure(error, self.work / RUN_LOG)) from error
            if self.count_evidence is not None:
                self.count_evidence(done, len(pending))
        return Evidence.merge(parts, sorted(plots["plot_id"].astype(str)))

    def chunk_of_plots(self) -> dict[str, int]:
        """Each assessed plot's chunk number (once :meth:`__call__` has run)."""
        return {plot_id: number for number, subset, _ in self._chunks for plot_id in subset["plot_id"].astype(str)}

    # -- the ledger -------------------------------------------------------------------------------------------------

    def _open_ledger(self, tiles: dict[str, str]) -> Ledger:
        """The ledger to continue (resume) or a new one (:meth:`agricredit.ledger.Ledger.open`)."""
        return Ledger.open(self.work, self.config.sha256, self.config.case.plots, tiles, resume=self.resume)

    def _record(self, started: _Started, *finished: Any, wait: bool = False) -> None:
        """List the ``finished`` chunk (its number, plots, observations and unreadable tiles; none: only those
        waiting) in the ledger, with those waiting for it to open; ``wait``: for the tiles' hashes, if need be."""
        if finished:
            started.unrecorded.append(finished)
        if started.ledger is None and started.tiles is not None and (wait or started.tiles.done()):
            started.ledger = self._open_ledger(started.tiles.result())
        if started.ledger is not None:
            for chunk in started.unrecorded:
                started.ledger.record(*chunk)
            started.unrecorded.clear()


def refuse_an_unfinished_run(folder: Path) -> None:
    """Refuse an output folder that holds only the work folder of an earlier batch, one that stopped before writing
    its outputs: the error names the chunks its ledger kept, its run log, ``--resume`` and ``--overwrite`` (to call
    when neither is given)."""
    if output_folder_entries(folder) != [WORK_FOLDER]:
        return
    finished = finished_chunks(folder / WORK_FOLDER)
    raise OutputError(f"holds a batch run that stopped before writing its outputs ({finished} chunks finished; "
                      f"see {WORK_FOLDER}/{RUN_LOG}): pass --resume to continue it or --overwrite to start again",
                      path=folder)


def _chunk_failure(error: BaseException, run_log: Path) -> str:
    """Why a chunk's task failed, in one line; for a task whose workers died (Dask's ``KilledWorker``), most often
    for want of memory, where their lines are and what to change."""
    from distributed import KilledWorker

    why = error.one_line() if isinstance(error, AgricreditError) else f"{type(error).__name__}: {error}"
    if isinstance(error, KilledWorker):
        why += (f" (a local worker's lines are in {run_log}; one that runs out of memory is restarted: raise "
                "batch.memory_per_worker or lower batch.chunk_size_m)")
    return why


def _largest_first(chunks: Sequence[Any]) -> list[int]:
    """The chunks' numbers, largest first (ties: by number): tasks are submitted, and mostly run, in this order, so
    the last task of a stage is a small one and the other workers do not wait long for it."""
    return sorted(range(len(chunks)), key=lambda number: (-len(chunks[number]), number))


def _claims_of(plots: gpd.GeoDataFrame, declared: Mapping[str, Any], drawn_mu: Mapping[str, float]) -> bytes:
    """The declared crops and drawn areas of a chunk's plots, pickled: Dask walks a task's plain arguments (dicts
    of thousands of plots) looking for futures, which costs more than the pickling."""
    ids = plots["plot_id"].astype(str).tolist()
    own = ({p: declared[p] for p in ids if p in declared}, {p: drawn_mu[p] for p in ids if p in drawn_mu})
    return pickle.dumps(own, protocol=pickle.HIGHEST_PROTOCOL)


def _rows_of(table: pd.DataFrame, plots: gpd.GeoDataFrame) -> pd.DataFrame:
    """The rows of ``plots`` in a chunk's observation table (all of them when the chunk holds only those plots)."""
    keep = _among(table["plot_id"], plots["plot_id"])
    return table if keep.all() else table.loc[keep]


def _among(ids: pd.Series, among: pd.Series) -> np.ndarray:
    """Which of ``ids`` are in ``among`` (as object values: pandas' Arrow strings convert the values to look for
    one by one, 10x slower)."""
    return ids.astype(object).isin(among.astype(object)).to_numpy()


def _first_and_last_day(acquisitions: Sequence[Acquisition]) -> tuple[np.datetime64, np.datetime64]:
    """The season's period if its first and last acquisitions each cover some plot (as :func:`season_period`)."""
    dates = [str(a.date) for a in acquisitions]
    return season_period(pd.DataFrame({"date": [min(dates), max(dates)]}))


def _observed_evidence(observed: Any, plots: gpd.GeoDataFrame, claims: bytes, *shared: Any) -> Evidence:
    """The chained evidence task: :func:`_chunk_evidence` of a zonal task's result (or a chunk's table from the
    ledger), on the rows of ``plots``, with the chips cut from the pixels the zonal task kept (when it ran in this
    process); the kept pixels are freed once used."""
    if not isinstance(observed, tuple):
        return _chunk_evidence(_rows_of(observed, plots), plots, claims, *shared)
    table, kept = observed[0], (observed[2] if len(observed) > 2 else None)
    try:
        return _chunk_evidence(_rows_of(table, plots), plots, claims, *shared, kept=kept)
    finally:
        if kept is not None:
            kept.clear()


def _chunk_evidence(table: pd.DataFrame, plots: gpd.GeoDataFrame, claims: bytes, *shared: Any,
                    kept: KeptChips | None = None) -> Evidence:
    """The evidence map task: :func:`agricredit.evidence.plot_evidence` of one chunk (``claims``: its declared crops
    and drawn areas, pickled) without the fitted curves and series objects, which the reduce step does not read (its
    rows hold the fits' figures) and which would be most of what a county's chunks send back to this process."""
    return plot_evidence(table, plots, *pickle.loads(claims), *shared, kept=kept, keep_fits=False)


def _combine(plots: gpd.GeoDataFrame, parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The chunks' tables as one, in :func:`agricredit.acquisitions.observation_table`'s order: by date, then by
    plot in the order of ``plots`` (whose IDs are unique)."""
    parts = [part for part in parts if len(part)]
    if not parts:
        return observation_table(plots.iloc[:0], [])
    table = pd.concat(parts, ignore_index=True)
    # Sort keys of integers: each date's place among the dates, each plot's position (looked up once per plot).
    day = pd.factorize(table["date"].astype(str), sort=True)[0]
    codes, ids = pd.factorize(table["plot_id"])
    rank = pd.Index(plots["plot_id"]).get_indexer(ids)[codes]
    return table.take(np.lexsort((rank, day))).reset_index(drop=True)


@dataclass
class BatchRun:
    """What :func:`run_batch` did: the assessment, its manifest, the failed chunks, the chunks reused."""

    assessment: Any
    manifest: dict[str, Any]
    failures: list[ChunkFailure]
    reused_chunks: int


def run_batch(config: BatchConfig, key: Any, audit_key: Any, *, scheduler: str | None = None, resume: bool = False,
              fail_fast: bool = False, lang: str = "en", csv_bom: bool = True,
              stage: Callable[[str], None] | None = None,
              count_chunks: Callable[[int, int], None] | None = None,
              count_evidence: Callable[[int, int], None] | None = None,
              task: Callable[..., Any] = observe_chunk) -> BatchRun:
    """Run a batch: the assess pipeline with its zonal and evidence stages mapped on Dask, then the assess outputs.

    Parameters
    ----------
    config
        From :func:`load_batch_config`.
    key, audit_key
        The pseudonym key and the audit key (as for ``assess``).
    scheduler
        Address of a running Dask scheduler (``tcp://host:8786``); ``None``:
        a :class:`distributed.LocalCluster` of ``config.workers`` processes.
    resume, fail_fast
        See :class:`DaskObserver`.
    lang, csv_bom
        As :func:`agricredit.assess.run_assessment` and :func:`agricredit.assess.write_outputs`.
    stage
        Called with a line per stage (and with the dashboard address).
    count_chunks, count_evidence
        Called with ``(chunks done, chunks)`` in the zonal and the evidence stage.
    task
        The zonal map task (:class:`DaskObserver`).

    Returns
    -------
    BatchRun
    """
    from agricredit.assess import run_assessment, write_outputs

    def say(message: str) -> None:  # a stage line: on the run log, and to ``stage``
        log.info(message)
        if stage is not None:
            stage(message)

    work = config.output / WORK_FOLDER
    work.mkdir(parents=True, exist_ok=True)
    handler = _run_log(work / RUN_LOG)
    handler.addFilter(lambda record: record.name != "agricredit")  # the CLI's own copy of the stage lines
    # Dask's own warnings and errors (a worker's memory, a lost worker, the heartbeat a closing cluster cuts short)
    # go to the run log too, not among the stage lines on stderr (see _connect).
    dask_lines = _run_log(work / RUN_LOG, logging.WARNING)
    # The run log takes INFO and up; the handlers already there keep showing what they showed.
    root = logging.getLogger("agricredit")
    level, shown = root.level, root.getEffectiveLevel()
    quiet = [h for h in root.handlers if h.level == logging.NOTSET]
    for other in quiet:
        other.setLevel(shown)
    root.setLevel(min(shown, logging.INFO))
    root.addHandler(handler)
    # The cluster starts (seconds) on a thread while the plot file is read: its first use waits for it.
    connecting = _Connecting(lambda: _connect(scheduler, config, say, dask_lines))
    try:
        log.info("batch on %s, config %s", scheduler or "a local cluster", config.sha256[:12])
        observer = DaskObserver(connecting, config, work, resume=resume, fail_fast=fail_fast, count_chunks=count_chunks,
                                count_evidence=count_evidence, task=task)

        def evaluate(*args: Any, **kwargs: Any) -> Evidence:
            try:
                return observer.evaluate(*args, **kwargs)
            finally:  # the map is over: the cluster closes while the reduce and the writing go on
                connecting.close_soon()

        assessment = run_assessment(config.case, key, lang=lang, progress=say, observe=observer, evaluate=evaluate)
        say(f"writing {config.output}")
        manifest = write_outputs(assessment, config.output, audit_key, csv_bom=csv_bom,
                                 geojsonseq_min_bytes=config.geojsonseq_min_bytes)
        unreadable = assessment.rejected.get("TILE_UNREADABLE")
        held = _tile_failures(assessment.plots, unreadable, observer.chunk_of_plots()) if unreadable else []
        _write_failures([*observer.failures, *held], config.output / FAILURES)
        log.info("done: %d plots, %d chunks reused, %d failed", len(assessment.plots), observer.reused,
                 len(observer.failures))
        return BatchRun(assessment, manifest, observer.failures, observer.reused)
    finally:
        connecting.close()
        root.removeHandler(handler)
        root.setLevel(level)
        for other in quiet:
            other.setLevel(logging.NOTSET)
        handler.close()
        dask_lines.close()


#: Dask's loggers that carry their own handler to stderr (distributed's default logging configuration).
DASK_LOGGERS = ("distributed", "distributed.client")


def _run_log(path: Path, level: int = logging.NOTSET) -> logging.FileHandler:
    """A handler appending to the run log at ``path`` the records of ``level`` and up, personal data redacted."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactPII())
    return handler


def _move_dask_logs(handler: logging.Handler) -> Callable[[], None]:
    """Send the records of :data:`DASK_LOGGERS` in this process to ``handler`` instead of their stderr handlers;
    return what puts those back."""
    moved = []
    for name in DASK_LOGGERS:
        logger = logging.getLogger(name)
        streams = [h for h in logger.handlers if type(h) is logging.StreamHandler]  # (not the file handlers)
        for stream in streams:
            logger.removeHandler(stream)
        logger.addHandler(handler)
        moved.append((logger, streams))

    def restore() -> None:
        for logger, streams in moved:
            logger.removeHandler(handler)
            for stream in streams:
                logger.addHandler(stream)

    return restore


def _run_log_plugin(path: Path) -> Any:
    """A Dask worker plugin sending each worker's Dask warnings and errors to the run log at ``path`` (for the local
    cluster's workers only: a given cluster's workers keep their own logging)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class RunLog(WorkerPlugin):
        def setup(self, worker: Any) -> None:
            _move_dask_logs(_run_log(path, logging.WARNING))

    return RunLog()


def _connect(scheduler: str | None, config: BatchConfig, say: Callable[[str], None], dask_log: logging.FileHandler
             ) -> tuple[Any, Any, Callable[[], None]]:
    """A client of the scheduler at ``scheduler`` (a warning says that the run waits if it has no worker yet), or
    of a new local cluster (returned too, else ``None``); and what puts Dask's logging back.

    Dask's warnings and errors of this process go to ``dask_log`` (the run log) from here on: distributed sets its
    stderr handlers when first imported, here. So do the local cluster's workers' (:func:`_run_log_plugin`).
    """
    import dask
    from distributed import Client, LocalCluster

    restore = _move_dask_logs(dask_log)
    cluster = None
    try:
        if scheduler is None:
            cores, memory = _machine()
            for warning in _beyond_the_machine(config.workers or cores, config.memory_per_worker, cores, memory):
                log.warning("%s", warning)
            with dask.config.set(LOCAL_WORKER_CONFIG):
                cluster = LocalCluster(n_workers=config.workers, threads_per_worker=1,
                                       memory_limit=config.memory_per_worker, dashboard_address="127.0.0.1:0",
                                       host="127.0.0.1")
        client = Client(scheduler or cluster)
    except BaseException as error:
        if cluster is not None:
            cluster.close()
        restore()
        if scheduler is not None and isinstance(error, ValueError):  # an address Dask cannot parse
            raise InputError(f"--scheduler {scheduler}: {error}") from None
        raise
    if cluster is not None:
        client.register_plugin(_run_log_plugin(Path(dask_log.baseFilename)), name="agricredit-run-log")
    elif not client.scheduler_info(n_workers=1)["workers"]:  # its tasks wait for one: say why nothing moves
        log.warning("the scheduler at %s has no workers yet: waiting for one (start them with: dask worker %s)",
                    scheduler, scheduler)
    if client.dashboard_link:
        say(f"Dask dashboard: {client.dashboard_link}")
    return client, cluster, restore


def _machine() -> tuple[int, int]:
    """This machine's cores and memory (bytes) as Dask counts them (CPU affinity and cgroup limits included)."""
    from dask.system import CPU_COUNT
    from distributed.system import MEMORY_LIMIT

    return CPU_COUNT, MEMORY_LIMIT


def _beyond_the_machine(workers: int, memory_per_worker: str, cores: int, memory: int) -> list[str]:
    """What a local cluster of ``workers`` processes of ``memory_per_worker`` each asks beyond a machine of ``cores``
    and ``memory`` bytes, one warning each (none when it fits)."""
    from dask.utils import format_bytes, parse_bytes

    warnings = []
    if workers > cores:
        warnings.append(f"batch.workers = {workers} is more than the {cores} cores here: the workers share them, "
                        f"which is slower and takes more memory than {cores} workers")
    asked = workers * parse_bytes(memory_per_worker)
    if asked > memory:
        warnings.append(f"the local workers' memory limits ({workers} x {memory_per_worker} = {format_bytes(asked)}) "
                        f"add up to more than the {format_bytes(memory)} of memory here: the machine may run out of "
                        "memory before the workers reach them (lower batch.workers or batch.memory_per_worker)")
    return warnings


class _Connecting:
    """A Dask client being connected on a thread (``connect`` returns it, its local cluster if any, and what puts
    Dask's logging back): its attributes wait for it; :meth:`close` closes both once connected, then puts the
    logging back."""

    def __init__(self, connect: Callable[[], tuple[Any, Any, Callable[[], None]]]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agricredit-connect")
        self._connected = self._pool.submit(connect)
        self._closed: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connected.result()[0], name)

    def close_soon(self) -> None:
        """Start closing (:meth:`close`) on the thread that connected, once the cluster is no longer needed: its
        workers end (a second or two) while this process goes on."""
        if self._closed is None:
            self._closed = self._pool.submit(self._close)
            self._pool.shutdown(wait=False)

    def close(self) -> None:
        """Close the client and the local cluster (a failed connection has nothing to close); wait for it."""
        self.close_soon()
        self._closed.result()

    def _close(self) -> None:
        if self._connected.exception() is not None:
            return
        client, cluster, restore_logging = self._connected.result()
        try:
            client.close()
            if cluster is not None:
                cluster.close()
        finally:
            restore_logging()


def _tile_failures(plots: pd.DataFrame, unreadable: Sequence[str], chunk_of: Mapping[str, int]) -> list[ChunkFailure]:
    """The plots that an unreadable tile holds for review, as rows of ``failures.csv``: each plot's chunk, and
    the tile with why it could not be read.

    ``plots``: the output rows (``TILE_UNREADABLE`` among the ``reason_codes``, the tiles in the check's figures in
    ``details``); ``unreadable``: the ``TILE_UNREADABLE`` entries of :attr:`agricredit.assess.Assessment.rejected`
    (``name: why``); ``chunk_of``: plot ID → chunk (:meth:`DaskObserver.chunk_of_plots`).
    """
    why = {entry.split(": ", 1)[0]: entry for entry in unreadable}
    held = plots["reason_codes"].astype(str).str.contains("TILE_UNREADABLE", regex=False).to_numpy()
    rows: dict[tuple[int, str], list[str]] = {}
    for plot_id, details in zip(plots["plot_id"].to_numpy()[held].tolist(), plots["details"].to_numpy()[held].tolist()):
        for check in json.loads(details)["checks"]:
            for tile in check["figures"]["tiles"] if check["code"] == "TILE_UNREADABLE" else ():
                rows.setdefault((chunk_of[plot_id], f"unreadable tile {why.get(tile, tile)}"), []).append(plot_id)
    return [ChunkFailure(chunk, tuple(ids), reason) for (chunk, reason), ids in sorted(rows.items())]


def _write_failures(failures: Sequence[ChunkFailure], path: Path) -> None:
    """``failures.csv`` (temporary name, then renamed), or no such file when nothing failed."""
    if not failures:
        path.unlink(missing_ok=True)
        return
    rows = sorted((pid, f.chunk, f.reason) for f in failures for pid in f.plot_ids)
    table = pd.DataFrame({"chunk": [r[1] for r in rows], "plot_id": [r[0] for r in rows],
                          "reason": [r[2] for r in rows]})
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n")
