"""Crop templates fitted to a plot's NDVI series, and each crop's season window.

Each crop's NDVI template ``T`` (``seeds/ndvi_templates.csv``) is fitted to the
valid observations ``y`` at day of year ``d`` as ``y ≈ b + a·T(d − s)`` for every
whole-day sowing shift ``|s| ≤ max_sowing_shift_days``: offset ``b`` and
amplitude scale ``0 ≤ a ≤ MAX_SCALE`` by closed-form least squares per shift.
The crop's *score* is the RMSE of the best shift plus a calendar prior
``shift_penalty·(s / max_sowing_shift_days)²``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from agricredit.errors import InputError
from agricredit.seeds import load_crops, template_ndvi
from agricredit.series import day_of_year

__all__ = ["MAX_SCALE", "CropFit", "fit_crops", "season_window_for"]

#: Largest amplitude scale a template may be stretched by in the crop fit.
MAX_SCALE = 2.0


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
    doy = day_of_year(dates).astype(float)
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
