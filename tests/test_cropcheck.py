"""The crop check (issue 9): cropping-system fit, cloud-aware evidence, review codes, thresholds, chart.

Series come from ``tests/season_truth.py`` (Gaussian-sum canopy curves, not the
check's double-logistic templates) or are written out by hand with the answer
worked out in the test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import lsq_linear

import season_truth as truth
from agricredit import cropfit
from agricredit.charts import WINDOW_COLOURS, season_chart
from agricredit.errors import InputError, SchemaError
from agricredit.policy import load_policy
from agricredit.season import Declared, assess_season, fit_observations, resolve_region, season_options, template_flags
from agricredit.tables import read_declarations
from agricredit.verify import PlotFacts, verify_plot

POLICY = load_policy(None)
OPTIONS = season_options(POLICY)
PERIOD = ("2022-10-01", "2023-11-30")


def _run(plots, seed, **changes):
    table = truth.long_table(plots, *PERIOD, seed)
    declared = changes.pop("declared", {p.plot_id: list(p.crops) for p in plots if p.crops})
    area = {p.plot_id: p.area_mu for p in plots}
    return assess_season(table, declared, area, plot_ids=list(area), **{**OPTIONS, "region": plots[0].region, **changes})


def _flags(result, plot_id):
    return set(filter(None, result.plots.set_index("plot_id").at[plot_id, "flags"].split(";")))


# ----------------------------------------------------------------------------- the fit


def test_bounded_fit_is_the_optimum_scipy_finds():
    rng = np.random.default_rng(5)
    shapes = rng.random((30, 40, 2))
    y = 0.15 + shapes[0] @ np.array([0.9, 0.05]) + rng.normal(0, 0.02, 40)  # second amplitude below its bound
    low, high = np.array([0.1, 0.2]), np.array([0.6, 1.0])  # first above its bound
    sse, offset, amp = cropfit._bounded_fit(y, shapes, low, high)
    for k in range(len(shapes)):
        design = np.column_stack([np.ones(40), shapes[k]])
        reference = lsq_linear(design, y, bounds=(np.r_[-np.inf, low], np.r_[np.inf, high]), tol=1e-12)
        assert sse[k] == pytest.approx(float(np.sum(reference.fun**2)), rel=1e-7, abs=1e-12)
        np.testing.assert_allclose(np.r_[offset[k], amp[k]], reference.x, atol=1e-6)
    assert amp[0, 0] == pytest.approx(0.6) and amp[0, 1] == pytest.approx(0.2)  # both bounds active


def test_a_flat_line_is_not_a_crop():
    dates = np.datetime64("2022-10-01") + np.arange(0, 420, 5)
    fits = cropfit.fit_explanations(dates, np.full(len(dates), 0.6), "ncp", min_template_scale=0.4)
    for fit in fits:
        assert all(s.scale == pytest.approx(0.4) for s in fit.seasons)  # held at the floor, never 0
        assert fit.rmse > 0.05
    free = cropfit.fit_explanations(dates, np.full(len(dates), 0.6), "ncp", min_template_scale=1e-9)
    assert min(f.rmse for f in free) < 1e-3  # without the floor a flat line "fits" every crop


def test_rotation_shift_follows_the_first_season():
    plots = truth.make_plots("delmarva", 1, 11, scenarios={"clear": 1.0}, n_bare=0)
    rotation = next(p for p in plots if p.system == "wheat-soybean")
    fit = next(f for f in _run([rotation], 11).fits[rotation.plot_id] if f.name == "wheat-soybean")
    sown = np.datetime64(int(round(rotation.params["seasons"][1]["sowing"])), "D")
    assert abs((np.datetime64(fit.seasons[1].dates["sowing"]) - sown).astype(int)) <= 15


# ----------------------------------------------------------------------------- on independent seasons


@pytest.fixture(scope="module")
def generated():
    """Every cropping system of the North China Plain and Delmarva, clear or with a clouded peak."""
    runs = {}
    for region, seed in (("ncp", 21), ("delmarva", 22)):
        plots = truth.make_plots(region, 4, seed, scenarios={"clear": 0.6, "cloudy_peak": 0.4}, n_bare=2)
        runs[region] = (plots, _run(plots, seed))
    return runs


def test_honest_plots_are_not_flagged(generated):
    evaluations = [truth.evaluate(result, plots, crop_mismatch_margin=POLICY.satellite.crop_mismatch_margin,
                                  max_fit_rmse=POLICY.satellite.max_fit_rmse) for plots, result in generated.values()]
    honest = pd.concat([e["honest"] for e in evaluations])
    assert len(honest) >= 60 and honest["flagged"].mean() <= 0.01
    assert not honest["zeroed"].any()


def test_bare_plots_are_not_cultivated(generated):
    for plots, result in generated.values():
        for plot in plots:
            if plot.system == "bare":
                assert _flags(result, plot.plot_id) & {"NOT_CULTIVATED", "NOT_CULTIVATED_UNCONFIRMED"}


def _check(result, plot, crops, margin=None, floor=None):
    """The template checks of ``plot`` declared ``crops`` (policy margin and floor unless given)."""
    s, fits = result.series[plot.plot_id], result.fits[plot.plot_id]
    used = fit_observations(s, fits)
    sat = POLICY.satellite
    return template_flags(fits, [Declared(c) for c in crops], plot.region, s.dates[used], s.ndvi[used],
                          crop_mismatch_margin=sat.crop_mismatch_margin if margin is None else margin,
                          max_fit_rmse=sat.max_fit_rmse if floor is None else floor)


def test_double_cropped_field_declared_with_a_wrong_summer_crop_is_caught(generated):
    plots, result = generated["delmarva"]
    for plot in (p for p in plots if p.system == "wheat-soybean"):
        assert _check(result, plot, ("wheat", "soybean")) == []
        assert _check(result, plot, ("soybean",)) == []  # declaring the summer crop alone is honest
        assert _check(result, plot, ("wheat",)) == []  # and so is the winter crop alone
        assert [f.code for f in _check(result, plot, ("wheat", "maize"))] == ["CROP_MISMATCH"]


def test_a_winter_season_that_was_not_grown_is_caught(generated):
    plots, result = generated["ncp"]
    for plot in (p for p in plots if p.system in ("maize:summer", "soybean:summer")):
        flags = _check(result, plot, ("wheat", plot.crops[0]))
        assert [f.code for f in flags] == ["CROP_MISMATCH"] and flags[0].figures["season_not_seen"] == "wheat:winter"


def test_a_crop_without_a_calendar_in_the_region_is_unrecognised(generated):
    plots, result = generated["ncp"]
    plot = next(p for p in plots if p.system == "maize:summer")
    flags = _check(result, plot, ("rice",))
    assert [f.code for f in flags] == ["SEASON_UNRECOGNISED"] and flags[0].figures["declared_without_calendar"] == "rice"


def test_nothing_explains_a_season_within_the_floor(generated):
    plots, result = generated["ncp"]
    plot = next(p for p in plots if p.system == "wheat-maize")
    best = result.fits[plot.plot_id][0].rmse
    assert _check(result, plot, ("maize",), margin=1.0, floor=best) == []
    below = _check(result, plot, ("maize",), margin=1.0, floor=best * (1 - 1e-9))
    assert [f.code for f in below] == ["SEASON_UNRECOGNISED"] and below[0].figures["best_rmse"] == pytest.approx(best)


def test_crop_mismatch_margin_at_and_either_side(generated):
    # A wheat-maize field declared wheat then soybean: the soybean season is green (the maize is), so the
    # two are compared by their scores in the summer green period.
    plots, result = generated["ncp"]
    gaps = []
    for plot in (p for p in plots if p.system == "wheat-maize"):
        flags = _check(result, plot, ("wheat", "soybean"), margin=0.0)
        if flags and "declared_score" in flags[0].figures:
            gaps.append((flags[0].figures["declared_score"] - flags[0].figures["best_score"], plot))
    assert gaps, "no wheat-maize field scores soybean worse than maize"
    gap, plot = gaps[0]
    for margin, fires in ((gap, False), (gap * (1 - 1e-9), True), (gap * 1.5, False), (gap / 2, True)):
        codes = [f.code for f in _check(result, plot, ("wheat", "soybean"), margin=margin)]
        assert codes == (["CROP_MISMATCH"] if fires else [])


def test_a_declared_season_never_seen_green_was_not_grown(generated):
    plots, result = generated["ncp"]
    plot = next(p for p in plots if p.system == "wheat:winter" and p.scenario == "clear")
    flags = _check(result, plot, ("maize",), margin=1.0, floor=1.0)
    assert [f.code for f in flags] == ["CROP_MISMATCH"]
    figures = flags[0].figures
    assert figures["max_ndvi_in_green_period"] < figures["cropped_ndvi_threshold"] == 0.45
    assert figures["season_not_seen"].startswith("maize") and figures["observations"] >= 2


# ----------------------------------------------------------------------------- evidence written out by hand

DATES = np.datetime64("2023-04-01") + np.arange(0, 200, 5)  # 40 dates, 5-day revisit


def _bell(peak="2023-07-20", width=35.0, low=0.2, high=0.85):
    t = (DATES - np.datetime64(peak)).astype(float)
    return low + (high - low) * np.exp(-((t / width) ** 2))


def _table(ndvi, *, share=None, valid=None, covered=1.0, masked=True, area=10.0, pixels=60.0):
    valid = np.full(len(DATES), 1.0) if valid is None else valid
    share = np.where(ndvi >= 0.45, 0.9, 0.0) if share is None else share
    return pd.DataFrame({"plot_id": "P", "date": DATES.astype(str), "ndvi_mean": ndvi, "valid_frac": valid * covered,
                         "covered_frac": covered, "cropped_area_mu": share * valid * covered * area,
                         "pixel_count": pixels, "cloud_masked": masked})


def _assess(table, crop="maize", **changes):
    return assess_season(table, {"P": crop}, {"P": 10.0}, **{**OPTIONS, "region": "delmarva", **changes})


def test_a_cloudy_peak_is_not_zeroed():
    # The case: 80 % cropped, 38 % of the plot under cloud on every date near the peak.
    ndvi = _bell()
    valid = np.where(np.abs((DATES - np.datetime64("2023-07-20")).astype(int)) <= 15, 0.62, 1.0)
    share = np.where(ndvi >= 0.45, 0.8, 0.0)
    result = _assess(_table(ndvi, share=share, valid=valid))
    row = result.plots.iloc[0]
    assert "NOT_CULTIVATED" not in row["flags"]
    assert row["cropped_share"] == pytest.approx(0.8)  # measured on the area seen, not 0.8 x 0.62 = 0.496
    assert row["cropped_area_mu_at_peak"] == pytest.approx(8.0)
    assert row["cropped_measured_share"] == pytest.approx(1.0)  # a clear date shows as much: the clearest is reported


@pytest.mark.parametrize(("share", "flagged"), [(0.5, False), (0.5 - 1e-9, True), (0.3, True), (0.7, False)])
def test_cultivated_min_share_at_and_either_side(share, flagged):
    ndvi = _bell()
    result = _assess(_table(ndvi, share=np.where(ndvi >= 0.45, share, 0.0)))
    assert ("NOT_CULTIVATED" in _flags(result, "P")) is flagged


def test_a_bare_plot_on_clear_masked_observations_is_not_cultivated():
    result = _assess(_table(np.full(len(DATES), 0.18)))
    assert _flags(result, "P") == {"NOT_CULTIVATED"}
    figures = result.flags["P"][0].figures
    assert figures["every_sowing_date_seen"] is True and figures["clear_in_window"] >= 3


def test_a_bare_plot_without_a_cloud_mask_goes_to_review():
    result = _assess(_table(np.full(len(DATES), 0.18), masked=False))
    assert _flags(result, "P") == {"NOT_CULTIVATED_UNCONFIRMED"}
    facts = PlotFacts.from_dict({"plot_id": "P", "borrower_id": "B", "drawn_mu": 10.0, "registered_mu": 10.0,
                                 "declared_mu": 10.0, "declared_crop": "maize", "pixel_count": 60.0, "registry_holder_id": "B",
                                 "cropped_mu_at_peak": 0.0, "satellite_codes": {"NOT_CULTIVATED_UNCONFIRMED": {}}})
    verdict = verify_plot(facts, POLICY)
    assert verdict.codes == ("NOT_CULTIVATED_UNCONFIRMED",)
    assert verdict.contribution.mu_now == 0.0 and verdict.contribution.mu_if_confirmed == pytest.approx(10.0)


@pytest.mark.parametrize(("masked_dates", "code"), [(3, "NOT_CULTIVATED"), (2, "NOT_CULTIVATED_UNCONFIRMED")])
def test_clear_observations_needed_at_and_below(masked_dates, code):
    # Maize's green period (30 May - 2 Sep on the Delmarva calendar, ±30 days) seen on 3 dates 35 days apart;
    # the other dates have no cloud mask. Two masked dates leave some sowing dates unseen.
    ndvi = np.full(len(DATES), 0.18)
    masked = np.zeros(len(DATES), dtype=bool)
    masked[[10, 17, 24][:masked_dates]] = True
    result = _assess(_table(ndvi, masked=masked))
    assert _flags(result, "P") == {code}


def test_a_plot_partly_outside_the_imagery_goes_to_review_not_cloud():
    result = _assess(_table(np.full(len(DATES), 0.18), covered=0.5))
    assert _flags(result, "P") == {"PARTIAL_COVERAGE", "NOT_CULTIVATED_UNCONFIRMED"}


@pytest.mark.parametrize(("covered", "partial"), [(0.95, False), (0.95 - 1e-9, True), (1.0, False), (0.4, True)])
def test_min_covered_fraction_at_and_either_side(covered, partial):
    result = _assess(_table(_bell(), covered=covered))
    assert ("PARTIAL_COVERAGE" in _flags(result, "P")) is partial


def test_a_plot_too_small_for_the_sensor_goes_to_review():
    facts = PlotFacts(plot_id="P", borrower_id="B", drawn_mu=0.5, registered_mu=0.5, declared_mu=0.5, registry_holder_id="B",
                      declared_crop="maize", pixel_count=3.0, cropped_mu_at_peak=0.0)
    verdict = verify_plot(facts, POLICY)
    assert verdict.codes == ("TOO_FEW_PIXELS",)
    assert verdict.contribution.mu_now == 0.0 and verdict.contribution.mu_if_confirmed == pytest.approx(0.5)


def test_a_long_cloud_gap_over_the_crop_is_a_cloud_problem():
    ndvi = np.full(len(DATES), 0.18)
    valid = np.where((DATES >= np.datetime64("2023-05-10")) & (DATES <= np.datetime64("2023-09-01")), 0.1, 1.0)
    result = _assess(_table(ndvi, valid=valid))
    assert _flags(result, "P") == {"CLOUD_INSUFFICIENT"}


def test_double_cropping_declared_in_rows_with_seasons(tmp_path):
    path = tmp_path / "declarations.csv"
    path.write_text("borrower_id,plot_id,declared_crop,declared_area,area_unit,season\n"
                    "B1,P1,wheat,5,mu,winter\nB1,P1,玉米,5,mu,summer\nB1,P2,maize,3,mu,\n", encoding="utf-8")
    table = read_declarations(path, known_crops={"wheat": "wheat", "maize": "maize", "玉米": "maize"})
    assert table[["plot_id", "declared_crop", "season"]].values.tolist() == [
        ["P1", "maize", "summer"], ["P1", "wheat", "winter"], ["P2", "maize", ""]]
    path.write_text("borrower_id,plot_id,declared_crop,declared_area,area_unit,season\nB1,P1,wheat,5,mu,autumn\n",
                    encoding="utf-8")
    with pytest.raises(SchemaError, match="season"):
        read_declarations(path)


# ----------------------------------------------------------------------------- region


def test_region_named_or_taken_from_the_plots():
    import geopandas as gpd
    from shapely.geometry import box

    plots = gpd.GeoDataFrame({"plot_id": ["a", "b", "c"]},
                             geometry=[box(115.0, 36.0, 115.001, 36.001), box(115.2, 36.1, 115.201, 36.101),
                                       box(-75.8, 37.6, -75.799, 37.601)], crs="EPSG:4326")
    assert resolve_region("auto", plots) == "ncp"  # two plots of three
    assert resolve_region("yangtze", plots) == "yangtze"
    with pytest.raises(InputError, match="unknown region"):
        resolve_region("mars", plots)
    with pytest.raises(InputError, match="outside every region"):
        resolve_region(None, gpd.GeoDataFrame({"plot_id": ["x"]}, geometry=[box(10, 50, 10.001, 50.001)], crs="EPSG:4326"))


# ----------------------------------------------------------------------------- chart


def _pixels(path):
    from PIL import Image

    return {tuple(p) for p in np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)}


def _rgb(colour):
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def test_chart_shades_the_chosen_rotation_and_draws_no_failed_fit(generated, tmp_path):
    plots, result = generated["ncp"]
    rotation = next(p for p in plots if p.system == "wheat-maize" and not _flags(result, p.plot_id))
    season_chart(result, rotation.plot_id, tmp_path / "rotation.png")
    colours = _pixels(tmp_path / "rotation.png")
    assert _rgb(WINDOW_COLOURS[0]) in colours and _rgb(WINDOW_COLOURS[1]) in colours  # both seasons shaded
    assert _rgb("#1f77b4") in colours  # the best fit drawn
    bare = next(p for p in plots if p.system == "bare")
    season_chart(result, bare.plot_id, tmp_path / "bare.png")
    colours = _pixels(tmp_path / "bare.png")
    assert _rgb("#1f77b4") not in colours and _rgb(WINDOW_COLOURS[0]) not in colours  # no fit, no window
    with pytest.raises(InputError, match="not in this run"):
        season_chart(result, "nope", tmp_path / "nope.png")
    assert not (tmp_path / "nope.png").exists()


def test_declared_slots():
    assert Declared.parse("maize") == Declared("maize") == Declared.parse("maize:single")
    assert Declared.parse(" maize : summer ") == Declared("maize", "summer")
    summer = cropfit.explanations_for("ncp")
    keys = {e.name: e.seasons[-1] for e in summer if len(e.seasons) == 1}
    assert Declared("maize").matches(keys["maize:summer"]) and Declared("maize").matches(keys["maize:spring"])
    assert Declared("maize", "summer").matches(keys["maize:summer"])
    assert not Declared("maize", "summer").matches(keys["maize:spring"])


@pytest.mark.parametrize(("lon", "lat", "region"), [
    (113.63, 34.75, "ncp"),  # Zhengzhou, Henan
    (116.99, 36.65, "ncp"),  # Jinan, Shandong
    (126.53, 45.80, "northeast"),  # Harbin, Heilongjiang
    (125.32, 43.82, "northeast"),  # Changchun, Jilin
    (114.31, 30.59, "yangtze"),  # Wuhan, Hubei
    (-75.60, 38.37, "delmarva"),  # Salisbury, Maryland
    (-75.76, 37.71, "delmarva"),  # Accomac, Virginia's Eastern Shore
    (2.35, 48.86, None),  # Paris: no calendar
])
def test_region_boxes_hold_their_towns(lon, lat, region):
    from agricredit.seeds import region_at

    assert region_at(lon, lat) == region


def test_calendars_are_ordered_and_rotations_follow_the_harvest():
    from agricredit.seeds import load_calendars, load_rotations

    for region, seasons in load_calendars().items():
        for season in seasons.values():
            dates = list(season.dates(2023).values())
            assert dates == sorted(dates) and (dates[-1] - dates[0]).days < 365, (region, season.key)
        for rotation in load_rotations()[region]:
            first, second = rotation.first.dates(2023), rotation.second.dates(2023)
            assert first["harvest"] <= second["sowing"], rotation.system


@pytest.mark.parametrize(("masked", "low_vigor"), [(True, True), (False, False)])
def test_low_vigor_needs_cloud_masked_observations(masked, low_vigor):
    # Six maize plots peaking at 0.85 and one at 0.55 (below the 10th percentile and 0.3 under the median).
    frames = []
    for k, high in enumerate([0.85, 0.86, 0.84, 0.85, 0.87, 0.83, 0.55]):
        frame = _table(_bell(high=high), masked=masked if k == 6 else True)
        frames.append(frame.assign(plot_id=f"P{k}"))
    table = pd.concat(frames, ignore_index=True)
    ids = [f"P{k}" for k in range(7)]
    result = assess_season(table, dict.fromkeys(ids, "maize"), dict.fromkeys(ids, 10.0),
                           **{**OPTIONS, "region": "delmarva"})
    assert ("LOW_VIGOR" in _flags(result, "P6")) is low_vigor
    assert all(_flags(result, p) == set() for p in ids[:6])
