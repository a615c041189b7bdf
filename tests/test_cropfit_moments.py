"""The crop fit's fast search (issue 11): moments and shape tables give the fits of the plain search.

The plain search is kept here as the reference: every shift combination of the
coordinate descent is solved on its design matrix by :func:`agricredit.cropfit._bounded_fit`
(itself checked against ``scipy.optimize.lsq_linear`` in ``test_cropcheck.py``). The
moment solver is checked against ``lsq_linear`` directly, and the fitted curves
against the double logistic written out here.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from scipy.optimize import lsq_linear

import season_truth as truth
from agricredit import cropfit
from agricredit.errors import InputError
from agricredit.seeds import load_calendars, load_crops

PERIOD = (np.datetime64("2022-10-01"), np.datetime64("2023-11-30"))


def _reference_fits(explanation, days, ys, *, max_shift=30, shift_penalty=0.05, min_scale=0.4):
    """The plain search: the coarse grid then day by day, each season in turn, every combination on its design
    matrix (the search as it was before the moments, all plots at once)."""
    t = days.astype(np.int64).astype(float)
    seasons = explanation.seasons
    year = cropfit.harvest_year_for(seasons[-1], *PERIOD)
    years = [year if i == len(seasons) - 1 or seasons[i].dates(year)["harvest"] <= seasons[-1].dates(year)["sowing"]
             else year + 1 for i in range(len(seasons))]
    crops = load_crops()
    ranges = np.array([crops[s.crop].peak_ndvi - crops[s.crop].base_ndvi for s in seasons])
    low, high = min_scale * ranges, 2.0 * ranges
    n_plots, plots = len(ys), np.arange(len(ys))

    def evaluate(combos):  # P × V × K delays: every combination solved on its design matrix
        flat = combos.reshape(-1, len(seasons))
        shifts = np.cumsum(flat, axis=1)
        shapes = np.stack([cropfit._shape(s, yr, t[None, :] - shifts[:, [j]])
                           for j, (s, yr) in enumerate(zip(seasons, years))], axis=2)
        sse, offset, amp = cropfit._bounded_fit(np.repeat(ys, combos.shape[1], axis=0), shapes, low, high)
        rmse = np.sqrt(sse / len(t))
        score = rmse + shift_penalty * np.mean((flat / max_shift) ** 2, axis=1)
        shape = combos.shape[:2]
        return score.reshape(shape), rmse.reshape(shape), offset.reshape(shape), amp.reshape(shape + (-1,))

    coarse = np.array(sorted(set(range(-max_shift, max_shift + 1, 3)) | {0, max_shift}), dtype=float)
    centre = np.zeros((n_plots, len(seasons)))
    for fine in (False, True):
        for _ in range(2 if len(seasons) > 1 else 1):
            for j in range(len(seasons)):
                values = (np.clip(centre[:, [j]] + np.arange(-2, 3), -max_shift, max_shift) if fine
                          else np.broadcast_to(coarse, (n_plots, len(coarse))))
                combos = np.repeat(centre[:, None, :], values.shape[1], axis=1)
                combos[:, :, j] = values
                centre = combos[plots, np.argmin(evaluate(combos)[0], axis=1)]
    score, rmse, offset, amp = evaluate(centre[:, None, :])
    return [(explanation.name, float(score[p, 0]), float(rmse[p, 0]), float(offset[p, 0]),
             [int(s) for s in np.cumsum(centre[p])], amp[p, 0].tolist()) for p in plots]


def _series(seed: int, days: np.ndarray) -> np.ndarray:
    """Random series, random walks, the templates themselves (shifted, scaled, noisy) and the independent
    generator's crop seasons (``season_truth``)."""
    rng = np.random.default_rng(seed)
    t = days.astype(np.int64).astype(float)
    walks = 0.3 + np.cumsum(rng.normal(0, 0.08, (20, len(days))), axis=1)
    templates = []
    for explanation in cropfit.explanations_for("ncp") * 4:
        ndvi = np.full(len(t), rng.uniform(0.1, 0.25)) + rng.normal(0, 0.015, len(t))
        shift = 0.0
        for season in explanation.seasons:
            shift += rng.integers(-35, 36)  # now and then beyond the largest shift searched
            year = cropfit.harvest_year_for(season, *PERIOD)
            ndvi += rng.uniform(0.2, 1.2) * cropfit._shape(season, year, t - shift)
        templates.append(ndvi)
    plots = truth.make_plots("ncp", 2, seed, scenarios={"clear": 1.0}, n_bare=2)
    crops = []
    for plot in plots:  # each season's canopy over the base, as season_truth draws it, with noise
        ndvi = np.full(len(t), plot.params["base"])
        for s in plot.params["seasons"]:
            bump = (s["peak_ndvi"] - plot.params["base"]) * truth._canopy(t, s["sowing"], s["peak"], s["harvest"],
                                                                           s["winter"])
            ndvi = np.maximum(ndvi, plot.params["base"] + bump)
        crops.append(ndvi + rng.normal(0, 0.02, len(t)))
    return np.vstack([rng.uniform(0.05, 0.9, (20, len(days))), walks, np.array(templates), np.array(crops)])


@pytest.mark.parametrize(("seed", "n_days"), [(1, 3), (2, 6), (3, 9), (4, 30)])
def test_the_search_on_moments_finds_the_fits_of_the_plain_search(seed, n_days):
    rng = np.random.default_rng(seed)
    days = np.sort(PERIOD[0] + rng.choice(int((PERIOD[1] - PERIOD[0]).astype(int)), n_days, replace=False))
    ys = _series(seed, days)
    fast = cropfit.fit_explanations_many(days, ys, "ncp", period=PERIOD, min_template_scale=0.4)
    for explanation in cropfit.explanations_for("ncp"):
        reference = _reference_fits(explanation, days, ys)
        for plot_fits, (name, score, rmse, offset, shifts, amp) in zip(fast, reference):
            fit = next(f for f in plot_fits if f.name == name)
            assert [s.shift_days for s in fit.seasons] == shifts  # the same combination chosen
            assert (fit.score, fit.rmse, fit.offset) == pytest.approx((score, rmse, offset), rel=1e-9, abs=1e-12)
            assert [s.amplitude for s in fit.seasons] == pytest.approx(amp, rel=1e-9, abs=1e-12)


def test_many_plots_in_several_blocks_get_the_fits_each_gets_alone(monkeypatch):
    days = PERIOD[0] + np.arange(0, 420, 25)
    ys = _series(9, days)
    monkeypatch.setattr(cropfit, "FIT_BLOCK_PLOTS", 7)  # blocks that split the series unevenly
    together = cropfit.fit_explanations_many(days, ys, "delmarva", period=PERIOD)
    alone = [cropfit.fit_explanations(days, y, "delmarva", period=PERIOD) for y in ys]
    assert together == alone


def test_plots_fitted_alike_share_their_season_fits_and_the_others_do_not():
    days = PERIOD[0] + np.arange(0, 420, 25)
    ys = _series(3, days)
    copy = len(ys)
    ys = np.vstack([ys, ys[0]])  # the last plot is the first one again
    fits = [{f.name: f for f in plot_fits} for plot_fits in cropfit.fit_explanations_many(days, ys, "ncp", period=PERIOD)]
    alone = [{f.name: f for f in cropfit.fit_explanations(days, y, "ncp", period=PERIOD)} for y in ys]
    assert fits == alone
    for name, fit in fits[0].items():
        assert all(a is b for a, b in zip(fit.seasons, fits[copy][name].seasons))  # one object for the same values
        for other in fits[1:copy]:
            assert all(a is not b for a, b in zip(fit.seasons, other[name].seasons)
                       if (a.shift_days, a.amplitude) != (b.shift_days, b.amplitude))


def _centred_moments(y, g):
    yc, gc = y - y.mean(), g - g.mean(axis=0)
    k = g.shape[1]
    return (np.array(yc @ yc), [np.array(yc @ gc[:, j]) for j in range(k)],
            [np.array(gc[:, j] @ gc[:, j]) for j in range(k)], np.array(gc[:, 0] @ gc[:, -1]) if k == 2 else None)


@pytest.mark.parametrize("k", [1, 2])
def test_the_moment_solver_finds_the_bounded_optimum_scipy_finds(k):
    rng = np.random.default_rng(40 + k)
    low, high = np.array([0.2, 0.3])[:k], np.array([0.9, 1.2])[:k]
    for trial in range(300):
        n = int(rng.integers(3, 12))
        g = rng.random((n, k))
        if trial % 10 == 1:
            g[:, 0] = 0.0  # a season outside the observations: no information on its amplitude
        if trial % 10 == 2 and k == 2:
            g[:, 1] = 0.5 * g[:, 0] + 0.1  # two collinear seasons
        truth_amp = rng.uniform(-0.5, 1.6, k)  # often outside the bounds: the optimum lies on them
        y = 0.2 + g @ truth_amp + rng.normal(0, 0.03, n) * (trial % 3 != 0)  # a third exact
        moments = _centred_moments(y, g)
        sse = cropfit._least_sse(*moments, low, high)
        reference = lsq_linear(np.column_stack([np.ones(n), g]), y, bounds=(np.r_[-np.inf, low], np.r_[np.inf, high]),
                               method="bvls", tol=1e-14)
        assert float(sse) == pytest.approx(float(np.sum(reference.fun**2)), rel=1e-7, abs=1e-12)


def test_the_moment_solver_keeps_only_feasible_amplitudes():
    # y = 0.1 + 2 g exactly; the amplitude may reach 1 only: the optimum is at the bound, SSE worked out by hand.
    g = np.array([[0.0], [0.5], [1.0]])
    y = 0.1 + 2.0 * g[:, 0]
    moments = _centred_moments(y, g)
    # at a = 1 the residual y - g = 0.1 + g has mean 0.6 and deviations -0.5, 0, 0.5
    assert float(cropfit._least_sse(*moments, np.array([0.2]), np.array([1.0]))) == pytest.approx(0.5)
    assert float(cropfit._least_sse(*moments, np.array([0.2]), np.array([2.0]))) == pytest.approx(0.0, abs=1e-15)
    assert float(cropfit._least_sse(*moments, np.array([0.2]), np.array([2.0 + 1e-6]))) == pytest.approx(0.0, abs=1e-15)
    assert float(cropfit._least_sse(*moments, np.array([0.2]), np.array([2.0 - 1e-6]))) > 0.0


def _logistic_curve(fit, days):
    """The fit's NDVI from the double logistic of the module docstring, written out here."""
    t = days.astype(np.int64).astype(float)

    def rise(x):
        return 1.0 / (1.0 + np.exp(-x))

    value = np.full(len(t), fit.offset)
    for x in fit.seasons:
        calendar = x.season.dates((x.dates["harvest"] - dt.timedelta(days=x.shift_days)).year)
        day = {k: (d - dt.date(1970, 1, 1)).days + x.shift_days for k, d in calendar.items()}
        span = np.arange(day["greenup"] - 60, day["senescence"] + 60, dtype=float)
        top = np.max(rise((span - day["greenup"]) / 8.0) * rise(-(span - day["senescence"]) / 8.0))
        fall = rise(-(t - day["senescence"]) / 8.0)
        shape = rise((t - day["greenup"]) / 8.0) * fall / top
        if x.season.slot == "winter":
            shape = np.maximum(shape, 0.25 * rise((t - day["sowing"] - 20) / 8.0) * fall)
        value += x.amplitude * shape
    return value


def test_fitted_curves_of_many_fits_are_each_fits_double_logistic():
    days = PERIOD[0] + np.arange(0, 420, 9)
    ys = _series(5, days)[::4]
    fits = [f for plot_fits in cropfit.fit_explanations_many(days, ys, "ncp", period=PERIOD) for f in plot_fits]
    assert {len(f.seasons) for f in fits} == {1, 2} and any(s.season.slot == "winter" for f in fits for s in f.seasons)
    curves = cropfit.fitted_curves(fits, days)
    assert curves.shape == (len(fits), len(days))
    for fit, row in zip(fits, curves):
        np.testing.assert_allclose(row, _logistic_curve(fit, days), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(fit.curve(days), row)
        np.testing.assert_array_equal(fit.fitted, row)  # the NDVI of the fit on the days fitted, to the bit
        assert not fit.fitted.flags.writeable
    assert cropfit.fitted_curves([], days).shape == (0, len(days))


def test_a_year_of_three_seasons_is_refused():
    calendar = load_calendars()["ncp"]
    seasons = tuple(calendar.values())[:1] * 3
    with pytest.raises(InputError, match="one or two"):
        cropfit._templates(cropfit.Explanation("triple", seasons), np.arange(3.0) + 19000, PERIOD, max_shift=30,
                           min_scale=0.4)


def test_a_curve_keeps_its_season_when_the_shift_moves_the_harvest_into_the_next_year():
    # Delmarva's double-crop soybean is harvested on 10 November: 60 days later is 9 January 2024.
    soybean = load_calendars()["delmarva"]["soybean:summer"]
    calendar = soybean.dates(2023)
    moved = {k: d + dt.timedelta(days=60) for k, d in calendar.items()}
    assert moved["harvest"] == dt.date(2024, 1, 9)
    fit = cropfit.SystemFit("soybean:summer", 0.0, 0.0, 0.2, (cropfit.SeasonFit(soybean, 60, 0.5, 0.7, moved),))
    assert fit.seasons[0].harvest_year == 2023
    days = np.arange(np.datetime64("2023-08-01"), np.datetime64("2024-01-31"), 7)
    np.testing.assert_allclose(fit.curve(days), _logistic_curve(fit, days), rtol=1e-12, atol=1e-12)
    peak = days[np.argmax(fit.curve(days))]  # the canopy peaks 60 days after the calendar's 30 August
    assert abs((peak - np.datetime64("2023-10-29")).astype(int)) <= 7


def test_each_plots_fits_are_ranked_by_score_then_name():
    days = PERIOD[0] + np.arange(0, 420, 25)
    ys = _series(5, days)
    ys[0] = 0.3  # flat: every explanation at its smallest amplitude
    ranked = cropfit.fit_explanations_many(days, ys, "ncp", period=PERIOD)
    names = sorted(e.name for e in cropfit.explanations_for("ncp"))
    for plot_fits in ranked:
        assert sorted(f.name for f in plot_fits) == names
        assert plot_fits == sorted(plot_fits, key=lambda f: (f.score, f.name))
    assert len({tuple(f.name for f in plot_fits) for plot_fits in ranked}) > 1  # not one order for all
