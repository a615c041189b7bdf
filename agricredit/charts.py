"""The season chart of one plot: its observations against the crop templates as fitted."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agricredit.errors import InputError
from agricredit.seeds import template_ndvi
from agricredit.series import day_of_year

if TYPE_CHECKING:
    from agricredit.season import SeasonResult

__all__ = ["season_chart"]


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
        curve = fit.offset + fit.scale * template_ndvi(fit.crop, day_of_year(days) - fit.shift_days)
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
