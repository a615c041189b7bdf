"""Shared by ``area`` and ``stats``: GeoJSON / GeoParquet / CSV by extension; rejected plots and exit code 3."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
import shapely

from agricredit.cli.main import PartialSuccess
from agricredit.errors import OutputError
from agricredit.outputs import atomic_path
from agricredit.plots import rejected_ids

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


def write_geojson(features: list[dict[str, Any]], path: Path) -> None:
    """Write ``[{"geometry": shapely geometry, "properties": {...}}, ...]`` as a FeatureCollection."""
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature",
             "geometry": None if f["geometry"] is None or f["geometry"].is_empty else shapely.geometry.mapping(f["geometry"]),
             "properties": _plain(f["properties"])}
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
    """Write a flat table as CSV or (Geo)Parquet; nested columns become JSON text."""
    out = table.copy()
    for column in json_columns:
        out[column] = [json.dumps(_plain(v), ensure_ascii=False) for v in out[column]]
    kind = output_kind(path)
    with atomic_path(path) as tmp:
        if kind == "csv":
            pd.DataFrame(out.drop(columns="geometry", errors="ignore")).to_csv(tmp, index=False)
        else:  # a GeoDataFrame becomes GeoParquet
            out.to_parquet(tmp, index=False)


def exit_if_rejected(checked: pd.DataFrame) -> None:
    """List the rejected plots on stderr by reason and exit with code 3 (after the outputs are written)."""
    rejected = rejected_ids(checked)
    if not rejected:
        return
    for code, ids in sorted(rejected.items()):
        click.echo(f"rejected {code} ({len(ids)}): {', '.join(ids)}", err=True)
    raise PartialSuccess()
