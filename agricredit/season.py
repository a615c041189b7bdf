"""Season assessment: the satellite checks of design §7 for every plot (peer vigor in
:mod:`agricredit.vigor`).

:func:`assess_season` takes the zonal engine's long table (see
:mod:`agricredit.series`), ranks the crops by template fit
(:mod:`agricredit.cropfit`), and returns one row per plot with phenology
features, the crop ranking, the satellite checks (``NOT_CULTIVATED``,
``CROP_MISMATCH``, ``LOW_VIGOR``, ``CLOUD_INSUFFICIENT``, ``NO_COVERAGE``) as
:class:`Flag` objects carrying the figures behind them, and the vigor factor.

Policy numbers are explicit keyword arguments named like the keys of the
``[satellite]`` section of ``policy.toml`` (:func:`season_options` maps a
policy onto them); nothing in this module reads the policy file.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from agricredit.columnar import ColumnarRows
from agricredit.cropfit import STEEPNESS_DAYS, SystemFit, fit_explanations_many, harvest_year_for
from agricredit.errors import InputError, SchemaError
from agricredit.flag import Flag
from agricredit.outputs import gc_paused
from agricredit.seeds import default_cropped_threshold, load_calendars, load_crops, resolve_region
from agricredit.series import PlotSeries, Smoothing, normalise_table, phenology_many, smooth_series, split_series
from agricredit.templatecheck import (_NAME, Declared, _declared_of, _ranking_of, _template_checks, _window_mask,
                                       _window_rmses, template_flags)
from agricredit.vigor import peer_vigor

__all__ = [
    "Flag",
    "SeasonResult",
    "assess_season",
    "SeasonRows",
    "season_rows",
    "season_period",
    "finish_season",
    "split_season_options",
    "peer_vigor",
    "season_options",
    "season_plot_table",
    "resolve_region",
    "template_flags",
    "fit_observations",
    "Declared",
    "SEASON_CODES",
    "SEASON_LEAD_COLUMNS",
]

logger = logging.getLogger(__name__)


@dataclass
class SeasonResult:
    """The outcome of :func:`assess_season`.

    ``plots`` has one row per plot (features, ranking, vigor, ``flags`` as
    ``;``-joined codes, ``flag_figures`` as JSON); ``flags`` maps each plot to its
    :class:`Flag` list; ``fits`` to its ranked :class:`~agricredit.cropfit.SystemFit` list (empty if
    too few observations); ``series`` holds the valid observations; ``period`` the first and
    last acquisition day.
    """

    plots: pd.DataFrame
    flags: dict[str, list[Flag]]
    fits: dict[str, list[SystemFit]]
    series: dict[str, PlotSeries]
    period: tuple[np.datetime64, np.datetime64] | None = None  # first and last acquisition day


def _iso(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else str(np.datetime64(value, "D"))


def _iso_column(values: pd.Series) -> list[str | None]:
    """:func:`_iso` of each value of a column of dates (``datetime64``, or objects: dates, ``None``, NaN), at once."""
    days = pd.to_datetime(values).to_numpy("datetime64[D]")
    # Each distinct day formatted once (a season's plots share a few hundred days).
    distinct, where = np.unique(days, return_inverse=True)
    texts = [None if np.isnat(day) else text
             for day, text in zip(distinct, np.datetime_as_string(distinct, unit="D").tolist())]
    return [texts[i] for i in where.tolist()]


#: Satellite codes :func:`assess_season` may report (``TOO_FEW_PIXELS`` is verify's, from ``pixel_count``).
SEASON_CODES = ("NOT_CULTIVATED", "NOT_CULTIVATED_UNCONFIRMED", "CROP_MISMATCH", "SEASON_UNRECOGNISED", "LOW_VIGOR",
                "CLOUD_INSUFFICIENT", "NO_COVERAGE", "PARTIAL_COVERAGE")


#: An unmasked observation this far (NDVI) below the best fit is taken as undetected cloud and left out of the fit.
UNMASKED_CLOUD_DROP = 0.1


@functools.lru_cache(maxsize=1024)
def _green_periods(region: str, declared: tuple[Declared, ...], run: tuple[Any, Any]) -> dict[str, list[tuple]]:
    """Each declared crop's green periods on the region's calendar: ``[(green-up, senescence)]`` as ``datetime64[D]``.

    A crop with several calendar seasons (spring and summer maize) has one period per season;
    a crop without a calendar in the region has none. Cached (the same for every plot of a declaration): read only.
    """
    periods: dict[str, list[tuple]] = {}
    for item in declared:
        for season in (x for x in load_calendars()[region].values() if item.matches(x)):
            dates = season.dates(harvest_year_for(season, *run))
            periods.setdefault(item.crop, []).append((np.datetime64(dates["greenup"]), np.datetime64(dates["senescence"])))
    return periods


def _covers_every_sowing(clear_dates: np.ndarray, periods: Sequence[tuple], max_shift: int) -> bool:
    """True when, whatever the sowing shift (``|s| ≤ max_shift``), a clear observation falls in the green period.

    The green period is taken inside the 50 % points by one logistic width, where the
    canopy is well developed. An observation on day ``c`` sees the period moved by any
    shift in ``[c − end, c − start]``; the union of those intervals must cover ``[−max_shift, max_shift]``.
    """
    return _covers_days(np.asarray(clear_dates, dtype="datetime64[D]").tobytes(), tuple(map(tuple, periods)),
                        int(max_shift))


@functools.lru_cache(maxsize=4096)
def _covers_days(days: bytes, periods: tuple[tuple, ...], max_shift: int) -> bool:
    """:func:`_covers_every_sowing` of the days ``days`` (the bytes of a ``datetime64[D]`` array). Cached: plots
    observed alike share the answer."""
    clear_dates = np.frombuffer(days, dtype="datetime64[D]")
    margin = np.timedelta64(int(STEEPNESS_DAYS), "D")
    for start, end in periods:
        start, end = start + margin, end - margin
        seen = sorted(zip((clear_dates - end).astype(int).tolist(), (clear_dates - start).astype(int).tolist()))
        reach = -max_shift
        for low, high in seen:
            if low > reach:
                break
            reach = max(reach, high + 1)
        if reach <= max_shift:
            return False
    return True


def _window_evidence(series: Sequence[PlotSeries], drawn: Sequence[float], thresholds: Sequence[float],
                     windows: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """:func:`_cropped_evidence` of each plot (``windows``: its observations in the declared crops' windows),
    computed for all plots at once (the same figures, the same choices)."""
    lengths = [len(s.dates) for s in series]
    bounds = [0, *np.cumsum(lengths).tolist()]
    flat = {name: np.concatenate([np.zeros(0), *(getattr(s, name) for s in series)])
            for name in ("cropped_area_mu", "valid_frac", "ndvi")}
    dates = np.concatenate([np.zeros(0, "datetime64[D]"), *(s.dates for s in series)])
    masked = np.concatenate([np.zeros(0, bool), *(s.cloud_masked for s in series)])
    window = np.concatenate([np.zeros(0, bool), *windows])
    drawn = np.asarray(drawn, dtype=float)
    plot = np.repeat(np.arange(len(series)), lengths)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(np.isfinite(drawn[plot]) & (drawn[plot] > 0),
                         flat["cropped_area_mu"] / (flat["valid_frac"] * drawn[plot]),
                         np.where(flat["ndvi"] >= np.repeat(np.asarray(thresholds, dtype=float), lengths), 1.0, 0.0))
    share = np.fmin(np.fmax(share, 0.0), 1.0)  # NaN (nothing seen) → 0
    rows = window.nonzero()[0]
    # Each plot's window observation with the largest share, among equal shares the clearest, then the first.
    ranked = rows[np.lexsort((-flat["valid_frac"][rows], -share[rows], plot[rows]))]
    pick = ranked[np.r_[True, plot[ranked][1:] != plot[ranked][:-1]]] if len(rows) else rows
    starts = np.flatnonzero(np.r_[True, plot[rows][1:] != plot[rows][:-1]]) if len(rows) else rows
    plots_seen = plot[pick].tolist()
    stats = zip(share[pick].tolist(), flat["valid_frac"][pick].tolist(), np.datetime_as_string(dates[pick], "D"),
                (share[pick] * drawn[plot[pick]]).tolist(),
                *(reduce.reduceat(values[rows], starts).tolist() if len(rows) else [] for reduce, values in (
                    (np.maximum, flat["ndvi"]), (np.minimum, flat["ndvi"]), (np.maximum, share), (np.add, masked))),
                np.diff(np.r_[starts, len(rows)]).tolist())
    evidence = [{"share": share[lo:hi], "cropped_share": np.nan, "cropped_measured_share": np.nan,
                 "cropped_date": None, "cropped_area_mu_at_peak": np.nan, "in_window": None}
                for lo, hi in itertools.pairwise(bounds)]
    for k, (cropped, measured, day, at_peak, peak, low, most, clear, usable) in zip(plots_seen, stats):
        evidence[k].update(cropped_share=cropped, cropped_measured_share=measured, cropped_date=str(day),
                           cropped_area_mu_at_peak=at_peak if np.isfinite(drawn[k]) else np.nan,
                           in_window=_InWindow(peak, peak - low, most, int(clear), usable))
    return evidence


@dataclass(frozen=True)
class _InWindow:
    """A plot's usable observations in the declared crops' windows (:func:`_window_evidence`)."""

    peak: float  # largest NDVI
    amplitude: float  # largest − smallest NDVI
    most: float  # largest cropped share
    clear: int  # how many are cloud-masked
    usable: int  # how many


def _cropped_evidence(s: PlotSeries, drawn: float, threshold: float, window: np.ndarray) -> dict[str, Any]:
    """The cropped area measured on the area seen, at the window's observation showing the most crop.

    Per usable observation the cropped share is the cropped area over the *seen* (valid)
    area, ``cropped_area_mu / (valid_frac × drawn)``, so clouds over part of the plot do
    not count as bare ground (without a drawn area: 1 where the plot's NDVI reaches the
    crop's threshold, else 0). The observation reported is the one of the crop window
    with the largest share (the canopy peak; among equal shares the clearest):
    ``cropped_area_mu_at_peak`` is its share times the drawn area, reported with
    ``cropped_measured_share``, the share of the plot it was measured on. ``in_window`` sums up the window's
    observations (:class:`_InWindow`; ``None`` without any).
    """
    return _window_evidence([s], [drawn], [threshold], [window])[0]


def _cultivation_flag(evidence: dict[str, Any], *, threshold: float,
                      cultivated_min_share: float, min_season_amplitude: float, min_observations: int,
                      partial: bool, covered: bool) -> Flag | None:
    """``NOT_CULTIVATED`` on clear evidence, ``NOT_CULTIVATED_UNCONFIRMED`` (review) on thin evidence, else None.

    The plot looks uncultivated when every usable observation of the declared crops'
    windows shows a cropped share (of the area seen) below ``cultivated_min_share``, or
    the season never greens up (NDVI amplitude below ``min_season_amplitude``, or a peak
    under the crop's ``cropped_ndvi_threshold``). The evidence is clear only with at
    least ``min_observations`` cloud-masked observations in those windows that leave
    no sowing date unobserved (``covered``, see :func:`_covers_every_sowing`), on a plot
    fully inside the imagery, and only when the plot is not green (a flat series above the
    threshold is a crop seen at its peak or a permanent cover); otherwise a person looks
    (``NOT_CULTIVATED_UNCONFIRMED``).
    """
    seen = evidence["in_window"]
    if seen is None:
        return None
    peak, most, amplitude, clear = seen.peak, seen.most, seen.amplitude, seen.clear
    if not (most < cultivated_min_share or amplitude < min_season_amplitude or peak < threshold):
        return None
    figures = {
        "clear_in_window": clear, "usable_in_window": seen.usable, "required": min_observations,
        "max_cropped_share": most, "cultivated_min_share": cultivated_min_share,
        "peak_ndvi": peak, "amplitude": amplitude, "min_season_amplitude": min_season_amplitude,
        "cropped_ndvi_threshold": threshold, "cropped_measured_share": evidence["cropped_measured_share"],
        "partial_coverage": partial, "every_sowing_date_seen": covered,
    }
    # A plot green through the window (cropped and above the threshold, only flat) may be a crop seen at its
    # peak alone or a permanent cover: a person tells them apart.
    green = most >= cultivated_min_share and peak >= threshold
    confirmed = clear >= min_observations and covered and not partial and not green
    return Flag("NOT_CULTIVATED" if confirmed else "NOT_CULTIVATED_UNCONFIRMED", figures)


def fit_observations(s: PlotSeries, fits: Sequence[SystemFit] = ()) -> np.ndarray:
    """Which usable observations a plot's fit uses: all, except those without a cloud mask lying more than
    :data:`UNMASKED_CLOUD_DROP` below the best fit (undetected cloud: clouds only lower NDVI)."""
    return _kept_observations([s], [fits[0].curve(s.dates) if fits else None])[0]


def _kept_observations(series: Sequence[PlotSeries], best_curves: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    """:func:`fit_observations` of each plot from its best fit's curve on its days (``None``: no fit), all plots
    at once."""
    lengths = [len(s.dates) for s in series]
    curves = [np.full(len(s.dates), -np.inf) if curve is None else curve for s, curve in zip(series, best_curves)]
    ndvi, masked, best = (np.concatenate([np.zeros(0, dtype), *arrays]) for dtype, arrays in (
        (float, (s.ndvi for s in series)), (bool, (s.cloud_masked for s in series)), (float, curves)))
    clouded = ~masked & (ndvi < best - UNMASKED_CLOUD_DROP)  # never without a fit (a curve of −∞)
    bounds = [0, *np.cumsum(lengths).tolist()]
    kept = np.add.reduceat(~clouded, bounds[:-1]) if len(ndvi) else np.zeros(len(series), int)
    keep = ~clouded | np.repeat(kept < 3, lengths)
    return [keep[lo:hi] for lo, hi in itertools.pairwise(bounds)]


def _fit_plots(series: Mapping[str, PlotSeries], region: str, fit_options: dict[str, Any]
               ) -> dict[str, tuple[list[SystemFit], np.ndarray]]:
    """Each plot's ranked explanations, refitted without undetected clouds, and the observations used.

    Plots observed on the same days are fitted together (:func:`~agricredit.cropfit.fit_explanations_many`, the
    same figures as one by one); a plot with fewer than 3 valid observations has no fit.
    """
    out = {plot_id: ([], np.zeros(len(s.dates), dtype=bool)) for plot_id, s in series.items() if len(s.dates) < 3}
    first = _fit_by_days({plot_id: (s.dates, s.ndvi) for plot_id, s in series.items() if len(s.dates) >= 3},
                         region, fit_options)
    keep = dict(zip(first, _kept_observations([series[plot_id] for plot_id in first],
                                              [fits[0].fitted if fits else None for fits in first.values()])))
    refits = _fit_by_days({plot_id: (series[plot_id].dates[k], series[plot_id].ndvi[k])
                           for plot_id, k in keep.items() if not k.all()}, region, fit_options)
    for plot_id, fits in first.items():
        out[plot_id] = (refits.get(plot_id, fits), keep[plot_id])
    return out


def _fit_by_days(observations: Mapping[str, tuple[np.ndarray, np.ndarray]], region: str,
                 fit_options: dict[str, Any]) -> dict[str, list[SystemFit]]:
    """:func:`~agricredit.cropfit.fit_explanations` of each plot's ``(dates, ndvi)``, plots grouped by their days."""
    groups: dict[bytes, list[str]] = {}
    for plot_id, (dates, _) in observations.items():
        groups.setdefault(dates.tobytes(), []).append(plot_id)
    fitted: dict[str, list[SystemFit]] = {}
    for members in groups.values():
        dates = observations[members[0]][0]
        ndvi = np.stack([observations[plot_id][1] for plot_id in members])
        fitted.update(zip(members, fit_explanations_many(dates, ndvi, region, **fit_options)))
    return fitted


def _fit_row(row: dict[str, Any], fits: Sequence[SystemFit]) -> None:
    """Per-explanation fit columns: ``rmse_<name>``, ``shift_days_<name>``, ``scale_<name>`` (``;`` per season)."""
    for fit in fits:  # a fit holds one season or two (agricredit.cropfit): each text written out, no join
        rmse, shift_days, scale = _fit_columns(fit.name)
        row[rmse] = fit.rmse
        if len(fit.seasons) == 1:
            only, = fit.seasons
            row[shift_days], row[scale] = str(only.shift_days), f"{only.scale:.3f}"
        else:
            first, second = fit.seasons
            row[shift_days] = f"{first.shift_days};{second.shift_days}"
            row[scale] = f"{first.scale:.3f};{second.scale:.3f}"


@functools.lru_cache(maxsize=1024)
def _fit_columns(name: str) -> tuple[str, str, str]:
    """The names of an explanation's fit columns (:func:`_fit_row`), made once."""
    return f"rmse_{name}", f"shift_days_{name}", f"scale_{name}"


def _model_checks(row: dict[str, Any], probabilities: pd.Series, declared: Sequence[Declared], margin: float) -> list[Flag]:
    """``CROP_MISMATCH`` from a trained crop model: another crop more probable than each declared one by ``margin``."""
    for crop, value in probabilities.items():
        row[f"p_{crop}"] = float(value)
    best = str(probabilities.idxmax())
    row.update(best_crop=best, best_explanation=best, best_score=1.0 - float(probabilities.max()))
    worst = min(declared, key=lambda d: float(probabilities[d.crop]))
    row["declared_score"] = 1.0 - float(probabilities[worst.crop])
    if row["declared_score"] - row["best_score"] > margin:
        return [Flag("CROP_MISMATCH", {"declared_crop": worst.crop, "best_crop": best, "declared_score": row["declared_score"],
                                       "best_score": row["best_score"], "margin": margin, "method": "model"})]
    return []


def assess_season(
    table: pd.DataFrame,
    declarations: Mapping[str, Any] | None = None,
    drawn_area_mu: Mapping[str, float] | None = None,
    *,
    region: str,
    plot_ids: Iterable[str] | None = None,
    min_valid_fraction: float = 0.6,
    min_observations_in_window: int = 3,
    min_pixel_count: float = 4.0,
    cultivated_min_share: float = 0.5,
    max_sowing_shift_days: int = 30,
    crop_mismatch_margin: float = 0.06,
    max_fit_rmse: float = 0.10,
    min_template_scale: float = 0.4,
    min_covered_fraction: float = 0.95,
    low_vigor_percentile: float = 10.0,
    low_vigor_min_gap: float = 0.10,
    vigor_factor_min: float = 0.7,
    vigor_factor_max: float = 1.0,
    min_season_amplitude: float = 0.2,
    shift_penalty: float = 0.05,
    min_peers: int = 5,
    smoothing: Smoothing = "none",
    stat: str = "ndvi_mean",
    crop_model: Any = None,
    crop_model_margin: float = 0.5,
) -> SeasonResult:
    """Phenology, cropping-system fit, satellite checks and vigor for every plot of a season.

    Parameters
    ----------
    table
        The zonal engine's long table (one row per plot and date); optional
        columns ``covered_frac`` (default 1) and ``cloud_masked`` (default True).
    declarations
        ``plot_id`` → declared crop, or a sequence of crops for a plot declared
        for several seasons (``"maize:summer"`` names the slot). A plot declared
        for one season of a double-cropped year is honest: each declared crop
        is checked against the best explanation that holds it.
    drawn_area_mu
        ``plot_id`` → area of the drawn polygon (mu), for the cropped share.
    region
        A region of ``seeds/regions.csv``: the calendars and rotations fitted.
    plot_ids
        Every plot of the run; plots with no row in the table get ``NO_COVERAGE``.
    min_valid_fraction, min_observations_in_window, cultivated_min_share, max_sowing_shift_days,
    crop_mismatch_margin, max_fit_rmse, min_template_scale, min_covered_fraction, min_season_amplitude,
    shift_penalty, low_vigor_percentile, low_vigor_min_gap, vigor_factor_min, vigor_factor_max, min_peers,
    min_pixel_count, crop_model_margin
        The ``[satellite]`` policy (``seeds/policy.toml`` documents each).
    smoothing
        Curve the phenology features are read from (the fit uses the observations themselves).
    stat
        NDVI statistic of the long table to use.
    crop_model
        A loaded :class:`agricredit.crop_model.CropModel`: ``CROP_MISMATCH`` from its
        probabilities instead of the template fit, for plots whose crops it knows.

    Returns
    -------
    SeasonResult
    """
    if region not in load_calendars():
        raise InputError(f"no crop calendar for region {region!r}: resolve it first (see resolve_region)")
    rows = season_rows(table, declarations, drawn_area_mu, region=region,
                       plot_ids=plot_ids, min_valid_fraction=min_valid_fraction,
                       min_observations_in_window=min_observations_in_window, min_pixel_count=min_pixel_count,
                       cultivated_min_share=cultivated_min_share, max_sowing_shift_days=max_sowing_shift_days,
                       crop_mismatch_margin=crop_mismatch_margin, max_fit_rmse=max_fit_rmse,
                       min_template_scale=min_template_scale, min_covered_fraction=min_covered_fraction,
                       min_season_amplitude=min_season_amplitude, shift_penalty=shift_penalty, smoothing=smoothing,
                       stat=stat, crop_model=crop_model, crop_model_margin=crop_model_margin)
    return finish_season(rows, low_vigor_percentile=low_vigor_percentile, low_vigor_min_gap=low_vigor_min_gap,
                         vigor_factor_min=vigor_factor_min, vigor_factor_max=vigor_factor_max, min_peers=min_peers,
                         min_pixel_count=min_pixel_count, min_observations_in_window=min_observations_in_window)


def season_period(table: pd.DataFrame) -> tuple[np.datetime64, np.datetime64]:
    """The first and last day of a long table (the run whose year each season is placed in).

    Raises
    ------
    InputError
        The table has no observations.
    """
    if table.empty:
        raise InputError("the long table has no observations (no tile covers any plot in the period)")
    days = pd.to_datetime(table["date"]).dt.normalize()
    return tuple(np.array([days.min(), days.max()], dtype="datetime64[D]"))


@dataclass
class SeasonRows:
    """The per-plot part of :func:`assess_season` for some plots, before the peer comparison (:func:`finish_season`).

    ``rows`` are the plots' feature rows in :func:`assess_season`'s order (plots with observations by ID, then the
    plots without any, in the order of ``plot_ids``), as columns (:class:`agricredit.columnar.ColumnarRows`: what a
    map task sends back pickles as arrays); ``flags``, ``fits`` and ``series`` as in :class:`SeasonResult`.
    """

    rows: ColumnarRows
    flags: dict[str, list[Flag]]
    fits: dict[str, list[SystemFit]]
    series: dict[str, PlotSeries]
    period: tuple[np.datetime64, np.datetime64]

    @classmethod
    def merge(cls, parts: Sequence[SeasonRows], plot_ids: Sequence[str]) -> SeasonRows:
        """The parts of disjoint sets of plots (chunks) as if computed at once; ``plot_ids`` as :func:`season_rows`."""
        rows = ColumnarRows.concat([part.rows for part in parts])
        ids = rows.column("plot_id").tolist()
        seen = set(itertools.compress(ids, (rows.column("n_acquisitions") != 0).tolist()))
        position = {str(p): i for i, p in enumerate(plot_ids)}
        # plots with observations by ID, then the others in the order of plot_ids (each sort stable)
        order = sorted((i for i, p in enumerate(ids) if p in seen), key=ids.__getitem__) + sorted(
            (i for i, p in enumerate(ids) if p not in seen), key=lambda i: position.get(ids[i], len(position)))
        merged = {name: {k: v for part in parts for k, v in getattr(part, name).items()} for name in ("fits", "series")}
        flags = {k: list(v) for part in parts for k, v in part.flags.items()}  # finish_season appends to them
        return cls(rows.take(np.array(order, dtype=np.intp)), flags, merged["fits"], merged["series"],
                   parts[0].period)


# No cyclic collection while a chunk's rows are built: tens of container objects a plot (rows, fits, flags) that
# live on and form no cycles; each automatic full collection would walk every object of the process for nothing
# (measured: about 15 % of the rows' CPU on a 5,000-plot chunk).
@gc_paused()
def season_rows(
    table: pd.DataFrame,
    declarations: Mapping[str, Any] | None = None,
    drawn_area_mu: Mapping[str, float] | None = None,
    *,
    region: str,
    period: tuple[np.datetime64, np.datetime64] | None = None,
    plot_ids: Iterable[str] | None = None,
    min_valid_fraction: float = 0.6,
    min_observations_in_window: int = 3,
    min_pixel_count: float = 4.0,
    cultivated_min_share: float = 0.5,
    max_sowing_shift_days: int = 30,
    crop_mismatch_margin: float = 0.06,
    max_fit_rmse: float = 0.10,
    min_template_scale: float = 0.4,
    min_covered_fraction: float = 0.95,
    min_season_amplitude: float = 0.2,
    shift_penalty: float = 0.05,
    smoothing: Smoothing = "none",
    stat: str = "ndvi_mean",
    crop_model: Any = None,
    crop_model_margin: float = 0.5,
) -> SeasonRows:
    """The per-plot part of :func:`assess_season` (features, fits, satellite checks) for some plots of a season.

    Each plot's row depends only on its own observations and on ``period`` (the whole run's
    :func:`season_period`), so the plots of a county can be split in chunks and the parts merged
    (:meth:`SeasonRows.merge`) before :func:`finish_season`. Parameters as :func:`assess_season`; with a
    ``period`` given, ``table`` may be empty (every plot of ``plot_ids`` then gets ``NO_COVERAGE``).
    """
    declared_of = {str(k): _declared_of(v) for k, v in (declarations or {}).items()}
    drawn_area_mu = dict(drawn_area_mu or {})
    crops = load_crops()
    unknown = sorted({d.crop for ds in declared_of.values() for d in ds if d.crop not in crops})
    if unknown:
        raise SchemaError(f"declared crops {unknown} are not in the crop table ({sorted(crops)})")
    frame = normalise_table(table, stat)
    run = period if period is not None else season_period(table)
    series = split_series(frame, min_valid_fraction, stat) if len(frame) else {}
    empty = np.array([], dtype="datetime64[D]")
    for plot_id in map(str, plot_ids or ()):
        if plot_id not in series:
            series[plot_id] = PlotSeries(plot_id, empty, np.array([]), np.array([]), 0)
    probabilities = crop_model.predict_proba(table, stat=stat) if crop_model is not None and len(table) else None
    fit_options = {"max_sowing_shift_days": max_sowing_shift_days, "shift_penalty": shift_penalty,
                   "min_template_scale": min_template_scale, "period": run}
    rows, flags, fits = [], {}, {}
    fitted = _fit_plots(series, region, fit_options)
    curves = [smooth_series(s.dates, s.ndvi, smoothing) if smoothing != "none" else (s.dates, s.ndvi)
              for s in series.values()]
    features = phenology_many([days for days, _ in curves], [curve for _, curve in curves])
    drawn = [drawn_area_mu.get(plot_id, np.nan) for plot_id in series]
    windows = [_declared_windows(region, declared_of.get(plot_id, ()), run, int(max_sowing_shift_days),
                                 np.asarray(s.dates, dtype="datetime64[D]").tobytes()) for plot_id, s in series.items()]
    evidence = _window_evidence(list(series.values()), drawn, [seen.threshold for seen in windows],
                                [seen.mask for seen in windows])
    # each plot's fits, declaration and the observations its fits were made on
    observed = [(fitted[plot_id][0], declared_of.get(plot_id, ()), s.dates[fitted[plot_id][1]],
                 s.ndvi[fitted[plot_id][1]]) for plot_id, s in series.items()]
    window_rmses = _window_rmses(region, observed)
    for (plot_id, s), plot_features, plot_drawn, seen, plot_evidence, (plot_fits, declared, dates, ndvi), window_rmse \
            in zip(series.items(), features, drawn, windows, evidence, observed, window_rmses):
        row: dict[str, Any] = {"plot_id": plot_id, "declared_crop": ";".join(d.crop for d in declared) or None,
                               "region": region, "n_acquisitions": s.n_acquisitions, "n_valid": len(s.dates),
                               "n_clear": int(np.count_nonzero(s.cloud_masked)), "pixel_count": s.pixel_count,
                               "max_covered_frac": s.max_covered_frac}
        row.update(plot_features)
        fits[plot_id] = plot_fits
        _fit_row(row, plot_fits)
        flags[plot_id] = _plot_flags(row, s, plot_fits, (dates, ndvi, window_rmse), declared, region, plot_drawn, seen,
                                     plot_evidence, probabilities,
                                     min_observations_in_window=min_observations_in_window,
                                     min_pixel_count=min_pixel_count,
                                     cultivated_min_share=cultivated_min_share, min_season_amplitude=min_season_amplitude,
                                     max_sowing_shift_days=max_sowing_shift_days, min_covered_fraction=min_covered_fraction,
                                     crop_mismatch_margin=crop_mismatch_margin, max_fit_rmse=max_fit_rmse,
                                     crop_model_margin=crop_model_margin)
        rows.append(row)
    return SeasonRows(ColumnarRows.from_records(rows), flags, fits, series, run)


@gc_paused(promote=True)  # (as Evidence.merge: its columns and texts live on, a collection would walk the heap)
def finish_season(part: SeasonRows, *, low_vigor_percentile: float = 10.0, low_vigor_min_gap: float = 0.10,
                  vigor_factor_min: float = 0.7, vigor_factor_max: float = 1.1, min_peers: int = 5,
                  min_pixel_count: float = 4.0, min_observations_in_window: int = 3) -> SeasonResult:
    """The cross-plot part of :func:`assess_season`: peer vigor (:func:`peer_vigor`) over every plot's row, then
    the flag columns. Parameters: the ``[satellite]`` policy, as :func:`assess_season`."""
    flags = part.flags
    plots = peer_vigor(part.rows.to_frame(), flags, low_vigor_percentile=low_vigor_percentile,
                       low_vigor_min_gap=low_vigor_min_gap, vigor_factor_min=vigor_factor_min,
                       vigor_factor_max=vigor_factor_max, min_peers=min_peers, min_pixel_count=min_pixel_count,
                       min_clear_observations=min_observations_in_window)
    found = [flags[p] for p in plots["plot_id"].tolist()]
    plots["flags"] = [";".join(f.code for f in plot_flags) if plot_flags else "" for plot_flags in found]
    plots["flag_figures"] = _figures_texts(found)
    for column in ("peak_date", "greenup_date", "senescence_date"):
        plots[column] = _iso_column(plots[column])
    return SeasonResult(plots=plots, flags=flags, fits=part.fits, series=part.series, period=part.period)


def split_season_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`assess_season`'s keyword arguments (:func:`season_options`) as those of :func:`season_rows` and of
    :func:`finish_season` (a key both take goes to both)."""
    import inspect

    row_keys, peer_keys = (inspect.signature(f).parameters for f in (season_rows, finish_season))
    return ({k: v for k, v in options.items() if k in row_keys}, {k: v for k, v in options.items() if k in peer_keys})


@dataclass(frozen=True)
class _DeclaredWindows:
    """A declaration's crop windows on a plot's observation days (:func:`_declared_windows`)."""

    green_periods: tuple[tuple, ...]  # every declared crop's green periods on the calendar
    thin: str  # the crop whose window holds the fewest observations ("season" when nothing is declared)
    count: int  # how many
    start: str | None  # its window (ISO dates)
    end: str | None
    mask: np.ndarray  # the observations in any crop's window (read only)
    threshold: float  # the lowest cropped NDVI threshold of the declared crops (the table's without any)


@functools.lru_cache(maxsize=4096)
def _declared_windows(region: str, declared: tuple[Declared, ...], run: tuple[Any, Any], max_shift: int,
                      days: bytes) -> _DeclaredWindows:
    """Each declared crop's window (its green periods widened by the largest sowing shift, or the whole run
    when nothing is declared) on the observation days ``days`` (the bytes of a ``datetime64[D]`` array).

    Cached: the plots of a declaration seen on the same days share it (read only).
    """
    dates = np.frombuffer(days, dtype="datetime64[D]")
    periods = _green_periods(region, declared, run)
    pad = np.timedelta64(max_shift, "D")
    windows = {crop: (min(p[0] for p in ps) - pad, max(p[1] for p in ps) + pad) for crop, ps in periods.items()}
    windows = windows or {"season": run}
    counts = {crop: int(np.count_nonzero(_window_mask(dates, [w]))) for crop, w in windows.items()}
    thin = min(counts, key=counts.get)
    mask = _window_mask(dates, windows.values())
    mask.flags.writeable = False
    return _DeclaredWindows(tuple(p for ps in periods.values() for p in ps), thin, counts[thin], _iso(windows[thin][0]),
                            _iso(windows[thin][1]), mask, _cropped_threshold(declared))


@functools.lru_cache(maxsize=1024)
def _cropped_threshold(declared: tuple[Declared, ...]) -> float:
    """The lowest cropped NDVI threshold of the declared crops (the table's default without any). Cached."""
    return min((load_crops()[d.crop].cropped_ndvi_threshold for d in declared), default=default_cropped_threshold())


def _plot_flags(row: dict[str, Any], s: PlotSeries, plot_fits: Sequence[SystemFit],
                observed: tuple[np.ndarray, np.ndarray, np.ndarray | None],
                declared: Sequence[Declared], region: str, drawn: float, seen: _DeclaredWindows,
                evidence: dict[str, Any], probabilities: pd.DataFrame | None, *, min_observations_in_window: int,
                min_pixel_count: float, cultivated_min_share: float, min_season_amplitude: float,
                max_sowing_shift_days: int, min_covered_fraction: float, crop_mismatch_margin: float,
                max_fit_rmse: float, crop_model_margin: float) -> list[Flag]:
    """The satellite checks of one plot (filling ``row`` with the figures behind them); ``plot_fits`` were made on
    the days and NDVI of ``observed`` (:func:`_fit_plots`), whose last item are the fits' RMSEs in the declared
    seasons' window (:func:`agricredit.templatecheck._window_rmses`); ``seen`` are its declared crops' windows
    (:func:`_declared_windows`), ``evidence`` its cropped evidence there (:func:`_window_evidence`)."""
    if s.n_acquisitions == 0:  # no tile covers the plot at all: not a cloud problem
        return [Flag("NO_COVERAGE", {"acquisitions": 0})]
    if s.pixel_count < min_pixel_count:  # too small for the sensor: verify reports TOO_FEW_PIXELS, a review
        return []
    plot_flags = []
    partial = not s.max_covered_frac >= min_covered_fraction
    if partial:
        plot_flags.append(Flag("PARTIAL_COVERAGE", {"max_covered_frac": s.max_covered_frac,
                                                    "min_covered_fraction": min_covered_fraction}))
    thin, window, threshold = seen.thin, seen.mask, seen.threshold
    row.update(n_valid_in_window=seen.count, window_start=seen.start, window_end=seen.end)
    if seen.count < min_observations_in_window:
        return plot_flags + [Flag("CLOUD_INSUFFICIENT", {
            "crop": thin, "valid_in_window": seen.count, "required": min_observations_in_window,
            "window_start": seen.start, "window_end": seen.end, "acquisitions": s.n_acquisitions,
        })]
    ranking, chosen_at, own_at = _ranking_of(region, tuple(map(_NAME, plot_fits)), declared)
    chosen = plot_fits[chosen_at if declared and chosen_at is not None else 0] if plot_fits else None
    own = [chosen.seasons[i] for i in own_at] if chosen else []
    row.update({k: evidence[k] for k in ("cropped_share", "cropped_measured_share", "cropped_date",
                                         "cropped_area_mu_at_peak")}, drawn_area_mu=drawn)
    row["fitted_peak_ndvi"] = chosen.offset + max(x.amplitude for x in own) if declared and own else np.nan
    row["vigor_peak_ndvi"] = row["fitted_peak_ndvi"] if declared and own else row["peak_ndvi"]
    row["chosen_windows"] = ";".join(f"{x.season.key}:{x.dates['sowing']}/{x.dates['harvest']}" for x in own) or None
    crop_flags = []
    if plot_fits:
        row["crop_ranking"] = ranking
        dates, ndvi, window_rmse = observed
        crop_flags = _template_checks(row, plot_fits, declared, region, dates, ndvi, margin=crop_mismatch_margin,
                                      max_fit_rmse=max_fit_rmse, window_rmse=window_rmse, chosen_at=chosen_at, own=own)
    if probabilities is not None and declared and s.plot_id in probabilities.index and all(
            d.crop in probabilities.columns for d in declared):
        crop_flags = _model_checks(row, probabilities.loc[s.plot_id], declared, crop_model_margin)
    green = seen.green_periods
    covered = _covers_every_sowing(s.dates[window & s.cloud_masked], green, max_sowing_shift_days)
    cultivation = _cultivation_flag(evidence, threshold=threshold, cultivated_min_share=cultivated_min_share,
                                    min_season_amplitude=min_season_amplitude,
                                    min_observations=min_observations_in_window, partial=partial, covered=covered)
    if cultivation is not None and not _covers_every_sowing(s.dates[window], green, max_sowing_shift_days):
        # Little crop seen, but clouds hid the crop's green period for some sowing dates: a cloud problem.
        return plot_flags + [Flag("CLOUD_INSUFFICIENT", {
            "crop": thin, "valid_in_window": seen.count, "required": min_observations_in_window,
            "window_start": seen.start, "window_end": seen.end,
            "acquisitions": s.n_acquisitions, "green_period_unseen": True,
        })]
    return plot_flags + ([cultivation] if cultivation is not None else crop_flags)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


#: The encoder of json.dumps(..., sort_keys=True, default=_json_default), made once: the same text.
_FIGURES_JSON = json.JSONEncoder(sort_keys=True, default=_json_default)


def _figures_texts(found: Sequence[Sequence[Flag]]) -> list[str]:
    """The JSON text of each plot's flags' figures (``{code: figures}``, keys sorted; ``{}`` without flags)."""
    texts: dict[str, str] = {}
    found_texts = []
    for plot_flags in found:
        if not plot_flags:
            found_texts.append("{}")
            continue
        # Most plots' flags repeat a few hundred others: each distinct one is encoded once, known by its repr (for
        # the figures' types, str, numbers, booleans and None, the repr tells apart what encodes apart).
        seen = repr([(f.code, f.figures) for f in plot_flags])
        text = texts.get(seen)
        if text is None:
            text = texts[seen] = _FIGURES_JSON.encode({f.code: f.figures for f in plot_flags})
        found_texts.append(text)
    return found_texts


# --------------------------------------------------------------------------- policy and output table
# (kept at the end of the module; not in ``__all__`` above, importable by name)

#: Columns of the per-plot season table, first and in this order (the per-crop fit columns follow).
SEASON_LEAD_COLUMNS = (
    "plot_id", "declared_crop", "flags", "best_crop", "region", "best_explanation", "declared_explanation",
    "crop_ranking", "best_score", "best_rmse", "declared_score", "chosen_windows",
    "n_acquisitions", "n_valid", "n_clear", "n_valid_in_window", "window_start", "window_end", "pixel_count", "max_covered_frac",
    "peak_ndvi", "peak_date", "greenup_date", "senescence_date", "season_length_days", "ndvi_integral",
    "base_ndvi", "amplitude", "cropped_area_mu_at_peak", "cropped_share", "cropped_measured_share", "cropped_date",
    "drawn_area_mu", "fitted_peak_ndvi", "vigor_peak_ndvi", "peer_count", "peer_median_peak", "peak_percentile",
    "vigor_factor", "flag_figures",
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
