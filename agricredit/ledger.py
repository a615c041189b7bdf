"""The ledger of a batch run (design §9; :mod:`agricredit.batch`): what ``--resume`` continues from.

``ledger.json`` in the batch's work folder names the run's configuration (its hash) and inputs (a hash of the plot
file's and every tile's sha256) and lists each finished chunk: its observations' Parquet file beside it and that
file's sha256, the hash of the chunk's plots (:func:`plots_hash`) and the tiles it could not read. Every file is
written to a temporary name and renamed (:func:`agricredit.outputs.atomic_path`), the ledger after the chunk's file:
a run killed at any point leaves a ledger whose every chunk file is whole.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely

from agricredit.errors import InputError
from agricredit.outputs import atomic_path, sha256_file, sha256_path

__all__ = ["CHUNK_PARQUET", "LEDGER", "Ledger", "finished_chunks", "plots_hash"]

#: The ledger's file name in the work folder.
LEDGER = "ledger.json"
#: Parquet settings of the chunks' observation files (read back by the run that resumes).
CHUNK_PARQUET = {"compression": "snappy", "write_statistics": False}


def plots_hash(plots: gpd.GeoDataFrame) -> str:
    """sha256 of a chunk's plot IDs and outlines (WKB), each plot's ``ID \\0 WKB`` one after the other: a resumed
    chunk must hold the very same plots."""
    return hashlib.sha256(b"".join(plot_id.encode() + b"\0" + wkb for plot_id, wkb in zip(
        plots["plot_id"].astype(str).tolist(), shapely.to_wkb(plots.geometry.values).tolist()))).hexdigest()


def finished_chunks(work: Path) -> int:
    """How many chunks the ledger in ``work`` lists (0 without a ledger, or one this version cannot read)."""
    try:
        return len(json.loads((work / LEDGER).read_text(encoding="utf-8"))["chunks"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


class Ledger:
    """The ledger of the work folder ``work`` (:meth:`open` it): ``data`` is what ``ledger.json`` holds."""

    def __init__(self, work: Path, data: dict[str, Any]) -> None:
        self.work, self.data = work, data

    @classmethod
    def open(cls, work: Path, config_sha256: str, plots: Path, tiles: Mapping[str, str], *, resume: bool) -> Ledger:
        """The ledger to continue or a new one.

        A ledger to continue of another configuration or other inputs is refused
        (:class:`~agricredit.errors.InputError`, naming the ledger). A new ledger replaces an earlier one and
        removes its chunk files.

        Parameters
        ----------
        work
            The batch's work folder (created if missing).
        config_sha256
            The hash of the batch's configuration.
        plots
            The plot file (or folder of files): its sha256 is one of the inputs.
        tiles
            The tiles' sha256 by key (:func:`agricredit.acquisitions.tile_hashes`).
        resume
            Continue the ledger in ``work`` if there is one.

        Returns
        -------
        Ledger
        """
        inputs = {"plots": sha256_path(plots), **{f"tile:{k}": v for k, v in sorted(tiles.items())}}
        inputs_hash = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
        path = work / LEDGER
        work.mkdir(parents=True, exist_ok=True)
        if resume and path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("config") != config_sha256:
                raise InputError("the configuration changed since the run to resume; run again without --resume",
                                 path=path)
            if data.get("inputs") != inputs_hash:
                raise InputError("the plots or tiles changed since the run to resume; run again without --resume",
                                 path=path)
            return cls(work, data)
        for stale in work.glob("chunk-*.parquet"):
            stale.unlink()
        ledger = cls(work, {"config": config_sha256, "inputs": inputs_hash, "chunks": {}})
        ledger._save()
        return ledger

    def finished(self, number: int, plots: gpd.GeoDataFrame) -> dict[str, Any] | None:
        """The entry of chunk ``number`` if the ledger lists it with the same ``plots`` and its file still
        verifies; else ``None`` (the chunk is to be done again)."""
        entry = self.data["chunks"].get(str(number))
        if entry is None or entry["plots"] != plots_hash(plots) or not self.verifies(entry):
            return None
        return entry

    def verifies(self, entry: Mapping[str, Any]) -> bool:
        """Whether an entry's chunk file is there with the sha256 the ledger lists."""
        path = self.work / entry["file"]
        return path.is_file() and sha256_file(path) == entry["sha256"]

    def read(self, entry: Mapping[str, Any]) -> pd.DataFrame:
        """An entry's observations."""
        return pd.read_parquet(self.work / entry["file"])

    def record(self, number: int, plots: gpd.GeoDataFrame, table: pd.DataFrame,
               unreadable: list[dict[str, Any]]) -> None:
        """Write a finished chunk's observations (:data:`CHUNK_PARQUET` settings), then list the file in the ledger.

        Parameters
        ----------
        number
            The chunk's number.
        plots
            The chunk's plots (the ledger keeps their :func:`plots_hash`).
        table
            The chunk's observation table.
        unreadable
            The tiles the chunk could not read (JSON-ready records).
        """
        name = f"chunk-{number:05d}.parquet"
        text = [str(column) for column in table.select_dtypes(exclude=["number", "bool"]).columns]
        with atomic_path(self.work / name) as tmp:
            table.to_parquet(tmp, index=False, use_dictionary=text, **CHUNK_PARQUET)
        self.data["chunks"][str(number)] = {"file": name, "sha256": sha256_file(self.work / name),
                                            "plots": plots_hash(plots), "unreadable": unreadable}
        self._save()

    def _save(self) -> None:
        with atomic_path(self.work / LEDGER) as tmp:
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
