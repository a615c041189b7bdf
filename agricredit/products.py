"""Opening satellite products: layouts, product metadata, band maps, radiometry and masks.

The boundary is :func:`open_product`: a multiband GeoTIFF/COG, a folder of
per-band files (including a ``.SAFE`` ``GRANULE/*/IMG_DATA`` tree and Landsat
Collection 1/2 folders), a local STAC item JSON, or an NDVI raster written by
:func:`agricredit.raster.write_ndvi_cog` all become one :class:`Product`
(opened lazily: no pixels read), which :mod:`agricredit.raster` reads.

What the product says of itself (tags, ``MTD_MSI*.xml``, ``*_MTL.txt``, STAC
properties, band names) decides the sensor, the Landsat spacecraft (and so the
red/NIR band numbers), the radiometry and the masks; a declared sensor that
contradicts it is an error naming both.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import affine
import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError

from agricredit import sensors
from agricredit.errors import (
    CorruptInputError,
    CRSMismatchError,
    GridMismatchError,
    InputError,
    InputNotFoundError,
    MissingBandError,
    MissingMetadataError,
    SensorError,
)
from agricredit.product_metadata import folder_metadata, gml_cloud_shapes

__all__ = ["BandRef", "Product", "open_product", "is_product_folder", "parse_bands"]

log = logging.getLogger(__name__)

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
        :func:`agricredit.raster.write_ndvi_cog`.
    sensor
        Declare the sensor (one of :data:`agricredit.sensors.SENSORS`) of a tile that does
        not say; one that contradicts what the tile says of itself (tags, MTD/MTL, STAC
        properties, an SCL or SR_B* band) is a :class:`SensorError` naming both.
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
    """True if ``path`` is an NDVI raster written by :func:`agricredit.raster.write_ndvi_cog`."""
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
    found.meta = folder_metadata(path)
    from_meta = found.meta.pop("sensor", None)
    if from_meta:
        found.evidence = (from_meta, found.meta.pop("sensor_source"))
        if found.sensor is None or found.sensor[:2] == from_meta[:2]:
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
    level = {k: props[k] for k in ("s2:product_type", "processing:level", "landsat:collection_number") if props.get(k)}
    if _stac_platform(props) and level:
        found.evidence = (found.sensor, f"STAC properties ({', '.join(f'{k} {v}' for k, v in level.items())})")
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
    """An NDVI raster written by :func:`agricredit.raster.write_ndvi_cog`, as a Product of sensor ``'ndvi'``."""
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


# Masks from product files (the files are found by agricredit.product_metadata).


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
        return None, "gml:opaque,cirrus", gml_cloud_shapes(gml, crs)
    log.warning("%s: Sentinel-2 L1C without a cloud mask of its own (no QI_DATA/MSK_CLASSI_B00.jp2 or "
                "MSK_CLOUDS_B00.gml): its observations are unmasked, cloud fraction unknown", path)
    return None, "none", ()



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
        name = sensors.QUALITY_BANDS.get(sensor)
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
