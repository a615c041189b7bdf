"""The season checks' small parts, each against an answer worked out here (issue 16 §5, mutation testing).

The crop model's ``CROP_MISMATCH`` on hand-written probabilities (exact in binary, so the margin is
tested at, inside and outside), the region vote on plots placed in the boxes of ``seeds/regions.csv``,
and the season table's columns and geometry.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import box

from agricredit.cropfit import fit_explanations
from agricredit.errors import InputError, SchemaError
from agricredit.policy import load_policy
from agricredit.season import (SEASON_LEAD_COLUMNS, Declared, Flag, SeasonResult, _covers_every_sowing,
                               _cropped_evidence, _cultivation_flag, _fit_plots, _iso, _json_default, _model_checks,
                               assess_season, fit_observations, peer_vigor, resolve_region, season_options,
                               season_plot_table)
from agricredit.templatecheck import _declared_of, _template_checks, _window_mask
from agricredit.series import PlotSeries

POLICY = load_policy(None)

# ----------------------------------------------------------------------------- the crop model's CROP_MISMATCH

#: Probabilities exact in binary: best maize (score 1 - 0.625 = 0.375); wheat scores 0.875, soybean 0.75.
PROBABILITIES = pd.Series({"maize": 0.625, "soybean": 0.25, "wheat": 0.125})


def _fit_plot(s, region, fit_options):
    """One plot's fits and observations used, through the season's batched fit (:func:`agricredit.season._fit_plots`)."""
    fits, used = _fit_plots({"p": s}, region, fit_options)["p"]
    for fit in fits:  # each fit's NDVI on the days fitted is its curve there, to the bit
        np.testing.assert_array_equal(fit.fitted, fit.curve(s.dates[used]))
    return fits, used


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
    message = "^no region named and no plots to locate one \\(set satellite.region or options.region\\)$"
    with pytest.raises(InputError, match=message):
        resolve_region(None)
    with pytest.raises(InputError, match=message):
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


# ----------------------------------------------------------------------------- dates, windows and sowing coverage


def _day(text):
    return np.datetime64(text, "D")


@pytest.mark.parametrize("value, expected", [
    (None, None), (np.nan, None), (pd.NaT, None), ("2023-05-06T13:45", "2023-05-06"),
    (np.datetime64("2023-05-06T23:59:59"), "2023-05-06"), (pd.Timestamp("2022-12-31 08:00"), "2022-12-31"),
])
def test_iso_dates_are_days_and_a_missing_one_is_none(value, expected):
    assert _iso(value) == expected


def test_window_mask_includes_both_ends_of_each_window():
    dates = np.array(["2023-03-31", "2023-04-01", "2023-04-30", "2023-05-01", "2023-06-09", "2023-06-10",
                      "2023-06-11"], dtype="datetime64[D]")
    mask = _window_mask(dates, [("2023-04-01", "2023-04-30"), (_day("2023-06-10"), _day("2023-06-10"))])
    assert mask.tolist() == [False, True, True, False, False, True, False]
    assert not _window_mask(dates, []).any()


#: A green period whose inner part (one logistic width, STEEPNESS_DAYS = 8, inside each end) is days 100 … 120.
START, END = _day("2023-01-01") + 92, _day("2023-01-01") + 128


@pytest.mark.parametrize("shift, covered", [(9, True), (10, True), (11, False)])
def test_one_observation_in_the_middle_covers_sowing_shifts_up_to_half_the_period(shift, covered):
    # seen on day 110: the inner period [100, 120] moved by s still holds day 110 for every s in [-10, 10]
    assert _covers_every_sowing(np.array([_day("2023-01-01") + 110]), [(START, END)], shift) is covered


@pytest.mark.parametrize("second, covered", [(121, True), (122, False)])
def test_two_observations_must_leave_no_whole_day_of_shift_unseen(second, covered):
    # day 100 sees shifts [-20, 0]; day d sees [d - 120, d - 100]: 121 → [1, 21] adjoins, 122 → [2, 22] leaves 1
    seen = np.array([_day("2023-01-01") + second, _day("2023-01-01") + 100])
    assert _covers_every_sowing(seen, [(START, END)], 20) is covered


def test_every_green_period_must_be_covered():
    seen = np.array([_day("2023-01-01") + 110])
    later = (START + 200, END + 200)
    assert _covers_every_sowing(seen, [(START, END)], 5) and not _covers_every_sowing(seen, [(START, END), later], 5)
    assert _covers_every_sowing(np.array([], dtype="datetime64[D]"), [], 5)  # nothing declared: nothing to cover
    assert not _covers_every_sowing(np.array([], dtype="datetime64[D]"), [(START, END)], 0)


# ----------------------------------------------------------------------------- cropped evidence and cultivation


def _series(ndvi, *, cropped=None, valid=None, masked=None, start="2023-05-01", step=10):
    n = len(ndvi)
    return PlotSeries("p", _day(start) + step * np.arange(n), np.asarray(ndvi, float),
                      np.asarray(cropped if cropped is not None else np.zeros(n), float), n, 20.0,
                      np.asarray(valid if valid is not None else np.ones(n), float), np.ones(n),
                      np.asarray(masked if masked is not None else np.ones(n, bool), bool), 1.0)


def test_cropped_share_is_measured_on_the_area_seen_at_the_windows_best_observation():
    # drawn 10 mu; shares 2/(0.5·10) = 0.4, 6/(0.8·10) = 0.75, 6/(1·10) = 0.6, 9/(1·10) = 0.9 (outside the window)
    s = _series([0.3, 0.7, 0.6, 0.8], cropped=[2.0, 6.0, 6.0, 9.0], valid=[0.5, 0.8, 1.0, 1.0])
    window = np.array([True, True, True, False])
    evidence = _cropped_evidence(s, 10.0, 0.45, window)
    np.testing.assert_allclose(evidence["share"], [0.4, 0.75, 0.6, 0.9])
    assert (evidence["cropped_share"], evidence["cropped_measured_share"]) == (0.75, 0.8)
    assert (evidence["cropped_date"], evidence["cropped_area_mu_at_peak"]) == ("2023-05-11", 7.5)


def test_among_equal_shares_the_clearest_observation_is_reported():
    s = _series([0.7, 0.7, 0.7], cropped=[3.2, 4.0, 3.6], valid=[0.8, 1.0, 0.9])  # all 0.4 of the area seen
    evidence = _cropped_evidence(s, 10.0, 0.45, np.ones(3, bool))
    assert (evidence["cropped_measured_share"], evidence["cropped_date"]) == (1.0, "2023-05-11")


def test_cropped_share_is_clipped_to_the_unit_interval_and_nan_is_none_seen():
    s = _series([0.7, 0.7, 0.7], cropped=[12.0, np.nan, -1.0], valid=[1.0, 1.0, 1.0])
    np.testing.assert_array_equal(_cropped_evidence(s, 10.0, 0.45, np.ones(3, bool))["share"], [1.0, 0.0, 0.0])


def test_a_plot_under_one_mu_is_measured_on_its_area():
    s = _series([0.7, 0.7], cropped=[0.2, 0.5], valid=[0.5, 1.0])  # 0.2 / (0.5 · 0.5) = 0.8; 0.5 / 0.5 = 1.0
    np.testing.assert_allclose(_cropped_evidence(s, 0.5, 0.45, np.ones(2, bool))["share"], [0.8, 1.0])


@pytest.mark.parametrize("drawn", [np.nan, 0.0])
def test_without_a_drawn_area_a_plot_is_cropped_where_ndvi_reaches_the_threshold(drawn):
    s = _series([0.44, 0.45, 0.46], cropped=[5.0, 5.0, 5.0])
    evidence = _cropped_evidence(s, drawn, 0.45, np.ones(3, bool))
    np.testing.assert_array_equal(evidence["share"], [0.0, 1.0, 1.0])
    assert evidence["cropped_date"] == "2023-05-11"
    at_peak = evidence["cropped_area_mu_at_peak"]
    assert np.isnan(at_peak) if np.isnan(drawn) else at_peak == 0.0


def test_no_observation_in_the_window_leaves_the_evidence_empty():
    evidence = _cropped_evidence(_series([0.8, 0.8], cropped=[9.0, 9.0]), 10.0, 0.45, np.zeros(2, bool))
    assert evidence["cropped_date"] is None
    assert all(np.isnan(evidence[k]) for k in ("cropped_share", "cropped_measured_share", "cropped_area_mu_at_peak"))


def _cultivation(s, window=None, share_min=0.5, amplitude_min=0.2, threshold=0.45, required=3, partial=False,
                 covered=True, drawn=10.0):
    window = np.ones(len(s.dates), bool) if window is None else window
    evidence = _cropped_evidence(s, drawn, threshold, window)
    return _cultivation_flag(evidence, threshold=threshold, cultivated_min_share=share_min,
                             min_season_amplitude=amplitude_min, min_observations=required, partial=partial,
                             covered=covered)


#: A crop greening from 0.2 to 0.8 with a cropped share of the area seen peaking at 0.5 (5 of 10 mu).
GREEN = dict(ndvi=[0.2, 0.5, 0.8, 0.6], cropped=[0.0, 2.0, 5.0, 3.0])


@pytest.mark.parametrize("share_min, code", [(0.49, None), (0.5, None), (0.51, "NOT_CULTIVATED")])
def test_cultivated_min_share_at_and_either_side(share_min, code):
    flag = _cultivation(_series(**GREEN), share_min=share_min)
    assert (flag.code if flag else None) == code


@pytest.mark.parametrize("amplitude_min, code", [(0.59, None), (0.6, None), (0.61, "NOT_CULTIVATED_UNCONFIRMED")])
def test_min_season_amplitude_at_and_either_side(amplitude_min, code):
    # amplitude 0.85 - 0.25 = 0.6; the plot is green (cropped share 0.5, peak 0.85 above the threshold), so a flat
    # season alone is a crop seen near its peak or a permanent cover: a person looks, the limit is not lowered.
    flag = _cultivation(_series(ndvi=[0.25, 0.5, 0.85, 0.6], cropped=GREEN["cropped"]), amplitude_min=amplitude_min)
    assert (flag.code if flag else None) == code


def test_a_flat_season_below_the_threshold_is_clearly_not_cultivated():
    # The same flat-season finding on a plot that is never green (peak 0.3 under the 0.45 threshold): clear evidence.
    flag = _cultivation(_series(ndvi=[0.25, 0.3, 0.28, 0.27], cropped=[0.0, 0.0, 0.0, 0.0]), amplitude_min=0.2)
    assert flag.code == "NOT_CULTIVATED"


@pytest.mark.parametrize("threshold, code", [(0.79, None), (0.8, None), (0.81, "NOT_CULTIVATED")])
def test_a_peak_under_the_cropped_threshold_is_not_cultivated(threshold, code):
    flag = _cultivation(_series(**GREEN), threshold=threshold, amplitude_min=0.0)
    assert (flag.code if flag else None) == code


def test_not_cultivated_carries_its_figures():
    s = _series([0.2, 0.25, 0.3, 0.22], cropped=[0.0, 1.0, 2.0, 1.0], masked=[True, False, True, True])
    flag = _cultivation(s, window=np.array([True, True, True, False]), required=2)
    assert flag.code == "NOT_CULTIVATED"
    assert flag.figures == {
        "clear_in_window": 2, "usable_in_window": 3, "required": 2, "max_cropped_share": 0.2,
        "cultivated_min_share": 0.5, "peak_ndvi": 0.3, "amplitude": pytest.approx(0.1), "min_season_amplitude": 0.2,
        "cropped_ndvi_threshold": 0.45, "cropped_measured_share": 1.0, "partial_coverage": False,
        "every_sowing_date_seen": True}


@pytest.mark.parametrize("required, partial, covered, code", [
    (2, False, True, "NOT_CULTIVATED"), (3, False, True, "NOT_CULTIVATED_UNCONFIRMED"),
    (2, True, True, "NOT_CULTIVATED_UNCONFIRMED"), (2, False, False, "NOT_CULTIVATED_UNCONFIRMED"),
])
def test_not_cultivated_is_confirmed_only_on_enough_clear_observations_of_a_whole_plot(required, partial, covered,
                                                                                      code):
    s = _series([0.2, 0.25, 0.3], masked=[True, False, True])  # two cloud-masked observations
    assert _cultivation(s, required=required, partial=partial, covered=covered).code == code


def test_no_observation_in_the_window_is_no_cultivation_finding():
    assert _cultivation(_series([0.2, 0.2, 0.2]), window=np.zeros(3, bool)) is None


# ----------------------------------------------------------------------------- peer vigor

#: Six maize peers, peaks exact in binary: median 0.75; the 0.5 plot is 0.25 below it, at percentile 0
#: (no other peer lower), the 0.625 one at (1 + 1) / 2 / 5 = 20 %.
PEAKS = [0.5, 0.625, 0.75, 0.75, 0.875, 0.875]


def _peers(peaks=PEAKS, crop="maize", **columns):
    n = len(peaks)
    return pd.DataFrame({"plot_id": [f"P{i}" for i in range(n)], "declared_crop": [crop] * n,
                         "vigor_peak_ndvi": peaks, "pixel_count": 50.0, "n_clear": 5, **columns})


def _vigor(plots, **options):
    flags = {p: [] for p in plots["plot_id"]}
    out = peer_vigor(plots, flags, **{"low_vigor_percentile": 10.0, "low_vigor_min_gap": 0.25, "vigor_factor_min": 0.7,
                                      "vigor_factor_max": 1.0, "min_peers": 5, **options})
    return out, {p: [f.code for f in fs] for p, fs in flags.items()}


def test_a_low_vigor_plot_carries_its_figures_and_is_marked_down_to_the_floor():
    flags = {p: [] for p in _peers()["plot_id"]}
    out = peer_vigor(_peers(), flags, low_vigor_percentile=10.0, low_vigor_min_gap=0.25, vigor_factor_min=0.7,
                     vigor_factor_max=1.0, min_peers=5)
    assert [(f.code, f.figures) for f in flags["P0"]] == [("LOW_VIGOR", {
        "crop": "maize", "vigor_peak_ndvi": 0.5, "peer_median_peak": 0.75, "gap": 0.25, "peak_percentile": 0.0,
        "low_vigor_percentile": 10.0, "low_vigor_min_gap": 0.25, "peer_count": 6})]
    assert all(flags[p] == [] for p in flags if p != "P0")
    assert out["vigor_factor"].tolist() == [0.7, 1.0, 1.0, 1.0, 1.0, 1.0]  # 0.5 / 0.75 = 0.67 → 0.7; others ≤ 1.0
    assert out["peer_count"].tolist() == [6] * 6 and out["peer_median_peak"].tolist() == [0.75] * 6
    assert out["peak_percentile"].tolist() == [0.0, 20.0, 50.0, 50.0, 90.0, 90.0]


def test_a_low_vigor_factor_above_the_floor_is_peak_over_median():
    out, _ = _vigor(_peers(), vigor_factor_min=0.5)
    assert out["vigor_factor"].iloc[0] == pytest.approx(0.5 / 0.75)


def test_greener_plots_are_marked_up_to_vigor_factor_max_only():
    out, _ = _vigor(_peers(), vigor_factor_max=1.1)
    assert out["vigor_factor"].tolist()[2:] == [1.0, 1.0, 1.1, 1.1]  # 0.875 / 0.75 = 1.167 → 1.1
    out, _ = _vigor(_peers(), vigor_factor_max=1.2)
    assert out["vigor_factor"].iloc[4] == pytest.approx(0.875 / 0.75) and out["vigor_factor"].iloc[1] == 1.0


@pytest.mark.parametrize("gap, flagged", [(0.2, True), (0.25, True), (0.3, False)])
def test_low_vigor_min_gap_at_and_either_side(gap, flagged):
    _, flags = _vigor(_peers(), low_vigor_min_gap=gap)
    assert (flags["P0"] == ["LOW_VIGOR"]) is flagged


@pytest.mark.parametrize("percentile, flagged", [(19.0, False), (20.0, False), (21.0, True)])
def test_low_vigor_percentile_at_and_either_side(percentile, flagged):
    _, flags = _vigor(_peers(), low_vigor_percentile=percentile, low_vigor_min_gap=0.125)  # P1: 20 %, 0.125 below
    assert (flags["P1"] == ["LOW_VIGOR"]) is flagged


@pytest.mark.parametrize("min_peers, compared", [(5, True), (6, True), (7, False)])
def test_min_peers_at_and_either_side(min_peers, compared):
    out, flags = _vigor(_peers(), min_peers=min_peers)
    assert (flags["P0"] == ["LOW_VIGOR"]) is compared
    assert out["peer_count"].iloc[0] == (6 if compared else 0)
    assert bool(np.isnan(out["peak_percentile"].iloc[0])) is bool(np.isnan(out["peer_median_peak"].iloc[0])) is (
        not compared)
    assert out["vigor_factor"].iloc[0] == (0.7 if compared else 1.0)


@pytest.mark.parametrize("code", ["NOT_CULTIVATED", "NOT_CULTIVATED_UNCONFIRMED", "CLOUD_INSUFFICIENT", "NO_COVERAGE",
                                  "CROP_MISMATCH", "SEASON_UNRECOGNISED", "PARTIAL_COVERAGE"])
def test_a_plot_with_a_failed_check_is_no_peer(code):
    plots = _peers(PEAKS + [0.9])
    flags = {p: [] for p in plots["plot_id"]}
    flags["P6"] = [Flag(code)]
    out = peer_vigor(plots, flags, low_vigor_min_gap=0.25, min_peers=5)
    assert out["peer_count"].tolist() == [6] * 6 + [0] and out["peer_median_peak"].iloc[0] == 0.75
    assert np.isnan(out["peak_percentile"].iloc[6]) and out["vigor_factor"].iloc[6] == 1.0
    assert [f.code for f in flags["P6"]] == [code]


def test_a_low_vigor_or_info_finding_keeps_a_plot_a_peer():
    plots = _peers(PEAKS + [0.9])
    flags = {p: [] for p in plots["plot_id"]}
    flags["P6"] = [Flag("TOO_FEW_PIXELS")]
    assert peer_vigor(plots, flags, min_peers=5)["peer_count"].iloc[6] == 7


@pytest.mark.parametrize("column, value, peer", [("pixel_count", 3.99, False), ("pixel_count", 4.0, True),
                                                 ("n_clear", 2, False), ("n_clear", 3, True)])
def test_a_peer_needs_enough_pixels_and_clear_observations(column, value, peer):
    plots = _peers(PEAKS + [0.9])
    plots.loc[6, column] = value
    out = peer_vigor(plots, {p: [] for p in plots["plot_id"]}, min_peers=5, min_pixel_count=4.0,
                     min_clear_observations=3)
    assert out["peer_count"].iloc[6] == (7 if peer else 0)


def test_peers_without_pixel_or_clear_counts_are_all_compared():
    plots = _peers().drop(columns=["pixel_count", "n_clear"])
    out = peer_vigor(plots, {p: [] for p in plots["plot_id"]}, min_peers=5, min_pixel_count=4.0,
                     min_clear_observations=3)
    assert out["peer_count"].tolist() == [6] * 6


def test_peer_vigor_filters_no_peer_by_pixels_or_clear_observations_unless_asked():
    plots = _peers(PEAKS, pixel_count=0.5, n_clear=0)
    assert peer_vigor(plots, {p: [] for p in plots["plot_id"]})["peer_count"].tolist() == [6] * 6


def test_the_defaults_are_the_shipped_policy():
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(assess_season).parameters.items()
                if p.default is not inspect.Parameter.empty}
    shipped = {k: v for k, v in season_options(POLICY).items() if k != "region"}
    assert {k: defaults[k] for k in shipped} == shipped
    assert (defaults["smoothing"], defaults["stat"], defaults["crop_model"]) == ("none", "ndvi_mean", None)
    vigor = {name: p.default for name, p in inspect.signature(peer_vigor).parameters.items()
             if p.default is not inspect.Parameter.empty}
    assert vigor == {"low_vigor_percentile": 10.0, "low_vigor_min_gap": 0.1, "vigor_factor_min": 0.7,
                     "vigor_factor_max": 1.0, "min_peers": 5, "min_pixel_count": 0.0, "min_clear_observations": 0}


@pytest.mark.parametrize("crop", ["", None])
def test_a_plot_without_a_declared_crop_is_no_peer(crop):
    plots = _peers(PEAKS + [0.9])
    plots["declared_crop"] = plots["declared_crop"].astype(object)
    plots.loc[6, "declared_crop"] = crop
    assert _vigor(plots)[0]["peer_count"].tolist() == [6] * 6 + [0]


def test_a_plot_without_a_peak_is_no_peer():
    assert _vigor(_peers(PEAKS + [np.nan]))[0]["peer_count"].tolist() == [6] * 6 + [0]


def test_each_crop_is_compared_with_its_own_peers():
    plots = pd.concat([_peers(), _peers([0.25, 0.375, 0.5, 0.5, 0.625, 0.625], crop="wheat")], ignore_index=True)
    plots["plot_id"] = [f"P{i}" for i in range(12)]
    out, flags = _vigor(plots)
    assert out["peer_median_peak"].tolist() == [0.75] * 6 + [0.5] * 6
    assert [p for p, codes in flags.items() if codes] == ["P0", "P6"]


# ----------------------------------------------------------------------------- one plot through assess_season

#: Northeast China, single-season maize: green-up 06-10, senescence 09-01 (seeds/calendars.csv); its window is
#: that period widened by max_sowing_shift_days = 30: 2023-05-11 … 2023-10-01.
MAIZE_WINDOW = ("2023-05-11", "2023-10-01")


def _maize_ndvi(days):
    """A maize-like canopy: 0.2 bare, rising around 06-25 and falling around 09-10 to a 0.85 peak."""
    t = (days - np.datetime64("2023-01-01")).astype(float)
    return 0.2 + 0.65 / (1 + np.exp(-(t - 176) / 8)) / (1 + np.exp((t - 253) / 8))


def _table(plot_id="p", *, every=8, start="2023-04-01", end="2023-11-30", valid=1.0, covered=1.0, masked=True,
           pixels=40.0, drawn=10.0, ndvi=None):
    days = np.arange(np.datetime64(start), np.datetime64(end) + 1, every)
    values = _maize_ndvi(days) if ndvi is None else np.asarray(ndvi(days), float)
    share = np.clip((values - 0.2) / 0.5, 0.0, 1.0)
    return pd.DataFrame({"plot_id": plot_id, "date": days, "ndvi_mean": values, "valid_frac": valid,
                         "cropped_area_mu": share * drawn * valid, "pixel_count": pixels, "covered_frac": covered,
                         "cloud_masked": masked})


def _season(table, declared=None, drawn=None, **options):
    declared = {"p": "maize"} if declared is None else declared
    drawn = {"p": 10.0} if drawn is None else drawn
    return assess_season(table, declared, drawn, **{**season_options(POLICY), "region": "northeast", **options})


def _row(result, plot_id="p"):
    return result.plots.set_index("plot_id").loc[plot_id]


def test_a_grown_maize_plot_is_described_and_not_flagged():
    table = _table()
    table.loc[3, "valid_frac"] = 0.5  # one clouded observation: not used
    table.loc[5, "cloud_masked"] = False
    result = _season(table)
    row = _row(result)
    assert (row["flags"], row.declared_crop, row.region) == ("", "maize", "northeast")
    assert (row.n_acquisitions, row.n_valid, row.n_clear) == (31, 30, 29)
    assert (row.pixel_count, row.max_covered_frac) == (40.0, 1.0)
    window = (np.datetime64(MAIZE_WINDOW[0]) <= table["date"]) & (table["date"] <= np.datetime64(MAIZE_WINDOW[1]))
    assert (row.window_start, row.window_end, row.n_valid_in_window) == (*MAIZE_WINDOW, int(window.sum()))
    assert row.drawn_area_mu == 10.0 and row.crop_ranking == ";".join(f.name for f in result.fits["p"])
    best = result.fits["p"][0]  # the row reports the best of the ranked explanations
    assert (row.best_crop, row.best_explanation, row.best_score, row.best_rmse) == (best.label, best.name, best.score,
                                                                                   best.rmse)
    assert row.cropped_share == 1.0 and row.cropped_area_mu_at_peak == 10.0 and row.cropped_measured_share == 1.0
    assert row.chosen_windows.startswith("maize:2023-") and row.declared_explanation == "maize"
    assert row.fitted_peak_ndvi == pytest.approx(0.84, abs=0.05) and row.vigor_peak_ndvi == row.fitted_peak_ndvi
    assert row.peak_date is not None and "2023-07-10" <= row.peak_date <= "2023-08-25"
    assert json.loads(row.flag_figures) == {} and result.flags["p"] == []
    assert result.period == (np.datetime64("2023-04-01"), np.datetime64("2023-11-27"))
    assert list(result.series["p"].dates) == list(table["date"].drop(3).to_numpy().astype("datetime64[D]"))


def test_a_plot_without_any_tile_has_no_coverage():
    result = _season(_table(), {"p": "maize", "ghost": "maize"}, plot_ids=["p", "ghost"])
    row = _row(result, "ghost")
    assert (row["flags"], row.n_acquisitions, row.n_valid) == ("NO_COVERAGE", 0, 0)
    assert json.loads(row.flag_figures) == {"NO_COVERAGE": {"acquisitions": 0}}
    assert result.fits["ghost"] == []


@pytest.mark.parametrize("pixels, checked", [(3.9, False), (4.0, True)])
def test_a_plot_too_small_for_the_sensor_is_left_to_verify(pixels, checked):
    bare = _table(ndvi=lambda d: np.full(len(d), 0.2), pixels=pixels)
    row = _row(_season(bare))
    assert row["flags"] == ("NOT_CULTIVATED" if checked else "")
    assert (row.window_start if checked else None) == (MAIZE_WINDOW[0] if checked else None)


@pytest.mark.parametrize("covered, partial", [(0.94, True), (0.95, False)])
def test_a_plot_partly_outside_the_imagery_at_the_min_covered_fraction(covered, partial):
    row = _row(_season(_table(covered=covered, valid=covered)))
    assert ("PARTIAL_COVERAGE" in row["flags"].split(";")) is partial
    if partial:
        assert json.loads(row.flag_figures)["PARTIAL_COVERAGE"] == {"max_covered_frac": 0.94,
                                                                    "min_covered_fraction": 0.95}


@pytest.mark.parametrize("kept, code", [(["2023-05-19", "2023-08-15"], "CLOUD_INSUFFICIENT"),
                                       (["2023-05-19", "2023-07-14", "2023-08-15"], "")])
def test_too_few_observations_in_the_crops_window_is_a_cloud_problem(kept, code):
    table = _table()
    inside = (table["date"] >= np.datetime64(MAIZE_WINDOW[0])) & (table["date"] <= np.datetime64(MAIZE_WINDOW[1]))
    table.loc[inside & ~table["date"].isin(pd.to_datetime(kept)), "valid_frac"] = 0.1  # the rest of the window clouded
    row = _row(_season(table))
    assert row["flags"] == code and row.n_valid_in_window == len(kept)
    if code:
        assert json.loads(row.flag_figures)["CLOUD_INSUFFICIENT"] == {
            "crop": "maize", "valid_in_window": 2, "required": 3, "window_start": MAIZE_WINDOW[0],
            "window_end": MAIZE_WINDOW[1], "acquisitions": 31}


def test_a_plot_without_a_declaration_is_judged_on_the_whole_season():
    row = _row(_season(_table(), {}))
    assert (row.window_start, row.window_end, row.n_valid_in_window) == ("2023-04-01", "2023-11-27", 31)
    assert row.declared_crop is None and row.declared_explanation is None and row["flags"] == ""
    assert np.isnan(row.fitted_peak_ndvi) and row.vigor_peak_ndvi == row.peak_ndvi


def test_a_bare_plot_declared_as_maize_is_not_cultivated_with_its_figures():
    row = _row(_season(_table(ndvi=lambda d: np.full(len(d), 0.2))))
    assert row["flags"] == "NOT_CULTIVATED"
    figures = json.loads(row.flag_figures)["NOT_CULTIVATED"]
    assert figures["max_cropped_share"] == 0.0 and figures["peak_ndvi"] == 0.2 and figures["amplitude"] == 0.0
    assert figures["every_sowing_date_seen"] is True and figures["partial_coverage"] is False
    assert figures["required"] == 3 and figures["cropped_ndvi_threshold"] == 0.45


def test_unknown_region_crop_or_empty_table_is_one_clear_error():
    with pytest.raises(InputError, match=re.escape("no crop calendar for region 'mars'")):
        _season(_table(), region="mars")
    with pytest.raises(SchemaError, match=re.escape("declared crops ['cotton'] are not in the crop table")):
        _season(_table(), {"p": "cotton"})
    with pytest.raises(InputError, match=re.escape("the long table has no observations (no tile covers any plot in "
                                                   "the period)") + "$"):
        _season(_table().iloc[:0])


@pytest.mark.parametrize("smoothing", ["whittaker", "savgol"])
def test_phenology_is_read_from_the_smoothed_curve_when_asked(smoothing):
    table = _table()
    spike = table.index[table["date"] == np.datetime64("2023-06-04")][0]
    table.loc[spike, "ndvi_mean"] = 0.95  # one outlier above the 0.84 canopy
    assert _row(_season(table)).peak_ndvi == 0.95
    smoothed = _row(_season(table, smoothing=smoothing))
    assert smoothed.peak_ndvi < 0.9 and smoothed.peak_date > "2023-06-04"


def test_season_options_are_the_policys_satellite_section_with_overrides():
    expected = {"min_valid_fraction": 0.6, "min_observations_in_window": 3, "min_pixel_count": 4.0,
                "cultivated_min_share": 0.5, "max_sowing_shift_days": 30, "crop_mismatch_margin": 0.06,
                "low_vigor_percentile": 10.0, "low_vigor_min_gap": 0.1, "vigor_factor_min": 0.7,
                "vigor_factor_max": 1.0,
                "min_season_amplitude": 0.2, "min_peers": 5, "shift_penalty": 0.05, "crop_model_margin": 0.5,
                "region": "auto", "max_fit_rmse": 0.1, "min_template_scale": 0.4, "min_covered_fraction": 0.95}
    assert season_options(POLICY) == expected  # seeds/policy.toml [satellite], written out here
    assert season_options(POLICY, region="ncp", min_peers=None, smoothing="savgol") == {
        **expected, "region": "ncp", "smoothing": "savgol"}


def test_a_figure_that_is_not_json_is_a_clear_type_error():
    assert _json_default(np.float32(0.5)) == 0.5 and type(_json_default(np.int64(3))) is int
    with pytest.raises(TypeError, match="^not JSON serialisable: object$"):
        _json_default(object())


# ----------------------------------------------------------------------------- template checks on a fitted series


def _fits(region):
    days = np.arange(np.datetime64("2023-04-01"), np.datetime64("2023-11-30"), 8)
    fits = fit_explanations(days, _maize_ndvi(days), region, max_sowing_shift_days=30, shift_penalty=0.05,
                            min_template_scale=0.4, period=(days[0], days[-1]))
    return fits, days, _maize_ndvi(days)


def _template(region, declared, max_fit_rmse=0.1):
    fits, days, ndvi = _fits(region)
    row = {}
    flags = _template_checks(row, fits, [Declared.parse(d) for d in declared], region, days, ndvi, margin=0.06,
                             max_fit_rmse=max_fit_rmse)
    return fits[0], row, [(f.code, f.figures) for f in flags]


@pytest.mark.parametrize("region, declared, without", [("yangtze", ["soybean", "maize"], "maize;soybean"),
                                                       ("northeast", ["wheat"], "wheat")])
def test_a_declared_crop_without_a_calendar_in_the_region_is_unrecognised(region, declared, without):
    best, row, flags = _template(region, declared)
    assert flags == [("SEASON_UNRECOGNISED", {"region": region, "best_explanation": best.name,
                                              "best_rmse": best.rmse, "max_fit_rmse": 0.1,
                                              "declared_without_calendar": without})]
    assert (row["best_crop"], row["best_explanation"], row["best_score"], row["best_rmse"]) == (
        best.label, best.name, best.score, best.rmse)
    assert np.isnan(row["declared_score"]) and row["declared_explanation"] == best.name


@pytest.mark.parametrize("above, code", [(-1e-9, "SEASON_UNRECOGNISED"), (0.0, None)])
def test_max_fit_rmse_at_and_below_the_best_fit(above, code):
    limit = _fits("northeast")[0][0].rmse + above
    best, row, flags = _template("northeast", ["maize"], max_fit_rmse=limit)
    assert (flags[0][0] if flags else None) == code and row["declared_explanation"] == "maize"
    if code:
        assert flags[0][1]["declared_without_calendar"] is None and flags[0][1]["max_fit_rmse"] == limit
        assert np.isnan(row["declared_score"])


def test_crops_no_cropping_system_of_the_region_grows_together_are_a_mismatch():
    best, row, flags = _template("northeast", ["maize", "soybean"])  # two single-season crops, no rotation of both
    assert flags == [("CROP_MISMATCH", {"declared_crop": "maize;soybean", "best_crop": best.label,
                                        "best_explanation": best.name, "declared_explanation": None,
                                        "declared_score": None, "best_score": best.score, "margin": 0.06,
                                        "method": "template"})]
    assert row["declared_explanation"] == best.name and np.isnan(row["declared_score"])


def test_nothing_declared_is_no_template_finding():
    best, row, flags = _template("northeast", [])
    assert flags == [] and row["declared_explanation"] is None and row["best_explanation"] == best.name


def _unseen(offsets, values, declared="maize"):
    """The maize fit of Northeast China checked on hand-set observations around its fitted green period.

    ``offsets`` are (anchor, days) pairs: ``("g", 0)`` is green-up + 8 days (one logistic width inside),
    ``("s", 0)`` senescence - 8 days; every other observation is 0.3, under maize's 0.45 threshold.
    """
    fits, _, _ = _fits("northeast")
    chosen = next(f for f in fits if any(s.season.crop == declared for s in f.seasons))
    season = next(s for s in chosen.seasons if s.season.crop == declared)
    inner = np.timedelta64(8, "D")
    anchors = {"g": np.datetime64(season.dates["greenup"]) + inner,
               "s": np.datetime64(season.dates["senescence"]) - inner}
    dates = np.array([anchors[a] + np.timedelta64(d, "D") for a, d in offsets], dtype="datetime64[D]")
    order = np.argsort(dates)
    flags = _template_checks({}, fits, [Declared(declared)], "northeast", dates[order], np.asarray(values)[order],
                             margin=10.0, max_fit_rmse=1.0)
    return season, fits[0], [(f.code, f.figures) for f in flags]


@pytest.mark.parametrize("offsets, values, seen", [
    ([("g", 0), ("g", 20), ("s", 0)], [0.45, 0.3, 0.3], True),  # at green-up + 8 days, at the threshold
    ([("g", 0), ("g", 20), ("s", 0)], [0.4499, 0.3, 0.3], False),
    ([("g", -1), ("g", 20), ("s", 0)], [0.9, 0.3, 0.3], False),  # a day before the inner green period
    ([("s", 0), ("g", 20), ("g", 0)], [0.45, 0.3, 0.3], True),  # at senescence - 8 days
    ([("s", 1), ("g", 20), ("g", 0)], [0.9, 0.3, 0.3], False),  # a day after
])
def test_a_declared_season_must_be_seen_green_inside_its_fitted_green_period(offsets, values, seen):
    season, best, flags = _unseen(offsets, values)
    if seen:
        assert flags == []
    else:
        assert flags == [("CROP_MISMATCH", {
            "declared_crop": "maize", "green_period": f"{season.dates['greenup']}/{season.dates['senescence']}",
            "max_ndvi_in_green_period": max(values) if max(values) < 0.45 else 0.3,
            "observations": sum(1 for a, d in offsets if (a, d) in (("g", 0), ("g", 20), ("s", 0))),
            "cropped_ndvi_threshold": 0.45, "season_not_seen": "maize", "best_crop": best.label,
            "best_explanation": best.name, "method": "template"})]


@pytest.mark.parametrize("offsets, observations", [([("g", 20), ("g", -30)], 1), ([("g", -30), ("s", 30)], 0)])
def test_a_green_period_seen_fewer_than_twice_is_a_cloud_problem(offsets, observations):
    season, _, flags = _unseen(offsets, [0.3, 0.3])
    assert flags == [("CLOUD_INSUFFICIENT", {
        "declared_crop": "maize", "green_period": f"{season.dates['greenup']}/{season.dates['senescence']}",
        "max_ndvi_in_green_period": 0.3 if observations else None, "observations": observations,
        "cropped_ndvi_threshold": 0.45, "crop": "maize", "green_period_unseen": True})]


@pytest.mark.parametrize("green_in, unseen", [("wheat", "maize:summer"), ("maize", "wheat:winter")])
def test_each_season_of_a_double_crop_must_be_seen_green(green_in, unseen):
    # the wheat-maize rotation of the North China Plain, fitted; one season seen green (0.8), the other twice at 0.3
    fits, _, _ = _fits("ncp")
    chosen = next(f for f in fits if f.name == "wheat-maize")
    inner = np.timedelta64(8, "D")
    dates, values = [], []
    for x in chosen.seasons:
        start = np.datetime64(x.dates["greenup"]) + inner
        dates += [start, start + 10]
        values += [0.8, 0.8] if x.season.crop == green_in else [0.3, 0.3]
    flags = _template_checks({}, fits, [Declared("wheat"), Declared("maize")], "ncp",
                             np.array(dates, "datetime64[D]"), np.array(values), margin=10.0, max_fit_rmse=1.0)
    assert [(f.code, f.figures["season_not_seen"], f.figures["observations"]) for f in flags] == [
        ("CROP_MISMATCH", unseen, 2)]


def test_a_plot_without_any_tile_has_an_empty_series():
    series = _season(_table(), {"p": "maize", "ghost": "maize"}, plot_ids=["p", "ghost"]).series["ghost"]
    assert (series.plot_id, series.n_acquisitions, series.dates.dtype) == ("ghost", 0, np.dtype("datetime64[D]"))
    assert series.dates.size == series.ndvi.size == series.cropped_area_mu.size == 0
    assert series.ndvi.dtype == series.cropped_area_mu.dtype == np.float64


def test_a_plot_declared_for_two_seasons_lists_both_crops():
    row = _row(_season(_table(), {"p": ["wheat:winter", "maize:summer"]}, region="ncp"))
    assert row.declared_crop == "wheat;maize"


class _StubModel:
    """A crop model's interface (agricredit.crop_model.CropModel.predict_proba), recording its call."""

    def __init__(self, probabilities):
        self.probabilities, self.calls = probabilities, []

    def predict_proba(self, table, *, stat):
        self.calls.append((table, stat))
        return self.probabilities


def test_a_crop_model_decides_crop_mismatch_on_the_table_and_statistic_given():
    table = _table()
    model = _StubModel(pd.DataFrame({"maize": [0.125], "rice": [0.75], "soybean": [0.125]}, index=["p"]))
    row = _row(_season(table, crop_model=model, crop_model_margin=0.5))
    assert len(model.calls) == 1 and model.calls[0][0] is table and model.calls[0][1] == "ndvi_mean"
    assert row["flags"] == "CROP_MISMATCH" and (row.p_rice, row.best_crop, row.declared_score) == (0.75, "rice", 0.875)
    figures = json.loads(row.flag_figures)["CROP_MISMATCH"]
    assert (figures["method"], figures["declared_crop"], figures["best_crop"]) == ("model", "maize", "rice")
    assert _row(_season(table, crop_model=model, crop_model_margin=0.75))["flags"] == ""  # 0.875 - 0.25 = 0.625


@pytest.mark.parametrize("value, expected", [
    (None, ()), (np.nan, ()), ("", ()), ("maize", (Declared("maize"),)), ("maize:single", (Declared("maize"),)),
    (["wheat:winter", "", "maize:summer"], (Declared("wheat", "winter"), Declared("maize", "summer"))),
])
def test_a_plots_declarations(value, expected):
    assert _declared_of(value) == expected


def test_window_ends_are_whole_days():
    dates = np.array(["2023-03-31", "2023-04-01", "2023-04-30", "2023-05-01"], dtype="datetime64[D]")
    assert _window_mask(dates, [("2023-04-01T12:00", "2023-04-30T12:00")]).tolist() == [False, True, True, False]


FIT_OPTIONS = {"max_sowing_shift_days": 10, "shift_penalty": 0.2, "min_template_scale": 0.6,
               "period": (np.datetime64("2023-03-01"), np.datetime64("2023-12-31"))}


def _fit_names(fits):
    return [(f.name, round(f.rmse, 9), tuple(s.shift_days for s in f.seasons)) for f in fits]


@pytest.mark.parametrize("n, fitted", [(2, False), (3, True)])
def test_a_plot_is_fitted_from_three_observations(n, fitted):
    s = _series([0.3, 0.8, 0.4][:n], start="2023-06-01", step=40)
    fits, used = _fit_plot(s, "northeast", FIT_OPTIONS)
    assert bool(fits) is fitted and used.tolist() == [fitted] * n


def test_the_fit_uses_the_options_and_leaves_out_undetected_clouds():
    days = np.arange(np.datetime64("2023-04-01"), np.datetime64("2023-11-30"), 8)
    ndvi = _maize_ndvi(days)
    masked = np.ones(len(days), bool)
    peak = int(np.argmax(ndvi))
    ndvi[peak], masked[peak] = 0.3, False  # a cloud the product did not mask: 0.5 under the fit
    s = PlotSeries("p", days, ndvi, np.zeros(len(days)), len(days), 40.0, np.ones(len(days)), np.ones(len(days)),
                   masked, 1.0)
    fits, used = _fit_plot(s, "northeast", FIT_OPTIONS)
    assert used.tolist() == [k != peak for k in range(len(days))]
    reference = fit_explanations(days[used], ndvi[used], "northeast", **FIT_OPTIONS)
    assert _fit_names(fits) == _fit_names(reference)
    masked[peak] = True  # the same drop under a cloud mask is taken as it is
    fits, used = _fit_plot(s, "northeast", FIT_OPTIONS)
    assert used.all() and _fit_names(fits) == _fit_names(fit_explanations(days, ndvi, "northeast", **FIT_OPTIONS))


def test_the_row_holds_each_explanations_fit():
    result = _season(_table())
    row = _row(result)
    for fit in result.fits["p"]:
        assert row[f"rmse_{fit.name}"] == fit.rmse
        assert row[f"shift_days_{fit.name}"] == ";".join(str(s.shift_days) for s in fit.seasons)
        assert row[f"scale_{fit.name}"] == ";".join(f"{s.scale:.3f}" for s in fit.seasons)


@pytest.mark.parametrize("smoothing", ["none", "whittaker", "savgol"])
def test_phenology_is_read_from_the_observations_or_the_curve_asked(smoothing):
    from agricredit.series import phenology, smooth_series

    table = _table()
    table.loc[table["date"] == np.datetime64("2023-06-04"), "ndvi_mean"] = 0.95
    days, ndvi = table["date"].to_numpy().astype("datetime64[D]"), table["ndvi_mean"].to_numpy()
    expected = phenology(days, ndvi) if smoothing == "none" else phenology(*smooth_series(days, ndvi, smoothing))
    row = _row(_season(table, smoothing=smoothing))
    assert (row.peak_ndvi, row.season_length_days) == (expected["peak_ndvi"], expected["season_length_days"])


def test_a_plot_without_a_drawn_area_is_judged_on_its_ndvi():
    row = _row(_season(_table(), drawn={}))
    assert np.isnan(row.drawn_area_mu) and np.isnan(row.cropped_area_mu_at_peak) and row.cropped_share == 1.0


def test_peer_vigor_runs_with_the_options_given():
    # seven maize plots whose canopies peak 0.84 … 0.49: each plot's vigor against the others, with options unlike
    # peer_vigor's defaults
    scales = [1.0, 0.98, 0.96, 0.94, 0.92, 0.8, 0.45]
    table = pd.concat([_table(f"p{k}", ndvi=lambda d, a=a: 0.2 + a * (_maize_ndvi(d) - 0.2)) for k, a in
                       enumerate(scales)], ignore_index=True)
    ids = [f"p{k}" for k in range(7)]
    options = {"low_vigor_percentile": 20.0, "low_vigor_min_gap": 0.05, "vigor_factor_min": 0.65,
               "vigor_factor_max": 1.03, "min_peers": 7, "min_pixel_count": 4.0, "min_observations_in_window": 3}
    result = _season(table, dict.fromkeys(ids, "maize"), dict.fromkeys(ids, 10.0), **options)
    rows = result.plots.set_index("plot_id").loc[ids]
    peaks = rows["vigor_peak_ndvi"].to_numpy(float)
    median = float(np.median(peaks))
    assert rows["peer_count"].tolist() == [7] * 7 and rows["peer_median_peak"].tolist() == [median] * 7
    # p5: second lowest (percentile 1/6 = 16.7 %, under 20 but not 10) and 0.05 to 0.1 under the median
    assert 0.05 <= median - peaks[5] < 0.1 and peaks[6] / median < 0.65 and peaks[0] / median > 1.03
    assert rows["flags"].tolist() == [""] * 5 + ["LOW_VIGOR"] * 2
    assert rows["vigor_factor"].tolist() == pytest.approx([1.03, *np.clip(peaks[1:5] / median, 1.0, 1.03),
                                                           peaks[5] / median, 0.65])
    fewer = _season(table, dict.fromkeys(ids, "maize"), dict.fromkeys(ids, 10.0), **{**options, "min_peers": 8})
    assert fewer.plots["peer_count"].tolist() == [0] * 7


def test_a_declared_crop_losing_to_another_by_more_than_the_margin_is_a_mismatch():
    fits, days, ndvi = _fits("northeast")  # the canopy of tests above fits rice better than maize here
    chosen = next(f for f in fits if f.name == "maize")
    x = chosen.seasons[0]
    pad = np.timedelta64(8, "D")
    lo, hi = np.datetime64(x.dates["greenup"]) - pad, np.datetime64(x.dates["senescence"]) + pad
    inside = (days >= lo) & (days <= hi)

    def score(fit):  # RMSE on the declared season's widened green period + the fit's calendar prior
        return float(np.sqrt(np.mean((fit.curve(days[inside]) - ndvi[inside]) ** 2))) + fit.score - fit.rmse

    declared, best = score(chosen), min(score(f) for f in fits)
    assert declared - best > 0.001
    row = {}
    flags = _template_checks(row, fits, [Declared("maize")], "northeast", days, ndvi, margin=0.0, max_fit_rmse=1.0)
    assert [(f.code, f.figures) for f in flags] == [("CROP_MISMATCH", {
        "declared_crop": "maize", "best_crop": fits[0].label, "best_explanation": fits[0].name,
        "declared_explanation": "maize", "declared_score": pytest.approx(declared), "best_score": pytest.approx(best),
        "margin": 0.0, "method": "template", "window": f"{lo.astype(object)}/{hi.astype(object)}"})]
    assert (row["declared_score"], row["best_window_score"]) == (pytest.approx(declared), pytest.approx(best))
    gap = declared - best
    assert _template_checks({}, fits, [Declared("maize")], "northeast", days, ndvi, margin=gap + 1e-9,
                            max_fit_rmse=1.0) == []


def test_too_few_observations_without_a_declaration_is_a_cloud_problem_of_the_season():
    table = _table()
    table.loc[2:, "valid_frac"] = 0.1  # two usable observations in the whole run
    row = _row(_season(table, {}))
    assert row["flags"] == "CLOUD_INSUFFICIENT"
    assert json.loads(row.flag_figures)["CLOUD_INSUFFICIENT"]["crop"] == "season"


def test_the_thinnest_window_of_a_double_crop_is_reported():
    # wheat (winter) and maize (summer) on the North China Plain; the wheat window clouded
    table = _table(start="2022-10-01", end="2023-11-30")
    wheat = (table["date"] >= np.datetime64("2022-10-01")) & (table["date"] <= np.datetime64("2023-06-30"))
    table.loc[wheat, "valid_frac"] = 0.1
    table.loc[table.index[wheat][::12], "valid_frac"] = 1.0  # a few clear wheat-window days left
    row = _row(_season(table, {"p": ["wheat:winter", "maize:summer"]}, region="ncp"))
    figures = json.loads(row.flag_figures)["CLOUD_INSUFFICIENT"]
    assert figures["crop"] == "wheat" and row.window_start == figures["window_start"] < "2023-03-01"


def test_without_a_declaration_the_best_explanations_seasons_are_reported():
    result = _season(_table(), {})
    best = result.fits["p"][0]
    assert _row(result).chosen_windows == ";".join(f"{x.season.key}:{x.dates['sowing']}/{x.dates['harvest']}"
                                                    for x in best.seasons)


def test_a_plot_seen_twice_is_judged_without_a_fit_when_two_observations_suffice():
    table = _table()
    keep = table["date"].isin(pd.to_datetime(["2023-05-19", "2023-08-15"]))
    table.loc[~keep, "valid_frac"] = 0.1
    result = _season(table, min_observations_in_window=2)
    row = _row(result)
    assert result.fits["p"] == [] and row.chosen_windows is None and row["flags"] == ""
    assert "crop_ranking" not in result.plots or pd.isna(row.crop_ranking)


def test_the_season_table_holds_figures_not_the_per_observation_shares():
    assert "share" not in _season(_table()).plots.columns


def test_a_double_crops_windows_are_both_reported():
    row = _row(_season(_table(start="2022-10-01", end="2023-11-30"), {"p": ["wheat:winter", "maize:summer"]},
                       region="ncp"))
    windows = row.chosen_windows.split(";")
    assert [w.split(":")[0] + ":" + w.split(":")[1] for w in windows] == ["wheat:winter", "maize:summer"]


BARE = dict(ndvi=lambda d: np.full(len(d), 0.2))
EARLY = ["2023-05-11", "2023-05-19", "2023-05-27"]  # they see sowing shifts up to -22 days only


def test_a_bare_plot_seen_only_before_its_green_period_is_a_cloud_problem():
    table = _table(**BARE)
    inside = (table["date"] >= np.datetime64(MAIZE_WINDOW[0])) & (table["date"] <= np.datetime64(MAIZE_WINDOW[1]))
    table.loc[inside & ~table["date"].isin(pd.to_datetime(EARLY)), "valid_frac"] = 0.1
    row = _row(_season(table))
    assert row["flags"] == "CLOUD_INSUFFICIENT"
    assert json.loads(row.flag_figures)["CLOUD_INSUFFICIENT"] == {
        "crop": "maize", "valid_in_window": 3, "required": 3, "window_start": MAIZE_WINDOW[0],
        "window_end": MAIZE_WINDOW[1], "acquisitions": 31, "green_period_unseen": True}


def test_only_cloud_masked_observations_confirm_that_a_plot_was_not_cultivated():
    table = _table(**BARE)
    table["cloud_masked"] = table["date"].isin(pd.to_datetime(EARLY))  # the rest of the season from a product
    row = _row(_season(table))                                          # without a cloud mask
    assert row["flags"] == "NOT_CULTIVATED_UNCONFIRMED"
    figures = json.loads(row.flag_figures)["NOT_CULTIVATED_UNCONFIRMED"]
    assert (figures["clear_in_window"], figures["every_sowing_date_seen"]) == (3, False)


def test_a_double_crop_losing_on_window_score_names_both_crops_and_windows():
    fits, days, _ = _fits("ncp")
    chosen = next(f for f in fits if f.name == "wheat-maize")
    dates = np.arange(np.datetime64("2022-10-01"), np.datetime64("2023-11-30"), 5)
    ndvi = chosen.curve(dates) + 0.2  # seen green (over 0.45) in both seasons
    flags = _template_checks({}, fits, [Declared("wheat"), Declared("maize")], "ncp", dates, ndvi, margin=-1.0,
                             max_fit_rmse=1.0)  # any score gap exceeds a margin of -1
    pad = dt.timedelta(days=8)
    windows = ";".join(f"{x.dates['greenup'] - pad}/{x.dates['senescence'] + pad}" for x in chosen.seasons)
    assert [(f.code, f.figures["declared_crop"], f.figures["window"]) for f in flags] == [
        ("CROP_MISMATCH", "wheat;maize", windows)]


def test_rotation_fit_columns_join_their_seasons():
    result = _season(_table(start="2022-10-01", end="2023-11-30"), {"p": ["wheat:winter", "maize:summer"]},
                     region="ncp")
    row, fit = _row(result), next(f for f in result.fits["p"] if f.name == "wheat-maize")
    assert row["shift_days_wheat-maize"] == f"{fit.seasons[0].shift_days};{fit.seasons[1].shift_days}"
    assert row["scale_wheat-maize"] == f"{fit.seasons[0].scale:.3f};{fit.seasons[1].scale:.3f}"


def test_flag_figures_are_json_with_sorted_keys():
    text = _row(_season(_table(ndvi=lambda d: np.full(len(d), 0.2))))["flag_figures"]
    assert text == json.dumps(json.loads(text), sort_keys=True)  # the checks list their figures unsorted


def test_peer_counts_are_integers_and_a_small_crop_does_not_stop_the_others():
    plots = pd.concat([_peers(), _peers([0.5, 0.6], crop="barley")], ignore_index=True)  # barley sorts first
    plots["plot_id"] = [f"P{i}" for i in range(8)]
    out, flags = _vigor(plots)
    assert out["peer_count"].dtype.kind == "i" and out["peer_count"].tolist() == [6] * 6 + [0, 0]
    assert flags["P0"] == ["LOW_VIGOR"]


@pytest.mark.parametrize("below, dropped", [(0.09, False), (0.11, True)])
def test_an_unmasked_observation_is_left_out_only_when_far_below_the_fit(below, dropped):
    days = np.arange(np.datetime64("2023-04-01"), np.datetime64("2023-11-30"), 8)
    fits = fit_explanations(days, _maize_ndvi(days), "northeast", **FIT_OPTIONS)
    ndvi = fits[0].curve(days)
    masked = np.ones(len(days), bool)
    k = int(np.argmax(ndvi))
    ndvi[k], masked[k] = ndvi[k] - below, False
    s = PlotSeries("p", days, ndvi, np.zeros(len(days)), len(days), 40.0, np.ones(len(days)), np.ones(len(days)),
                   masked, 1.0)
    assert fit_observations(s, fits).tolist() == [not (dropped and i == k) for i in range(len(days))]


@pytest.mark.parametrize("kept, dropped", [(3, True), (2, False)])
def test_undetected_clouds_are_left_out_only_if_three_observations_remain(kept, dropped):
    days = np.array(["2023-06-01", "2023-07-01", "2023-08-01", "2023-09-01", "2023-10-01"], dtype="datetime64[D]")
    fits = fit_explanations(days, _maize_ndvi(days), "northeast", **FIT_OPTIONS)
    ndvi = fits[0].curve(days) - 0.3  # every observation far under the fit ...
    masked = np.arange(5) < kept  # ... but the first `kept` are cloud-masked: taken as they are
    s = PlotSeries("p", days, ndvi, np.zeros(5), 5, 40.0, np.ones(5), np.ones(5), masked, 1.0)
    assert fit_observations(s, fits).tolist() == (masked.tolist() if dropped else [True] * 5)
    assert fit_observations(s, fits).dtype == fit_observations(s, ()).dtype == bool  # a mask, not 0/1 numbers
    assert fit_observations(s, ()).tolist() == [True] * 5
