"""Farm plots: reading, coordinate fixes, validity, geodesic area and overlaps.

Plots arrive as GeoJSON, GeoPackage, Shapefile or GeoParquet (or GeoJSON on
stdin), drawn by field officers or by farmers on phone maps. This module turns
them into one :class:`geopandas.GeoDataFrame` with a ``plot_id`` column and a
``geometry_status`` per plot, so that bad plots are named and skipped while the
rest go on (design §5).

Area is always geodesic on the WGS84 ellipsoid (never square degrees), in
hectares and mu (1 mu = 1/15 ha = 666.67 m²).
"""

from __future__ import annotations

import io
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

from agricredit.errors import CorruptInputError, CRSError, InputError, InputNotFoundError, SchemaError
from agricredit.units import M2_PER_HA, MU_PER_HA, m2_to_mu

__all__ = [
    "MU_PER_HA",
    "STATUS_OK",
    "GEOMETRY_REPAIRED",
    "GEOMETRY_INVALID",
    "GEOMETRY_EMPTY",
    "GEOMETRY_NOT_POLYGON",
    "GEOMETRY_ANTIMERIDIAN",
    "GEOMETRY_NOT_FINITE",
    "DUPLICATE_ID",
    "MISSING_ID",
    "REPAIR_MAX_AREA_CHANGE",
    "PLOT_FILE_SUFFIXES",
    "plot_files",
    "read_plots",
    "plot_record",
    "load_plots",
    "convert_chinese_crs",
    "check_geometries",
    "accepted",
    "rejected_ids",
    "to_wgs84",
    "gcj02_to_wgs84",
    "wgs84_to_gcj02",
    "bd09_to_wgs84",
    "wgs84_to_bd09",
    "geodesic_area_perimeter",
    "area_mu",
    "find_overlaps",
    "shrink_outlines",
    "repeated_area_m2",
    "overlaps_and_repeats",
    "area_table",
]

log = logging.getLogger(__name__)

STATUS_OK = "OK"
GEOMETRY_REPAIRED = "GEOMETRY_REPAIRED"
GEOMETRY_INVALID = "GEOMETRY_INVALID"
GEOMETRY_EMPTY = "GEOMETRY_EMPTY"
GEOMETRY_NOT_POLYGON = "GEOMETRY_NOT_POLYGON"
GEOMETRY_ANTIMERIDIAN = "GEOMETRY_ANTIMERIDIAN"
GEOMETRY_NOT_FINITE = "GEOMETRY_NOT_FINITE"
DUPLICATE_ID = "DUPLICATE_ID"
MISSING_ID = "MISSING_ID"

#: Statuses of plots that go on to area and zonal statistics.
_ACCEPTED = frozenset({STATUS_OK, GEOMETRY_REPAIRED})

#: ``make_valid`` repairs are kept only if the area changes by less than this share (design §5);
#: the default of the ``repair_max_area_change`` arguments (policy key ``area.repair_max_area_change``).
REPAIR_MAX_AREA_CHANGE = 0.01

_WGS84 = pyproj.CRS.from_epsg(4326)
_GEOD = pyproj.Geod(ellps="WGS84")
#: :meth:`pyproj.Geod.polygon_area_perimeter` without its argument conversion (``_copytobuffer``), for rings
#: already given as float64 arrays: the method it calls (the public one if a pyproj lacks it).
_RING_AREA_PERIMETER = getattr(_GEOD, "_polygon_area_perimeter", _GEOD.polygon_area_perimeter)
_POLYGON, _MULTIPOLYGON = 3, 6  # shapely.get_type_id


# --------------------------------------------------------------------------- reading


#: The suffixes of the plot files a folder of plots is read from (:func:`plot_files`).
PLOT_FILE_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".parquet", ".geoparquet")


#: The longest field name of a Shapefile's attributes (dBASE): ``borrower_id`` is read from ``borrower_i``.
DBF_FIELD_NAME_CHARS = 10


def plot_files(source: str | os.PathLike[str]) -> list[Path]:
    """The files a plot source is read from: the file itself, or a folder's plot files (suffixes
    :data:`PLOT_FILE_SUFFIXES`, not in subfolders) in name order.

    Raises
    ------
    InputNotFoundError
        A folder without any plot file.
    """
    path = Path(source)
    if not path.is_dir():
        return [path]
    files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PLOT_FILE_SUFFIXES),
                   key=lambda p: p.name)
    if not files:
        raise InputNotFoundError(f"no plot file in the folder ({', '.join(PLOT_FILE_SUFFIXES)})", path=str(path))
    return files


def read_plots(source: str | os.PathLike[str], *, id_field: str = "plot_id") -> gpd.GeoDataFrame:
    """Read a plot file, or a folder of plot files, as it is (no checks beyond CRS and ID column).

    Parameters
    ----------
    source
        GeoJSON, GeoPackage, Shapefile or GeoParquet (``.parquet`` /
        ``.geoparquet``) path, ``-`` for GeoJSON on stdin, or a folder whose
        plot files (:func:`plot_files`, in name order, all in one CRS) are read
        one after the other as one table.
    id_field
        Column holding the plot ID; renamed to ``plot_id`` and kept as text.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``plot_id`` and ``geometry`` (plus the file's other columns),
        in the file's CRS (RFC 7946 GeoJSON is WGS84). ``attrs["files"]``: each
        file read and its number of rows, in the order of the rows.

    Raises
    ------
    InputNotFoundError, CorruptInputError, CRSError, SchemaError
    """
    if str(source) == "-":
        parts = [_read_file(source, "<stdin>", id_field)]
    else:
        parts = [_read_file(path, str(path), id_field) for path in plot_files(source)]
    for part in parts[1:]:
        if part.crs != parts[0].crs:
            raise CRSError(f"the plot files of a folder must share one CRS: this one is in {part.crs.name}, "
                           f"{Path(parts[0].attrs['source']).name} in {parts[0].crs.name}", path=part.attrs["source"])
    gdf = parts[0] if len(parts) == 1 else gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=parts[0].crs)
    files = [(part.attrs["source"], len(part)) for part in parts]
    gdf = gdf.rename(columns={id_field: "plot_id"})  # a new frame, even when id_field is plot_id
    ids = gdf["plot_id"]
    gdf["plot_id"] = ids.astype(object).where(ids.notna(), None).map(lambda v: v if v is None else _id_text(v))
    gdf.attrs["source"], gdf.attrs["files"] = "<stdin>" if str(source) == "-" else str(source), files
    return gdf


def plot_record(gdf: gpd.GeoDataFrame, row: int) -> tuple[str, str]:
    """The file and the record (``row N``, counted from 0 in that file) of row ``row`` of :func:`read_plots`'s
    table (or of one made from it with its rows in the same order)."""
    files = gdf.attrs.get("files") or [(gdf.attrs.get("source", "plots"), len(gdf))]
    for name, count in files:
        if row < count:
            return name, f"row {row}"
        row -= count
    raise IndexError(row)


def _read_file(source: str | os.PathLike[str], name: str, id_field: str) -> gpd.GeoDataFrame:
    """One plot file, read and checked for a CRS, rows and the ID column (``attrs["source"]``: ``name``)."""
    try:
        with warnings.catch_warnings():
            # A NaN coordinate makes shapely warn while decoding; check_geometries names the plot instead.
            warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
            gdf = _read_any(source, name)
    except (InputNotFoundError, SchemaError):
        raise
    except Exception as error:  # pyogrio / pyarrow raise many types for unreadable files
        raise CorruptInputError(f"cannot read plots: {error}".splitlines()[0], path=name) from error
    if not isinstance(gdf, gpd.GeoDataFrame):  # a table without geometry (a CSV, say): GDAL reads it as one
        raise InputError("no plot outlines: the file has no geometry (plots are GeoJSON, GeoPackage, Shapefile or "
                         "GeoParquet)", path=name)
    if gdf.crs is None:
        raise CRSError("plot file has no CRS; give one in the file (GeoJSON is WGS84 by RFC 7946)", path=name)
    if gdf.empty:
        raise InputError("no plots in the file", path=name)
    if gdf.crs.is_geographic:
        minx, miny, maxx, maxy = gdf.total_bounds
        if not (-180 <= minx and maxx <= 180 and -90 <= miny and maxy <= 90):
            raise CRSError(f"coordinates are not longitude/latitude (x up to {max(abs(minx), abs(maxx)):.0f}, "
                           f"y up to {max(abs(miny), abs(maxy)):.0f}) although the file's CRS is geographic; "
                           "RFC 7946 GeoJSON must be WGS84 — reproject the file or give its CRS", path=name)
    if Path(name).suffix.lower() == ".shp":  # a Shapefile's field names are cut to 10 characters (dBASE)
        cut = {long[:DBF_FIELD_NAME_CHARS]: long for long in (id_field, "borrower_id") if long not in gdf.columns}
        gdf = gdf.rename(columns={short: long for short, long in cut.items() if short in gdf.columns})
    if id_field not in gdf.columns:
        raise SchemaError(f"no ID column {id_field!r} (use --id-field)", path=name)
    gdf.attrs["source"] = name
    return gdf


def _read_any(source: str | os.PathLike[str], name: str) -> gpd.GeoDataFrame:
    if str(source) == "-":
        return gpd.read_file(io.BytesIO(sys.stdin.buffer.read()))
    path = Path(source)
    if not path.exists():
        raise InputNotFoundError("plot file not found", path=name)
    if path.suffix.lower() in {".parquet", ".geoparquet"}:
        return gpd.read_parquet(path)
    return gpd.read_file(path)


def _id_text(value: object) -> str:
    """IDs as text; integral floats (from Shapefile/GeoPackage numeric columns) lose their ``.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def load_plots(
    source: str | os.PathLike[str],
    *,
    id_field: str = "plot_id",
    plots_crs: str | None = None,
    repair_max_area_change: float = REPAIR_MAX_AREA_CHANGE,
) -> gpd.GeoDataFrame:
    """Read plots, convert Chinese map coordinates, and check every geometry.

    Parameters
    ----------
    source
        See :func:`read_plots`.
    id_field
        Column holding the plot ID.
    plots_crs
        ``None`` (the file's CRS is right), ``"gcj02"`` or ``"bd09"``: the
        coordinates are longitude/latitude from a Chinese phone map
        (GCJ-02, or Baidu's BD-09) and are converted to WGS84.
    repair_max_area_change
        See :func:`check_geometries` (policy key ``area.repair_max_area_change``).

    Returns
    -------
    geopandas.GeoDataFrame
        All records, with ``geometry_status`` and ``geometry_reason`` (see
        :func:`check_geometries`); use :func:`accepted` for the plots that go on.
    """
    gdf = read_plots(source, id_field=id_field)
    if plots_crs is not None:
        gdf = convert_chinese_crs(gdf, plots_crs)
    return check_geometries(gdf, repair_max_area_change=repair_max_area_change)


def convert_chinese_crs(gdf: gpd.GeoDataFrame, plots_crs: str) -> gpd.GeoDataFrame:
    """Convert GCJ-02 / BD-09 longitude/latitude geometries to WGS84 (EPSG:4326)."""
    converters: dict[str, Callable[[np.ndarray], np.ndarray]] = {"gcj02": gcj02_to_wgs84, "bd09": bd09_to_wgs84}
    key = plots_crs.lower().replace("-", "")
    if key not in converters:
        raise InputError(f"unknown plots CRS {plots_crs!r}; expected gcj02 or bd09")
    if not gdf.crs.is_geographic:
        raise CRSError(f"--plots-crs {plots_crs} needs longitude/latitude coordinates, file CRS is projected",
                       path=gdf.attrs.get("source"))
    lon, lat = shapely.get_coordinates(gdf.geometry.values).T
    if not _in_china(lon, lat).any():
        log.warning("%s: --plots-crs %s given, but the plots lie outside China, where GCJ-02/BD-09 equal WGS84; "
                    "nothing is converted", gdf.attrs.get("source", "plots"), plots_crs)
    out = gdf.copy()
    out.geometry = shapely.transform(gdf.geometry.values, converters[key])
    return out.set_crs(_WGS84, allow_override=True)


# --------------------------------------------------------------------------- GCJ-02 / BD-09
#
# GCJ-02 ("Mars coordinates") is the obfuscated datum required on Chinese maps
# (AMap/Gaode, Tencent, Google China); BD-09 adds Baidu's own offset on top of
# it. The forward formulas are the public reconstruction used by eviltransform
# (https://github.com/googollee/eviltransform, MIT) and coordtransform
# (https://github.com/wandergis/coordtransform, MIT), Krasovsky 1940 ellipsoid.
# There is no closed-form inverse: we invert by fixed-point iteration
# (w <- w - (f(w) - g)), which converges to < 1e-9 degrees in a few steps since
# the offset varies slowly, so the round trip is far better than 0.5 m.

_KRASOVSKY_A = 6378245.0
_KRASOVSKY_EE = 0.00669342162296594323
_X_PI = np.pi * 3000.0 / 180.0


def _in_china(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The rough box in which the GCJ-02 offset is applied (outside it, GCJ-02 = WGS84)."""
    return (lon >= 72.004) & (lon <= 137.8347) & (lat >= 0.8293) & (lat <= 55.8271)


def _gcj_offset(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = lon - 105.0
    y = lat - 35.0
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = (-100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x)) + common
            + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
            + (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0)
    dlon = (300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x)) + common
            + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
            + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0)
    radlat = np.radians(lat)
    magic = 1.0 - _KRASOVSKY_EE * np.sin(radlat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = dlat * 180.0 / ((_KRASOVSKY_A * (1.0 - _KRASOVSKY_EE)) / (magic * sqrt_magic) * np.pi)
    dlon = dlon * 180.0 / (_KRASOVSKY_A / sqrt_magic * np.cos(radlat) * np.pi)
    inside = _in_china(lon, lat)
    return np.where(inside, dlon, 0.0), np.where(inside, dlat, 0.0)


def wgs84_to_gcj02(coords: np.ndarray) -> np.ndarray:
    """WGS84 → GCJ-02 for an ``(N, 2)`` array of longitude, latitude."""
    coords = np.asarray(coords, dtype=float)
    dlon, dlat = _gcj_offset(coords[:, 0], coords[:, 1])
    return np.column_stack([coords[:, 0] + dlon, coords[:, 1] + dlat])


def _wgs84_to_bd09_from_gcj(coords: np.ndarray) -> np.ndarray:
    x, y = coords[:, 0], coords[:, 1]
    z = np.hypot(x, y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return np.column_stack([z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006])


def wgs84_to_bd09(coords: np.ndarray) -> np.ndarray:
    """WGS84 → BD-09 (Baidu) for an ``(N, 2)`` array of longitude, latitude."""
    coords = np.asarray(coords, dtype=float)
    inside = _in_china(coords[:, 0], coords[:, 1])[:, None]
    return np.where(inside, _wgs84_to_bd09_from_gcj(wgs84_to_gcj02(coords)), coords)


def _invert(forward: Callable[[np.ndarray], np.ndarray], target: np.ndarray, tol: float = 1e-10,
            max_iter: int = 30) -> np.ndarray:
    """Solve ``forward(w) = target`` by fixed-point iteration (forward is identity plus a slow offset)."""
    target = np.asarray(target, dtype=float)
    guess = target.copy()
    for _ in range(max_iter):
        step = forward(guess) - target
        guess -= step
        if not np.any(np.abs(step) > tol):
            break
    return guess


def gcj02_to_wgs84(coords: np.ndarray) -> np.ndarray:
    """GCJ-02 → WGS84 for an ``(N, 2)`` array of longitude, latitude (iterative inverse)."""
    return _invert(wgs84_to_gcj02, coords)


def bd09_to_wgs84(coords: np.ndarray) -> np.ndarray:
    """BD-09 → WGS84 for an ``(N, 2)`` array of longitude, latitude (iterative inverse)."""
    return _invert(wgs84_to_bd09, coords)


# --------------------------------------------------------------------------- validity


def check_geometries(gdf: gpd.GeoDataFrame, *,
                     repair_max_area_change: float = REPAIR_MAX_AREA_CHANGE) -> gpd.GeoDataFrame:
    """Flag, repair or reject every plot geometry (design §5).

    Rules, in order: a missing ID → ``MISSING_ID``; an ID used twice →
    ``DUPLICATE_ID`` (every copy); empty → ``GEOMETRY_EMPTY``; not a
    (Multi)Polygon → ``GEOMETRY_NOT_POLYGON``; a NaN or infinite coordinate →
    ``GEOMETRY_NOT_FINITE``; longitudes spanning more than
    180° (a plot drawn across the antimeridian) → ``GEOMETRY_ANTIMERIDIAN``;
    invalid → repaired with :func:`shapely.make_valid` if the polygonal part
    of the repair is within ``repair_max_area_change`` of the shoelace area
    (shell minus holes) → ``GEOMETRY_REPAIRED``, otherwise
    ``GEOMETRY_INVALID`` with the reason from :func:`shapely.is_valid_reason`.

    Parameters
    ----------
    gdf
        Plots with ``plot_id`` and geometry, as :func:`read_plots` returns.
    repair_max_area_change
        Largest relative area change of a kept repair (default
        :data:`REPAIR_MAX_AREA_CHANGE`, 1 %; policy key ``area.repair_max_area_change``).

    Returns
    -------
    geopandas.GeoDataFrame
        A copy with repaired geometries and the columns ``geometry_status``
        and ``geometry_reason`` (empty for accepted plots without repair).
    """
    out = gdf.copy()
    geoms = np.array(out.geometry.values, dtype=object)
    status = np.full(len(out), STATUS_OK, dtype=object)
    reason = np.full(len(out), "", dtype=object)

    ids = out["plot_id"]
    missing = ids.isna().to_numpy()
    status[missing], reason[missing] = MISSING_ID, "no plot ID"
    duplicated = ids.duplicated(keep=False).to_numpy() & ~missing
    status[duplicated], reason[duplicated] = DUPLICATE_ID, "plot ID used more than once"

    coords, owner = shapely.get_coordinates(geoms, return_index=True)
    finite = np.bincount(owner[~np.isfinite(coords).all(axis=1)], minlength=len(geoms)) == 0
    # Non-finite coordinates are set aside before reprojection and GEOS, which fail on them.
    wgs = np.empty(len(out), dtype=object)
    wgs[finite] = to_wgs84(out.loc[finite]).geometry.values
    # The rules in order, each on the plots no earlier rule set aside (shapely's vectorised predicates).
    todo = status == STATUS_OK
    empty = todo & (shapely.is_missing(geoms) | shapely.is_empty(geoms))
    status[empty], reason[empty] = GEOMETRY_EMPTY, "empty geometry"
    todo &= ~empty
    for i in np.flatnonzero(todo & ~np.isin(shapely.get_type_id(geoms), (_POLYGON, _MULTIPOLYGON))):
        status[i], reason[i] = GEOMETRY_NOT_POLYGON, f"{geoms[i].geom_type} is not a polygon"
        todo[i] = False
    bad = todo & ~finite
    status[bad], reason[bad] = GEOMETRY_NOT_FINITE, "a coordinate is NaN or infinite"
    geoms[bad] = None  # no output format can carry it (GeoJSON has no NaN)
    todo &= ~bad
    bounds = shapely.bounds(np.where(todo, wgs, None))
    bad = todo & (bounds[:, 2] - bounds[:, 0] > 180.0)
    status[bad], reason[bad] = GEOMETRY_ANTIMERIDIAN, "longitudes span more than 180 degrees"
    todo &= ~bad
    for i in np.flatnonzero(todo & ~shapely.is_valid(np.where(todo, geoms, None))):
        why = shapely.is_valid_reason(geoms[i])
        repaired = _repair(geoms[i], repair_max_area_change)
        if repaired is None:
            status[i], reason[i] = GEOMETRY_INVALID, why
        else:
            geoms[i] = repaired
            status[i], reason[i] = GEOMETRY_REPAIRED, why
    out = out.set_geometry(gpd.GeoSeries(geoms, index=out.index, crs=out.crs))
    out["geometry_status"] = status
    out["geometry_reason"] = reason
    log.info("%d of %d plots rejected", int((~out["geometry_status"].isin(_ACCEPTED)).sum()), len(out))
    return out


def _repair(geom: BaseGeometry, max_area_change: float) -> BaseGeometry | None:
    """Return ``make_valid(geom)``'s polygonal part if its area is within ``max_area_change`` of the shoelace area."""
    shoelace = float(shapely.area(geom))  # GEOS uses the ring (shoelace) formula, even when invalid
    fixed = shapely.make_valid(geom)
    if fixed.geom_type == "GeometryCollection":
        polygons = [g for g in shapely.get_parts(fixed) if g.geom_type in ("Polygon", "MultiPolygon")]
        fixed = shapely.union_all(polygons) if polygons else shapely.Polygon()
    if fixed.is_empty or fixed.geom_type not in ("Polygon", "MultiPolygon") or shoelace <= 0:
        return None
    if abs(fixed.area - shoelace) / shoelace >= max_area_change:
        return None
    return fixed


def accepted(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The plots whose geometry went through (``OK`` or ``GEOMETRY_REPAIRED``)."""
    return gdf.loc[gdf["geometry_status"].isin(_ACCEPTED)]


def rejected_ids(gdf: gpd.GeoDataFrame) -> dict[str, list[str]]:
    """The IDs of rejected plots by reason code. A missing ID shows as its record: ``row N`` of the plot file, or
    ``FILE: row N`` (the file's name, its own row) when the table was read from a folder of several files
    (:func:`plot_record`)."""
    bad = gdf.loc[~gdf["geometry_status"].isin(_ACCEPTED)]
    several = len(gdf.attrs.get("files") or ()) > 1

    def record(row: int) -> str:
        name, where = plot_record(gdf, row)
        return f"{Path(name).name}: {where}" if several else where

    named = [record(int(n)) if pid is None or pid != pid else str(pid)
             for n, pid in zip(np.flatnonzero(~gdf["geometry_status"].isin(_ACCEPTED).to_numpy()), bad["plot_id"])]
    result: dict[str, list[str]] = {}
    for code, name in zip(bad["geometry_status"], named):
        result.setdefault(code, []).append(name)
    return result


def to_wgs84(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Return ``gdf`` in WGS84 longitude/latitude (no copy if it already is)."""
    if pyproj.CRS(gdf.crs).equals(_WGS84, ignore_axis_order=True):
        return gdf
    return gdf.to_crs(_WGS84)


# --------------------------------------------------------------------------- area and overlaps


def geodesic_area_perimeter(geoms: gpd.GeoSeries | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Geodesic area (m²) and perimeter (m) of WGS84 lon/lat geometries.

    Uses :meth:`pyproj.Geod.geometry_area_perimeter` on the WGS84 ellipsoid
    after orienting shells counter-clockwise (so holes subtract). Empty or
    missing geometries give NaN.
    """
    values = np.asarray(geoms, dtype=object)
    area = np.full(len(values), np.nan)
    perimeter = np.full(len(values), np.nan)
    oriented = shapely.orient_polygons(values)
    kinds = shapely.get_type_id(oriented)
    polygonal = np.flatnonzero(np.isin(kinds, (_POLYGON, _MULTIPOLYGON)) & ~shapely.is_empty(oriented))
    area[polygonal], perimeter[polygonal] = _polygonal_area_perimeter(oriented[polygonal])
    for i in np.flatnonzero(~np.isin(kinds, (_POLYGON, _MULTIPOLYGON)) & (kinds >= 0)):
        if not oriented[i].is_empty:
            a, p = _GEOD.geometry_area_perimeter(oriented[i])
            area[i], perimeter[i] = abs(a), p
    return area, perimeter



def _polygonal_area_perimeter(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`pyproj.Geod.geometry_area_perimeter` of non-empty (multi)polygons, ring by ring on coordinate arrays.

    The same sums in the same order as pyproj's (a polygon: its exterior, then each hole's signed area; a
    multipolygon: 0.0 plus each polygon's), without its per-geometry Python walk (``.xy`` array copies): one
    :meth:`pyproj.Geod.polygon_area_perimeter` per ring, the sums by :func:`numpy.add.at` (in index order).
    A polygon without holes (most plots) is its exterior ring: its coordinates are taken without splitting it.
    """
    area, perimeter = np.zeros(len(geoms)), np.zeros(len(geoms))
    simple = (shapely.get_type_id(geoms) == _POLYGON) & (shapely.get_num_interior_rings(geoms) == 0)
    area[simple], perimeter[simple] = _rings_area_perimeter(geoms[simple])  # 0.0 + a would be a, to the bit
    composite = np.flatnonzero(~simple)
    polygons, owner = shapely.get_parts(geoms[composite], return_index=True)
    rings, ring_polygon = shapely.get_rings(polygons, return_index=True)
    ring_area, ring_perimeter = _rings_area_perimeter(rings)
    exterior = np.ones(len(rings), dtype=bool)
    exterior[1:] = ring_polygon[1:] != ring_polygon[:-1]
    polygon_area, polygon_perimeter = np.zeros(len(polygons)), np.zeros(len(polygons))
    polygon_area[ring_polygon[exterior]] = ring_area[exterior]  # rings come polygon by polygon, exterior first
    polygon_perimeter[ring_polygon[exterior]] = ring_perimeter[exterior]
    np.add.at(polygon_area, ring_polygon[~exterior], ring_area[~exterior])
    np.add.at(area, composite[owner], polygon_area)  # 0.0 + a is a, to the bit (-0.0 becomes 0.0, as abs makes it)
    np.add.at(perimeter, composite[owner], polygon_perimeter)
    return np.abs(area), perimeter


def _rings_area_perimeter(rings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`pyproj.Geod.polygon_area_perimeter` (signed area, perimeter) of each ring of ``rings`` (linear rings, or
    polygons without holes), on the arrays of its coordinates."""
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    lon, lat = np.ascontiguousarray(coords[:, 0]), np.ascontiguousarray(coords[:, 1])
    ends = np.searchsorted(ring_of, np.arange(len(rings) + 1)).tolist()
    measure = _RING_AREA_PERIMETER
    measured = np.array([measure(lon[start:end], lat[start:end]) for start, end in zip(ends[:-1], ends[1:])])
    return measured.reshape(-1, 2).T


def area_mu(gdf: gpd.GeoDataFrame) -> pd.Series:
    """Geodesic area (mu) of each plot, indexed by ``plot_id``.

    Parameters
    ----------
    gdf
        Plots (any CRS) with ``plot_id``; rejected plots should be left out.

    Returns
    -------
    pandas.Series
        Named ``area_mu``; NaN for an empty or missing geometry.
    """
    area_m2, _ = geodesic_area_perimeter(to_wgs84(gdf).geometry.values)
    return pd.Series(m2_to_mu(area_m2), index=pd.Index(gdf["plot_id"].to_numpy(), name="plot_id"), name="area_mu")


def find_overlaps(gdf: gpd.GeoDataFrame, *, tolerance_m2: float = 1.0,
                  outline_accuracy_m: float = 0.0) -> list[list[dict[str, object]]]:
    """For each plot, the plots it overlaps by more than ``tolerance_m2`` and the shared area.

    Candidate pairs come from a spatial index (:class:`shapely.STRtree`),
    not from all pairs; the shared area is geodesic (m², WGS84).

    Parameters
    ----------
    gdf
        Plots (any CRS) with ``plot_id``; rejected plots should be left out.
    tolerance_m2
        Shared areas up to this many m² (hand-drawn slivers) are ignored.
    outline_accuracy_m
        Shrink every outline by this many metres before intersecting (see
        :func:`shrink_outlines`): the overlap that remains is beyond what
        drawing error explains (policy key ``area.outline_accuracy_m``).

    Returns
    -------
    list of list of dict
        Per plot, in order: ``[{"plot_id": other, "shared_m2": area}, ...]``, the others in the order of ``gdf``.
    """
    wgs = to_wgs84(gdf).geometry.values
    return _overlaps(wgs, gdf["plot_id"].to_numpy(), *_intersecting(wgs), tolerance_m2, outline_accuracy_m)


def overlaps_and_repeats(gdf: gpd.GeoDataFrame, *, by: str = "borrower_id", tolerance_m2: float = 1.0,
                         outline_accuracy_m: float = 0.0) -> tuple[list[list[dict[str, object]]], np.ndarray]:
    """:func:`find_overlaps` and :func:`repeated_area_m2` of the same plots, from one spatial query.

    Parameters
    ----------
    gdf
        Accepted plots (any CRS) with ``plot_id`` and the ``by`` column.
    by, tolerance_m2, outline_accuracy_m
        As :func:`repeated_area_m2` and :func:`find_overlaps`.

    Returns
    -------
    tuple
        What :func:`find_overlaps` and :func:`repeated_area_m2` return.
    """
    wgs = to_wgs84(gdf).geometry.values
    left, right = _intersecting(wgs)
    return (_overlaps(wgs, gdf["plot_id"].to_numpy(), left, right, tolerance_m2, outline_accuracy_m),
            _repeated(wgs, gdf["plot_id"].astype(str).to_numpy(), gdf[by].to_numpy(), left, right))


def _intersecting(wgs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of positions of outlines that intersect, both ways and each with itself (:class:`shapely.STRtree`)."""
    return shapely.STRtree(wgs).query(wgs, predicate="intersects")


def _overlaps(wgs: np.ndarray, ids: np.ndarray, left: np.ndarray, right: np.ndarray, tolerance_m2: float,
              outline_accuracy_m: float) -> list[list[dict[str, object]]]:
    """:func:`find_overlaps` of the outlines ``wgs`` (WGS84) whose intersecting pairs are ``left``, ``right``.

    A shrunk outline lies inside its drawn one while the shrink is more than twice the bend of an edge drawn
    straight in longitude/latitude and buffered straight in UTM (about 1.3 mm for a 300 m edge, 15 mm for 1 km;
    the policy's shrink is metres): so only the outlines of drawn pairs that share more than an edge are shrunk
    and tested, pair by pair, with no spatial index of the shrunk outlines.
    """
    result: list[list[dict[str, object]]] = [[] for _ in range(len(wgs))]
    pairs = left < right
    left, right = left[pairs], right[pairs]
    shared_inside = ~shapely.touches(wgs[left], wgs[right])  # neighbours that only touch share no area
    left, right = left[shared_inside], right[shared_inside]
    outlines = wgs
    if outline_accuracy_m > 0 and len(left):
        outlines = np.full(len(wgs), None, dtype=object)
        involved = np.unique(np.concatenate([left, right]))
        outlines[involved] = shrink_outlines(wgs[involved], outline_accuracy_m)
        still = shapely.intersects(outlines[left], outlines[right]) & ~shapely.touches(outlines[left], outlines[right])
        left, right = left[still], right[still]
    if len(left) == 0:
        return result
    in_order = np.lexsort((right, left))
    left, right = left[in_order], right[in_order]
    areas, _ = geodesic_area_perimeter(shapely.intersection(outlines[left], outlines[right]))
    for i, j, area in zip(left.tolist(), right.tolist(), areas.tolist()):
        if np.isfinite(area) and area > tolerance_m2:
            shared_m2 = round(float(area), 2)
            result[i].append({"plot_id": ids[j], "shared_m2": shared_m2})
            result[j].append({"plot_id": ids[i], "shared_m2": shared_m2})
    return result


def _utm_epsg(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """EPSG code of the WGS84 / UTM zone holding each point (326zz north, 327zz south; no Norway exceptions)."""
    zone = (np.floor((np.asarray(lon) + 180.0) / 6.0).astype(int) % 60) + 1
    return np.where(np.asarray(lat) >= 0, 32600, 32700) + zone


def shrink_outlines(geoms: gpd.GeoSeries | np.ndarray, distance_m: float) -> np.ndarray:
    """Shrink WGS84 outlines by ``distance_m`` metres (a negative buffer), each in its own UTM zone.

    Each outline is projected to the UTM zone of the centre of its bounds
    (scale error at most 0.1 % inside the zone: millimetres on a few metres),
    buffered by ``-distance_m`` and brought back to WGS84. An outline narrower
    than ``2 × distance_m`` everywhere becomes empty.

    Parameters
    ----------
    geoms
        WGS84 longitude/latitude polygons (None and empty are kept as they are).
    distance_m
        How much to take off every edge, in metres.

    Returns
    -------
    numpy.ndarray
        The shrunk outlines (object array of shapely geometries), in WGS84.
    """
    values = np.asarray(geoms, dtype=object)
    out = values.copy()
    present = ~(shapely.is_missing(values) | shapely.is_empty(values))
    if not present.any():
        return out
    bounds = shapely.bounds(values[present])
    epsg = np.zeros(len(values), dtype=int)
    epsg[present] = _utm_epsg((bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2)
    for code in np.unique(epsg[present]):
        chosen = epsg == code
        local = gpd.GeoSeries(values[chosen], crs=_WGS84).to_crs(epsg=int(code))
        out[chosen] = local.buffer(-distance_m).to_crs(_WGS84).values
    return out


def repeated_area_m2(gdf: gpd.GeoDataFrame, by: str = "borrower_id") -> np.ndarray:
    """Geodesic area (m²) of each plot already drawn in a plot of the same ``by`` with a smaller ID.

    Summing ``area - repeated`` over one borrower's plots gives the area of
    their union, so a field drawn twice under two IDs counts once (the copy
    with the smaller ``plot_id`` keeps it).

    Parameters
    ----------
    gdf
        Accepted plots (any CRS) with ``plot_id`` and the ``by`` column.
    by
        The column whose equal values make plots of one claimant.

    Returns
    -------
    numpy.ndarray
        One figure per row, 0 where the plot shares nothing with an earlier one.
    """
    wgs = to_wgs84(gdf).geometry.values
    return _repeated(wgs, gdf["plot_id"].astype(str).to_numpy(), gdf[by].to_numpy(), *_intersecting(wgs))


def _repeated(wgs: np.ndarray, ids: np.ndarray, owners: np.ndarray, left: np.ndarray, right: np.ndarray
              ) -> np.ndarray:
    """:func:`repeated_area_m2` of the outlines ``wgs`` (WGS84) whose intersecting pairs are ``left``, ``right``."""
    repeated = np.zeros(len(wgs))
    same = (owners[left] == owners[right]) & (ids[right] < ids[left])
    left, right = left[same], right[same]
    shared_inside = ~shapely.touches(wgs[left], wgs[right])
    left, right = left[shared_inside], right[shared_inside]
    earlier: dict[int, list[int]] = {}
    for i, j in zip(left.tolist(), right.tolist()):
        earlier.setdefault(i, []).append(j)
    if not earlier:
        return repeated
    drawn_before = sorted(earlier)
    shared = [shapely.intersection(wgs[i], shapely.union_all(wgs[earlier[i]])) for i in drawn_before]
    area, _ = geodesic_area_perimeter(np.array(shared, dtype=object))
    repeated[drawn_before] = np.where(np.isfinite(area), area, 0.0)
    return repeated


def area_table(gdf: gpd.GeoDataFrame, *, overlap_tolerance_m2: float = 1.0) -> gpd.GeoDataFrame:
    """The ``agricredit area`` table: one row per input record.

    Parameters
    ----------
    gdf
        Checked plots, as :func:`load_plots` returns.
    overlap_tolerance_m2
        See :func:`find_overlaps`.

    Returns
    -------
    geopandas.GeoDataFrame
        ``plot_id``, ``area_ha``, ``area_mu``, ``perimeter_m``,
        ``geometry_status``, ``geometry_reason``, ``overlaps`` and the
        geometry in WGS84. Rejected plots keep their row, with empty figures.
    """
    wgs = to_wgs84(gdf)
    ok = gdf["geometry_status"].isin(_ACCEPTED).to_numpy()
    area_m2 = np.full(len(gdf), np.nan)
    perimeter = np.full(len(gdf), np.nan)
    area_m2[ok], perimeter[ok] = geodesic_area_perimeter(wgs.geometry.values[ok])
    overlaps: list[list[dict[str, object]]] = [[] for _ in range(len(gdf))]
    for position, found in zip(np.flatnonzero(ok), find_overlaps(wgs.loc[ok], tolerance_m2=overlap_tolerance_m2)):
        overlaps[position] = found
    table = pd.DataFrame(
        {
            "plot_id": gdf["plot_id"].to_numpy(),
            "area_ha": area_m2 / M2_PER_HA,
            "area_mu": m2_to_mu(area_m2),
            "perimeter_m": perimeter,
            "geometry_status": gdf["geometry_status"].to_numpy(),
            "geometry_reason": gdf["geometry_reason"].to_numpy(),
            "overlaps": overlaps,
        }
    )
    # Labelled EPSG:4326 even when the plots came in OGC:CRS84 (GeoParquet's default): the same lon/lat.
    return gpd.GeoDataFrame(table, geometry=wgs.geometry.values).set_crs(_WGS84, allow_override=True)
