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
