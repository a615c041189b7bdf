"""The pieces batch maps per chunk, without a cluster: plots fitted together as alone, chunks merged as one run."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agricredit.acquisitions import discover_acquisitions, observation_table
from agricredit.batch import chunk_plots
from agricredit.cropfit import fit_explanations, fit_explanations_many
from agricredit.errors import InputError
from agricredit.evidence import Evidence, plot_evidence
from agricredit.plots import area_mu, load_plots
from agricredit.policy import load_policy
from agricredit.season import finish_season, season_options, season_period, split_season_options

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_tiles"
DATES = np.array(["2023-03-20", "2023-04-14", "2023-05-09", "2023-06-03", "2023-06-28", "2023-07-23",
                  "2023-08-17", "2023-09-11"], dtype="datetime64[D]")


def test_plots_fitted_together_get_the_fits_each_gets_alone() -> None:
    rng = np.random.default_rng(7)
    # Crop-like seasons of random height and timing, plus pure noise, on shared days.
    bump = np.exp(-0.5 * ((np.arange(len(DATES))[None, :] - rng.uniform(2, 6, (60, 1))) / 1.3) ** 2)
    ndvi = np.clip(0.15 + rng.uniform(0.1, 0.7, (60, 1)) * bump + rng.normal(0, 0.05, (60, len(DATES))), -0.1, 0.95)
    ndvi[:10] = rng.uniform(-0.1, 0.9, (10, len(DATES)))
    period = (DATES[0], DATES[-1])
    together = fit_explanations_many(DATES, ndvi, "ncp", period=period, min_template_scale=0.4)
    alone = [fit_explanations(DATES, row, "ncp", period=period, min_template_scale=0.4) for row in ndvi]
    assert together == alone  # the same dataclasses: every float equal to the bit
    assert len({fits[0].name for fits in alone}) > 1  # the series are not all explained alike


def test_a_fit_needs_three_observations_per_plot() -> None:
    with pytest.raises(InputError, match="at least 3"):
        fit_explanations_many(DATES[:2], np.zeros((4, 2)), "ncp")


def test_chunks_evidence_merged_is_the_evidence_of_one_run() -> None:
    plots = load_plots(SAMPLE / "plots.geojson")
    plots = plots.loc[plots["geometry_status"] == "OK"].reset_index(drop=True)
    acquisitions = discover_acquisitions([SAMPLE / "season" / "manifest.csv"], None, None)
    table = observation_table(plots, acquisitions)
    ids = plots["plot_id"].astype(str)
    declared = dict(zip(ids, [["maize"], ["soybean"], ["wheat", "soybean"]] * len(ids)))
    drawn = dict(zip(ids, area_mu(plots)))
    rows, peers = split_season_options(season_options(load_policy(), region="delmarva"))
    period = season_period(table)
    whole = plot_evidence(table, plots, declared, drawn, period, acquisitions, rows)
    # One chunk without observations: its plots are NO_COVERAGE rows, placed after every observed plot.
    chunks = chunk_plots(plots, "EPSG:32618", 1000.0)
    assert len(chunks) > 10
    parts = [plot_evidence(table.loc[table["plot_id"].isin(ids[positions])] if number else table.iloc[:0],
                           plots.iloc[positions], declared, drawn, period, acquisitions, rows)
             for number, positions in enumerate(chunks)]
    merged = Evidence.merge(parts, sorted(ids))
    blind = plot_evidence(table.loc[~table["plot_id"].isin(ids[chunks[0]])], plots, declared, drawn, period,
                          acquisitions, rows)
    assert merged.season.rows.column("plot_id").tolist() == blind.season.rows.column("plot_id").tolist()
    assert merged.season.flags == blind.season.flags
    one, other = (finish_season(e.season, **peers).plots for e in (merged, blind))
    pd.testing.assert_frame_equal(one, other)
    # With every chunk observed: the rows, chips and series of the single run.
    parts[0] = plot_evidence(table.loc[table["plot_id"].isin(ids[chunks[0]])], plots.iloc[chunks[0]], declared,
                             drawn, period, acquisitions, rows)
    merged = Evidence.merge(parts, sorted(ids))
    # the rows as columns, put together from the chunks: the rows of one run (values, order, dtypes)
    pd.testing.assert_frame_equal(merged.season.rows.to_frame(), whole.season.rows.to_frame(), check_exact=True)
    pd.testing.assert_frame_equal(finish_season(merged.season, **peers).plots,
                                  finish_season(whole.season, **peers).plots, check_exact=True)
    pd.testing.assert_frame_equal(merged.chips, whole.chips)
    pd.testing.assert_frame_equal(merged.series, whole.series)
    assert len(whole.chips) > 100


def test_evidence_without_fits_is_the_evidence_less_its_fits_and_leaves_the_collector_as_it_was() -> None:
    import gc
    import pickle

    plots = load_plots(SAMPLE / "plots.geojson")
    plots = plots.loc[plots["geometry_status"] == "OK"].iloc[:40].reset_index(drop=True)
    acquisitions = discover_acquisitions([SAMPLE / "season" / "manifest.csv"], None, None)
    table = observation_table(plots, acquisitions)
    ids = plots["plot_id"].astype(str)
    declared = dict(zip(ids, [["maize"], ["soybean"], ["wheat", "soybean"], None] * len(ids)))
    rows, _ = split_season_options(season_options(load_policy(), region="delmarva"))
    inputs = (table, plots, declared, dict(zip(ids, area_mu(plots))), season_period(table), acquisitions, rows)
    full = plot_evidence(*inputs)
    assert gc.isenabled()
    gc.disable()
    try:
        bare = plot_evidence(*inputs, keep_fits=False)
        assert not gc.isenabled()  # left as it was
    finally:
        gc.enable()
    assert full.season.fits and full.season.series
    assert bare.season.fits == {} and bare.season.series == {}
    assert pickle.dumps(bare.season.rows) == pickle.dumps(full.season.rows)  # every figure to the bit
    assert bare.season.flags == full.season.flags
    pd.testing.assert_frame_equal(bare.chips, full.chips)
    pd.testing.assert_frame_equal(bare.series, full.series)


def test_a_chunks_evidence_is_of_its_own_plots_only() -> None:
    """A zonal task observes every plot of its chunk that may be assessed; the tables may then set some aside. The
    chunk's evidence task gets the chunk's observations and its own plots: its rows, series and chips are of those
    alone, as if the observations of the others had never been made."""
    from agricredit import batch

    plots = load_plots(SAMPLE / "plots.geojson")
    plots = plots.loc[plots["geometry_status"] == "OK"].reset_index(drop=True)
    acquisitions = discover_acquisitions([SAMPLE / "season" / "manifest.csv"], None, None)
    subset = plots.iloc[max(chunk_plots(plots, "EPSG:32618", 3000.0), key=len)]
    own = subset.iloc[::2]  # the other half set aside by the tables
    ids = plots["plot_id"].astype(str)
    declared = dict(zip(ids, [["maize"], ["soybean"], ["wheat", "soybean"]] * len(ids)))
    claims = batch._claims_of(own, declared, dict(zip(ids, area_mu(plots))))
    rows, _ = split_season_options(season_options(load_policy(), region="delmarva"))
    period = batch._first_and_last_day(acquisitions)
    observed = batch.observe_chunk(subset, acquisitions)
    assert observed[0]["plot_id"].nunique() == len(subset) > 40

    got = batch._observed_evidence(observed, own, claims, period, acquisitions, rows)
    alone = plot_evidence(observed[0].loc[observed[0]["plot_id"].isin(own["plot_id"])], own, *pickle.loads(claims),
                          period, acquisitions, rows, keep_fits=False)
    assert got.season.rows.column("plot_id").tolist() == own["plot_id"].tolist()
    pd.testing.assert_frame_equal(got.season.rows.to_frame(), alone.season.rows.to_frame(), check_exact=True)
    pd.testing.assert_frame_equal(got.series, alone.series, check_exact=True)
    pd.testing.assert_frame_equal(got.chips, alone.chips)
