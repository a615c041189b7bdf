"""``agricredit report`` on the sample run: a page per borrower, its numbers, no URL, fairness, the browser.

One sample run (assess, then report in English for every borrower and in
Chinese for one) is shared by the module. The browser tests use Debian's
headless ``chromium`` (``.ci/run`` installs it with ``fonts-noto-cjk``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner
from PIL import Image

from agricredit.assess import run_assessment, sample_case, write_outputs
from agricredit.audit import AuditKey
from agricredit.cli.main import cli
from agricredit.privacy import PseudonymKey, find_pii, pseudonym
from agricredit.report import charts
from agricredit.report.data import decode_ndvi, encode_ndvi
from agricredit.report.fairness import fairness_table
from agricredit.report.pages import Run, index_page
from agricredit.report.pdf import find_chromium
from agricredit.tables import read_borrowers

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_tiles"
#: A key of the tests (the public demo key is accepted only with --sample).
SECRET = "report-tests-pseudonym-key-0123"
KEY = PseudonymKey(SECRET.encode(), "environment")
#: The borrower of the Chinese page and the screenshots: B052, a REVIEW borrower with five plots.
SHOWN = pseudonym(KEY, "borrower", "B052")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report") / "out"
    write_outputs(run_assessment(sample_case(), KEY), folder, AuditKey.demo())
    return folder


@pytest.fixture(scope="module")
def pages(run_folder):
    result = CliRunner().invoke(cli, ["report", str(run_folder)])
    assert result.exit_code == 0, result.output
    return run_folder / "report"


@pytest.fixture(scope="module")
def pages_zh(run_folder):
    folder = run_folder.parent / "zh"
    result = CliRunner().invoke(cli, ["report", str(run_folder), "-o", str(folder), "--lang", "zh",
                                      "--borrower", SHOWN])
    assert result.exit_code == 0, result.output
    return folder


def _csv_rows(run_folder):
    with open(run_folder / "borrowers.csv", encoding="utf-8-sig") as handle:
        return {row["borrower"]: row for row in csv.DictReader(handle)}


class _Fields(HTMLParser):
    """The ``data-field``/``data-value`` pairs and every URL-bearing attribute of a page."""

    def __init__(self):
        super().__init__()
        self.fields: dict[str, list[str]] = {}
        self.links: list[str] = []
        self.rows: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-field" in attrs and "data-value" in attrs:
            self.fields.setdefault(attrs["data-field"], []).append(attrs["data-value"])
        self.links += [value for name, value in attrs.items() if name in ("src", "href") and value is not None]
        if tag == "tr" and "data-grouping" in attrs:
            self.rows.append({**attrs, "cells": []})
        if tag == "td" and self.rows and "data-value" in attrs:
            self.rows[-1]["cells"].append(attrs["data-value"])


def _parse(path: Path) -> _Fields:
    parser = _Fields()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_every_borrower_has_a_page(pages, run_folder):
    assert sorted(p.stem for p in pages.glob("b_*.html")) == sorted(_csv_rows(run_folder))
    assert (pages / "index.html").is_file()


NUMBERS = ("limit", "limit_if_confirmed", "verified_mu", "need", "capacity", "cap")


def test_the_numbers_on_each_page_are_those_of_borrowers_csv(pages, run_folder):
    for ref, row in _csv_rows(run_folder).items():
        fields = _parse(pages / f"{ref}.html").fields
        for name in NUMBERS:
            assert fields[name] == [fields[name][0]], (ref, name)  # shown once
            assert float(fields[name][0]) == float(row[name]), (ref, name)
        for name in ("status", "village", "binding", "borrower"):
            assert fields[name] == [row[name]], (ref, name)
        assert fields.get("reason", []) == [c for c in row["reason_codes"].split(";") if c], ref


def test_each_plot_section_shows_its_four_areas_and_failed_checks(pages, run_folder):
    plots = gpd.read_file(run_folder / "plots.geojson").set_index("plot_id")
    text = (pages / f"{SHOWN}.html").read_text(encoding="utf-8")
    fields = _parse(pages / f"{SHOWN}.html").fields
    for plot_id in _csv_rows(run_folder)[SHOWN]["plots"].split(";"):
        for area in ("drawn_mu", "registered_mu", "declared_mu", "cropped_mu"):
            shown = fields[f"plot:{plot_id}:{area}"][0]
            expected = plots.at[plot_id, area]
            assert (shown == "" and not expected == expected) or float(shown) == pytest.approx(expected), area
        failed = set(re.findall(rf'data-plot="{plot_id}".*?</section>', text, re.S)[0].split('data-result="fail"')[1:])
        assert len(failed) == len([c for c in (plots.at[plot_id, "reason_codes"] or "").split(";") if c])


URL_ATTRIBUTE = re.compile(r"""\b(?:src|href)\s*=\s*["']?([^"' >]*)""", re.I)


def _external_references(text: str) -> list[str]:
    """Every reference out of the page: http(s):, protocol-relative //, src/href neither data: nor a local page."""
    plain = re.sub(r"data:[a-z/+]+;base64,[A-Za-z0-9+/=]*", "data:", text)
    found = re.findall(r"https?:|//", plain, re.I)
    found += [url for url in URL_ATTRIBUTE.findall(plain)
              if not (url.startswith("data:") or url.startswith("#") or re.fullmatch(r"[\w.-]+\.html", url))]
    found += [url for url in re.findall(r"url\(([^)]*)\)", plain) if not url.startswith("#")]
    return found


def test_no_page_refers_to_anything_outside_itself(pages, pages_zh):
    assert _external_references('<img src="https://tiles.example/1.png">')  # the scan is not blind
    assert _external_references('<script src="//cdn.example/x.js"></script>')
    assert _external_references('<img src="map.png">')
    for page in [*pages.glob("*.html"), *pages_zh.glob("*.html")]:
        assert _external_references(page.read_text(encoding="utf-8")) == [], page.name


def _expected_fairness(run_folder):
    """Approval rate, median limit, limit per verified mu and AIR by village and declared-area band, by hand."""
    rows = list(_csv_rows(run_folder).values())
    declared: dict[str, float] = {}
    for feature in json.loads((run_folder / "plots.geojson").read_text(encoding="utf-8"))["features"]:
        p = feature["properties"]
        if p["declared_mu"] is not None:
            declared[p["borrower"]] = declared.get(p["borrower"], 0.0) + p["declared_mu"]

    def band(mu):
        return "<10 mu" if mu < 10 else "10–30 mu" if mu < 30 else "30–100 mu" if mu < 100 else "≥100 mu"

    expected = {}
    for grouping, key in (("village", lambda r: r["village"]), ("size_band", lambda r: band(declared.get(r["borrower"], 0.0)))):
        groups: dict[str, list] = {}
        for r in rows:
            groups.setdefault(key(r), []).append(r)
        rates = {g: sum(r["status"] == "APPROVE" for r in rs) / len(rs) for g, rs in groups.items()}
        best = max(rates.values())
        for g, rs in groups.items():
            area = sum(float(r["verified_mu"]) for r in rs)
            expected[grouping, g] = (len(rs), rates[g], statistics.median(float(r["limit"]) for r in rs),
                                     sum(float(r["limit"]) for r in rs) / area if area else math.nan, rates[g] / best)
    return expected


def test_the_fairness_table_equals_an_independent_computation(pages, run_folder):
    expected = _expected_fairness(run_folder)
    shown = {(r["data-grouping"], r["data-group"]): (r["cells"], "flagged" in r.get("class", ""))
             for r in _parse(pages / "index.html").rows}
    assert set(shown) == set(expected)
    for group, (n, rate, median, per_mu, air) in expected.items():
        cells, flagged = shown[group]
        assert int(cells[0]) == n
        assert float(cells[1]) == pytest.approx(rate, abs=5e-5)
        assert float(cells[2]) == pytest.approx(median, abs=5e-3)
        assert (math.isnan(per_mu) and cells[3] == "nan") or float(cells[3]) == pytest.approx(per_mu, abs=5e-5)
        assert float(cells[4]) == pytest.approx(air, abs=5e-5)
        assert flagged == (air < 0.8), group


def _planted_run(tmp_path, approved_in_b: int) -> Run:
    """Villages A (10 of 10 approved), B (``approved_in_b`` of 10), C (9 of 10); one 20-mu plot each."""
    borrowers, plots = [], []
    for village, approved in (("A", 10), ("B", approved_in_b), ("C", 9)):
        for k in range(10):
            ref = f"b_{village}{k}"
            borrowers.append({"borrower": ref, "village": village, "status": "APPROVE" if k < approved else "REVIEW",
                              "limit": 10000 if k < approved else 0, "verified_mu": 20.0 if k < approved else 0.0,
                              "reason_codes": "", "plots": f"P{village}{k}"})
            x = 0.001 * (len(plots) % 10)
            plots.append({"plot_id": f"P{village}{k}", "borrower": ref, "declared_mu": 20.0, "light": "green",
                          "geometry": shapely.box(114 + x, 35 + 0.001 * (len(plots) // 10), 114.0009 + x, 35.0009)})
    return Run(tmp_path, {}, pd.DataFrame(borrowers), gpd.GeoDataFrame(plots, crs="EPSG:4326"),
               pd.DataFrame(columns=["plot_id"]), pd.DataFrame(columns=["plot_id"]))


@pytest.mark.parametrize(("approved_in_b", "flagged"), [(7, True), (8, False), (9, False)])
def test_a_planted_disparity_is_highlighted_at_the_four_fifths_line(tmp_path, approved_in_b, flagged):
    run = _planted_run(tmp_path, approved_in_b)
    rows = {(r.grouping, r.group): r for r in fairness_table(run.borrowers, run.plots)}
    assert rows["village", "B"].adverse_impact_ratio == pytest.approx(approved_in_b / 10)
    assert rows["village", "C"].adverse_impact_ratio == pytest.approx(0.9)
    assert rows["size_band", "10–30 mu"].borrowers == 30
    parser = _Fields()
    parser.feed(index_page(run, "en"))
    classes = {(r["data-grouping"], r["data-group"]): r.get("class", "") for r in parser.rows}
    assert ("flagged" in classes["village", "B"]) is flagged
    assert "flagged" not in classes["village", "A"] and "flagged" not in classes["village", "C"]


def test_ndvi_bytes_round_trip_to_their_step():
    ndvi = np.array([[-1.0, -0.5, 0.0], [0.3337, 1.0, np.nan]], dtype=np.float32)
    back = decode_ndvi(encode_ndvi(ndvi))
    assert np.isnan(back[1, 2]) and encode_ndvi(ndvi)[1, 2] == 0
    assert np.allclose(back[~np.isnan(ndvi)], ndvi[~np.isnan(ndvi)], atol=0.5 / 127 + 1e-6)
    assert encode_ndvi(np.array([-1.0, 1.0])).tolist() == [1, 255]


def test_each_chip_holds_the_tile_ndvi_at_the_plot_on_the_peak_date(run_folder):
    """Chip pixels against the tile read directly: rasterio, S2 L2A (DN + ADD_OFFSET) / 10000, SCL cloud classes."""
    import rasterio

    from agricredit.report.data import chip_array

    chips = pd.read_parquet(run_folder / "chips.parquet")
    plots = gpd.read_parquet(run_folder / "plots.parquet").set_index("plot_id")
    assert len(chips) >= 0.95 * plots["peak_date"].notna().sum()
    assert chips["ndvi"].map(len).max() <= 64 * 64  # a few KB a plot
    for row in chips.iloc[::40].to_dict("records"):
        assert str(plots.at[row["plot_id"], "peak_date"])[:10] == row["date"]
        ndvi, transform, _ = chip_array(row)
        with rasterio.open(SAMPLE / "season" / f"S2_L2A_SIM_{row['date'].replace('-', '')}.tif") as src:
            stride = round(transform.a / src.transform.a)
            red, nir, scl = src.read().astype(float)
            offset, scale = float(src.tags()["ADD_OFFSET"]), 1 / float(src.tags()["QUANTIFICATION_VALUE"])
            for r, c in ((0, 0), (ndvi.shape[0] // 2, ndvi.shape[1] // 2), (ndvi.shape[0] - 1, ndvi.shape[1] - 1)):
                line, col = src.index(*(transform * (c + 0.5 / stride, r + 0.5 / stride)))
                rho_red, rho_nir = (red[line, col] + offset) * scale, (nir[line, col] + offset) * scale
                cloudy = scl[line, col] in (0, 1, 3, 8, 9, 10)
                if cloudy:
                    assert math.isnan(ndvi[r, c])
                else:
                    assert ndvi[r, c] == pytest.approx((rho_nir - rho_red) / (rho_nir + rho_red), abs=0.5 / 127 + 1e-4)


def _missing(what: str) -> None:
    """CI (which installs them) fails without a system package; a developer's machine skips."""
    (pytest.fail if os.environ.get("CI") else pytest.skip)(f"{what} is missing (.ci/run installs it)")


def test_charts_find_the_cjk_font_debian_installs():
    if not charts.cjk_font_available():
        _missing(f"Debian's fonts-noto-cjk ({charts.CJK_FONT})")


# --------------------------------------------------------------------------- the browser

def _chromium():
    browser = find_chromium()
    if browser is None:
        _missing("headless Chromium (apt-get install chromium)")
    return browser


def _render(page: Path, png: Path, height: int = 1800) -> str:
    """Screenshot ``page``; return Chromium's log (console messages are logged as ``CONSOLE``)."""
    result = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
         "--v=0", f"--user-data-dir={png.parent / ('profile-' + png.stem)}", f"--window-size=1100,{height}",
         f"--screenshot={png}", page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert png.is_file(), result.stderr[-2000:]
    return result.stderr


def _console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def _share_near(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 18) -> float:
    return float((np.abs(image[..., :3].astype(int) - rgb).max(axis=-1) <= tolerance).mean())


def test_the_console_check_sees_a_script_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>", encoding="utf-8")
    assert _console_errors(_render(page, tmp_path / "broken.png", 300))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_borrower_page_renders_with_map_and_chart(pages, pages_zh, tmp_path, lang):
    folder = pages if lang == "en" else pages_zh
    png = tmp_path / f"{lang}.png"
    assert _console_errors(_render(folder / f"{SHOWN}.html", png)) == []
    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.std() > 20  # not blank
    top = image[: image.shape[0]]
    assert _share_near(top, (43, 131, 186)) > 1e-4  # the season chart's calendar curve (#2b83ba)
    assert _share_near(top, (26, 150, 65), 30) > 1e-4  # observations and high NDVI (RdYlGn greens)
    assert _share_near(top, (253, 174, 97), 30) > 1e-3  # bare soil around the plot on the NDVI chip (RdYlGn orange)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_index_renders_with_the_map_of_lights(pages, pages_zh, tmp_path, lang):
    folder = pages if lang == "en" else pages_zh
    png = tmp_path / f"index-{lang}.png"
    assert _console_errors(_render(folder / "index.html", png)) == []
    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.std() > 20
    assert _share_near(image, (26, 150, 65), 10) > 0.01  # green plots
    assert _share_near(image, (215, 25, 28), 10) > 1e-4  # red plots


def test_pdf_of_a_borrower_page(run_folder, tmp_path):
    _chromium()
    result = CliRunner().invoke(cli, ["report", str(run_folder), "-o", str(tmp_path / "pdf"), "--borrower", SHOWN,
                                      "--pdf"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pdf" / f"{SHOWN}.pdf").read_bytes()[:5] == b"%PDF-"


def test_without_a_pdf_engine_the_report_says_so(run_folder, tmp_path, monkeypatch):
    monkeypatch.setattr("agricredit.report.pdf.find_chromium", lambda: None)
    result = CliRunner().invoke(cli, ["report", str(run_folder), "-o", str(tmp_path / "nopdf"), "--borrower", SHOWN,
                                      "--pdf"])
    assert result.exit_code == 0, result.output
    assert "no PDF engine" in result.stderr
    assert not list((tmp_path / "nopdf").glob("*.pdf")) and (tmp_path / "nopdf" / f"{SHOWN}.html").is_file()


# --------------------------------------------------------------------------- personal data

def test_pages_hold_no_personal_data_unless_revealed(pages, run_folder, tmp_path, monkeypatch):
    people = read_borrowers(SAMPLE / "borrowers.csv")
    for page in pages.glob("*.html"):
        assert find_pii(page.read_text(encoding="utf-8"), people) == [], page.name
    monkeypatch.setenv("AGRICREDIT_PII_KEY", SECRET)
    result = CliRunner().invoke(cli, ["report", str(run_folder), "-o", str(tmp_path / "named"), "--borrower", SHOWN,
                                      "--reveal", "--borrowers", str(SAMPLE / "borrowers.csv")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "named").iterdir()) == [f"PERSONAL_DATA_{SHOWN}.html",
                                                                       "PERSONAL_DATA_index.html"]
    text = (tmp_path / "named" / f"PERSONAL_DATA_{SHOWN}.html").read_text(encoding="utf-8")
    assert 'class="personal"' in text and "CONTAINS PERSONAL DATA" in text
    name = people.set_index("borrower_id").at["B052", "name"]
    assert f'<span data-field="name">{name}</span>' in text


def test_reveal_refuses_another_key(run_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("AGRICREDIT_PII_KEY", "another-key-of-enough-bytes")
    result = CliRunner().invoke(cli, ["report", str(run_folder), "-o", str(tmp_path / "named"), "--borrower", SHOWN,
                                      "--reveal", "--borrowers", str(SAMPLE / "borrowers.csv")])
    assert result.exit_code != 0 and "not the key that made this run's pseudonyms" in result.output
    assert not (tmp_path / "named").exists()
