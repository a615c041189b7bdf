"""Reading product metadata files: Sentinel-2 ``MTD_MSI*.xml`` and cloud masks, Landsat MTL (text, XML, JSON).

Plain readers returning what a file says (baseline, add offset, level, date,
spacecraft, reflectance rescaling, mask files, cloud polygons); the rules that use
them are in :mod:`agricredit.products`.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rasterio.crs import CRS

from agricredit import sensors
from agricredit.errors import CorruptInputError, InputError, InputNotFoundError

__all__ = ["folder_metadata", "gml_cloud_shapes"]


def folder_metadata(path: Path) -> dict[str, Any]:
    """Metadata of a product folder: S2 ``MTD_MSI*.xml`` (or the tile MTD's date), Landsat MTL, product name,
    and the Sentinel-2 cloud mask files (``msk_classi``, ``msk_clouds_gml``) where present."""
    meta: dict[str, Any] = {}
    if mtd := (sorted(path.glob("MTD_MSI*.xml")) or sorted(path.rglob("MTD_MSI*.xml"))):
        meta.update(_s2_mtd(mtd[0]))
    elif tile_mtd := sorted(path.rglob("MTD_TL.xml")):
        meta.update({k: v for k, v in _s2_mtd(tile_mtd[0]).items() if k == "date"})
    if mtl := next((found for suffix in ("txt", "xml", "json") if (found := sorted(path.rglob(f"*_MTL.{suffix}")))), None):
        meta.update(_landsat_mtl(mtl[0]))
    if "baseline" not in meta and (match := re.search(r"_N(\d{4})_", path.name)):
        meta["baseline"] = match.group(1)  # product name convention ..._N0400_... (baseline 04.00)
    meta.update(_s2_cloud_masks(path))
    return meta


def _s2_cloud_masks(path: Path) -> dict[str, Path]:
    """The Sentinel-2 cloud masks of a product folder: ``MSK_CLASSI_B00`` raster and ``MSK_CLOUDS_B00.gml``."""
    masks = {}
    if classi := sorted(p for p in path.rglob("MSK_CLASSI_B00.*") if p.suffix.lower() in (".jp2", ".tif", ".tiff")):
        masks["msk_classi"] = classi[0]
    if gml := sorted(path.rglob("MSK_CLOUDS_B00.gml")):
        masks["msk_clouds_gml"] = gml[0]
    return masks


def gml_cloud_shapes(gml: Path, crs: CRS) -> tuple[Any, ...]:
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
    """Read date, spacecraft, collection, level and per-band reflectance rescaling from a Landsat MTL.

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
    """The ``KEY = value`` pairs of an MTL (``*_MTL.txt``, ``.xml`` or ``.json``): the first of each key,
    and the ``REFLECTANCE_*`` ones per group."""
    try:
        text = mtl_path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise InputNotFoundError(f"cannot read: {error.strerror}", path=mtl_path) from error
    try:
        pairs = list(_mtl_pairs(text, mtl_path.suffix.lower()))
    except (ET.ParseError, ValueError) as error:
        raise CorruptInputError(f"cannot parse the MTL: {error}", path=mtl_path) from error
    values: dict[str, str] = {}
    reflectance: dict[str, dict[str, str]] = {}
    for group, key, value in pairs:
        if key.startswith("REFLECTANCE_"):
            reflectance.setdefault(group, {})[key] = value
        else:
            values.setdefault(key, value)
    return values, reflectance


def _mtl_pairs(text: str, suffix: str) -> Iterator[tuple[str, str, str]]:
    """(group, key, value) of every leaf of an MTL in the ODL text, XML or JSON form USGS ships."""
    if suffix == ".xml":
        stack = [("", ET.fromstring(text))]
        while stack:
            group, element = stack.pop(0)
            for child in element:
                if len(child):
                    stack.append((child.tag, child))
                else:
                    yield group, child.tag, (child.text or "").strip()
    elif suffix == ".json":
        stack = [("", json.loads(text))]
        while stack:
            group, node = stack.pop(0)
            for key, value in node.items():
                if isinstance(value, dict):
                    stack.append((key, value))
                else:
                    yield group, key, str(value)
    else:
        group = ""
        for line in text.splitlines():
            key, sep, value = (part.strip() for part in line.partition("="))
            if key == "GROUP":
                group = value
            elif sep and key != "END_GROUP":
                yield group, key, value.strip('"')
