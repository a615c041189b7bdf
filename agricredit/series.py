"""Per-plot NDVI series from the zonal long table: valid observations, smoothing, phenology.

The input is the zonal engine's *long table* (one row per plot and acquisition
date, columns ``plot_id, date, ndvi_mean, ndvi_median, ndvi_p90, valid_frac,
cloud_frac, cropped_area_mu, pixel_count``); :func:`plot_series` splits it into
one :class:`PlotSeries` of valid observations per plot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import itertools
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.linalg import spsolve

from agricredit.errors import InputError, SchemaError

__all__ = [
    "LONG_TABLE_COLUMNS",
    "PlotSeries",
    "Smoothing",
    "normalise_table",
    "plot_series",
    "split_series",
    "smooth_series",
    "phenology",
    "phenology_many",
    "resample_doy",
    "day_of_year",
]

#: Columns of the zonal engine's long table this module relies on.
LONG_TABLE_COLUMNS = ("plot_id", "date", "valid_frac", "cropped_area_mu")

Smoothing = Literal["none", "savgol", "whittaker"]


@dataclass(frozen=True)
class PlotSeries:
    """The usable observations of one plot, sorted by date.

    ``dates`` are numpy ``datetime64[D]``; ``n_acquisitions`` counts all rows of
    the plot in the long table (usable or not). Per usable observation:
    ``valid_frac`` (clear share of the whole plot), ``covered_frac`` (share of
    the plot inside the imagery) and ``cloud_masked`` (False when the product
    had no cloud mask: such an observation may send a plot to review, never
    lower a limit). ``max_covered_frac`` is the largest covered share over all
    the plot's rows (below 1: the plot is never fully inside the imagery);
    ``unusable_dates`` the dates of its rows too clouded (or without NDVI) to use.
    """

    plot_id: str
    dates: np.ndarray
    ndvi: np.ndarray
    cropped_area_mu: np.ndarray
    n_acquisitions: int
    pixel_count: float = np.nan  # median over the plot's rows (sum of coverage fractions)
    valid_frac: np.ndarray = field(default_factory=lambda: np.array([]))
    covered_frac: np.ndarray = field(default_factory=lambda: np.array([]))
    cloud_masked: np.ndarray = field(default_factory=lambda: np.array([], dtype=bool))
    max_covered_frac: float = np.nan
    unusable_dates: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[D]"))


def normalise_table(table: pd.DataFrame, stat: str) -> pd.DataFrame:
    """The long table's columns this module uses, ``plot_id`` as text, dates as days, sorted by plot and date."""
    missing = [c for c in (*LONG_TABLE_COLUMNS, stat) if c not in table.columns]
    if missing:
        raise SchemaError(f"long table misses columns {missing}")
    optional = [c for c in ("pixel_count", "covered_frac", "cloud_masked") if c in table.columns]
    frame = table.loc[:, [*LONG_TABLE_COLUMNS, stat, *optional]].copy()
    frame["plot_id"] = frame["plot_id"].astype(str)
    # Tables without these columns: every plot inside the imagery, every product cloud-masked.
    if "covered_frac" not in frame:
        frame["covered_frac"] = 1.0
    frame["cloud_masked"] = frame["cloud_masked"].fillna(True).astype(bool) if "cloud_masked" in frame else True
    frame["date"] = pd.to_datetime(frame["date"]).dt.normalize().astype("datetime64[s]")
    return frame.sort_values(["plot_id", "date"], kind="stable")


def plot_series(table: pd.DataFrame, *, min_valid_fraction: float = 0.6, stat: str = "ndvi_mean") -> dict[str, PlotSeries]:
    """Split the long table into per-plot series of valid observations.

    Parameters
    ----------
    table
        The zonal engine's long table (one row per plot and date).
    min_valid_fraction
        Observations whose clear share of the imaged part of the plot
        (``valid_frac / covered_frac``) is below this (or NaN), or whose NDVI
        is NaN, are dropped. A plot partly outside the imagery is judged on
        what was imaged (and flagged by the season checks), not as clouded.
    stat
        The NDVI statistic used: ``ndvi_mean`` (default), ``ndvi_median`` or ``ndvi_p90``.

    Returns
    -------
    dict
        ``plot_id`` → :class:`PlotSeries`, in plot order of the table.
    """
    return split_series(normalise_table(table, stat), min_valid_fraction, stat)


def split_series(frame: pd.DataFrame, min_valid_fraction: float, stat: str) -> dict[str, PlotSeries]:
    """:func:`plot_series` on a table already passed through :func:`normalise_table`."""
    # One stable sort by (plot, date), then every plot's rows at once: a groupby of small frames costs ~1 ms a plot.
    frame = frame.sort_values(["plot_id", "date"], kind="stable")
    if frame.empty:
        return {}
    plot_ids = frame["plot_id"].to_numpy()
    dates = frame["date"].to_numpy().astype("datetime64[D]")
    values = frame[stat].to_numpy(float)
    valid = frame["valid_frac"].to_numpy(float)
    covered = frame["covered_frac"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (valid / covered >= min_valid_fraction) & (covered > 0) & np.isfinite(values)
    starts = np.flatnonzero(np.r_[True, plot_ids[1:] != plot_ids[:-1]])
    rows = np.diff(np.r_[starts, len(frame)])
    plot = np.repeat(np.arange(len(starts)), rows)  # each row's plot
    # Several valid rows of one date (should not happen): keep the last, as the table had them.
    kept = _last_of_days(np.flatnonzero(ok), plot, dates)
    unusable = _last_of_days(np.flatnonzero(~ok), plot, dates)  # each unusable date once
    kept_bounds = _bounds(plot[kept], len(starts))
    unusable_days = dates[unusable]
    unusable_bounds = _bounds(plot[unusable], len(starts)).tolist()
    unusable_dates = [unusable_days[lo:hi] for lo, hi in itertools.pairwise(unusable_bounds)]
    columns = {"dates": dates, "ndvi": values, "cropped_area_mu": frame["cropped_area_mu"].to_numpy(float),
               "valid_frac": valid, "covered_frac": covered, "cloud_masked": frame["cloud_masked"].to_numpy(bool)}
    columns = {name: column[kept] for name, column in columns.items()}  # each plot's arrays: disjoint slices
    ids = plot_ids[starts]
    pixels = (frame.groupby("plot_id")["pixel_count"].median().reindex(ids).to_numpy(float) if "pixel_count" in frame
              else np.full(len(starts), np.nan))
    max_covered = np.fmax(np.fmax.reduceat(covered, starts), 0.0)  # np.nanmax(..., initial=0.0) of each plot
    out = {}
    for k, (plot_id, lo, hi) in enumerate(zip(ids.tolist(), kept_bounds[:-1].tolist(), kept_bounds[1:].tolist())):
        out[plot_id] = PlotSeries(
            plot_id=plot_id,
            dates=columns["dates"][lo:hi],
            ndvi=columns["ndvi"][lo:hi],
            cropped_area_mu=columns["cropped_area_mu"][lo:hi],
            n_acquisitions=int(rows[k]),
            pixel_count=float(pixels[k]),
            valid_frac=columns["valid_frac"][lo:hi],
            covered_frac=columns["covered_frac"][lo:hi],
            cloud_masked=columns["cloud_masked"][lo:hi],
            max_covered_frac=float(max_covered[k]),
            unusable_dates=unusable_dates[k],
        )
    return out


def _last_of_days(rows: np.ndarray, plot: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """``rows`` (increasing) less each row followed, in ``rows``, by one of the same plot and date."""
    same = (plot[rows][1:] == plot[rows][:-1]) & (dates[rows][1:] == dates[rows][:-1])
    return rows[np.r_[~same, True]] if len(rows) else rows


def _bounds(plot: np.ndarray, count: int) -> np.ndarray:
    """Where each plot's run starts in ``plot`` (sorted plot numbers ``0 .. count − 1``), and its end."""
    return np.searchsorted(plot, np.arange(count + 1))


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
            from scipy.signal import savgol_filter  # imported here: scipy.signal alone takes seconds to import

            return days, savgol_filter(linear, window, savgol_order, mode="interp")
        return days, linear
    if method == "none":
        return days, linear
    raise InputError(f"unknown smoothing {method!r} (none, savgol, whittaker)")


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
    return phenology_many([days], [ndvi])[0]


def phenology_many(days: Sequence[np.ndarray], ndvi: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """:func:`phenology` of each curve ``(days[k], ndvi[k])``, vectorised over the curves of one length.

    Every figure is the same, to the last bit, as the curve's alone (the same operations, row by row).
    """
    lengths = np.array([len(d) for d in days], dtype=np.int64)
    nat = np.datetime64("NaT", "D")
    out: list[dict[str, Any]] = [{
        "peak_ndvi": np.nan, "peak_date": nat, "base_ndvi": np.nan, "amplitude": np.nan,
        "greenup_date": nat, "senescence_date": nat, "season_length_days": np.nan, "ndvi_integral": np.nan,
    } for _ in days]
    for n in np.unique(lengths[lengths > 0]).tolist():
        members = np.flatnonzero(lengths == n)
        dates = np.stack([np.asarray(days[k], dtype="datetime64[D]") for k in members])
        y = np.stack([np.asarray(ndvi[k], dtype=float) for k in members])
        for k, features in zip(members.tolist(), _phenology_rows(dates, y)):
            out[k] = features
    return out


def _phenology_rows(dates: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """:func:`phenology` of each row of ``dates`` (``datetime64[D]``) and ``y`` (float), ``M × N`` with ``N ≥ 1``."""
    rows = np.arange(len(y))
    column = np.arange(y.shape[1])[None, :]
    t = (dates - dates[:, :1]).astype(float)
    peak = np.argmax(y, axis=1)
    top = y[rows, peak]
    base = np.min(y, axis=1)
    if y.shape[1] > 1:  # np.trapezoid(y - base, t), row by row
        above = y - base[:, None]
        integral = np.add.reduce(np.diff(t, axis=1) * (above[:, 1:] + above[:, :-1]) / 2.0, axis=1)
    else:
        integral = np.zeros(len(y))
    before, after = column <= peak[:, None], column >= peak[:, None]
    # Green-up: the last sample before the peak below the level halfway up from the minimum up to the peak.
    left_min = np.where(before, y, np.inf).min(axis=1)
    level_up = left_min + 0.5 * (top - left_min)
    below = (column < peak[:, None]) & (y < level_up[:, None])
    i = y.shape[1] - 1 - np.argmax(below[:, ::-1], axis=1)
    greenup = np.where(below.any(axis=1) & (top > left_min),
                       _crossings(t, y, level_up, i, np.minimum(i + 1, y.shape[1] - 1)), np.nan)
    # Senescence: the first sample after the peak below the level halfway down from the peak to the minimum after it.
    right_min = np.where(after, y, np.inf).min(axis=1)
    level_down = right_min + 0.5 * (top - right_min)
    under = (column > peak[:, None]) & (y < level_down[:, None])
    j = np.argmax(under, axis=1)
    senescence = np.where(under.any(axis=1) & (top > right_min),
                          _crossings(t, y, level_down, np.maximum(j - 1, 0), j), np.nan)
    greenup_date, senescence_date = (
        np.where(np.isfinite(x), dates[:, 0] + np.rint(np.nan_to_num(x)).astype(np.int64), np.datetime64("NaT", "D"))
        for x in (greenup, senescence))
    length = np.where(np.isfinite(greenup) & np.isfinite(senescence), senescence - greenup, np.nan)
    return [{"peak_ndvi": p, "peak_date": d, "base_ndvi": b, "amplitude": a, "greenup_date": g,
             "senescence_date": s, "season_length_days": length, "ndvi_integral": area}
            for p, d, b, a, g, s, length, area in zip(
                top.tolist(), dates[rows, peak], base.tolist(), (top - base).tolist(), greenup_date, senescence_date,
                length.tolist(), integral.tolist())]


def _crossings(t: np.ndarray, y: np.ndarray, level: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Per row, the time where ``y`` crosses ``level`` between samples ``i`` and ``j`` (linear; ``t[i]`` if flat)."""
    rows = np.arange(len(y))
    ti, tj, yi, yj = t[rows, i], t[rows, j], y[rows, i], y[rows, j]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(yj == yi, ti, ti + (level - yi) * (tj - ti) / (yj - yi))


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
    first_doy = day_of_year(dates[:1])[0]
    # Position of each grid day of year on the series' own time axis (the next occurrence).
    position = (np.asarray(grid_doy, dtype=float) - first_doy) % 365
    return np.interp(position, elapsed, ndvi, left=np.nan, right=np.nan)


def day_of_year(dates: np.ndarray) -> np.ndarray:
    """Day of year (1 = 1 January) of ``datetime64`` dates."""
    dates = np.asarray(dates, dtype="datetime64[D]")
    return (dates - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(int) + 1
