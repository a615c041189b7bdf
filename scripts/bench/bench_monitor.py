"""Benchmark of ``agricredit monitor``: one new date for a county's plots on a full Sentinel-2 grid.

Usage::

    python scripts/bench/bench_monitor.py [--plots 100000] [--size 10980]

Data (generated into a temporary folder by a subprocess, never committed): the
synthetic 10980 × 10980 NDVI tile and 100,000 random 0.1–6 ha plots of
``bench_zonal.py`` (dated 2023-06-01, North China Plain, UTM 50N), and a
previous ``assess`` folder for them: ``plots.geojson`` (spring maize, region
``ncp``, 3 plots per borrower), ``borrowers.parquet`` and a ``series.parquet``
of two earlier dates. Measured, each in its own subprocess (peak RSS =
``VmHWM`` of that process): ``monitor`` (:func:`agricredit.monitor.run_monitor`
+ :func:`~agricredit.monitor.write_monitor_outputs`: reading the folder, zonal
statistics of the new date, alerts, recommendations, the five outputs) against
the peer ``exactextract`` (the zonal engine's figures — mean, median, 90th
percentile, count — of the same plots on the same tile, nothing else). Prints times, peak memory and their ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from bench_zonal import OPS, big_data, peak_rss_mb  # noqa: E402  (the same generated tile, plots and figures)


def previous_folder(folder: Path, plots_path: Path, seed: int = 2) -> Path:
    """An ``assess``-like folder for the plots: plots.geojson, borrowers.parquet, series.parquet."""
    import geopandas as gpd
    import pandas as pd

    rng = np.random.default_rng(seed)
    plots = gpd.read_parquet(plots_path)
    n = len(plots)
    plots["borrower"] = [f"b_{i // 3:016x}" for i in range(n)]
    plots["declared_crop"], plots["region"] = "maize", "ncp"
    plots["verified_mu"] = plots.to_crs(plots.estimate_utm_crs()).area / 666.6667
    out = folder / "previous"
    out.mkdir()
    plots.to_crs("EPSG:4326").to_file(out / "plots.geojson", driver="GeoJSON")
    borrowers = plots.groupby("borrower", as_index=False)["verified_mu"].sum()
    borrowers["limit"] = (borrowers["verified_mu"] * 600 // 100 * 100).astype(int)
    borrowers.to_parquet(out / "borrowers.parquet", index=False)
    series = pd.DataFrame({"plot_id": np.repeat(plots["plot_id"].to_numpy(), 2),
                           "date": np.tile(["2023-05-10", "2023-05-25"], n),
                           "ndvi_mean": rng.normal(0.4, 0.02, 2 * n), "valid_frac": 1.0, "cloud_frac": 0.0})
    series.to_parquet(out / "series.parquet", index=False)
    return out


def phase(name: str, folder: str, plots: str, tile: str, out: str) -> None:
    """Run one measurement in this process; write {seconds, max_rss_mb, baseline_rss_mb, ...} to ``out``."""
    import geopandas as gpd

    if name == "monitor":
        from agricredit.audit import AuditKey
        from agricredit.monitor import run_monitor, write_monitor_outputs
        from agricredit.policy import load_policy

        policy = load_policy()
    else:
        from exactextract import exact_extract

        gdf = gpd.read_parquet(plots)
    baseline = peak_rss_mb()
    start = time.perf_counter()
    extra: dict = {}
    if name == "monitor":
        result = run_monitor(folder, [tile], policy)
        extra["monitor_seconds"] = time.perf_counter() - start
        write_monitor_outputs(result, Path(out).with_suffix(".alerts"), AuditKey.demo())
        extra["alerts"] = int(len(result.alerts))
    else:
        exact_extract(tile, gdf, OPS, include_cols=["plot_id"], output="pandas")
    seconds = time.perf_counter() - start
    Path(out).write_text(json.dumps({"seconds": seconds, "max_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline,
                                     **extra}))


def run(name: str, folder: Path, plots: Path, tile: Path, work: Path) -> dict:
    out = work / f"result_{name}.json"
    subprocess.run([sys.executable, __file__, "--phase", name, "--phase-args", str(folder), str(plots), str(tile),
                    str(out)], check=True)
    result = json.loads(out.read_text())
    print(f"  {name:14s} {result['seconds']:8.2f} s   peak RSS {result['max_rss_mb']:6.0f} MB "
          f"(after imports/loading: {result['baseline_rss_mb']:4.0f} MB)", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plots", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--phase")
    parser.add_argument("--phase-args", nargs=4)
    args = parser.parse_args()
    if args.phase:
        phase(args.phase, *args.phase_args)
        return
    with tempfile.TemporaryDirectory(prefix="agricredit-bench-monitor-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        plots, tiles = big_data(work, args.plots, args.size)
        folder = previous_folder(work, plots)
        print(f"generated {args.size}² tile, {args.plots} plots and their previous folder in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        ours = run("monitor", folder, plots, tiles[0], work)
        peer = run("exactextract", folder, plots, tiles[0], work)
        print(f"monitor (read + zonal + alerts: {ours['monitor_seconds']:.1f} s; {ours['alerts']} alerts) / "
              f"exactextract: time {ours['seconds'] / peer['seconds']:.2f}, peak RSS "
              f"{ours['max_rss_mb'] / peer['max_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
