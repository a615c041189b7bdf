"""Builders of tiny sensor products (GeoTIFFs, folders, STAC items) for the NDVI tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

CRS = "EPSG:32618"
TRANSFORM_10 = from_origin(435730.0, 4179460.0, 10.0, 10.0)
TRANSFORM_20 = from_origin(435730.0, 4179460.0, 20.0, 20.0)


def write_tif(path: Path, bands: list[np.ndarray], *, descriptions=None, tags=None, transform=TRANSFORM_10,
              crs=CRS, nodata=None) -> Path:
    """Write a GeoTIFF of same-dtype bands with optional descriptions and dataset tags."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = bands[0].shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=len(bands), dtype=bands[0].dtype,
                       crs=crs, transform=transform, nodata=nodata) as dst:
        for i, band in enumerate(bands, 1):
            dst.write(band, i)
            if descriptions:
                dst.set_band_description(i, descriptions[i - 1])
        if tags:
            dst.update_tags(**tags)
    return path


def reference_ndvi(red, nir, scale, offset, nodata=0):
    """Independent float64 NDVI: reflectances first, then the ratio; NaN on no data or sum <= 0."""
    r = red.astype(np.float64) * scale + offset
    n = nir.astype(np.float64) * scale + offset
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (n - r) / (n + r)
    bad = (n + r <= 1e-12) | np.isnan(ndvi)  # exact zero sums: float64 rounding leaves ~1e-17
    if nodata is not None:
        bad |= (red == nodata) | (nir == nodata)
    ndvi[bad] = np.nan
    return np.clip(ndvi, -1, 1)


def s2_dn(shape=(40, 60), seed=0):
    rng = np.random.default_rng(seed)
    red = rng.integers(1, 5000, shape, dtype=np.uint16)
    nir = rng.integers(1, 9000, shape, dtype=np.uint16)
    return red, nir


def s2_safe(root: Path, red, nir, scl, *, baseline="04.00", level="L2A", date="2022-06-12") -> Path:
    """A minimal .SAFE: MTD_MSI*.xml at the top, bands under GRANULE/*/IMG_DATA[/R10m|R20m]."""
    name = f"S2A_MSI{level}_{date.replace('-', '')}T023551_N{baseline.replace('.', '')}_R103_T50SLH_20220612T000000.SAFE"
    safe = root / name
    granule = safe / "GRANULE" / "L2A_T50SLH_A036377_20220612T024337" / "IMG_DATA"
    offset_tag = "BOA_ADD_OFFSET" if level == "L2A" else "RADIO_ADD_OFFSET"
    offset = -1000 if baseline >= "04.00" else 0
    offsets = "".join(f'<{offset_tag} band_id="{i}">{offset}</{offset_tag}>' for i in range(13)) if baseline >= "04.00" else ""
    safe.mkdir(parents=True)
    (safe / f"MTD_MSI{level}.xml").write_text(
        f'<?xml version="1.0"?><n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/x">'
        f"<n1:General_Info><Product_Info><PRODUCT_START_TIME>{date}T02:35:51.024Z</PRODUCT_START_TIME>"
        f"<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE><PRODUCT_TYPE>S2MSI{level[1:]}</PRODUCT_TYPE></Product_Info>"
        f"<Product_Image_Characteristics><QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit=\"none\">10000"
        f"</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>{offsets}</Product_Image_Characteristics>"
        f"</n1:General_Info></n1:Level-2A_User_Product>"
    )
    stem = f"T50SLH_{date.replace('-', '')}T023551"
    if level == "L2A":
        write_tif(granule / "R10m" / f"{stem}_B04_10m.tif", [red])
        write_tif(granule / "R10m" / f"{stem}_B08_10m.tif", [nir])
        write_tif(granule / "R20m" / f"{stem}_B04_20m.tif", [red[::2, ::2]], transform=TRANSFORM_20)
        write_tif(granule / "R20m" / f"{stem}_SCL_20m.tif", [scl], transform=TRANSFORM_20)
    else:
        write_tif(granule / f"{stem}_B04.tif", [red])
        write_tif(granule / f"{stem}_B08.tif", [nir])
    (safe / "GRANULE" / "L2A_T50SLH_A036377_20220612T024337" / "QI_DATA").mkdir()
    write_tif(safe / "GRANULE" / "L2A_T50SLH_A036377_20220612T024337" / "QI_DATA" / "MSK_B04.tif", [red])
    return safe


def stac_item(path: Path, assets: dict[str, str], properties: dict) -> Path:
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": path.stem, "geometry": None, "properties": properties,
        "assets": {k: {"href": v, "type": "image/tiff; application=geotiff"} for k, v in assets.items()},
    }
    path.write_text(json.dumps(item))
    return path


def landsat_c2_folder(root: Path, red, nir, qa=None, *, date="2021-07-04") -> Path:
    """A Landsat 8 Collection 2 Level-2 product folder named by its product ID (SR_B4, SR_B5, QA_PIXEL)."""
    folder = root / f"LC08_L2SP_123045_{date.replace('-', '')}_20210713_02_T1"
    qa = np.full(red.shape, 21824, np.uint16) if qa is None else qa  # 21824: clear land
    for band, data in (("SR_B4", red), ("SR_B5", nir), ("QA_PIXEL", qa)):
        write_tif(folder / f"{folder.name}_{band}.TIF", [data])
    return folder
