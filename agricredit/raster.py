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
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote, urlparse

import affine
import numpy as np
import rasterio
import rasterio.features
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
    # Landsat red/NIR band names depend on the spacecraft: see _aliases.
    "landsat-c2-l2": {"red": ("red",), "nir": ("nir08",), "mask": ("QA_PIXEL",)},
    "landsat-c1": {"red": ("red",), "nir": ("nir08", "nir"), "mask": ("BQA",)},
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
    spacecraft
        Landsat spacecraft (``'LANDSAT_5'``), which sets the red/NIR band numbers.
    saturated_dn
        DN of a saturated reading in red/NIR (the largest DN of the data type), never valid.
    defect, defect_rule
        A band marking saturated or defective pixels (Landsat ``QA_RADSAT``) and its
        rule (``qa_radsat:B1,B2,...``: the bits that invalidate red/NIR).
    cloud_shapes
        Cloud polygons in the product CRS (Sentinel-2 L1C ``MSK_CLOUDS_B00.gml``),
        rasterized onto each window read.
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
    spacecraft: str | None = None
    saturated_dn: float | None = None
    defect: BandRef | None = None
    defect_rule: str = "none"
    cloud_shapes: tuple[Any, ...] = dataclasses.field(default=(), compare=False, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return self.height, self.width

    @property
    def full_mask_rule(self) -> str:
        """The mask rule including the external mask, as written to the ``MASK_RULE`` tag."""
        return self.mask_rule + ("+external" if self.external_mask is not None else "")

    @property
    def cloud_masked(self) -> bool:
        """True if a cloud mask is applied (the product's own or an external one).

        False when the product has none (an "unmasked" observation: its cloud
        fraction is unknown) or masking was switched off.
        """
        return self.full_mask_rule != "none"


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
    _check_declared_sensor(sensor, found, path)
    sensor = sensor or found.sensor
    if sensor is None:
        raise SensorError("cannot tell the sensor from file names, band descriptions or metadata; pass --sensor or --bands", path=path)
    if found.meta.get("unsupported"):
        raise SensorError(found.meta["unsupported"], path=path)
    spacecraft = _landsat_spacecraft(found, path) if sensor.startswith("landsat") and band_map is None else None
    aliases = _aliases(sensor, band_map, spacecraft, path)
    red, nir = _red_nir(found, aliases, sensor, path)
    grid, file_nodata, dtype = _shared_grid(red, nir)
    baseline = _baseline(processing_baseline, found, path)
    scale, offset, add_offset = _radiometry(sensor, found, (red, nir), spacecraft, baseline, path, processing_baseline, scale, offset)
    if nodata is None:
        nodata = file_nodata if sensor == "generic" else 0.0  # S2 and Landsat: DN 0 is no data / fill
    if mask_classes is not None and sensor != "s2-l2a":
        log.warning("%s: --mask-classes applies to Sentinel-2 L2A SCL only; ignored for %s", path.name, sensor)
    mask, rule, shapes = (None, "none", ()) if no_mask else _cloud_mask(
        found, aliases["mask"], sensor, band_map, mask_classes, baseline, grid["crs"], path)
    defect, defect_rule = _defect_band(found, spacecraft) if sensor == "landsat-c2-l2" and spacecraft else (None, "none")
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
        spacecraft=spacecraft,
        saturated_dn=_saturated_dn(sensor, dtype),
        defect=defect,
        defect_rule=defect_rule,
        cloud_shapes=shapes,
        **grid,
    )


def _check_declared_sensor(declared: str | None, found: _Found, path: Path) -> None:
    """Raise if the sensor a manifest row or ``--sensor`` declares contradicts what the tile says of itself.

    The tile speaks through its tags, product metadata (MTD/MTL, STAC properties)
    and band names (an SCL band is L2A; SR_B* bands are Landsat Collection 2
    Level-2; B04/B08 and B4/B5 tell Sentinel-2 from Landsat). ``generic`` declares
    no sensor and contradicts nothing.
    """
    if declared in (None, "generic", "ndvi"):
        return
    if found.evidence is not None:
        said, because = found.evidence
        contradiction = said != declared
    else:
        said, because = found.sensor, "band names"
        contradiction = said is not None and said.split("-")[0] != declared.split("-")[0]
    if contradiction:
        raise SensorError(
            f"the declared sensor {declared!r} (manifest row or --sensor) contradicts the tile: its {because} "
            f"say {said!r}; correct the declaration (to go without the cloud mask, use --no-mask)", path=path)


def _landsat_spacecraft(found: _Found, path: Path) -> str:
    """The Landsat spacecraft: tags, MTL ``SPACECRAFT_ID`` or STAC platform, else product ID / file names."""
    for text in (found.tags.get("SPACECRAFT_ID"), found.tags.get("LANDSAT_SPACECRAFT"), found.meta.get("spacecraft")):
        if spacecraft := sensors.landsat_spacecraft(text):
            return spacecraft
    named = {s for s in map(sensors.landsat_spacecraft, found.names) if s}
    if len(named) == 1:
        return named.pop()
    raise SensorError(
        "cannot tell the Landsat spacecraft (no MTL SPACECRAFT_ID, STAC platform, SPACECRAFT_ID tag or product ID "
        f"in the names{': names say ' + ', '.join(sorted(named)) if named else ''}); band 4 is NIR on Landsat 4/5/7 "
        "and red on Landsat 8/9, so NDVI cannot be computed safely", path=path)


def _aliases(sensor: str, band_map: dict[str, int] | None, spacecraft: str | None, path: Path) -> dict[str, tuple[str, ...]]:
    """Band aliases per role; Landsat red/NIR names by spacecraft (TM/ETM+ bands 3/4, OLI bands 4/5)."""
    if band_map:
        return _ALIASES["generic"]
    aliases = _ALIASES[sensor]
    if spacecraft is None:
        return aliases
    try:
        names = sensors.landsat_bands(sensor, spacecraft)
    except ValueError as error:
        raise SensorError(str(error), path=path) from None
    return {**aliases, "red": (names["red"], *aliases["red"]), "nir": (names["nir"], *aliases["nir"])}


def _saturated_dn(sensor: str, dtype: str) -> float | None:
    """The saturation DN of red/NIR: the largest value of an unsigned integer type (65535 in uint16).

    Sentinel-2 and Landsat mark saturation so; a generic tile only when it is uint16.
    """
    kind = np.dtype(dtype)
    if kind.kind != "u" or (sensor == "generic" and kind != np.uint16):
        return None
    return float(np.iinfo(kind).max)


def _defect_band(found: _Found, spacecraft: str) -> tuple[BandRef | None, str]:
    """Landsat Collection 2 ``QA_RADSAT`` and its rule (red/NIR saturation and defect bits), if the product has it."""
    ref = found.find(("QA_RADSAT",))
    if ref is None:
        return None, "none"
    return ref, "qa_radsat:" + ",".join(map(str, sensors.radsat_bits(spacecraft)))


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
    an asset path to the (scale, offset) of its STAC ``raster:bands``; ``evidence`` is
    (sensor, what says so) when the tile names its sensor positively (tags, product
    metadata, an SCL or SR_B* band), which a declared sensor must not contradict.
    """

    candidates: list[tuple[str, BandRef]]
    sensor: str | None = None
    evidence: tuple[str, str] | None = None
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
        return _Found(candidates, tags.get("AGRICREDIT_SENSOR") or "generic", _tag_evidence(tags), [path.name], tags)
    candidates = [(d, BandRef(path, i + 1)) for i, d in enumerate(descriptions) if d]
    labels = [d for d, _ in candidates]
    sensor = tags.get("AGRICREDIT_SENSOR") or sensors.sensor_from_band_names(labels)
    # A lone band file: maybe the user pointed at one file of a band folder.
    if sensor is None and count == 1 and sensors.sensor_from_band_names(p.name for p in path.parent.iterdir()):
        raise MissingBandError("a single band file; pass the folder holding the band files (e.g. B04 and B08)", path=path)
    if sensor is None and not candidates:
        raise MissingBandError(
            f"{count} band(s) without band descriptions or sensor tags; pass --bands red=N,nir=M", path=path
        )
    return _Found(candidates, sensor, _tag_evidence(tags) or _band_evidence(labels, "band"), [path.name], tags)


def _tag_evidence(tags: Mapping[str, str]) -> tuple[str, str] | None:
    """The sensor the ``AGRICREDIT_SENSOR`` tag names, as evidence."""
    sensor = tags.get("AGRICREDIT_SENSOR")
    return (sensor, f"tag AGRICREDIT_SENSOR={sensor}") if sensor in sensors.SENSORS else None


def _band_evidence(names: Iterable[str], kind: str) -> tuple[str, str] | None:
    """The sensor band names name positively: an SCL band (with B04/B08) is L2A; SR_B4/SR_B5 are Landsat C2 L2."""
    guess = sensors.sensor_from_band_names(names)
    if guess == "s2-l2a":
        return guess, f"{kind} SCL (scene classification, Level-2A only)"
    if guess == "landsat-c2-l2":
        return guess, f"{kind}s SR_B* (Landsat Collection 2 Level-2 surface reflectance)"
    return None


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
    generic = _ALIASES["generic"]
    red_nir = sensors.sensor_from_band_names(names) is not None or all(
        any(sensors.band_token(alias).search(n) for alias in generic[role] for n in names) for role in ("red", "nir"))
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
    found = _Found([(p.name, BandRef(p)) for p in files], sensors.sensor_from_band_names(names),
                   _band_evidence(names, "band file"), [path.name, *names])
    found.meta = _folder_metadata(path)
    from_meta = found.meta.pop("sensor", None)
    if from_meta:
        found.evidence = (from_meta, found.meta.pop("sensor_source"))
        if found.sensor is None or found.sensor[:2] == from_meta[:2]:
            found.sensor = from_meta  # metadata knows the level (L2A/L1C, C1/C2) better than names
    if found.sensor and found.sensor.startswith("s2"):
        found.meta.update(_s2_cloud_masks(path))
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
    if _stac_platform(props):
        found.evidence = (found.sensor, f"STAC properties (platform {_stac_platform(props)!r})")
    else:
        found.evidence = _band_evidence([name for name, _ in found.candidates], "asset")
    found.meta["spacecraft"] = props.get("platform")
    if props.get("s2:processing_baseline") is not None:
        found.meta["baseline"] = str(props["s2:processing_baseline"])
    found.meta["date"] = sensors.parse_date(str(props.get("datetime") or props.get("start_datetime") or "")[:10])
    return found


def _stac_platform(props: Mapping[str, Any]) -> str:
    """The constellation and platform of a STAC item, if Sentinel-2 or Landsat ('' otherwise)."""
    platform = f"{props.get('constellation', '')} {props.get('platform', '')}".strip().lower()
    return platform if "sentinel-2" in platform or "landsat" in platform else ""


def _stac_sensor(props: Mapping[str, Any], found: _Found) -> str | None:
    """The sensor of a STAC item from its platform and level properties, else its band names."""
    platform = _stac_platform(props)
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


def _s2_cloud_masks(path: Path) -> dict[str, Path]:
    """The Sentinel-2 cloud masks of a product folder: ``MSK_CLASSI_B00`` raster and ``MSK_CLOUDS_B00.gml``."""
    masks = {}
    if classi := sorted(p for p in path.rglob("MSK_CLASSI_B00.*") if p.suffix.lower() in _RASTER_SUFFIXES):
        masks["msk_classi"] = classi[0]
    if gml := sorted(path.rglob("MSK_CLOUDS_B00.gml")):
        masks["msk_clouds_gml"] = gml[0]
    return masks


def _s2_l1c_mask(found: _Found, baseline: str | None, crs: CRS, path: Path) -> tuple[BandRef | None, str, tuple[Any, ...]]:
    """The cloud mask of a Sentinel-2 L1C product: ``MSK_CLASSI_B00`` from baseline 04.00, the GML polygons before.

    Either is used when it is the only one present; with neither, the product is
    unmasked (its cloud fraction unknown) and a warning says so.
    """
    classi, gml = found.meta.get("msk_classi"), found.meta.get("msk_clouds_gml")
    raster_era = baseline is None or sensors.parse_baseline(baseline) >= sensors.S2_OFFSET_BASELINE
    if classi is not None and (raster_era or gml is None):
        with _open(classi) as ds:
            if ds.count < 2:
                raise CorruptInputError(f"{ds.count} band(s); MSK_CLASSI has 3 (opaque clouds, cirrus, snow/ice)", path=classi)
        return BandRef(classi, 1), "msk_classi:opaque,cirrus", ()
    if gml is not None:
        return None, "gml:opaque,cirrus", _gml_cloud_shapes(gml, crs)
    log.warning("%s: Sentinel-2 L1C without a cloud mask of its own (no QI_DATA/MSK_CLASSI_B00.jp2 or "
                "MSK_CLOUDS_B00.gml): its observations are unmasked, cloud fraction unknown", path)
    return None, "none", ()


def _gml_cloud_shapes(gml: Path, crs: CRS) -> tuple[Any, ...]:
    """The opaque and cirrus cloud polygons of a Sentinel-2 ``MSK_CLOUDS_B00.gml``, in ``crs``.

    A mask without any ``MaskFeature`` (a cloud-free tile) gives no polygons. Read
    with OGR's GML driver, which is told not to write a ``.gfs`` beside the input.
    """
    import pyogrio
    import pyogrio.errors

    try:
        root = ET.parse(gml).getroot()
    except (ET.ParseError, OSError) as error:
        raise CorruptInputError(f"cannot parse the cloud mask GML: {error}", path=gml) from error
    if not any(el.tag.rsplit("}", 1)[-1] == "MaskFeature" for el in root.iter()):
        return ()
    try:
        frame = pyogrio.read_dataframe(gml, layer="MaskFeature", WRITE_GFS="NO")
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as error:
        raise CorruptInputError(f"cannot read the cloud mask polygons: {error}", path=gml) from error
    if "maskType" not in frame.columns:
        raise CorruptInputError("cloud mask features carry no maskType", path=gml)
    frame = frame[frame["maskType"].astype(str).str.upper().isin(("OPAQUE", "CIRRUS")) & ~frame.geometry.is_empty]
    if frame.crs is not None:
        frame = frame.to_crs(crs.to_wkt())
    return tuple(frame.geometry.dropna())


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
    if "2A" in product_type or "1C" in product_type:
        meta["sensor"] = "s2-l2a" if "2A" in product_type else "s2-l1c"
        meta["sensor_source"] = f"{xml_path.name} (PRODUCT_TYPE {product_type})"
    return meta


def _landsat_mtl(mtl_path: Path) -> dict[str, Any]:
    """Read date, spacecraft, collection, level and per-band reflectance rescaling from a Landsat ``*_MTL.txt``.

    ``meta["reflectance"]`` maps a band number to its (REFLECTANCE_MULT, REFLECTANCE_ADD);
    in a Collection 2 Level-2 MTL the surface reflectance parameters win over the Level-1
    TOA rescaling.
    """
    values, reflectance = _read_mtl(mtl_path)
    meta: dict[str, Any] = {}
    if date := sensors.parse_date(values.get("DATE_ACQUIRED")):
        meta["date"] = date
    meta["spacecraft"] = values.get("SPACECRAFT_ID")
    collection, level = values.get("COLLECTION_NUMBER", ""), values.get("PROCESSING_LEVEL", "")
    source = f"{mtl_path.name} (COLLECTION_NUMBER {collection or '?'}, PROCESSING_LEVEL {level or '?'})"
    if values.get("SENSOR_ID", "").upper() == "MSS":
        meta["unsupported"] = f"{values.get('SPACECRAFT_ID', 'Landsat')} MSS products are not supported ({mtl_path.name} SENSOR_ID MSS)"
    elif collection.endswith("2") and level.startswith("L2"):
        meta["sensor"], meta["sensor_source"] = "landsat-c2-l2", source
    elif collection.endswith("1"):
        meta["sensor"], meta["sensor_source"] = "landsat-c1", source
    elif collection.endswith("2"):
        meta["unsupported"] = f"Landsat Collection 2 {level or 'Level-1'} is not supported ({source}); use the Level-2 (L2SP/L2SR) product"
    group = next((g for g in reflectance if "LEVEL2_SURFACE_REFLECTANCE" in g), None)
    params = reflectance.get(group or next((g for g in reflectance if "RESCALING" in g), ""), {})
    bands = {int(k.rsplit("_", 1)[1]) for k in params if re.fullmatch(r"REFLECTANCE_(MULT|ADD)_BAND_\d+", k)}
    meta["reflectance"] = {b: (float(params[f"REFLECTANCE_MULT_BAND_{b}"]), float(params[f"REFLECTANCE_ADD_BAND_{b}"]))
                           for b in bands if f"REFLECTANCE_MULT_BAND_{b}" in params and f"REFLECTANCE_ADD_BAND_{b}" in params}
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


def _shared_grid(red: BandRef, nir: BandRef) -> tuple[dict[str, Any], float | None, str]:
    """The grid red and NIR share (checked: bands exist, a CRS, equal grids), red's nodata and data type."""
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
        return _grid(rds), rds.nodata, rds.dtypes[red.index - 1]


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
    sensor: str, found: _Found, bands: tuple[BandRef, BandRef], spacecraft: str | None, baseline: str | None,
    path: Path, processing_baseline: str | None, scale: float | None, offset: float | None,
) -> tuple[float, float, float | None]:
    """(scale, offset, Sentinel-2 add offset in DN): explicit values, else metadata, else sensor defaults."""
    add_offset = None
    stac = found.stac_scales.get(str(bands[0].path))
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
        scale, offset = stac or _landsat_rescaling(sensor, found, spacecraft, path)
    else:
        scale, offset = 1.0, 0.0
    if not (math.isfinite(scale) and scale > 0 and math.isfinite(offset)):
        raise InputError(f"scale must be > 0 and offset finite (got scale={scale}, offset={offset})", path=path)
    return scale, offset, add_offset


def _landsat_rescaling(sensor: str, found: _Found, spacecraft: str | None, path: Path) -> tuple[float, float]:
    """Landsat reflectance (scale, offset) of red and NIR: the MTL's, else the sensor default.

    NDVI needs one rescaling for both bands; Collection 1 TM/ETM+ Level-1 rescales
    each band differently and needs its MTL, and is refused when they differ.
    """
    if spacecraft is None:
        return _LANDSAT_RADIOMETRY[sensor]
    instrument = sensors.LANDSAT_INSTRUMENTS[spacecraft]
    red, nir = sensors.LANDSAT_RED_NIR[instrument]
    params = found.meta.get("reflectance", {})
    if red in params and nir in params:
        if params[red] != params[nir]:
            raise SensorError(
                f"red (band {red}) and NIR (band {nir}) have different reflectance rescaling in the MTL "
                f"({params[red]} and {params[nir]}); per-band TOA rescaling ({instrument} Collection 1 Level-1) "
                "is not supported: use the Collection 2 Level-2 product", path=path)
        return params[red]
    if sensor == "landsat-c1" and instrument != "OLI":
        raise MissingMetadataError(
            f"{instrument} Collection 1 Level-1 product without an MTL giving REFLECTANCE_MULT/ADD_BAND_{red} and "
            f"_{nir}: its reflectance rescaling is not known", path=path)
    return _LANDSAT_RADIOMETRY[sensor]


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


def _cloud_mask(
    found: _Found, aliases: Iterable[str], sensor: str, band_map: dict[str, int] | None,
    mask_classes: str | Iterable[int] | None, baseline: str | None, crs: CRS, path: Path,
) -> tuple[BandRef | None, str, tuple[Any, ...]]:
    """The cloud/quality band, its mask rule and cloud polygons (Sentinel-2 L1C GML masks).

    MissingBandError if the sensor needs a quality band and it is absent. A
    Sentinel-2 L1C product without a mask of its own is unmasked (rule ``none``), with a warning.
    """
    if sensor == "s2-l1c" and band_map is None:
        return _s2_l1c_mask(found, baseline, crs, path)
    ref, rule = _quality_band(found, aliases, sensor, band_map, mask_classes, path)
    return ref, rule, ()


def _quality_band(
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
    invalid = fill | ~(denominator > 0)
    if saturated is not None:
        invalid |= (red == saturated) | (nir == saturated)
    ndvi[invalid] = np.nan
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
        ndvi, fill = ndvi_from_dn(red, nir, scale=p.scale, offset=p.offset, nodata=p.nodata, saturated=p.saturated_dn)
        if p.defect is not None:
            ndvi[sensors.apply_defect_rule(p.defect_rule, self._read(self.defect, p.defect, window))] = np.nan
        cloud = np.zeros(ndvi.shape, bool)
        if p.mask is not None:
            # MSK_CLASSI: opaque and cirrus are bands 1 and 2 of one file.
            indexes = [1, 2] if p.mask_rule.startswith("msk_classi") else None
            qa_fill, qa_cloud = sensors.apply_mask_rule(p.mask_rule, self._read(self.mask, p.mask, window, indexes))
            fill |= qa_fill
            cloud |= qa_cloud
        if p.cloud_shapes:
            cloud |= rasterio.features.rasterize(
                p.cloud_shapes, out_shape=ndvi.shape, transform=rasterio.windows.transform(window, p.transform),
                fill=0, default_value=1, dtype="uint8").astype(bool)
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
    progress: bool = False,
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
        Print block progress to stderr.
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
        mask_rule=product.full_mask_rule, quicklook=quicklook_path, seconds=time.perf_counter() - start,
    )


def _write_stage(product: Product, stage: Path, workers: int, progress: bool) -> tuple[float | None, float, float]:
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
            if progress and (done % 16 == 0 or done == len(windows)):
                print(f"\rndvi: {done}/{len(windows)} blocks", end="", file=sys.stderr, flush=True)
        if progress:
            print(file=sys.stderr)
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
