"""Peer vigor: each plot's peak NDVI against the plots of the same declared crop (design §7), the cross-plot part of
the season checks (:func:`agricredit.season.finish_season`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from agricredit.flag import Flag

__all__ = ["peer_vigor"]


def peer_vigor(
    plots: pd.DataFrame,
    flags: dict[str, list[Flag]],
    *,
    low_vigor_percentile: float = 10.0,
    low_vigor_min_gap: float = 0.10,
    vigor_factor_min: float = 0.7,
    vigor_factor_max: float = 1.0,
    min_peers: int = 5,
    min_pixel_count: float = 0.0,
    min_clear_observations: int = 0,
) -> pd.DataFrame:
    """Compare each plot's peak NDVI with the plots of the same declared crop.

    The peak compared is ``vigor_peak_ndvi``: the peak of the declared crop's
    fitted template (offset + scale × template maximum), which a clouded peak
    date does not lower; the observed peak where no fit exists. Peers are the
    plots of the same ``declared_crop`` without ``NOT_CULTIVATED``,
    ``CLOUD_INSUFFICIENT`` or ``CROP_MISMATCH`` (the declared crop's template
    says nothing about a plot growing another crop), nor plots whose
    ``pixel_count`` is below ``min_pixel_count`` (mixed pixels), nor plots partly outside the
    imagery or with fewer than ``min_clear_observations`` cloud-masked observations
    (``n_clear``): LOW_VIGOR lowers a limit, so it needs clear evidence. A plot's percentile is the
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
    plots = plots.copy(deep=False)  # new columns only: the caller's frame keeps its own
    excluded = {"NOT_CULTIVATED", "NOT_CULTIVATED_UNCONFIRMED", "CLOUD_INSUFFICIENT", "NO_COVERAGE", "CROP_MISMATCH",
                "SEASON_UNRECOGNISED", "PARTIAL_COVERAGE"}
    pixels = plots["pixel_count"].to_numpy(float) if "pixel_count" in plots else np.full(len(plots), np.nan)
    clear = plots["n_clear"].to_numpy(float) if "n_clear" in plots else np.full(len(plots), np.inf)
    # No peak column when every plot of the run stopped before its fit (no coverage, too small, clouded).
    peaks_all = plots["vigor_peak_ndvi"].to_numpy(float) if "vigor_peak_ndvi" in plots else np.full(len(plots), np.nan)
    measured = np.isfinite(peaks_all) & ~(pixels < min_pixel_count) & ~(clear < min_clear_observations)
    # the plots a flag excludes, from the (few) plots with flags
    barred = {pid for pid, found in flags.items() if found and not excluded.isdisjoint([f.code for f in found])}
    eligible = np.array([ok and isinstance(crop, str) and bool(crop) and pid not in barred
                         for pid, crop, ok in zip(plots["plot_id"].tolist(), plots["declared_crop"].tolist(),
                                                  measured.tolist())], dtype=bool)
    peer_count = np.zeros(len(plots), dtype=int)
    peer_median = np.full(len(plots), np.nan)
    percentile = np.full(len(plots), np.nan)
    vigor = np.ones(len(plots))
    crops = plots["declared_crop"].to_numpy(object)
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
