"""``agricredit batch``: the assess pipeline mapped on Dask gives assess's bytes; chunks fail alone; resume."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

import agricredit.batch
from agricredit.acquisitions import discover_acquisitions, observation_table
from agricredit.assess import OUTPUT_FILES, run_assessment, sample_case, write_outputs
from agricredit.audit import AuditKey
from agricredit.batch import (FAILURES, MALLOC_SETTINGS, WORK_FOLDER, DaskObserver, _chunk_failure, _largest_first,
                              chunk_plots, load_batch_config, observe_chunk, run_batch)
from agricredit.errors import AgricreditError, InputError
from agricredit.ledger import LEDGER
from agricredit.plots import GEOMETRY_REPAIRED, STATUS_OK, load_plots
from agricredit.privacy import PseudonymKey

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_tiles"
KEY = PseudonymKey(b"pseudonym key of the batch tests", "environment")
AUDIT_KEY = AuditKey(b"audit key of the batch tests", "environment")
#: A chunk side that cuts the sample (about 5 x 5 km) into dozens of chunks.
SMALL_CHUNK_M = 1000.0
#: The plot whose chunk the failing task below refuses.
FAILING_PLOT = "P0100"


def write_config(folder: Path, *, chunk_size_m: float, workers: int | None = None, output: str = "out",
                 geojsonseq_min_bytes: int | None = None, declarations: Path | None = None) -> Path:
    """A batch TOML over the sample case (absolute input paths; another declarations table if given) with a
    [batch] table."""
    folder.mkdir(parents=True, exist_ok=True)
    inputs = {"plots": SAMPLE / "plots.geojson", "registry": SAMPLE / "registry.csv",
              "declarations": declarations or SAMPLE / "declarations.csv", "borrowers": SAMPLE / "borrowers.csv"}
    lines = ["[inputs]", *(f'{k} = "{v.as_posix()}"' for k, v in inputs.items()),
             f'tiles = ["{(SAMPLE / "season" / "manifest.csv").as_posix()}"]',
             "[options]", 'start = "2023-01-01"', 'end = "2023-12-31"',
             "[batch]", f'output = "{output}"', f"chunk_size_m = {chunk_size_m}",
             *([f"workers = {workers}"] if workers else []),
             *([f"geojsonseq_min_bytes = {geojsonseq_min_bytes}"] if geojsonseq_min_bytes is not None else [])]
    path = folder / "batch.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def assert_same_outputs(got: Path, expected: Path) -> None:
    for name in OUTPUT_FILES:
        assert (got / name).read_bytes() == (expected / name).read_bytes(), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``assess`` on the sample, with the keys of these tests."""
    folder = tmp_path_factory.mktemp("assess") / "out"
    write_outputs(run_assessment(sample_case(), KEY), folder, AUDIT_KEY)
    return folder


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory):
    """A ``dask scheduler`` and two ``dask worker`` processes on loopback; yields the scheduler's address."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("cluster")
    info = folder / "scheduler.json"
    # The workers import agricredit and this module (for map tasks defined here, by reference).
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    common = ["--no-dashboard", "--host", "127.0.0.1"]
    processes = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--port", "0", "--scheduler-file",
                                   str(info), *common], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not info.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        for _ in range(2):
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1", "--nworkers", "1",
                 "--local-directory", str(folder), *common], env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        with Client(address) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def inprocess():
    """An in-process cluster (two thread workers), for map tasks defined in this module."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def failing_task(plots, acquisitions):
    """The map task, except that it raises on the chunk holding :data:`FAILING_PLOT`."""
    if FAILING_PLOT in set(plots["plot_id"]):
        raise RuntimeError("simulated worker failure")
    return observe_chunk(plots, acquisitions)


@pytest.mark.parametrize("workers, memory, cores, machine_memory, expected", [
    (2, "2GiB", 2, 4 * 2**30, []),  # as many workers as cores, exactly all the memory
    (3, "2GiB", 2, 8 * 2**30, ["batch.workers = 3 is more than the 2 cores here: the workers share them, which is "
                                "slower and takes more memory than 2 workers"]),
    (2, "2GiB", 2, 4 * 2**30 - 1, ["the local workers' memory limits (2 x 2GiB = 4.00 GiB) add up to more than the "
                                    "4.00 GiB of memory here: the machine may run out of memory before the workers "
                                    "reach them (lower batch.workers or batch.memory_per_worker)"]),
    (1, "600MiB", 4, 600 * 2**20, []),
    (5, "600MiB", 4, 600 * 2**20, ["batch.workers = 5", "the local workers' memory limits (5 x 600MiB = 2.93 GiB)"]),
])
def test_a_local_cluster_larger_than_the_machine_is_warned_of(workers: int, memory: str, cores: int,
                                                              machine_memory: int, expected: list[str]) -> None:
    from agricredit.batch import _beyond_the_machine

    warnings = _beyond_the_machine(workers, memory, cores, machine_memory)
    assert len(warnings) == len(expected)
    assert all(warning.startswith(start) for warning, start in zip(warnings, expected))


def test_chunk_plots_groups_centroids_by_grid_cell() -> None:
    # Squares of 2 m centred on (5, 5), (15, 5), (5, 15), (9, 9) and (-1, 5) with 10 m cells:
    # cells (row 0, col 0) = {0, 3}, (0, 1) = {1}, (1, 0) = {2}, (0, -1) = {4}; cells in (row, column) order.
    centres = [(5, 5), (15, 5), (5, 15), (9, 9), (-1, 5)]
    plots = gpd.GeoDataFrame({"plot_id": list("abcde")},
                             geometry=[shapely.box(x - 1, y - 1, x + 1, y + 1) for x, y in centres], crs="EPSG:32650")
    chunks = chunk_plots(plots, "EPSG:32650", 10.0)
    assert [c.tolist() for c in chunks] == [[4], [0, 3], [1], [2]]
    assert chunk_plots(plots.iloc[:0], "EPSG:32650", 10.0) == []
    # Plots in longitude and latitude: their centroids are projected onto the grid (the same cells).
    assert [c.tolist() for c in chunk_plots(plots.to_crs("EPSG:4326"), "EPSG:32650", 10.0)] == [[4], [0, 3], [1], [2]]
    # Tasks go largest chunk first (ties by number), so a stage ends on a small task.
    assert _largest_first(chunks) == [1, 0, 2, 3]


def settings_task(plots, acquisitions, *, marker: str):
    """The map task, noting the worker's glibc allocator settings, whether Dask profiles its tasks and how often its
    event loop checks that it is not blocked, and logging a line of each level on the worker's Dask logger."""
    import logging

    import dask

    Path(marker).write_text(json.dumps({"malloc": {name: os.environ.get(name) for name in MALLOC_SETTINGS},
                                        "profile": dask.config.get("distributed.worker.profile.enabled"),
                                        "tick": dask.config.get("distributed.admin.tick.interval")}))
    for level in ("info", "warning", "error"):
        getattr(logging.getLogger("distributed.worker"), level)("worker %s line of the test", level)
    return observe_chunk(plots, acquisitions)


def test_local_cluster_one_chunk_gives_the_bytes_of_assess(tmp_path: Path, reference: Path,
                                                           capfd: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import functools
    import logging

    import agricredit.batch

    # A machine of 1 core and 1 GiB: the one worker of 2 GiB asks more memory than it has (a warning, the run goes on).
    monkeypatch.setattr(agricredit.batch, "_machine", lambda: (1, 2**30))

    config = load_batch_config(write_config(tmp_path, chunk_size_m=1e7, workers=1))
    marker = tmp_path / "worker-settings.json"
    # Dask's stderr handlers of this process, as distributed's logging configuration makes them (on stderr as
    # captured here).
    loggers = [logging.getLogger(name) for name in ("distributed", "distributed.client")]
    handlers = [logging.StreamHandler(sys.stderr) for _ in loggers]
    for logger, handler in zip(loggers, handlers):
        logger.addHandler(handler)
    before = [list(logger.handlers) for logger in loggers]

    def stage(line: str) -> None:  # a Dask warning of this process (the scheduler's, the client's) meanwhile
        if line.startswith(("Dask dashboard", "zonal statistics")):  # (the cluster is up)
            logging.getLogger("distributed.scheduler").warning("scheduler line of the test")
            logging.getLogger("distributed.client").error("client line of the test")

    try:
        run = run_batch(config, KEY, AUDIT_KEY, task=functools.partial(settings_task, marker=str(marker)),
                        stage=stage)
        after = [list(logger.handlers) for logger in loggers]
        logging.getLogger("distributed.scheduler").warning("a line after the run")
        logging.getLogger("distributed.client").error("a client line after the run")
    finally:
        for logger, handler in zip(loggers, handlers):
            logger.removeHandler(handler)
    # The local workers keep their arrays in one heap (unless this environment says otherwise), run their tasks
    # without Dask's profiler and check their event loop once a second.
    assert set(MALLOC_SETTINGS) == {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX"}
    malloc = {name: os.environ.get(name, str(value)) for name, value in MALLOC_SETTINGS.items()}
    assert json.loads(marker.read_text()) == {"malloc": malloc, "profile": False, "tick": "1s"}
    assert_same_outputs(config.output, reference)
    assert len(json.loads((config.output / WORK_FOLDER / LEDGER).read_text())["chunks"]) == 1
    assert run.failures == [] and not (config.output / FAILURES).exists()
    # Dask's warnings and errors, of the workers and of this process, are in the run log, not on stderr.
    log = (config.output / WORK_FOLDER / "run.log").read_text(encoding="utf-8")
    assert ("WARNING agricredit.batch: the local workers' memory limits (1 x 2GiB = 2.00 GiB) add up to more than "
            "the 1.00 GiB of memory here" in log
            and "more than the 1 cores" not in log)
    assert "WARNING distributed.worker: worker warning line of the test" in log
    assert "ERROR distributed.worker: worker error line of the test" in log
    assert "worker info line" not in log
    assert "WARNING distributed.scheduler: scheduler line of the test" in log
    assert "ERROR distributed.client: client line of the test" in log
    # Once the run is over, Dask's lines of this process go where they went before.
    err = capfd.readouterr().err
    assert "line of the test" not in err
    assert after == before and "a line after the run" in err and "a client line after the run" in err
    assert "after the run" not in (config.output / WORK_FOLDER / "run.log").read_text(encoding="utf-8")


def test_dask_lines_go_to_the_run_log_when_the_run_first_imports_distributed(tmp_path: Path) -> None:
    # As in the CLI, whose process imports distributed (which sets its stderr handlers on import) in the run itself.
    config = write_config(tmp_path, chunk_size_m=1e7, workers=1)
    script = f"""
import logging, sys
from agricredit.audit import AuditKey
from agricredit.batch import load_batch_config, run_batch
from agricredit.privacy import PseudonymKey
assert "distributed" not in sys.modules

def stage(line):
    if line.startswith(("Dask dashboard", "zonal statistics")):
        logging.getLogger("distributed.scheduler").warning("scheduler line of the test")

run_batch(load_batch_config({str(config)!r}), PseudonymKey(b"{KEY.secret.decode()}", "environment"),
          AuditKey(b"{AUDIT_KEY.secret.decode()}", "environment"), stage=stage)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "scheduler line of the test" not in result.stderr
    log = (tmp_path / "out" / WORK_FOLDER / "run.log").read_text(encoding="utf-8")
    assert log.count("WARNING distributed.scheduler: scheduler line of the test") == 2


def test_scheduler_and_two_workers_many_chunks_give_the_bytes_of_assess(tmp_path: Path, reference: Path,
                                                                        scheduler: str) -> None:
    config = load_batch_config(write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M))
    run_batch(config, KEY, AUDIT_KEY, scheduler=scheduler)
    assert_same_outputs(config.output, reference)
    assert "no workers" not in (config.output / WORK_FOLDER / "run.log").read_text(encoding="utf-8")
    # The run was really cut: many chunks, and borrowers whose plots fall in different chunks.
    assert len(json.loads((config.output / WORK_FOLDER / LEDGER).read_text())["chunks"]) > 10
    plots = load_plots(SAMPLE / "plots.geojson")
    chunks = chunk_plots(plots, "EPSG:32618", SMALL_CHUNK_M)
    chunk_of = np.empty(len(plots), dtype=int)
    for number, positions in enumerate(chunks):
        chunk_of[positions] = number
    spread = pd.Series(chunk_of).groupby(plots["borrower_id"].to_numpy()).nunique()
    assert (spread > 1).sum() >= 5


def test_a_scheduler_that_cannot_be_reached_stops_the_run_and_publishes_nothing(tmp_path: Path) -> None:
    """The cluster is connected while the plot file is read: its error is the run's, with nothing written."""
    import dask
    import distributed  # noqa: F401  (its config defaults, registered on import, outlive the setting below)

    config = load_batch_config(write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M))
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), pytest.raises(OSError, match="127.0.0.1:9"):
        run_batch(config, KEY, AUDIT_KEY, scheduler="tcp://127.0.0.1:9")
    assert not [path for path in config.output.iterdir() if path.name != WORK_FOLDER]


def test_a_scheduler_without_workers_is_waited_for_with_a_warning(tmp_path: Path, reference: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from distributed import LocalCluster

    config = load_batch_config(write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M))
    run_log = config.output / WORK_FOLDER / "run.log"
    with LocalCluster(n_workers=0, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            ThreadPoolExecutor(max_workers=1) as pool:
        address = cluster.scheduler_address
        running = pool.submit(run_batch, config, KEY, AUDIT_KEY, scheduler=address)
        said = f"WARNING agricredit.batch: the scheduler at {address} has no workers yet: waiting for one " \
               f"(start them with: dask worker {address})"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (run_log.is_file() and said in run_log.read_text(encoding="utf-8")):
            time.sleep(0.1)
        assert said in run_log.read_text(encoding="utf-8")
        time.sleep(1)
        assert not running.done()  # it waits for a worker
        cluster.scale(1)
        running.result(timeout=120)
    assert_same_outputs(config.output, reference)


@pytest.mark.parametrize("address", ["nonsense::", "foo://10.0.0.5:8786"])
def test_a_scheduler_address_dask_cannot_parse_is_named_in_one_line(tmp_path: Path, address: str) -> None:
    config = load_batch_config(write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M))
    with pytest.raises(InputError, match=f"--scheduler {re.escape(address)}: (invalid address|unknown address scheme)"):
        run_batch(config, KEY, AUDIT_KEY, scheduler=address)
    assert not [path for path in config.output.iterdir() if path.name != WORK_FOLDER]


def fatal_task(plots, acquisitions, *, marker: str):
    """The map task, except that its worker process dies on the first chunk it is given (before any chunk's
    observations are in, so no evidence task is held beside it), noting that chunk's plots in ``marker``."""
    if not os.path.exists(marker):
        Path(marker).write_text(json.dumps(plots["plot_id"].astype(str).tolist()), encoding="utf-8")
        os._exit(1)
    return observe_chunk(plots, acquisitions)


def test_a_chunk_whose_workers_die_is_isolated_with_what_to_change(tmp_path: Path) -> None:
    import functools

    import dask
    import distributed  # noqa: F401 - its defaults join dask's config on import: not inside the set() below, which
    # would drop them on leaving (and fail the next test that reads them)

    config = load_batch_config(write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M, workers=1))
    marker = tmp_path / "died-on.json"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # the first death is the last
        run = run_batch(config, KEY, AUDIT_KEY, task=functools.partial(fatal_task, marker=str(marker)))
    died_on = set(json.loads(marker.read_text(encoding="utf-8")))
    # (A zonal task the worker held beside it when it died is lost with it.)
    assert any(failure.plot_ids and set(failure.plot_ids) <= died_on for failure in run.failures)
    assert len(run.failures) <= 3
    run_log = config.output / WORK_FOLDER / "run.log"
    hint = (f" (a local worker's lines are in {run_log}; one that runs out of memory is restarted: raise "
            "batch.memory_per_worker or lower batch.chunk_size_m)")
    assert all(f.reason.startswith("KilledWorker: ") and f.reason.endswith(hint) for f in run.failures)
    assert set(pd.read_csv(config.output / FAILURES)["reason"]) == {f.reason for f in run.failures}
    # Not for other errors.
    assert _chunk_failure(RuntimeError("boom"), run_log) == "RuntimeError: boom"
    assert _chunk_failure(InputError("bad", path="t.tif"), run_log) == "t.tif: bad"


def test_a_failing_chunk_holds_only_its_plots_for_review(tmp_path: Path, reference: Path, inprocess: str) -> None:
    config = load_batch_config(write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M))
    run = run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess, task=failing_task)
    assert len(run.failures) == 1
    failed = set(run.failures[0].plot_ids)
    assert FAILING_PLOT in failed and 1 <= len(failed) < 30
    listed = pd.read_csv(config.output / FAILURES)
    assert sorted(listed["plot_id"]) == sorted(failed)
    assert set(listed["reason"]) == {"RuntimeError: simulated worker failure"}
    assert run.assessment.rejected["PROCESSING_FAILED"] == sorted(failed)
    got = gpd.read_parquet(config.output / "plots.parquet").set_index("plot_id")
    expected = gpd.read_parquet(reference / "plots.parquet").set_index("plot_id")
    assert list(got.index) == list(expected.index)
    held = got.loc[sorted(failed)]
    assert held["reason_codes"].map(lambda codes: "PROCESSING_FAILED" in codes).all()
    assert (held["light"] == "red").all() and (held["verified_mu"] == 0).all()
    others = got.drop(index=sorted(failed))
    assert not others["reason_codes"].map(lambda codes: "PROCESSING_FAILED" in codes).any()
    # The plots of the other chunks keep their satellite evidence.
    pd.testing.assert_series_equal(others["peak_ndvi"], expected.drop(index=sorted(failed))["peak_ndvi"])


@pytest.mark.parametrize("killed", [False, True])
def test_a_failing_evidence_task_stops_the_run_in_one_line_and_publishes_nothing(tmp_path: Path, inprocess: str,
                                                                                  monkeypatch, killed: bool) -> None:
    from distributed import KilledWorker

    import agricredit.batch as batch

    chunk_evidence = batch._chunk_evidence
    lost = types.SimpleNamespace(address="tcp://127.0.0.1:40321")  # (what Dask's message reads of the lost worker)

    def failing_evidence(table, plots, *args, **kwargs):  # runs in this process: the cluster's workers are threads
        if FAILING_PLOT in set(plots["plot_id"]):
            raise KilledWorker("evidence", lost, 0) if killed else RuntimeError("simulated evidence failure")
        return chunk_evidence(table, plots, *args, **kwargs)

    monkeypatch.setattr(batch, "_chunk_evidence", failing_evidence)
    config = load_batch_config(write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M))
    with pytest.raises(AgricreditError) as caught:
        run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess)
    # Its workers dying (most often out of memory) says what to change, as for a zonal task.
    assert str(caught.value) == "the season evidence of a chunk failed: " + (
        f"KilledWorker: {KilledWorker('evidence', lost, 0)} (a local worker's lines are in "
        f"{config.output / WORK_FOLDER / 'run.log'}; one that runs out of memory is restarted: raise "
        "batch.memory_per_worker or lower batch.chunk_size_m)" if killed else
        "RuntimeError: simulated evidence failure")
    assert not any((config.output / name).exists() for name in OUTPUT_FILES)


def failing_chunk() -> list[str]:
    """The IDs (sorted) of the sample plots in :data:`FAILING_PLOT`'s chunk (cells of :data:`SMALL_CHUNK_M`)."""
    plots = load_plots(SAMPLE / "plots.geojson")
    chunk = next(c for c in chunk_plots(plots, "EPSG:32618", SMALL_CHUNK_M)
                 if FAILING_PLOT in set(plots["plot_id"].iloc[c]))
    return sorted(plots["plot_id"].iloc[chunk])


def declarations_without(plot_ids: set[str], folder: Path) -> Path:
    """The sample's declarations table without the rows of ``plot_ids`` (each declared there), in ``folder``."""
    declarations = pd.read_csv(SAMPLE / "declarations.csv", dtype=str, keep_default_na=False)
    assert plot_ids <= set(declarations["plot_id"])
    path = folder / "declarations.csv"
    declarations.loc[~declarations["plot_id"].isin(plot_ids)].to_csv(path, index=False)
    return path


def test_plots_the_tables_set_aside_are_observed_early_but_never_assessed(tmp_path: Path, inprocess: str) -> None:
    # The zonal tasks start before the tables are read, on every plot with a sound outline and a borrower. Here the
    # plots of FAILING_PLOT's chunk have no declaration: their chunk is observed (and fails), yet they are rejected
    # as NO_DECLARATION, no plot is PROCESSING_FAILED, and the bytes are assess's on the same tables.
    undeclared = set(failing_chunk())
    assert len(undeclared) < 319 // 4
    path = declarations_without(undeclared, tmp_path)
    expected = tmp_path / "assess"
    write_outputs(run_assessment(dataclasses.replace(sample_case(), declarations=path), KEY), expected, AUDIT_KEY)

    config = load_batch_config(write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M, declarations=path))
    run = run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess, task=failing_task)
    assert run.failures == [] and "PROCESSING_FAILED" not in run.assessment.rejected
    assert set(run.assessment.rejected["NO_DECLARATION"]) == undeclared
    assert_same_outputs(config.output, expected)


def test_a_failing_chunk_lists_only_its_assessed_plots(tmp_path: Path, inprocess: str) -> None:
    # Half of the plots of FAILING_PLOT's chunk have no declaration: observed (the zonal tasks start before the
    # tables are read), then set aside as NO_DECLARATION. The chunk fails: only its assessed plots are
    # PROCESSING_FAILED and in failures.csv.
    ids = failing_chunk()
    undeclared = {pid for k, pid in enumerate(ids) if k % 2 and pid != FAILING_PLOT}
    assert len(ids) >= 4 and undeclared
    path = declarations_without(undeclared, tmp_path)
    config = load_batch_config(write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M, declarations=path))
    run = run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess, task=failing_task)
    assessed = sorted(set(ids) - undeclared)
    assert [sorted(f.plot_ids) for f in run.failures] == [assessed]
    assert run.assessment.rejected["PROCESSING_FAILED"] == assessed
    assert set(run.assessment.rejected["NO_DECLARATION"]) == undeclared
    assert pd.read_csv(config.output / FAILURES, dtype={"plot_id": str})["plot_id"].tolist() == assessed


def test_each_chunks_evidence_starts_with_its_observations_unless_the_period_was_not_the_guess(
        tmp_path: Path, reference: Path, inprocess: str) -> None:
    # The evidence of a chunk starts as soon as its observations are in, with the first and last acquisition as the
    # season's period. Here a first acquisition covers no plot: the period proves shorter, the tasks start again,
    # and the bytes are still assess's on the same tiles.
    import rasterio
    from affine import Affine

    config = load_batch_config(write_config(tmp_path / "chained", chunk_size_m=SMALL_CHUNK_M))
    run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess)
    assert_same_outputs(config.output, reference)
    assert "chunk tasks started as their observations came in" in (config.output / WORK_FOLDER / "run.log").read_text()

    tiles = tmp_path / "tiles"
    tiles.mkdir()
    lines = (SAMPLE / "season" / "manifest.csv").read_text(encoding="utf-8").splitlines()
    first = lines[1].split(",")[2]
    with rasterio.open(SAMPLE / "season" / first) as src:  # the same pixels 50 km east of every plot, a month early
        profile = {**src.profile, "transform": Affine.translation(50_005.0, 0.0) * src.transform}
        with rasterio.open(tiles / "far.tif", "w", **profile) as dst:
            dst.write(src.read())
            dst.update_tags(**src.tags())
            dst.descriptions = src.descriptions
    manifest = tiles / "manifest.csv"
    manifest.write_text("\n".join([lines[0], "2023-02-10,s2-l2a,far.tif",
                                   *(f"{d},{s},{(SAMPLE / 'season' / n).as_posix()}"
                                     for d, s, n in (line.split(",") for line in lines[1:]))]) + "\n", encoding="utf-8")
    config_path = write_config(tmp_path / "restarted", chunk_size_m=SMALL_CHUNK_M)
    config_path.write_text(config_path.read_text(encoding="utf-8").replace(
        (SAMPLE / "season" / "manifest.csv").as_posix(), manifest.as_posix()), encoding="utf-8")
    config = load_batch_config(config_path)
    run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess)
    assert "its chunk tasks start again" in (config.output / WORK_FOLDER / "run.log").read_text()
    alone = tmp_path / "assess"
    write_outputs(run_assessment(dataclasses.replace(sample_case(), tiles=(manifest,)), KEY), alone, AUDIT_KEY)
    assert_same_outputs(config.output, alone)


def test_a_chunks_observations_are_freed_on_the_worker_once_its_evidence_has_run(tmp_path: Path,
                                                                              inprocess: str) -> None:
    # A zonal task's result holds the pixels kept for the chips, and the worker counts them in its memory. Held until
    # every chunk was observed, a county's results made the workers spill them to disk, where the kept pixels are
    # lost and the chips read again. Once a chunk's evidence task has read them, nothing may hold them.
    from distributed import Client

    def tasks(dask_scheduler: Any) -> list[tuple[str, str]]:
        return [(str(key), task.state) for key, task in dask_scheduler.tasks.items()]

    seen: list[tuple[int, int]] = []  # when every chunk is observed: (evidence results, zonal results held)

    def count_chunks(done: int, total: int) -> None:
        if done < total:
            return
        with Client(inprocess) as probe:
            deadline = time.monotonic() + 120
            while True:  # until every evidence task has run
                states = probe.run_on_scheduler(tasks)
                evidence = [state for key, state in states if key.startswith("_observed_evidence")]
                if len(evidence) == total and set(evidence) == {"memory"} or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        seen.append((len(evidence), sum(key.startswith("observe_chunk") and state == "memory"
                                        for key, state in states)))

    config = load_batch_config(write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M))
    run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess, count_chunks=count_chunks)
    (evidence, observed), = seen
    assert evidence > 10
    assert observed <= 1  # the last chunk's, which the loop that submitted its evidence task still holds


def test_plots_in_a_folder_of_files_give_the_outputs_of_the_one_file(tmp_path: Path, reference: Path,
                                                                    inprocess: str) -> None:
    # A county's plots come as one file per township: a folder of them is read in name order as one table. The
    # outputs are those of the one file but for the plots' hash, over the folder's files, in the manifest and in
    # each audit record.
    import hashlib

    from test_plots import cut_into_files

    folder = cut_into_files(tmp_path / "plots")
    path = write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M)
    path.write_text(path.read_text(encoding="utf-8").replace((SAMPLE / "plots.geojson").as_posix(), folder.as_posix()),
                    encoding="utf-8")
    config = load_batch_config(path)
    assert config.case.plots == folder
    run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess)
    for name in OUTPUT_FILES:
        if name not in ("manifest.json", "audit.jsonl"):
            assert (config.output / name).read_bytes() == (reference / name).read_bytes(), name
    inputs, expected = (json.loads((out / "manifest.json").read_text(encoding="utf-8"))["inputs"]
                        for out in (config.output, reference))
    every = sorted(p for p in folder.rglob("*") if p.is_file())  # the folder's files, by their path in it
    assert inputs["plots"] == hashlib.sha256("".join(
        f"{p.relative_to(folder).as_posix()}\0{hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in every
    ).encode()).hexdigest() != expected["plots"]
    assert {k: v for k, v in inputs.items() if k != "plots"} == {k: v for k, v in expected.items() if k != "plots"}

    def records(out: Path, plots_hash: str) -> list[dict[str, Any]]:  # without the plots' hash and the seals
        lines = [json.loads(line) for line in (out / "audit.jsonl").read_text(encoding="utf-8").splitlines()]
        for record in lines:
            assert record["inputs"].pop("plots") == plots_hash
            record.pop("prev_mac"), record.pop("mac")
        return lines

    assert records(config.output, inputs["plots"]) == records(reference, expected["plots"])


def test_a_plot_without_borrower_in_a_folder_is_named_by_its_file_and_row(tmp_path: Path) -> None:
    from test_plots import cut_into_files

    folder = cut_into_files(tmp_path / "plots")
    middle = gpd.read_parquet(folder / "b-middle.parquet")
    middle.loc[middle.index[7], "borrower_id"] = None
    middle.to_parquet(folder / "b-middle.parquet")
    with pytest.raises(InputError, match=r"b-middle\.parquet: row 7: feature has no borrower_id"):
        run_assessment(dataclasses.replace(sample_case(), plots=folder), KEY, strict=True)


def test_an_unreadable_tile_holds_its_plots_as_in_assess_and_failures_csv_lists_them(tmp_path: Path,
                                                                                    inprocess: str) -> None:
    import shutil

    tiles = tmp_path / "season"
    shutil.copytree(SAMPLE / "season", tiles)
    cut = tiles / "S2_L2A_SIM_20230620.tif"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # a download cut in half: the pixels do not read
    path = write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M)
    path.write_text(path.read_text(encoding="utf-8").replace((SAMPLE / "season").as_posix(), tiles.as_posix()),
                    encoding="utf-8")
    config = load_batch_config(path)
    run = run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess)
    assert run.failures == []  # no chunk failed
    expected = tmp_path / "assess"
    write_outputs(run_assessment(dataclasses.replace(sample_case(), tiles=config.case.tiles), KEY), expected,
                  AUDIT_KEY)
    assert_same_outputs(config.output, expected)
    (why,) = run.assessment.rejected["TILE_UNREADABLE"]
    assert why.startswith(f"{cut.name}: cannot read pixels")
    assert_failures_list_the_held_plots(config.output, expected, f"unreadable tile {why}")
    # Resumed, every chunk is taken from the ledger, which keeps the tiles each could not read: the same bytes.
    resumed = run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess, resume=True)
    assert resumed.reused_chunks == len(json.loads((config.output / WORK_FOLDER / LEDGER).read_text())["chunks"]) > 1
    assert resumed.assessment.rejected["TILE_UNREADABLE"] == [why]
    assert_same_outputs(config.output, expected)
    assert_failures_list_the_held_plots(config.output, expected, f"unreadable tile {why}")


def assert_failures_list_the_held_plots(output: Path, expected: Path, reason: str) -> None:
    """``failures.csv`` in ``output`` lists each plot that a tile holds (``TILE_UNREADABLE`` in assess's outputs
    ``expected``) with its chunk (cells of :data:`SMALL_CHUNK_M`) and ``reason``."""
    plots = gpd.read_file(expected / "plots.geojson")
    held = sorted(plots.loc[plots["reason_codes"].str.contains("TILE_UNREADABLE"), "plot_id"])
    assert 0 < len(held) < len(plots)
    table = pd.read_csv(output / FAILURES, dtype={"plot_id": str})
    assert table["plot_id"].tolist() == held
    assert set(table["reason"]) == {reason}
    every = load_plots(SAMPLE / "plots.geojson")
    chunk_of = {pid: number for number, rows in enumerate(chunk_plots(every, "EPSG:32618", SMALL_CHUNK_M))
                for pid in every["plot_id"].iloc[rows]}
    assert table["chunk"].tolist() == [chunk_of[pid] for pid in held]


def test_a_missing_tile_is_left_out_as_in_assess_and_the_rest_finish(tmp_path: Path, inprocess: str) -> None:
    # A tile the manifest lists but that is not there has no footprint: no plot is known to be under it, so it is
    # listed (TILE_UNREADABLE) and the season judged on the other tiles, as assess does; no plot is in failures.csv.
    import shutil

    tiles = tmp_path / "season"
    shutil.copytree(SAMPLE / "season", tiles)
    (tiles / "S2_L2A_SIM_20230620.tif").unlink()
    path = write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M)
    path.write_text(path.read_text(encoding="utf-8").replace((SAMPLE / "season").as_posix(), tiles.as_posix()),
                    encoding="utf-8")
    config = load_batch_config(path)
    run = run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess)
    assert run.assessment.rejected["TILE_UNREADABLE"] == [
        "S2_L2A_SIM_20230620.tif: tile 'S2_L2A_SIM_20230620.tif' listed in the manifest does not exist"]
    assert not (config.output / FAILURES).exists()
    expected = tmp_path / "assess"
    write_outputs(run_assessment(dataclasses.replace(sample_case(), tiles=config.case.tiles), KEY), expected,
                  AUDIT_KEY)
    assert_same_outputs(config.output, expected)
    with pytest.raises(AgricreditError, match="row 6: tile 'S2_L2A_SIM_20230620.tif' listed in the manifest"):
        run_assessment(dataclasses.replace(sample_case(), tiles=config.case.tiles), KEY, strict=True)


def test_a_missing_stac_asset_holds_the_plots_its_item_lies_over_as_in_assess(tmp_path: Path, inprocess: str) -> None:
    # A STAC item tells where its missing tile lies: the plots under it are held, as assess holds them, and listed in
    # failures.csv with their chunks.
    from test_assess_claims import MISSING_TILE, season_with_a_missing_stac_asset

    collection, _ = season_with_a_missing_stac_asset(tmp_path / "season")
    path = write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M)
    path.write_text(path.read_text(encoding="utf-8").replace((SAMPLE / "season" / "manifest.csv").as_posix(),
                                                             collection.as_posix()), encoding="utf-8")
    config = load_batch_config(path)
    run = run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess)
    assert run.failures == [] and run.reused_chunks == 0  # no chunk failed: the plots are held by the tile's record
    expected = tmp_path / "assess"
    write_outputs(run_assessment(dataclasses.replace(sample_case(), tiles=(collection,)), KEY), expected, AUDIT_KEY)
    assert_same_outputs(config.output, expected)
    assert_failures_list_the_held_plots(config.output, expected,
                                        f"unreadable tile {MISSING_TILE}: asset '{MISSING_TILE}' does not exist")


@pytest.mark.parametrize("slow_hashes", [False, True])
def test_fail_fast_stops_and_resume_gives_the_bytes_of_an_uninterrupted_run(tmp_path: Path, reference: Path,
                                                                          inprocess: str, slow_hashes: bool,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    if slow_hashes:  # the tiles are hashed only once the chunk has failed: the chunks done by then are listed anyway
        failed, hashes, failure = threading.Event(), agricredit.batch.tile_hashes, agricredit.batch._chunk_failure

        def hashed_after_the_failure(tiles: Any) -> dict[str, str]:
            failed.wait(60)
            return hashes(tiles)

        def failure_seen(*args: Any) -> str:
            failed.set()
            return failure(*args)

        monkeypatch.setattr(agricredit.batch, "tile_hashes", hashed_after_the_failure)
        monkeypatch.setattr(agricredit.batch, "_chunk_failure", failure_seen)
    config = load_batch_config(write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M))
    with pytest.raises(AgricreditError, match="simulated worker failure"):
        run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess, task=failing_task, fail_fast=True)
    assert not (config.output / "manifest.json").exists()
    finished = json.loads((config.output / WORK_FOLDER / LEDGER).read_text())["chunks"]
    run = run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess, resume=True)
    assert run.reused_chunks == len(finished) > 0
    assert_same_outputs(config.output, reference)

    changed = load_batch_config(write_config(tmp_path, chunk_size_m=2 * SMALL_CHUNK_M))
    with pytest.raises(InputError, match="configuration changed"):
        run_batch(changed, KEY, AUDIT_KEY, scheduler=inprocess, resume=True)


def test_resume_redoes_a_chunk_whose_result_no_longer_verifies(tmp_path: Path, reference: Path,
                                                               inprocess: str) -> None:
    config = load_batch_config(write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M))
    first = run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess)
    (config.output / WORK_FOLDER / "chunk-00003.parquet").write_bytes(b"not parquet")
    run = run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess, resume=True)
    assert first.reused_chunks == 0
    assert run.reused_chunks == len(json.loads((config.output / WORK_FOLDER / LEDGER).read_text())["chunks"]) - 1
    assert_same_outputs(config.output, reference)


def test_large_geojson_layers_become_rfc8142_text_sequences(tmp_path: Path, reference: Path, inprocess: str) -> None:
    plots_size = (reference / "plots.geojson").stat().st_size
    borrowers_size = (reference / "borrowers.geojson").stat().st_size
    assert borrowers_size < plots_size
    # At the plots layer's size: plots.geojson becomes a sequence, the smaller borrowers.geojson stays.
    config = load_batch_config(write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M, geojsonseq_min_bytes=plots_size))
    manifest = run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess).manifest
    assert not (config.output / "plots.geojson").exists()
    assert (config.output / "borrowers.geojson").read_bytes() == (reference / "borrowers.geojson").read_bytes()
    text = (config.output / "plots.geojsonl").read_text(encoding="utf-8")
    records = text.split("\x1e")
    assert records[0] == "" and all(record.endswith("\n") and record.count("\n") == 1 for record in records[1:])
    expected = json.loads((reference / "plots.geojson").read_text(encoding="utf-8"))["features"]
    assert [json.loads(record) for record in records[1:]] == expected
    assert "plots.geojsonl" in manifest["outputs"] and "plots.geojson" not in manifest["outputs"]

    below = load_batch_config(write_config(tmp_path / "below", chunk_size_m=SMALL_CHUNK_M,
                                           geojsonseq_min_bytes=plots_size + 1))
    run_batch(below, KEY, AUDIT_KEY, scheduler=inprocess)
    assert_same_outputs(below.output, reference)


@pytest.mark.parametrize(("table", "message"), [
    ('output = "o"\nthreads = 2', "unknown key batch.threads"),
    ("chunk_size_m = 100", "missing batch.output"),
    ('output = "o"\nchunk_size_m = 0', "chunk_size_m must be a positive"),
    ('output = "o"\nworkers = 0', "workers must be a whole number"),
    ('output = "o"\ngeojsonseq_min_bytes = -1', "geojsonseq_min_bytes must be a whole number of bytes >= 0"),
    ('output = "o"\nmemory_per_worker = "lots"', "memory_per_worker must be a size of at least 512.00 MiB"),
    ('output = "o"\nmemory_per_worker = "511MiB"', "memory_per_worker must be .* not '511MiB'"),
    (f'output = "o"\nmemory_per_worker = {512 * 2**20 - 1}', "memory_per_worker must be a size"),
    ('output = "o"\nmemory_per_worker = true', "memory_per_worker must be a size"),
])
def test_bad_batch_tables_are_refused_with_one_clear_line(tmp_path: Path, table: str, message: str) -> None:
    path = write_config(tmp_path, chunk_size_m=1.0)
    text = path.read_text(encoding="utf-8")
    path.write_text(text[:text.index("[batch]")] + "[batch]\n" + table + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_batch_config(path)


def test_a_folder_left_by_a_stopped_run_names_resume_and_overwrite_and_resume_finishes_it(
        tmp_path: Path, reference: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An output folder holding only the batch's work folder (a run that stopped before writing its outputs) is
    refused with what to do, not as an earlier run's outputs; ``--resume`` takes it."""
    from click.testing import CliRunner

    from agricredit.cli.main import cli

    monkeypatch.setenv("AGRICREDIT_PII_KEY", "pseudonym key of the batch tests")
    monkeypatch.setenv("AGRICREDIT_AUDIT_KEY", "audit key of the batch tests")
    config = write_config(tmp_path, chunk_size_m=1e7, workers=1)
    work = tmp_path / "out" / WORK_FOLDER
    work.mkdir(parents=True)
    (work / "run.log").write_text("a run that stopped\n", encoding="utf-8")
    for ledger, finished in ((None, 0), ({"chunks": {"0": {}, "3": {}}}, 2), ({"chunks": 5}, 0)):
        if ledger is not None:
            (work / LEDGER).write_text(json.dumps(ledger), encoding="utf-8")
        result = CliRunner().invoke(cli, ["-q", "batch", str(config)])
        assert result.exit_code == 1
        assert result.stderr == (f"Error: {tmp_path / 'out'}: holds a batch run that stopped before writing its "
                                 f"outputs ({finished} chunks finished; see {WORK_FOLDER}/run.log): pass --resume to "
                                 "continue it or --overwrite to start again\n")
    (work / LEDGER).unlink()
    result = CliRunner().invoke(cli, ["-q", "batch", str(config), "--resume"])
    assert result.exit_code == 3, result.output
    assert_same_outputs(tmp_path / "out", reference)
    # Beside outputs, the work folder is an earlier run's, as before.
    result = CliRunner().invoke(cli, ["-q", "batch", str(config)])
    assert result.exit_code == 1 and "holds the outputs of an earlier run; pass --overwrite" in result.stderr


def test_the_config_hash_follows_what_changes_results_and_not_the_cluster(tmp_path: Path) -> None:
    """``--resume`` compares the config's hash: the inputs, the options and the chunking change it; the workers,
    their memory and the output folder, which change no byte of the results, do not."""
    path = write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M)
    text = path.read_text(encoding="utf-8")
    base = load_batch_config(path).sha256

    def hash_of(new_text: str) -> str:
        path.write_text(new_text, encoding="utf-8")
        return load_batch_config(path).sha256

    same = [text + 'workers = 3\nmemory_per_worker = "3GiB"\n', text.replace('output = "out"', 'output = "elsewhere"')]
    assert [hash_of(t) for t in same] == [base, base]
    changed = [text.replace(f"chunk_size_m = {SMALL_CHUNK_M}", f"chunk_size_m = {2 * SMALL_CHUNK_M}"),
               text + "geojsonseq_min_bytes = 1000\n", text + "geojsonseq_min_bytes = 0\n",
               text.replace('end = "2023-12-31"', 'end = "2023-11-30"'),
               text.replace((SAMPLE / "declarations.csv").as_posix(), (tmp_path / "other.csv").as_posix())]
    hashes = [hash_of(t) for t in changed]
    assert base not in hashes and len(set(hashes)) == len(changed)


@pytest.mark.parametrize("memory", ['"512MiB"', str(512 * 2**20), '"2GiB"', '"1.5 GB"'])
def test_a_worker_memory_of_512_mib_or_more_is_taken_as_written(tmp_path: Path, memory: str) -> None:
    path = write_config(tmp_path, chunk_size_m=1.0)
    path.write_text(path.read_text(encoding="utf-8") + f"memory_per_worker = {memory}\n", encoding="utf-8")
    assert load_batch_config(path).memory_per_worker == memory.strip('"')


def test_processing_failed_holds_the_plot_and_round_trips_through_the_audit_facts() -> None:
    from agricredit.policy import load_policy
    from agricredit.verify import PlotFacts, verify_plot

    sound = PlotFacts(plot_id="P1", borrower_id="b", drawn_mu=10.0, registered_mu=10.0, registry_holder_id="b",
                      declared_mu=10.0, declared_crop="maize")
    failed = PlotFacts.from_dict({**sound.to_dict(), "processing_failed": "chunk 3: RuntimeError: boom"})
    assert "processing_failed" not in sound.to_dict()  # audits of runs without failures are unchanged
    assert PlotFacts.from_dict(failed.to_dict()) == failed
    verdict = verify_plot(failed, load_policy())
    check = next(c for c in verdict.checks if c.code == "PROCESSING_FAILED")
    assert check.severity == "review" and check.figures == {"reason": "chunk 3: RuntimeError: boom"}
    assert verdict.contribution.mu_now == 0 and "PROCESSING_FAILED" not in verify_plot(sound, load_policy()).codes


# --------------------------------------------------------------------------- edges: tile grids, inputs, lost workers

#: The plot the split below runs through (about 1 km wide, in the middle of the sample tile).
STRADDLING_PLOT = "P0241"
#: A second CRS for the east part of every split tile: the sample's UTM zone 18N with its false easting 5 m
#: further, so the same pixels sit on another grid of another CRS, edge to edge with the west part.
OTHER_CRS = "+proj=tmerc +lat_0=0 +lon_0=-75 +k=0.9996 +x_0=500005 +y_0=0 +datum=WGS84 +units=m +no_defs"


def split_tiles(folder: Path, column: int) -> Path:
    """The sample season with each date cut at ``column`` into two tiles of two tile grids in two CRSs: the west
    part as it is (EPSG:32618), the east part in :data:`OTHER_CRS` (the same pixels); returns the manifest."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    folder.mkdir(parents=True, exist_ok=True)
    rows = ["date,sensor,path"]
    for line in (SAMPLE / "season" / "manifest.csv").read_text(encoding="utf-8").splitlines()[1:]:
        date, sensor, name = line.split(",")
        with rasterio.open(SAMPLE / "season" / name) as src:
            for part, window in (("west", Window(0, 0, column, src.height)),
                                 ("east", Window(column, 0, src.width - column, src.height))):
                transform, crs = src.window_transform(window), src.crs
                if part == "east":
                    transform, crs = Affine.translation(5.0, 0.0) * transform, rasterio.crs.CRS.from_string(OTHER_CRS)
                path = folder / f"{Path(name).stem}_{part}.tif"
                with rasterio.open(path, "w", **{**src.profile, "width": int(window.width), "height": src.height,
                                                 "transform": transform, "crs": crs}) as dst:
                    dst.write(src.read(window=window))
                    dst.update_tags(**src.tags())
                    dst.descriptions = src.descriptions
                rows.append(f"{date},{sensor},{path.name}")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return manifest


def test_a_plot_straddling_two_tile_grids_comes_out_right_and_as_in_assess(tmp_path: Path, reference: Path,
                                                                            inprocess: str) -> None:
    from dataclasses import replace

    plots = load_plots(SAMPLE / "plots.geojson").to_crs("EPSG:32618").set_index("plot_id")
    minx, _, maxx, _ = plots.geometry[STRADDLING_PLOT].bounds
    column = round(((minx + maxx) / 2 - 438730.0) / 10.0)  # the sample tile's west edge is at x = 438730 m
    manifest = split_tiles(tmp_path / "tiles", column)
    config_path = write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M)
    config_path.write_text(config_path.read_text(encoding="utf-8").replace(
        (SAMPLE / "season" / "manifest.csv").as_posix(), manifest.as_posix()), encoding="utf-8")
    config = load_batch_config(config_path)
    run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess)
    alone = tmp_path / "assess"
    write_outputs(run_assessment(replace(sample_case(), tiles=(manifest,)), KEY), alone, AUDIT_KEY)
    assert_same_outputs(config.output, alone)

    # Right: the plot is seen whole, across both grids, with the figures of the undivided tiles.
    got = gpd.read_parquet(config.output / "plots.parquet").set_index("plot_id")
    expected = gpd.read_parquet(reference / "plots.parquet").set_index("plot_id")
    assert plots.geometry[STRADDLING_PLOT].length > 2000  # a large plot, cut in two by the split
    for column_name in ("light", "reason_codes", "n_valid", "best_crop", "peak_date"):
        assert got.loc[STRADDLING_PLOT, column_name] == expected.loc[STRADDLING_PLOT, column_name], column_name
    for column_name in ("cropped_mu", "cropped_measured_share", "peak_ndvi", "verified_mu", "ndvi_integral"):
        assert got.loc[STRADDLING_PLOT, column_name] == pytest.approx(expected.loc[STRADDLING_PLOT, column_name],
                                                                      rel=1e-6), column_name
    series = pd.read_parquet(config.output / "series.parquet").set_index(["plot_id", "date"]).loc[STRADDLING_PLOT]
    whole = pd.read_parquet(reference / "series.parquet").set_index(["plot_id", "date"]).loc[STRADDLING_PLOT]
    assert list(series.index) == list(whole.index)
    np.testing.assert_allclose(series.to_numpy(float), whole.to_numpy(float), rtol=1e-6)


def test_a_changed_input_refuses_resume(tmp_path: Path, inprocess: str) -> None:
    import shutil

    import rasterio

    inputs = tmp_path / "inputs"
    shutil.copytree(SAMPLE / "season", inputs / "season")
    shutil.copy(SAMPLE / "plots.geojson", inputs / "plots.geojson")
    config_path = write_config(tmp_path, chunk_size_m=4 * SMALL_CHUNK_M)
    config_path.write_text(config_path.read_text(encoding="utf-8")
                           .replace((SAMPLE / "season").as_posix(), (inputs / "season").as_posix())
                           .replace((SAMPLE / "plots.geojson").as_posix(), (inputs / "plots.geojson").as_posix()),
                           encoding="utf-8")
    config = load_batch_config(config_path)
    run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess)
    ledger = (config.output / WORK_FOLDER / LEDGER).read_bytes()

    tile = inputs / "season" / "S2_L2A_SIM_20230620.tif"
    original = tile.read_bytes()
    with rasterio.open(tile) as src:  # rewritten with one pixel of one band changed
        profile, tags, names, data = src.profile, src.tags(), src.descriptions, src.read()
    data[0, 0, 0] += 1
    with rasterio.open(tile, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**tags)
        dst.descriptions = names
    with pytest.raises(InputError, match="plots or tiles changed"):
        run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess, resume=True)
    tile.write_bytes(original)

    text = (inputs / "plots.geojson").read_text(encoding="utf-8")
    (inputs / "plots.geojson").write_text(text.replace('"P0100"', '"P0100x"', 1), encoding="utf-8")
    with pytest.raises(InputError, match="plots or tiles changed"):
        run_batch(config, KEY, AUDIT_KEY, scheduler=inprocess, resume=True)
    assert (config.output / WORK_FOLDER / LEDGER).read_bytes() == ledger  # a refused resume leaves the ledger


def dying_task(plots, acquisitions, *, marker: str):
    """The map task, except that the worker process running the chunk of :data:`FAILING_PLOT` dies the first time
    (``os._exit``: no exception, no clean-up, as a killed or crashed worker)."""
    if FAILING_PLOT in set(plots["plot_id"]) and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()), encoding="utf-8")
        os._exit(1)
    return observe_chunk(plots, acquisitions)


def test_a_worker_lost_mid_run_is_retried_and_the_bytes_do_not_change(tmp_path: Path, reference: Path,
                                                                       scheduler: str) -> None:
    import functools

    marker = tmp_path / "worker-died"
    config = load_batch_config(write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M))
    run = run_batch(config, KEY, AUDIT_KEY, scheduler=scheduler, task=functools.partial(dying_task, marker=str(marker)))
    assert marker.is_file() and int(marker.read_text()) != os.getpid()  # a worker process really died
    assert run.failures == [] and not (config.output / FAILURES).exists()
    assert_same_outputs(config.output, reference)


class _Closable:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def close(self) -> None:
        time.sleep(0.05)  # a cluster takes a while: close() must wait for it
        self.log.append(self.name)


def test_the_connection_closed_soon_is_closed_once_and_close_waits_for_it():
    from agricredit.batch import _Connecting

    log: list[str] = []
    connecting = _Connecting(lambda: (_Closable(log, "client"), _Closable(log, "cluster"),
                                      lambda: log.append("logging back")))
    connecting.close_soon()
    connecting.close_soon()
    connecting.close()
    assert log == ["client", "cluster", "logging back"]
    connecting.close()
    assert log == ["client", "cluster", "logging back"]
    alone = _Connecting(lambda: (_Closable(log, "client of a scheduler"), None, lambda: log.append("its logging")))
    alone.close()  # no close_soon first
    assert log[3:] == ["client of a scheduler", "its logging"]

    class Failing:
        def close(self) -> None:
            raise OSError("the scheduler is gone")

    failing = _Connecting(lambda: (Failing(), None, lambda: log.append("logging back all the same")))
    with pytest.raises(OSError, match="gone"):
        failing.close()
    assert log[5:] == ["logging back all the same"]


def test_a_connection_that_failed_has_nothing_to_close():
    from agricredit.batch import _Connecting

    def refused():
        raise OSError("connection refused")

    connecting = _Connecting(refused)
    connecting.close_soon()
    connecting.close()
    with pytest.raises(OSError):
        connecting.scheduler_info()


def test_plots_the_prefetch_did_not_hold_are_observed_anew(tmp_path: Path, inprocess: str) -> None:
    # The zonal tasks started on a prefetch that lacks some of the plots to assess are dropped for tasks over all of
    # them: the table is the one-process table of every plot.
    import datetime as dt

    from distributed import Client

    config = load_batch_config(write_config(tmp_path, chunk_size_m=SMALL_CHUNK_M))
    plots = load_plots(SAMPLE / "plots.geojson")
    plots = plots.loc[plots["geometry_status"].isin((STATUS_OK, GEOMETRY_REPAIRED))]
    assert len(plots) == 317
    acquisitions = discover_acquisitions([SAMPLE / "season" / "manifest.csv"], dt.date(2023, 1, 1),
                                         dt.date(2023, 12, 31))
    with Client(inprocess) as client:
        observer = DaskObserver(client, config, tmp_path / "work")
        observer.prefetch(plots.iloc[: len(plots) // 2], acquisitions)
        table = observer(plots, acquisitions)
    # The same rows and values (the text columns come back from the workers as objects rather than pandas strings;
    # the quantiles of plots observed by chunks differ from the whole table's in the last bits, at most 3.3e-12
    # here, far below what the outputs keep: the outputs are assess's byte for byte, see the tests above).
    pd.testing.assert_frame_equal(table, observation_table(plots, acquisitions), check_dtype=False, check_exact=False,
                                  rtol=0, atol=1e-10)
    assert sorted(observer.chunk_of_plots()) == sorted(plots["plot_id"])
