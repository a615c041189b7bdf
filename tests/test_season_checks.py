"""The season checks' small parts, each against an answer worked out here (issue 16 §5, mutation testing).

The crop model's ``CROP_MISMATCH`` on hand-written probabilities (exact in binary, so the margin is
tested at, inside and outside), the region vote on plots placed in the boxes of ``seeds/regions.csv``,
and the season table's columns and geometry.
"""

from __future__ import annotations

import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import box

from agricredit.errors import InputError
from agricredit.season import (SEASON_LEAD_COLUMNS, Declared, SeasonResult, _model_checks, resolve_region,
                               season_plot_table)

# ----------------------------------------------------------------------------- the crop model's CROP_MISMATCH

#: Probabilities exact in binary: best maize (score 1 - 0.625 = 0.375); wheat scores 0.875, soybean 0.75.
PROBABILITIES = pd.Series({"maize": 0.625, "soybean": 0.25, "wheat": 0.125})


def test_model_check_reports_the_best_crop_and_the_worst_declared_one():
    row = {}
    flags = _model_checks(row, PROBABILITIES, [Declared("soybean"), Declared("wheat")], 0.25)
    assert row == {"p_maize": 0.625, "p_soybean": 0.25, "p_wheat": 0.125, "best_crop": "maize",
                   "best_explanation": "maize", "best_score": 0.375, "declared_score": 0.875}
    assert [(f.code, f.figures) for f in flags] == [("CROP_MISMATCH", {
        "declared_crop": "wheat", "best_crop": "maize", "declared_score": 0.875, "best_score": 0.375, "margin": 0.25,
        "method": "model"})]


def test_model_check_takes_the_least_probable_declared_crop_whatever_the_order():
    for declared in ([Declared("wheat"), Declared("soybean")], [Declared("soybean"), Declared("wheat")]):
        row = {}
        _model_checks(row, PROBABILITIES, declared, 0.9)
        assert row["declared_score"] == 0.875


@pytest.mark.parametrize("margin, flagged", [(0.4375, True), (0.5, False), (0.5625, False)])
def test_model_check_margin_at_and_either_side(margin, flagged):
    # wheat declared: 0.875 - 0.375 = 0.5 exactly; flagged only when the gap is strictly above the margin
    assert bool(_model_checks({}, PROBABILITIES, [Declared("wheat")], margin)) is flagged


def test_model_check_does_not_flag_the_most_probable_crop():
    row = {}
    assert _model_checks(row, PROBABILITIES, [Declared("maize")], 0.0) == []
    assert row["declared_score"] == row["best_score"] == 0.375


# ----------------------------------------------------------------------------- the region


def _plots(*corners):
    return gpd.GeoDataFrame({"plot_id": [f"p{i}" for i in range(len(corners))]},
                            geometry=[box(x, y, x + 0.001, y + 0.001) if x is not None else None for x, y in corners],
                            crs="EPSG:4326")


NCP, YANGTZE, DELMARVA, PARIS = (115.0, 36.0), (114.3, 30.6), (-75.8, 37.6), (2.35, 48.86)


def test_the_region_holding_most_plots_wins_wherever_it_is_in_the_file():
    assert resolve_region("auto", _plots(DELMARVA, NCP, DELMARVA)) == "delmarva"
    assert resolve_region(None, _plots(YANGTZE, YANGTZE, NCP, PARIS)) == "yangtze"


def test_a_tie_goes_to_the_first_region_of_the_file():
    assert resolve_region("auto", _plots(YANGTZE, NCP)) == "ncp"
    assert resolve_region("auto", _plots(DELMARVA, YANGTZE)) == "yangtze"


def test_plots_without_a_geometry_do_not_vote():
    empty = _plots(DELMARVA, NCP, DELMARVA)
    empty.loc[1, "geometry"] = shapely.Polygon()
    assert resolve_region("auto", empty) == "delmarva"
    assert resolve_region("auto", _plots((None, None), NCP)) == "ncp"


def test_no_region_and_no_plots_is_one_clear_error():
    message = "no region named and no plots to locate one (set satellite.region or options.region)"
    with pytest.raises(InputError, match=re.escape(message)):
        resolve_region(None)
    with pytest.raises(InputError, match=re.escape(message)):
        resolve_region("auto", _plots())


def test_region_errors_name_the_choices():
    with pytest.raises(InputError, match=re.escape("unknown region 'mars' (known: ncp, northeast, yangtze, delmarva)")):
        resolve_region("mars")
    with pytest.raises(InputError, match=re.escape(
            "the plots lie outside every region of seeds/regions.csv; name the region "
            "(policy satellite.region or the case's options.region)")):
        resolve_region("auto", _plots(PARIS))


# ----------------------------------------------------------------------------- the season table


def test_season_table_puts_the_lead_columns_first_with_each_plots_wgs84_outline():
    table = pd.DataFrame({"rmse_maize": [0.05, 0.07], "plot_id": ["b", "a"], "flags": ["", "LOW_VIGOR"],
                          "declared_crop": ["maize", "wheat"]})
    result = SeasonResult(plots=table, flags={}, fits={}, series={})
    outlines = gpd.GeoDataFrame({"plot_id": ["a", "b", "c"]},
                                geometry=[box(500000, 4000000, 500100, 4000100), box(500200, 4000000, 500300, 4000100),
                                          box(0, 0, 1, 1)], crs="EPSG:32650")
    season = season_plot_table(result, outlines)
    assert list(season.columns) == ["plot_id", "declared_crop", "flags", "rmse_maize", "geometry"]
    assert [c for c in SEASON_LEAD_COLUMNS if c in season] == ["plot_id", "declared_crop", "flags"]
    assert list(season["plot_id"]) == ["b", "a"] and season.crs.to_epsg() == 4326
    wgs = outlines.to_crs("EPSG:4326").set_index("plot_id").geometry
    assert season.geometry.iloc[0].equals(wgs["b"]) and season.geometry.iloc[1].equals(wgs["a"])
    assert np.isclose(season.geometry.iloc[1].bounds[0], 117.0, atol=0.01)  # x 500 000 of zone 50 is 117° E


def test_season_table_leaves_a_plot_without_outline_empty():
    result = SeasonResult(plots=pd.DataFrame({"plot_id": ["a", "z"]}), flags={}, fits={}, series={})
    season = season_plot_table(result, _plots(NCP).assign(plot_id=["a"]))
    assert season.geometry.iloc[0] is not None and season.geometry.iloc[1] is None
