"""Crop-check evaluation on seasons generated independently of its templates (issue 9).

Run from the repository root::

    python scripts/bench/bench_cropcheck.py [--per-system N] [--seed-a A] [--seed-b B] [--regions ncp,delmarva]

Generates plots of every cropping system of each region (``tests/season_truth.py``:
Gaussian-sum canopy curves placed by the cited calendars' sowing / peak / harvest
dates, sowing spread ±30 days, heterogeneity, noise, clouds, unmasked products,
tiny and partly imaged plots, double cropping) in a temporary folder of memory
only, runs :func:`agricredit.season.assess_season` on them, and

1. on seed A, chooses ``shift_penalty``, ``crop_mismatch_margin`` and ``max_fit_rmse``
   from a grid: the largest detection of higher-value swaps with honest plots flagged ≤ 1 %;
2. on seed B, reports with those values: the confusion matrix of the best
   explanation against the truth, the share of swapped declarations flagged for
   every pair, and the honest plots flagged (single and double cropped).

It also times the bounded least-squares fit of the crop check against
``scipy.optimize.lsq_linear`` (the peer) on the same problems, and prints the ratio.
Prints Markdown; nothing is written.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from agricredit import cropfit  # noqa: E402
from agricredit.policy import load_policy  # noqa: E402
from agricredit.season import assess_season, season_options  # noqa: E402
from season_truth import evaluate, long_table, make_plots, truth_table  # noqa: E402

PERIOD = ("2022-10-01", "2023-11-30")
PENALTIES = (0.05, 0.10)
MARGINS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08)
FLOORS = (0.08, 0.10, 0.12, 0.15)


def markdown(frame: pd.DataFrame, index: bool = True) -> str:
    """A DataFrame as a Markdown table (floats to 3 decimals)."""
    frame = frame.reset_index() if index else frame
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)]
    head = [str(c) for c in frame.columns]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in cells])


def run(region: str, per_system: int, seed: int, options: dict) -> tuple[list, object, float]:
    plots = make_plots(region, per_system, seed)
    table = long_table(plots, *PERIOD, seed)
    truth = truth_table(plots)
    started = time.perf_counter()
    result = assess_season(table, {p.plot_id: list(p.crops) for p in plots if p.crops},
                           dict(zip(truth["plot_id"], truth["area_mu"])), plot_ids=list(truth["plot_id"]),
                           **{**options, "region": region})
    return plots, result, time.perf_counter() - started


def rates(evaluation: dict) -> dict[str, float]:
    honest, swaps = evaluation["honest"], evaluation["swaps"]
    judged = honest[~honest["scenario"].isin(("tiny", "partial"))]
    testable = swaps[swaps["testable"]]
    higher = testable[testable["higher_value"]]
    by_pair = higher.groupby(["region", "pair"])["flagged"].mean() if len(higher) else pd.Series(dtype=float)
    return {"honest_flagged": float(judged["flagged"].mean()),
            "min_higher_pair": float(by_pair.min()) if len(by_pair) else np.nan,
            "higher_flagged": float(higher["flagged"].mean()) if len(higher) else np.nan}


def tune(runs_by_penalty: dict[float, list]) -> tuple[float, float, float, pd.DataFrame]:
    rows = []
    for penalty, runs in runs_by_penalty.items():
        for margin, floor in itertools.product(MARGINS, FLOORS):
            evaluations = [evaluate(result, plots, crop_mismatch_margin=margin, max_fit_rmse=floor)
                           for plots, result, _ in runs]
            merged = {k: pd.concat([e[k] for e in evaluations]) for k in ("honest", "swaps")}
            rows.append({"shift_penalty": penalty, "crop_mismatch_margin": margin, "max_fit_rmse": floor, **rates(merged)})
    grid = pd.DataFrame(rows)
    ok = grid[grid["honest_flagged"] <= 0.01]
    if len(ok):  # the target met: the best detection of the worst higher-value pair, then of all of them
        pick = ok.sort_values(["min_higher_pair", "higher_flagged", "max_fit_rmse"], ascending=[False, False, True]).iloc[0]
    else:  # not met: the fewest honest plots flagged
        pick = grid.sort_values(["honest_flagged", "min_higher_pair"], ascending=[True, False]).iloc[0]
    return float(pick["shift_penalty"]), float(pick["crop_mismatch_margin"]), float(pick["max_fit_rmse"]), grid


def peer_ratio(n_problems: int = 40) -> str:
    """Our exact active-set solve of the bounded fit against scipy's lsq_linear on the same problems."""
    rng = np.random.default_rng(0)
    shapes = rng.random((n_problems, 80, 2))
    y = 0.2 + shapes @ np.array([0.4, 0.3]) + rng.normal(0, 0.03, 80)[None, :]
    low, high = np.array([0.2, 0.2]), np.array([1.2, 1.2])
    started = time.perf_counter()
    ours = cropfit._bounded_fit(y[0], shapes, low, high)[0]
    t_ours = time.perf_counter() - started
    started = time.perf_counter()
    peer = []
    for k in range(n_problems):
        design = np.column_stack([np.ones(80), shapes[k]])
        fit = lsq_linear(design, y[0], bounds=(np.r_[-np.inf, low], np.r_[np.inf, high]))
        peer.append(float(np.sum(fit.fun**2)))
    t_peer = time.perf_counter() - started
    agree = np.allclose(ours, peer, rtol=1e-6, atol=1e-9)
    return (f"bounded fit of {n_problems} shift combinations: ours {t_ours * 1e3:.1f} ms, scipy lsq_linear "
            f"{t_peer * 1e3:.1f} ms (ratio {t_peer / t_ours:.0f}x), same optimum: {agree}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-system", type=int, default=25)
    parser.add_argument("--seed-a", type=int, default=1)
    parser.add_argument("--seed-b", type=int, default=2)
    parser.add_argument("--regions", default="ncp,delmarva,northeast,yangtze")
    args = parser.parse_args()
    regions = args.regions.split(",")
    options = season_options(load_policy(None))
    print(f"# crop check on generated seasons ({args.per_system} plots per cropping system and region)\n")
    print(peer_ratio() + "\n")
    runs_a = {penalty: [run(region, args.per_system, args.seed_a, {**options, "shift_penalty": penalty})
                        for region in regions] for penalty in PENALTIES}
    penalty, margin, floor, grid = tune(runs_a)
    print(f"## tuning on seed {args.seed_a}: chosen shift_penalty {penalty}, crop_mismatch_margin {margin}, "
          f"max_fit_rmse {floor}\n")
    print(markdown(grid[grid["crop_mismatch_margin"] >= 0.02], index=False) + "\n")
    runs_b = [run(region, args.per_system, args.seed_b, {**options, "shift_penalty": penalty}) for region in regions]
    n_plots = sum(len(plots) for plots, _, _ in runs_b)
    seconds = sum(t for _, _, t in runs_b)
    print(f"## report on seed {args.seed_b} ({n_plots} plots, assess_season {seconds / n_plots * 1e3:.0f} ms a plot)\n")
    evaluations = [evaluate(result, plots, crop_mismatch_margin=margin, max_fit_rmse=floor) for plots, result, _ in runs_b]
    for region, e in zip(regions, evaluations):
        print(f"### {region}: best explanation (columns) against the truth (rows)\n")
        print(markdown(e["confusion"]) + "\n")
    honest = pd.concat([e["honest"] for e in evaluations])
    honest["cropping"] = np.where(honest["system"].str.contains("-"), "double", "single")
    judged = honest[~honest["scenario"].isin(("tiny", "partial"))]
    print("### honest declarations flagged (CROP_MISMATCH, SEASON_UNRECOGNISED, NOT_CULTIVATED[_UNCONFIRMED])\n")
    table = judged.groupby(["cropping", "scenario"]).agg(declarations=("flagged", "size"), flagged=("flagged", "mean"),
                                                         cloud_insufficient=("cloud_insufficient", "mean"),
                                                         zeroed=("zeroed", "sum"))
    print(markdown(table) + "\n")
    print(f"all honest: {judged['flagged'].mean():.3%} flagged of {len(judged)}; zeroed (NOT_CULTIVATED): "
          f"{int(judged['zeroed'].sum())}\n")
    swaps = pd.concat([e["swaps"] for e in evaluations])
    testable = swaps[swaps["testable"]]
    print("### swapped declarations flagged (testable plots: enough clear observations, imaged, not tiny)\n")
    pairs = testable.groupby(["region", "pair"]).agg(declarations=("flagged", "size"), flagged=("flagged", "mean"),
                                                      higher_value=("higher_value", "first"))
    print(markdown(pairs) + "\n")


if __name__ == "__main__":
    main()
