"""What ``assess`` keeps for the report: NDVI chips around each plot at its peak date and the season series.

A chip is a small window of the tile of the plot's peak date (NDVI quantised
to one byte: 0 = no clear reading, 1..255 = NDVI −1..1) on the tile's own
grid, decimated to at most :data:`CHIP_MAX_PIXELS` a side, with its CRS and
affine transform, so that the report can outline the plot over it. A few KB
per plot, written as ``chips.parquet``; the series (one row per plot and date,
the zonal engine's figures) as ``series.parquet``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio.transform
import rasterio.windows
import shapely

from agricredit.schema import SERIES_FIELDS, conformed_table

__all__ = ["CHIP_MAX_PIXELS", "CHIP_MARGIN", "SERIES_COLUMNS", "encode_ndvi", "decode_ndvi", "plot_chips",
           "season_series", "chip_array", "write_report_data"]

#: Largest side of a chip, in pixels (larger windows are decimated by a whole stride).
CHIP_MAX_PIXELS = 64
#: Margin around the plot's bounding box, as a share of its larger side (at least 3 pixels).
CHIP_MARGIN = 0.35
#: Columns of ``series.parquet`` (:data:`agricredit.schema.SERIES_FIELDS`).
SERIES_COLUMNS = tuple(f.name for f in SERIES_FIELDS)


def encode_ndvi(ndvi: np.ndarray) -> np.ndarray:
    """NDVI (NaN = no reading) as bytes: 0 = no reading, 1..255 = NDVI −1..1 in steps of 2/254."""
    clipped = np.clip(np.nan_to_num(ndvi, nan=-2.0), -1.0, 1.0)
    codes = np.rint((clipped + 1.0) * 127.0).astype(np.uint8) + 1
    return np.where(np.isnan(ndvi), 0, codes).astype(np.uint8)


def decode_ndvi(codes: np.ndarray) -> np.ndarray:
    """The inverse of :func:`encode_ndvi` (to its 1/127 step); 0 → NaN."""
    codes = np.asarray(codes, dtype=np.float32)
    return np.where(codes == 0, np.nan, (codes - 1.0) / 127.0 - 1.0).astype(np.float32)


def chip_array(row: pd.Series | dict[str, Any]) -> tuple[np.ndarray, Any, str]:
    """One row of ``chips.parquet`` as (NDVI array, affine transform, CRS WKT)."""
    ndvi = decode_ndvi(np.frombuffer(row["ndvi"], dtype=np.uint8).reshape(int(row["height"]), int(row["width"])))
    transform = rasterio.transform.Affine(*(float(row[f"t{i}"]) for i in range(6)))
    return ndvi, transform, str(row["crs"])


def season_series(long_table: pd.DataFrame) -> pd.DataFrame:
    """Each plot's observations (the zonal engine's long table, reduced to :data:`SERIES_COLUMNS`), sorted."""
    table = conformed_table(long_table.to_dict("records"), SERIES_FIELDS)
    for column in SERIES_COLUMNS[2:]:
        table[column] = table[column].astype(float)
    return table.sort_values(["plot_id", "date"], ignore_index=True)


def _window_around(bounds: Sequence[float], tile: Any) -> rasterio.windows.Window | None:
    """The tile's window around ``bounds`` (tile CRS) with :data:`CHIP_MARGIN`; ``None`` when off the tile."""
    step = max(abs(tile.transform.a), abs(tile.transform.e))
    minx, miny, maxx, maxy = bounds
    pad = max(CHIP_MARGIN * max(maxx - minx, maxy - miny), 3 * step)
    window = rasterio.windows.from_bounds(minx - pad, miny - pad, maxx + pad, maxy + pad, tile.transform)
    col0, row0 = max(0, math.floor(window.col_off)), max(0, math.floor(window.row_off))
    col1 = min(tile.width, math.ceil(window.col_off + window.width))
    row1 = min(tile.height, math.ceil(window.row_off + window.height))
    if col1 <= col0 or row1 <= row0:
        return None
    return rasterio.windows.Window(col0, row0, col1 - col0, row1 - row0)


#: Side (pixels) of the cells by which the chips' windows are grouped and read at once.
CHIP_READ_BLOCK = 512


def _read_windows(read: Any, windows: dict[str, rasterio.windows.Window]) -> Any:
    """Yield ``(plot_id, ndvi, cloud)`` of each window, reading the windows whose corner falls in one
    :data:`CHIP_READ_BLOCK` cell as one window spanning them (the reader is per pixel: the same values)."""
    cells: dict[tuple[int, int], list[str]] = {}
    for plot_id, window in windows.items():
        cells.setdefault((int(window.row_off) // CHIP_READ_BLOCK, int(window.col_off) // CHIP_READ_BLOCK),
                         []).append(plot_id)
    for members in cells.values():
        row0 = min(int(windows[p].row_off) for p in members)
        col0 = min(int(windows[p].col_off) for p in members)
        row1 = max(int(windows[p].row_off + windows[p].height) for p in members)
        col1 = max(int(windows[p].col_off + windows[p].width) for p in members)
        ndvi, cloud = read(rasterio.windows.Window(col0, row0, col1 - col0, row1 - row0))
        for plot_id in members:
            w = windows[plot_id]
            rows = slice(int(w.row_off) - row0, int(w.row_off + w.height) - row0)
            cols = slice(int(w.col_off) - col0, int(w.col_off + w.width) - col0)
            yield plot_id, ndvi[rows, cols], cloud[rows, cols]


def plot_chips(plots: Any, peak_dates: dict[str, str], acquisitions: Sequence[Any]) -> pd.DataFrame:
    """The NDVI chip of each plot at its peak date (one row per plot that a tile of that date covers).

    Parameters
    ----------
    plots
        GeoDataFrame with ``plot_id`` (any CRS).
    peak_dates
        Plot ID → peak date (``YYYY-MM-DD``); plots without one get no chip.
    acquisitions
        :class:`agricredit.season.Acquisition` objects; only the tiles of peak dates are opened.

    Returns
    -------
    DataFrame
        ``plot_id, date, crs, t0..t5, width, height, ndvi`` (bytes, see :func:`encode_ndvi`).
    """
    from agricredit.zonal import _tile_reader, open_tile

    rows = []
    peaks = set(peak_dates.values())
    for acquisition in sorted(acquisitions, key=lambda a: a.date):
        date = acquisition.date.isoformat()
        wanted = plots.loc[plots["plot_id"].astype(str).map(peak_dates.get) == date] if date in peaks else plots.iloc[:0]
        if wanted.empty:
            continue
        done: set[str] = set()
        products = acquisition.products or [None] * len(acquisition.paths)
        for path, product in sorted(zip(acquisition.paths, products), key=lambda pair: str(pair[0])):
            tile = open_tile(product if product is not None else path, date=acquisition.date)
            local, crs = wanted.to_crs(tile.crs), tile.crs.to_wkt()
            footprint = shapely.box(*rasterio.transform.array_bounds(tile.height, tile.width, tile.transform))
            windows = {}
            for plot_id, geometry in zip(local["plot_id"].astype(str), local.geometry.values):
                if plot_id in done or geometry is None or geometry.is_empty:
                    continue
                window = _window_around(geometry.bounds, tile)
                if window is not None and footprint.contains(geometry.centroid):
                    windows[plot_id] = window
            with _tile_reader(tile) as read:
                for plot_id, ndvi, cloud in _read_windows(read, windows):
                    window = windows[plot_id]
                    ndvi = np.where(cloud, np.nan, ndvi)
                    stride = max(1, math.ceil(max(ndvi.shape) / CHIP_MAX_PIXELS))
                    ndvi = ndvi[::stride, ::stride]
                    transform = rasterio.windows.transform(window, tile.transform) @ \
                        rasterio.transform.Affine.scale(stride)
                    rows.append({"plot_id": plot_id, "date": date, "crs": crs,
                                 **{f"t{i}": float(v) for i, v in enumerate(tuple(transform)[:6])},
                                 "width": int(ndvi.shape[1]), "height": int(ndvi.shape[0]),
                                 "ndvi": encode_ndvi(ndvi).tobytes()})
                    done.add(plot_id)
    columns = ["plot_id", "date", "crs", *(f"t{i}" for i in range(6)), "width", "height", "ndvi"]
    return pd.DataFrame(rows, columns=columns).sort_values("plot_id", ignore_index=True)


def write_report_data(chips: pd.DataFrame, series: pd.DataFrame, folder: Path) -> list[Path]:
    """Write ``chips.parquet`` and ``series.parquet`` into ``folder`` (allow-listed fields only); return their paths."""
    from agricredit.privacy import check_allowed_fields

    written = []
    for name, table in (("chips.parquet", chips), ("series.parquet", series)):
        check_allowed_fields(name.split(".")[0], table.columns)
        table.to_parquet(folder / name, index=False, compression="zstd")
        written.append(folder / name)
    return written
