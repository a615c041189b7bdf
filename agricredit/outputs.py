"""Writing outputs safely: atomic files, sha256, the manifest.

A crash or a killed run never leaves a partial file under the final name: every
output is written to a temporary file in the same folder and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from agricredit.errors import OutputError

__all__ = ["atomic_path", "sha256_file", "sha256_path", "output_kind", "write_geojson", "write_table", "write_plot_table",
           "write_plot_dates"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path
        The final output path. Its folder must exist or be creatable.

    Yields
    ------
    Path
        Where the caller writes. Removed if the block raises.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create folder: {error.strerror}", path=final.parent) from error
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part" + final.suffix, dir=final.parent)
    except OSError as error:
        raise OutputError(f"cannot write here: {error.strerror}", path=final) from error
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give the output the usual permissions.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_path(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file; of a folder (a .SAFE product), over its files' relative names and hashes."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for member in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{member.relative_to(path).as_posix()}\0{sha256_file(member)}\n".encode())
    return digest.hexdigest()


GEOJSON_SUFFIXES = {".geojson", ".json"}
PARQUET_SUFFIXES = {".parquet", ".geoparquet"}
CSV_SUFFIXES = {".csv"}


def output_kind(path: Path) -> str:
    """``geojson``, ``parquet`` or ``csv`` from the extension; ``-`` is GeoJSON on stdout."""
    if str(path) == "-":
        return "geojson"
    suffix = path.suffix.lower()
    for kind, suffixes in (("geojson", GEOJSON_SUFFIXES), ("parquet", PARQUET_SUFFIXES), ("csv", CSV_SUFFIXES)):
        if suffix in suffixes:
            return kind
    raise OutputError("unknown output type; use .geojson, .parquet or .csv", path=path)


def _plain(value: Any) -> Any:
    """JSON-ready value: NaN → null, numpy scalars → Python."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _rfc7946_geometry(geometry: Any, decimals: int | None) -> dict[str, Any] | None:
    """GeoJSON geometry: counter-clockwise shells (RFC 7946 §3.1.6), coordinates rounded to ``decimals``."""
    if geometry is None or geometry.is_empty:
        return None
    if decimals is not None:
        geometry = shapely.transform(geometry, lambda xy: np.round(xy, decimals))
    return shapely.geometry.mapping(shapely.orient_polygons(geometry))


def write_geojson(features: list[dict[str, Any]], path: Path, *, decimals: int | None = None) -> None:
    """Write ``[{"geometry": shapely geometry, "properties": {...}}, ...]`` as an RFC 7946 FeatureCollection.

    Geometries must be WGS84 longitude/latitude; no ``crs`` member is written.
    Shells are oriented counter-clockwise; ``decimals`` rounds coordinates
    (6 decimals ≈ 0.1 m). ``path`` ``-`` writes to stdout.
    """
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": _rfc7946_geometry(f["geometry"], decimals), "properties": _plain(f["properties"])}
            for f in features
        ],
    }
    text = json.dumps(collection, ensure_ascii=False, allow_nan=False)
    if str(path) == "-":
        sys.stdout.write(text + "\n")
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_table(table: pd.DataFrame, path: Path, *, json_columns: tuple[str, ...] = ()) -> None:
    """Write a flat table as CSV (UTF-8, spreadsheet formulas escaped) or (Geo)Parquet; nested columns become JSON text."""
    out = table.copy()
    for column in json_columns:
        out[column] = [json.dumps(_plain(v), ensure_ascii=False) for v in out[column]]
    kind = output_kind(path)
    with atomic_path(path) as tmp:
        if kind == "csv":
            from agricredit.privacy import escape_csv_frame

            flat = pd.DataFrame(out.drop(columns="geometry", errors="ignore"))
            escape_csv_frame(flat).to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")
        else:  # a GeoDataFrame becomes GeoParquet
            out.to_parquet(tmp, index=False)


def write_plot_table(plots: Any, path: Path, *, decimals: int | None = 6) -> None:
    """Write a GeoDataFrame of plots (WGS84) by extension: GeoJSON features, or a table with nested columns as JSON.

    CSV leaves the geometry out; Parquet is GeoParquet. ``decimals`` rounds
    GeoJSON coordinates (``None``: as they are).
    """
    if output_kind(path) == "geojson":
        rows = plots.drop(columns="geometry").to_dict("records")
        write_geojson([{"geometry": g, "properties": r} for r, g in zip(rows, plots.geometry)], path, decimals=decimals)
        return
    nested = tuple(c for c in plots.columns if c != "geometry" and plots[c].map(lambda v: isinstance(v, (list, dict))).any())
    write_table(plots, path, json_columns=nested)


def write_plot_dates(table: pd.DataFrame, plots: Any, path: Path, *, decimals: int | None = None) -> None:
    """Write a per plot per date table: CSV/Parquet as it is (long), GeoJSON as one feature per plot.

    Parameters
    ----------
    table
        Long table with ``plot_id`` (one row per plot and date).
    plots
        GeoDataFrame of the plots (``plot_id``, any CRS) for the GeoJSON geometry;
        a plot without rows gets an empty ``dates`` list.
    path
        ``.csv``, ``.parquet`` or ``.geojson`` (``-``: GeoJSON on stdout).
    """
    if output_kind(path) != "geojson":
        write_table(table, path)
        return
    from agricredit.plots import to_wgs84

    per_plot = {pid: group.drop(columns="plot_id").to_dict("records") for pid, group in table.groupby("plot_id")}
    wgs = to_wgs84(plots)
    write_geojson([{"geometry": g, "properties": {"plot_id": pid, "dates": per_plot.get(pid, [])}}
                   for pid, g in zip(wgs["plot_id"], wgs.geometry.values)], path, decimals=decimals)
