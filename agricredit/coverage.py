"""The plots × pixels coverage fractions of a pixel grid, the weights of the zonal statistics (design §6).

exactextract computes each plot's exact coverage fraction of every pixel it touches (float32); they are kept as
:class:`scipy.sparse` matrices, one per block of plots over the cells the block touches, its rows in the order of
their first cell, and reused for every date observed on the grid (:mod:`agricredit.zonal`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pyproj
import scipy.sparse as sp
import shapely
from rasterio import Affine

__all__ = ["CoverageWeights", "blocks_of", "coverage_weights"]

#: Non-zero weights per block of plots (bounds the per-date temporaries); plots per exactextract call.
_CHUNK_ENTRIES = 4_000_000
_CHUNK_PLOTS = 10_000


@dataclass
class _Block:
    """Weights of a contiguous run of plots ``start …``.

    ``matrix`` is ``len(rows) × len(ids)`` canonical CSR (float32 coverage fractions
    for :func:`coverage_weights`); its row ``i`` is plot ``start + rows[i]``, rows in
    order of their first cell (so that a pass over the rows walks the cells nearly in
    order: several times fewer cache misses than the plots' own order); its columns
    are the cells ``ids`` (flat grid indices, ascending; column indices for
    :func:`blocks_of`).
    """

    start: int
    rows: np.ndarray
    ids: np.ndarray
    matrix: sp.csr_matrix

    @functools.cached_property
    def weights(self) -> sp.csr_matrix:
        """``matrix`` with float64 data, the operand of the sums: made once for every date."""
        m = self.matrix
        return sp.csr_matrix((m.data.astype(np.float64), m.indices, m.indptr), shape=m.shape, copy=False)

    @functools.cached_property
    def totals(self) -> np.ndarray:
        """Each row's total weight (float64, summed in column order)."""
        return self.weights @ np.ones(self.weights.shape[1])


@dataclass
class CoverageWeights:
    """Coverage fractions of plots over the pixels of one grid.

    Attributes
    ----------
    blocks
        The weights by blocks of plots, each over the cells it touches (what the
        statistics use).
    plot_cells
        Each plot's area in pixels (planar area in the grid CRS / pixel area):
        the denominator of ``valid_frac``, ``cloud_frac`` and ``covered_frac``.
    width, height
        Grid size in pixels.
    cells
        Flat (row-major) indices of the cells that any plot touches, ascending
        (computed on demand).
    matrix
        ``n_plots × n_cells`` CSR matrix of coverage fractions (0–1] over ``cells``
        (assembled on demand).
    """

    blocks: list[_Block]
    plot_cells: np.ndarray
    width: int
    height: int

    @property
    def cells(self) -> np.ndarray:
        return np.unique(np.concatenate([np.empty(0, np.int64), *(b.ids for b in self.blocks)]))

    @property
    def matrix(self) -> sp.csr_matrix:
        cells = self.cells
        parts = [sp.csr_matrix((0, len(cells)), dtype=np.float32)]
        end = 0
        for block in self.blocks:
            rows = block.matrix.shape[0]
            coo = block.matrix.tocoo()
            parts.append(sp.csr_matrix((block.start - end, len(cells)), dtype=np.float32))
            parts.append(sp.csr_matrix((coo.data, (block.rows[coo.row], np.searchsorted(cells, block.ids)[coo.col])),
                                       shape=(rows, len(cells))))
            end = block.start + rows
        parts.append(sp.csr_matrix((len(self.plot_cells) - end, len(cells)), dtype=np.float32))
        return sp.vstack(parts, format="csr")


def _make_block(start: int, counts: np.ndarray, ids: np.ndarray, data: np.ndarray, n_ids: int) -> _Block:
    """A block of rows ``start …`` with ``counts`` entries each, at columns ``ids`` (< ``n_ids``)."""
    local_ids, local = _compress_cells([ids], n_ids)
    indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    csr = sp.csr_matrix((data, local, indptr), shape=(len(counts), len(local_ids)))
    csr.eliminate_zeros()
    csr.sum_duplicates()  # canonical: each row's entries in column order
    first_cell = np.full(len(counts), len(local_ids))  # empty rows last
    filled = np.diff(csr.indptr) > 0
    first_cell[filled] = csr.indices[csr.indptr[:-1][filled]]
    rows = np.argsort(first_cell, kind="stable")
    return _Block(start, rows, local_ids, csr[rows])


def blocks_of(matrix: sp.spmatrix) -> list[_Block]:
    """Any sparse weight matrix as blocks of about :data:`_CHUNK_ENTRIES` non-zero weights."""
    m = sp.csr_matrix(matrix)
    if m.nnz and not (m.data > 0).all():  # zero or negative weights must not count as values
        m = m.copy()
        m.data[~(m.data > 0)] = 0
        m.eliminate_zeros()
    indptr = m.indptr.astype(np.int64)
    cuts = np.searchsorted(indptr, np.arange(0, m.nnz, _CHUNK_ENTRIES), side="right") - 1
    cuts = np.unique(np.r_[0, cuts, m.shape[0]])  # indptr[0] = 0: every cut is already in [0, n_rows]
    blocks = []
    for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
        lo, hi = indptr[a], indptr[b]
        blocks.append(_make_block(a, np.diff(indptr[a:b + 1]), m.indices[lo:hi], m.data[lo:hi], m.shape[1]))
    return blocks


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
    empty = shapely.is_empty(geoms) | shapely.is_missing(geoms)
    blocks = []
    # Blocks of plots bound the memory of exactextract's per-plot arrays and of the per-date work.
    for start in range(0, n, _CHUNK_PLOTS):
        chunk = np.flatnonzero(~empty[start:start + _CHUNK_PLOTS]) + start
        if len(chunk) == 0:
            continue
        features, cells = _exactextract_io(shapely.to_wkb(geoms[chunk]), crs.to_wkt())
        exact_extract(raster, features, ["cell_id", "coverage"], output=cells)
        counts = np.zeros(chunk[-1] + 1 - start, dtype=np.int64)
        counts[chunk - start] = [len(c) for c in cells.cell_id]
        ids = np.concatenate([np.empty(0, np.int64), *cells.cell_id])
        # exactextract computes coverage fractions in float32: float32 keeps them exactly.
        data = np.concatenate([np.empty(0, np.float32), *cells.coverage], dtype=np.float32, casting="same_kind")
        del cells, features
        offsets = np.r_[0, np.cumsum(counts)]
        cuts = np.unique(np.r_[0, np.searchsorted(offsets, np.arange(0, offsets[-1], _CHUNK_ENTRIES), side="right") - 1,
                               len(counts)])
        for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
            lo, hi = offsets[a], offsets[b]
            blocks.append(_make_block(start + a, counts[a:b], ids[lo:hi], data[lo:hi], width * height))
        del ids, data
    plot_cells = shapely.area(geoms) / abs(transform.a * transform.e)
    return CoverageWeights(blocks, plot_cells, width, height)


def _compress_cells(parts: list[np.ndarray], n_ids: int) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct ids of ``parts`` (non-negative, < ``n_ids``) and each entry's index among them.

    One sort of packed ``(id, entry)`` integer keys: numpy's stable sort of integers, which finds the runs of
    ascending ids each plot's cells come in, is much faster than ``np.unique(return_inverse=True)`` on millions of
    entries (the keys are unique, so any sort gives this order).
    """
    nnz = sum(len(p) for p in parts)
    index_dtype = np.int32 if max(nnz, n_ids) < 2**31 else np.int64
    if nnz == 0:
        return np.empty(0, index_dtype), np.empty(0, index_dtype)
    shift = max(int(nnz - 1).bit_length(), 1)
    if int(max(n_ids - 1, 1)).bit_length() + shift > 64:  # pragma: no cover - beyond 2^64 id-entries
        ids, inverse = np.unique(np.concatenate(parts), return_inverse=True)
        return ids.astype(index_dtype), inverse.astype(index_dtype)
    key = np.empty(nnz, dtype=np.uint64)
    at = 0
    for part in parts:
        block = key[at:at + len(part)]
        block[:] = part
        block <<= np.uint64(shift)
        block |= np.arange(at, at + len(part), dtype=np.uint64)
        at += len(part)
    key.sort(kind="stable")
    sorted_ids = (key >> np.uint64(shift)).astype(index_dtype)
    first = np.empty(nnz, dtype=bool)
    first[0] = True
    np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=first[1:])
    ids = sorted_ids[first]
    del sorted_ids
    rank = np.cumsum(first, dtype=index_dtype)
    rank -= 1
    del first
    key &= np.uint64((1 << shift) - 1)  # now the entry of each sorted key
    inverse = np.empty(nnz, dtype=index_dtype)
    inverse[key] = rank
    return ids, inverse


def _exactextract_io(wkbs: np.ndarray, srs_wkt: str):
    """An exactextract feature source over WKB geometries (no GeoJSON round trip), and a writer keeping each
    feature's ``cell_id`` and ``coverage`` arrays in two lists, in feature order (no DataFrame)."""
    from exactextract.feature import Feature, FeatureSource
    from exactextract.writer import Writer

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

    class CellsWriter(Writer):
        def __init__(self) -> None:
            Writer.__init__(self)
            self.cell_id: list[np.ndarray] = []
            self.coverage: list[np.ndarray] = []

        def add_operation(self, op: Any) -> None:
            pass

        def write(self, feature: Any) -> None:
            values = WKBFeature()
            feature.copy_to(values)
            self.cell_id.append(values.properties["cell_id"])
            self.coverage.append(values.properties["coverage"])

        def features(self) -> CellsWriter:
            return self

    return WKBFeatureSource(), CellsWriter()
