"""The season rows' shortcuts (issue 11), each against the plain per-plot way written here.

:func:`agricredit.season.season_rows` pauses the cyclic garbage collector, looks up what a plot's ranked fits tell of
its declaration once per ranking and computes the fits' RMSEs in the declared seasons' windows for all plots at once;
the rows must be the same, to the bit, as without those shortcuts.
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools

import numpy as np
import pytest

import agricredit.season as season
from agricredit.cropfit import (STEEPNESS_DAYS, SeasonFit, SystemFit, explanations_for, fit_explanations_many,
                                fitted_curves)
from agricredit.templatecheck import Declared, _chosen_index, _ranking_of, _window_mask, _window_rmses

#: Declarations of region ``ncp``: none, one crop, a slot, a double crop in either order, a crop no system grows
#: there with another (soybean and maize are both summer crops), a crop without a calendar there.
DECLARATIONS = [(), (Declared("maize"),), (Declared("maize", "spring"),), (Declared("maize", "summer"),),
                (Declared("wheat"), Declared("maize")), (Declared("maize"), Declared("wheat")),
                (Declared("soybean"), Declared("maize")), (Declared("rice"),)]


def _fits(names, region):
    """Fits ranked as ``names``, each season of its explanation once (figures irrelevant here)."""
    seasons = {e.name: e.seasons for e in explanations_for(region)}
    return [SystemFit(name, 0.1, 0.1, 0.2, tuple(SeasonFit(x, 0, 0.5, 1.0, {}) for x in seasons[name]))
            for name in names]


@pytest.mark.parametrize("region", ["ncp", "northeast"])
def test_ranking_lookup_is_the_plain_per_plot_choice_for_every_ranking_and_declaration(region):
    names = [e.name for e in explanations_for(region)]
    for ranked, declared in itertools.product(itertools.permutations(names), DECLARATIONS):
        fits = _fits(ranked, region)
        text, chosen_at, own_at = _ranking_of(region, ranked, declared)
        # the plain way (season.py before issue 11): the first fit holding every declared crop
        plain_at = _chosen_index(fits, declared)
        chosen = fits[plain_at if declared and plain_at is not None else 0]
        plain_own = [x for x in chosen.seasons if not declared or any(d.matches(x.season) for d in declared)]
        assert (text, chosen_at) == (";".join(f.name for f in fits), plain_at)
        assert [chosen.seasons[i] for i in own_at] == plain_own


def test_a_double_crop_declaration_chooses_the_rotation_and_both_its_seasons():
    ranked = ("maize:summer", "wheat:winter", "wheat-soybean", "wheat-maize", "soybean:summer", "maize:spring")
    assert _ranking_of("ncp", ranked, (Declared("wheat"), Declared("maize"))) == (";".join(ranked), 3, (0, 1))
    assert _ranking_of("ncp", ranked, (Declared("maize"),)) == (";".join(ranked), 0, (0,))
    # no system grows soybean and maize together: the best fit, with its declared seasons, is shown
    assert _ranking_of("ncp", ranked, (Declared("soybean"), Declared("maize"))) == (";".join(ranked), None, (0,))
    assert _ranking_of("ncp", (), ()) == ("", None, ())


def test_season_rows_pauses_the_collector_and_restarts_it(monkeypatch):
    seen = []

    def fit_plots(*args, **kwargs):
        seen.append(gc.isenabled())
        raise RuntimeError("stop")

    monkeypatch.setattr(season, "_fit_plots", fit_plots)
    empty = season.pd.DataFrame(columns=["plot_id", "date", "valid_frac", "cropped_area_mu", "ndvi_mean"])
    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="stop"):  # restarted even when the rows fail
        season.season_rows(empty, region="ncp", period=("2023-01-01", "2023-12-31"), plot_ids=["p"])
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:  # a collector paused by the caller stays paused
        with pytest.raises(RuntimeError, match="stop"):
            season.season_rows(empty, region="ncp", period=("2023-01-01", "2023-12-31"), plot_ids=["p"])
        assert seen == [False, False] and not gc.isenabled()
    finally:
        gc.enable()


def _plain_window_rmse(fits, declared, dates, ndvi):
    """The fits' RMSE in the declared seasons' window, one plot at a time (season.py before issue 11)."""
    chosen_at = _chosen_index(fits, declared) if declared else None
    if chosen_at is None:
        return None
    own = [x for x in fits[chosen_at].seasons if any(d.matches(x.season) for d in declared)]
    width = dt.timedelta(days=STEEPNESS_DAYS)
    inside = _window_mask(dates, [(x.dates["greenup"] - width, x.dates["senescence"] + width) for x in own])
    if not inside.any():
        return None
    residual = fitted_curves(fits, dates)[:, inside] - ndvi[inside]
    return np.sqrt(np.mean(residual**2, axis=1))


def test_window_rmses_of_all_plots_are_each_plots_own_to_the_bit():
    rng = np.random.default_rng(11)
    start = np.datetime64("2022-10-01")
    # a dense year (windows of 8 and more days: numpy sums those pairwise), a sparse one, and a winter alone
    calendars = [start + np.arange(0, 365, 7), start + np.arange(0, 365, 30), start + np.arange(90, 160, 10)]
    plots = []
    for days in calendars:
        t = (days - start).astype(float)
        ys = 0.2 + 0.5 * np.exp(-((t - rng.uniform(150, 300, (6, 1))) / 25.0) ** 2) + rng.normal(0, 0.03, (6, len(t)))
        fitted = fit_explanations_many(days, ys, "ncp", period=(np.datetime64("2023-01-01"), np.datetime64("2023-12-31")))
        for fits, y, declared in zip(fitted, ys, itertools.cycle(DECLARATIONS)):
            plots.append((fits, declared, days, y))
    plots.append(([], (Declared("maize"),), calendars[0][:2], np.array([0.3, 0.4])))  # too few observations to fit
    found = _window_rmses("ncp", plots)
    expected = [_plain_window_rmse(*plot) for plot in plots]
    assert [x is None for x in found] == [x is None for x in expected]
    assert sum(x is not None for x in found) >= 10 and any(x is None and plot[0] for x, plot in zip(found, plots))
    for a, b in zip(found, expected):
        if a is not None:
            assert a.tobytes() == b.tobytes()
