"""Synthetic zonal long tables built from the crop templates, for the season tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from agricredit.seeds import load_crops, template_ndvi

SUMMER_DATES = np.datetime64("2023-03-01") + np.arange(0, 260, 10)
WINTER_DATES = np.datetime64("2022-09-20") + np.arange(0, 300, 10)  # across 1 January


@dataclass
class Plot:
    """One synthetic plot: what grows (``None`` = bare), sowing shift, vigor, cloudy dates."""

    plot_id: str
    crop: str | None
    shift: int = 0
    vigor: float = 1.0
    cloudy: np.ndarray | None = None  # bool per date: valid_frac 0.1 on those dates
    flat_ndvi: float = 0.15  # NDVI of a non-crop (bare soil 0.15, water -0.2)
    area_mu: float = 6.0


def doy(dates: np.ndarray) -> np.ndarray:
    return (dates - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(int) + 1


def synth_table(plots: list[Plot], dates: np.ndarray, *, noise: float = 0.02, seed: int = 0) -> pd.DataFrame:
    """The long table the zonal engine would give for ``plots`` observed on ``dates``."""
    rng = np.random.default_rng(seed)
    rows = []
    for plot in plots:
        if plot.crop is None:
            truth = np.full(len(dates), plot.flat_ndvi)
            threshold = 0.45
        else:
            truth = plot.vigor * template_ndvi(plot.crop, doy(dates) - plot.shift)
            threshold = load_crops()[plot.crop].cropped_ndvi_threshold
        ndvi = truth + rng.normal(0, noise, len(dates))
        cloudy = plot.cloudy if plot.cloudy is not None else np.zeros(len(dates), bool)
        for k, date in enumerate(dates):
            valid = 0.1 if cloudy[k] else 1.0
            # Share of the plot above the crop threshold, as a smooth function of the mean.
            cropped_share = 1.0 / (1.0 + np.exp(-(ndvi[k] - threshold) / 0.03))
            rows.append({
                "plot_id": plot.plot_id, "date": str(date), "ndvi_mean": ndvi[k] if valid > 0.5 else ndvi[k] + 0.3,
                "ndvi_median": ndvi[k], "ndvi_p90": ndvi[k] + 0.05, "valid_frac": valid, "cloud_frac": 1 - valid,
                "cropped_area_mu": plot.area_mu * cropped_share * valid, "pixel_count": 40.0,
            })
    return pd.DataFrame(rows)
