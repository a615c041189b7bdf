"""Speed of table ingestion and the PII scanner, as ratios against plain peers measured in the same run.

* ``read_registry`` (validation, units, row numbers) vs ``pandas.read_csv(dtype=str)``
  (parsing only) on the same CSV of N rows;
* ``find_pii`` with a borrower table vs one ``re.finditer`` pass of a plain
  18-digit pattern over the same text.

Usage: ``python scripts/bench/bench_tables.py [N]`` (default 100 000 rows).
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from agricredit.privacy import find_pii
from agricredit.tables import read_registry


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(n: int) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "registry.csv"
        areas = rng.uniform(0.5, 30, n).round(2)
        units = np.where(rng.random(n) < 0.15, "ha", "亩")
        lines = ["plot_id,holder_id,registered_area,area_unit,land_use,source"]
        lines += [f"P{i:07d},B{i // 4:06d},{a},{u},耕地,农村土地承包经营权确权登记" for i, (a, u) in enumerate(zip(areas, units))]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        ours = best_of(lambda: read_registry(path))
        peer = best_of(lambda: pd.read_csv(path, dtype=str, keep_default_na=False))
        print(f"read_registry, {n} rows: {ours:.3f} s; pandas.read_csv(dtype=str): {peer:.3f} s; ratio {ours / peer:.2f}")

    borrowers = pd.DataFrame(
        {
            "national_id": [f"3201021980{i % 10000:08d}" for i in range(2000)],
            "phone": [f"138{i:08d}" for i in range(2000)],
            "name": ["王" + chr(0x4E00 + i % 5000) + chr(0x4E00 + i // 5000) for i in range(2000)],
        }
    )
    record = '{"pseudonym":"b_3f9c0a7e12d45b68","village":"王家村","limit":4300.0,"explanation":"额度4300元，核实面积9.8亩，玉米。","sha256":"%s"}\n'
    text = "".join(record % f"{i:064x}" for i in range(n // 4))
    ours = best_of(lambda: find_pii(text, borrowers), repeat=1)
    plain = re.compile(r"(?<!\d)\d{17}[\dX](?!\d)")
    peer = best_of(lambda: list(plain.finditer(text)), repeat=1)
    print(f"find_pii, {len(text) / 1e6:.1f} MB, 2000 borrowers: {ours:.3f} s; one regex pass: {peer:.3f} s; ratio {ours / peer:.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
