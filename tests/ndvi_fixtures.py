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
TRANSFORM_60 = from_origin(435730.0, 4179460.0, 60.0, 60.0)


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


def s2_safe(root: Path, red, nir, scl, *, baseline="04.00", level="L2A", date="2022-06-12", classi=None,
            clouds_gml=None) -> Path:
    """A minimal .SAFE: MTD_MSI*.xml at the top, bands under GRANULE/*/IMG_DATA[/R10m|R20m].

    ``classi`` (3 x rows x cols uint8 at 60 m) is written as ``QI_DATA/MSK_CLASSI_B00.jp2``,
    ``clouds_gml`` (the text of a GML mask) as ``QI_DATA/MSK_CLOUDS_B00.gml``.
    """
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
    qi_data = safe / "GRANULE" / "L2A_T50SLH_A036377_20220612T024337" / "QI_DATA"
    write_tif(qi_data / "MSK_B04.tif", [red])
    if classi is not None:
        with rasterio.open(qi_data / "MSK_CLASSI_B00.jp2", "w", driver="JP2OpenJPEG", width=classi.shape[2],
                           height=classi.shape[1], count=3, dtype="uint8", crs=CRS, transform=TRANSFORM_60,
                           QUALITY=100, REVERSIBLE="YES") as dst:
            dst.write(classi)
    if clouds_gml is not None:
        (qi_data / "MSK_CLOUDS_B00.gml").write_text(clouds_gml)
    return safe


def clouds_gml(features: list[tuple[str, tuple[float, float, float, float]]]) -> str:
    """A Sentinel-2 MSK_CLOUDS_B00.gml (pre-04.00 layout) with one box per (maskType, (xmin, ymin, xmax, ymax))."""
    members = "".join(
        f'<eop:MaskFeature gml:id="{kind}.{i}"><eop:maskType codeSpace="urn:gs2:S2PDGS:maskType">{kind}</eop:maskType>'
        f'<eop:extentOf><gml:Polygon gml:id="{kind}.{i}.Polygon" srsName="urn:ogc:def:crs:EPSG::32618"><gml:exterior>'
        f'<gml:LinearRing><gml:posList srsDimension="2">{x0} {y1} {x1} {y1} {x1} {y0} {x0} {y0} {x0} {y1}</gml:posList>'
        f"</gml:LinearRing></gml:exterior></gml:Polygon></eop:extentOf></eop:MaskFeature>"
        for i, (kind, (x0, y0, x1, y1)) in enumerate(features)
    )
    members = f"<eop:maskMembers>{members}</eop:maskMembers>" if features else (
        '<eop:maskMembers xsi:nil="true" nilReason="other:unpopulated"/>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?><eop:Mask xmlns:eop="http://www.opengis.net/eop/2.0" '
        'xmlns:gml="http://www.opengis.net/gml/3.2" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'gml:id="MSK_CLOUDS"><gml:boundedBy><gml:Envelope srsName="urn:ogc:def:crs:EPSG::32618">'
        "<gml:lowerCorner>399960 4090200</gml:lowerCorner><gml:upperCorner>509760 4200000</gml:upperCorner>"
        f"</gml:Envelope></gml:boundedBy>{members}</eop:Mask>"
    )


def stac_item(path: Path, assets: dict[str, str], properties: dict) -> Path:
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": path.stem, "geometry": None, "properties": properties,
        "assets": {k: {"href": v, "type": "image/tiff; application=geotiff"} for k, v in assets.items()},
    }
    path.write_text(json.dumps(item))
    return path


#: Collection product ID prefix of each spacecraft (L + sensor letter + two-digit satellite number).
LANDSAT_ID_PREFIX = {"LANDSAT_4": "LT04", "LANDSAT_5": "LT05", "LANDSAT_7": "LE07", "LANDSAT_8": "LC08", "LANDSAT_9": "LC09"}
#: (red, NIR, SWIR1) band numbers written out from the USGS product guides: TM/ETM+ 3, 4, 5; OLI 4, 5, 6.
LANDSAT_BANDS = {"LANDSAT_4": (3, 4, 5), "LANDSAT_5": (3, 4, 5), "LANDSAT_7": (3, 4, 5), "LANDSAT_8": (4, 5, 6),
                 "LANDSAT_9": (4, 5, 6)}


def landsat_c2_folder(root: Path, red, nir, qa=None, *, date="2021-07-04", spacecraft="LANDSAT_8", swir=None,
                      radsat=None, mtl=False, name=None, transform=TRANSFORM_10) -> Path:
    """A Landsat Collection 2 Level-2 product folder (SR bands of the spacecraft, QA_PIXEL[, QA_RADSAT][, MTL]).

    Named by its product ID unless ``name`` is given; ``mtl`` writes a ``*_MTL.txt`` with
    SPACECRAFT_ID, the Level-2 surface reflectance rescaling and (as a decoy) a different
    Level-1 TOA rescaling.
    """
    product_id = f"{LANDSAT_ID_PREFIX[spacecraft]}_L2SP_123045_{date.replace('-', '')}_20210713_02_T1"
    folder = root / (name or product_id)
    qa = np.full(red.shape, 21824, np.uint16) if qa is None else qa  # 21824: clear land
    b_red, b_nir, b_swir = LANDSAT_BANDS[spacecraft]
    bands = {f"SR_B{b_red}": red, f"SR_B{b_nir}": nir, "QA_PIXEL": qa}
    if swir is not None:
        bands[f"SR_B{b_swir}"] = swir
    if radsat is not None:
        bands["QA_RADSAT"] = radsat
    for band, data in bands.items():
        write_tif(folder / f"{product_id}_{band}.TIF", [data], transform=transform)
    if mtl:
        sr = "".join(f"    REFLECTANCE_MULT_BAND_{b} = 2.75E-05\n    REFLECTANCE_ADD_BAND_{b} = -0.200000\n" for b in range(1, 8))
        toa = "".join(f"    REFLECTANCE_MULT_BAND_{b} = {1.1e-3 + b * 1e-4:.4E}\n    REFLECTANCE_ADD_BAND_{b} = -0.0{b}\n"
                      for b in range(1, 8))
        (folder / f"{product_id}_MTL.txt").write_text(
            "GROUP = LANDSAT_METADATA_FILE\n  GROUP = PRODUCT_CONTENTS\n"
            f'    LANDSAT_PRODUCT_ID = "{product_id}"\n    COLLECTION_NUMBER = 02\n    PROCESSING_LEVEL = "L2SP"\n'
            f'  END_GROUP = PRODUCT_CONTENTS\n  GROUP = IMAGE_ATTRIBUTES\n    SPACECRAFT_ID = "{spacecraft}"\n'
            f'    SENSOR_ID = "{"OLI_TIRS" if spacecraft in ("LANDSAT_8", "LANDSAT_9") else "TM"}"\n'
            f"    DATE_ACQUIRED = {date}\n  END_GROUP = IMAGE_ATTRIBUTES\n"
            f"  GROUP = LEVEL2_SURFACE_REFLECTANCE_PARAMETERS\n{sr}  END_GROUP = LEVEL2_SURFACE_REFLECTANCE_PARAMETERS\n"
            f"  GROUP = LEVEL1_RADIOMETRIC_RESCALING\n{toa}  END_GROUP = LEVEL1_RADIOMETRIC_RESCALING\n"
            "END_GROUP = LANDSAT_METADATA_FILE\nEND\n")
    return folder
