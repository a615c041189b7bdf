"""Computing NDVI block by block from opened products, writing NDVI COGs.

Products are opened by :func:`agricredit.products.open_product` (re-exported
here with :class:`~agricredit.products.Product`). :func:`read_ndvi` reads NDVI
and the cloud mask for any window of one (an :class:`NdviReader` keeps the files
open to read many windows); :func:`write_ndvi_cog` writes the whole tile as a
Cloud-Optimized GeoTIFF in bounded memory.

NDVI is computed in float32 in DN space: with reflectance = DN x scale + offset,
``NDVI = (N - R) / (N + R + 2 offset/scale)``; for integer DNs the numerator and
denominator are exact in float32, so the result is the correctly rounded quotient.
Pixels where any input is no data or saturated, a defect band marks them, or the
reflectance sum is <= 0, are NaN. NDVI is clipped to [-1, 1] (negative
reflectances after the Sentinel-2 offset can otherwise push it past 1).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import itertools
import logging
import math
import os
import queue
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

import numpy as np
import rasterio
import rasterio.features
import rasterio.shutil
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from agricredit import __version__, sensors
from agricredit.errors import CorruptInputError, CRSMismatchError, OutputError
from agricredit.outputs import atomic_path
from agricredit.products import BandRef, Product, _open, is_product_folder, open_product, parse_bands

__all__ = [
    "BandRef",
    "Product",
    "NdviReport",
    "NdviReader",
    "RawWindow",
    "ndvi_of",
    "open_product",
    "is_product_folder",
    "read_ndvi",
    "ndvi_dataarray",
    "ndvi_from_dn",
    "write_ndvi_cog",
    "write_quicklook",
    "parse_bands",
]

log = logging.getLogger(__name__)

#: Output block size (COG tile) and the block loop's window size.
BLOCK = 512


@dataclasses.dataclass(frozen=True)
class NdviReport:
    """What :func:`write_ndvi_cog` wrote.

    ``cloud_fraction`` = cloud-masked pixels / pixels inside the acquisition footprint
    (1.0 if the footprint is empty), None (unknown) when no cloud mask was applied;
    ``valid_fraction`` = finite NDVI pixels / all pixels.
    """

    path: Path
    sensor: str
    date: datetime.date | None
    width: int
    height: int
    valid_fraction: float
    cloud_fraction: float | None
    nodata_fraction: float
    mask_rule: str
    cloud_masked: bool
    quicklook: Path | None
    seconds: float

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly dict."""
        out = dataclasses.asdict(self)
        out["path"] = str(self.path)
        out["quicklook"] = None if self.quicklook is None else str(self.quicklook)
        out["date"] = None if self.date is None else self.date.isoformat()
        return out


# --------------------------------------------------------------------------- reading


def ndvi_from_dn(
    red: np.ndarray, nir: np.ndarray, *, scale: float = 1.0, offset: float = 0.0, nodata: float | None = None,
    saturated: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """NDVI (float32) from red/NIR digital numbers.

    Parameters
    ----------
    red, nir
        Arrays of DN (any numeric dtype).
    scale, offset
        Reflectance = DN x scale + offset (scale > 0).
    nodata
        DN marking no data in either band (NaN inputs are no data too).
    saturated
        DN of a saturated reading in either band: NaN, but not no data.

    Returns
    -------
    ndvi, fill
        NDVI with NaN where any input is no data or saturated or the reflectance sum
        is <= 0, clipped to [-1, 1]; ``fill`` is True where an input is no data.
    """
    ndvi, invalid, fill = _unmasked_ndvi(red, nir, scale=scale, offset=offset, nodata=nodata, saturated=saturated)
    return np.where(invalid, np.float32(np.nan), ndvi), fill


def _unmasked_ndvi(red: np.ndarray, nir: np.ndarray, *, scale: float, offset: float, nodata: float | None,
                   saturated: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`ndvi_from_dn`'s ``ndvi`` before the invalid pixels are set to NaN (any value there), ``invalid`` and
    ``fill``: so that a caller with more masks sets NaN once."""
    r = red.astype(np.float32, copy=False)
    n = nir.astype(np.float32, copy=False)
    fill = np.isnan(r) | np.isnan(n) if red.dtype.kind == "f" or nir.dtype.kind == "f" else None
    if nodata is not None and not math.isnan(nodata):
        no_data = _equal(red, nodata)
        no_data |= _equal(nir, nodata)
        fill = no_data if fill is None else fill | no_data
    if fill is None:
        fill = np.zeros(r.shape, bool)
    denominator = n + r
    denominator += np.float32(2.0 * offset / scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = np.subtract(n, r, dtype=np.float32)
        ndvi /= denominator
        np.clip(ndvi, -1.0, 1.0, out=ndvi)
    invalid = denominator > 0
    np.logical_not(invalid, out=invalid)
    invalid |= fill
    if saturated is not None:
        invalid |= _equal(red, saturated)
        invalid |= _equal(nir, saturated)
    return ndvi, invalid, fill


def _equal(band: np.ndarray, value: float) -> np.ndarray:
    """``band == value``; for an integer band and a value of its type, compared as integers (the same answer,
    several times faster than comparing every DN as a float)."""
    if band.dtype.kind in "ui" and float(value).is_integer():
        limits = np.iinfo(band.dtype)
        if limits.min <= value <= limits.max:
            return band == band.dtype.type(value)
    return band == value


@dataclasses.dataclass(frozen=True)
class RawWindow:
    """The decompressed inputs of NDVI over one window of a product, as read from its files (what a read costs).

    ``arrays`` by role, each ``(..., rows, cols)`` over ``window``: ``red``, ``nir`` and, when the product has them,
    ``qa`` (the quality band; MSK_CLASSI's two bands on a leading axis), ``defect`` and ``external`` for a sensor
    product; ``ndvi`` and ``observed`` (its internal mask, when it has one) for an NDVI raster. :func:`ndvi_of`
    computes NDVI and the masks from them, pixel by pixel (the cloud outlines of a product with ``cloud_shapes``
    are rasterized over ``window``). ``window`` None: pixels gathered from several windows (any shape), for a
    product without cloud outlines.
    """

    window: Window | None
    arrays: dict[str, np.ndarray]

    @property
    def nbytes(self) -> int:
        """Bytes of the buffers its arrays view (a buffer several arrays view counts once)."""
        buffers = {id(b): b for b in (a if a.base is None else a.base for a in self.arrays.values())}
        return sum(getattr(b, "nbytes", 0) for b in buffers.values())


def ndvi_of(product: Product, raw: RawWindow, cells: tuple[np.ndarray, np.ndarray] | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ndvi, cloud, fill)`` of ``product`` from its decompressed inputs ``raw`` (:meth:`NdviReader.read_raw`).

    Over the whole window, or, with ``cells`` (row and column indices within it), 1-D at those cells only (the same
    values, element by element). See :meth:`NdviReader.read`.
    """
    p, arrays = product, raw.arrays
    flat: list[np.ndarray] = []  # the cells' flat indices in the window

    def pick(values: np.ndarray) -> np.ndarray:
        """The cells of a ``(..., rows, cols)`` window array (all of it without ``cells``)."""
        if cells is None:
            return values
        if not flat:  # one flat index per cell: np.take is several times faster than 2-D fancy indexing
            flat.append(cells[0].astype(np.intp) * values.shape[-1] + cells[1])
        return np.take(values.reshape(*values.shape[:-2], -1), flat[0], axis=-1)

    if p.sensor == "ndvi":  # cloud = NaN pixels its internal mask marks as observed
        ndvi = pick(arrays["ndvi"]).astype(np.float32, copy=False)
        fill = pick(arrays["observed"]) == 0 if "observed" in arrays else np.zeros(ndvi.shape, bool)
        return ndvi, np.isnan(ndvi) & ~fill, fill
    ndvi, invalid, fill = _unmasked_ndvi(pick(arrays["red"]), pick(arrays["nir"]), scale=p.scale, offset=p.offset,
                                         nodata=p.nodata, saturated=p.saturated_dn)
    if "defect" in arrays:
        invalid |= sensors.apply_defect_rule(p.defect_rule, pick(arrays["defect"]))
    cloud = np.zeros(ndvi.shape, bool)
    if "qa" in arrays:
        qa_fill, qa_cloud = sensors.apply_mask_rule(p.mask_rule, pick(arrays["qa"]))
        fill |= qa_fill
        cloud |= qa_cloud
    if p.cloud_shapes:
        cloud |= pick(rasterio.features.rasterize(
            p.cloud_shapes, out_shape=arrays["red"].shape[-2:],
            transform=rasterio.windows.transform(raw.window, p.transform), fill=0, default_value=1,
            dtype="uint8").astype(bool))
    if "external" in arrays:
        cloud |= pick(arrays["external"]) != 0
    cloud &= ~fill
    invalid |= fill
    invalid |= cloud
    return np.where(invalid, np.float32(np.nan), ndvi), cloud, fill


class NdviReader:
    """The open datasets of one product, reading NDVI by window; a context manager.

    Open one per product (and per thread: a GDAL dataset may move between threads
    but not be shared) and read any number of windows with it: the bands, the
    quality band and its resampling VRT are opened once, not per window. A file
    holding several of the bands is opened once.
    """

    def __init__(self, product: Product):
        self.product = product
        self._stack = contextlib.ExitStack()
        self._datasets: dict[Path, rasterio.DatasetReader] = {}
        try:
            self.red = self._dataset(product.red.path)
            self.nir = self._dataset(product.nir.path) if product.nir else None
            self.mask = self._on_grid(product.mask)
            self.defect = self._on_grid(product.defect)
            self.external = self._on_grid(product.external_mask)
            self.footprint = product.sensor == "ndvi" and MaskFlags.per_dataset in self.red.mask_flag_enums[0]
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _dataset(self, path: Path) -> rasterio.DatasetReader:
        if path not in self._datasets:
            self._datasets[path] = self._stack.enter_context(_open(path))
        return self._datasets[path]

    def _on_grid(self, ref: BandRef | None):
        """Open a quality/mask band on the product grid (a nearest-resampling VRT if on another grid)."""
        if ref is None:
            return None
        ds = self._dataset(ref.path)
        p = self.product
        if ds.crs == p.crs and ds.shape == p.shape and ds.transform.almost_equals(p.transform):
            return ds
        if ds.crs is None:
            raise CRSMismatchError("mask raster has no CRS", path=ref.path)
        # SCL at 20 m (or an external mask on another grid): nearest onto the 10 m grid.
        return self._stack.enter_context(
            WarpedVRT(ds, crs=p.crs, transform=p.transform, width=p.width, height=p.height, resampling=Resampling.nearest)
        )

    def _read(self, ds, ref: BandRef, window: Window, indexes: int | list[int] | None = None) -> np.ndarray:
        """Read band ``ref`` (or bands ``indexes``) of ``ds`` for ``window`` (a read failure names the file)."""
        try:
            return ds.read(ref.index if indexes is None else indexes, window=window)
        except RasterioError as error:
            raise CorruptInputError(f"cannot read pixels (truncated or corrupt file?): {error}", path=ref.path) from error

    def read(self, window: Window | None = None, cells: tuple[np.ndarray, np.ndarray] | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(ndvi, cloud, fill)`` for ``window`` (whole tile if None); see :func:`read_ndvi`.

        ``fill`` is True where an input is no data (outside the acquisition).
        With ``cells`` (row and column indices within the window) the three are 1-D, at those cells only: the
        window is read and decompressed whole, but NDVI and the masks are computed only where they are needed
        (the same values, element by element). The same as :func:`ndvi_of` of :meth:`read_raw`.
        """
        return ndvi_of(self.product, self.read_raw(window), cells)

    def read_raw(self, window: Window | None = None) -> RawWindow:
        """The decompressed inputs of NDVI over ``window`` (whole tile if None), as :func:`ndvi_of` takes them."""
        p = self.product
        window = window or _full_window(p)
        if p.sensor == "ndvi":
            arrays = {"ndvi": self._read(self.red, p.red, window)}
            if self.footprint:
                arrays["observed"] = self.red.read_masks(1, window=window)
            return RawWindow(window, arrays)
        assert p.nir is not None
        if self.nir is self.red:  # the bands of one file in one call: a pixel-interleaved file is decompressed once
            with_qa = p.mask is not None and self.mask is self.red and not p.mask_rule.startswith("msk_classi")
            bands = self._read(self.red, p.red, window, [p.red.index, p.nir.index] + ([p.mask.index] if with_qa else []))
            arrays = {"red": bands[0], "nir": bands[1], **({"qa": bands[2]} if with_qa else {})}
        else:
            arrays = {"red": self._read(self.red, p.red, window), "nir": self._read(self.nir, p.nir, window)}
        if p.defect is not None:
            arrays["defect"] = self._read(self.defect, p.defect, window)
        if p.mask is not None and "qa" not in arrays:  # MSK_CLASSI: opaque and cirrus are bands 1 and 2 of one file.
            arrays["qa"] = self._read(self.mask, p.mask, window, [1, 2] if p.mask_rule.startswith("msk_classi") else None)
        if p.external_mask is not None:
            arrays["external"] = self._read(self.external, p.external_mask, window)
        return RawWindow(window, arrays)

    def close(self) -> None:
        """Close every dataset this reader opened."""
        self._stack.close()


def _full_window(product: Product) -> Window:
    return Window(0, 0, product.width, product.height)


def read_ndvi(product: Product, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read NDVI and the cloud mask of ``product`` for ``window`` (whole tile if None).

    Opens and closes the product's files; to read many windows of one product, use
    one :class:`NdviReader`.

    Returns
    -------
    ndvi, cloud
        NDVI float32 with NaN where invalid; ``cloud`` True where a cloud/quality mask
        removed the pixel (not for plain no data). For an NDVI raster written by
        :func:`write_ndvi_cog`, ``cloud`` = NaN pixels its internal mask marks as observed.
    """
    with NdviReader(product) as reader:
        ndvi, cloud, _ = reader.read(window)
    return ndvi, cloud


def ndvi_dataarray(product: Product, window: Window | None = None):
    """NDVI of ``product`` (or a window of it) as an ``xarray.DataArray``.

    Dims ``(y, x)`` with pixel-centre coordinates; the cloud mask as coordinate
    ``cloud``; attrs ``crs`` (WKT), ``transform`` (6 GDAL-order affine
    coefficients a, b, c, d, e, f of the window), ``sensor``, ``date``.
    """
    import xarray as xr

    window = window or _full_window(product)
    ndvi, cloud = read_ndvi(product, window)
    transform = rasterio.windows.transform(window, product.transform)
    cols = np.arange(ndvi.shape[1]) + 0.5
    rows = np.arange(ndvi.shape[0]) + 0.5
    x = transform.c + cols * transform.a
    y = transform.f + rows * transform.e
    return xr.DataArray(
        ndvi,
        dims=("y", "x"),
        coords={"y": y, "x": x, "cloud": (("y", "x"), cloud)},
        name="ndvi",
        attrs={
            "crs": product.crs.to_wkt(),
            "transform": tuple(transform)[:6],
            "sensor": product.sensor,
            "date": None if product.date is None else product.date.isoformat(),
        },
    )


def _windows(product: Product, block: int = BLOCK) -> list[Window]:
    return [
        Window(col, row, min(block, product.width - col), min(block, product.height - row))
        for row in range(0, product.height, block)
        for col in range(0, product.width, block)
    ]


def _iter_blocks(product: Product, windows: list[Window], workers: int) -> Iterator[tuple[Window, tuple]]:
    """Yield (window, (ndvi, cloud, fill)) in order, read by ``workers`` threads, a few blocks ahead.

    Each thread borrows one of ``workers`` readers (opened and closed here, in the
    calling thread: a GDAL dataset may move between threads but not be shared).
    """
    readers: queue.SimpleQueue[NdviReader] = queue.SimpleQueue()
    opened: list[NdviReader] = []
    try:
        for _ in range(workers):
            opened.append(NdviReader(product))
            readers.put(opened[-1])

        def work(window: Window):
            reader = readers.get()
            try:
                return reader.read(window)
            finally:
                readers.put(reader)

        with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ndvi") as pool:
            todo = iter(windows)
            pending = deque((w, pool.submit(work, w)) for w in itertools.islice(todo, 2 * workers))
            try:
                while pending:
                    window, future = pending.popleft()
                    result = future.result()
                    if (nxt := next(todo, None)) is not None:
                        pending.append((nxt, pool.submit(work, nxt)))
                    yield window, result
            finally:
                for _, future in pending:
                    future.cancel()
    finally:
        for reader in opened:
            reader.close()


# --------------------------------------------------------------------------- writing


def _output_tags(product: Product, cloud_fraction: float | None, valid_fraction: float) -> dict[str, str]:
    """Tags of an NDVI COG. The NDVI values are final (no scale or offset applies to them);
    the inputs' radiometry is recorded under ``SOURCE_*`` names."""
    tags = dict(product.tags)
    tags.update(
        AGRICREDIT_PRODUCT="ndvi",
        AGRICREDIT_SENSOR=product.sensor,
        AGRICREDIT_VERSION=__version__,
        ACQUISITION_DATE="" if product.date is None else product.date.isoformat(),
        PROCESSING_BASELINE=product.processing_baseline or "",
        SPACECRAFT=product.spacecraft or "",
        SOURCE_ADD_OFFSET_DN="" if product.add_offset is None else f"{product.add_offset:g}",
        SOURCE_REFLECTANCE_SCALE=repr(product.scale),
        SOURCE_REFLECTANCE_OFFSET=repr(product.offset),
        SOURCE_SATURATED_DN="" if product.saturated_dn is None else f"{product.saturated_dn:g}",
        DEFECT_RULE=product.defect_rule,
        MASK_RULE=product.full_mask_rule,
        CLOUD_MASKED="yes" if product.cloud_masked else "no",
        CLOUD_FRACTION="unknown" if cloud_fraction is None else f"{cloud_fraction:.6f}",
        VALID_FRACTION=f"{valid_fraction:.6f}",
        SOURCE=product.path.name,
    )
    return tags


def write_ndvi_cog(
    product: Product,
    out_path: str | os.PathLike[str],
    *,
    quicklook: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> NdviReport:
    """Write the NDVI of ``product`` as a Cloud-Optimized GeoTIFF, block by block.

    float32, NaN nodata, 512 tiles, DEFLATE with the floating-point predictor,
    average overviews, an internal per-dataset mask marking observed pixels
    (valid NDVI or cloud; 0 = no data), tags recording sensor, date, baseline, radiometry, mask rule and
    cloud/valid fractions. Memory stays bounded: a few 512x512 blocks are in
    flight at a time; compression uses all CPUs.

    Parameters
    ----------
    product
        From :func:`open_product`.
    out_path
        The ``.tif`` to write (atomically).
    quicklook
        Also write a colour-mapped PNG with a legend here.
    progress
        Called with ``(blocks done, blocks)`` as blocks are written.
    workers
        Reader threads (default: number of CPUs, at most 4).

    Returns
    -------
    NdviReport
    """
    start = time.perf_counter()
    out_path = Path(out_path)
    workers = workers or min(4, os.cpu_count() or 1)
    with atomic_path(out_path) as tmp_out, tempfile.TemporaryDirectory(prefix=".ndvi-", dir=out_path.parent) as tmpdir:
        stage = Path(tmpdir) / "stage.tif"
        with rasterio.Env(GDAL_CACHEMAX=256 * 2**20, GDAL_NUM_THREADS="ALL_CPUS", GDAL_TIFF_INTERNAL_MASK=True):
            cloud_fraction, valid_fraction, nodata_fraction = _write_stage(product, stage, workers, progress)
            try:
                rasterio.shutil.copy(
                    stage, tmp_out, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES", BLOCKSIZE=BLOCK,
                    OVERVIEW_RESAMPLING="AVERAGE", NUM_THREADS="ALL_CPUS", BIGTIFF="IF_SAFER",
                )
            except RasterioError as error:
                raise OutputError(f"cannot write the COG: {error}", path=out_path) from error
    if valid_fraction == 0:
        log.warning("%s: no valid pixels (cloud fraction %s); the output is all NaN", product.path,
                    "unknown" if cloud_fraction is None else f"{cloud_fraction:.3f}")
    quicklook_path = None
    if quicklook is not None:
        quicklook_path = write_quicklook(out_path, quicklook, title=_title(product))
    return NdviReport(
        path=out_path, sensor=product.sensor, date=product.date, width=product.width, height=product.height,
        valid_fraction=valid_fraction, cloud_fraction=cloud_fraction, nodata_fraction=nodata_fraction,
        mask_rule=product.full_mask_rule, cloud_masked=product.cloud_masked, quicklook=quicklook_path,
        seconds=time.perf_counter() - start,
    )


def _write_stage(product: Product, stage: Path, workers: int,
                 progress: Callable[[int, int], None] | None) -> tuple[float | None, float, float]:
    """Write NDVI, its observed-pixel mask and tags to a tiled GeoTIFF; return the cloud, valid and nodata fractions.

    The cloud fraction is None (unknown) when no cloud mask was applied.
    """
    windows = _windows(product)
    counts = np.zeros(3, np.int64)  # valid, cloud, fill
    with rasterio.open(
        stage, "w", driver="GTiff", dtype="float32", count=1, nodata=float("nan"), width=product.width,
        height=product.height, crs=product.crs, transform=product.transform, tiled=True, blockxsize=BLOCK,
        blockysize=BLOCK, BIGTIFF="IF_SAFER",
    ) as dst:
        for done, (window, (ndvi, cloud, fill)) in enumerate(_iter_blocks(product, windows, workers), 1):
            dst.write(ndvi, 1, window=window)
            # The internal mask: 255 where the pixel was observed (valid NDVI or cloud),
            # 0 for no data / no computable NDVI; read_ndvi uses it to tell cloud from no data.
            dst.write_mask(np.where(cloud | ~np.isnan(ndvi), 255, 0).astype(np.uint8), window=window)
            counts += (np.count_nonzero(~np.isnan(ndvi)), np.count_nonzero(cloud), np.count_nonzero(fill))
            if progress is not None and (done % 16 == 0 or done == len(windows)):
                progress(done, len(windows))
        total = product.width * product.height
        valid, cloudy, filled = (int(c) for c in counts)
        footprint = total - filled
        cloud_fraction = (cloudy / footprint if footprint else 1.0) if product.cloud_masked else None
        dst.set_band_description(1, "NDVI")
        dst.update_tags(**_output_tags(product, cloud_fraction, valid / total))
    return cloud_fraction, valid / total, filled / total


def _title(product: Product) -> str:
    date = product.date.isoformat() if product.date else "date unknown"
    return f"NDVI · {product.sensor} · {date} · {product.path.name}"


def write_quicklook(ndvi_path: str | os.PathLike[str], png_path: str | os.PathLike[str], *, title: str = "NDVI", max_size: int = 1024) -> Path:
    """Write a colour-mapped PNG of an NDVI raster with a legend (from its overviews).

    NDVI uses the RdYlGn colour map from -0.2 to 1; cloud/masked pixels are grey,
    pixels outside the acquisition white. Returns the PNG path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    png_path = Path(png_path)
    with _open(Path(ndvi_path)) as ds:
        factor = max(1, math.ceil(max(ds.width, ds.height) / max_size))
        shape = (max(1, ds.height // factor), max(1, ds.width // factor))
        ndvi = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
        inside = ds.read_masks(1, out_shape=shape, resampling=Resampling.nearest) > 0
        inside |= MaskFlags.per_dataset not in ds.mask_flag_enums[0]
    figure = Figure(figsize=(7.5, 6.5), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.imshow(np.where(inside, 1.0, 0.0), cmap=ListedColormap(["white", "#b0b0b0"]), vmin=0, vmax=1, interpolation="nearest")
    image = ax.imshow(np.ma.masked_invalid(ndvi), cmap="RdYlGn", vmin=-0.2, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=ax, label="NDVI", extend="both", shrink=0.8)
    ax.legend(
        handles=[Patch(facecolor="#b0b0b0", label="cloud / masked"), Patch(facecolor="white", edgecolor="black", label="no data")],
        loc="lower left", fontsize="small", framealpha=0.9,
    )
    ax.set_title(title, fontsize="medium")
    ax.set_axis_off()
    with atomic_path(png_path) as tmp:
        figure.savefig(tmp, format="png", bbox_inches="tight")
    return png_path
