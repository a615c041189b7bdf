"""The bundled reference tables load, validate and agree with each other."""

from __future__ import annotations

import subprocess
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

import numpy as np
import pytest

from agricredit import seeds

DESIGN_CODES = {
    "NO_REGISTRY_RECORD", "OWNER_MISMATCH", "AREA_OVER_DECLARED", "AREA_DRAWN_MISMATCH",
    "AREA_UNIT_SUSPECTED", "NOT_CULTIVATED", "CROP_MISMATCH", "LOW_VIGOR", "CLOUD_INSUFFICIENT",
    "TOO_FEW_PIXELS", "DOUBLE_CLAIM", "GEOMETRY_REPAIRED", "GEOMETRY_INVALID", "CAP_APPLIED",
    "CAPACITY_LIMITED",
}


def test_crop_table_has_required_crops_and_cited_sources():
    crops = seeds.load_crops()
    assert {"maize", "rice", "wheat", "soybean"} <= set(crops)
    readme = (seeds.SEEDS_DIR / "README.md").read_text(encoding="utf-8")
    import csv

    with open(seeds.SEEDS_DIR / "crops.csv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            for column in ("yield_source", "price_source", "cost_source", "calendar_source"):
                for key in row[column].split(";"):
                    assert f"`{key}`" in readme, f"source {key} of {row['crop']} is not cited in seeds/README.md"


def test_templates_cross_half_amplitude_at_the_calendar_dates():
    for crop in seeds.load_crops().values():
        half = (crop.base_ndvi + crop.peak_ndvi) / 2
        for doy in (crop.greenup_doy, crop.senescence_doy):
            assert seeds.template_ndvi(crop.crop, doy) == pytest.approx(half, abs=0.04)
        assert seeds.template_ndvi(crop.crop, np.arange(365)).max() == pytest.approx(crop.peak_ndvi, abs=0.01)


def test_winter_wheat_season_crosses_the_new_year():
    wheat = seeds.load_crops()["wheat"]
    assert wheat.crosses_new_year
    start, end = wheat.season_window(2023)
    assert start.year == 2022 and end.year == 2023
    # Autumn-sown wheat is green over winter, unlike bare off-season cropland.
    assert seeds.template_ndvi("wheat", 1) > seeds.template_ndvi("maize", 1) + 0.1
    # Interpolation wraps smoothly across 31 December.
    assert abs(seeds.template_ndvi("wheat", 364.9) - seeds.template_ndvi("wheat", 0.1)) < 0.01


def test_templates_file_is_what_the_generator_writes(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "make_ndvi_templates.py"
    subprocess.run([sys.executable, str(script), str(tmp_path / "templates.csv")], check=True)
    assert (tmp_path / "templates.csv").read_bytes() == (seeds.SEEDS_DIR / "ndvi_templates.csv").read_bytes()


def test_reason_catalogue_covers_design_codes_in_two_languages():
    codes = seeds.load_reason_codes()
    assert DESIGN_CODES <= set(codes)
    for code in codes.values():
        assert code.en and code.zh and code.zh != code.en


def test_default_policy_parses_and_names_currency_and_unit():
    with open(seeds.DEFAULT_POLICY_PATH, "rb") as handle:
        policy = tomllib.load(handle)
    assert policy["policy"]["currency"] == "CNY"
    assert policy["policy"]["area_unit"] == "mu"
    assert 0 < policy["credit"]["advance_rate"] <= 1


# --------------------------------------------------------------------------- the region of a plot set


def _region_plot_by_plot(plots):
    """resolve_region's vote as a plain loop: each representative point votes for seeds.region_at's region."""
    points = plots.geometry.representative_point()
    votes = [seeds.region_at(p.x, p.y) for p in points if p is not None and not p.is_empty]
    counts = {r: votes.count(r) for r in seeds.load_regions() if r in votes}
    return max(counts, key=lambda r: (counts[r], -list(seeds.load_regions()).index(r)))


@pytest.mark.parametrize("seed", range(6))
def test_resolve_region_counts_votes_as_the_plot_by_plot_loop(seed):
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng(seed)
    regions = list(seeds.load_regions().values())
    corners = []
    for region in rng.choice(len(regions), size=40):  # points inside, on the edges and corners of region boxes
        lon_min, lat_min, lon_max, lat_max = regions[region].bounds
        corners.append((rng.choice([lon_min, lon_max, rng.uniform(lon_min, lon_max)]),
                        rng.choice([lat_min, lat_max, rng.uniform(lat_min, lat_max)])))
    corners += [(120.0, 39.0)] * int(rng.integers(0, 30))  # inside both ncp and northeast: the first of the file
    corners += [(2.35, 48.86)] * int(rng.integers(0, 5))  # in no region
    # a box's representative point is its centre: a plot centred on the corner; some plots without a geometry
    geometry = [shapely.box(x - 1e-4, y - 1e-4, x + 1e-4, y + 1e-4) for x, y in corners] + [None, shapely.Polygon()]
    plots = gpd.GeoDataFrame({"plot_id": [f"p{i}" for i in range(len(geometry))]}, geometry=geometry, crs="EPSG:4326")
    assert seeds.resolve_region("auto", plots) == _region_plot_by_plot(plots)
    utm = plots.dropna().loc[~plots.dropna().is_empty].to_crs(32650)  # any CRS: taken to WGS84 first
    assert seeds.resolve_region(None, utm) == _region_plot_by_plot(utm.to_crs(4326))


def test_resolve_region_tie_goes_to_the_first_region_of_the_file():
    import geopandas as gpd
    import shapely

    first, second = list(seeds.load_regions().values())[:2]
    centre = [((r.bounds[0] + r.bounds[2]) / 2, (r.bounds[1] + r.bounds[3]) / 2) for r in (second, first)]
    plots = gpd.GeoDataFrame(geometry=[shapely.Point(x, y).buffer(1e-4) for x, y in centre], crs="EPSG:4326")
    for _ in range(2):  # a one-to-one tie, whatever the order of the plots
        assert seeds.resolve_region("auto", plots) == first.region
        plots = plots.iloc[::-1]
