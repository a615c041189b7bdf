"""Growing-season time series, phenology features and crop verification.

Everything here is a pure function over plain data. The input is the zonal
engine's *long table* (a :class:`pandas.DataFrame` with one row per plot and
acquisition date and the columns ``plot_id, date, ndvi_mean, ndvi_median,
ndvi_p90, valid_frac, cloud_frac, cropped_area_mu, pixel_count``); the output
is one row per plot with phenology features, the crop ranking, the satellite
checks of design §7 (``NOT_CULTIVATED``, ``CROP_MISMATCH``, ``LOW_VIGOR``,
``CLOUD_INSUFFICIENT``) as :class:`Flag` objects carrying the figures behind
them, and the vigor factor for the limit.

Policy numbers are explicit keyword arguments named like the keys of the
``[satellite]`` section of ``policy.toml``; nothing in this module reads the
policy file.

Crop fit
--------
Each crop's NDVI template ``T`` (``seeds/ndvi_templates.csv``) is fitted to the
valid observations ``y`` at day of year ``d`` as ``y ≈ b + a·T(d − s)`` for every
whole-day sowing shift ``|s| ≤ max_sowing_shift_days``: offset ``b`` and
amplitude scale ``0 ≤ a ≤ MAX_SCALE`` by closed-form least squares per shift.
The crop's *score* is the RMSE of the best shift plus a calendar prior
``shift_penalty·(s / max_sowing_shift_days)²`` that prefers the calendar of
``crops.csv`` when two templates fit equally well. Crops are ranked by score;
``CROP_MISMATCH`` fires when the declared crop's score exceeds the best crop's
by ``crop_mismatch_margin``.

The prior carries the maize/soybean check: their templates have one shape,
18 days apart, so maize shifted by 18 days *is*, to NDVI, a soybean, and with
RMSE alone (or a token penalty) declaring maize on a soybean field passes and
pays maize's higher value per mu. Charging a sowing date far from the crop's
calendar (0.10 at three weeks, 0.023 at ten days) separates the two on timing:
on the sample season 87 % of soybean→maize and 89 % of maize→soybean swaps are
flagged with no honest plot flagged (``seeds/README.md`` gives the measurement).
Rice and maize (calendars 0–3 days apart) stay indistinguishable by template.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.signal import savgol_filter
from scipy.sparse.linalg import spsolve

from agricredit.errors import (
    CorruptInputError,
    InputError,
    InputNotFoundError,
    MissingBandError,
    SchemaError,
    SensorError,
)
from agricredit.seeds import default_cropped_threshold, load_crops, load_templates, template_ndvi

__all__ = [
    "Acquisition",
    "Flag",
    "CropFit",
    "PlotSeries",
    "SeasonResult",
    "LONG_TABLE_COLUMNS",
    "discover_acquisitions",
    "plot_series",
    "smooth_series",
    "phenology",
    "fit_crops",
    "season_window_for",
    "assess_season",
    "peer_vigor",
    "resample_doy",
    "season_chart",
]

logger = logging.getLogger(__name__)

#: Columns of the zonal engine's long table this module relies on.
LONG_TABLE_COLUMNS = ("plot_id", "date", "valid_frac", "cropped_area_mu")
#: Largest amplitude scale a template may be stretched by in the crop fit.
MAX_SCALE = 2.0
#: Raster file suffixes considered when a folder is searched for acquisitions.
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
#: Product containers (folders or archives) a reader may open as one product.
PRODUCT_SUFFIXES = (".safe", ".zip")

Smoothing = Literal["none", "savgol", "whittaker"]


# --------------------------------------------------------------------------- acquisitions


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


def _from_manifest(path: Path, keep: Callable[[dt.date], bool], **options: Any) -> list[_Found]:
    """The rows of a manifest CSV; a row's ``sensor`` is the reader's sensor for its (raw) product."""
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
            raise InputNotFoundError(f"tile {row['path']!r} listed in the manifest does not exist", path=path, record=f"row {number}")
        date = _parse_date(row["date"] or "", path=path, record=f"row {number}")
        sensor = (row.get("sensor") or "").strip()
        if keep(date):
            found.extend(_from_file(tile, date=date, label=sensor, **({**options, "sensor": sensor} if sensor else options)))
    return found


def _from_stac(path: Path, keep: Callable[[dt.date], bool], **options: Any) -> list[_Found]:
    """A STAC Item (one product, opened by the NDVI reader) or an ItemCollection.

    An item of a collection is referenced by its local ``self`` link if it has
    one, else by its NDVI asset or its single data asset; an item whose bands
    are separate assets has no single file to point at and is an error.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CorruptInputError(f"not a readable STAC JSON document ({error})", path=path) from error
    if document.get("type") == "Feature":
        return _from_file(path, **options)
    if document.get("type") != "FeatureCollection":
        raise CorruptInputError("not a STAC Item or ItemCollection", path=path)
    found = []
    for number, item in enumerate(document.get("features") or []):
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
        if not tile.exists():
            raise InputNotFoundError(f"asset {href!r} does not exist", path=path, record=record)
        date = _parse_date(when, path=path, record=record)
        if keep(date):
            label = str(props.get("platform") or props.get("constellation") or "")
            found.extend(_from_file(tile, date=date, label=label, **options))
    return found


def _from_file(path: Path, *, date: dt.date | None = None, label: str | None = None, **options: Any) -> list[_Found]:
    """One tile (file, product folder, STAC item or NDVI raster), opened as the zonal engine reads it."""
    from agricredit.zonal import open_tile

    tile = open_tile(path.resolve(), date=date, **options)
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


# --------------------------------------------------------------------------- series and features


def tile_hashes(acquisitions: Iterable[Acquisition]) -> dict[str, str]:
    """sha256 of every tile of a season, keyed ``date/name``; a product folder is hashed over its files.

    The provenance of a season for audit records and model cards
    (see :func:`agricredit.outputs.sha256_path`).
    """
    from agricredit.outputs import sha256_path

    return {f"{acquisition.date}/{Path(path).name}": sha256_path(path)
            for acquisition in acquisitions for path in acquisition.paths}


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


@dataclass(frozen=True)
class PlotSeries:
    """The valid observations of one plot, sorted by date.

    ``dates`` are numpy ``datetime64[D]``; ``n_acquisitions`` counts all rows of
    the plot in the long table (valid or not).
    """

    plot_id: str
    dates: np.ndarray
    ndvi: np.ndarray
    cropped_area_mu: np.ndarray
    n_acquisitions: int
    pixel_count: float = np.nan  # median over the plot's rows (sum of coverage fractions)


def _normalise_table(table: pd.DataFrame, stat: str) -> pd.DataFrame:
    missing = [c for c in (*LONG_TABLE_COLUMNS, stat) if c not in table.columns]
    if missing:
        raise SchemaError(f"long table misses columns {missing}")
    optional = ["pixel_count"] if "pixel_count" in table.columns else []
    frame = table.loc[:, [*LONG_TABLE_COLUMNS, stat, *optional]].copy()
    frame["plot_id"] = frame["plot_id"].astype(str)
    frame["date"] = pd.to_datetime(frame["date"]).dt.normalize().astype("datetime64[s]")
    return frame.sort_values(["plot_id", "date"], kind="stable")


def plot_series(table: pd.DataFrame, *, min_valid_fraction: float = 0.6, stat: str = "ndvi_mean") -> dict[str, PlotSeries]:
    """Split the long table into per-plot series of valid observations.

    Parameters
    ----------
    table
        The zonal engine's long table (one row per plot and date).
    min_valid_fraction
        Observations whose ``valid_frac`` is below this (or NaN), or whose NDVI
        is NaN, are dropped.
    stat
        The NDVI statistic used: ``ndvi_mean`` (default), ``ndvi_median`` or ``ndvi_p90``.

    Returns
    -------
    dict
        ``plot_id`` → :class:`PlotSeries`, in plot order of the table.
    """
    return _split_series(_normalise_table(table, stat), min_valid_fraction, stat)


def _split_series(frame: pd.DataFrame, min_valid_fraction: float, stat: str) -> dict[str, PlotSeries]:
    # One stable sort by (plot, date), then slices: a groupby of small frames costs ~1 ms a plot.
    frame = frame.sort_values(["plot_id", "date"], kind="stable")
    plot_ids = frame["plot_id"].to_numpy()
    dates = frame["date"].to_numpy().astype("datetime64[D]")
    values = frame[stat].to_numpy(float)
    cropped = frame["cropped_area_mu"].to_numpy(float)
    ok = (frame["valid_frac"].to_numpy(float) >= min_valid_fraction) & np.isfinite(values)
    pixels = frame.groupby("plot_id")["pixel_count"].median() if "pixel_count" in frame else None
    starts = np.flatnonzero(np.r_[True, plot_ids[1:] != plot_ids[:-1]])
    ends = np.r_[starts[1:], len(frame)]
    order = {plot_id: k for k, plot_id in enumerate(pd.unique(pd.Series(plot_ids)))}
    out = {}
    for start, end in sorted(zip(starts, ends), key=lambda bounds: order[plot_ids[bounds[0]]]):
        keep = np.flatnonzero(ok[start:end]) + start
        # Several valid rows of one date (should not happen): keep the last, as the table had them.
        keep = keep[np.r_[dates[keep][1:] != dates[keep][:-1], True]] if len(keep) else keep
        plot_id = plot_ids[start]
        out[plot_id] = PlotSeries(
            plot_id=plot_id,
            dates=dates[keep],
            ndvi=values[keep],
            cropped_area_mu=cropped[keep],
            n_acquisitions=int(end - start),
            pixel_count=float(pixels[plot_id]) if pixels is not None else np.nan,
        )
    return out


def smooth_series(
    dates: np.ndarray,
    ndvi: np.ndarray,
    method: Smoothing = "whittaker",
    *,
    whittaker_lambda: float = 1000.0,
    savgol_window_days: int = 45,
    savgol_order: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Smooth an irregular NDVI series onto a daily grid.

    Parameters
    ----------
    dates, ndvi
        Valid observations (``datetime64[D]``, sorted) and their NDVI.
    method
        ``"whittaker"``: Whittaker–Eilers smoother (second differences,
        weight 1 on observed days, 0 on gaps) solved as one sparse system;
        ``"savgol"``: linear interpolation to days then Savitzky–Golay
        (:func:`scipy.signal.savgol_filter`); ``"none"``: linear interpolation only.
    whittaker_lambda
        Roughness penalty on the daily grid (larger = smoother).
    savgol_window_days, savgol_order
        Savitzky–Golay window (days, made odd and no longer than the series) and polynomial order.

    Returns
    -------
    (days, values)
        Daily ``datetime64[D]`` grid from the first to the last observation and the smoothed NDVI.
    """
    dates = np.asarray(dates, dtype="datetime64[D]")
    ndvi = np.asarray(ndvi, dtype=float)
    if len(dates) < 3:
        return dates, ndvi
    offset = (dates - dates[0]).astype(int)
    days = dates[0] + np.arange(offset[-1] + 1)
    if method == "whittaker":
        n = len(days)
        weights = np.zeros(n)
        target = np.zeros(n)
        weights[offset] = 1.0
        target[offset] = ndvi
        second = sparse.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(n - 2, n))
        system = (sparse.diags(weights) + whittaker_lambda * (second.T @ second)).tocsc()
        return days, spsolve(system, weights * target)
    linear = np.interp(np.arange(len(days)), offset, ndvi)
    if method == "savgol":
        window = min(savgol_window_days | 1, len(days) if len(days) % 2 else len(days) - 1)
        if window > savgol_order + 1:
            return days, savgol_filter(linear, window, savgol_order, mode="interp")
        return days, linear
    if method == "none":
        return days, linear
    raise InputError(f"unknown smoothing {method!r} (none, savgol, whittaker)")


def _crossing(t: np.ndarray, y: np.ndarray, level: float, i: int, j: int) -> float:
    """Time where ``y`` crosses ``level`` between samples ``i`` and ``j`` (linear)."""
    if y[j] == y[i]:
        return float(t[i])
    return float(t[i] + (level - y[i]) * (t[j] - t[i]) / (y[j] - y[i]))


def phenology(days: np.ndarray, ndvi: np.ndarray) -> dict[str, Any]:
    """Phenology features of one season curve.

    Green-up is the last upward crossing, before the peak, of the level halfway
    between the minimum before the peak and the peak; senescence the first
    downward crossing, after the peak, of the level halfway between the peak
    and the minimum after it (each side uses its own base, as TIMESAT does).
    Crossings are interpolated linearly between samples; a crossing outside the
    observed period is ``NaT``.

    Parameters
    ----------
    days, ndvi
        Sorted ``datetime64[D]`` sample dates and NDVI (raw observations or a smoothed daily curve).

    Returns
    -------
    dict
        ``peak_ndvi``, ``peak_date``, ``base_ndvi`` (overall minimum),
        ``amplitude`` (peak − base), ``greenup_date``, ``senescence_date``,
        ``season_length_days``, ``ndvi_integral`` (trapezoid integral of
        NDVI − base over the observed period, NDVI·days).
    """
    nat = np.datetime64("NaT", "D")
    features: dict[str, Any] = {
        "peak_ndvi": np.nan, "peak_date": nat, "base_ndvi": np.nan, "amplitude": np.nan,
        "greenup_date": nat, "senescence_date": nat, "season_length_days": np.nan, "ndvi_integral": np.nan,
    }
    if len(days) == 0:
        return features
    t = (np.asarray(days, dtype="datetime64[D]") - days[0]).astype(float)
    y = np.asarray(ndvi, dtype=float)
    peak = int(np.argmax(y))
    base = float(np.min(y))
    features.update(peak_ndvi=float(y[peak]), peak_date=days[peak], base_ndvi=base, amplitude=float(y[peak] - base))
    features["ndvi_integral"] = float(np.trapezoid(y - base, t)) if len(y) > 1 else 0.0
    left, right = y[: peak + 1], y[peak:]
    level_up = left.min() + 0.5 * (y[peak] - left.min())
    below = np.flatnonzero(left[:-1] < level_up)
    greenup = senescence = np.nan
    if below.size and y[peak] > left.min():
        i = below[-1]
        greenup = _crossing(t, y, level_up, i, i + 1)
    level_down = right.min() + 0.5 * (y[peak] - right.min())
    under = np.flatnonzero(right[1:] < level_down)
    if under.size and y[peak] > right.min():
        j = peak + under[0] + 1
        senescence = _crossing(t, y, level_down, j - 1, j)
    start = np.asarray(days, dtype="datetime64[D]")[0]
    if np.isfinite(greenup):
        features["greenup_date"] = start + np.timedelta64(int(round(greenup)), "D")
    if np.isfinite(senescence):
        features["senescence_date"] = start + np.timedelta64(int(round(senescence)), "D")
    if np.isfinite(greenup) and np.isfinite(senescence):
        features["season_length_days"] = senescence - greenup
    return features


def resample_doy(dates: np.ndarray, ndvi: np.ndarray, grid_doy: np.ndarray) -> np.ndarray:
    """Resample a series to fixed days of year (linear, NaN outside the observed period).

    Only the last 365 days of the series are used, so a season across 1 January
    maps each day of year to one date.
    """
    dates = np.asarray(dates, dtype="datetime64[D]")
    ndvi = np.asarray(ndvi, dtype=float)
    if len(dates) == 0:
        return np.full(len(grid_doy), np.nan)
    keep = dates > dates[-1] - np.timedelta64(365, "D")
    dates, ndvi = dates[keep], ndvi[keep]
    elapsed = (dates - dates[0]).astype(float)
    first_doy = _doy(dates[:1])[0]
    # Position of each grid day of year on the series' own time axis (the next occurrence).
    position = (np.asarray(grid_doy, dtype=float) - first_doy) % 365
    return np.interp(position, elapsed, ndvi, left=np.nan, right=np.nan)


def _doy(dates: np.ndarray) -> np.ndarray:
    dates = np.asarray(dates, dtype="datetime64[D]")
    return (dates - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(int) + 1


# --------------------------------------------------------------------------- crop fit


@dataclass(frozen=True)
class CropFit:
    """The best fit of one crop's template to a series: ``ndvi ≈ offset + scale·T(doy − shift_days)``."""

    crop: str
    score: float
    rmse: float
    shift_days: int
    scale: float
    offset: float


def fit_crops(
    dates: np.ndarray,
    ndvi: np.ndarray,
    crops: Iterable[str] | None = None,
    *,
    max_sowing_shift_days: int = 21,
    shift_penalty: float = 0.10,
) -> list[CropFit]:
    """Fit every crop template to a series and rank the crops (best first).

    Parameters
    ----------
    dates, ndvi
        Valid observations (``datetime64[D]``) and their NDVI; at least 3.
    crops
        Crop names (default: all crops of ``seeds/crops.csv``).
    max_sowing_shift_days
        Templates may move this many days earlier or later (sowing date).
    shift_penalty
        Score added at the largest shift (quadratic in the shift, NDVI units);
        0 ranks by RMSE alone.

    Returns
    -------
    list of CropFit
        Sorted by ``score`` (RMSE + shift penalty), ties by crop name.
    """
    y = np.asarray(ndvi, dtype=float)
    if len(y) < 3:
        raise InputError("a crop fit needs at least 3 valid observations")
    doy = _doy(dates).astype(float)
    shifts = np.arange(-int(max_sowing_shift_days), int(max_sowing_shift_days) + 1)
    penalty = shift_penalty * (shifts / max(max_sowing_shift_days, 1)) ** 2
    fits = []
    for crop in crops if crops is not None else load_crops():
        templates = template_ndvi(crop, doy[None, :] - shifts[:, None])  # shifts × observations
        t_mean = templates.mean(axis=1, keepdims=True)
        centred = templates - t_mean
        variance = (centred**2).sum(axis=1)
        covariance = centred @ (y - y.mean())
        scale = np.clip(np.divide(covariance, variance, out=np.zeros_like(covariance), where=variance > 0), 0.0, MAX_SCALE)
        offset = y.mean() - scale * t_mean[:, 0]
        rmse = np.sqrt(np.mean((offset[:, None] + scale[:, None] * templates - y) ** 2, axis=1))
        best = int(np.argmin(rmse + penalty))
        fits.append(CropFit(crop, float(rmse[best] + penalty[best]), float(rmse[best]), int(shifts[best]), float(scale[best]), float(offset[best])))
    return sorted(fits, key=lambda f: (f.score, f.crop))


def season_window_for(crop: str, start: np.datetime64, end: np.datetime64) -> tuple[np.datetime64, np.datetime64]:
    """The crop's season window (``crops.csv``) that overlaps the period ``start``–``end`` most.

    Returns
    -------
    (first, last)
        Inclusive ``datetime64[D]`` bounds.
    """
    info = load_crops()[crop]
    start, end = np.datetime64(start, "D"), np.datetime64(end, "D")
    first_year, last_year = start.astype(object).year, end.astype(object).year
    best = None
    for harvest_year in range(first_year, last_year + 2):
        lo, hi = (np.datetime64(d, "D") for d in info.season_window(harvest_year))
        overlap = (min(hi, end) - max(lo, start)).astype(int)
        if best is None or overlap > best[0]:
            best = (overlap, lo, hi)
    return best[1], best[2]


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Flag:
    """A satellite check that failed: its reason code and the figures behind it."""

    code: str
    figures: dict[str, float | str | None] = field(default_factory=dict)


@dataclass
class SeasonResult:
    """The outcome of :func:`assess_season`.

    ``plots`` has one row per plot (features, ranking, vigor, ``flags`` as
    ``;``-joined codes, ``flag_figures`` as JSON); ``flags`` maps each plot to its
    :class:`Flag` list; ``fits`` to its ranked :class:`CropFit` list (empty if
    too few observations); ``series`` holds the valid observations.
    """

    plots: pd.DataFrame
    flags: dict[str, list[Flag]]
    fits: dict[str, list[CropFit]]
    series: dict[str, PlotSeries]


def _iso(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else str(np.datetime64(value, "D"))


def assess_season(
    table: pd.DataFrame,
    declarations: Mapping[str, str] | None = None,
    drawn_area_mu: Mapping[str, float] | None = None,
    *,
    plot_ids: Iterable[str] | None = None,
    min_valid_fraction: float = 0.6,
    min_observations_in_window: int = 3,
    min_pixel_count: float = 4.0,
    cultivated_min_share: float = 0.5,
    max_sowing_shift_days: int = 21,
    crop_mismatch_margin: float = 0.02,
    low_vigor_percentile: float = 10.0,
    low_vigor_min_gap: float = 0.10,
    vigor_factor_min: float = 0.7,
    vigor_factor_max: float = 1.1,
    min_season_amplitude: float = 0.2,
    shift_penalty: float = 0.10,
    min_peers: int = 5,
    smoothing: Smoothing = "none",
    stat: str = "ndvi_mean",
    crop_model: Any = None,
    crop_model_margin: float = 0.5,
) -> SeasonResult:
    """Phenology, crop ranking, satellite checks and vigor for every plot of a season.

    Parameters
    ----------
    table
        The zonal engine's long table (one row per plot and date).
    declarations
        ``plot_id`` → declared crop (crops of ``seeds/crops.csv``). Plots without
        a declaration get a ranking but no ``CROP_MISMATCH`` or vigor check.
    drawn_area_mu
        ``plot_id`` → area of the drawn polygon (mu), for the cultivated-share
        test of ``NOT_CULTIVATED``; without it only the green-up test applies.
    plot_ids
        Every plot of the run. Plots with no row in the table (no tile covers
        them) get an empty series, hence ``NO_COVERAGE`` (review).
    min_valid_fraction, min_observations_in_window, min_pixel_count, cultivated_min_share,
    max_sowing_shift_days, crop_mismatch_margin, low_vigor_percentile,
    low_vigor_min_gap, vigor_factor_min, vigor_factor_max
        The ``[satellite]`` policy (``seeds/policy.toml`` documents each). Plots
        under ``min_pixel_count`` (median ``pixel_count``) are left out of the
        vigor comparison; ``TOO_FEW_PIXELS`` itself is verify's to report.
    min_season_amplitude
        ``NOT_CULTIVATED`` also when the season's NDVI amplitude (peak − base) is
        below this or the peak stays under the crop's ``cropped_ndvi_threshold``:
        the season never greens up (bare soil, water, built-up; evergreen cover).
    shift_penalty
        Prior penalty of the template fit at the largest sowing shift (see module doc).
    min_peers
        Vigor is compared only within groups of at least this many eligible plots
        of the same declared crop; smaller groups get factor 1 and no ``LOW_VIGOR``.
    smoothing
        ``none``, ``savgol`` or ``whittaker``: the curve the phenology features are read from
        (the crop fit always uses the valid observations themselves).
    stat
        NDVI statistic of the long table to use.
    crop_model
        A loaded :class:`agricredit.crop_model.CropModel`: crops are ranked by
        its probabilities (score = 1 − p) instead of template RMSE, and
        ``CROP_MISMATCH`` fires when ``p(best) − p(declared) > crop_model_margin``
        (the template margin ``crop_mismatch_margin`` is an RMSE in NDVI units and
        does not carry over to probabilities). Plots whose declared crop the model
        does not know fall back to the template fit.
    crop_model_margin
        The probability margin used with ``crop_model``: 0.5 means another crop
        must be at least 50 points more probable than the declared one
        (e.g. 0.75 against 0.25).

    Returns
    -------
    SeasonResult
    """
    declarations = dict(declarations or {})
    drawn_area_mu = dict(drawn_area_mu or {})
    crops = load_crops()
    unknown = sorted({c for c in declarations.values() if c and c not in crops})
    if unknown:
        raise SchemaError(f"declared crops {unknown} are not in the crop table ({sorted(crops)})")
    frame = _normalise_table(table, stat)
    if frame.empty:
        raise InputError("the long table has no observations (no tile covers any plot in the period)")
    run_start, run_end = frame["date"].min(), frame["date"].max()
    series = _split_series(frame, min_valid_fraction, stat)
    empty = np.array([], dtype="datetime64[D]")
    for plot_id in plot_ids or ():
        series.setdefault(str(plot_id), PlotSeries(str(plot_id), empty, np.array([]), np.array([]), 0))
    rows: list[dict[str, Any]] = []
    flags: dict[str, list[Flag]] = {}
    fits: dict[str, list[CropFit]] = {}
    # The model rebuilds its series from the long table with its own min_valid_fraction (its card's).
    probabilities = crop_model.predict_proba(table, stat=stat) if crop_model is not None else None
    for plot_id, s in series.items():
        declared = declarations.get(plot_id) or None
        row: dict[str, Any] = {"plot_id": plot_id, "declared_crop": declared, "n_acquisitions": s.n_acquisitions,
                               "n_valid": len(s.dates), "pixel_count": s.pixel_count}
        days, curve = smooth_series(s.dates, s.ndvi, smoothing) if smoothing != "none" else (s.dates, s.ndvi)
        pheno = phenology(days, curve)
        row.update(pheno)
        at_peak = np.nan
        if len(s.dates):
            nearest = int(np.argmin(np.abs((s.dates - pheno["peak_date"]).astype(int))))
            at_peak = float(s.cropped_area_mu[nearest])
        row["cropped_area_mu_at_peak"] = at_peak
        drawn = drawn_area_mu.get(plot_id, np.nan)
        row["drawn_area_mu"] = drawn
        row["cropped_share"] = at_peak / drawn if drawn and np.isfinite(drawn) and drawn > 0 else np.nan

        # Which window decides whether there is enough data: the declared crop's,
        # else the best-covered window of any crop.
        window_crops = [declared] if declared else list(crops)
        in_window = {}
        for crop in window_crops:
            lo, hi = season_window_for(crop, run_start, run_end)
            in_window[crop] = (int(np.count_nonzero((s.dates >= lo) & (s.dates <= hi))), lo, hi)
        window_crop = max(in_window, key=lambda c: in_window[c][0])
        n_in, lo, hi = in_window[window_crop]
        row.update(n_valid_in_window=n_in, window_start=_iso(lo), window_end=_iso(hi))

        plot_fits = fit_crops(s.dates, s.ndvi, crops, max_sowing_shift_days=max_sowing_shift_days, shift_penalty=shift_penalty) if len(s.dates) >= 3 else []
        for f in plot_fits:
            row[f"rmse_{f.crop}"] = f.rmse
            row[f"shift_days_{f.crop}"] = f.shift_days
            row[f"scale_{f.crop}"] = f.scale
        use_model = probabilities is not None and plot_id in probabilities.index
        if use_model and declared and declared not in probabilities.columns:
            logger.warning("crop model does not know the declared crop %r; template fit used for that plot", declared)
            use_model = False
        if use_model:
            p = probabilities.loc[plot_id]
            for crop, value in p.items():
                row[f"p_{crop}"] = float(value)
            ranking = sorted(((1.0 - float(v), c) for c, v in p.items()))
            scores = {c: v for v, c in ranking}
            margin = crop_model_margin
        else:
            ranking = [(f.score, f.crop) for f in plot_fits]
            scores = {f.crop: f.score for f in plot_fits}
            margin = crop_mismatch_margin
        row["crop_ranking"] = ";".join(c for _, c in ranking)
        row["best_crop"] = ranking[0][1] if ranking else None
        row["best_score"] = ranking[0][0] if ranking else np.nan
        row["declared_score"] = scores.get(declared, np.nan) if declared else np.nan
        fits[plot_id] = plot_fits
        # Vigor reads the peak of the declared crop's fitted template: a clouded peak date
        # does not make a plot look weak. Without a declaration or a fit, the observed peak.
        declared_fit = next((f for f in plot_fits if f.crop == declared), None)
        row["fitted_peak_ndvi"] = (declared_fit.offset + declared_fit.scale * load_templates()[declared][1].max()
                                   if declared_fit else np.nan)
        row["vigor_peak_ndvi"] = row["fitted_peak_ndvi"] if declared_fit else pheno["peak_ndvi"]

        plot_flags: list[Flag] = []
        if s.n_acquisitions == 0:  # no tile covers the plot at all: not a cloud problem
            plot_flags.append(Flag("NO_COVERAGE", {"acquisitions": 0}))
        elif n_in < min_observations_in_window:
            plot_flags.append(Flag("CLOUD_INSUFFICIENT", {
                "crop": window_crop, "valid_in_window": n_in, "required": min_observations_in_window,
                "window_start": _iso(lo), "window_end": _iso(hi), "acquisitions": s.n_acquisitions,
            }))
        else:
            threshold = crops[declared].cropped_ndvi_threshold if declared else default_cropped_threshold()
            no_greenup = pheno["amplitude"] < min_season_amplitude or pheno["peak_ndvi"] < threshold
            too_little = np.isfinite(row["cropped_share"]) and row["cropped_share"] < cultivated_min_share
            if no_greenup or too_little:
                plot_flags.append(Flag("NOT_CULTIVATED", {
                    "peak_ndvi": pheno["peak_ndvi"], "amplitude": pheno["amplitude"],
                    "cropped_ndvi_threshold": threshold, "min_season_amplitude": min_season_amplitude,
                    "cropped_area_mu_at_peak": at_peak, "drawn_area_mu": drawn if np.isfinite(drawn) else None,
                    "cropped_share": row["cropped_share"] if np.isfinite(row["cropped_share"]) else None,
                    "cultivated_min_share": cultivated_min_share,
                }))
            elif declared and ranking and row["declared_score"] - row["best_score"] > margin:
                plot_flags.append(Flag("CROP_MISMATCH", {
                    "declared_crop": declared, "best_crop": row["best_crop"],
                    "declared_score": row["declared_score"], "best_score": row["best_score"],
                    "margin": margin, "method": "model" if use_model else "template",
                }))
        flags[plot_id] = plot_flags
        rows.append(row)

    plots = pd.DataFrame(rows)
    plots = peer_vigor(plots, flags, low_vigor_percentile=low_vigor_percentile, low_vigor_min_gap=low_vigor_min_gap,
                       vigor_factor_min=vigor_factor_min, vigor_factor_max=vigor_factor_max, min_peers=min_peers,
                       min_pixel_count=min_pixel_count)
    plots["flags"] = [";".join(f.code for f in flags[p]) for p in plots["plot_id"]]
    plots["flag_figures"] = [json.dumps({f.code: f.figures for f in flags[p]}, sort_keys=True, default=_json_default) for p in plots["plot_id"]]
    for column in ("peak_date", "greenup_date", "senescence_date"):
        plots[column] = [_iso(v) for v in plots[column]]
    return SeasonResult(plots=plots, flags=flags, fits=fits, series=series)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def peer_vigor(
    plots: pd.DataFrame,
    flags: dict[str, list[Flag]],
    *,
    low_vigor_percentile: float = 10.0,
    low_vigor_min_gap: float = 0.10,
    vigor_factor_min: float = 0.7,
    vigor_factor_max: float = 1.1,
    min_peers: int = 5,
    min_pixel_count: float = 0.0,
) -> pd.DataFrame:
    """Compare each plot's peak NDVI with the plots of the same declared crop.

    The peak compared is ``vigor_peak_ndvi``: the peak of the declared crop's
    fitted template (offset + scale × template maximum), which a clouded peak
    date does not lower; the observed peak where no fit exists. Peers are the
    plots of the same ``declared_crop`` without ``NOT_CULTIVATED``,
    ``CLOUD_INSUFFICIENT`` or ``CROP_MISMATCH`` (the declared crop's template
    says nothing about a plot growing another crop), nor plots whose
    ``pixel_count`` is below ``min_pixel_count`` (mixed pixels). A plot's percentile is the
    share of the *other* peers with a lower peak (ties count half). ``LOW_VIGOR``
    (appended to ``flags``) needs both a percentile below ``low_vigor_percentile``
    and a peak at least ``low_vigor_min_gap`` below the peer median, so a
    uniform season flags nobody. The vigor factor is peak / peer median,
    clipped to ``[vigor_factor_min, 1]`` for a LOW_VIGOR plot and to
    ``[1, vigor_factor_max]`` for the others (so only a flagged plot's limit is
    marked down); 1 where no peer comparison is possible.

    Returns
    -------
    pandas.DataFrame
        ``plots`` with ``peer_count``, ``peer_median_peak``, ``peak_percentile`` and ``vigor_factor``.
    """
    plots = plots.copy()
    excluded = {"NOT_CULTIVATED", "CLOUD_INSUFFICIENT", "NO_COVERAGE", "CROP_MISMATCH"}
    pixels = plots["pixel_count"].to_numpy(float) if "pixel_count" in plots else np.full(len(plots), np.nan)
    eligible = np.array([
        isinstance(crop, str) and bool(crop) and not any(f.code in excluded for f in flags[pid]) and np.isfinite(peak) and not n < min_pixel_count
        for pid, crop, peak, n in zip(plots["plot_id"], plots["declared_crop"], plots["vigor_peak_ndvi"], pixels)
    ], dtype=bool)
    peer_count = np.zeros(len(plots), dtype=int)
    peer_median = np.full(len(plots), np.nan)
    percentile = np.full(len(plots), np.nan)
    vigor = np.ones(len(plots))
    crops = plots["declared_crop"].to_numpy(object)
    peaks_all = plots["vigor_peak_ndvi"].to_numpy(float)
    plot_ids = plots["plot_id"].to_numpy(object)
    for crop in sorted({c for c in crops[eligible]}):
        members = np.flatnonzero(eligible & (crops == crop))
        if len(members) < min_peers:
            continue
        peaks = peaks_all[members]
        ordered = np.sort(peaks)
        median = float(np.median(peaks))
        # scipy.stats.percentileofscore(others, peak, kind="mean") against the *other* peers, vectorised:
        # (count below + count at or below) / 2, the plot itself left out of both.
        below = np.searchsorted(ordered, peaks, side="left")
        at_or_below = np.searchsorted(ordered, peaks, side="right") - 1
        percentiles = (below + at_or_below) / 2 / (len(members) - 1) * 100.0
        peer_count[members] = len(members)
        peer_median[members] = median
        percentile[members] = percentiles
        # Only a flagged plot is marked down (so no limit falls without LOW_VIGOR saying so); any plot may be
        # marked up to vigor_factor_max (1.0 by default: no bonus for being greener than the neighbours).
        vigor[members] = np.clip(peaks / median, 1.0, vigor_factor_max)
        for index, peak, plot_percentile in zip(members, peaks, percentiles):
            gap = median - peak
            if plot_percentile < low_vigor_percentile and gap >= low_vigor_min_gap:
                vigor[index] = np.clip(peak / median, vigor_factor_min, 1.0)
                flags[plot_ids[index]].append(Flag("LOW_VIGOR", {
                    "crop": crop, "vigor_peak_ndvi": float(peak), "peer_median_peak": median, "gap": float(gap),
                    "peak_percentile": float(plot_percentile), "low_vigor_percentile": low_vigor_percentile,
                    "low_vigor_min_gap": low_vigor_min_gap, "peer_count": len(members),
                }))
    plots["peer_count"] = peer_count
    plots["peer_median_peak"] = peer_median
    plots["peak_percentile"] = percentile
    plots["vigor_factor"] = vigor
    return plots


def season_chart(result: SeasonResult, plot_id: str, path: str | Path, *, title: str | None = None) -> None:
    """Draw a plot's observations against every crop template as fitted (PNG, Agg backend).

    Each template is drawn with its fitted sowing shift, scale and offset; the
    legend gives the shift and RMSE, best crop first. Written with
    :func:`agricredit.outputs.atomic_path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from agricredit.outputs import atomic_path

    if plot_id not in result.series:
        raise InputError(f"plot {plot_id!r} is not in this run")
    s = result.series[plot_id]
    row = result.plots.set_index("plot_id").loc[plot_id]
    figure = Figure(figsize=(8, 4.5), dpi=100)
    axes = figure.add_subplot()
    if len(s.dates):
        start = s.dates[0] - np.timedelta64(20, "D")
        days = start + np.arange((s.dates[-1] - start).astype(int) + 21)
    else:
        days = np.datetime64(str(row.get("window_start") or "2000-01-01"), "D") + np.arange(365)
    for k, fit in enumerate(result.fits.get(plot_id, [])):
        curve = fit.offset + fit.scale * template_ndvi(fit.crop, _doy(days) - fit.shift_days)
        axes.plot(days.astype("datetime64[D]").astype(object), curve, lw=2.2 if k == 0 else 1.2,
                  label=f"{fit.crop}: shift {fit.shift_days:+d} d, scale {fit.scale:.2f}, RMSE {fit.rmse:.3f}")
    axes.plot(s.dates.astype(object), s.ndvi, "ko", label=f"observed ({len(s.dates)} valid)")
    if row.get("window_start"):
        axes.axvspan(dt.date.fromisoformat(row["window_start"]), dt.date.fromisoformat(row["window_end"]),
                     color="0.9", zorder=0, label="declared crop window" if row.get("declared_crop") else "season window")
    axes.set_ylim(-0.3, 1.0)
    axes.set_ylabel("NDVI")
    flags = row.get("flags") or "no flags"
    axes.set_title(title or f"plot {plot_id} — declared {row.get('declared_crop') or '?'} — {flags}")
    axes.legend(fontsize=7, loc="upper left")
    figure.autofmt_xdate()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


# --------------------------------------------------------------------------- policy and output table
# (kept at the end of the module; not in ``__all__`` above, importable by name)

#: Columns of the per-plot season table, first and in this order (the per-crop fit columns follow).
SEASON_LEAD_COLUMNS = (
    "plot_id", "declared_crop", "flags", "best_crop", "crop_ranking", "best_score", "declared_score",
    "n_acquisitions", "n_valid", "n_valid_in_window", "window_start", "window_end", "pixel_count",
    "peak_ndvi", "peak_date", "greenup_date", "senescence_date", "season_length_days", "ndvi_integral",
    "base_ndvi", "amplitude", "cropped_area_mu_at_peak", "drawn_area_mu", "cropped_share",
    "fitted_peak_ndvi", "vigor_peak_ndvi", "peer_count", "peer_median_peak", "peak_percentile", "vigor_factor",
    "flag_figures",
)


def season_options(policy: Any, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`assess_season` that the policy's ``[satellite]`` section sets.

    Parameters
    ----------
    policy
        A loaded :class:`agricredit.policy.Policy`.
    **overrides
        Values replacing the policy's (e.g. from command-line options); ``None`` values are ignored.

    Returns
    -------
    dict
        ``{name: value}`` for every ``[satellite]`` key that :func:`assess_season` takes.
    """
    import dataclasses
    import inspect

    accepted = inspect.signature(assess_season).parameters
    options = {key: value for key, value in dataclasses.asdict(policy.satellite).items() if key in accepted}
    options.update({key: value for key, value in overrides.items() if value is not None})
    return options


def season_plot_table(result: SeasonResult, plots: Any) -> Any:
    """The per-plot season table with the plots' WGS84 geometry, lead columns first.

    Parameters
    ----------
    result
        From :func:`assess_season`.
    plots
        GeoDataFrame of the plots (``plot_id``, any CRS).

    Returns
    -------
    geopandas.GeoDataFrame
        One row per plot of ``result``, in WGS84 (EPSG:4326); write it with
        :func:`agricredit.outputs.write_plot_table`.
    """
    import geopandas as gpd

    from agricredit.plots import to_wgs84

    table = result.plots
    ordered = table[[c for c in SEASON_LEAD_COLUMNS if c in table] + [c for c in table if c not in SEASON_LEAD_COLUMNS]]
    wgs = to_wgs84(plots)
    geometry = dict(zip(wgs["plot_id"].astype(str), wgs.geometry.values))
    return gpd.GeoDataFrame(ordered, geometry=[geometry.get(p) for p in ordered["plot_id"]], crs="EPSG:4326")
