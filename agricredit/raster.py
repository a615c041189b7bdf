"""Opening satellite products, computing NDVI block by block, writing NDVI COGs.

The boundary is :func:`open_product`: a multiband GeoTIFF/COG, a folder of
per-band files (including a ``.SAFE`` ``GRANULE/*/IMG_DATA`` tree and Landsat
Collection 1/2 folders), a local STAC item JSON, or an NDVI raster written by
this module all become one :class:`Product` (opened lazily: no pixels read).
:func:`read_ndvi` reads NDVI and the cloud mask for any window of it (an
:class:`NdviReader` keeps the files open to read many windows);
:func:`write_ndvi_cog` writes the whole tile as a Cloud-Optimized GeoTIFF in
bounded memory.

NDVI is computed in float32 in DN space: with reflectance = DN x scale + offset,
``NDVI = (N - R) / (N + R + 2 offset/scale)``; for integer DNs the numerator and
denominator are exact in float32, so the result is the correctly rounded quotient.
Pixels where any input is no data, or the reflectance sum is <= 0, are NaN.
NDVI is clipped to [-1, 1] (negative reflectances after the Sentinel-2 offset can
otherwise push it past 1).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import itertools
import json
import logging
import math
import os
import queue
import re
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote, urlparse

import affine
import numpy as np
import rasterio
import rasterio.shutil
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from agricredit import __version__, sensors
from agricredit.errors import (
    CorruptInputError,
    CRSMismatchError,
    GridMismatchError,
    InputError,
    InputNotFoundError,
    MissingBandError,
    MissingMetadataError,
    OutputError,
    SensorError,
)
from agricredit.outputs import atomic_path

__all__ = [
    "BandRef",
    "Product",
    "NdviReport",
    "NdviReader",
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
_RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".vrt"}
_SKIP_PARTS = {"QI_DATA", "AUX_DATA", "HTML", "rep_info"}
_SKIP_NAME = re.compile(r"(preview|_PVI|_TCI|MSK_)", re.IGNORECASE)
#: Landsat product IDs (Collection 1/2, e.g. LC08_L2SP_123045_20210704_20210713_02_T1) and pre-collection scene IDs.
_LANDSAT_ID = re.compile(r"^L[CEOTM]0\d_L\w{3}_\d{6}_\d{8}_\d{8}_\d{2}_(T1|T2|RT)$|^L[CEOTM]\d{14}[A-Z]{3}\d{2}$", re.IGNORECASE)
#: Product metadata files that mark the top folder of a product (S2 MTD_MSIL1C/L2A.xml, Landsat *_MTL.txt).
_PRODUCT_METADATA = re.compile(r"^MTD_MSIL?\w*\.xml$|_MTL\.(txt|xml|json)$", re.IGNORECASE)
#: Tags copied from inputs to the NDVI output (provenance, never personal data).
_CARRIED_TAGS = ("SIMULATED", "PROVENANCE", "LICENSE")

#: Band aliases per sensor and role, most specific first (file-name tokens, band
#: descriptions, STAC asset keys).
_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "s2-l2a": {"red": ("B04", "red"), "nir": ("B08", "nir"), "mask": ("SCL",)},
    "s2-l1c": {"red": ("B04", "red"), "nir": ("B08", "nir"), "mask": ()},
    "landsat-c2-l2": {"red": ("SR_B4", "red"), "nir": ("SR_B5", "nir08"), "mask": ("QA_PIXEL",)},
    "landsat-c1": {"red": ("B4", "red"), "nir": ("B5", "nir08", "nir"), "mask": ("BQA",)},
    "generic": {"red": ("red",), "nir": ("nir",), "mask": ("mask",)},
}
#: Landsat default reflectance (scale, offset) when neither the MTL nor STAC gives one.
_LANDSAT_RADIOMETRY = {
    "landsat-c2-l2": (sensors.LANDSAT_C2_SCALE, sensors.LANDSAT_C2_OFFSET),
    "landsat-c1": (sensors.LANDSAT_C1_SCALE, sensors.LANDSAT_C1_OFFSET),
}


@dataclasses.dataclass(frozen=True)
class BandRef:
    """One band of one file: ``path`` and 1-based ``index``."""

    path: Path
    index: int = 1


@dataclasses.dataclass(frozen=True)
class Product:
    """One acquisition, opened lazily (no pixels read).

    Attributes
    ----------
    path
        What the user gave (file, folder or STAC item).
    sensor
        ``'s2-l2a' | 's2-l1c' | 'landsat-c2-l2' | 'landsat-c1' | 'generic' | 'ndvi'``.
    date
        Acquisition date, or None if unknown.
    crs, transform, width, height
        The grid of the red/NIR bands (the output grid).
    red, nir
        The red and NIR bands (for ``'ndvi'``: ``red`` is the NDVI band, ``nir`` None).
    mask, mask_rule
        The sensor's quality band (any grid; resampled nearest onto this grid)
        and the rule applied to it (see :func:`agricredit.sensors.apply_mask_rule`).
    external_mask
        An extra mask raster, nonzero = cloud.
    scale, offset
        Reflectance = DN x scale + offset.
    nodata
        DN marking no data in red/NIR (None: none).
    processing_baseline, add_offset
        Sentinel-2 baseline and add offset (DN) when known.
    tags
        Provenance tags carried to the output.
    """

    path: Path
    sensor: str
    date: datetime.date | None
    crs: CRS
    transform: affine.Affine
    width: int
    height: int
    red: BandRef
    nir: BandRef | None = None
    mask: BandRef | None = None
    mask_rule: str = "none"
    external_mask: BandRef | None = None
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None
    processing_baseline: str | None = None
    add_offset: float | None = None
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return self.height, self.width

    @property
    def full_mask_rule(self) -> str:
        """The mask rule including the external mask, as written to the ``MASK_RULE`` tag."""
        return self.mask_rule + ("+external" if self.external_mask is not None else "")


@dataclasses.dataclass(frozen=True)
class NdviReport:
    """What :func:`write_ndvi_cog` wrote.

    ``cloud_fraction`` = cloud-masked pixels / pixels inside the acquisition footprint
    (1.0 if the footprint is empty); ``valid_fraction`` = finite NDVI pixels / all pixels.
    """

    path: Path
    sensor: str
    date: datetime.date | None
    width: int
    height: int
    valid_fraction: float
    cloud_fraction: float
    nodata_fraction: float
    mask_rule: str
    quicklook: Path | None
    seconds: float

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly dict."""
        out = dataclasses.asdict(self)
        out["path"] = str(self.path)
        out["quicklook"] = None if self.quicklook is None else str(self.quicklook)
        out["date"] = None if self.date is None else self.date.isoformat()
        return out


# --------------------------------------------------------------------------- opening


def open_product(
    path: str | os.PathLike[str],
    *,
    sensor: str | None = None,
    bands: str | Mapping[str, int] | None = None,
    processing_baseline: str | None = None,
    date: datetime.date | str | None = None,
    mask_classes: str | Iterable[int] | None = None,
    no_mask: bool = False,
    mask_path: str | os.PathLike[str] | None = None,
    scale: float | None = None,
    offset: float | None = None,
    nodata: float | None = None,
) -> Product:
    """Open one acquisition lazily, in any supported layout.

    Parameters
    ----------
    path
        A multiband GeoTIFF/COG, a folder of per-band files (Sentinel-2 incl. ``.SAFE``,
        Landsat C1/C2), a local STAC item JSON, or an NDVI GeoTIFF written by
        :func:`write_ndvi_cog`.
    sensor
        Override the detected sensor (one of :data:`agricredit.sensors.SENSORS`).
    bands
        ``"red=N,nir=M[,mask=K]"`` for a multiband file (1-based); implies ``generic``
        unless the file's tags name a sensor.
    processing_baseline
        Sentinel-2 processing baseline (``"04.00"``); overrides the metadata.
    date
        Acquisition date; overrides metadata and file names.
    mask_classes
        Sentinel-2 SCL classes to remove (default 0,1,3,8,9,10).
    no_mask
        Do not apply the sensor's cloud/quality mask.
    mask_path
        An extra mask raster (nonzero = cloud), resampled nearest onto the tile grid.
    scale, offset, nodata
        Explicit radiometry: reflectance = DN x scale + offset; ``nodata`` DN. Override
        the sensor's defaults.

    Returns
    -------
    Product

    Raises
    ------
    InputNotFoundError, CorruptInputError, MissingBandError, GridMismatchError,
    CRSMismatchError, SensorError, MissingMetadataError
        One line naming the file and the reason.
    """
    path = Path(path)
    _check_readable(path)
    date, band_map = _parse_arguments(path, sensor, date, bands)
    if band_map is None and sensor in (None, "ndvi") and _is_ndvi_raster(path):
        return _ndvi_product(path, date)
    if sensor == "ndvi":
        raise SensorError("not an NDVI raster written by agricredit ndvi (no AGRICREDIT_PRODUCT=ndvi tag); "
                          "give --bands or another --sensor", path=path)
    found = _locate(path, band_map)
    sensor = sensor or found.sensor
    if sensor is None:
        raise SensorError("cannot tell the sensor from file names, band descriptions or metadata; pass --sensor or --bands", path=path)
    aliases = _ALIASES["generic" if band_map else sensor]
    red, nir = _red_nir(found, aliases, sensor, path)
    grid, file_nodata = _shared_grid(red, nir)
    baseline = _baseline(processing_baseline, found, path)
    scale, offset, add_offset = _radiometry(sensor, found, red, baseline, path, processing_baseline, scale, offset)
    if nodata is None:
        nodata = file_nodata if sensor == "generic" else 0.0  # S2 and Landsat: DN 0 is no data / fill
    if mask_classes is not None and sensor != "s2-l2a":
        log.warning("%s: --mask-classes applies to Sentinel-2 L2A SCL only; ignored for %s", path.name, sensor)
    mask, rule = (None, "none") if no_mask else _quality_mask(found, aliases["mask"], sensor, band_map, mask_classes, path)
    return Product(
        path=path,
        sensor=sensor,
        date=date or _metadata_date(found.tags, found.names, found.meta.get("date")),
        red=red,
        nir=nir,
        mask=mask,
        mask_rule=rule,
        external_mask=None if mask_path is None or no_mask else _external_mask(Path(mask_path)),
        scale=scale,
        offset=offset,
        nodata=None if nodata is None else float(nodata),
        processing_baseline=baseline if sensor.startswith("s2") else None,
        add_offset=add_offset,
        tags=tuple((k, found.tags[k]) for k in _CARRIED_TAGS if k in found.tags),
        **grid,
    )


def _check_readable(path: Path) -> None:
    """Raise unless ``path`` exists, is readable and is not an empty file."""
    if not path.exists():
        raise InputNotFoundError("no such file or folder", path=path)
    if not os.access(path, os.R_OK):
        raise InputNotFoundError("cannot read: permission denied", path=path)
    if path.is_file() and path.stat().st_size == 0:
        raise CorruptInputError("file is empty (0 bytes)", path=path)


def _open(path: Path) -> rasterio.DatasetReader:
    """Open a raster, turning every failure into one clear input error."""
    _check_readable(path)
    try:
        return rasterio.open(path)
    except RasterioError as error:
        raise CorruptInputError(f"not a readable raster (corrupt, truncated or unknown format): {error}", path=path) from error


def parse_bands(text: str | Mapping[str, int] | None) -> dict[str, int] | None:
    """Parse ``"red=3,nir=4[,mask=5]"`` into ``{'red': 3, 'nir': 4, 'mask': 5}`` (1-based)."""
    if text is None or isinstance(text, Mapping):
        return None if text is None else dict(text)
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("red", "nir", "mask") or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"bad band mapping {part!r}: expected red=N,nir=M[,mask=K] with 1-based band numbers")
        out[key] = int(value)
    if "red" not in out or "nir" not in out:
        raise ValueError(f"band mapping {text!r} needs both red= and nir=")
    return out


def _parse_arguments(
    path: Path, sensor: str | None, date: datetime.date | str | None, bands: str | Mapping[str, int] | None
) -> tuple[datetime.date | None, dict[str, int] | None]:
    """Check the sensor name; parse the date and the band mapping (errors name ``path``)."""
    if sensor is not None and sensor not in (*sensors.SENSORS, "ndvi"):
        raise SensorError(f"unknown sensor {sensor!r} (expected one of {', '.join(sensors.SENSORS)})", path=path)
    if isinstance(date, str):
        parsed_date = sensors.parse_date(date)
        if parsed_date is None:
            raise InputError(f"not a date: {date!r} (expected YYYY-MM-DD)", path=path)
        date = parsed_date
    try:
        return date, parse_bands(bands)
    except ValueError as error:
        raise InputError(str(error), path=path) from None


@dataclasses.dataclass
class _Found:
    """What a layout opener found, before the sensor rules are applied.

    ``candidates`` are (label, band) pairs searched by alias (file names, band
    descriptions, STAC asset keys); ``names`` are searched for a date; ``tags`` are
    the GeoTIFF tags of a multiband file; ``meta`` holds what product metadata says
    (baseline, add_offset, quantification, date, scale, offset); ``stac_scales`` maps
    an asset path to the (scale, offset) of its STAC ``raster:bands``.
    """

    candidates: list[tuple[str, BandRef]]
    sensor: str | None = None
    names: list[str] = dataclasses.field(default_factory=list)
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    stac_scales: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    def find(self, aliases: Iterable[str]) -> BandRef | None:
        """The band of the first alias that matches a label (the finest resolution if several)."""
        for alias in aliases:
            token = sensors.band_token(alias)
            hits = [ref for label, ref in self.candidates if token.search(label)]
            if hits:
                # Several resolutions of one band (.SAFE R10m/R20m/R60m): the finest wins.
                return min(hits, key=lambda ref: (_name_resolution(ref.path.name), str(ref.path)))
        return None


def _name_resolution(name: str) -> int:
    """The resolution in a file name (``..._20m.jp2`` -> 20; 0 if none)."""
    match = re.search(r"_(\d{2,3})m(?![A-Za-z0-9])", name)
    return int(match.group(1)) if match else 0


# Layouts: each opener returns a _Found.


def _is_ndvi_raster(path: Path) -> bool:
    """True if ``path`` is an NDVI raster written by :func:`write_ndvi_cog`."""
    if path.is_dir() or path.suffix.lower() == ".json":
        return False
    with _open(path) as ds:
        return ds.tags().get("AGRICREDIT_PRODUCT") == "ndvi"


def _locate(path: Path, bands: dict[str, int] | None) -> _Found:
    """The bands and metadata of a folder, a STAC item JSON or a multiband file."""
    if path.is_dir():
        return _folder_found(path, bands)
    if path.suffix.lower() == ".json":
        return _stac_found(path)
    return _file_found(path, bands)


def _file_found(path: Path, bands: dict[str, int] | None) -> _Found:
    """Bands of a multiband file: from ``--bands``, else from its band descriptions and tags."""
    with _open(path) as ds:
        tags, descriptions, count = ds.tags(), ds.descriptions, ds.count
    if bands is not None:
        for role, index in bands.items():
            if index > count:
                raise MissingBandError(f"--bands {role}={index}: the file has {count} band(s)", path=path)
        candidates = [(role, BandRef(path, index)) for role, index in bands.items()]
        return _Found(candidates, tags.get("AGRICREDIT_SENSOR") or "generic", [path.name], tags)
    candidates = [(d, BandRef(path, i + 1)) for i, d in enumerate(descriptions) if d]
    sensor = tags.get("AGRICREDIT_SENSOR") or sensors.sensor_from_band_names(d for d, _ in candidates)
    # A lone band file: maybe the user pointed at one file of a band folder.
    if sensor is None and count == 1 and sensors.sensor_from_band_names(p.name for p in path.parent.iterdir()):
        raise MissingBandError("a single band file; pass the folder holding the band files (e.g. B04 and B08)", path=path)
    if sensor is None and not candidates:
        raise MissingBandError(
            f"{count} band(s) without band descriptions or sensor tags; pass --bands red=N,nir=M", path=path
        )
    return _Found(candidates, sensor, [path.name], tags)


def is_product_folder(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is the folder of one product (its files, not a folder holding products).

    That is: a ``.SAFE``; a folder named by a Landsat product or scene ID; a folder
    with product metadata directly inside (``MTD_MSI*.xml``, ``*_MTL.txt``); or a
    folder with the red and NIR band files of some sensor directly inside and no
    product folder below it.
    """
    path = Path(path)
    return path.is_dir() and _product_folders(path) == [path]


def _product_folders(path: Path) -> list[Path]:
    """The product folders at or below the folder ``path``: itself if it is one, else those inside it."""
    if path.suffix.lower() == ".safe" or _LANDSAT_ID.match(path.name):
        return [path]
    children = sorted(path.iterdir())
    if any(_PRODUCT_METADATA.search(c.name) and c.is_file() for c in children):
        return [path]
    inner = [p for c in children if c.is_dir() for p in _product_folders(c)]
    if inner:
        return inner
    names = [c.name for c in children if c.suffix.lower() in _RASTER_SUFFIXES and c.is_file()]
    red_nir = any(
        all(any(sensors.band_token(alias).search(n) for alias in aliases[role] for n in names) for role in ("red", "nir"))
        for aliases in _ALIASES.values()
    )
    return [path] if red_nir else []


def _folder_found(path: Path, bands: dict[str, int] | None) -> _Found:
    """Band files of a folder (``.SAFE`` tree, Landsat folder) and its product metadata."""
    if bands is not None:
        raise InputError("--bands applies to a multiband file, not to a folder", path=path)
    if len(inner := _product_folders(path)) > 1:
        raise InputError(f"holds {len(inner)} products ({inner[0].name}, ...), not one; give them one by one "
                         "(or the folder to a season command, which reads each)", path=path)
    files = [
        p
        for p in sorted(path.rglob("*"))
        if p.suffix.lower() in _RASTER_SUFFIXES
        and p.is_file()
        and not _SKIP_PARTS.intersection(p.relative_to(path).parts)
        and not _SKIP_NAME.search(p.name)
    ]
    names = [p.name for p in files]
    found = _Found([(p.name, BandRef(p)) for p in files], sensors.sensor_from_band_names(names), [path.name, *names])
    found.meta = _folder_metadata(path)
    from_meta = found.meta.pop("sensor", None)
    if from_meta and (found.sensor is None or found.sensor[:2] == from_meta[:2]):
        found.sensor = from_meta  # metadata knows the level (L2A/L1C, C1/C2) better than names
    return found


def _stac_found(path: Path) -> _Found:
    """Assets, sensor, baseline, date and asset scales of a local STAC item JSON."""
    try:
        item = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptInputError(f"not a readable STAC item JSON: {error}", path=path) from error
    if not isinstance(item, dict) or not isinstance(item.get("assets"), dict):
        raise CorruptInputError("not a STAC item (no 'assets' object)", path=path)
    props = item.get("properties") or {}
    found = _Found([], names=[path.name])
    for key, asset in item["assets"].items():
        href = (asset or {}).get("href")
        if not href or not (str(asset.get("type", "")).startswith("image/") or Path(urlparse(href).path).suffix.lower() in _RASTER_SUFFIXES):
            continue
        ref = BandRef(_local_href(href, path))
        names = [key] + [b.get("name", "") for b in asset.get("eo:bands", []) if isinstance(b, dict)]
        found.candidates.extend((name, ref) for name in names if name)
        raster_bands = asset.get("raster:bands") or []
        if raster_bands and isinstance(raster_bands[0], dict) and "scale" in raster_bands[0]:
            found.stac_scales[str(ref.path)] = (float(raster_bands[0]["scale"]), float(raster_bands[0].get("offset", 0.0)))
    found.sensor = _stac_sensor(props, found)
    if props.get("s2:processing_baseline") is not None:
        found.meta["baseline"] = str(props["s2:processing_baseline"])
    found.meta["date"] = sensors.parse_date(str(props.get("datetime") or props.get("start_datetime") or "")[:10])
    return found


def _stac_sensor(props: Mapping[str, Any], found: _Found) -> str | None:
    """The sensor of a STAC item from its platform and level properties, else its band names."""
    platform = f"{props.get('constellation', '')} {props.get('platform', '')}".lower()
    level = f"{props.get('s2:product_type', '')} {props.get('processing:level', '')}".upper()
    if "sentinel-2" in platform:
        return "s2-l1c" if "1C" in level else "s2-l2a" if ("2A" in level or found.find(("SCL",))) else "s2-l1c"
    if "landsat" in platform:
        return "landsat-c1" if str(props.get("landsat:collection_number", "")).endswith("1") else "landsat-c2-l2"
    return sensors.sensor_from_band_names(name for name, _ in found.candidates)


def _local_href(href: str, item_path: Path) -> Path:
    """The local file of a STAC asset href (relative to the item); remote hrefs are refused."""
    parsed = urlparse(href)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and href[1:3] in (":\\", ":/")):
        local = Path(unquote(parsed.path) if parsed.scheme == "file" else href)
        return local if local.is_absolute() else (item_path.parent / local).resolve()
    raise InputError(f"asset {href!r} is remote; only local files are read (no network)", path=item_path)


def _ndvi_product(path: Path, date: datetime.date | None) -> Product:
    """An NDVI raster written by :func:`write_ndvi_cog`, as a Product of sensor ``'ndvi'``."""
    with _open(path) as ds:
        tags, grid = ds.tags(), _grid(ds)
    return Product(
        path=path,
        sensor="ndvi",
        date=date or _metadata_date(tags, [path.name]),
        red=BandRef(path, 1),
        mask_rule=tags.get("MASK_RULE", "none"),
        processing_baseline=tags.get("PROCESSING_BASELINE") or None,
        tags=tuple((k, v) for k, v in tags.items() if k in _CARRIED_TAGS),
        **grid,
    )


# Metadata files.


def _folder_metadata(path: Path) -> dict[str, Any]:
    """Metadata of a product folder: S2 ``MTD_MSI*.xml`` (or the tile MTD's date), Landsat MTL, product name."""
    meta: dict[str, Any] = {}
    if mtd := (sorted(path.glob("MTD_MSI*.xml")) or sorted(path.rglob("MTD_MSI*.xml"))):
        meta.update(_s2_mtd(mtd[0]))
    elif tile_mtd := sorted(path.rglob("MTD_TL.xml")):
        meta.update({k: v for k, v in _s2_mtd(tile_mtd[0]).items() if k == "date"})
    if mtl := sorted(path.rglob("*_MTL.txt")):
        meta.update(_landsat_mtl(mtl[0]))
    if "baseline" not in meta and (match := re.search(r"_N(\d{4})_", path.name)):
        meta["baseline"] = match.group(1)  # product name convention ..._N0400_... (baseline 04.00)
    return meta


def _xml_text(root: ET.Element, local: str, **attrs: str) -> str | None:
    """Text of the first element named ``local`` (any namespace) with ``attrs``."""
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == local and all(el.get(k) == v for k, v in attrs.items()) and el.text and el.text.strip():
            return el.text.strip()
    return None


def _xml_first(root: ET.Element, names: Iterable[str]) -> str | None:
    """Text of the first of ``names`` present in ``root``."""
    return next((text for name in names if (text := _xml_text(root, name)) is not None), None)


def _s2_mtd(xml_path: Path) -> dict[str, Any]:
    """Read baseline, add offset, quantification, date and level from an S2 ``MTD_MSI*.xml``."""
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as error:
        raise CorruptInputError(f"cannot parse metadata XML: {error}", path=xml_path) from error
    meta: dict[str, Any] = {}
    if baseline := _xml_text(root, "PROCESSING_BASELINE"):
        meta["baseline"] = baseline
    # band_id 3 = B04 in the B01..B12 (with B8A) list of the product metadata.
    for name in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET"):
        if (value := _xml_text(root, name, band_id="3")) is not None:
            meta["add_offset"] = float(value)
            nir = _xml_text(root, name, band_id="7")
            if nir is not None and float(nir) != float(value):
                raise InputError(f"{name} differs between B04 ({value}) and B08 ({nir})", path=xml_path)
    if (value := _xml_first(root, ("BOA_QUANTIFICATION_VALUE", "QUANTIFICATION_VALUE"))) is not None:
        meta["quantification"] = float(value)
    if (value := _xml_first(root, ("PRODUCT_START_TIME", "SENSING_TIME", "DATATAKE_SENSING_START"))) is not None:
        meta["date"] = sensors.parse_date(value[:10])
    product_type = _xml_text(root, "PRODUCT_TYPE") or ""
    if "2A" in product_type:
        meta["sensor"] = "s2-l2a"
    elif "1C" in product_type:
        meta["sensor"] = "s2-l1c"
    return meta


def _landsat_mtl(mtl_path: Path) -> dict[str, Any]:
    """Read date, collection and band-4/5 reflectance scale/offset from a Landsat ``*_MTL.txt``."""
    values, reflectance = _read_mtl(mtl_path)
    meta: dict[str, Any] = {}
    if date := sensors.parse_date(values.get("DATE_ACQUIRED")):
        meta["date"] = date
    collection = values.get("COLLECTION_NUMBER", "")
    if collection.endswith("2") and values.get("PROCESSING_LEVEL", "").startswith("L2"):
        meta["sensor"] = "landsat-c2-l2"
    elif collection.endswith("1"):
        meta["sensor"] = "landsat-c1"
    # Level-2 surface reflectance parameters win over the Level-1 TOA rescaling in a C2 L2 MTL.
    group = next((g for g in reflectance if "LEVEL2_SURFACE_REFLECTANCE" in g), None)
    params = reflectance.get(group or next((g for g in reflectance if "RESCALING" in g), ""), {})
    try:
        scales = {params[f"REFLECTANCE_MULT_BAND_{b}"] for b in (4, 5)}
        offsets = {params[f"REFLECTANCE_ADD_BAND_{b}"] for b in (4, 5)}
    except KeyError:
        return meta
    if len(scales) == 1 and len(offsets) == 1:
        meta["scale"], meta["offset"] = float(scales.pop()), float(offsets.pop())
    return meta


def _read_mtl(mtl_path: Path) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """``KEY = value`` pairs of an MTL: the first of each key, and the ``REFLECTANCE_*`` ones per GROUP."""
    try:
        lines = mtl_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise InputNotFoundError(f"cannot read: {error.strerror}", path=mtl_path) from error
    values: dict[str, str] = {}
    reflectance: dict[str, dict[str, str]] = {}
    group = ""
    for line in lines:
        key, sep, value = (s.strip() for s in line.partition("="))
        if key == "GROUP":
            group = value
        elif sep and key.startswith("REFLECTANCE_"):
            reflectance.setdefault(group, {})[key] = value.strip('"')
        elif sep:
            values.setdefault(key, value.strip('"'))
    return values, reflectance


def _metadata_date(tags: Mapping[str, str], names: Iterable[str], meta_date: datetime.date | None = None) -> datetime.date | None:
    """The acquisition date: the ``ACQUISITION_DATE`` tag, else product metadata, else the first dated name."""
    return sensors.parse_date(tags.get("ACQUISITION_DATE")) or meta_date or next(filter(None, map(sensors.parse_date, names)), None)


# Bands, grid, radiometry and mask of a found product.


def _red_nir(found: _Found, aliases: Mapping[str, tuple[str, ...]], sensor: str, path: Path) -> tuple[BandRef, BandRef]:
    """The red and NIR bands (MissingBandError listing the aliases looked for)."""
    refs = []
    for role, key in (("red", "red"), ("NIR", "nir")):
        ref = found.find(aliases[key])
        if ref is None:
            raise MissingBandError(f"no {role} band found for sensor {sensor} (looked for {', '.join(aliases[key])})", path=path)
        refs.append(ref)
    return refs[0], refs[1]


def _shared_grid(red: BandRef, nir: BandRef) -> tuple[dict[str, Any], float | None]:
    """The grid red and NIR share (checked: bands exist, a CRS, equal grids) and red's nodata."""
    with _open(red.path) as rds, _open(nir.path) as nds:
        for ds, ref in ((rds, red), (nds, nir)):
            if ref.index > ds.count:
                raise MissingBandError(f"band {ref.index} does not exist ({ds.count} band(s))", path=ref.path)
        if rds.crs is None:
            raise CRSMismatchError("raster has no CRS", path=red.path)
        if nds.crs != rds.crs:
            raise CRSMismatchError(f"NIR band CRS {nds.crs} differs from red band CRS {rds.crs}", path=nir.path)
        if nds.shape != rds.shape or not nds.transform.almost_equals(rds.transform):
            raise GridMismatchError(
                f"NIR band grid {nds.width}x{nds.height} {tuple(nds.transform)[:6]} differs from red band grid "
                f"{rds.width}x{rds.height} {tuple(rds.transform)[:6]}; red and NIR must share a grid",
                path=nir.path,
            )
        return _grid(rds), rds.nodata


def _grid(ds: rasterio.DatasetReader) -> dict[str, Any]:
    """The grid of a dataset as Product fields (crs, transform, width, height)."""
    return {"crs": ds.crs, "transform": ds.transform, "width": ds.width, "height": ds.height}


def _baseline(processing_baseline: str | None, found: _Found, path: Path) -> str | None:
    """The Sentinel-2 processing baseline as ``NN.NN``: the argument, else tags, else metadata."""
    baseline = processing_baseline or found.tags.get("PROCESSING_BASELINE") or found.meta.get("baseline")
    if baseline is None:
        return None
    parsed = sensors.parse_baseline(str(baseline))
    if parsed is None:
        raise InputError(f"not a processing baseline: {baseline!r} (expected e.g. 04.00)", path=path)
    return f"{parsed[0]:02d}.{parsed[1]:02d}"


def _radiometry(
    sensor: str, found: _Found, red: BandRef, baseline: str | None, path: Path,
    processing_baseline: str | None, scale: float | None, offset: float | None,
) -> tuple[float, float, float | None]:
    """(scale, offset, Sentinel-2 add offset in DN): explicit values, else metadata, else sensor defaults."""
    add_offset = None
    stac = found.stac_scales.get(str(red.path))
    if scale is not None or offset is not None:
        scale, offset = (1.0 if scale is None else float(scale)), (0.0 if offset is None else float(offset))
    elif sensor.startswith("s2") and processing_baseline is None and stac is not None:
        scale, offset = stac
        add_offset = offset / scale
    elif sensor.startswith("s2"):
        quant = float(found.tags.get("QUANTIFICATION_VALUE") or found.meta.get("quantification") or sensors.S2_QUANTIFICATION)
        add_offset = _s2_add_offset(processing_baseline, baseline, found, path)
        scale, offset = 1.0 / quant, add_offset / quant
    elif sensor in _LANDSAT_RADIOMETRY:
        default_scale, default_offset = _LANDSAT_RADIOMETRY[sensor]
        scale, offset = stac or (float(found.meta.get("scale", default_scale)), float(found.meta.get("offset", default_offset)))
    else:
        scale, offset = 1.0, 0.0
    if not (math.isfinite(scale) and scale > 0 and math.isfinite(offset)):
        raise InputError(f"scale must be > 0 and offset finite (got scale={scale}, offset={offset})", path=path)
    return scale, offset, add_offset


def _s2_add_offset(processing_baseline: str | None, baseline: str | None, found: _Found, path: Path) -> float:
    """The Sentinel-2 add offset (DN): from --processing-baseline, tags, MTD, else the baseline."""
    if processing_baseline is not None:
        return sensors.s2_add_offset(processing_baseline)
    tag = next((found.tags[k] for k in ("ADD_OFFSET", "BOA_ADD_OFFSET", "RADIO_ADD_OFFSET") if k in found.tags), None)
    if tag is not None:
        return float(tag)
    if found.meta.get("add_offset") is not None:
        return float(found.meta["add_offset"])
    if baseline is not None:
        return sensors.s2_add_offset(baseline)
    raise MissingMetadataError(
        "Sentinel-2 product without a processing baseline (no MTD_*.xml, STAC s2:processing_baseline, "
        "tags or N0xxx product name); pass --processing-baseline NN.NN (04.00 or later subtracts 1000 DN)",
        path=path,
    )


def _quality_mask(
    found: _Found, aliases: Iterable[str], sensor: str, band_map: dict[str, int] | None,
    mask_classes: str | Iterable[int] | None, path: Path,
) -> tuple[BandRef | None, str]:
    """The quality band and its mask rule; MissingBandError if the sensor needs one and it is absent."""
    ref = found.find(aliases)
    if ref is None:
        name = sensors.BAND_NAMES.get(sensor, {}).get("mask")
        if band_map is None and name:
            raise MissingBandError(f"no {name} quality band found for sensor {sensor}; pass --no-mask to go without", path=path)
        return None, "none"
    if sensor == "generic":
        return ref, "nonzero"
    try:
        rule = sensors.mask_rule_for(sensor, mask_classes)
    except ValueError as error:
        raise InputError(str(error), path=path) from None
    if rule == "bqa-c1":
        with _open(ref.path) as qds:
            sample = qds.read(ref.index, out_shape=(min(qds.height, 256), min(qds.width, 256)))
        if sensors.bqa_is_precollection(sample):
            rule = "bqa-pre"
    return ref, rule


def _external_mask(path: Path) -> BandRef:
    """An extra mask raster (nonzero = cloud), checked to open."""
    _open(path).close()
    return BandRef(path, 1)


# --------------------------------------------------------------------------- reading


def ndvi_from_dn(
    red: np.ndarray, nir: np.ndarray, *, scale: float = 1.0, offset: float = 0.0, nodata: float | None = None
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

    Returns
    -------
    ndvi, fill
        NDVI with NaN where any input is no data or the reflectance sum is <= 0,
        clipped to [-1, 1]; ``fill`` is True where an input is no data.
    """
    r = red.astype(np.float32, copy=False)
    n = nir.astype(np.float32, copy=False)
    floats = red.dtype.kind == "f" or nir.dtype.kind == "f"
    fill = (np.isnan(r) | np.isnan(n)) if floats else np.zeros(r.shape, bool)
    if nodata is not None and not math.isnan(nodata):
        fill |= (red == nodata) | (nir == nodata)
    denominator = n + r
    denominator += np.float32(2.0 * offset / scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = np.subtract(n, r, dtype=np.float32)
        ndvi /= denominator
    ndvi[fill | ~(denominator > 0)] = np.nan
    np.clip(ndvi, -1.0, 1.0, out=ndvi)
    return ndvi, fill


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

    def _read(self, ds, ref: BandRef, window: Window) -> np.ndarray:
        """Read band ``ref`` of ``ds`` for ``window`` (a read failure names the file)."""
        try:
            return ds.read(ref.index, window=window)
        except RasterioError as error:
            raise CorruptInputError(f"cannot read pixels (truncated or corrupt file?): {error}", path=ref.path) from error

    def read(self, window: Window | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(ndvi, cloud, fill)`` for ``window`` (whole tile if None); see :func:`read_ndvi`.

        ``fill`` is True where an input is no data (outside the acquisition).
        """
        p = self.product
        window = window or _full_window(p)
        if p.sensor == "ndvi":
            return self._read_ndvi(window)
        assert p.nir is not None
        red = self._read(self.red, p.red, window)
        nir = self._read(self.nir, p.nir, window)
        ndvi, fill = ndvi_from_dn(red, nir, scale=p.scale, offset=p.offset, nodata=p.nodata)
        cloud = np.zeros(ndvi.shape, bool)
        if p.mask is not None:
            qa_fill, qa_cloud = sensors.apply_mask_rule(p.mask_rule, self._read(self.mask, p.mask, window))
            fill |= qa_fill
            cloud |= qa_cloud
        if p.external_mask is not None:
            cloud |= self._read(self.external, p.external_mask, window) != 0
        cloud &= ~fill
        ndvi[fill | cloud] = np.nan
        return ndvi, cloud, fill

    def _read_ndvi(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ndvi, cloud, fill) of an NDVI raster: cloud = NaN pixels its internal mask marks as observed."""
        ndvi = self._read(self.red, self.product.red, window).astype(np.float32, copy=False)
        fill = self.red.read_masks(1, window=window) == 0 if self.footprint else np.zeros(ndvi.shape, bool)
        return ndvi, np.isnan(ndvi) & ~fill, fill

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


def _output_tags(product: Product, cloud_fraction: float, valid_fraction: float) -> dict[str, str]:
    tags = dict(product.tags)
    tags.update(
        AGRICREDIT_PRODUCT="ndvi",
        AGRICREDIT_SENSOR=product.sensor,
        AGRICREDIT_VERSION=__version__,
        ACQUISITION_DATE="" if product.date is None else product.date.isoformat(),
        PROCESSING_BASELINE=product.processing_baseline or "",
        ADD_OFFSET="" if product.add_offset is None else f"{product.add_offset:g}",
        SCALE=repr(product.scale),
        OFFSET=repr(product.offset),
        MASK_RULE=product.full_mask_rule,
        CLOUD_FRACTION=f"{cloud_fraction:.6f}",
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
        log.warning("%s: no valid pixels (cloud fraction %.3f); the output is all NaN", product.path, cloud_fraction)
    quicklook_path = None
    if quicklook is not None:
        quicklook_path = write_quicklook(out_path, quicklook, title=_title(product))
    return NdviReport(
        path=out_path, sensor=product.sensor, date=product.date, width=product.width, height=product.height,
        valid_fraction=valid_fraction, cloud_fraction=cloud_fraction, nodata_fraction=nodata_fraction,
        mask_rule=product.full_mask_rule, quicklook=quicklook_path, seconds=time.perf_counter() - start,
    )


def _write_stage(product: Product, stage: Path, workers: int,
                 progress: Callable[[int, int], None] | None) -> tuple[float, float, float]:
    """Write NDVI, its observed-pixel mask and tags to a tiled GeoTIFF; return the cloud, valid and nodata fractions."""
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
        cloud_fraction = cloudy / footprint if footprint else 1.0
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
