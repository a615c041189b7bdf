"""Benchmark the season module: closed-form template fit vs a generic least-squares peer, and a whole run.

Run from the repository root: ``python scripts/bench/bench_season.py [N_PLOTS]``. Prints times and ratios
measured in the same run; the data are synthetic (template + noise), generated in memory.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[2] / "tests")]

from agricredit import cropfit, season  # noqa: E402
from agricredit.series import plot_series  # noqa: E402
from agricredit.seeds import load_crops, template_ndvi  # noqa: E402
from season_synth import SUMMER_DATES, Plot, doy, synth_table  # noqa: E402


def peer_fit(dates, y, crops, max_shift=21):
    """The same model fitted by scipy.optimize.least_squares for every crop and whole-day shift."""
    d = doy(dates).astype(float)
    out = []
    for crop in crops:
        best = np.inf
        for shift in range(-max_shift, max_shift + 1):
            t = template_ndvi(crop, d - shift)
            fit = least_squares(lambda p: p[0] + p[1] * t - y, x0=[0.0, 1.0], bounds=([-np.inf, 0], [np.inf, 2]))
            best = min(best, float(np.sqrt(np.mean(fit.fun**2))))
        out.append((best, crop))
    return sorted(out)


def main(n_plots: int = 2000) -> None:
    rng = np.random.default_rng(0)
    crops = list(load_crops())
    series = [(SUMMER_DATES, 0.9 * template_ndvi(c, doy(SUMMER_DATES) - 5) + rng.normal(0, 0.02, len(SUMMER_DATES)))
              for c in rng.choice(["maize", "soybean", "wheat"], 40)]
    start = time.perf_counter()
    ours = [cropfit.fit_crops(d, y, max_sowing_shift_days=21, shift_penalty=0.0) for d, y in series]
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    peer = [peer_fit(d, y, crops) for d, y in series]
    t_peer = time.perf_counter() - start
    agree = np.mean([o[0].crop == p[0][1] and abs(o[0].rmse - p[0][0]) < 1e-4 for o, p in zip(ours, peer)])
    print(f"template fit, {len(series)} plots x 4 crops x 43 shifts: closed form {t_ours:.3f} s, "
          f"scipy least_squares {t_peer:.3f} s, ratio {t_peer / t_ours:.0f}x, same best crop and RMSE: {agree:.0%}")

    plots = [Plot(f"p{i}", c, int(rng.integers(-10, 11)), rng.uniform(0.85, 1.05))
             for i, c in enumerate(rng.choice(["maize", "soybean", "wheat"], n_plots))]
    table = synth_table(plots, SUMMER_DATES)
    declared = {p.plot_id: p.crop for p in plots}
    start = time.perf_counter()
    result = season.assess_season(table, declared)
    t_run = time.perf_counter() - start
    start = time.perf_counter()
    plot_series(table)
    t_split = time.perf_counter() - start
    print(f"assess_season: {n_plots} plots x {len(SUMMER_DATES)} dates in {t_run:.2f} s "
          f"({1000 * t_run / n_plots:.2f} ms/plot; splitting the long table alone {t_split:.2f} s); "
          f"flagged {int((result.plots['flags'] != '').sum())}: {sorted(set(result.plots['flags']) - {''})}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
