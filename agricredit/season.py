"""Season assessment: the satellite checks of design §7 for every plot, and peer vigor.

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

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from agricredit.cropfit import CropFit, fit_crops, season_window_for
from agricredit.errors import InputError, SchemaError
from agricredit.seeds import default_cropped_threshold, load_crops, load_templates
from agricredit.series import PlotSeries, Smoothing, normalise_table, phenology, smooth_series, split_series

__all__ = [
    "Flag",
    "SeasonResult",
    "assess_season",
    "peer_vigor",
    "season_options",
    "season_plot_table",
    "SEASON_LEAD_COLUMNS",
]

logger = logging.getLogger(__name__)


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
    frame = normalise_table(table, stat)
    if frame.empty:
        raise InputError("the long table has no observations (no tile covers any plot in the period)")
    run_start, run_end = frame["date"].min(), frame["date"].max()
    series = split_series(frame, min_valid_fraction, stat)
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
