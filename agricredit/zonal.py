"""Coverage-weighted zonal statistics of NDVI per plot per date (design §6).

Every pixel counts by the fraction of its area inside the plot (exactextract's
semantics). The plots × pixels coverage fractions of a pixel grid are computed
once, by :mod:`exactextract`, into a :class:`scipy.sparse` matrix, and reused
for every date observed on that grid, so T dates cost one geometry pass plus T
sparse products.

Terms
-----
grid
    A pixel lattice: CRS, pixel size and origin modulo the pixel size. Tiles on
    one grid (the same tile on many dates, or neighbouring tiles of one UTM
    zone) share one weight matrix over the union of their extents.
mosaic
    Tiles of the *same date* on one grid: per pixel, the first tile (by path)
    with a valid value wins. Different dates are never mixed.
weighted quantile
    exactextract's definition (``src/weighted_quantiles.cpp``): equal values
    are merged (their coverage summed); with the ``n`` distinct values sorted,
    weights ``w_i`` and ``S_i`` the sum of the weights before ``i``, each value
    sits at ``s_i = i·w_i + (n−1)·S_i``; the q-quantile is linearly interpolated
    at ``q·(n−1)·Σw`` (the weighted form of the usual "type 7" quantile).

The core is the generator :func:`gen_zonal_stats` (one dict per plot and date,
in the style of rasterstats); :func:`zonal_stats` wraps it in a DataFrame.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import rasterio
import scipy.sparse as sp
import shapely
from rasterio import Affine
from rasterio.windows import Window

from agricredit.errors import (
    CorruptInputError,
    CRSError,
    GridMismatchError,
    InputNotFoundError,
    MissingMetadataError,
)
from agricredit.plots import MU_PER_HA, geodesic_area_perimeter, to_wgs84

__all__ = [
    "FALLBACK_CROPPED_THRESHOLD",
    "PARTIAL_COVERAGE",
    "STAT_COLUMNS",
    "Tile",
    "CoverageWeights",
    "open_tile",
    "coverage_weights",
    "weighted_quantiles",
    "gen_zonal_stats",
    "zonal_stats",
    "default_threshold",
]

log = logging.getLogger(__name__)

#: NDVI at or above which a pixel counts as cropped when the crop table gives none.
FALLBACK_CROPPED_THRESHOLD = 0.4

#: Flag of a plot–date whose plot lies partly outside every tile of that date.
PARTIAL_COVERAGE = "PARTIAL_COVERAGE"

#: Covered share below ``1 - _PARTIAL_TOL`` counts as partial (coverage fractions are float32).
_PARTIAL_TOL = 1e-4

#: Rows read at once from a tile: bounds memory on 10980 × 10980 tiles.
_STRIP_ROWS = 1024

#: Non-zero weights per block of plots for the quantiles; plots per exactextract call.
_CHUNK_ENTRIES = 2_000_000
_CHUNK_PLOTS = 10_000

#: Output columns per plot and date, in order.
STAT_COLUMNS = (
    "plot_id", "date", "ndvi_mean", "ndvi_median", "ndvi_p90", "valid_frac", "cloud_frac",
    "covered_frac", "cropped_area_mu", "pixel_count", "flags",
)

_DATE_IN_NAME = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")


def default_threshold() -> float:
    """The NDVI threshold for cropped area: the crop table's default, else :data:`FALLBACK_CROPPED_THRESHOLD`."""
    try:
        from agricredit.seeds import default_cropped_threshold
    except ImportError:  # pragma: no cover - seeds ships with the package
        return FALLBACK_CROPPED_THRESHOLD
    return float(default_cropped_threshold())


# --------------------------------------------------------------------------- tiles


@dataclass(frozen=True)
class Tile:
    """One raster observation: where it is, on which grid, of which date.

    ``product`` is set for raw sensor products (NDVI computed on the fly by
    :mod:`agricredit.raster`); ``None`` for NDVI rasters.
    """

    path: str
    date: str
    crs: pyproj.CRS
    transform: Affine
    width: int
    height: int
    product: Any = field(default=None, compare=False, repr=False)


def open_tile(path: str | os.PathLike[str]) -> Tile:
    """Open an NDVI raster or a raw product and find its grid and date.

    Products that :func:`agricredit.raster.open_product` knows (raw sensor
    products, and NDVI COGs written by ``agricredit ndvi``, tagged
    ``AGRICREDIT_PRODUCT=ndvi``) are read through it, so its cloud and no-data
    rules apply. An untagged single floating-point band is read as NDVI
    directly (NaN = invalid, counted as cloud). The date is the product's or
    the ``ACQUISITION_DATE`` tag's, else the first ``YYYYMMDD`` /
    ``YYYY-MM-DD`` in the file name.

    Raises
    ------
    InputNotFoundError, CorruptInputError, CRSError, MissingMetadataError, SensorError
    """
    name = str(path)
    if not Path(name).exists():
        raise InputNotFoundError("tile not found", path=name)
    try:
        with rasterio.open(name) as src:
            tags = src.tags()
            plain_ndvi = "AGRICREDIT_PRODUCT" not in tags and src.count == 1 and np.issubdtype(
                np.dtype(src.dtypes[0]), np.floating)
            crs, transform, width, height = src.crs, src.transform, src.width, src.height
    except rasterio.errors.RasterioIOError as error:
        raise CorruptInputError(f"cannot open raster: {error}", path=name) from error
    if not plain_ndvi:
        return _open_product(name)
    if crs is None:
        raise CRSError("raster has no CRS", path=name)
    date = _parse_date(tags.get("ACQUISITION_DATE")) or _date_from_name(Path(name).name)
    if date is None:
        raise MissingMetadataError("no acquisition date (ACQUISITION_DATE tag or YYYYMMDD in the name)", path=name)
    return Tile(name, date, pyproj.CRS(crs.to_wkt()), transform, width, height)


def _open_product(name: str) -> Tile:
    from agricredit.raster import open_product

    product = open_product(name)
    if product.crs is None:
        raise CRSError("raster has no CRS", path=name)
    date = _parse_date(str(product.date)) if product.date is not None else _date_from_name(Path(name).name)
    if date is None:
        raise MissingMetadataError("no acquisition date (ACQUISITION_DATE tag or YYYYMMDD in the name)", path=name)
    return Tile(name, date, pyproj.CRS(product.crs), product.transform, product.width, product.height, product)


def _parse_date(text: str | None) -> str | None:
    if not text:
        return None
    match = _DATE_IN_NAME.search(text)
    if match is None:
        return None
    try:
        return dt.date(*(int(g) for g in match.groups())).isoformat()
    except ValueError:
        return None


def _date_from_name(name: str) -> str | None:
    for match in _DATE_IN_NAME.finditer(name):
        date = _parse_date(match.group(0))
        if date is not None:
            return date
    return None


def _read_ndvi_window(tile: Tile, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """NDVI (float32, NaN = invalid) and cloud mask of ``window`` of ``tile``.

    The one place where tiles are read: products go through
    ``agricredit.raster.read_ndvi``; in an untagged NDVI raster every invalid
    pixel counts as cloud (the raster does not say why).
    """
    if tile.product is not None:
        from agricredit.raster import read_ndvi

        ndvi, cloud = read_ndvi(tile.product, window=window)
        return np.asarray(ndvi, dtype=np.float32), np.asarray(cloud, dtype=bool)
    with rasterio.open(tile.path) as src:
        ndvi = src.read(1, window=window, masked=True).astype(np.float32).filled(np.nan)
    return ndvi, np.isnan(ndvi)


# --------------------------------------------------------------------------- grids and weights


@dataclass
class _Grid:
    """A pixel lattice and the union extent of its tiles; tiles are placed by pixel offsets."""

    crs: pyproj.CRS
    transform: Affine  # of the union extent
    width: int
    height: int
    offsets: dict[str, tuple[int, int]] = field(default_factory=dict)  # tile path → (row, col)


def _group_grids(tiles: Sequence[Tile]) -> list[_Grid]:
    """Group tiles by pixel lattice (same CRS, pixel size and alignment) and size each union extent."""
    groups: list[tuple[Tile, list[Tile]]] = []
    for tile in tiles:
        t = tile.transform
        if t.b != 0 or t.d != 0:
            raise GridMismatchError("rotated rasters are not supported", path=tile.path)
        for first, members in groups:
            f = first.transform
            if (first.crs.equals(tile.crs) and np.isclose(f.a, t.a) and np.isclose(f.e, t.e)
                    and _aligned(t.c - f.c, f.a) and _aligned(t.f - f.f, f.e)):
                members.append(tile)
                break
        else:
            groups.append((tile, [tile]))
    grids = []
    for first, members in groups:
        a, e = first.transform.a, first.transform.e
        cols = [round((m.transform.c - first.transform.c) / a) for m in members]
        rows = [round((m.transform.f - first.transform.f) / e) for m in members]
        col0, row0 = min(cols), min(rows)
        width = max(c + m.width for c, m in zip(cols, members)) - col0
        height = max(r + m.height for r, m in zip(rows, members)) - row0
        transform = first.transform @ Affine.translation(col0, row0)
        offsets = {m.path: (r - row0, c - col0) for m, r, c in zip(members, rows, cols)}
        grids.append(_Grid(first.crs, transform, width, height, offsets))
    return grids


def _aligned(shift: float, step: float) -> bool:
    ratio = shift / step
    return abs(ratio - round(ratio)) < 1e-6


@dataclass
class CoverageWeights:
    """Coverage fractions of plots over the pixels of one grid.

    Attributes
    ----------
    matrix
        ``n_plots × n_cells`` CSR matrix of coverage fractions (0–1] over the
        cells that any plot touches.
    cells
        Flat (row-major) indices of those cells in the grid, ascending.
    plot_cells
        Each plot's area in pixels (planar area in the grid CRS / pixel area):
        the denominator of ``valid_frac``, ``cloud_frac`` and ``covered_frac``.
    width, height
        Grid size in pixels.
    """

    matrix: sp.csr_matrix
    cells: np.ndarray
    plot_cells: np.ndarray
    width: int
    height: int


def coverage_weights(
    geoms: np.ndarray | gpd.GeoSeries, transform: Affine, width: int, height: int, crs: pyproj.CRS | None = None
) -> CoverageWeights:
    """Exact coverage fractions of polygons over a pixel grid, via exactextract.

    Parameters
    ----------
    geoms
        Polygons in the grid's CRS, one per plot.
    transform, width, height
        The grid (north-up: no rotation).
    crs
        The grid's CRS (only a label for exactextract; geometries are not reprojected here).

    Returns
    -------
    CoverageWeights
    """
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource

    geoms = np.asarray(geoms, dtype=object)
    n = len(geoms)
    xmin, ymax = transform.c, transform.f
    xmax, ymin = xmin + transform.a * width, ymax + transform.e * height
    crs = crs or pyproj.CRS.from_epsg(3857)  # only a label: exactextract wants one on both sides
    # A zero raster that costs no memory: exactextract reads only the windows it needs.
    dummy = np.broadcast_to(np.float32(0), (height, width))
    raster = NumPyRasterSource(dummy, xmin, ymin, xmax, ymax, srs_wkt=crs.to_wkt())
    nonempty = np.flatnonzero(~(shapely.is_empty(geoms) | shapely.is_missing(geoms)))
    wkbs = shapely.to_wkb(geoms[nonempty])
    counts = np.zeros(n, dtype=np.int64)
    flat_parts, data_parts = [np.empty(0, np.int64)], [np.empty(0)]
    for start in range(0, len(wkbs), _CHUNK_PLOTS):  # bounded memory for exactextract's per-plot arrays
        features = _wkb_feature_source(wkbs[start:start + _CHUNK_PLOTS], crs.to_wkt())
        result = exact_extract(raster, features, ["cell_id", "coverage"], output="pandas")
        counts[nonempty[start:start + _CHUNK_PLOTS]] = [len(c) for c in result["cell_id"]]
        flat_parts.append(np.concatenate([np.empty(0, np.int64), *result["cell_id"]]).astype(np.int64))
        data_parts.append(np.concatenate([np.empty(0), *result["coverage"]]).astype(np.float64))
        del result
    flat, data = np.concatenate(flat_parts), np.concatenate(data_parts)
    del flat_parts, data_parts
    # Compress the columns to the cells some plot touches; rows stay in exactextract's order
    # (one plot after the other, cells ascending), so the CSR arrays are built directly.
    cells = np.sort(flat)  # np.unique would hash: slower at millions of cells
    cells = cells[np.r_[True, cells[1:] != cells[:-1]]] if len(cells) else cells
    columns = np.searchsorted(cells, flat).astype(np.int32)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    matrix = sp.csr_matrix((data, columns, indptr), shape=(n, len(cells)))
    matrix.eliminate_zeros()
    plot_cells = shapely.area(geoms) / abs(transform.a * transform.e)
    return CoverageWeights(matrix, cells, plot_cells, width, height)


def _wkb_feature_source(wkbs: np.ndarray, srs_wkt: str):
    """An exactextract feature source over WKB geometries (no GeoJSON round trip)."""
    from exactextract.feature import Feature, FeatureSource

    class WKBFeature(Feature):
        def __init__(self, wkb: bytes | None = None):
            Feature.__init__(self)
            self.wkb = wkb
            self.properties: dict[str, Any] = {}

        def geometry(self) -> bytes | None:
            return self.wkb

        def set_geometry(self, wkb: bytes | None) -> None:
            self.wkb = wkb

        def set_geometry_format(self) -> str:
            return "wkb"

        def get(self, name: str) -> Any:
            return self.properties[name]

        def set(self, name: str, value: Any) -> None:
            self.properties[name] = value

        def fields(self) -> list[str]:
            return list(self.properties)

    class WKBFeatureSource(FeatureSource):
        def __init__(self) -> None:
            FeatureSource.__init__(self)

        def count(self) -> int:
            return len(wkbs)

        def __iter__(self):
            return (WKBFeature(w) for w in wkbs)

        def srs_wkt(self) -> str:
            return srs_wkt

    return WKBFeatureSource()


# --------------------------------------------------------------------------- per-date values


def _cell_values(grid: _Grid, weights: CoverageWeights, tiles: Sequence[Tile]) -> tuple[np.ndarray, ...]:
    """Mosaic the tiles of one date on ``grid`` at the weighted cells.

    Returns ``(ndvi, cloud, inside)`` over ``weights.cells``: NDVI (NaN where no
    tile is valid), cloud (no tile valid and one says cloud), inside (some tile
    covers the cell).
    """
    n = len(weights.cells)
    ndvi = np.full(n, np.nan, dtype=np.float32)
    cloud = np.zeros(n, dtype=bool)
    inside = np.zeros(n, dtype=bool)
    rows, cols = np.divmod(weights.cells, weights.width)
    for tile in sorted(tiles, key=lambda t: t.path):
        row0, col0 = grid.offsets[tile.path]
        r, c = rows - row0, cols - col0
        here = (r >= 0) & (r < tile.height) & (c >= 0) & (c < tile.width)
        inside |= here
        todo = np.flatnonzero(here & np.isnan(ndvi))
        if len(todo) == 0:
            continue
        c_lo, c_hi = int(c[todo].min()), int(c[todo].max()) + 1
        r_todo = r[todo]  # ascending: cells are sorted row-major
        for top in range(int(r_todo[0]), int(r_todo[-1]) + 1, _STRIP_ROWS):
            lo, hi = np.searchsorted(r_todo, [top, top + _STRIP_ROWS])
            if lo == hi:
                continue
            pick = todo[lo:hi]
            strip_rows = min(_STRIP_ROWS, int(r_todo[hi - 1]) - top + 1)
            values, clouds = _read_ndvi_window(tile, Window(c_lo, top, c_hi - c_lo, strip_rows))
            rr, cc = r[pick] - top, c[pick] - c_lo
            ndvi[pick] = values[rr, cc]
            cloud[pick] |= clouds[rr, cc]
    cloud &= np.isnan(ndvi)
    return ndvi, cloud, inside


# --------------------------------------------------------------------------- statistics


def weighted_quantiles(matrix: sp.spmatrix, values: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Coverage-weighted quantiles of ``values`` per row of a weight matrix.

    Parameters
    ----------
    matrix
        ``n_rows × n_values`` sparse weights.
    values
        One value per column; NaN values are left out.
    qs
        Quantiles in [0, 1].

    Returns
    -------
    numpy.ndarray
        ``n_rows × len(qs)``; NaN for rows without any weighted valid value.
        Definition: exactextract's (see the module docstring).
    """
    m = sp.csr_matrix(matrix)
    if m.nnz <= _CHUNK_ENTRIES:
        return _weighted_quantiles(m, np.asarray(values), qs)
    # Blocks of rows keep the temporaries (several per weight) small and in cache.
    cuts = np.unique(np.searchsorted(m.indptr, np.arange(0, m.nnz, _CHUNK_ENTRIES), side="right") - 1)
    cuts = np.append(cuts, m.shape[0])
    return np.vstack([_weighted_quantiles(m[a:b], np.asarray(values), qs) for a, b in zip(cuts[:-1], cuts[1:])])


def _weighted_quantiles(m: sp.csr_matrix, values: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    n_rows = m.shape[0]
    out = np.full((n_rows, len(qs)), np.nan)
    lengths = np.diff(m.indptr)
    x = values[m.indices] + values.dtype.type(0)  # -0.0 → 0.0: equal values must get equal keys
    entry = np.flatnonzero(np.isfinite(x) & (m.data > 0))
    if len(entry) == 0:
        return out
    x = x[entry]
    row = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)[entry]
    pos_bits = int(lengths.max()).bit_length()
    row_bits = int(n_rows).bit_length()
    if values.dtype == np.float32 and row_bits + 32 + pos_bits <= 63:
        # One int64 key per entry, (row, value, position in row), sorted by numpy's
        # vectorised integer sort: much faster than an argsort or a lexsort.
        bits = x.view(np.uint32)
        flip = np.where(bits >> np.uint32(31), np.uint32(0xFFFFFFFF), np.uint32(0x80000000))
        key = (bits ^ flip).astype(np.int64)  # unsigned order of these = float order
        key <<= pos_bits
        key |= entry - m.indptr[row]
        key |= row << (32 + pos_bits)
        del bits, flip, x
        key.sort()
        group = key >> pos_bits  # (row, value)
        row = group >> 32
        ordered = (group & 0xFFFFFFFF).astype(np.uint32)
        ordered ^= np.where(ordered >> np.uint32(31), np.uint32(0x80000000), np.uint32(0xFFFFFFFF))
        x = ordered.view(np.float32)
        w = m.data[m.indptr[row] + (key & ((1 << pos_bits) - 1))]
        new_value = np.empty(len(x), dtype=bool)
        new_value[0] = True
        np.not_equal(group[1:], group[:-1], out=new_value[1:])
    else:
        order = np.lexsort((x, row))
        x, row, w = x[order], row[order], m.data[entry[order]]
        new_value = np.empty(len(x), dtype=bool)
        new_value[0] = True
        new_value[1:] = (row[1:] != row[:-1]) | (x[1:] != x[:-1])
    if not new_value.all():  # merge equal values of a row (exactextract keeps a value → weight map)
        keep = np.flatnonzero(new_value)
        w, x, row = np.add.reduceat(w, keep), x[keep], row[keep]
    first = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    counts = np.diff(np.append(first, len(x)))
    last = first + counts - 1
    rows = row[first]
    cum = np.cumsum(w)
    offset = cum[first] - w[first]
    total = cum[last] - offset
    n_minus_1 = (counts - 1).astype(np.float64)
    x = x.astype(np.float64, copy=False)

    def s_at(i, r):  # exactextract's s_i at global index i of row r (index into first/offset)
        return (i - first[r]) * w[i] + n_minus_1[r] * (cum[i] - w[i] - offset[r])

    rr = np.arange(len(first))
    for k, q in enumerate(qs):
        target = q * total * n_minus_1
        # s_i/(n-1) lies between the cumulative weights before and after i, so the first
        # s_i > target is at j or j+1, j the first index whose cumulative weight exceeds q·total.
        j = np.searchsorted(cum, offset + q * total, side="right")
        j = np.clip(j, first, last + 1)
        jj = np.minimum(j, last)
        right = np.where((j <= last) & (s_at(jj, rr) > target), j, j + 1)
        right = np.minimum(right, last + 1)
        result = np.where(right == first, x[first], x[last])
        mid = np.flatnonzero((right > first) & (right <= last))
        r_i, l_i = right[mid], right[mid] - 1
        s_r, s_l = s_at(r_i, mid), s_at(l_i, mid)
        result[mid] = x[l_i] + (target[mid] - s_l) * (x[r_i] - x[l_i]) / (s_r - s_l)
        out[rows, k] = result
    return out


def _date_stats(
    parts: list[tuple[CoverageWeights, np.ndarray, np.ndarray, np.ndarray]], threshold: float
) -> dict[str, np.ndarray]:
    """Per-plot statistics of one date from its grids' ``(weights, ndvi, cloud, inside)``."""
    if len(parts) == 1:
        weights = parts[0][0]
        matrix = pixels = weights.matrix
        plot_cells = weights.plot_cells
    else:
        # Tiles of one date on different grids (say two UTM zones): weights become shares of
        # the plot so grids with different pixel sizes add up; where the shares exceed the
        # whole plot (overlapping tiles), only the grid covering most of the plot is kept.
        inv = [1.0 / np.where(w.plot_cells > 0, w.plot_cells, np.nan) for w, *_ in parts]
        shares = np.vstack([np.nan_to_num((w.matrix @ inside.astype(np.float64)) * k)
                            for (w, _, _, inside), k in zip(parts, inv)])
        overlap = shares.sum(axis=0) > 1 + _PARTIAL_TOL
        best = shares.argmax(axis=0)
        keep = [np.where(overlap & (best != g), 0.0, 1.0) for g in range(len(parts))]
        matrix = sp.hstack([sp.diags(np.nan_to_num(k * m)) @ w.matrix
                            for (w, *_), k, m in zip(parts, inv, keep)], format="csr")
        pixels = sp.hstack([sp.diags(m) @ w.matrix for (w, *_), m in zip(parts, keep)], format="csr")
        plot_cells = np.ones(matrix.shape[0])
    ndvi = np.concatenate([p[1] for p in parts])
    cloud = np.concatenate([p[2] for p in parts]).astype(np.float64)
    inside = np.concatenate([p[3] for p in parts]).astype(np.float64)
    valid = np.isfinite(ndvi)
    filled = np.where(valid, ndvi, 0.0)
    # One pass over the weights for all the sums: valid, NDVI, cropped, cloud, inside.
    columns = np.column_stack([valid, filled, valid & (filled >= threshold), cloud, inside]).astype(np.float64)
    valid_cells, sums, cropped, cloudy, covered = (matrix @ columns).T
    quantiles = weighted_quantiles(matrix, ndvi, (0.5, 0.9))
    with np.errstate(invalid="ignore", divide="ignore"):
        denominator = np.where(plot_cells > 0, plot_cells, np.nan)
        return {
            "ndvi_mean": np.where(valid_cells > 0, sums / valid_cells, np.nan),
            "ndvi_median": quantiles[:, 0],
            "ndvi_p90": quantiles[:, 1],
            "valid_frac": valid_cells / denominator,
            "cloud_frac": cloudy / denominator,
            "covered_frac": covered / denominator,
            "cropped_share": np.where(valid_cells > 0, cropped / denominator, np.nan),
            "pixel_count": covered if pixels is matrix else pixels @ inside,
        }


def gen_zonal_stats(
    plots: gpd.GeoDataFrame,
    tiles: Iterable[Tile | str | os.PathLike[str]],
    *,
    threshold: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield coverage-weighted NDVI statistics, one dict per plot and date.

    Parameters
    ----------
    plots
        Accepted plots with ``plot_id`` and geometry, in any CRS; they are
        reprojected to each raster grid's CRS (never the rasters to the plots).
    tiles
        NDVI rasters or raw products (paths or :class:`Tile`). Tiles of one
        date are mosaicked; different dates are separate observations.
    threshold
        NDVI at or above which covered area counts as cropped; default
        :func:`default_threshold`.
    progress
        Called as ``progress(done, total)`` after each date.

    Yields
    ------
    dict
        Keys :data:`STAT_COLUMNS`: ``ndvi_mean`` / ``ndvi_median`` /
        ``ndvi_p90`` (coverage-weighted over valid pixels), ``valid_frac`` and
        ``cloud_frac`` (valid / cloudy covered area over plot area),
        ``covered_frac`` (area inside some tile over plot area),
        ``cropped_area_mu`` (valid area with NDVI ≥ threshold, from the
        geodesic plot area), ``pixel_count`` (sum of coverage fractions of the
        pixels inside the tiles), ``flags`` (``PARTIAL_COVERAGE`` or empty).
        Plot–dates without any covering tile are not yielded.
    """
    for block in _gen_date_blocks(plots, tiles, threshold=threshold, progress=progress):
        yield from block.to_dict("records")


def _gen_date_blocks(
    plots: gpd.GeoDataFrame,
    tiles: Iterable[Tile | str | os.PathLike[str]],
    *,
    threshold: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[pd.DataFrame]:
    """The engine: one DataFrame of :data:`STAT_COLUMNS` per date."""
    threshold = default_threshold() if threshold is None else float(threshold)
    tiles = [t if isinstance(t, Tile) else open_tile(t) for t in tiles]
    if plots.crs is None:
        raise CRSError("plots have no CRS")
    ids = plots["plot_id"].to_numpy()
    area_m2, _ = geodesic_area_perimeter(to_wgs84(plots).geometry.values)
    area_mu = area_m2 / 10_000.0 * MU_PER_HA
    grids = _group_grids(tiles)
    weights: list[CoverageWeights] = []
    for grid in grids:
        geoms = plots.to_crs(grid.crs).geometry.values
        weights.append(coverage_weights(geoms, grid.transform, grid.width, grid.height, grid.crs))
        log.info("coverage weights: %d plots x %d cells, %d non-zero", len(ids), weights[-1].matrix.shape[1],
                 weights[-1].matrix.nnz)
    by_date: dict[str, list[Tile]] = {}
    for tile in tiles:
        by_date.setdefault(tile.date, []).append(tile)
    for done, date in enumerate(sorted(by_date), start=1):
        parts = []
        for grid, w in zip(grids, weights):
            members = [t for t in by_date[date] if t.path in grid.offsets]
            if members:
                parts.append((w, *_cell_values(grid, w, members)))
        stats = _date_stats(parts, threshold)
        stats["cropped_area_mu"] = stats.pop("cropped_share") * area_mu
        stats["flags"] = np.where(stats["covered_frac"] < 1 - _PARTIAL_TOL, PARTIAL_COVERAGE, "")
        seen = np.flatnonzero(stats["covered_frac"] > 0)
        block = pd.DataFrame({"plot_id": ids[seen], "date": date, **{k: v[seen] for k, v in stats.items()}})
        yield block[list(STAT_COLUMNS)]
        if progress is not None:
            progress(done, len(by_date))


def zonal_stats(
    plots: gpd.GeoDataFrame,
    tiles: Iterable[Tile | str | os.PathLike[str]],
    *,
    threshold: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """:func:`gen_zonal_stats` as a long DataFrame (one row per plot and date)."""
    blocks = list(_gen_date_blocks(plots, tiles, threshold=threshold, progress=progress))
    if not blocks:
        return pd.DataFrame(columns=list(STAT_COLUMNS))
    return pd.concat(blocks, ignore_index=True)
