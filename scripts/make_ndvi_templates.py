"""Write seeds/ndvi_templates.csv from the crop calendars in seeds/crops.csv.

Each crop's template is a double-logistic curve (the usual phenology model,
e.g. Beck et al. 2006, Remote Sens. Environ. 100:321-334) whose green-up and
senescence midpoints (50 % of the amplitude) are the calendar dates cited in
seeds/crops.csv, rising from the off-season base NDVI to the crop's peak NDVI.
Winter wheat adds its autumn tillering plateau (sown in October, ~0.35 NDVI
through winter), so its season crosses the new year.

Usage: python scripts/make_ndvi_templates.py [OUT.csv]   (deterministic; default OUT: seeds/ndvi_templates.csv)
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
STEP_DAYS = 8  # the MODIS/Sentinel composite spacing commonly used for templates
STEEPNESS_DAYS = 8.0
WINTER_PLATEAU = 0.15  # above base: autumn-sown wheat before dormancy (~0.35 NDVI)
WINTER_SOWING_DOY = 290


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def template(doy: np.ndarray, row: dict[str, str]) -> np.ndarray:
    """Return the template NDVI of one crop row at days of year ``doy``."""
    base, peak = float(row["base_ndvi"]), float(row["peak_ndvi"])
    greenup, senescence = float(row["greenup_doy"]), float(row["senescence_doy"])
    winter = row["season_start"] > row["season_end"]  # MM-DD strings: the season crosses 1 January
    # Days since the season's start, so the curve is continuous across the new year.
    origin = 250.0 if winter else 0.0
    t = (doy - origin) % 365
    g, s = (greenup - origin) % 365, (senescence - origin) % 365
    rise = _sigmoid((t - g) / STEEPNESS_DAYS)
    fall = 1.0 - _sigmoid((t - s) / STEEPNESS_DAYS)
    main = rise * fall
    main = main / main.max()
    level = (peak - base) * main
    if winter:
        autumn = WINTER_PLATEAU * _sigmoid((t - (WINTER_SOWING_DOY - origin)) / STEEPNESS_DAYS) * fall
        level = np.maximum(level, autumn)
    return base + level


def main(out: Path = SEEDS / "ndvi_templates.csv") -> None:
    """Write the templates of every crop of seeds/crops.csv to ``out``."""
    with open(SEEDS / "crops.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    doys = np.arange(1, 366, STEP_DAYS, dtype=float)
    with open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["crop", "doy", "ndvi"])
        for row in rows:
            for doy, value in zip(doys, template(doys, row)):
                writer.writerow([row["crop"], int(doy), f"{value:.3f}"])


if __name__ == "__main__":
    main(*map(Path, sys.argv[1:2]))
