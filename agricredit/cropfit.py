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
solved exactly under their bounds for every whole-day shift on a coarse grid,
then refined to the day. The search works on moments: each season's curve is
tabulated once for every whole-day shift, so a shift combination's bounded
least squares follows from a few sums (closed form, :func:`_least_sse`); the
chosen combination is then solved on the series itself, every active set of
the box constraints tried (:func:`_bounded_fit`).

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agricredit.errors import InputError
from agricredit.frozen import frozen
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
    "fitted_curves",
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

    @property
    def harvest_year(self) -> int:
        """The calendar's harvest year the season was fitted on (a shift may move the harvest into the next year)."""
        return (self.dates["harvest"] - dt.timedelta(days=self.shift_days)).year


@dataclass(frozen=True)
class SystemFit:
    """The best fit of one explanation to a series (``ndvi ≈ offset + Σ amplitude·g(t − shift)``)."""

    name: str
    score: float
    rmse: float
    offset: float
    seasons: tuple[SeasonFit, ...]
    #: The fitted NDVI on the days fitted (as :meth:`curve` there; read only), when made by a fit.
    fitted: np.ndarray | None = field(default=None, compare=False, repr=False)

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
        return fitted_curves((self,), days)[0]


def fitted_curves(fits: Sequence[SystemFit], days: np.ndarray) -> np.ndarray:
    """The fitted NDVI of several fits on the same ``datetime64[D]`` days, evaluated together.

    Returns
    -------
    numpy.ndarray
        ``len(fits) × days.shape``: row ``i`` is ``fits[i].curve(days)``.
    """
    t = np.asarray(days, dtype="datetime64[D]").astype(np.int64).astype(float)
    column = (-1,) + (1,) * t.ndim
    values = np.empty((len(fits),) + t.shape)
    values[...] = np.array([f.offset for f in fits], dtype=float).reshape(column)
    position = 0
    while rows := [i for i, f in enumerate(fits) if len(f.seasons) > position]:
        seasons = [fits[i].seasons[position] for i in rows]
        parameters = np.array([(*_anchors(x.season, x.harvest_year), x.season.slot == "winter", x.shift_days,
                                x.amplitude) for x in seasons], dtype=float)
        sowing, greenup, senescence, top, winter, shift, amplitude = parameters.T.reshape((7,) + column)
        values[rows] += amplitude * _shape_of(sowing, greenup, senescence, top, winter, t - shift)
        position += 1
    return values


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
    return _shape_of(*_anchors(season, harvest_year), season.slot == "winter", t)


def _shape_of(sowing: float | np.ndarray, greenup: float | np.ndarray, senescence: float | np.ndarray,
              top: float | np.ndarray, winter: bool | np.ndarray, t: np.ndarray) -> np.ndarray:
    """:func:`_shape` from a season's :func:`_anchors` (scalars, or arrays broadcasting with ``t``)."""
    fall = 1 - _sigmoid((t - senescence) / STEEPNESS_DAYS)
    main = _sigmoid((t - greenup) / STEEPNESS_DAYS) * fall / top
    if not np.any(winter):
        return main
    autumn = WINTER_PLATEAU * _sigmoid((t - sowing - WINTER_EMERGENCE_DAYS) / STEEPNESS_DAYS) * fall
    return np.where(winter, np.maximum(main, autumn), main)


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


#: Plots fitted together in one block of :func:`_search` (bounds the temporary arrays to a few MB).
FIT_BLOCK_PLOTS = 4096


@dataclass(frozen=True)
class _Templates:
    """One explanation on the fit days: its seasons' years and amplitude bounds, and its curves for every shift.

    Shifts are whole days, so each season's curve ``g_k(t − s)`` is tabulated once for every
    ``s`` in ``[−K·max_shift, K·max_shift]`` (row ``s + K·max_shift``), centred on its mean over
    the days, with the moments that depend on the shifts alone: ``Σ g_k²`` per shift and, for a
    rotation, ``Σ g_1 g_2`` per pair of shifts. Fitting a plot then only needs ``Σ y g_k`` per
    shift (one product per block of plots) and ``Σ y²``.
    """

    explanation: Explanation
    years: tuple[int, ...]
    ranges: np.ndarray  # each season's crop NDVI range (K)
    low: np.ndarray  # amplitude bounds (K)
    high: np.ndarray
    span: int  # the largest |shift| tabulated
    centred: tuple[np.ndarray, ...]  # per season: (2·span + 1) × n
    square: tuple[np.ndarray, ...]  # per season: Σ centred² per shift
    cross: np.ndarray | None  # Σ centred_1[s_1] · centred_2[s_2] (rotations only)


def _templates(explanation: Explanation, t: np.ndarray, run: tuple[np.datetime64, np.datetime64], *,
               max_shift: int, min_scale: float) -> _Templates:
    """Tabulate an explanation's season curves on the days ``t`` (see :class:`_Templates`)."""
    crops = load_crops()
    seasons = explanation.seasons
    if len(seasons) > 2:
        raise InputError(f"explanation {explanation.name!r} has {len(seasons)} seasons; a year holds one or two")
    year = harvest_year_for(seasons[-1], *run)
    # The seasons of a rotation belong to one year: the first is harvested before the second is sown.
    years = tuple(year if i == len(seasons) - 1 or seasons[i].dates(year)["harvest"] <= seasons[-1].dates(year)["sowing"]
                  else year + 1 for i in range(len(seasons)))
    ranges = np.array([crops[s.crop].peak_ndvi - crops[s.crop].base_ndvi for s in seasons])
    span = len(seasons) * max_shift
    shifts = np.arange(-span, span + 1, dtype=float)
    curves = [_shape(s, yr, t[None, :] - shifts[:, None]) for s, yr in zip(seasons, years)]
    centred = tuple(c - c.mean(axis=1, keepdims=True) for c in curves)
    square = tuple(np.einsum("sn,sn->s", c, c) for c in centred)
    cross = np.einsum("an,bn->ab", centred[0], centred[1]) if len(seasons) == 2 else None
    return _Templates(explanation, years, ranges, min_scale * ranges, MAX_SCALE * ranges, span, centred, square, cross)


def _least_sse(syy: np.ndarray, cy: list[np.ndarray], square: list[np.ndarray], cross: np.ndarray | None,
               low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Smallest SSE of ``y ≈ b + Σ a_k g_k`` with ``low_k ≤ a_k ≤ high_k``, from centred moments, elementwise.

    ``syy`` is ``Σ (y − ȳ)²``, ``cy[k]`` is ``Σ (y − ȳ)(g_k − ḡ_k)``, ``square[k]`` is
    ``Σ (g_k − ḡ_k)²`` and ``cross`` is ``Σ (g_1 − ḡ_1)(g_2 − ḡ_2)`` (arrays of one shape,
    one element per plot and shift combination; one season, or two with their ``cross``).
    The offset is free, so the centring eliminates it. The SSE
    ``S(a) = syy − 2 Σ a_k cy_k + Σ_j Σ_k a_j a_k Σ (g_j − ḡ_j)(g_k − ḡ_k)`` is convex: its
    minimum over the box is the unconstrained minimum when that lies inside, else it lies
    on an edge (one amplitude at a bound), where it is the other amplitude's
    one-dimensional minimum clipped to its bounds. Each candidate is a feasible point and
    ``S`` is evaluated there; a flat curve (``square_k = 0``: any amplitude fits alike)
    takes its upper bound.
    """

    def edge(k: int, bound: float) -> np.ndarray:  # S with amplitude k at ``bound``, the other at its clipped minimum
        o = 1 - k
        rhs = np.multiply(cross, bound, out=np.empty(shape))
        np.subtract(cy[o], rhs, out=rhs)
        a = np.divide(rhs, square[o], out=np.empty(shape))
        np.fmin(a, high[o], out=a)
        np.fmax(a, low[o], out=a)
        value = np.multiply(2 * bound, cy[k], out=np.empty(shape))
        np.subtract(syy, value, out=value)
        value += (bound * bound) * square[k]
        rhs *= 2
        np.subtract(a * square[o], rhs, out=rhs)
        rhs *= a  # a · (a·square − 2·rhs): a product commutes exactly
        value += rhs
        return value

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if len(cy) == 1:
            a = np.fmax(np.fmin(cy[0] / square[0], high[0]), low[0])
            return syy + a * (a * square[0] - 2 * cy[0])
        (c0, c1), (g00, g11), g01 = cy, square, cross
        shape = np.broadcast(syy, c0, c1, g00, g11, g01).shape  # of every candidate's SSE
        det = g00 * g11 - g01 * g01
        a0, a1 = (c0 * g11 - g01 * c1) / det, (g00 * c1 - g01 * c0) / det
        inside = (a0 >= low[0] - 1e-9) & (a0 <= high[0] + 1e-9) & (a1 >= low[1] - 1e-9) & (a1 <= high[1] + 1e-9)
        best = np.where(inside, syy - 2 * (a0 * c0 + a1 * c1) + a0 * a0 * g00 + 2 * a0 * a1 * g01 + a1 * a1 * g11,
                        np.inf)
        for k in (0, 1):
            for bound in (low[k], high[k]):
                np.minimum(best, edge(k, bound), out=best)
    return best


def _search(tables: _Templates, ys: np.ndarray, *, max_shift: int, shift_penalty: float) -> np.ndarray:
    """Each row of ``ys``'s best shift combination (P × K: each season's own delay, see :func:`_fit_many`).

    Seasons of a rotation barely overlap in time, so their shifts are searched one at a
    time (coordinate descent, twice round), on a coarse grid and then day by day. Each
    combination is scored from the moments of :class:`_Templates` (:func:`_least_sse`), so a
    series is searched exactly as if alone: the plots only share the array operations.
    """
    n_plots, n = ys.shape
    k = len(tables.centred)
    centred_y = ys - ys.mean(axis=1, keepdims=True)
    syy = np.einsum("pn,pn->p", centred_y, centred_y)[:, None]
    # Σ y g_k per plot and shift, flat: plot p's row of shifts starts at p · (2·span + 1)
    products = [np.einsum("pn,sn->ps", centred_y, c).ravel() for c in tables.centred]
    plot_start = (np.arange(n_plots) * (2 * tables.span + 1))[:, None]
    # each delay's share of the calendar prior, ((delay / max_shift)²), by delay + max_shift (|delay| ≤ max_shift)
    prior = (np.arange(-max_shift, max_shift + 1, dtype=float) / max(max_shift, 1)) ** 2

    def score(combos: np.ndarray) -> np.ndarray:
        # combos (P × V × K) hold each season's own delay: the first season's shift, then each next season's
        # delay beyond the season before it (a summer crop is sown after the winter crop's harvest).
        delays = combos.astype(np.intp)  # whole days
        rows = delays + tables.span  # each season's shift (the delays summed), as a row of the tables
        if k == 2:
            rows[:, :, 1] += delays[:, :, 0]
        cy = [np.take(products[j], rows[:, :, j] + plot_start) for j in range(k)]
        square = [tables.square[j][rows[:, :, j]] for j in range(k)]
        cross = tables.cross[rows[:, :, 0], rows[:, :, 1]] if k == 2 else None
        sse = np.maximum(_least_sse(syy, cy, square, cross, tables.low, tables.high), 0.0)
        sse /= n
        np.sqrt(sse, out=sse)
        # shift_penalty · the mean over the seasons of (delay / max_shift)² (np.mean's sum, then division)
        shares = prior[delays + max_shift]
        penalty = shares[:, :, 0] + shares[:, :, 1] if k == 2 else shares[:, :, 0]
        sse += shift_penalty * (penalty / k)
        return sse

    coarse = np.unique(np.r_[np.arange(-max_shift, max_shift + 1, SHIFT_STEP_DAYS), 0, max_shift]).astype(float)
    centre = np.zeros((n_plots, k))
    plots = np.arange(n_plots)
    for grid in (coarse, None):
        for _ in range(2 if k > 1 else 1):
            for j in range(k):
                values = (np.broadcast_to(grid, (n_plots, len(grid))) if grid is not None else
                          np.clip(centre[:, [j]] + np.arange(-SHIFT_STEP_DAYS + 1, SHIFT_STEP_DAYS),
                                  -max_shift, max_shift))
                combos = np.repeat(centre[:, None, :], values.shape[1], axis=1)
                combos[:, :, j] = values
                centre = combos[plots, np.argmin(score(combos), axis=1)]
    return centre


@functools.lru_cache(maxsize=4096)
def _shifted_dates(season: CropSeason, harvest_year: int, shift: int) -> dict[str, dt.date]:
    """The season's calendar dates of ``harvest_year`` moved by ``shift`` days (cached: read only)."""
    return {k: d + dt.timedelta(days=shift) for k, d in season.dates(harvest_year).items()}


def _fit_many(tables: _Templates, t: np.ndarray, ys: np.ndarray, *, max_shift: int,
              shift_penalty: float) -> list[SystemFit]:
    """The best fit of one explanation to each row of ``ys`` (P series observed on the same days ``t``).

    The shifts are searched on moments (:func:`_search`); the chosen combination's offset,
    amplitudes and RMSE are then solved on the series itself (:func:`_bounded_fit`), and its
    curve on the days kept as :attr:`SystemFit.fitted`.
    """
    seasons = tables.explanation.seasons
    delays = _search(tables, ys, max_shift=max_shift, shift_penalty=shift_penalty)
    shifts = np.cumsum(delays, axis=1)
    shapes = np.stack([_shape(s, yr, t[None, :] - shifts[:, [j]]) for j, (s, yr) in enumerate(zip(seasons, tables.years))],
                      axis=2)
    sse, offset, amp = _bounded_fit(ys, shapes, tables.low, tables.high)
    rmse = np.sqrt(sse / len(t))
    score = rmse + shift_penalty * np.mean((delays / max(max_shift, 1)) ** 2, axis=1)
    fitted = np.repeat(offset[:, None], len(t), axis=1)  # as fitted_curves: the offset, then each season in turn
    for j in range(len(seasons)):
        fitted += amp[:, [j]] * shapes[:, :, j]
    fitted.flags.writeable = False
    per_season = []  # each season's fit of every plot
    for j, (season, year) in enumerate(zip(seasons, tables.years)):
        season_shifts = shifts[:, j].astype(int)
        dates = {shift: _shifted_dates(season, year, shift) for shift in np.unique(season_shifts).tolist()}
        # Plots fitted alike (same shift, amplitude to the bit: often at a bound) share one (frozen) SeasonFit.
        made: dict[tuple[int, int], SeasonFit] = {}
        season_fits = []
        for shift, bits, amplitude, scale in zip(season_shifts.tolist(), amp[:, j].view(np.int64).tolist(),
                                                 amp[:, j].tolist(), (amp[:, j] / tables.ranges[j]).tolist()):
            fit = made.get((shift, bits))
            if fit is None:
                fit = made[shift, bits] = frozen(SeasonFit, {"season": season, "shift_days": shift,
                                                             "amplitude": amplitude, "scale": scale,
                                                             "dates": dates[shift]})
            season_fits.append(fit)
        per_season.append(season_fits)
    name = tables.explanation.name
    return [frozen(SystemFit, {"name": name, "score": plot_score, "rmse": plot_rmse, "offset": plot_offset,
                               "seasons": plot_seasons, "fitted": plot_fitted})
            for plot_score, plot_rmse, plot_offset, plot_fitted, plot_seasons
            in zip(score.tolist(), rmse.tolist(), offset.tolist(), fitted, zip(*per_season))]


def fit_explanations(dates: np.ndarray, ndvi: np.ndarray, region: str, **options: Any) -> list[SystemFit]:
    """Fit the region's explanations to one series and rank them (best first).

    Parameters
    ----------
    dates, ndvi
        Valid observations (``datetime64[D]``) and their NDVI; at least 3.
    region
        A region of ``seeds/regions.csv``.
    **options
        ``names``, ``max_sowing_shift_days``, ``shift_penalty``, ``min_template_scale``, ``period``:
        see :func:`fit_explanations_many`.

    Returns
    -------
    list of SystemFit
        Sorted by ``score``, ties by name.
    """
    return fit_explanations_many(dates, np.asarray(ndvi, dtype=float)[None, :], region, **options)[0]


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
    max_shift = int(max_sowing_shift_days)
    tables = [_templates(e, t, run, max_shift=max_shift, min_scale=min_template_scale) for e in chosen]
    # Each plot's fits ranked by score, ties by name (the order of sorted(fits, key=attrgetter("score", "name"))),
    # every plot of a block at once.
    by_name = np.argsort([e.name for e in chosen], kind="stable")
    name_rank = np.empty(len(chosen), np.intp)
    name_rank[by_name] = np.arange(len(chosen))
    ranked: list[list[SystemFit]] = []
    for first in range(0, len(ys), FIT_BLOCK_PLOTS):
        block = ys[first:first + FIT_BLOCK_PLOTS]
        per_explanation = [_fit_many(e, t, block, max_shift=max_shift, shift_penalty=shift_penalty) for e in tables]
        scores = np.array([[f.score for f in fits] for fits in per_explanation], dtype=float)
        scores = scores.reshape(len(chosen), len(block))
        order = np.lexsort((np.broadcast_to(name_rank[:, None], scores.shape), scores), axis=0).T.tolist()
        ranked.extend([fits[e] for e in plot_order] for fits, plot_order in zip(zip(*per_explanation), order))
    return ranked
