"""The client's handling of the chunks' observations in a batch: their tables put together (``_combine``), the
ledger's chunk files (:class:`agricredit.ledger.Ledger`, ``DaskObserver._record``) and the hash of a chunk's plots,
against references in the test."""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import Future
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from agricredit.batch import DaskObserver, _combine, _Started, load_batch_config
from agricredit.errors import InputError
from agricredit.ledger import Ledger, plots_hash

SAMPLE = Path(__file__).resolve().parents[1] / "sample_tiles"

IDS = ["P10", "P2", "é-3", "P1", "P20"]  # the plots' order is not the IDs' order


def _plots() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"plot_id": IDS}, geometry=[shapely.box(k, 0, k + 0.5, 0.5 + k / 10) for k in range(5)],
                            crs="EPSG:32650")


def _table(rows: list[tuple[str, str]], seed: int) -> pd.DataFrame:
    """An observation table of (plot, date) rows, each chunk's in its own order (by date, then plot order)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"plot_id": [p for p, _ in rows], "date": [d for _, d in rows],
                         "ndvi_mean": rng.random(len(rows)), "pixel_count": rng.integers(1, 50, len(rows)) * 1.0,
                         "flags": ["" if k % 2 else "EDGE" for k in range(len(rows))],
                         "cloud_masked": rng.random(len(rows)) < 0.5})


def test_chunks_tables_are_put_in_date_then_plot_order() -> None:
    plots = _plots()
    first = _table([("P10", "2023-04-10"), ("P1", "2023-04-10"), ("P10", "2023-06-01"), ("P1", "2023-06-01")], 1)
    second = _table([("P2", "2023-04-10"), ("é-3", "2023-04-10"), ("P20", "2023-04-10"), ("é-3", "2023-05-05"),
                     ("P2", "2023-06-01")], 2)
    combined = _combine(plots, [second, first.iloc[:0], first])
    # the reference: every row, sorted by (date, the plot's position among the plots)
    rows = pd.concat([second, first], ignore_index=True)
    order = sorted(range(len(rows)), key=lambda k: (rows["date"][k], IDS.index(rows["plot_id"][k])))
    expected = rows.iloc[order].reset_index(drop=True)
    pd.testing.assert_frame_equal(combined, expected, check_exact=True, check_index_type=True)
    assert combined["plot_id"].tolist()[:4] == ["P10", "P2", "é-3", "P1"]
    assert len(_combine(plots, [first.iloc[:0]])) == 0


def test_a_chunks_plots_hash_is_each_plots_id_and_outline_in_turn() -> None:
    plots = _plots()
    digest = hashlib.sha256()
    for plot_id, outline in zip(IDS, plots.geometry):
        digest.update(plot_id.encode() + b"\0" + shapely.to_wkb(outline))
    assert plots_hash(plots) == digest.hexdigest()
    assert plots_hash(plots.iloc[:0]) == hashlib.sha256().hexdigest()
    assert plots_hash(plots.iloc[[1, 0, 2, 3, 4]]) != plots_hash(plots)


def test_a_recorded_chunk_reads_back_whole_and_verifies_as_an_earlier_ledgers_does(tmp_path: Path) -> None:
    plots = _plots()
    table = _table([(p, "2023-04-10") for p in IDS] + [(p, "2023-06-01") for p in IDS], 3)
    ledger = Ledger(tmp_path, {"chunks": {}})
    ledger.record(7, plots, table, [{"path": "t.tif", "why": "unreadable"}])
    entry = ledger.data["chunks"]["7"]
    assert entry["file"] == "chunk-00007.parquet" and entry["plots"] == plots_hash(plots)
    assert entry["sha256"] == hashlib.sha256((tmp_path / entry["file"]).read_bytes()).hexdigest()
    assert json.loads((tmp_path / "ledger.json").read_text())["chunks"]["7"] == entry
    pd.testing.assert_frame_equal(ledger.read(entry), table, check_exact=True)
    assert ledger.verifies(entry)
    # A resumed chunk is the one listed: the same plots, and its file as listed.
    assert ledger.finished(7, plots) == entry
    assert ledger.finished(7, plots.iloc[[1, 0, 2, 3, 4]]) is None and ledger.finished(6, plots) is None
    # A chunk file written by the earlier code (pandas' default parquet settings) still verifies and reads back.
    table.to_parquet(tmp_path / "chunk-00008.parquet", index=False)
    earlier = {"file": "chunk-00008.parquet",
               "sha256": hashlib.sha256((tmp_path / "chunk-00008.parquet").read_bytes()).hexdigest()}
    assert ledger.verifies(earlier)
    (tmp_path / "chunk-00008.parquet").write_bytes((tmp_path / "chunk-00008.parquet").read_bytes()[:-1] + b"!")
    assert not ledger.verifies(earlier)
    (tmp_path / entry["file"]).unlink()
    assert not ledger.verifies(entry) and ledger.finished(7, plots) is None


def test_chunks_finished_while_the_tiles_are_hashed_are_listed_once_the_ledger_opens(tmp_path: Path) -> None:
    config_path = tmp_path / "batch.toml"
    inputs = {name: (SAMPLE / f"{name}.{'geojson' if name == 'plots' else 'csv'}").as_posix()
              for name in ("plots", "registry", "declarations", "borrowers")}
    config_path.write_text("\n".join([
        "[inputs]", *(f'{name} = "{path}"' for name, path in inputs.items()),
        f'tiles = ["{(SAMPLE / "season" / "manifest.csv").as_posix()}"]', "[batch]", 'output = "out"']),
        encoding="utf-8")
    work = tmp_path / "work"
    observer = DaskObserver(None, load_batch_config(config_path), work)
    plots = _plots()
    table = _table([(p, "2023-04-10") for p in IDS], 4)
    started = _Started([], plots, [], tiles=Future())
    # The tiles are still being hashed: the chunk waits, nothing is written.
    observer._record(started, 3, plots.iloc[:2], table.iloc[:2], [])
    assert started.ledger is None and len(started.unrecorded) == 1
    assert not work.exists() or not any(work.iterdir())
    # Hashed: the next chunk opens the ledger, and both are listed, each with its own plots and file.
    started.tiles.set_result({"2023-04-10/t.tif": "0" * 64})
    observer._record(started, 4, plots.iloc[2:], table.iloc[2:], [{"path": "t.tif", "why": "unreadable"}])
    ledger = json.loads((work / "ledger.json").read_text())
    assert sorted(ledger["chunks"]) == ["3", "4"] and started.unrecorded == []
    assert ledger["chunks"]["3"]["plots"] == plots_hash(plots.iloc[:2])
    assert ledger["chunks"]["4"]["unreadable"] == [{"path": "t.tif", "why": "unreadable"}]
    pd.testing.assert_frame_equal(pd.read_parquet(work / "chunk-00003.parquet"), table.iloc[:2], check_exact=True)
    # At the end of the zonal stage (``wait``) the ledger opens once the hashes are in, with the chunks waiting.
    later = _Started([], plots, [], tiles=Future())
    observer._record(later, 5, plots, table, [])
    threading.Timer(0.2, later.tiles.set_result, args=({},)).start()
    observer._record(later, wait=True)
    assert sorted(json.loads((work / "ledger.json").read_text())["chunks"]) == ["5"]
    # The inputs hash is of the plots and the tiles' hashes: another set of tiles, another ledger header.
    assert json.loads((work / "ledger.json").read_text())["inputs"] != ledger["inputs"]


def test_a_new_ledger_removes_the_earlier_runs_chunk_files_and_resume_keeps_them(tmp_path: Path) -> None:
    work, plot_file = tmp_path / "work", SAMPLE / "plots.geojson"
    tiles = {"2023-04-10/t.tif": "0" * 64}
    plots = _plots()
    first = Ledger.open(work, "config-a", plot_file, tiles, resume=False)
    first.record(1, plots, _table([(p, "2023-04-10") for p in IDS], 5), [])
    first.record(12, plots.iloc[:2], _table([("P10", "2023-04-10")], 6), [])
    (work / "run.log").write_text("earlier run\n", encoding="utf-8")
    listed = (work / "ledger.json").read_bytes()
    # Resumed with the same configuration and inputs: the chunks and their files are kept.
    resumed = Ledger.open(work, "config-a", plot_file, tiles, resume=True)
    assert sorted(resumed.data["chunks"]) == ["1", "12"] and resumed.finished(12, plots.iloc[:2]) is not None
    # Another configuration: refused, the ledger and files left as they were.
    with pytest.raises(InputError, match="configuration changed"):
        Ledger.open(work, "config-b", plot_file, tiles, resume=True)
    assert (work / "ledger.json").read_bytes() == listed
    # A new run (no --resume): no chunk listed and no chunk file left, the run log kept.
    fresh = Ledger.open(work, "config-b", plot_file, tiles, resume=False)
    assert fresh.data["chunks"] == {} and json.loads((work / "ledger.json").read_text())["chunks"] == {}
    assert sorted(path.name for path in work.iterdir()) == ["ledger.json", "run.log"]
