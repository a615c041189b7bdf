"""Season library: acquisitions, series, phenology, crop fit, checks and vigor on synthetic seasons."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin
from scipy.optimize import brentq

from agricredit import season
from agricredit.errors import InputError, InputNotFoundError, SchemaError
from agricredit.seeds import load_crops, template_ndvi
from season_synth import SUMMER_DATES, WINTER_DATES, Plot, doy, synth_table

CROPS = sorted(load_crops())
# maize and rice templates differ by 3 days of senescence and 0.05 of peak NDVI:
# once amplitude is scaled and sowing may shift, NDVI alone cannot tell them apart.
NDVI_TWINS = {"maize": "rice", "rice": "maize"}


# ----------------------------------------------------------------------------- acquisitions


def _ndvi_tif(path, date: str) -> None:
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="float32",
                       crs="EPSG:32618", transform=from_origin(400000, 4200000, 10, 10), nodata=float("nan")) as dst:
        dst.write(np.full((1, 4, 4), 0.5, dtype="float32"))
        dst.update_tags(AGRICREDIT_PRODUCT="ndvi", ACQUISITION_DATE=date)


@pytest.fixture
def tile_folder(tmp_path):
    folder = tmp_path / "tiles"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    _ndvi_tif(folder / "a" / "S2_NDVI_20221215_T1.tif", "2022-12-15")
    _ndvi_tif(folder / "b" / "S2_NDVI_20221215_T2.tif", "2022-12-15")  # second tile, same date
    _ndvi_tif(folder / "a" / "S2_NDVI_20230110.tif", "2023-01-10")
    _ndvi_tif(folder / "a" / "S2_NDVI_20230720.tif", "2023-07-20")
    (folder / "notes.txt").write_text("not a tile")
    return folder


def test_discover_folder_groups_tiles_of_one_date(tile_folder):
    found = season.discover_acquisitions(tile_folder)
    assert [a.date for a in found] == [dt.date(2022, 12, 15), dt.date(2023, 1, 10), dt.date(2023, 7, 20)]
    assert len(found[0].paths) == 2 and all(p.is_absolute() for p in found[0].paths)


def test_discover_start_end_across_new_year(tile_folder):
    found = season.discover_acquisitions(tile_folder, start="2022-10-01", end="2023-06-30")
    assert [a.date.isoformat() for a in found] == ["2022-12-15", "2023-01-10"]
    with pytest.raises(InputError, match="start 2023-06-30 is after its end 2022-10-01"):
        season.discover_acquisitions(tile_folder, start="2023-06-30", end="2022-10-01")


def test_discover_manifest_relative_paths(tile_folder):
    manifest = tile_folder / "manifest.csv"
    manifest.write_text("date,sensor,path\n2023-01-10,s2-l2a,a/S2_NDVI_20230110.tif\n"
                        "2022-12-15,s2-l2a,a/S2_NDVI_20221215_T1.tif\n2022-12-15,s2-l2a,b/S2_NDVI_20221215_T2.tif\n")
    found = season.discover_acquisitions(manifest)
    assert [(a.date.isoformat(), len(a.paths), a.sensors) for a in found] == [
        ("2022-12-15", 2, ("s2-l2a",)), ("2023-01-10", 1, ("s2-l2a",))]
    manifest.write_text("date,sensor,path\n2023-01-10,s2-l2a,a/missing.tif\n")
    with pytest.raises(InputNotFoundError, match="row 2"):
        season.discover_acquisitions(manifest)
    manifest.write_text("when,path\n")
    with pytest.raises(SchemaError, match="date"):
        season.discover_acquisitions(manifest)


def test_discover_stac_item_collection(tile_folder):
    def item(ident, when, href):
        return {"type": "Feature", "id": ident, "properties": {"datetime": when, "platform": "sentinel-2a"},
                "assets": {"ndvi": {"href": href, "roles": ["data"]}, "thumbnail": {"href": "x.png"}}}

    stac = tile_folder / "items.json"
    stac.write_text(json.dumps({"type": "FeatureCollection", "features": [
        item("x1", "2022-12-15T10:30:00Z", "a/S2_NDVI_20221215_T1.tif"),
        item("x2", "2022-12-15T10:30:05Z", "./b/S2_NDVI_20221215_T2.tif"),
        item("x3", "2023-07-20T10:30:00Z", "a/S2_NDVI_20230720.tif"),
    ]}))
    found = season.discover_acquisitions(stac, end=dt.date(2023, 7, 20))
    assert [(a.date.isoformat(), len(a.paths), a.sensors) for a in found] == [
        ("2022-12-15", 2, ("sentinel-2a",)), ("2023-07-20", 1, ("sentinel-2a",))]
    stac.write_text(json.dumps({"type": "FeatureCollection", "features": [item("x", "2023-01-01", "https://e.org/a.tif")]}))
    with pytest.raises(InputError, match="remote"):
        season.discover_acquisitions(stac)


def test_discover_missing_source(tmp_path):
    with pytest.raises(InputNotFoundError, match="nope: no such file or folder"):
        season.discover_acquisitions([tmp_path / "nope"])


# ----------------------------------------------------------------------------- series and phenology


def test_plot_series_drops_low_valid_and_nan():
    table = pd.DataFrame({
        "plot_id": ["p"] * 4, "date": ["2023-05-01", "2023-05-11", "2023-05-21", "2023-05-31"],
        "ndvi_mean": [0.3, 0.9, np.nan, 0.5], "valid_frac": [1.0, 0.59, 1.0, 0.6], "cropped_area_mu": [0, 1, 2, 3],
    })
    s = season.plot_series(table, min_valid_fraction=0.6)["p"]
    assert s.dates.astype(str).tolist() == ["2023-05-01", "2023-05-31"]
    assert s.ndvi.tolist() == [0.3, 0.5] and s.n_acquisitions == 4
    with pytest.raises(SchemaError, match="valid_frac"):
        season.plot_series(table.drop(columns="valid_frac"))


def _double_logistic(t, t1=150.0, t2=250.0, k=0.08, base=0.2, amp=0.6):
    return base + amp / (1 + np.exp(-k * (t - t1))) - amp / (1 + np.exp(-k * (t - t2)))


def _analytic_crossings(t1=150.0, t2=250.0, k=0.08, lo=60.0, hi=340.0):
    """Exact 50 % crossings of the sampled-range curve, each side with its own base (as phenology())."""
    f = lambda t: _double_logistic(t, t1, t2, k)  # noqa: E731
    peak_t = (t1 + t2) / 2
    peak = f(peak_t)
    up = f(lo) + 0.5 * (peak - f(lo))
    down = f(hi) + 0.5 * (peak - f(hi))
    return brentq(lambda t: f(t) - up, lo, peak_t), brentq(lambda t: f(t) - down, peak_t, hi)


@pytest.mark.parametrize("step", [1, 5])
def test_phenology_matches_analytic_logistic(step):
    start = np.datetime64("2023-01-01")
    t = np.arange(59, 340, step).astype(float)  # day offsets from 1 January (doy - 1)
    dates = start + t.astype(int)
    feats = season.phenology(dates, _double_logistic(t))
    greenup, senescence = _analytic_crossings(lo=t[0], hi=t[-1])
    got_up = (feats["greenup_date"] - start).astype(int)
    got_down = (feats["senescence_date"] - start).astype(int)
    assert abs(got_up - greenup) <= 1 and abs(got_down - senescence) <= 1
    assert feats["season_length_days"] == pytest.approx(senescence - greenup, abs=0.5 if step == 1 else 1.5)
    assert feats["peak_ndvi"] == pytest.approx(_double_logistic(200.0), abs=1e-3)
    assert (feats["peak_date"] - start).astype(int) == pytest.approx(200, abs=step)
    # Integral of NDVI - base: the analytic integral of the curve minus its minimum.
    fine = np.linspace(t[0], t[-1], 200001)
    reference = np.trapezoid(_double_logistic(fine) - _double_logistic(t).min(), fine)
    assert feats["ndvi_integral"] == pytest.approx(reference, rel=0.01)


@pytest.mark.parametrize("method", ["whittaker", "savgol"])
def test_smoothed_phenology_noisy_sparse(method):
    rng = np.random.default_rng(3)
    start = np.datetime64("2023-01-01")
    t = np.arange(60, 340, 10)
    y = _double_logistic(t.astype(float)) + rng.normal(0, 0.015, len(t))
    days, curve = season.smooth_series(start + t, y, method)
    assert len(days) == t[-1] - t[0] + 1
    feats = season.phenology(days, curve)
    greenup, senescence = _analytic_crossings(lo=t[0], hi=t[-1])
    assert abs((feats["greenup_date"] - start).astype(int) - greenup) <= 5
    assert abs((feats["senescence_date"] - start).astype(int) - senescence) <= 5
    assert feats["peak_ndvi"] == pytest.approx(_double_logistic(200.0), abs=0.04)


def test_phenology_without_greenup_in_series():
    dates = np.datetime64("2023-06-01") + np.arange(0, 100, 10)
    feats = season.phenology(dates, np.linspace(0.8, 0.2, 10))  # starts at the peak
    assert np.isnat(feats["greenup_date"]) and not np.isnat(feats["senescence_date"])
    assert np.isnan(feats["season_length_days"])


def test_resample_doy_across_new_year():
    dates = np.datetime64("2022-12-21") + np.array([0, 20, 40])  # doy 355, 10 (2023), 30
    values = np.array([0.3, 0.5, 0.7])
    got = season.resample_doy(dates, values, np.array([355, 365, 10, 20, 30, 100]))
    # doy 365 of 2022 is 10 days after 2022-12-21; doy 20 of 2023 is 30 days after.
    np.testing.assert_allclose(got, [0.3, 0.4, 0.5, 0.6, 0.7, np.nan])


# ----------------------------------------------------------------------------- crop fit


def _observe(crop, dates, shift, vigor, rng, noise=0.02, gaps=0.3):
    y = vigor * template_ndvi(crop, doy(dates) - shift) + rng.normal(0, noise, len(dates))
    keep = rng.random(len(dates)) > gaps
    return dates[keep], y[keep]


def test_fit_recovers_shift_and_scale_exactly():
    dates = SUMMER_DATES
    y = 0.05 + 0.9 * template_ndvi("soybean", doy(dates) - 10)
    best = season.fit_crops(dates, y)[0]
    assert (best.crop, best.shift_days) == ("soybean", 10)
    assert best.scale == pytest.approx(0.9, abs=1e-9) and best.offset == pytest.approx(0.05, abs=1e-9)
    assert best.rmse == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("crop", CROPS)
def test_right_crop_ranks_first(crop):
    """Noise, cloud gaps, vigor and sowing shifts up to a week: the declared-true crop ranks first
    (maize/rice: first, or second behind its NDVI twin by less than half the mismatch margin)."""
    rng = np.random.default_rng(CROPS.index(crop))
    dates = WINTER_DATES if crop == "wheat" else SUMMER_DATES
    for _ in range(25):
        obs_dates, y = _observe(crop, dates, int(rng.integers(-7, 8)), rng.uniform(0.85, 1.05), rng)
        fits = season.fit_crops(obs_dates, y)
        if crop in NDVI_TWINS and fits[0].crop == NDVI_TWINS[crop]:
            assert fits[1].crop == crop and fits[1].score - fits[0].score < 0.01
        else:
            assert fits[0].crop == crop, [(f.crop, round(f.score, 3)) for f in fits]


@settings(max_examples=30, deadline=None)
@given(offset=st.floats(-0.3, 0.3), shift=st.integers(-20, 20))
def test_fit_invariant_to_offset(offset, shift):
    dates = SUMMER_DATES
    y = np.random.default_rng(1).normal(0, 0.03, len(dates)) + template_ndvi("maize", doy(dates) - shift)
    base = {f.crop: f for f in season.fit_crops(dates, y)}
    moved = {f.crop: f for f in season.fit_crops(dates, y + offset)}
    for crop in base:
        assert moved[crop].rmse == pytest.approx(base[crop].rmse, abs=1e-9)
        assert moved[crop].shift_days == base[crop].shift_days


def test_season_window_across_new_year():
    lo, hi = season.season_window_for("wheat", np.datetime64("2022-09-20"), np.datetime64("2023-07-16"))
    assert (str(lo), str(hi)) == ("2022-10-01", "2023-06-30")
    lo, hi = season.season_window_for("maize", np.datetime64("2023-03-01"), np.datetime64("2023-11-07"))
    assert (str(lo), str(hi)) == ("2023-04-01", "2023-10-31")


# ----------------------------------------------------------------------------- checks and vigor


def _codes(result, plot_id):
    return [f.code for f in result.flags[plot_id]]


def test_honest_plots_are_not_flagged_and_mismatch_is():
    rng = np.random.default_rng(7)
    plots = [Plot(f"m{i}", "maize", int(rng.integers(-10, 11)), rng.uniform(0.9, 1.05)) for i in range(6)]
    plots += [Plot(f"s{i}", "soybean", int(rng.integers(-10, 11)), rng.uniform(0.9, 1.05)) for i in range(6)]
    plots += [Plot("x1", "wheat"), Plot("x2", "soybean", 5)]
    table = synth_table(plots, SUMMER_DATES)
    declared = {p.plot_id: p.crop for p in plots} | {"x1": "maize", "x2": "wheat"}
    result = season.assess_season(table, declared, {p.plot_id: p.area_mu for p in plots})
    for p in plots[:12]:
        assert _codes(result, p.plot_id) == [], p.plot_id
    for pid, best in (("x1", "wheat"), ("x2", "soybean")):
        (flag,) = result.flags[pid]
        assert flag.code == "CROP_MISMATCH" and flag.figures["best_crop"] == best
        assert flag.figures["declared_score"] - flag.figures["best_score"] > 0.05
    row = result.plots.set_index("plot_id").loc["x1"]
    assert row["flags"] == "CROP_MISMATCH" and row["best_crop"] == "wheat"
    assert json.loads(row["flag_figures"])["CROP_MISMATCH"]["declared_crop"] == "maize"


@pytest.mark.parametrize("flat", [0.15, -0.2, 0.25])  # bare soil, water, built-up
def test_bare_and_water_are_not_cultivated(flat):
    table = synth_table([Plot("b", None, flat_ndvi=flat), Plot("m", "maize")], SUMMER_DATES, noise=0.02)
    result = season.assess_season(table, {"b": "maize", "m": "maize"}, {"b": 6.0, "m": 6.0})
    assert _codes(result, "b") == ["NOT_CULTIVATED"] and _codes(result, "m") == []
    figures = result.flags["b"][0].figures
    assert figures["amplitude"] < 0.2 and figures["cropped_share"] < 0.5


def test_green_but_mostly_uncropped_plot_is_not_cultivated():
    """The crop greens up, but on less than half the drawn area at the peak."""
    table = synth_table([Plot("half", "maize", area_mu=6.0)], SUMMER_DATES)
    result = season.assess_season(table, {"half": "maize"}, {"half": 15.0})
    (flag,) = result.flags["half"]
    assert flag.code == "NOT_CULTIVATED" and flag.figures["cropped_share"] == pytest.approx(0.4, abs=0.02)
    ok = season.assess_season(table, {"half": "maize"}, {"half": 6.5})
    assert ok.flags["half"] == []


def test_cloudy_season_is_cloud_insufficient_only():
    """Clouded on every date of the maize window but two: review, and no other satellite flag —
    not even for a bare plot or a declared crop that would mismatch."""
    window = (SUMMER_DATES >= np.datetime64("2023-04-01")) & (SUMMER_DATES <= np.datetime64("2023-10-31"))
    cloudy = window.copy()
    cloudy[np.flatnonzero(window)[[3, 9]]] = False
    plots = [Plot("c1", "maize", cloudy=cloudy), Plot("c2", None, cloudy=cloudy), Plot("c3", "wheat", cloudy=cloudy)]
    plots += [Plot(f"m{i}", "maize", vigor=1.0) for i in range(6)]
    table = synth_table(plots, SUMMER_DATES)
    result = season.assess_season(table, {p.plot_id: "maize" for p in plots}, {p.plot_id: 6.0 for p in plots})
    for pid in ("c1", "c2", "c3"):
        (flag,) = result.flags[pid]
        assert flag.code == "CLOUD_INSUFFICIENT"
        assert flag.figures["valid_in_window"] == 2 and flag.figures["required"] == 3
        assert (flag.figures["window_start"], flag.figures["window_end"]) == ("2023-04-01", "2023-10-31")
    row = result.plots.set_index("plot_id").loc["c1"]
    assert row["vigor_factor"] == 1.0 and row["peer_count"] == 0


def test_winter_wheat_across_new_year():
    rng = np.random.default_rng(11)
    plots = [Plot(f"w{i}", "wheat", int(rng.integers(-10, 11)), rng.uniform(0.9, 1.05)) for i in range(6)]
    plots.append(Plot("wm", "maize"))  # a maize season seen in the wheat run's summer end
    table = synth_table(plots, WINTER_DATES, seed=2)
    result = season.assess_season(table, {p.plot_id: "wheat" for p in plots}, {p.plot_id: 6.0 for p in plots},
                                  smoothing="whittaker")
    frame = result.plots.set_index("plot_id")
    for i in range(6):
        assert _codes(result, f"w{i}") == []
        row = frame.loc[f"w{i}"]
        assert row["best_crop"] == "wheat" and row["window_start"] == "2022-10-01" and row["window_end"] == "2023-06-30"
        # Green-up (day 70 ± shift) and senescence (day 152 ± shift) of 2023, from a series starting in 2022.
        shift = plots[i].shift
        assert abs(doy(np.datetime64(row["greenup_date"])) - (70 + shift)) <= 8
        assert abs(doy(np.datetime64(row["senescence_date"])) - (152 + shift)) <= 8
    assert "CROP_MISMATCH" in _codes(result, "wm")


def test_low_vigor_only_for_planted_low_plots():
    rng = np.random.default_rng(5)
    plots = [Plot(f"h{i}", "maize", int(rng.integers(-7, 8)), rng.uniform(0.92, 1.02)) for i in range(20)]
    plots += [Plot("low1", "maize", vigor=0.7), Plot("low2", "maize", 3, vigor=0.72)]
    # An honest plot clouded over its whole plateau (10 June - 25 August): its observed
    # maximum is low, but the peak of the template fitted to both slopes is not.
    peak_clouded = (SUMMER_DATES >= np.datetime64("2023-06-10")) & (SUMMER_DATES <= np.datetime64("2023-08-25"))
    plots.append(Plot("hc", "maize", vigor=0.97, cloudy=peak_clouded))
    plots.append(Plot("sliver", "maize", vigor=0.6))  # a mixed-pixel sliver: no vigor judgement
    table = synth_table(plots, SUMMER_DATES, seed=4)
    table.loc[table["plot_id"] == "sliver", "pixel_count"] = 0.8
    result = season.assess_season(table, {p.plot_id: "maize" for p in plots}, {p.plot_id: 6.0 for p in plots})
    flagged = {pid for pid, flags in result.flags.items() if any(f.code == "LOW_VIGOR" for f in flags)}
    assert flagged == {"low1", "low2"}
    frame = result.plots.set_index("plot_id")
    assert frame.loc["hc", "peak_ndvi"] < frame.loc["hc", "peer_median_peak"] - 0.1  # observed peak alone would flag it
    assert frame.loc["low1", "vigor_factor"] == pytest.approx(0.7 * 0.85 / frame.loc["low1", "peer_median_peak"], abs=0.05)
    assert frame["vigor_factor"].between(0.7, 1.1).all()
    # Peer median: the median of the eligible plots' peaks (plain numpy).
    assert frame.loc["h0", "peer_median_peak"] == pytest.approx(np.median(frame["vigor_peak_ndvi"].drop("sliver")))
    # The vigor peak is the fitted template's: close to the true peak (0.85 x vigor) despite noise.
    truth = {p.plot_id: 0.85 * p.vigor for p in plots}
    error = (frame["vigor_peak_ndvi"] - pd.Series(truth)).abs()
    assert error.drop("hc").max() < 0.03 and error["hc"] < 0.06
    assert frame.loc["sliver", "peer_count"] == 0 and frame.loc["sliver", "vigor_factor"] == 1.0
    assert frame.loc["h0", "peer_count"] == 23


def test_uniform_season_flags_nobody():
    """The lowest of a uniform set is under the percentile but not the gap: no LOW_VIGOR."""
    plots = [Plot(f"u{i}", "soybean", vigor=0.95 + 0.005 * i) for i in range(20)]
    result = season.assess_season(synth_table(plots, SUMMER_DATES, noise=0.005), {p.plot_id: "soybean" for p in plots})
    assert all(flags == [] for flags in result.flags.values())
    assert result.plots.set_index("plot_id").loc["u0", "peak_percentile"] < 10


def test_unknown_declared_crop_is_an_error():
    table = synth_table([Plot("a", "maize")], SUMMER_DATES)
    with pytest.raises(SchemaError, match="cotton"):
        season.assess_season(table, {"a": "cotton"})


def test_plots_without_observations_go_to_review():
    table = synth_table([Plot("a", "maize")], SUMMER_DATES)
    result = season.assess_season(table, {"a": "maize", "b": "maize"}, plot_ids=["a", "b"])
    (flag,) = result.flags["b"]
    assert flag.code == "NO_COVERAGE" and flag.figures["acquisitions"] == 0
    assert result.flags["a"] == []
    with pytest.raises(InputError, match="no observations"):
        season.assess_season(table.iloc[:0], plot_ids=["a"])


def test_season_chart_png(tmp_path):
    import matplotlib.image

    table = synth_table([Plot("a", "wheat", 5), Plot("b", None)], WINTER_DATES)
    result = season.assess_season(table, {"a": "maize"})
    season.season_chart(result, "a", tmp_path / "a.png")
    image = matplotlib.image.imread(tmp_path / "a.png")
    assert image.shape[:2] == (450, 800)
    with pytest.raises(InputError, match="not in this run"):
        season.season_chart(result, "zz", tmp_path / "z.png")
    assert not (tmp_path / "z.png").exists()


@given(st.lists(st.sampled_from([0.5, 0.6, 0.62, 0.7, 0.8, 0.81]) | st.floats(0.3, 0.9), min_size=5, max_size=40))
def test_peer_percentiles_match_scipy_percentileofscore(peaks):
    from scipy.stats import percentileofscore

    from agricredit.season import peer_vigor

    plots = pd.DataFrame({"plot_id": [f"P{i}" for i in range(len(peaks))], "declared_crop": "maize",
                          "vigor_peak_ndvi": peaks, "pixel_count": 50.0})
    out = peer_vigor(plots, {f"P{i}": [] for i in range(len(peaks))}, min_peers=5)
    for k, peak in enumerate(peaks):
        others = peaks[:k] + peaks[k + 1:]
        assert out["peak_percentile"].iloc[k] == pytest.approx(percentileofscore(others, peak, kind="mean"))
    assert (out["peer_count"] == len(peaks)).all()
    assert out["peer_median_peak"].iloc[0] == pytest.approx(np.median(peaks))


def test_only_a_low_vigor_plot_is_marked_down():
    from agricredit.season import peer_vigor

    peaks = [0.80, 0.82, 0.78, 0.84, 0.79, 0.81, 0.55]
    plots = pd.DataFrame({"plot_id": [f"P{i}" for i in range(7)], "declared_crop": "soybean",
                          "vigor_peak_ndvi": peaks, "pixel_count": 50.0})
    flags = {f"P{i}": [] for i in range(7)}
    out = peer_vigor(plots, flags, low_vigor_percentile=10.0, low_vigor_min_gap=0.1, vigor_factor_max=1.0)
    assert [f.code for f in flags["P6"]] == ["LOW_VIGOR"]
    assert out["vigor_factor"].iloc[6] == 0.7  # 0.55 / 0.80 = 0.69, clipped to vigor_factor_min
    assert (out["vigor_factor"].iloc[:6] == 1.0).all()  # below-median honest plots are not marked down
    bonus = peer_vigor(plots, {f"P{i}": [] for i in range(7)}, vigor_factor_max=1.1)
    assert bonus["vigor_factor"].iloc[3] == pytest.approx(0.84 / np.median(peaks))
    assert bonus["vigor_factor"].iloc[2] == 1.0


def test_plots_without_a_declared_crop_have_no_peers():
    from agricredit.season import peer_vigor

    plots = pd.DataFrame({"plot_id": [f"P{i}" for i in range(7)],
                          "declared_crop": ["maize"] * 6 + [np.nan],  # pandas reads a missing crop as NaN
                          "vigor_peak_ndvi": [0.8, 0.81, 0.79, 0.8, 0.82, 0.78, 0.3], "pixel_count": 50.0})
    out = peer_vigor(plots, {f"P{i}": [] for i in range(7)})
    assert out["peer_count"].tolist() == [6] * 6 + [0] and out["vigor_factor"].iloc[6] == 1.0


# ----------------------------------------------------------------------------- maize / soybean swaps


def _policy_options():
    from agricredit.policy import load_policy

    return season.season_options(load_policy(None))


def test_calendar_prior_separates_maize_from_soybean():
    """Maize shifted ~18 days is, to NDVI, a soybean: only the calendar prior keeps them apart."""
    options = _policy_options()
    y = template_ndvi("soybean", doy(SUMMER_DATES))
    fits = {f.crop: f for f in season.fit_crops(SUMMER_DATES, y, max_sowing_shift_days=options["max_sowing_shift_days"],
                                                shift_penalty=options["shift_penalty"])}
    maize = fits["maize"]
    assert maize.shift_days > 14 and maize.rmse < 0.02  # the shape alone nearly matches
    prior = options["shift_penalty"] * (maize.shift_days / options["max_sowing_shift_days"]) ** 2
    assert maize.score == pytest.approx(maize.rmse + prior, abs=1e-12)
    assert maize.score - fits["soybean"].score > options["crop_mismatch_margin"]
    # The former policy (penalty 0.02, margin 0.05) let the swap through.
    weak = {f.crop: f for f in season.fit_crops(SUMMER_DATES, y, max_sowing_shift_days=21, shift_penalty=0.02)}
    assert weak["maize"].score - weak["soybean"].score < 0.05


def test_swapped_maize_soybean_declarations_are_flagged_at_the_policy():
    """Both directions flagged; the same plots declared truthfully are not (noise 0.02, sowing ±6 days)."""
    rng = np.random.default_rng(11)
    plots = [Plot(f"{crop[0]}{i}", crop, int(rng.integers(-6, 7)), rng.uniform(0.9, 1.05))
             for crop in ("maize", "soybean") for i in range(8)]
    table = synth_table(plots, SUMMER_DATES, seed=3)
    truthful = {p.plot_id: p.crop for p in plots}
    swapped = {pid: {"maize": "soybean", "soybean": "maize"}[crop] for pid, crop in truthful.items()}
    honest = season.assess_season(table, truthful, **_policy_options())
    assert all(honest.flags[p.plot_id] == [] for p in plots)
    lying = season.assess_season(table, swapped, **_policy_options())
    for p in plots:
        (flag,) = lying.flags[p.plot_id]
        assert (flag.code, flag.figures["declared_crop"]) == ("CROP_MISMATCH", swapped[p.plot_id])
        assert flag.figures["best_crop"] in {p.crop, NDVI_TWINS.get(p.crop)}  # maize or its twin rice
