"""Tile discovery: the acquisitions of a season, their hashes and the zonal long table over them.

A season's tiles may be given as files, product folders, a folder holding them
at any depth, a manifest CSV (``date,sensor,path``) or a local STAC Item /
ItemCollection; :func:`discover_acquisitions` opens each tile once and groups
them by date, :func:`observation_table` runs the zonal engine over them and
:func:`tile_hashes` gives their provenance for audit records.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from agricredit.errors import (
    AgricreditError,
    CorruptInputError,
    InputError,
    InputNotFoundError,
    MissingBandError,
    MissingTileError,
    SchemaError,
    SensorError,
)

__all__ = ["Acquisition", "discover_acquisitions", "observation_table", "tile_hashes"]

logger = logging.getLogger(__name__)

#: Raster file suffixes considered when a folder is searched for acquisitions.
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
#: Product containers (folders or archives) a reader may open as one product.
PRODUCT_SUFFIXES = (".safe", ".zip")

@dataclass(frozen=True)
class Acquisition:
    """One observation date: every tile (file or product) acquired that day.

    Several tiles of one date are one observation; the zonal engine mosaics them per plot.
    ``products`` are the products :func:`discover_acquisitions` opened, one per path
    (``None`` for an untagged NDVI raster, read directly), so that
    :func:`observation_table` reads them with the reader options they were found with
    and does not open them again; empty when the acquisition was built by hand.
    """

    date: dt.date
    paths: tuple[Path, ...]
    sensors: tuple[str, ...] = ()
    products: tuple[Any, ...] = field(default=(), compare=False, repr=False)


#: One tile found: (date, sensor label, resolved path, opened product or None).
_Found = tuple[dt.date, str, Path, Any]


def _parse_date(text: str, *, path: Path, record: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip()[:10])
    except ValueError as error:
        raise SchemaError(f"date {text!r} is not YYYY-MM-DD", path=path, record=record) from error


def _from_manifest(path: Path, keep: Callable[[dt.date], bool],
                   on_error: Callable[[Path, AgricreditError], None] | None = None, **options: Any) -> list[_Found]:
    """The rows of a manifest CSV; a row's ``sensor`` is the reader's sensor for its (raw) product. A row whose tile
    does not exist goes to ``on_error`` when given (as a tile that cannot be opened), else stops the run."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"date", "path"} - set(reader.fieldnames or [])
            if missing:
                raise SchemaError(f"manifest misses columns {sorted(missing)} (need date,sensor,path)", path=path)
            rows = list(enumerate(reader, start=2))
    except OSError as error:
        raise InputNotFoundError(f"cannot read manifest: {error.strerror}", path=path) from error
    found = []
    for number, row in rows:
        tile = (path.parent / (row["path"] or "").strip()).resolve()
        if not row["path"] or not tile.exists():
            error = MissingTileError(f"tile {row['path']!r} listed in the manifest does not exist", path=path,
                                     record=f"row {number}")
            if not row["path"] or on_error is None:
                raise error
            on_error(tile, error)
            continue
        date = _parse_date(row["date"] or "", path=path, record=f"row {number}")
        sensor = (row.get("sensor") or "").strip()
        if keep(date):
            found.extend(_from_file(tile, date=date, label=sensor, on_error=on_error,
                                    **({**options, "sensor": sensor} if sensor else options)))
    return found


def _from_stac(path: Path, keep: Callable[[dt.date], bool],
               on_error: Callable[[Path, AgricreditError], None] | None = None, **options: Any) -> list[_Found]:
    """A STAC Item (one product, opened by the NDVI reader) or an ItemCollection.

    An item of a collection is referenced by its local ``self`` link if it has
    one, else by its NDVI asset or its single data asset; an item whose bands
    are separate assets has no single file to point at and is an error. An
    item of the season whose asset is not there goes to ``on_error`` when given
    (a :class:`~agricredit.errors.MissingTileError` with the item's geometry as
    its footprint), else stops the run.
    """
    if on_error is not None:
        options = {**options, "on_error": on_error}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CorruptInputError(f"not a readable STAC JSON document ({error})", path=path) from error
    kind = document.get("type") if isinstance(document, dict) else None
    if kind == "Feature":
        return _from_file(path, **options)
    if kind != "FeatureCollection":
        raise CorruptInputError("not a STAC Item or ItemCollection", path=path)
    features = document.get("features") or []
    if not isinstance(features, list) or not all(isinstance(item, dict) for item in features):
        raise CorruptInputError("an ItemCollection's features must be a list of STAC items", path=path)
    found = []
    for number, item in enumerate(features):
        record = f"item {number + 1}"
        links = [link for link in item.get("links") or [] if link.get("rel") == "self"]
        if links and "://" not in links[0].get("href", "://"):
            found.extend(_from_file((path.parent / links[0]["href"]).resolve(), **options))
            continue
        props = item.get("properties") or {}
        when = props.get("datetime") or props.get("start_datetime")
        if not when:
            raise SchemaError("STAC item has no datetime", path=path, record=record)
        assets = item.get("assets") or {}
        chosen = [a for key, a in assets.items() if key.lower() == "ndvi" or "ndvi" in (a.get("roles") or [])]
        data = [a for a in assets.values() if "data" in (a.get("roles") or [])]
        chosen = chosen or (data if len(data) == 1 else [])
        if not chosen:
            raise InputError("STAC item has per-band assets and no local self link; pass the item JSON files instead",
                             path=path, record=record)
        href = str(chosen[0].get("href", ""))
        if "://" in href and not href.startswith("file://"):
            raise InputError(f"asset {href!r} is remote; only local STAC items are read", path=path, record=record)
        tile = (path.parent / href.removeprefix("file://")).resolve()
        date = _parse_date(when, path=path, record=record)
        if not keep(date):
            continue
        if not tile.exists():
            error = MissingTileError(f"asset {href!r} does not exist", path=path, record=record,
                                     footprint=_item_footprint(item))
            if on_error is None:
                raise error
            on_error(tile, error)
            continue
        label = str(props.get("platform") or props.get("constellation") or "")
        found.extend(_from_file(tile, date=date, label=label, **options))
    return found


def _item_footprint(item: dict[str, Any]) -> Any:
    """A STAC item's footprint in WGS84 (a shapely geometry): its ``geometry``, else its ``bbox`` (2D or 3D);
    ``None`` if it has neither or they do not make a valid, non-empty outline."""
    import shapely
    from shapely.geometry import shape

    bbox = item.get("bbox") or ()
    try:
        if item.get("geometry"):
            footprint = shape(item["geometry"])
        elif len(bbox) in (4, 6):  # [west, south, (bottom,) east, north, (top)]
            half = len(bbox) // 2
            footprint = shapely.box(float(bbox[0]), float(bbox[1]), float(bbox[half]), float(bbox[half + 1]))
        else:
            return None
    except (AttributeError, KeyError, TypeError, ValueError, shapely.errors.ShapelyError):
        return None
    return footprint if footprint.is_valid and not footprint.is_empty else None


def _from_file(path: Path, *, date: dt.date | None = None, label: str | None = None,
               on_error: Callable[[Path, AgricreditError], None] | None = None, **options: Any) -> list[_Found]:
    """One tile (file, product folder, STAC item or NDVI raster), opened as the zonal engine reads it.

    A tile that cannot be opened at all is given to ``on_error`` (and left out) when there is one.
    """
    from agricredit.zonal import open_tile

    try:
        tile = open_tile(path.resolve(), date=date, **options)
    except CorruptInputError as error:
        if on_error is None:
            raise
        on_error(path.resolve(), error)
        return []
    product = tile.product
    sensor = label if label is not None else str(getattr(product, "sensor", "") or "")
    return [(dt.date.fromisoformat(tile.date), sensor, path.resolve(), product)]


def _from_folder(folder: Path, **options: Any) -> list[_Found]:
    """A folder that is one product (``.SAFE``, Landsat folder, band files), or holds products and files at any depth.

    A raster file met on the way that is not a product (no sensor or bands found
    in it) is skipped with a warning; any other error stops with its message.
    """
    from agricredit.raster import is_product_folder

    if is_product_folder(folder):
        return _from_file(folder, **options)
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            found.extend(_from_folder(entry, **options))
        elif entry.suffix.lower() in RASTER_SUFFIXES + PRODUCT_SUFFIXES:
            try:
                found.extend(_from_file(entry, **options))
            except (SensorError, MissingBandError) as error:
                logger.warning("skipped, not a product: %s", error)
    return found


def discover_acquisitions(
    source: str | Path | Sequence[str | Path],
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
    *,
    on_error: Callable[[Path, AgricreditError], None] | None = None,
    **reader_options: Any,
) -> list[Acquisition]:
    """Find the acquisitions of a season and group them by date.

    Every tile is opened once, here (as :func:`agricredit.zonal.open_tile` reads
    it), and carried in its :class:`Acquisition` for :func:`observation_table`.

    Parameters
    ----------
    source
        One or several of: a raster file or product (a ``.SAFE`` or Landsat
        product folder, a folder of band files, a STAC item JSON); a folder
        holding products and files at any depth; a manifest CSV with columns
        ``date,sensor,path`` (paths relative to the CSV; the date wins over the
        tile's; ``sensor``, if given, is the reader's sensor of a raw product); or
        a local STAC ItemCollection JSON.
    start, end
        Keep acquisitions on or after ``start`` and on or before ``end``
        (inclusive). A season may cross 1 January: ``start=2022-10-01,
        end=2023-06-30``.
    on_error
        Called with the path and the error of a tile that cannot be opened at
        all (a corrupt file) or that a manifest or a STAC ItemCollection lists
        but does not exist (:class:`~agricredit.errors.MissingTileError`, with
        the STAC item's footprint); the tile is left out and discovery goes on
        (per-record isolation, design §9).
        Without it the error stops the run.
    **reader_options
        Passed to :func:`agricredit.raster.open_product` (``sensor``,
        ``processing_baseline``, ``mask_classes`` ...) for every product.

    Returns
    -------
    list of Acquisition
        Sorted by date, one per date; a date's tiles are sorted and unique.
    """
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    start_date = dt.date.fromisoformat(str(start)) if start is not None else None
    end_date = dt.date.fromisoformat(str(end)) if end is not None else None
    if start_date and end_date and start_date > end_date:
        raise InputError(f"season start {start_date} is after its end {end_date}")

    def keep(date: dt.date) -> bool:
        return not ((start_date and date < start_date) or (end_date and date > end_date))

    if on_error is not None:
        reader_options = {**reader_options, "on_error": on_error}
    found: list[_Found] = []
    for item in sources:
        path = Path(item)
        if not path.exists():
            raise InputNotFoundError("no such file or folder", path=path)
        suffix = path.suffix.lower()
        if path.is_dir():
            found.extend(_from_folder(path, **reader_options))
        elif suffix == ".csv":
            found.extend(_from_manifest(path, keep, **reader_options))
        elif suffix in (".json", ".geojson"):
            found.extend(_from_stac(path, keep, **reader_options))
        else:
            found.extend(_from_file(path, **reader_options))
    by_date: dict[dt.date, tuple[dict[Path, Any], set[str]]] = {}
    for date, sensor, path, product in found:
        if not keep(date):
            continue
        products, sensors = by_date.setdefault(date, ({}, set()))
        products.setdefault(path, product)
        if sensor:
            sensors.add(sensor)
    acquisitions = [Acquisition(date, tuple(sorted(p)), tuple(sorted(s)), tuple(p[k] for k in sorted(p)))
                    for date, (p, s) in sorted(by_date.items())]
    logger.info("%d acquisition dates (%d tiles)", len(acquisitions), sum(len(a.paths) for a in acquisitions))
    return acquisitions


def tile_hashes(acquisitions: Iterable[Acquisition]) -> dict[str, str]:
    """sha256 of every tile of a season, keyed ``date/name``; a product folder is hashed over its files.

    The provenance of a season for audit records and model cards
    (see :func:`agricredit.outputs.sha256_path`).
    """
    from agricredit.outputs import sha256_path

    return {f"{acquisition.date}/{Path(path).name}": _file_sha256(Path(path).resolve(), *_stamp(path))
            if Path(path).is_file() else sha256_path(path)
            for acquisition in acquisitions for path in acquisition.paths}


def _stamp(path: str | Path) -> tuple[int, int, int]:
    """A file's size, modification time (ns) and inode: a tile whose stamp is unchanged is not hashed again."""
    stat = Path(path).stat()
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


@functools.lru_cache(maxsize=1024)
def _file_sha256(path: Path, size: int, mtime_ns: int, inode: int) -> str:
    """sha256 of a tile file, once per stamp in a process (a county's tiles are gigabytes, and the batch's
    ledger and the audit records both need their hashes)."""
    from agricredit.outputs import sha256_file

    return sha256_file(path)


def observation_table(plots: Any, acquisitions: Sequence[Acquisition], *,
                      progress: Callable[[int, int], None] | None = None, **zonal_options: Any) -> pd.DataFrame:
    """The zonal engine's long table (one row per plot and date) of ``plots`` over a season.

    Each tile is dated by its acquisition (so a manifest's date wins over the
    file's), and the tiles of one date are mosaicked per plot. The products
    :func:`discover_acquisitions` opened are read as they are (with its reader
    options), not opened again.

    Parameters
    ----------
    plots
        Accepted plots (a GeoDataFrame with ``plot_id``; see :func:`agricredit.plots.accepted`).
    acquisitions
        From :func:`discover_acquisitions`.
    progress
        Called as ``progress(done, total)`` after each date.
    **zonal_options
        Passed to :func:`agricredit.zonal.zonal_stats` (``threshold``, ``keep_uncovered``).
    """
    from agricredit.zonal import open_tile, zonal_stats

    tiles = [open_tile(product if product is not None else path, date=acquisition.date)
             for acquisition in acquisitions
             for path, product in zip(acquisition.paths, acquisition.products or [None] * len(acquisition.paths))]
    return zonal_stats(plots, tiles, progress=progress, **zonal_options)
