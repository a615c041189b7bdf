"""The season chart of one plot: what the satellite saw, and the cropping systems that explain it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agricredit.errors import InputError

if TYPE_CHECKING:
    from agricredit.season import SeasonResult

__all__ = ["WINDOW_COLOURS", "season_chart"]

#: Fill colours of the chosen explanation's season windows, in season order (shaded behind the data).
WINDOW_COLOURS = ("#c7e9c0", "#fdd0a2")
#: Codes under which no fitted curve is drawn: no crop season explains the series, or no crop grew.
_NO_CURVE = {"SEASON_UNRECOGNISED", "NOT_CULTIVATED", "NOT_CULTIVATED_UNCONFIRMED", "CLOUD_INSUFFICIENT"}


def season_chart(result: SeasonResult, plot_id: str, path: str | Path, *, title: str | None = None) -> None:
    """Draw a plot's season (PNG, Agg backend), written with :func:`agricredit.outputs.atomic_path`.

    Usable observations are filled dots (hollow diamonds where the product had no
    cloud mask); dates too clouded to use are hollow circles along the bottom. The
    best explanation and the one holding the declared crops are drawn as fitted,
    unless the plot has no usable fit (``SEASON_UNRECOGNISED``, ``NOT_CULTIVATED``,
    ``CLOUD_INSUFFICIENT``...): a failed fit is not drawn as a line. The windows
    (sowing to harvest, as fitted) of the declared explanation's seasons are shaded
    (:data:`WINDOW_COLOURS`); the x axis spans the season's acquisitions.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from agricredit.outputs import atomic_path

    if plot_id not in result.series:
        raise InputError(f"plot {plot_id!r} is not in this run")
    s = result.series[plot_id]
    row = result.plots.set_index("plot_id").loc[plot_id]
    codes = set(filter(None, str(row.get("flags") or "").split(";")))
    figure = Figure(figsize=(8, 4.5), dpi=100)
    axes = figure.add_subplot()
    every = np.sort(np.concatenate([s.dates, s.unusable_dates])).astype("datetime64[D]")
    if len(every):
        axes.set_xlim(every[0].astype(object) - dt.timedelta(days=5), every[-1].astype(object) + dt.timedelta(days=5))
    fits = result.fits.get(plot_id, []) if not codes & _NO_CURVE else []
    if fits:
        days = every[0] + np.arange((every[-1] - every[0]).astype(int) + 1)
        chosen = str(row.get("declared_explanation") or fits[0].name)
        drawn = [fits[0]] + [f for f in fits[1:] if f.name == chosen]
        for k, fit in enumerate(drawn):
            shifts = ", ".join(f"{x.season.key} {x.shift_days:+d} d" for x in fit.seasons)
            axes.plot(days.astype(object), fit.curve(days), lw=2.2 if k == 0 else 1.2,
                      label=f"{fit.name}: {shifts}, RMSE {fit.rmse:.3f}" + (" (best)" if k == 0 else " (declared)"))
    windows = str(row.get("chosen_windows") or "") if fits else ""
    for k, part in enumerate(filter(None, windows.split(";"))):
        key, _, span = part.rpartition(":")
        start, end = (dt.date.fromisoformat(x) for x in span.split("/"))
        axes.axvspan(start, end, color=WINDOW_COLOURS[k % len(WINDOW_COLOURS)], zorder=0, lw=0, label=f"{key} window")
    masked = s.cloud_masked.astype(bool) if len(s.cloud_masked) == len(s.dates) else np.ones(len(s.dates), bool)
    axes.plot(s.dates[masked].astype(object), s.ndvi[masked], "ko", label=f"observed ({int(masked.sum())} clear)")
    if (~masked).any():
        axes.plot(s.dates[~masked].astype(object), s.ndvi[~masked], "kD", mfc="none",
                  label=f"no cloud mask ({int((~masked).sum())})")
    if len(s.unusable_dates):
        axes.plot(s.unusable_dates.astype(object), np.full(len(s.unusable_dates), -0.25), "o", color="0.4", mfc="none",
                  label=f"clouded, not used ({len(s.unusable_dates)})")
    axes.set_ylim(-0.3, 1.0)
    axes.set_ylabel("NDVI")
    axes.set_title(title or f"plot {plot_id} — declared {row.get('declared_crop') or '?'} — {', '.join(sorted(codes)) or 'no flags'}")
    axes.legend(fontsize=7, loc="upper left")
    figure.autofmt_xdate()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
