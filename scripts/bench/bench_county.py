"""Benchmark of ``agricredit batch`` on a generated county, against ``assess`` and a user's own pipeline.

Usage::

    python scripts/bench/bench_county.py [--size 10980] [--dates 6] [--plots 100000] [--runs user,assess,batch-2]
                                         [--scaling batch-2] [--folder DIR | --keep]

Generates into a temporary folder (never committed): one Sentinel-2 L2A grid of
``size`` x ``size`` 10 m pixels (EPSG:32650) as ``dates`` products (B04, B08,
SCL in one GeoTIFF with the L2A tags ``agricredit`` reads, listed in a
manifest), ``plots`` rotated rectangles of 0.1-5 ha (GeoParquet, WGS84), about
2.7 plots per borrower, the registry, the declarations and the borrower table
(made-up people), and a batch TOML. Then, each in its own subprocess (so that
its peak RSS, children included, is its own), in the same run:

* ``user``: what a user would otherwise write: NDVI per date with rasterio
  (the L2A scale and offset), then exactextract's mean per date over the plots;
* ``assess``: ``agricredit assess`` in one process;
* ``batch-1`` / ``batch-2``: ``agricredit batch`` with 1 and 2 local workers.

Prints wall time, plots per second, peak RSS (of the run's own process and of its
largest child process, i.e. a Dask worker), the ratios against ``user`` and
the stage times from batch's run log. A run may be named more than once
(``--runs batch-2,user,batch-2``): this machine's speed drifts by tens of per
cent over minutes, so runs on either side of the peer show how much of a
ratio is drift. With ``--scaling RUN``, then times RUN
on counties of 1/4, 1/2, 1 and 2 times the plots and of 3, 6 and 12 dates on the
same grid (sharing its products) and prints the time per plot and date.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "bench"))
sys.path.insert(0, str(ROOT))

from bench_zonal import random_plots  # noqa: E402  (the same random plots as the zonal benchmark)

CRS = "EPSG:32650"
ORIGIN = (399960.0, 4000020.0)  # the upper-left corner of a real Sentinel-2 tile grid (50SKE)
DATES = ("2023-04-10", "2023-05-05", "2023-06-01", "2023-06-25", "2023-07-20", "2023-08-15", "2023-09-10",
         "2023-10-05", "2023-04-25", "2023-05-20", "2023-07-05", "2023-08-30")
L2A_TAGS = {"AGRICREDIT_SENSOR": "s2-l2a", "PROCESSING_BASELINE": "05.09", "QUANTIFICATION_VALUE": "10000",
            "ADD_OFFSET": "-1000", "SIMULATED": "yes"}
KEYS = {"AGRICREDIT_PII_KEY": "pseudonym key of the county benchmark",
        "AGRICREDIT_AUDIT_KEY": "audit key of the county benchmark"}


def write_products(folder: Path, size: int, dates: Sequence[str], rng: np.random.Generator) -> list[Path]:
    """L2A products of one ``size``² grid on ``dates`` (skipping those already there); written by blocks of rows.

    The canopy follows one season over the 12 dates of :data:`DATES` (green-up, then senescence), whichever
    of them are written.
    """
    import rasterio
    from rasterio.transform import from_origin

    transform = from_origin(*ORIGIN, 10.0, 10.0)
    season = sorted(DATES)
    paths = []
    block = 512
    for date in sorted(dates):
        path = folder / f"S2_L2A_{date.replace('-', '')}.tif"
        paths.append(path)
        if path.exists():
            continue
        gain = 0.3 + 0.6 * np.sin(np.pi * (season.index(date) + 1) / (len(season) + 1))
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint16", nodata=0,
                           crs=CRS, transform=transform, tiled=True, blockxsize=512, blockysize=512,
                           compress="deflate") as dst:
            dst.update_tags(ACQUISITION_DATE=date, **L2A_TAGS)
            dst.descriptions = ("B04", "B08", "SCL")
            for top in range(0, size, block):
                height = min(block, size - top)
                texture = rng.uniform(0.0, 1.0, (height, size))
                red = 1000 + 600 * (1 - gain * texture) + rng.integers(0, 50, (height, size))
                nir = 1000 + 3500 * gain * texture + rng.integers(0, 50, (height, size))
                scl = np.where(rng.uniform(0, 1, (height, size)) < 0.05, 9, 4)  # 5 % cloud (high probability)
                window = rasterio.windows.Window(0, top, size, height)
                for band, values in ((1, red), (2, nir), (3, scl)):
                    dst.write(values.astype("uint16"), band, window=window)
    return paths


def write_manifest(folder: Path, products: Sequence[Path]) -> Path:
    """``manifest.csv`` of ``folder`` listing ``products`` (linked into ``folder`` when they live elsewhere)."""
    rows = ["date,sensor,path"]
    for product in products:
        here = folder / product.name
        if not here.exists():
            here.symlink_to(product)
        stem = product.stem.rsplit("_", 1)[1]
        rows.append(f"{stem[:4]}-{stem[4:6]}-{stem[6:]},s2-l2a,{product.name}")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return manifest


def national_id(first17: str) -> str:
    """A made-up resident ID with its GB 11643-1999 check digit (ISO 7064 MOD 11-2)."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights)) % 11]


def write_tables(folder: Path, n_plots: int, size: int, rng: np.random.Generator) -> dict[str, Path]:
    """Plots (WGS84 GeoParquet), registry, declarations and borrowers of a county."""
    import pandas as pd

    from agricredit.plots import area_mu

    extent = (ORIGIN[0], ORIGIN[1] - 10.0 * size, ORIGIN[0] + 10.0 * size, ORIGIN[1])
    plots = random_plots(rng, n_plots, extent, CRS)
    plots["geometry"] = plots.geometry.scale(0.9, 0.9)  # 0.1-5 ha after random_plots' 0.1-6 ha
    n_borrowers = max(1, round(n_plots / 2.73))
    borrowers = [f"B{i:06d}" for i in range(n_borrowers)]
    plots["borrower_id"] = rng.choice(borrowers, n_plots)
    mu = area_mu(plots).round(2).to_numpy()
    plots = plots.to_crs("EPSG:4326")
    paths = {"plots": folder / "plots.parquet", "registry": folder / "registry.csv",
             "declarations": folder / "declarations.csv", "borrowers": folder / "borrowers.csv"}
    plots.to_parquet(paths["plots"])
    registry = {"plot_id": plots["plot_id"], "holder_id": plots["borrower_id"], "registered_area": mu,
                "area_unit": "mu", "land_use": "耕地", "source": "generated"}
    pd.DataFrame(registry).to_csv(paths["registry"], index=False)
    pd.DataFrame({"borrower_id": plots["borrower_id"], "plot_id": plots["plot_id"], "declared_crop": "maize",
                  "declared_area": mu, "area_unit": "mu"}).to_csv(paths["declarations"], index=False)
    pd.DataFrame({"borrower_id": borrowers,
                  "national_id": [national_id(f"410727{1950 + i // 336_000:04d}{1 + i // 28_000 % 12:02d}"
                                              f"{1 + i // 1000 % 28:02d}{i % 1000:03d}") for i in range(n_borrowers)],
                  "name": [f"农户{i}" for i in range(n_borrowers)],
                  "phone": [f"138{i:08d}" for i in range(n_borrowers)],
                  "village": [f"村{i % 200}" for i in range(n_borrowers)]}).to_csv(paths["borrowers"], index=False)
    return paths


def write_config(folder: Path, paths: dict[str, Path], manifest: Path, workers: int) -> Path:
    lines = ["[inputs]", *(f'{k} = "{v.name}"' for k, v in paths.items()), f'tiles = ["{manifest.name}"]',
             "[options]", 'start = "2023-01-01"', 'end = "2023-12-31"',
             "[batch]", f'output = "out-batch-{workers}"', f"workers = {workers}"]
    path = folder / f"batch-{workers}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def user_pipeline(folder: str, plots: str) -> None:
    """NDVI per date (rasterio, L2A scale and offset, SCL cloud mask), then exactextract's mean per date."""
    import geopandas as gpd
    import rasterio
    from exactextract import exact_extract

    gdf = gpd.read_parquet(plots)
    manifest = (Path(folder) / "manifest.csv").read_text(encoding="utf-8").splitlines()[1:]
    for product in sorted(Path(folder) / line.split(",")[2] for line in manifest):
        with rasterio.open(product) as src:
            profile = src.profile | {"count": 1, "dtype": "float32", "nodata": np.nan}
            gdf_utm = gdf.to_crs(src.crs)
            ndvi_path = Path(folder) / f"ndvi_{product.stem}.tif"
            with rasterio.open(ndvi_path, "w", **profile) as dst:
                for _, window in src.block_windows(1):
                    red, nir, scl = (src.read(b, window=window).astype("float32") for b in (1, 2, 3))
                    red, nir = (red - 1000) / 10000, (nir - 1000) / 10000
                    ndvi = np.where(np.isin(scl, (0, 1, 3, 8, 9, 10)), np.nan, (nir - red) / (nir + red))
                    dst.write(ndvi.astype("float32"), 1, window=window)
        exact_extract(str(ndvi_path), gdf_utm, ["mean"], include_cols=["plot_id"], output="pandas")


def measure(label: str, command: list[str], cwd: Path) -> dict:
    """Run ``command`` in a wrapper process that reports wall time, the CPU time of the whole process tree (the
    Dask workers of ``batch`` included: each process is reaped by its parent), its own peak RSS and its child
    processes' (the workers; not the forked copy of itself that writes some outputs, whose RSS is mostly the
    pages it shares with its parent), sampled from ``/proc`` every 0.2 s with psutil."""
    wrapper = ("import json, os, subprocess, sys, time, psutil; start = time.perf_counter(); "
               "child = subprocess.Popen(sys.argv[1:]); main = psutil.Process(child.pid); peaks = {}; forks = set()\n"
               "while child.poll() is None:\n"
               "    for p in [main, *main.children(recursive=True)]:\n"
               "        try:\n"
               "            peaks[p.pid] = max(peaks.get(p.pid, 0), p.memory_info().rss)\n"
               "            if p.pid != child.pid and p.cmdline() == sys.argv[1:]: forks.add(p.pid)\n"
               "        except psutil.Error: pass\n"
               "    time.sleep(0.2)\n"
               "others = [v for k, v in peaks.items() if k != child.pid and k not in forks and v > 100 * 2**20]\n"
               "cpu = os.times().children_user + os.times().children_system\n"
               "print(json.dumps({'seconds': time.perf_counter() - start, 'code': child.returncode, "
               "'cpu_seconds': cpu, "
               "'max_rss_mb': peaks.get(child.pid, 0) / 2**20, 'workers': len(others), "
               "'worker_rss_mb': max(others, default=0) / 2**20}))")
    env = {**os.environ, **KEYS, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", wrapper, *command], cwd=cwd, env=env, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if not lines:  # the wrapper itself was killed
        sys.exit(f"{label}: no measurement ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(lines[-1])
    if result["code"] not in (0, 3):
        sys.exit(f"{label} failed ({result['code']}): {done.stderr[-2000:]}")
    return result


def stage_times(run_log: Path) -> list[tuple[str, float]]:
    """The stage lines of the last run in a batch run log (each run appends to it) with the seconds until the next
    line."""
    stamps = []
    for line in run_log.read_text(encoding="utf-8").splitlines():
        if " INFO agricredit.batch: batch on " in line:
            stamps = []
        elif " INFO agricredit.batch: " in line and "dashboard" not in line:
            when = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000
            stamps.append((line.split(" INFO agricredit.batch: ", 1)[1], when))
    return [(label[:60], stamps[i + 1][1] - when) for i, (label, when) in enumerate(stamps[:-1])]


TABLES = ("plots", "registry", "declarations", "borrowers")


def county(folder: Path, size: int, dates: Sequence[str], n_plots: int, base: Path | None = None
           ) -> tuple[Path, dict[str, Path]]:
    """The county of ``folder`` (generated unless its manifest is there): its manifest and tables.

    Products are written into ``base`` (default ``folder``) and linked from ``folder``, so the variants of a
    scaling run share the grid's products.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.{'parquet' if name == 'plots' else 'csv'}" for name in TABLES}
    if (folder / "manifest.csv").is_file():
        return folder / "manifest.csv", paths
    rng = np.random.default_rng(11)
    manifest = write_manifest(folder, write_products(base or folder, size, dates, rng))
    return manifest, write_tables(folder, n_plots, size, np.random.default_rng(n_plots))


def commands(folder: Path, paths: dict[str, Path], manifest: Path) -> dict[str, list[str]]:
    """The command line of each run on the county of ``folder``."""
    cli = [sys.executable, "-m", "agricredit", "-q"]
    configs = {workers: write_config(folder, paths, manifest, workers) for workers in (1, 2)}
    return {
        "user": [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT / 'scripts' / 'bench')!r}); "
                 "from bench_county import user_pipeline; "
                 f"user_pipeline({str(folder)!r}, {str(paths['plots'])!r})"],
        "assess": [*cli, "assess", "--plots", paths["plots"].name, "--tiles", manifest.name, "--registry",
                   "registry.csv", "--declarations", "declarations.csv", "--borrowers", "borrowers.csv", "--start",
                   "2023-01-01", "--end", "2023-12-31", "-o", "out-assess", "--overwrite"],
        **{f"batch-{w}": [*cli, "batch", config.name, "--overwrite"] for w, config in configs.items()},
    }


def scaling(folder: Path, args: argparse.Namespace, label: str, known: dict | None = None) -> None:
    """Time ``label`` on counties of 1/4, 1/2, 1 and 2 times ``args.plots`` plots (``args.dates`` dates; 25k-200k
    by default) and of 3, 6 and 12 dates
    (``args.plots`` plots), all on the products of ``folder``; print seconds and seconds per plot-date.
    ``known``: the run already measured on the county itself (not run again)."""
    variants = [(args.plots * k // 4, args.dates) for k in (1, 2, 4, 8)] + \
        [(args.plots, d) for d in (3, 6, 12) if d != args.dates]
    print(f"{'plots':>8} {'dates':>6} {'seconds':>8} {'µs/plot-date':>13}")
    for n_plots, n_dates in variants:
        if (n_plots, n_dates) == (args.plots, args.dates) and known is not None:
            result = known
        else:
            sub = folder / f"scale-{n_plots}-{n_dates}"
            manifest, paths = county(sub, args.size, sorted(DATES[:n_dates]), n_plots, base=folder)
            result = measure(label, commands(sub, paths, manifest)[label], sub)
        print(f"{n_plots:8d} {n_dates:6d} {result['seconds']:8.1f} {1e6 * result['seconds'] / n_plots / n_dates:13.0f}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--dates", type=int, default=6, choices=range(1, len(DATES) + 1))
    parser.add_argument("--plots", type=int, default=100_000)
    parser.add_argument("--runs", default="user,assess,batch-1,batch-2",
                        help="Comma-separated runs among user, assess, batch-1, batch-2, each any number of times "
                        "(e.g. batch-2,user,batch-2: runs on either side of the peer, as the machine's speed drifts); "
                        "ratios are to the mean of the user runs; empty: only generate.")
    parser.add_argument("--scaling", metavar="RUN", help="Then time RUN (e.g. batch-2) on 1/4, 1/2, 1, 2 times "
                        "--plots plots "
                        "and on 3/6/12 dates (the county's products, linked; 12 dates write 6 more).")
    parser.add_argument("--folder", type=Path, help="Generate into this folder (kept), or reuse the county it holds.")
    parser.add_argument("--keep", action="store_true", help="Keep the generated folder (and print it).")
    args = parser.parse_args()
    wanted = [label for label in args.runs.split(",") if label]
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench-county-"))
    start = time.perf_counter()
    manifest, paths = county(folder, args.size, sorted(DATES[:args.dates]), args.plots)
    print(f"county: {args.size}² px, {args.dates} dates, {args.plots} plots, ready in "
          f"{time.perf_counter() - start:.0f} s in {folder}")
    command_of = commands(folder, paths, manifest)
    runs: list[tuple[str, dict]] = []  # (label, result) in the order run
    for label in wanted:
        runs.append((label, measure(label, command_of[label], folder)))
        print(f"{label}: {json.dumps(runs[-1][1])}", flush=True)
    done = sorted({int(label[-1]) for label, _ in runs if label.startswith("batch-")})
    if any(label == "assess" for label, _ in runs) and done:
        same = all((folder / "out-assess" / name).read_bytes() == (folder / f"out-batch-{w}" / name).read_bytes()
                   for w in done for name in ("plots.parquet", "borrowers.csv", "audit.jsonl", "chips.parquet"))
        print(f"batch outputs identical to assess: {same}")
    user = [result["seconds"] for label, result in runs if label == "user"]
    print(f"{'run':10} {'seconds':>8} {'CPU s':>7} {'plots/s':>9} {'peak RSS MB':>12} {'worker RSS MB':>14} "
          f"{'vs user':>8}")
    for label, result in runs:
        ratio = f"{sum(user) / len(user) / result['seconds']:7.2f}x" if user else "      -"
        workers = f"{result['worker_rss_mb']:8.0f} ({result['workers']})" if label.startswith("batch") else ""
        print(f"{label:10} {result['seconds']:8.1f} {result['cpu_seconds']:7.0f} {args.plots / result['seconds']:9.0f} "
              f"{result['max_rss_mb']:12.0f} {workers:>14} {ratio}")
    for w in done:  # the last run's stages
        print(f"batch-{w} stages (run log): " + "; ".join(f"{label} {seconds:.1f} s" for label, seconds in
                                                          stage_times(folder / f"out-batch-{w}" / ".agricredit-batch"
                                                                      / "run.log")))
    if args.scaling:
        scaling(folder, args, args.scaling, next((r for label, r in reversed(runs) if label == args.scaling), None))
    if not (args.keep or args.folder):
        import shutil

        shutil.rmtree(folder)
    elif args.keep:
        print(f"kept {folder}")


if __name__ == "__main__":
    main()
