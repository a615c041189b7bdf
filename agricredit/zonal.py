"""Coverage-weighted zonal statistics of NDVI per plot per date (design §6).

Every pixel counts by the fraction of its area inside the plot (exactextract's
semantics). The plots × pixels coverage fractions of a pixel grid are computed
once, by :mod:`exactextract`, into :class:`scipy.sparse` matrices (float32, as
exactextract computes them; one per block of plots, over the cells the block
touches, its rows in the order of their first cell: :mod:`agricredit.coverage`), and reused for every date
observed on that grid, so T dates cost one geometry pass plus T passes over the
weights. Per date and block: one sparse product per sum (valid, NDVI, cropped,
cloud and covered weight); for the quantiles the block's valid values are sorted
as packed integer keys, plot by plot (or in one sort for short rows), which puts
every plot's weights in value order, and the few runs of equal values are merged
(:mod:`agricredit.quantiles`).

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

import contextlib
import datetime as dt
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import rasterio
import scipy.sparse as sp
from rasterio import Affine
from rasterio.windows import Window

from agricredit.errors import (
    CorruptInputError,
    CRSError,
    GridMismatchError,
    InputNotFoundError,
    MissingMetadataError,
)
from agricredit.coverage import CoverageWeights, blocks_of, coverage_weights
from agricredit.plots import area_mu as area_mu_of
from agricredit.quantiles import block_quantiles
from agricredit.seeds import default_cropped_threshold
from agricredit.sensors import parse_date

if TYPE_CHECKING:
    from agricredit.coverage import _Block
    from agricredit.raster import Product
    from agricredit.report.data import KeptChips

__all__ = ["PARTIAL_COVERAGE", "NOT_COVERED", "STAT_COLUMNS", "Tile", "CoverageWeights", "open_tile", "coverage_weights",
           "weighted_quantiles", "gen_zonal_stats", "zonal_stats"]

log = logging.getLogger(__name__)

#: Flag of a plot–date whose plot lies partly outside every tile of that date.
PARTIAL_COVERAGE = "PARTIAL_COVERAGE"
#: Flag of a plot–date whose plot lies outside every tile of that date (kept only on request).
NOT_COVERED = "NOT_COVERED"

#: Covered share below ``1 - _PARTIAL_TOL`` counts as partial (coverage fractions are float32).
_PARTIAL_TOL = 1e-4

#: Rows read at once from a tile: bounds memory on 10980 × 10980 tiles.
_STRIP_ROWS = 512

#: Output columns per plot and date, in order.
STAT_COLUMNS = (
    "plot_id", "date", "ndvi_mean", "ndvi_median", "ndvi_p90", "valid_frac", "cloud_frac",
    "covered_frac", "cropped_area_mu", "pixel_count", "flags", "cloud_masked",
)



# --------------------------------------------------------------------------- tiles


@dataclass(frozen=True)
class Tile:
    """One raster observation: where it is, on which grid, of which date.

    ``product`` is set for raw sensor products (NDVI computed on the fly by
    :mod:`agricredit.raster`); ``None`` for NDVI rasters. ``cloud_masked`` is True
    when a cloud mask was applied to it (see :attr:`agricredit.raster.Product.cloud_masked`);
    False for a product without one and for an untagged NDVI raster.
    """

    path: str
    date: str
    crs: pyproj.CRS
    transform: Affine
    width: int
    height: int
    product: Any = field(default=None, compare=False, repr=False)
    cloud_masked: bool = False


def open_tile(path: str | os.PathLike[str] | Product, date: dt.date | None = None, **reader_options: Any) -> Tile:
    """Open an NDVI raster or a raw product and find its grid and date.

    Products that :func:`agricredit.raster.open_product` knows (raw sensor
    products as files, folders such as ``.SAFE`` and Landsat product folders, or
    local STAC item JSON; and NDVI COGs written by ``agricredit ndvi``, tagged
    ``AGRICREDIT_PRODUCT=ndvi``) are read through it, so its cloud and no-data
    rules apply. An untagged single floating-point band is read as NDVI
    directly (NaN = invalid, counted as cloud). The date is ``date`` if given
    (e.g. from a season manifest), else the product's or the
    ``ACQUISITION_DATE`` tag's, else the first ``YYYYMMDD`` / ``YYYY-MM-DD`` in
    the file name.

    Parameters
    ----------
    path
        A file, product folder or STAC item JSON; or a
        :class:`~agricredit.raster.Product` already opened (not opened again;
        ``reader_options`` do not apply to it).
    date
        The acquisition date, overriding the product's.
    **reader_options
        Passed to :func:`agricredit.raster.open_product` (``sensor``,
        ``processing_baseline``, ``mask_classes`` ...). NDVI rasters are read as
        NDVI whatever ``sensor`` says (it names the sensor they were computed from).

    Raises
    ------
    InputNotFoundError, CorruptInputError, CRSError, MissingMetadataError, SensorError
    """
    from agricredit.raster import Product, open_product

    tags: dict[str, str] = {}
    if isinstance(path, Product):
        product, name = path, str(path.path)
    else:
        name, product = str(path), None
        if not Path(name).exists():
            raise InputNotFoundError("tile not found", path=name)
        if Path(name).is_file() and Path(name).suffix.lower() != ".json":
            try:
                with rasterio.open(name) as src:
                    tags = src.tags()
                    plain_ndvi = "AGRICREDIT_PRODUCT" not in tags and src.count == 1 and np.issubdtype(
                        np.dtype(src.dtypes[0]), np.floating)
                    crs, transform, width, height = src.crs, src.transform, src.width, src.height
            except rasterio.errors.RasterioIOError as error:
                raise CorruptInputError(f"cannot open raster: {error}", path=name) from error
        else:
            plain_ndvi = False
        if not plain_ndvi:
            if tags.get("AGRICREDIT_PRODUCT") == "ndvi":
                reader_options = {k: v for k, v in reader_options.items() if k != "sensor"}
            product = open_product(name, date=date, **reader_options)
    if product is not None:
        crs, transform, width, height = product.crs, product.transform, product.width, product.height
        date = date or product.date
    date = date or parse_date(tags.get("ACQUISITION_DATE")) or parse_date(Path(name).name)
    if crs is None:
        raise CRSError("raster has no CRS", path=name)
    if date is None:
        raise MissingMetadataError("no acquisition date (ACQUISITION_DATE tag or YYYYMMDD in the name)", path=name)
    return Tile(name, date.isoformat(), pyproj.CRS(crs.to_wkt()), transform, width, height, product,
                cloud_masked=bool(product is not None and product.cloud_masked))


@contextlib.contextmanager
def _tile_reader(tile: Tile) -> Iterator[Callable[..., tuple[np.ndarray, np.ndarray]]]:
    """Open ``tile`` once; yield a function reading NDVI (float32, NaN = invalid) and the cloud mask of a window,
    ``read(window)``, or only at some of its cells, ``read(window, rows, cols)`` (indices within the window; 1-D).
    ``read(window, rows, cols, keep)`` of a product also passes the window's decompressed pixels
    (:class:`agricredit.raster.RawWindow`) to ``keep``.

    The one place where tiles are read: products go through
    :class:`agricredit.raster.NdviReader`; in an untagged NDVI raster every invalid
    pixel counts as cloud (the raster does not say why).
    """
    if tile.product is not None:
        from agricredit.raster import NdviReader, ndvi_of

        with NdviReader(tile.product) as reader:
            def read_product(window: Window, rows: np.ndarray | None = None, cols: np.ndarray | None = None,
                             keep: Callable[[Any], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
                raw = reader.read_raw(window)
                if keep is not None:
                    keep(raw)
                ndvi, cloud, _ = ndvi_of(tile.product, raw, cells=None if rows is None else (rows, cols))
                return np.asarray(ndvi, dtype=np.float32), np.asarray(cloud, dtype=bool)

            yield read_product
        return
    with rasterio.open(tile.path) as src:
        def read_raster(window: Window, rows: np.ndarray | None = None, cols: np.ndarray | None = None,
                        keep: Callable[[Any], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
            values = src.read(1, window=window, masked=True)
            ndvi = np.ma.filled((values if rows is None else values[rows, cols]).astype(np.float32, copy=False), np.nan)
            return ndvi, np.isnan(ndvi)

        yield read_raster


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


# --------------------------------------------------------------------------- per-date values


#: GDAL block cache (MB) while the strips of a date are read: enough for one strip of a few bands.
_READ_CACHE_MB = 128


def _cell_values(grid: _Grid, weights: CoverageWeights, tiles: Sequence[Tile],
                 chips: Mapping[str, np.ndarray] | None = None,
                 keep: Callable[[Tile, Any], None] | None = None) -> list[tuple[np.ndarray, ...]]:
    """Mosaic the tiles of one date on ``grid`` at the cells of each weight block.

    Returns per block ``(ndvi, cloud, inside)`` over its ``ids``: NDVI (float32,
    NaN where no tile is valid), cloud (no tile valid and one says cloud), inside
    (some tile covers the cell). Strips of :data:`_STRIP_ROWS` grid rows bound the
    memory; each tile is opened once and read once per strip, only over the window its needed cells span.
    With ``chips`` (tile path → windows ``col0, row0, col1, row1`` on that tile), each tile's window in a strip also
    spans the windows' rows in the strip, and ``keep(tile, raw)`` gets what was read of a product
    (:class:`agricredit.raster.RawWindow`) wherever a window has rows.
    """
    out = [(np.full(len(b.ids), np.nan, dtype=np.float32), np.zeros(len(b.ids), bool), np.zeros(len(b.ids), bool))
           for b in weights.blocks]
    tiles = sorted(tiles, key=lambda t: t.path)
    tops = np.arange(0, weights.height + _STRIP_ROWS, _STRIP_ROWS).astype(np.int64)
    bounds = [np.searchsorted(b.ids, tops * weights.width) for b in weights.blocks]
    # Each tile is opened once (its bands, quality band and resampling VRT) for all strips. Every block is
    # read once, so GDAL's block cache (5 % of RAM by default) would only hold dead strips: keep it small.
    with contextlib.ExitStack() as stack:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=_READ_CACHE_MB))
        readers: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {}
        for s in range(len(tops) - 1):
            pieces = [(k, int(lo[s]), int(lo[s + 1])) for k, lo in enumerate(bounds) if lo[s] < lo[s + 1]]
            boxes = _chip_boxes(grid, tiles, chips or {}, int(tops[s]), int(tops[s + 1]))
            if not pieces and not boxes:
                continue
            ids = np.concatenate([weights.blocks[k].ids[a:b] for k, a, b in pieces]) if pieces else np.empty(0, np.int64)
            rows, cols = np.divmod(ids, ids.dtype.type(weights.width))
            del ids
            values = np.full(len(rows), np.nan, dtype=np.float32)
            cloud, inside = np.zeros(len(rows), bool), np.zeros(len(rows), bool)
            # The box of the strip's cells on the grid: the first tile read, when it holds the box, reads every cell
            # without per-cell tests, gathers or scatters (one tile per grid, as a county's).
            cell_box = None
            if len(rows):
                cell_box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
            fresh = True  # no tile read yet: every value is still NaN
            for tile in tiles:
                row0, col0 = grid.offsets[tile.path]
                box = boxes.get(tile.path)
                if fresh and cell_box is not None and _holds(tile, row0, col0, cell_box):
                    inside[:] = True
                    todo, r, c, span = None, rows, cols, cell_box
                else:
                    here = (rows >= row0) & (rows < row0 + tile.height) & (cols >= col0) & (cols < col0 + tile.width)
                    inside |= here
                    todo = np.flatnonzero(here & np.isnan(values))
                    if len(todo) == 0 and box is None:
                        continue
                    if len(todo) == len(values):  # one tile for all of the strip's cells: no gathers, no scatters
                        todo = None
                    r, c = (rows, cols) if todo is None else (rows[todo], cols[todo])
                    span = (int(c.min()), int(r.min()), int(c.max()) + 1, int(r.max()) + 1) if len(r) else None
                spans = [box] if box is not None else []  # on the tile
                if span is not None:
                    spans.append((span[0] - col0, span[1] - row0, span[2] - col0, span[3] - row0))
                c_lo, r_lo = min(b[0] for b in spans), min(b[1] for b in spans)
                window = Window(c_lo, r_lo, max(b[2] for b in spans) - c_lo, max(b[3] for b in spans) - r_lo)
                if tile.path not in readers:
                    readers[tile.path] = stack.enter_context(_tile_reader(tile))
                kept = None if box is None or keep is None else (lambda raw, tile=tile: keep(tile, raw))
                tile_values, tile_cloud = readers[tile.path](window, r - (row0 + r_lo), c - (col0 + c_lo), kept)
                fresh = False
                if todo is None:
                    values = tile_values
                    cloud |= tile_cloud
                else:
                    values[todo] = tile_values
                    cloud[todo] |= tile_cloud
            cloud &= np.isnan(values)
            at = 0
            for k, a, b in pieces:
                for target, source in zip(out[k], (values, cloud, inside)):
                    target[a:b] = source[at:at + b - a]
                at += b - a
    return out


def _holds(tile: Tile, row0: int, col0: int, box: tuple[int, int, int, int]) -> bool:
    """Whether ``tile``, placed at grid row ``row0`` and column ``col0``, holds the whole grid box ``box``: first
    column, first row, end column, end row."""
    return col0 <= box[0] and row0 <= box[1] and box[2] <= col0 + tile.width and box[3] <= row0 + tile.height


def _chip_boxes(grid: _Grid, tiles: Sequence[Tile], chips: Mapping[str, np.ndarray], top: int, bottom: int
                ) -> dict[str, tuple[int, int, int, int]]:
    """Per tile path, the box ``col0, row0, col1, row1`` (on the tile) of the rows of its ``chips`` windows that
    lie in the grid rows ``top`` to ``bottom`` (tiles without any left out)."""
    boxes = {}
    for tile in tiles:
        windows = chips.get(tile.path)
        if windows is None or len(windows) == 0:
            continue
        row0 = grid.offsets[tile.path][0]
        lo, hi = top - row0, bottom - row0
        here = windows[(windows[:, 1] < hi) & (windows[:, 3] > lo)]
        if len(here):
            boxes[tile.path] = (int(here[:, 0].min()), max(lo, int(here[:, 1].min())), int(here[:, 2].max()),
                                min(hi, int(here[:, 3].max())))
    return boxes


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
    values = np.asarray(values)
    blocks = blocks_of(matrix)
    return _row_stats(blocks, matrix.shape[0], [(values[b.ids], None, None) for b in blocks], np.inf, qs)["quantiles"]


def _row_stats(
    blocks: list[_Block],
    n_rows: int,
    cell_values: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]],
    threshold: float,
    qs: Sequence[float],
) -> dict[str, np.ndarray]:
    """Weighted sums and quantiles per row of the weights ``blocks``.

    ``cell_values`` holds per block ``(values, cloud, inside)`` over its cells
    (``cloud`` / ``inside`` None: no cloud, every cell inside). Returns per row
    ``valid`` (weight of the valid cells: finite values), ``weighted_sum`` (Σ
    weight·value over them), ``cropped`` (of the valid cells ≥ ``threshold``),
    ``cloud`` (of the invalid cells inside a tile marked cloud), ``covered``
    (weight of the cells inside some tile) and ``quantiles`` (``n_rows × len(qs)``).
    """
    names = ("valid", "weighted_sum", "cropped", "cloud", "covered")
    sums = np.zeros((len(names), n_rows))
    quantiles = np.full((n_rows, len(qs)), np.nan)
    for block, (values, cloud, inside) in zip(blocks, cell_values):
        valid = np.isfinite(values)
        weighted = values.astype(np.float64)  # (exact)
        weighted[~valid] = 0.0
        everywhere = np.ones(len(values), bool)
        columns = (valid, weighted, valid & (values >= threshold),  # the threshold in the values' precision
                   ~everywhere if cloud is None else cloud & ~valid & (True if inside is None else inside),
                   everywhere if inside is None else valid | inside)
        # Per sum one pass over the block's weights (float64, in each row's column order: exact enough for any
        # plot); none for an indicator that is 0 everywhere, the rows' total weights for one that is 1 everywhere.
        for total, column in zip(sums, columns):
            if column.dtype == bool and column.all():
                total[block.start + block.rows] = block.totals
            elif column.dtype != bool or column.any():
                total[block.start + block.rows] = block.weights @ column.astype(np.float64, copy=False)
        del columns, weighted
        quantiles[block.start:block.start + len(block.rows)] = block_quantiles(block.matrix, block.rows, values, qs)
    return {**dict(zip(names, sums)), "quantiles": quantiles}


def _date_stats(parts: list[tuple[CoverageWeights, list[tuple[np.ndarray, ...]]]], threshold: float) -> dict[str, np.ndarray]:
    """Per-plot statistics of one date from its grids' weights and per-block ``(ndvi, cloud, inside)``."""
    if len(parts) == 1:
        weights, cell_values = parts[0]
        blocks, n_rows, pixels = weights.blocks, len(weights.plot_cells), None
        plot_cells = weights.plot_cells
    else:
        # Tiles of one date on different grids (say two UTM zones): weights become shares of
        # the plot so grids with different pixel sizes add up. Where the shares exceed the
        # whole plot (overlapping tiles), the grid covering most of the plot is kept whole and
        # the others only fill the rest: their weights are scaled by (1 - best share) / (their
        # shares), so a plot covered by the mosaic is covered once (0 when the best grid covers
        # it all; the overlap's pixels of the other grids count at that reduced weight).
        matrices, grid_values = [], []
        for weights, per_block in parts:
            cells = weights.cells
            columns = [np.full(len(cells), np.nan, np.float32), np.zeros(len(cells), bool), np.zeros(len(cells), bool)]
            for block, block_values in zip(weights.blocks, per_block):
                at = np.searchsorted(cells, block.ids)
                for column, v in zip(columns, block_values):
                    column[at] = v
            matrices.append(weights.matrix)
            grid_values.append(columns)
        inv = [1.0 / np.where(w.plot_cells > 0, w.plot_cells, np.nan) for w, _ in parts]
        shares = np.vstack([np.nan_to_num((m @ inside.astype(np.float64)) * k)
                            for m, (_, _, inside), k in zip(matrices, grid_values, inv)])
        total, best, best_share = shares.sum(axis=0), shares.argmax(axis=0), shares.max(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            remainder = np.clip(np.nan_to_num((1.0 - best_share) / (total - best_share)), 0.0, 1.0)
        overlap = total > 1 + _PARTIAL_TOL
        keep = [np.where(overlap & (best != g), remainder, 1.0) for g in range(len(parts))]
        matrix = sp.hstack([sp.diags(np.nan_to_num(k * s)) @ m for m, k, s in zip(matrices, inv, keep)], format="csr")
        pixels = sp.hstack([sp.diags(s) @ m for m, s in zip(matrices, keep)], format="csr")
        ndvi, cloud, inside = (np.concatenate([g[i] for g in grid_values]) for i in range(3))
        blocks, n_rows = blocks_of(matrix), matrix.shape[0]
        cell_values = [(ndvi[b.ids], cloud[b.ids], inside[b.ids]) for b in blocks]
        plot_cells = np.ones(n_rows)
    stats = _row_stats(blocks, n_rows, cell_values, threshold, (0.5, 0.9))
    valid_cells = stats["valid"]
    with np.errstate(invalid="ignore", divide="ignore"):
        denominator = np.where(plot_cells > 0, plot_cells, np.nan)
        # Shares of the plot's area: a sum of coverage weights may exceed the plot's own total by float
        # rounding (1.0000000058); a share is at most 1 by definition, so it is clipped here, where it is made.
        return {
            "ndvi_mean": np.where(valid_cells > 0, stats["weighted_sum"] / valid_cells, np.nan),
            "ndvi_median": stats["quantiles"][:, 0],
            "ndvi_p90": stats["quantiles"][:, 1],
            "valid_frac": np.minimum(valid_cells / denominator, 1.0),
            "cloud_frac": np.minimum(stats["cloud"] / denominator, 1.0),
            "covered_frac": np.minimum(stats["covered"] / denominator, 1.0),
            "cropped_share": np.where(valid_cells > 0, stats["cropped"] / denominator, np.nan),
            "pixel_count": stats["covered"] if pixels is None else pixels @ inside.astype(np.float64),
        }


def gen_zonal_stats(
    plots: gpd.GeoDataFrame,
    tiles: Iterable[Tile | str | os.PathLike[str]],
    *,
    threshold: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep_uncovered: bool = False,
    on_error: Callable[[Tile, Exception], None] | None = None,
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
        :func:`agricredit.seeds.default_cropped_threshold`.
    progress
        Called as ``progress(done, total)`` after each date.
    keep_uncovered
        Also yield the plot–dates without any covering tile: ``covered_frac``,
        ``valid_frac``, ``cloud_frac`` and ``pixel_count`` 0, NaN NDVI and
        cropped area, flag ``NOT_COVERED``.
    on_error
        Per-record isolation: a tile whose pixels cannot be read is passed to
        ``on_error(tile, error)`` (with the other tiles of its grid on that
        date) and left out, as if it did not cover the plots; ``None`` raises.

    Yields
    ------
    dict
        Keys :data:`STAT_COLUMNS`: ``ndvi_mean`` / ``ndvi_median`` /
        ``ndvi_p90`` (coverage-weighted over valid pixels), ``valid_frac`` and
        ``cloud_frac`` (valid / cloudy covered area over plot area),
        ``covered_frac`` (area inside some tile over plot area),
        ``cropped_area_mu`` (valid area with NDVI ≥ threshold, from the
        geodesic plot area), ``pixel_count`` (sum of coverage fractions of the
        pixels inside the tiles), ``flags`` (``PARTIAL_COVERAGE`` or empty),
        ``cloud_masked`` (True when every tile of the date had its cloud mask
        applied; False marks an unmasked observation whose ``cloud_frac`` is 0
        for want of a mask, not for want of clouds).
        Plot–dates without any covering tile are not yielded unless ``keep_uncovered``.
    """
    for block in _gen_date_blocks(plots, tiles, threshold=threshold, progress=progress,
                                  keep_uncovered=keep_uncovered, on_error=on_error):
        yield from block.to_dict("records")


def _gen_date_blocks(
    plots: gpd.GeoDataFrame,
    tiles: Iterable[Tile | str | os.PathLike[str]],
    *,
    threshold: float | None,
    progress: Callable[[int, int], None] | None,
    keep_uncovered: bool,
    on_error: Callable[[Tile, Exception], None] | None,
    chips: KeptChips | None = None,
) -> Iterator[pd.DataFrame]:
    """The engine: one DataFrame of :data:`STAT_COLUMNS` per date."""
    threshold = default_cropped_threshold() if threshold is None else float(threshold)
    tiles = [t if isinstance(t, Tile) else open_tile(t) for t in tiles]
    if plots.crs is None:
        raise CRSError("plots have no CRS")
    ids = plots["plot_id"].to_numpy()
    area_mu = area_mu_of(plots).to_numpy()
    grids = _group_grids(tiles)
    weights: list[CoverageWeights] = []
    for grid in grids:
        geoms = plots.to_crs(grid.crs).geometry.values
        weights.append(coverage_weights(geoms, grid.transform, grid.width, grid.height, grid.crs))
        log.info("coverage weights: %d plots, %d blocks, %d non-zero", len(ids), len(weights[-1].blocks),
                 sum(b.matrix.nnz for b in weights[-1].blocks))
    by_date: dict[str, list[Tile]] = {}
    for tile in tiles:
        by_date.setdefault(tile.date, []).append(tile)
    for done, date in enumerate(sorted(by_date), start=1):
        parts = []
        windows = None if chips is None else chips.windows(plots, by_date[date])
        for grid, w in zip(grids, weights):
            members = [t for t in by_date[date] if t.path in grid.offsets]
            if not members:
                continue
            try:
                parts.append((w, _cell_values(grid, w, members, windows,
                                              None if chips is None else
                                              lambda tile, raw, date=date: chips.add(date, tile.path, raw))))
            except (CorruptInputError, rasterio.errors.RasterioIOError) as error:
                if chips is not None:
                    chips.discard(date)
                if on_error is None:
                    raise
                for tile in members:
                    on_error(tile, error)
        if not parts:  # every tile of the date was unreadable
            continue
        stats = _date_stats(parts, threshold)
        stats["cropped_area_mu"] = stats.pop("cropped_share") * area_mu
        covered = stats["covered_frac"] > 0
        stats["flags"] = np.where(covered, np.where(stats["covered_frac"] < 1 - _PARTIAL_TOL, PARTIAL_COVERAGE, ""),
                                  NOT_COVERED)
        seen = np.arange(len(ids)) if keep_uncovered else np.flatnonzero(covered)
        stats["cloud_masked"] = np.full(len(ids), all(t.cloud_masked for t in by_date[date]))
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
    keep_uncovered: bool = False,
    on_error: Callable[[Tile, Exception], None] | None = None,
    chips: KeptChips | None = None,
) -> pd.DataFrame:
    """:func:`gen_zonal_stats` as a long DataFrame (one row per plot and date).

    With ``chips`` (:class:`agricredit.report.data.KeptChips`), the reads also cover the plots' chip windows at every
    date and ``chips`` keeps what they decompressed, for :func:`agricredit.report.data.plot_chips`.
    """
    blocks = list(_gen_date_blocks(plots, tiles, threshold=threshold, progress=progress,
                                   keep_uncovered=keep_uncovered, on_error=on_error, chips=chips))
    if not blocks:
        return pd.DataFrame(columns=list(STAT_COLUMNS))
    return pd.concat(blocks, ignore_index=True)
