"""The per-plot satellite evidence of a set of plots: season rows, report chips and series (design §9, the map step).

Everything here depends on each plot alone (its observations, declaration and
outline) and on the season's period, never on the other plots: ``assess``
computes it for all plots at once, ``batch`` for each spatial chunk on a Dask
worker, and :meth:`Evidence.merge` puts the chunks' parts together as if they
had been computed at once. The cross-plot work (peer vigor, claims, limits)
follows on the merged evidence (:func:`agricredit.season.finish_season`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from agricredit.outputs import gc_paused
from agricredit.report.data import KeptChips, plot_chips, season_series
from agricredit.season import SeasonRows, season_rows

__all__ = ["Evidence", "plot_evidence"]


@dataclass
class Evidence:
    """The season rows (:class:`agricredit.season.SeasonRows`), the NDVI chips at the peak
    (:func:`agricredit.report.data.plot_chips`) and the report's series (:func:`agricredit.report.data.season_series`)
    of some plots."""

    season: SeasonRows
    chips: pd.DataFrame
    series: pd.DataFrame

    @classmethod
    def merge(cls, parts: Sequence[Evidence], plot_ids: Sequence[str]) -> Evidence:
        """The evidence of disjoint sets of plots as one (rows, chips and series as a single computation's)."""
        chips = [part.chips for part in parts if len(part.chips)] or [parts[0].chips]
        series = [part.series for part in parts if len(part.series)] or [parts[0].series]
        # (no collection: the merged rows and flags, alive to the end of the run, would make one walk the run's heap)
        with gc_paused(promote=True):
            return cls(SeasonRows.merge([part.season for part in parts], plot_ids),
                       pd.concat(chips, ignore_index=True).sort_values("plot_id", ignore_index=True),
                       pd.concat(series, ignore_index=True).sort_values(["plot_id", "date"], ignore_index=True))


# No cyclic collection while the evidence is built (see :func:`agricredit.season.season_rows`): without the fits
# (``keep_fits=False``) their objects, most of those the rows create, are freed before any collection walks them.
@gc_paused()
def plot_evidence(table: pd.DataFrame, plots: Any, declared: Mapping[str, Any], drawn_mu: Mapping[str, float],
                  period: tuple[np.datetime64, np.datetime64], acquisitions: Sequence[Any],
                  options: Mapping[str, Any], kept: KeptChips | None = None, *, keep_fits: bool = True) -> Evidence:
    """The evidence of ``plots``.

    Parameters
    ----------
    table
        The plots' long table (:func:`agricredit.acquisitions.observation_table`; may be empty).
    plots
        GeoDataFrame of the plots (``plot_id``, any CRS).
    declared, drawn_mu
        Plot ID → declared crop seasons, drawn area (mu), as :func:`agricredit.season.assess_season`.
    period
        The whole season's first and last day (:func:`agricredit.season.season_period` of every plot's table).
    acquisitions
        The season's acquisitions (the chips are read from the tiles of each plot's peak date).
    options
        Keyword arguments of :func:`agricredit.season.season_rows` (region, policy numbers, crop model).
    kept
        The pixels the zonal stage kept around the chips (:class:`agricredit.report.data.KeptChips`), if any: the
        chips are cut out of them rather than read from the tiles again (the same bytes).
    keep_fits
        False: the season rows without the fitted curves and series objects (``fits`` and ``series`` empty), which
        only the report's charts read (a map task's reduce step reads the rows, which hold the fits' figures).
    """
    plot_ids = sorted(plots["plot_id"].astype(str).tolist())  # (a list: iterating a text column is slower)
    rows = season_rows(table, declared, drawn_mu, period=period, plot_ids=plot_ids, **options)
    if not keep_fits:
        rows = replace(rows, fits={}, series={})
    return Evidence(rows, plot_chips(plots, _peak_days(rows.rows.column("plot_id"), rows.rows.column("peak_date")),
                                     acquisitions, kept), season_series(table))


def _peak_days(plot_ids: Any, peaks: Any) -> dict[str, str]:
    """Plot ID → its peak date as ``YYYY-MM-DD``, for the plots with one (``peaks``: the rows' ``peak_date``
    column; a missing date is ``None``, NaN or NaT)."""
    plot_ids = plot_ids.tolist()
    if isinstance(peaks, np.ndarray) and peaks.dtype.kind == "M":  # a column of dates: formatted at once
        days = peaks.astype("datetime64[D]")
        seen = ~np.isnat(days)
        return dict(zip(itertools.compress(plot_ids, seen.tolist()), np.datetime_as_string(days[seen], "D").tolist()))
    # (the peak dates as numpy scalars: ``tolist`` would turn a datetime64[ns] column into integers)
    return {plot_id: str(np.datetime64(peak, "D")) for plot_id, peak in zip(plot_ids, list(peaks))
            if peak is not None and not pd.isna(peak)}
