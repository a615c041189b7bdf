"""Benchmark of the zonal engine against exactextract (per date) and rasterstats, on the same data.

Usage::

    python scripts/bench/bench_zonal.py [--plots 20000] [--dates 10] [--size 2000] [--big-plots 100000]
                                        [--big-size 10980] [--rasterstats-subset 1000] [--skip-big]

Data are generated into a temporary folder (never committed): NDVI GeoTIFFs
(10 m UTM grid, 5 % NaN "clouds") and random 0.1–6 ha plots. Each
measurement runs in its own subprocess so its peak memory (max RSS) is its own.
Prints times, ratios against the peers measured in the same run, the largest
difference of the answers, and memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CRS = "EPSG:32650"
X0, Y0, RES = 500000.0, 4000000.0, 10.0
OPS = ["mean", "median", "quantile(q=0.9)", "count"]


def make_data(folder: Path, n_plots: int, n_dates: int, size: int, seed: int = 0) -> tuple[Path, list[Path]]:
    import geopandas as gpd
    import rasterio
    import shapely
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    tiles = []
    for d in range(n_dates):
        array = rng.uniform(-0.1, 0.9, (size, size)).astype(np.float32)
        cloud_rows = rng.integers(0, size, max(1, size // 40))
        array[cloud_rows] = np.nan  # 2.5 % cloudy rows...
        array[:, rng.integers(0, size, max(1, size // 40))] = np.nan  # ...and columns
        path = folder / f"ndvi_{size}_2023{6 + d // 28:02d}{1 + d % 28:02d}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="float32", crs=CRS,
                           transform=from_origin(X0, Y0 + size * RES, RES, RES), tiled=True,
                           blockxsize=512, blockysize=512) as dst:
            dst.write(array, 1)
        tiles.append(path)
    extent = size * RES
    area = rng.uniform(1_000, 60_000, n_plots)  # 0.1–6 ha
    aspect = rng.uniform(0.5, 2.0, n_plots)
    w, h = np.sqrt(area * aspect), np.sqrt(area / aspect)
    cx = rng.uniform(X0 + w / 2, X0 + extent - w / 2)
    cy = rng.uniform(Y0 + h / 2, Y0 + extent - h / 2)
    boxes = shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    angles = rng.uniform(0, 90, n_plots)
    geoms = [shapely.affinity.rotate(b, a, origin="centroid") for b, a in zip(boxes, angles)]
    plots = folder / f"plots_{n_plots}.parquet"
    gpd.GeoDataFrame({"plot_id": [f"P{i}" for i in range(n_plots)]}, geometry=geoms, crs=CRS).to_parquet(plots)
    return plots, tiles


def phase(name: str, plots: str, tiles: list[str], out: str) -> None:
    """Run one measurement in this process and write {seconds, max_rss_mb} (and answers) to ``out``."""
    import geopandas as gpd

    gdf = gpd.read_parquet(plots)
    start = time.perf_counter()
    if name == "ours":
        from agricredit.zonal import zonal_stats

        table = zonal_stats(gdf, tiles)
    elif name == "exactextract":
        from exactextract import exact_extract

        frames = []
        for tile in tiles:
            frame = exact_extract(tile, gdf, OPS, include_cols=["plot_id"], output="pandas")
            frame["date"] = tile
            frames.append(frame)
        import pandas as pd

        table = pd.concat(frames)
    elif name == "rasterstats":
        from rasterstats import zonal_stats as rs_zonal_stats

        for tile in tiles:
            rs_zonal_stats(gdf, tile, stats=["mean", "median", "percentile_90", "count"], nodata=np.nan)
        table = None
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if table is not None and len(tiles) == 1:
        table.to_parquet(out + ".parquet")
    Path(out).write_text(json.dumps(result))


def run(name: str, plots: Path, tiles: list[Path], folder: Path) -> dict:
    out = folder / f"result_{name}_{len(tiles)}_{plots.stem}.json"
    subprocess.run([sys.executable, __file__, "--phase", name, "--phase-plots", str(plots), "--phase-out", str(out),
                    "--phase-tiles", *map(str, tiles)], check=True)
    result = json.loads(out.read_text())
    print(f"  {name:13s} {len(tiles):2d} date(s): {result['seconds']:8.2f} s   max RSS {result['max_rss_mb']:7.0f} MB",
          flush=True)
    return result


def max_difference(folder: Path, plots: Path) -> float:
    import pandas as pd

    ours = pd.read_parquet(folder / f"result_ours_1_{plots.stem}.json.parquet")
    ref = pd.read_parquet(folder / f"result_exactextract_1_{plots.stem}.json.parquet")
    merged = ref[ref["count"] > 0].merge(ours, on="plot_id")
    return max(float(np.nanmax(np.abs(merged[a] - merged[b])))
               for a, b in [("mean", "ndvi_mean"), ("median", "ndvi_median"), ("quantile_90", "ndvi_p90")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plots", type=int, default=20_000)
    parser.add_argument("--dates", type=int, default=10)
    parser.add_argument("--size", type=int, default=2000, help="sample grid size in pixels (10 m)")
    parser.add_argument("--rasterstats-subset", type=int, default=1000)
    parser.add_argument("--big-plots", type=int, default=100_000)
    parser.add_argument("--big-size", type=int, default=10980)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--phase-plots", help=argparse.SUPPRESS)
    parser.add_argument("--phase-tiles", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--phase-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase(args.phase, args.phase_plots, args.phase_tiles, args.phase_out)
        return

    with tempfile.TemporaryDirectory(prefix="bench_zonal_") as tmp:
        folder = Path(tmp)
        print(f"sample grid {args.size}x{args.size}, {args.plots} plots of 0.1-6 ha, {args.dates} dates", flush=True)
        plots, tiles = make_data(folder, args.plots, args.dates, args.size)
        import geopandas as gpd

        subset = folder / "plots_subset.parquet"
        gpd.read_parquet(plots).head(args.rasterstats_subset).to_parquet(subset)
        ours1 = run("ours", plots, tiles[:1], folder)
        ee1 = run("exactextract", plots, tiles[:1], folder)
        ours10 = run("ours", plots, tiles, folder)
        ee10 = run("exactextract", plots, tiles, folder)
        rs1 = run("rasterstats", subset, tiles[:1], folder)
        rs_scaled = rs1["seconds"] * args.plots / args.rasterstats_subset
        difference = max_difference(folder, plots)
        print(f"1 date : ours / exactextract time = {ours1['seconds'] / ee1['seconds']:.2f} (target <= 1.5)")
        print(f"{args.dates} dates: exactextract / ours time = {ee10['seconds'] / ours10['seconds']:.2f} (target >= 5)")
        print(f"1 date : rasterstats (scaled from {args.rasterstats_subset} plots) / ours = "
              f"{rs_scaled / ours1['seconds']:.1f}")
        print(f"largest |ours - exactextract| of mean/median/p90: {difference:.2e} (target <= 1e-6)")
        if not args.skip_big:
            for path in tiles:
                path.unlink()
            print(f"full grid {args.big_size}x{args.big_size}, {args.big_plots} plots, 1 date", flush=True)
            big_plots, big_tiles = make_data(folder, args.big_plots, 1, args.big_size, seed=1)
            ours_big = run("ours", big_plots, big_tiles, folder)
            ee_big = run("exactextract", big_plots, big_tiles, folder)
            print(f"full grid: ours / exactextract time = {ours_big['seconds'] / ee_big['seconds']:.2f}; "
                  f"largest difference {max_difference(folder, big_plots):.2e}")


if __name__ == "__main__":
    main()
