"""Benchmark of the zonal engine against exactextract (per date) and rasterstats, on the same data.

Usage::

    python scripts/bench/bench_zonal.py [--plots 20000] [--dates 10] [--rasterstats-subset 500]
                                        [--big-plots 100000] [--big-size 10980] [--skip-big]

Sample grid: NDVI of the bundled real Sentinel-2 L1C scene
(``sample_tiles/s2_l1c_eastern_shore.tif``, 1024 × 896 px at 10 m, computed from
B04/B08 by :mod:`agricredit.raster`): date 1 is that NDVI, dates 2… are it with a
random gain and offset, and each date gets a few round cloud holes (NaN); 20,000
random 0.1–6 ha plots over the grid (they overlap heavily on so small a grid).
Full size: a synthetic 10980 × 10980 NDVI tile and 100,000 plots, 1 date.
Data are generated into a temporary folder (never committed) by a subprocess.
Each measurement runs in its own subprocess, so its peak memory (``VmHWM``, the
peak RSS of that process alone) is its own. Prints times, max RSS, ratios against the peers measured
in the same run, and the largest difference of the answers.
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

SAMPLE = ROOT / "sample_tiles" / "s2_l1c_eastern_shore.tif"
OPS = ["mean", "median", "quantile(q=0.9)", "count"]


def random_plots(rng: np.random.Generator, n: int, bounds: tuple[float, float, float, float], crs):
    """``n`` rotated rectangles of 0.1–6 ha inside ``bounds``, as a GeoDataFrame with ``plot_id``."""
    import geopandas as gpd
    import shapely

    xmin, ymin, xmax, ymax = bounds
    area = rng.uniform(1_000, 60_000, n)
    aspect = rng.uniform(0.5, 2.0, n)
    w, h = np.sqrt(area * aspect), np.sqrt(area / aspect)
    cx, cy = rng.uniform(xmin + w / 2, xmax - w / 2), rng.uniform(ymin + h / 2, ymax - h / 2)
    boxes = shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    geoms = [shapely.affinity.rotate(b, a, origin="centroid") for b, a in zip(boxes, rng.uniform(0, 90, n))]
    return gpd.GeoDataFrame({"plot_id": [f"P{i}" for i in range(n)]}, geometry=geoms, crs=crs)


def write_tile(path: Path, array: np.ndarray, crs, transform) -> Path:
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=array.shape[1], height=array.shape[0], count=1,
                       dtype="float32", crs=crs, transform=transform, tiled=True, blockxsize=256,
                       blockysize=256) as dst:
        dst.write(array, 1)
    return path


def sample_data(folder: Path, n_plots: int, n_dates: int, seed: int = 0) -> tuple[Path, list[Path]]:
    """NDVI tiles of the sample grid (real S2 L1C) on ``n_dates`` dates, and random plots over it."""
    from agricredit import raster

    rng = np.random.default_rng(seed)
    product = raster.open_product(SAMPLE)
    ndvi, _ = raster.read_ndvi(product)
    height, width = ndvi.shape
    yy, xx = np.mgrid[0:height, 0:width]
    tiles = []
    for d in range(n_dates):
        array = ndvi.copy() if d == 0 else np.clip(ndvi * rng.uniform(0.7, 1.2) + rng.uniform(-0.1, 0.1), -1, 1)
        for _ in range(rng.integers(2, 6)):  # round clouds of 300 m to 1.2 km radius
            cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(30, 120)
            array[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = np.nan
        name = f"ndvi_sample_2023{6 + d // 28:02d}{1 + d % 28:02d}.tif"
        tiles.append(write_tile(folder / name, array.astype(np.float32), product.crs, product.transform))
    t = product.transform
    bounds = (t.c, t.f + height * t.e, t.c + width * t.a, t.f)
    plots = folder / f"plots_sample_{n_plots}.parquet"
    random_plots(rng, n_plots, bounds, product.crs).to_parquet(plots)
    return plots, tiles


def big_data(folder: Path, n_plots: int, size: int, seed: int = 1) -> tuple[Path, list[Path]]:
    """A synthetic full-size NDVI tile (10 m UTM, 2.5 % cloudy rows and columns) and random plots over it."""
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    crs, x0, y0, res = "EPSG:32650", 500000.0, 4000000.0, 10.0
    array = rng.uniform(-0.1, 0.9, (size, size)).astype(np.float32)
    array[rng.integers(0, size, max(1, size // 40))] = np.nan
    array[:, rng.integers(0, size, max(1, size // 40))] = np.nan
    tile = write_tile(folder / f"ndvi_{size}_20230601.tif", array, crs, from_origin(x0, y0 + size * res, res, res))
    del array
    plots = folder / f"plots_big_{n_plots}.parquet"
    random_plots(rng, n_plots, (x0, y0, x0 + size * res, y0 + size * res), crs).to_parquet(plots)
    return plots, [tile]


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    ``VmHWM`` from ``/proc/self/status`` where there is one: unlike ``ru_maxrss``,
    it does not carry over the parent's peak across fork and exec.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase(name: str, plots: str, tiles: list[str], out: str) -> None:
    """Run one measurement in this process and write {seconds, max_rss_mb, baseline_rss_mb} to ``out``."""
    import geopandas as gpd
    import pandas as pd

    gdf = gpd.read_parquet(plots)
    if name == "ours":
        from agricredit.zonal import zonal_stats
    elif name == "exactextract":
        from exactextract import exact_extract
    else:
        from rasterstats import zonal_stats as rs_zonal_stats
    baseline = peak_rss_mb()
    start = time.perf_counter()
    if name == "ours":
        table = zonal_stats(gdf, tiles)
    elif name == "exactextract":
        frames = []
        for tile in tiles:
            frame = exact_extract(tile, gdf, OPS, include_cols=["plot_id"], output="pandas")
            frame["date"] = tile
            frames.append(frame)
        table = pd.concat(frames)
    else:
        for tile in tiles:
            rs_zonal_stats(gdf, tile, stats=["mean", "median", "percentile_90", "count"], nodata=np.nan)
        table = None
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "max_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline}
    if table is not None and len(tiles) == 1:
        table.to_parquet(out + ".parquet")
    Path(out).write_text(json.dumps(result))


def run(name: str, plots: Path, tiles: list[Path], folder: Path, label: str = "") -> dict:
    out = folder / f"result_{name}_{len(tiles)}_{plots.stem}.json"
    subprocess.run([sys.executable, __file__, "--phase", name, "--phase-plots", str(plots), "--phase-out", str(out),
                    "--phase-tiles", *map(str, tiles)], check=True)
    result = json.loads(out.read_text())
    print(f"  {name + label:24s} {len(tiles):2d} date(s): {result['seconds']:8.2f} s   max RSS "
          f"{result['max_rss_mb']:6.0f} MB (after loading the plots: {result['baseline_rss_mb']:4.0f} MB)", flush=True)
    return result


def make(kind: str, folder: Path, args: argparse.Namespace) -> tuple[Path, list[Path]]:
    """Generate the data in a subprocess (the parent stays small: its peak memory is not the phases')."""
    subprocess.run([sys.executable, __file__, "--make", kind, "--phase-out", str(folder), "--plots", str(args.plots),
                    "--dates", str(args.dates), "--rasterstats-subset", str(args.rasterstats_subset),
                    "--big-plots", str(args.big_plots), "--big-size", str(args.big_size)], check=True)
    plots, tiles = json.loads((folder / f"made_{kind}.json").read_text())
    return Path(plots), [Path(t) for t in tiles]


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
    parser.add_argument("--rasterstats-subset", type=int, default=500)
    parser.add_argument("--big-plots", type=int, default=100_000)
    parser.add_argument("--big-size", type=int, default=10980)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--make", help=argparse.SUPPRESS)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--phase-plots", help=argparse.SUPPRESS)
    parser.add_argument("--phase-tiles", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--phase-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase(args.phase, args.phase_plots, args.phase_tiles, args.phase_out)
        return
    if args.make:
        folder = Path(args.phase_out)
        if args.make == "sample":
            plots, tiles = sample_data(folder, args.plots, args.dates)
            subset = folder / "plots_subset.parquet"
            import geopandas as gpd

            gpd.read_parquet(plots).head(args.rasterstats_subset).to_parquet(subset)
        else:
            plots, tiles = big_data(folder, args.big_plots, args.big_size)
        (folder / f"made_{args.make}.json").write_text(json.dumps([str(plots), [str(t) for t in tiles]]))
        return

    with tempfile.TemporaryDirectory(prefix="bench_zonal_") as tmp:
        folder = Path(tmp)
        print(f"sample grid ({SAMPLE.name}, 1024x896 px, 10 m): {args.plots} plots of 0.1-6 ha, "
              f"{args.dates} dates", flush=True)
        plots, tiles = make("sample", folder, args)
        subset = folder / "plots_subset.parquet"
        ours1 = run("ours", plots, tiles[:1], folder)
        ee1 = run("exactextract", plots, tiles[:1], folder)
        ours_n = run("ours", plots, tiles, folder)
        ee_n = run("exactextract", plots, tiles, folder)
        rs1 = run("rasterstats", subset, tiles[:1], folder, f" ({args.rasterstats_subset} plots)")
        rs_scaled = rs1["seconds"] * args.plots / args.rasterstats_subset
        print(f"1 date : ours / exactextract time = {ours1['seconds'] / ee1['seconds']:.2f} (target <= 1.5)")
        print(f"{args.dates} dates: exactextract / ours time = {ee_n['seconds'] / ours_n['seconds']:.2f} "
              f"(target >= 5)")
        print(f"1 date : rasterstats (scaled from {args.rasterstats_subset} plots: {rs_scaled:.1f} s) / ours = "
              f"{rs_scaled / ours1['seconds']:.1f}; {args.dates} dates: {args.dates * rs_scaled / ours_n['seconds']:.1f}")
        print(f"max RSS ours / exactextract: 1 date {ours1['max_rss_mb'] / ee1['max_rss_mb']:.2f}, "
              f"{args.dates} dates {ours_n['max_rss_mb'] / ee_n['max_rss_mb']:.2f}")
        print(f"largest |ours - exactextract| of mean/median/p90: {max_difference(folder, plots):.2e} "
              f"(target <= 1e-6)", flush=True)
        if not args.skip_big:
            for path in tiles:
                path.unlink()
            print(f"full grid {args.big_size}x{args.big_size} (synthetic), {args.big_plots} plots, 1 date", flush=True)
            big_plots, big_tiles = make("big", folder, args)
            ours_big = run("ours", big_plots, big_tiles, folder)
            ee_big = run("exactextract", big_plots, big_tiles, folder)
            print(f"full grid: ours / exactextract time = {ours_big['seconds'] / ee_big['seconds']:.2f}, max RSS "
                  f"{ours_big['max_rss_mb'] / ee_big['max_rss_mb']:.2f}; largest difference "
                  f"{max_difference(folder, big_plots):.2e}")


if __name__ == "__main__":
    main()
