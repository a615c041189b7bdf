"""Cropping systems fitted to a plot's NDVI series: single crop seasons and two-season rotations.

A region's *explanations* of a year are each crop season of its calendar
(``seeds/calendars.csv``) alone and each of its rotations
(``seeds/rotations.csv``, e.g. winter wheat then summer maize). Each season
``k`` has a unit-amplitude canopy curve ``g_k`` on the calendar: a double
logistic (Beck et al. 2006, Remote Sens. Environ. 100:321-334) rising through
its green-up date and falling through its senescence date (the 50 % points),
plus, for a winter crop, the autumn tillering plateau from sowing to dormancy.
An explanation is fitted to the valid observations ``y`` at days ``t`` as::

    y ≈ b + Σ_k a_k · g_k(t − s_k)

with a free offset ``b``, a sowing shift per season (the first season's
``|s_1| ≤ max_sowing_shift_days``; a later season's shift differs from the one
before it by at most as much, since a summer crop is sown after the winter
crop's harvest) and an amplitude ``a_k`` between ``min_template_scale`` and
:data:`MAX_SCALE` times the crop's NDVI range (``peak_ndvi − base_ndvi`` of
``crops.csv``): a flat line is never a crop, because every season of an
explanation must rise by at least that much. The amplitudes and offset are
solved exactly under their bounds (every active set of the box constraints is
tried) for every whole-day shift on a coarse grid, then refined to the day.

The explanation's *score* is its RMSE plus a calendar prior
``shift_penalty · mean_k (d_k / max_sowing_shift_days)²`` (``d_k`` each season's
own delay: ``s_1``, then ``s_k − s_(k−1)``) that prefers the
regional calendar when two explanations fit equally well.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from agricredit.errors import InputError
from agricredit.seeds import CropSeason, load_calendars, load_crops, load_rotations

__all__ = [
    "MAX_SCALE",
    "STEEPNESS_DAYS",
    "Explanation",
    "SeasonFit",
    "SystemFit",
    "explanations_for",
    "fit_explanations",
    "fit_explanations_many",
    "harvest_year_for",
]

#: Largest amplitude scale (times the crop's NDVI range) a season may be stretched by.
MAX_SCALE = 2.0
#: Width (days) of the logistic rise and fall of a season curve (Beck et al. 2006 fits give 5-15 days).
STEEPNESS_DAYS = 8.0
#: Autumn plateau of a winter crop before dormancy, as a share of its amplitude
#: (winter wheat tillers to NDVI ≈ 0.35 over a 0.2 base before winter; CAL-NCP).
WINTER_PLATEAU = 0.25
#: Days from sowing to the middle of a winter crop's autumn emergence.
WINTER_EMERGENCE_DAYS = 20
#: Coarse shift grid step (days); the best combination is then refined day by day.
SHIFT_STEP_DAYS = 3


@dataclass(frozen=True)
class Explanation:
    """One way a plot's year can look: one crop season, or a rotation of two."""

    name: str  # the season key (``maize``, ``maize:summer``) or the rotation's system (``wheat-maize``)
    seasons: tuple[CropSeason, ...]


@dataclass(frozen=True)
class SeasonFit:
    """One season of a fitted explanation: its sowing shift, amplitude and dates as fitted."""

    season: CropSeason
    shift_days: int
    amplitude: float  # NDVI rise above the offset
    scale: float  # amplitude / the crop's NDVI range of crops.csv
    dates: dict[str, dt.date]  # sowing ... harvest of the calendar, moved by the shift


@dataclass(frozen=True)
class SystemFit:
    """The best fit of one explanation to a series (``ndvi ≈ offset + Σ amplitude·g(t − shift)``)."""

    name: str
    score: float
    rmse: float
    offset: float
    seasons: tuple[SeasonFit, ...]

    @property
    def crops(self) -> tuple[str, ...]:
        """The crops of the explanation, in season order."""
        return tuple(s.season.crop for s in self.seasons)

    @property
    def label(self) -> str:
        """The crops joined by ``-`` (``maize``, ``wheat-soybean``): what a reader calls the system."""
        return "-".join(self.crops)

    def curve(self, days: np.ndarray) -> np.ndarray:
        """The fitted NDVI on ``datetime64[D]`` days."""
        t = np.asarray(days, dtype="datetime64[D]").astype(np.int64).astype(float)
        value = np.full(t.shape, self.offset)
        for fit in self.seasons:
            value += fit.amplitude * _shape(fit.season, fit.dates["harvest"].year, t - fit.shift_days)
        return value


def explanations_for(region: str) -> list[Explanation]:
    """The region's explanations: every crop season of its calendar alone, then its rotations.

    Raises
    ------
    InputError
        The region has no calendar in ``seeds/calendars.csv``.
    """
    calendars = load_calendars()
    if region not in calendars:
        raise InputError(f"no crop calendar for region {region!r} (known: {', '.join(sorted(calendars))})")
    singles = [Explanation(key, (season,)) for key, season in calendars[region].items()]
    return singles + [Explanation(r.system, (r.first, r.second)) for r in load_rotations()[region]]


def harvest_year_for(season: CropSeason, start: np.datetime64, end: np.datetime64) -> int:
    """The harvest year whose sowing-to-harvest window overlaps the period ``start``–``end`` most."""
    start, end = np.datetime64(start, "D").astype(object), np.datetime64(end, "D").astype(object)
    best: tuple[int, int] | None = None
    for year in range(start.year, end.year + 2):
        dates = season.dates(year)
        overlap = (min(dates["harvest"], end) - max(dates["sowing"], start)).days
        if best is None or overlap > best[0]:
            best = (overlap, year)
    return best[1]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@functools.lru_cache(maxsize=256)
def _anchors(season: CropSeason, harvest_year: int) -> tuple[float, float, float, float]:
    """Days since 1970 of sowing, green-up and senescence, and the double logistic's peak (to normalise)."""
    dates = season.dates(harvest_year)
    sowing, greenup, senescence = (float((dates[k] - dt.date(1970, 1, 1)).days) for k in ("sowing", "greenup", "senescence"))
    t = np.arange(greenup - 60, senescence + 60)
    top = float(np.max(_sigmoid((t - greenup) / STEEPNESS_DAYS) * (1 - _sigmoid((t - senescence) / STEEPNESS_DAYS))))
    return sowing, greenup, senescence, top


def _shape(season: CropSeason, harvest_year: int, t: np.ndarray) -> np.ndarray:
    """Unit-amplitude canopy curve of a season at days ``t`` (days since 1970, any shape)."""
    sowing, greenup, senescence, top = _anchors(season, harvest_year)
    fall = 1 - _sigmoid((t - senescence) / STEEPNESS_DAYS)
    main = _sigmoid((t - greenup) / STEEPNESS_DAYS) * fall / top
    if season.slot != "winter":
        return main
    autumn = WINTER_PLATEAU * _sigmoid((t - sowing - WINTER_EMERGENCE_DAYS) / STEEPNESS_DAYS) * fall
    return np.maximum(main, autumn)


def _bounded_fit(y: np.ndarray, shapes: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares ``y ≈ b + Σ a_k shapes[:, :, k]`` with ``low_k ≤ a_k ≤ high_k``, for each of C shift combinations.

    ``shapes`` is ``C × n × K``; ``y`` is ``n`` (one series for every combination) or ``C × n`` (one series
    per combination: several plots fitted at once). Returns ``(sse, offset, amplitudes)`` of shapes ``C``, ``C``,
    ``C × K``.
    Exact: the optimum of a convex least squares over a box has each bound either active
    or not; every such active set is solved and the best feasible one kept.
    """
    n_combos, n, k = shapes.shape
    best_sse = np.full(n_combos, np.inf)
    best_offset = np.zeros(n_combos)
    best_amp = np.zeros((n_combos, k))
    ones = np.ones((n_combos, n, 1))
    for states in itertools.product((0, 1, 2), repeat=k):  # 0 free, 1 at low, 2 at high
        fixed = np.zeros(k)
        free = [j for j, s in enumerate(states) if s == 0]
        for j, s in enumerate(states):
            if s:
                fixed[j] = low[j] if s == 1 else high[j]
        target = y - shapes @ fixed  # C × n
        design = np.concatenate([ones, shapes[:, :, free]], axis=2)  # C × n × (1 + m)
        gram = np.einsum("cni,cnj->cij", design, design) + 1e-12 * np.eye(1 + len(free))
        rhs = np.einsum("cni,cn->ci", design, target)
        solution = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
        residual = target - np.einsum("cni,ci->cn", design, solution)
        sse = np.einsum("cn,cn->c", residual, residual)
        amp = np.tile(fixed, (n_combos, 1))
        amp[:, free] = solution[:, 1:]
        feasible = np.all((amp >= low - 1e-9) & (amp <= high + 1e-9), axis=1)
        better = feasible & (sse < best_sse)
        best_sse[better], best_offset[better], best_amp[better] = sse[better], solution[better, 0], amp[better]
    return best_sse, best_offset, best_amp


#: Plots fitted together in one block of :func:`_fit_many` (bounds the temporary arrays to a few tens of MB).
FIT_BLOCK_PLOTS = 512


def _fit_many(explanation: Explanation, t: np.ndarray, ys: np.ndarray, run: tuple[np.datetime64, np.datetime64], *,
              max_shift: int, shift_penalty: float, min_scale: float) -> list[SystemFit]:
    """The best fit of one explanation to each row of ``ys`` (P series observed on the same days ``t``).

    Each series is searched exactly as if alone (same grids, same arithmetic per shift combination): the
    plots only share the array operations.
    """
    crops = load_crops()
    seasons = explanation.seasons
    year = harvest_year_for(seasons[-1], *run)
    # The seasons of a rotation belong to one year: the first is harvested before the second is sown.
    years = [year if i == len(seasons) - 1 or seasons[i].dates(year)["harvest"] <= seasons[-1].dates(year)["sowing"]
             else year + 1 for i in range(len(seasons))]
    ranges = np.array([crops[s.crop].peak_ndvi - crops[s.crop].base_ndvi for s in seasons])
    low, high = min_scale * ranges, MAX_SCALE * ranges
    n_plots, n = ys.shape

    def evaluate(combos: np.ndarray) -> tuple[np.ndarray, ...]:
        # combos (P × V × K) hold each season's own delay: the first season's shift, then each next season's
        # delay beyond the season before it (a summer crop is sown after the winter crop's harvest).
        n_values = combos.shape[1]
        flat = combos.reshape(-1, len(seasons))
        shifts = np.cumsum(flat, axis=1)
        shapes = np.stack([_shape(s, yr, t[None, :] - shifts[:, [j]]) for j, (s, yr) in enumerate(zip(seasons, years))],
                          axis=2)
        sse, offset, amp = _bounded_fit(np.repeat(ys, n_values, axis=0), shapes, low, high)
        rmse = np.sqrt(sse / n)
        score = rmse + shift_penalty * np.mean((flat / max(max_shift, 1)) ** 2, axis=1)
        return (combos, score.reshape(n_plots, n_values), rmse.reshape(n_plots, n_values),
                offset.reshape(n_plots, n_values), amp.reshape(n_plots, n_values, -1))

    # Seasons of a rotation barely overlap in time, so their shifts are searched one at a
    # time (coordinate descent, twice round), on a coarse grid and then day by day.
    coarse = np.unique(np.r_[np.arange(-max_shift, max_shift + 1, SHIFT_STEP_DAYS), 0, max_shift]).astype(float)
    centre = np.zeros((n_plots, len(seasons)))
    rows = np.arange(n_plots)
    for grid in (coarse, None):
        for _ in range(2 if len(seasons) > 1 else 1):
            for j in range(len(seasons)):
                values = (np.broadcast_to(grid, (n_plots, len(grid))) if grid is not None else
                          np.clip(centre[:, [j]] + np.arange(-SHIFT_STEP_DAYS + 1, SHIFT_STEP_DAYS),
                                  -max_shift, max_shift))
                combos = np.repeat(centre[:, None, :], values.shape[1], axis=1)
                combos[:, :, j] = values
                combos, score, rmse, offset, amp = evaluate(combos)
                centre = combos[rows, np.argmin(score, axis=1)].copy()
    best = np.argmin(score, axis=1)
    calendar = [season.dates(yr) for season, yr in zip(seasons, years)]
    out = []
    for p in range(n_plots):
        b = best[p]
        fits = []
        for j, season in enumerate(seasons):
            shift = int(combos[p, b, : j + 1].sum())
            dates = {k: d + dt.timedelta(days=shift) for k, d in calendar[j].items()}
            fits.append(SeasonFit(season, shift, float(amp[p, b, j]), float(amp[p, b, j] / ranges[j]), dates))
        out.append(SystemFit(explanation.name, float(score[p, b]), float(rmse[p, b]), float(offset[p, b]), tuple(fits)))
    return out


def fit_explanations(
    dates: np.ndarray,
    ndvi: np.ndarray,
    region: str,
    *,
    names: Iterable[str] | None = None,
    max_sowing_shift_days: int = 30,
    shift_penalty: float = 0.05,
    min_template_scale: float = 0.3,
    period: Sequence[np.datetime64] | None = None,
) -> list[SystemFit]:
    """Fit the region's explanations to a series and rank them (best first).

    Parameters
    ----------
    dates, ndvi
        Valid observations (``datetime64[D]``) and their NDVI; at least 3.
    region
        A region of ``seeds/regions.csv``.
    names
        Only these explanations (default: all of :func:`explanations_for`).
    max_sowing_shift_days
        Each season may move this many days earlier or later than its calendar.
    shift_penalty
        Score added at the largest shift (quadratic in the shift, NDVI units).
    min_template_scale
        Smallest amplitude of a season, as a share of its crop's NDVI range.
    period
        ``(start, end)`` of the run, to place each season in its year
        (default: the first and last observation).

    Returns
    -------
    list of SystemFit
        Sorted by ``score``, ties by name.
    """
    return fit_explanations_many(dates, np.asarray(ndvi, dtype=float)[None, :], region, names=names,
                                 max_sowing_shift_days=max_sowing_shift_days, shift_penalty=shift_penalty,
                                 min_template_scale=min_template_scale, period=period)[0]


def fit_explanations_many(
    dates: np.ndarray,
    ndvi: np.ndarray,
    region: str,
    *,
    names: Iterable[str] | None = None,
    max_sowing_shift_days: int = 30,
    shift_penalty: float = 0.05,
    min_template_scale: float = 0.3,
    period: Sequence[np.datetime64] | None = None,
) -> list[list[SystemFit]]:
    """:func:`fit_explanations` of several plots observed on the same days, vectorised across the plots.

    Parameters
    ----------
    dates
        The shared valid observation days (``datetime64[D]``), at least 3.
    ndvi
        ``P × len(dates)``: one row per plot.
    region, names, max_sowing_shift_days, shift_penalty, min_template_scale, period
        As :func:`fit_explanations`.

    Returns
    -------
    list of list of SystemFit
        Per plot (row of ``ndvi``), the same ranked fits as :func:`fit_explanations` of that row alone.
    """
    ys = np.asarray(ndvi, dtype=float)
    if ys.ndim != 2 or ys.shape[1] < 3:
        raise InputError("a crop fit needs at least 3 valid observations")
    days = np.asarray(dates, dtype="datetime64[D]")
    t = days.astype(np.int64).astype(float)
    run = tuple(period) if period is not None else (days.min(), days.max())
    wanted = set(names) if names is not None else None
    chosen = [e for e in explanations_for(region) if wanted is None or e.name in wanted]
    ranked: list[list[SystemFit]] = []
    for first in range(0, len(ys), FIT_BLOCK_PLOTS):
        block = ys[first:first + FIT_BLOCK_PLOTS]
        per_explanation = [_fit_many(e, t, block, run, max_shift=int(max_sowing_shift_days),
                                     shift_penalty=shift_penalty, min_scale=min_template_scale) for e in chosen]
        ranked.extend(sorted(fits, key=lambda f: (f.score, f.name)) for fits in zip(*per_explanation))
    return ranked
