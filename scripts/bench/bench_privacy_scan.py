"""The personal-data guard on a county-sized run: false findings, planted leaks, time and memory.

Generates, in a temporary folder, a county of N plots (default 100 000) and
N / 2.75 borrowers (36 364) with valid national IDs, mobile numbers and Chinese
names (2- and 3-character, so names like 高峰 that are also words occur), runs
the real decision core (``verify_plots``, ``decide_all``, ``audit_record``,
``explain`` in Chinese) and the real writer (``assess.write_outputs``: staged
outputs, scan, publish) on that synthetic assessment, with long decimals in
every figure. Then:

* false findings: the scan of the clean outputs must find nothing (the writer
  publishes only then);
* planted leaks: a borrower's ID, phone and name written into a field of each
  output (CSV, GeoJSON, JSON Lines) must each be found, named by file, record
  and field;
* time and peak memory of the scan of all outputs, each measured in a fresh
  process, against peers in the same run: parsing the same files with
  ``json``/``csv`` (the floor of any field-aware scan), and the windowed scan
  this guard replaced (every 11- and 18-digit window of every digit run, every
  substring of every CJK run, against the borrower table), with its false
  findings.

Usage: ``python scripts/bench/bench_privacy_scan.py [N_PLOTS]``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from agricredit.assess import Assessment, _borrower_rows, write_outputs
from agricredit.schema import PLOT_FIELDS, conformed_table
from agricredit.audit import AuditKey, audit_record
from agricredit.credit import decide_all
from agricredit.policy import load_policy
from agricredit.privacy import PersonalDataGuard, PseudonymKey, pseudonym
from agricredit.verify import PlotFacts, verify_plots

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华峰平刚桂兰玉珍建国志红霞鹏飞斌宇浩凯"
REGIONS = ("110105", "130102", "320102", "370102", "410105", "440524", "510104", "610113", "130181", "371402")
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CROPS = ("maize", "wheat", "soybean", "rice")


def national_id(rng: np.random.Generator) -> str:
    born = pd.Timestamp("1950-01-01") + pd.Timedelta(days=int(rng.integers(0, 18000)))
    body = f"{rng.choice(REGIONS)}{born:%Y%m%d}{rng.integers(0, 1000):03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, WEIGHTS)) % 11]


def borrowers_table(n: int, rng: np.random.Generator) -> pd.DataFrame:
    names = [rng.choice(list(SURNAMES)) + "".join(rng.choice(list(GIVEN), size=int(rng.integers(1, 3))))
             for _ in range(n)]
    return pd.DataFrame({
        "borrower_id": [f"B{i:06d}" for i in range(n)],
        "national_id": [national_id(rng) for _ in range(n)],
        "name": names,
        "phone": [f"1{rng.integers(3, 10)}{rng.integers(0, 10**9):09d}" for _ in range(n)],
        "village": [f"{rng.choice(list(SURNAMES))}家村" for _ in range(n)],
        "source_row": range(2, n + 2),
    })


def assessment(n_plots: int, people: pd.DataFrame, rng: np.random.Generator) -> Assessment:
    """A synthetic county run: facts with long decimals → the real checks, limits, audit records and explanations."""
    policy = load_policy()
    key = PseudonymKey(b"bench pseudonym key, county run", "environment")
    alias = {b: pseudonym(key, "borrower", b) for b in people["borrower_id"]}
    owners = np.concatenate([people["borrower_id"].to_numpy(),
                             rng.choice(people["borrower_id"].to_numpy(), n_plots - len(people))])
    drawn = rng.lognormal(1.6, 0.6, n_plots)
    facts = [PlotFacts(plot_id=f"P{i:07d}", borrower_id=alias[b], drawn_mu=float(d),
                       registered_mu=float(d * rng.uniform(0.93, 1.07)), registry_holder_id=alias[b],
                       declared_mu=float(d * rng.uniform(0.95, 1.05)), declared_crop=str(rng.choice(CROPS)),
                       pixel_count=float(d * 66.6667), cropped_mu_at_peak=float(d * rng.uniform(0.3, 1.0)),
                       peak_ndvi=float(rng.uniform(0.3, 0.9)), vigor_factor=float(rng.uniform(0.8, 1.1)))
             for i, (b, d) in enumerate(zip(owners, drawn))]
    for index in range(0, n_plots, 97):  # some plots with review codes and unknown registry
        facts[index] = PlotFacts(**{**facts[index].__dict__, "registered_mu": math.nan})
    verdicts = verify_plots(facts, policy)
    decisions = decide_all(verdicts, policy)
    verdicts_of: dict[str, list] = {}
    for verdict in verdicts:
        verdicts_of.setdefault(verdict.borrower_id, []).append(verdict)
    inputs = {"plots": "ab" * 32, "registry": "cd" * 32, "policy": policy.sha256}
    audit = [audit_record(d, verdicts_of[d.borrower_id], policy, inputs) for d in decisions]
    villages = {alias[b]: v for b, v in zip(people["borrower_id"], people["village"])}
    borrowers = _borrower_rows(decisions, verdicts_of, villages, policy, "zh")
    centres = np.column_stack([rng.uniform(114.0, 118.0, n_plots), rng.uniform(35.0, 39.0, n_plots)])
    side = np.sqrt(drawn * 666.67) / 111_000
    geometries = [shapely.Polygon([(x, y), (x + s, y + s / 7), (x + s * 1.1, y + s), (x + s / 9, y + s * 0.97)])
                  for (x, y), s in zip(centres, side)]
    rows = [{"plot_id": v.facts.plot_id, "borrower": v.borrower_id, "geometry_status": "OK",
             **{name: float(value) for name, value in v.areas.items()},
             "verified_mu": v.contribution.mu_now, "verified_mu_if_confirmed": v.contribution.mu_if_confirmed,
             "declared_crop": v.facts.declared_crop, "light": v.light, "reason_codes": list(v.codes),
             "details": {"checks": [{"code": c.code, "figures": dict(c.figures)} for c in v.checks]},
             "peak_ndvi": v.facts.peak_ndvi, "vigor_factor": v.facts.vigor_factor}
            for v in verdicts]
    plots = gpd.GeoDataFrame(conformed_table(rows, PLOT_FIELDS), geometry=geometries, crs="EPSG:4326")
    return Assessment(policy=policy, plots=plots, verdicts=verdicts, decisions=decisions, borrowers=borrowers,
                      audit=audit, rejected={}, inputs=inputs, key_fingerprint=key.fingerprint, lang="zh",
                      pii_guard=PersonalDataGuard.from_borrowers(people))


# The scan of the guard, the parse floor and the windowed scan it replaced, each run in a fresh process.
SCAN = """
import sys, time, json, csv, re
from pathlib import Path
import pandas as pd
people = pd.read_csv(sys.argv[2], dtype=str)
files = sorted(p for p in Path(sys.argv[3]).iterdir() if p.suffix in (".csv", ".json", ".geojson", ".jsonl"))
start = time.perf_counter()
found = 0
if sys.argv[1] == "guard":
    from agricredit.privacy import PersonalDataGuard
    guard = PersonalDataGuard.from_borrowers(people)
    found = sum(1 for path in files for _ in guard.scan_file(path))
elif sys.argv[1] == "baseline":  # the imports and the borrower table only
    pass
elif sys.argv[1] == "parse":
    for path in files:
        with open(path, encoding="utf-8", newline="") as handle:
            if path.suffix == ".csv":
                found += sum(1 for _ in csv.reader(handle))
            elif path.suffix == ".jsonl":
                found += sum(1 for line in handle if json.loads(line))
            else:
                found += len(json.load(handle))
    found = 0
else:  # the windowed scan of earlier versions (false findings expected)
    ids, phones, names = set(people.national_id), set(people.phone), set(people.name)
    sizes = sorted({len(n) for n in names})
    for path in files:
        text = path.read_text(encoding="utf-8")
        for run in re.finditer(r"\\d{11,}[Xx]?", text):
            digits = run.group().upper()
            found += sum(digits[i:i + 11] in phones for i in range(len(digits) - 10))
            found += sum(digits[i:i + 18] in ids for i in range(len(digits) - 17))
        for run in re.finditer(r"[\\u3400-\\u9fff]+", text):
            chunk = run.group()
            found += sum(chunk[i:i + s] in names for i in range(len(chunk)) for s in sizes)
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))  # this process image only
print(json.dumps({"seconds": time.perf_counter() - start, "findings": found, "peak_mb": int(peak.split()[1]) / 1024}))
"""


def measure(mode: str, people_csv: Path, folder: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", SCAN, mode, str(people_csv), str(folder)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def plant(folder: Path, target: Path, people: pd.DataFrame, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Copies of the outputs with one borrower's ID, phone or name written into one field; returns (what, file)."""
    person = people.iloc[int(rng.integers(len(people)))]
    planted = []
    for what, value in (("ID", person.national_id), ("phone", person.phone), ("name", person["name"])):
        for name in ("borrowers.csv", "plots.geojson", "audit.jsonl"):
            text = (folder / name).read_text(encoding="utf-8")
            if name == "borrowers.csv":  # inside the Chinese explanation of a row in the middle, as a whole token
                lines = text.split("\n")
                row = len(lines) // 2
                lines[row] = lines[row].replace("额度", f"额度 {value}，", 1)
                text = "\n".join(lines)
            elif name == "plots.geojson":  # a whole field value of a feature near the end
                position = text.rfind('"declared_crop": "', 0, len(text) - 2000)
                text = text[:position] + text[position:].replace('"declared_crop": "', f'"declared_crop": "{value}", "x": "', 1)
            else:  # as a JSON number or string in a record in the middle
                lines = text.split("\n")
                row = len(lines) // 2
                field = str(int(value)) if value.isdigit() else json.dumps(value, ensure_ascii=False)
                lines[row] = lines[row].replace('"schema":', f'"tool_note":{field},"schema":', 1)
                text = "\n".join(lines)
            copy = target / f"{what}-{name}"
            copy.write_text(text, encoding="utf-8")
            planted.append((what, copy.name))
    return planted


def main(n_plots: int) -> None:
    rng = np.random.default_rng(2026)
    people = borrowers_table(round(n_plots / 2.75), rng)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        run = assessment(n_plots, people, rng)
        print(f"synthetic county: {n_plots} plots, {len(people)} borrowers, built in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        write_outputs(run, tmp / "out", AuditKey(b"bench audit key, county run", "environment"))
        written = time.perf_counter() - start
        sizes = {p.name: p.stat().st_size / 1e6 for p in sorted((tmp / "out").iterdir())}
        print(f"write_outputs (write, scan, publish): {written:.1f} s; outputs "
              + ", ".join(f"{name} {mb:.1f} MB" for name, mb in sizes.items()))
        people.to_csv(tmp / "people.csv", index=False)
        base = measure("baseline", tmp / "people.csv", tmp / "out")["peak_mb"]
        ours = measure("guard", tmp / "people.csv", tmp / "out")
        floor = measure("parse", tmp / "people.csv", tmp / "out")
        windows = measure("windows", tmp / "people.csv", tmp / "out")
        print(f"(memory below: peak of the process above the {base:.0f} MB of its imports and borrower table)")
        print(f"guard scan of all outputs: {ours['seconds']:.1f} s, +{ours['peak_mb'] - base:.0f} MB, "
              f"false findings {ours['findings']}")
        print(f"peer json/csv parse only:  {floor['seconds']:.1f} s, +{floor['peak_mb'] - base:.0f} MB; "
              f"guard/peer {ours['seconds'] / floor['seconds']:.2f}x the time")
        print(f"peer windowed scan (before): {windows['seconds']:.1f} s, +{windows['peak_mb'] - base:.0f} MB, "
              f"false findings {windows['findings']}; guard/peer {ours['seconds'] / windows['seconds']:.2f}x the time")
        (tmp / "planted").mkdir()
        guard = PersonalDataGuard.from_borrowers(people)
        caught = 0
        for what, name in plant(tmp / "out", tmp / "planted", people, rng):
            start = time.perf_counter()
            found = list(guard.scan_file(tmp / "planted" / name))
            caught += len(found) == 1
            print(f"planted {what:5s} in {name.split('-', 1)[1]:17s} ({time.perf_counter() - start:4.1f} s): "
                  + ("; ".join(map(str, found)) or "NOT FOUND"))
        print(f"planted leaks found: {caught} of 9")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
