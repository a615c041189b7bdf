"""The season rows' shortcuts (issue 11), each against the plain per-plot way written here.

:func:`agricredit.season.season_rows` pauses the cyclic garbage collector and looks up what a plot's ranked fits tell
of its declaration once per ranking; the rows must be the same as without those shortcuts.
"""

from __future__ import annotations

import gc
import itertools

import pytest

import agricredit.season as season
from agricredit.cropfit import SeasonFit, SystemFit, explanations_for
from agricredit.season import Declared, _chosen_index, _ranking_of

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
