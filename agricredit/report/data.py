"""What ``assess`` keeps for the report: NDVI chips around each plot at its peak date and the season series.

A chip is a small window of the tile of the plot's peak date (NDVI quantised
to one byte: 0 = no clear reading, 1..255 = NDVI −1..1) on the tile's own
grid, decimated to at most :data:`CHIP_MAX_PIXELS` a side, with its CRS and
affine transform, so that the report can outline the plot over it. A few KB
per plot, written as ``chips.parquet``; the series (one row per plot and date,
the zonal engine's figures) as ``series.parquet``.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio.transform
import rasterio.windows
import shapely

from agricredit.schema import SERIES_FIELDS, conformed_columns

__all__ = ["CHIP_MAX_PIXELS", "CHIP_MARGIN", "SERIES_COLUMNS", "KeptChips", "encode_ndvi", "decode_ndvi", "plot_chips",
           "season_series", "chip_array", "write_report_data"]

#: Largest side of a chip, in pixels (larger windows are decimated by a whole stride).
CHIP_MAX_PIXELS = 64
#: Margin around the plot's bounding box, as a share of its larger side (at least 3 pixels).
CHIP_MARGIN = 0.35
#: Columns of ``series.parquet`` (:data:`agricredit.schema.SERIES_FIELDS`).
SERIES_COLUMNS = tuple(f.name for f in SERIES_FIELDS)


def encode_ndvi(ndvi: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """NDVI (NaN = no reading) as bytes: 0 = no reading, 1..255 = NDVI −1..1 in steps of 2/254.

    ``missing`` (booleans of ``ndvi``'s shape) marks more pixels without a reading (clouds).
    """
    missing = np.isnan(ndvi) if missing is None else np.isnan(ndvi) | missing
    scaled = np.minimum(np.maximum(ndvi, -1.0), 1.0)  # np.clip (NaN stays NaN) in the input's float type
    scaled += 1.0
    scaled *= 127.0
    np.rint(scaled, out=scaled)
    scaled[missing] = 0.0
    codes = scaled.astype(np.uint8)
    codes += 1
    codes[missing] = 0
    return codes


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
    present = [name for name in SERIES_COLUMNS if name in long_table]
    table = conformed_columns({name: long_table[name].astype(object).tolist() for name in present}, SERIES_FIELDS,
                              len(long_table))
    for column in SERIES_COLUMNS[2:]:
        table[column] = table[column].astype(float)
    return table.sort_values(["plot_id", "date"], ignore_index=True)


def _windows_around(bounds: np.ndarray, tile: Any) -> np.ndarray:
    """Each plot's window of the tile around its ``bounds`` (N × 4, tile CRS) with :data:`CHIP_MARGIN`.

    Returns ``N × 4`` whole pixels ``col0, row0, col1, row1`` clipped to the tile (empty when off the tile).
    """
    transform = tile.transform
    step = max(abs(transform.a), abs(transform.e))
    minx, miny, maxx, maxy = bounds.T
    pad = np.maximum(CHIP_MARGIN * np.maximum(maxx - minx, maxy - miny), 3 * step)
    xs = np.stack([minx - pad, maxx + pad, maxx + pad, minx - pad])
    ys = np.stack([maxy + pad, maxy + pad, miny - pad, miny - pad])
    inverse = ~transform
    cols, rows = inverse.a * xs + inverse.b * ys + inverse.c, inverse.d * xs + inverse.e * ys + inverse.f
    return np.stack([np.maximum(0, np.floor(cols.min(axis=0))), np.maximum(0, np.floor(rows.min(axis=0))),
                     np.minimum(tile.width, np.ceil(cols.max(axis=0))),
                     np.minimum(tile.height, np.ceil(rows.max(axis=0)))], axis=1).astype(np.int64)


#: Side (pixels) of the cells by which the chips' windows are grouped and read at once.
CHIP_READ_BLOCK = 512


def _read_windows(read: Any, windows: np.ndarray) -> Any:
    """Yield ``(k, ndvi, cloud)`` of each window ``k`` (rows of ``col0, row0, col1, row1``), reading the windows
    whose corner falls in one :data:`CHIP_READ_BLOCK` cell as one window spanning them (the reader is per pixel:
    the same values)."""
    cells = windows[:, 1] // CHIP_READ_BLOCK * (windows[:, 0].max(initial=0) // CHIP_READ_BLOCK + 1) \
        + windows[:, 0] // CHIP_READ_BLOCK
    order = np.argsort(cells, kind="stable")
    for members in np.split(order, np.flatnonzero(np.diff(cells[order])) + 1):
        if len(members) == 0:
            continue
        col0, row0 = windows[members, 0].min(), windows[members, 1].min()
        col1, row1 = windows[members, 2].max(), windows[members, 3].max()
        ndvi, cloud = read(rasterio.windows.Window(col0, row0, col1 - col0, row1 - row0))
        for k in members:
            c0, r0, c1, r1 = windows[k]
            yield k, ndvi[r0 - row0:r1 - row0, c0 - col0:c1 - col0], cloud[r0 - row0:r1 - row0, c0 - col0:c1 - col0]


CHIP_COLUMNS = ("plot_id", "date", "crs", *(f"t{i}" for i in range(6)), "width", "height", "ndvi")


def _outlines_in(geometry: Any, crs: Any) -> tuple[np.ndarray, np.ndarray]:
    """The bounds (N × 4) and centroids (N × 2) of the outlines ``geometry`` (a GeoSeries) in ``crs``."""
    local = geometry.to_crs(crs).values
    centroids = shapely.centroid(local)
    return shapely.bounds(local).reshape(-1, 4), np.stack([shapely.get_x(centroids), shapely.get_y(centroids)], 1)


def _chip_windows(outlines: tuple[np.ndarray, np.ndarray], tile: Any) -> tuple[np.ndarray, np.ndarray]:
    """The chip window of each plot on ``tile`` (:func:`_windows_around`) and whether the tile may give its chip
    (its centroid inside the tile's footprint and its window not empty); ``outlines`` as :func:`_outlines_in` in
    the tile's CRS."""
    bounds, centroids = outlines
    footprint = shapely.box(*rasterio.transform.array_bounds(tile.height, tile.width, tile.transform))
    windows = _windows_around(bounds, tile)
    covers = shapely.contains_xy(footprint, centroids[:, 0], centroids[:, 1]) \
        & (windows[:, 2] > windows[:, 0]) & (windows[:, 3] > windows[:, 1])
    return windows, covers


class KeptChips:
    """The decompressed pixels (:class:`agricredit.raster.RawWindow`) the zonal stage read around the plots' chip
    windows, by date and tile, so that :func:`plot_chips` cuts each chip out of them instead of decompressing the
    tile again (the same pixels, hence the same bytes).

    The zonal engine (:func:`agricredit.zonal.zonal_stats` with ``chips=``) asks :meth:`windows` which windows of
    each tile of a date the chips take, widens its reads to cover them and :meth:`add`\\ s what it read. A chip
    that the kept pixels do not cover whole (a tile that failed, an NDVI raster) is read from its tile as before.
    Kept pixels stay in the process that read them: pickled (sent to another process, spilled to disk) a
    ``KeptChips`` is empty, and the chips are read again.
    """

    def __init__(self) -> None:
        self._raws: dict[tuple[str, str], list[Any]] = {}  # (date, tile path) → RawWindows, by first row
        self._outlines: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # the plots' outlines by CRS (WKT)

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return KeptChips, ()

    def __sizeof__(self) -> int:  # what Dask's memory manager counts
        return object.__sizeof__(self) + self.nbytes

    @property
    def nbytes(self) -> int:
        """Bytes of the pixels kept."""
        return sum(raw.nbytes for raws in self._raws.values() for raw in raws)

    def windows(self, plots: Any, tiles: Sequence[Any]) -> dict[str, np.ndarray]:
        """The chip windows (``col0, row0, col1, row1`` on the tile) that each of ``tiles`` (the tiles of one date)
        gives at that date, by tile path: the tile :func:`plot_chips` picks for each plot of ``plots`` (the same
        plots at every date: a ``KeptChips`` serves one zonal run)."""
        out: dict[str, np.ndarray] = {}
        geometry = plots.geometry[~(plots.geometry.isna() | plots.geometry.is_empty)]
        done = np.zeros(len(geometry), bool)
        for tile in sorted(tiles, key=lambda t: str(t.path)):
            crs = tile.crs.to_wkt()
            if crs not in self._outlines:
                self._outlines[crs] = _outlines_in(geometry, tile.crs)
            windows, covers = _chip_windows(self._outlines[crs], tile)
            todo = ~done & covers
            out[str(tile.path)] = windows[todo]
            done |= todo
        return out

    def add(self, date: str, path: str, raw: Any) -> None:
        """Keep ``raw``, read from the tile ``path`` of ``date``."""
        bisect.insort(self._raws.setdefault((date, str(path)), []), raw, key=lambda kept: kept.window.row_off)

    def discard(self, date: str) -> None:
        """Forget what was kept of ``date`` (a tile of it failed)."""
        for key in [key for key in self._raws if key[0] == date]:
            del self._raws[key]

    def clear(self) -> None:
        """Forget everything (free the memory)."""
        self._raws.clear()
        self._outlines.clear()

    def cut(self, date: str, path: str, windows: np.ndarray) -> list[dict[str, np.ndarray] | None]:
        """The kept pixels of each of ``windows`` (rows of ``col0, row0, col1, row1``) of the tile ``path`` of
        ``date``: the arrays of a :class:`agricredit.raster.RawWindow` over it, or None unless they cover it whole.

        Each window is looked up, all at once, in the kept window holding its first row (the last starting on or
        above it); a window reaching below it takes its next rows from the kept windows that follow, each starting
        where the one before ends.
        """
        raws = self._raws.get((date, str(path)), [])
        if not raws:
            return [None] * len(windows)
        top, left, bottom, right = np.array([(r.window.row_off, r.window.col_off, r.window.row_off + r.window.height,
                                              r.window.col_off + r.window.width) for r in raws], dtype=np.int64).T
        col0, row0, col1, row1 = np.asarray(windows, dtype=np.int64).reshape(-1, 4).T
        first = np.searchsorted(top, row0, side="right") - 1
        last = np.searchsorted(top, row1 - 1, side="right") - 1
        held = (first >= 0) & (col0 >= left[first]) & (col1 <= right[first]) & (row1 <= bottom[last])
        out: list[dict[str, np.ndarray] | None] = []
        for c0, r0, c1, r1, a, b, ok in zip(col0.tolist(), row0.tolist(), col1.tolist(), row1.tolist(),
                                           first.tolist(), last.tolist(), held.tolist()):
            if ok and a == b:
                dy, dx = r0 - top[a], c0 - left[a]
                out.append({k: v[..., dy:dy + r1 - r0, dx:dx + c1 - c0] for k, v in raws[a].arrays.items()})
            elif ok and all(top[j + 1] == bottom[j] and left[j + 1] <= c0 and c1 <= right[j + 1] for j in range(a, b)):
                rows = [slice(max(r0, top[j]) - top[j], min(r1, bottom[j]) - top[j]) for j in range(a, b + 1)]
                out.append({k: np.concatenate([raws[j].arrays[k][..., part, c0 - left[j]:c1 - left[j]]
                                               for j, part in zip(range(a, b + 1), rows)], axis=-2)
                            for k in raws[a].arrays})
            else:
                out.append(None)
        return out


def _kept_chip_pixels(product: Any, windows: np.ndarray, kept: Sequence[dict[str, np.ndarray]],
                      strides: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(ndvi, cloud)`` of each chip window (rows of ``col0, row0, col1, row1``) from its kept pixels ``kept``
    (:meth:`KeptChips.cut`), decimated by its stride (as a read's)."""
    from agricredit.raster import RawWindow, ndvi_of

    if product.cloud_shapes:  # rasterized over each window
        return [tuple(a[::s, ::s] for a in ndvi_of(product, RawWindow(
                    rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0), arrays))[:2])
                for (c0, r0, c1, r1), arrays, s in zip(windows.tolist(), kept, strides)]
    # NDVI and the masks are per pixel: every chip's decimated pixels at once, copied into one flat window.
    decimated = [{k: a[..., ::s, ::s] for k, a in arrays.items()} for arrays, s in zip(kept, strides)]
    shapes = [next(iter(arrays.values())).shape[-2:] for arrays in decimated]
    bounds = [0, *np.cumsum([h * w for h, w in shapes]).tolist()]
    flat = {k: np.empty((*a.shape[:-2], bounds[-1]), a.dtype) for k, a in decimated[0].items()}
    for arrays, lo, hi, shape in zip(decimated, bounds[:-1], bounds[1:], shapes):
        for k, a in arrays.items():
            flat[k][..., lo:hi].reshape(a.shape)[...] = a  # a view: only the last axis is split
    ndvi, cloud, _ = ndvi_of(product, RawWindow(None, flat))
    return [(ndvi[lo:hi].reshape(shape), cloud[lo:hi].reshape(shape))
            for lo, hi, shape in zip(bounds[:-1], bounds[1:], shapes)]


def plot_chips(plots: Any, peak_dates: dict[str, str], acquisitions: Sequence[Any],
               kept: KeptChips | None = None) -> pd.DataFrame:
    """The NDVI chip of each plot at its peak date (one row per plot that a tile of that date covers).

    Parameters
    ----------
    plots
        GeoDataFrame with ``plot_id`` (any CRS).
    peak_dates
        Plot ID → peak date (``YYYY-MM-DD``); plots without one get no chip.
    acquisitions
        :class:`agricredit.season.Acquisition` objects; only the tiles of peak dates are opened.
    kept
        The pixels the zonal stage kept (:class:`KeptChips`): the chips they cover are cut out of them, the others
        read from the tiles (the same bytes either way).

    Returns
    -------
    DataFrame
        ``plot_id, date, crs, t0..t5, width, height, ndvi`` (bytes, see :func:`encode_ndvi`).
    """
    from agricredit.zonal import _tile_reader, open_tile

    columns: dict[str, list[Any]] = {name: [] for name in CHIP_COLUMNS}
    peaks = set(peak_dates.values())
    outlined = plots[~(plots.geometry.isna() | plots.geometry.is_empty)]
    peak_of = outlined["plot_id"].astype(str).map(peak_dates.get).to_numpy()  # each plot's peak date (None: none)
    outlines: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # every outlined plot's, by CRS (WKT): once per CRS
    for acquisition in sorted(acquisitions, key=lambda a: a.date):
        date = acquisition.date.isoformat()
        at = np.flatnonzero(peak_of == date) if date in peaks else np.zeros(0, np.intp)
        wanted = outlined.iloc[at]
        done = np.zeros(len(wanted), bool)
        products = acquisition.products or [None] * len(acquisition.paths)
        for path, product in sorted(zip(acquisition.paths, products), key=lambda pair: str(pair[0])):
            if done.all():
                break
            tile = open_tile(product if product is not None else path, date=acquisition.date)
            crs = tile.crs.to_wkt()
            if crs not in outlines:
                outlines[crs] = _outlines_in(outlined.geometry, tile.crs)
            windows, covers = _chip_windows(tuple(a[at] for a in outlines[crs]), tile)
            todo = np.flatnonzero(~done & covers)
            if len(todo) == 0:
                continue
            t = tile.transform
            chips = []  # (plot, stride, NDVI, cloud) of each chip, decimated and flattened (copies of the windows)
            sides = np.maximum(windows[todo, 2] - windows[todo, 0], windows[todo, 3] - windows[todo, 1])
            steps = np.maximum(1, np.ceil(sides / CHIP_MAX_PIXELS)).astype(np.int64).tolist()
            raws = (kept.cut(date, tile.path, windows[todo]) if kept is not None and tile.product is not None
                    else [None] * len(todo))
            cut = [k for k, raw in enumerate(raws) if raw is not None]
            if cut:
                pixels = _kept_chip_pixels(tile.product, windows[todo[cut]], [raws[k] for k in cut],
                                           [steps[k] for k in cut])
                chips.extend((todo[k], steps[k], ndvi.shape, ndvi.ravel(), cloud.ravel())
                             for k, (ndvi, cloud) in zip(cut, pixels))
            rest = np.array([k for k, raw in enumerate(raws) if raw is None], dtype=np.int64)
            if len(rest):
                with _tile_reader(tile) as read:
                    for k, ndvi, cloud in _read_windows(read, windows[todo[rest]]):
                        stride = steps[rest[k]]
                        ndvi, cloud = ndvi[::stride, ::stride], cloud[::stride, ::stride]
                        chips.append((todo[rest[k]], stride, ndvi.shape, ndvi.ravel(), cloud.ravel()))
            chips.sort(key=lambda chip: chip[0])
            where, strides = np.array([c[0] for c in chips]), np.array([c[1] for c in chips], dtype=float)
            # The tile's chips encoded in one pass (encode_ndvi is per pixel), then cut apart.
            codes = encode_ndvi(np.concatenate([c[3] for c in chips]), np.concatenate([c[4] for c in chips]))
            bounds = [0, *np.cumsum([c[3].size for c in chips]).tolist()]
            codes = [codes[lo:hi] for lo, hi in itertools.pairwise(bounds)]
            col0, row0 = windows[where, 0].astype(float), windows[where, 1].astype(float)
            # rasterio.windows.transform(window, t) @ Affine.scale(stride), in its own arithmetic
            x, y = col0 * t.a + row0 * t.b + t.c, col0 * t.d + row0 * t.e + t.f
            for name, values in (("t0", t.a * strides + t.b * 0.0), ("t1", t.a * 0.0 + t.b * strides),
                                 ("t2", t.c + (x - t.c)), ("t3", t.d * strides + t.e * 0.0),
                                 ("t4", t.d * 0.0 + t.e * strides), ("t5", t.f + (y - t.f))):
                columns[name].extend(values.tolist())
            columns["plot_id"].extend(wanted["plot_id"].astype(str).to_numpy()[where].tolist())
            columns["date"].extend([date] * len(chips))
            columns["crs"].extend([crs] * len(chips))
            columns["height"].extend(c[2][0] for c in chips)
            columns["width"].extend(c[2][1] for c in chips)
            columns["ndvi"].extend(chip.tobytes() for chip in codes)
            done[where] = True
    return pd.DataFrame(columns, columns=list(CHIP_COLUMNS)).sort_values("plot_id", ignore_index=True)


def write_report_data(chips: pd.DataFrame, series: pd.DataFrame, folder: Path) -> list[Path]:
    """Write ``chips.parquet`` and ``series.parquet`` into ``folder`` (allow-listed fields only); return their paths."""
    from agricredit.privacy import check_allowed_fields

    written = []
    for name, table in (("chips.parquet", chips), ("series.parquet", series)):
        check_allowed_fields(name.split(".")[0], table.columns)
        table.to_parquet(folder / name, index=False, compression="zstd")
        written.append(folder / name)
    return written
