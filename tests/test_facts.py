"""The plots' facts made in two steps (agricredit.facts) against the straightforward one-step computation."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd

from agricredit.cli._tables import THIN_SOURCE_SHARE, thin_sources
from agricredit.facts import _finite_column, claimed_facts, finite_or_nan, plot_facts, source_coverage
from agricredit.flag import Flag
from agricredit.privacy import PseudonymKey, pseudonym
from agricredit.verify import Check, Overlap, PlotFacts, complete_overlaps

KEY = PseudonymKey(b"the key of the facts tests", "environment")

CHECKED = pd.DataFrame({
    "plot_id": pd.array(["P3", "P1", "P2", "P4", "P5", "P5", "P6"], dtype="str"),
    "borrower_id": ["B1", "B2", "B1", "B3", "B1", "B2", None],
    "geometry_status": ["OK", "OK", "GEOMETRY_REPAIRED", "GEOMETRY_INVALID", "DUPLICATE_ID", "DUPLICATE_ID",
                        "MISSING_BORROWER"],
    "geometry_reason": ["", "", "fixed", "self-intersection", "plot ID used more than once",
                        "plot ID used more than once", "no borrower_id"],
})
# P3 lists its overlap with P1, P1 does not list it back (complete_overlaps mirrors it).
CLAIMS = SimpleNamespace(
    drawn_mu={"P1": np.float64(2.5), "P2": np.float64(4.0), "P3": np.float64(1.25), "P4": np.float64(3.0)},
    overlaps={"P3": [{"plot_id": "P1", "shared_m2": 12.5}, {"plot_id": "P2", "shared_m2": 3.0}], "P1": []},
    repeated_mu={"P2": np.float64(0.5)},
    declaration={(p, b): {"declared_mu": 2.0 + i, "declared_crop": "maize"} for i, (p, b) in enumerate(
        [("P1", "B2"), ("P2", "B1"), ("P3", "B1"), ("P4", "B3"), ("P5", "B1"), ("P5", "B2")])},
    other_declarants={("P2", "B1"): ["B9"]},
)
REGISTRY = pd.DataFrame({"plot_id": ["P1", "P2"], "registered_mu": [2.0, 4.5], "holder_id": ["B2", "H7"]})
ALIAS = {b: pseudonym(KEY, "borrower", b) for b in ("B1", "B2", "B3")}
SEASON = SimpleNamespace(
    plots=pd.DataFrame({"plot_id": ["P1", "P2", "P3"], "pixel_count": [40.0, np.inf, 12.0],
                        "cropped_area_mu_at_peak": [2.0, np.nan, 1.0], "peak_ndvi": [0.8, 0.7, None],
                        "vigor_factor": [1.0, 0.9, 1.1], "best_crop": ["maize", None, "soybean"]}),
    flags={"P1": [], "P2": [Flag("CLOUD_INSUFFICIENT", {"window_end": "2023-10-10", "acquisitions": 6})],
           "P3": [Flag("LOW_VIGOR", {"peak_percentile": 3.0}), Flag("NO_COVERAGE", {"acquisitions": 0})]},
)


def _one_step() -> list[PlotFacts]:
    """The facts as made in one pass, each field straight from its source, then completed."""
    registered = dict(zip(REGISTRY["plot_id"], zip(REGISTRY["registered_mu"], REGISTRY["holder_id"])))
    rows = {p: row for p, row in zip(SEASON.plots["plot_id"], SEASON.plots.to_dict("records"))}
    facts = []
    for p, b, status, reason in zip(*(CHECKED[name].tolist() for name in CHECKED.columns)):
        if status == "MISSING_BORROWER" or (status == "DUPLICATE_ID" and any(f.plot_id == p and f.borrower_id ==
                                                                            ALIAS[b] for f in facts)):
            continue
        row = rows.get(p, {})
        measured = status in ("OK", "GEOMETRY_REPAIRED")
        registered_mu, holder = registered.get(p, (math.nan, None))
        facts.append(PlotFacts(
            plot_id=p, borrower_id=ALIAS[b],
            geometry_status={"OK": "valid", "GEOMETRY_REPAIRED": "repaired", "GEOMETRY_INVALID": "invalid",
                             "DUPLICATE_ID": "duplicate"}[status],
            geometry_reason=reason or "", drawn_mu=float(CLAIMS.drawn_mu[p]) if measured else math.nan,
            registered_mu=float(registered_mu),
            registry_holder_id=(ALIAS.get(holder) or pseudonym(KEY, "borrower", holder)) if holder else None,
            declared_mu=CLAIMS.declaration[p, b]["declared_mu"], declared_crop="maize",
            pixel_count=finite_or_nan(row.get("pixel_count")),
            cropped_mu_at_peak=finite_or_nan(row.get("cropped_area_mu_at_peak")),
            peak_ndvi=finite_or_nan(row.get("peak_ndvi")),
            satellite_codes=tuple(Check.make(f.code, **f.figures) for f in SEASON.flags.get(p, [])),
            vigor_factor=finite_or_nan(row.get("vigor_factor")),
            best_crop=row.get("best_crop") if isinstance(row.get("best_crop"), str) else None,
            overlaps=tuple(Overlap(o["plot_id"], ALIAS[dict(zip(CHECKED["plot_id"], CHECKED["borrower_id"]))[
                o["plot_id"]]], o["shared_m2"]) for o in CLAIMS.overlaps.get(p, [])),
            repeated_mu=float(CLAIMS.repeated_mu.get(p, 0.0)),
            other_declarants=tuple(pseudonym(KEY, "borrower", o) for o in CLAIMS.other_declarants.get((p, b), ())),
            unread_tiles=("T1.tif",) if p == "P2" else (), processing_failed="chunk 3: lost" if p == "P4" else "",
        ))
    return complete_overlaps(facts)


def test_claimed_then_found_facts_are_the_one_step_facts_completed():
    claimed = claimed_facts(CHECKED, CLAIMS, REGISTRY, ALIAS, KEY)
    facts = plot_facts(claimed, SEASON, {"P2": ["T1.tif"]}, {"P4": "chunk 3: lost"})
    expected = _one_step()
    assert [(f.plot_id, f.borrower_id) for f in facts] == [(f.plot_id, f.borrower_id) for f in expected]
    assert repr(facts) == repr(expected)  # (repr: NaN fields compare equal)
    assert any(o.other_plot_id == "P3" for o in facts[0].overlaps)  # P1 got P3's overlap mirrored


def test_plot_facts_without_a_season_row_or_column():
    claimed = claimed_facts(CHECKED, CLAIMS, REGISTRY, ALIAS, KEY)
    season = SimpleNamespace(plots=SEASON.plots.drop(columns=["best_crop", "peak_ndvi"]), flags=SEASON.flags)
    facts = plot_facts(claimed, season, {}, {})
    assert [math.isnan(f.peak_ndvi) and f.best_crop is None for f in facts] == [True] * len(facts)
    assert [repr(f.pixel_count) for f in facts] == ["40.0", "nan", "12.0", "nan", "nan", "nan"]


def test_finite_column_is_finite_or_nan_of_each_value():
    frame = pd.DataFrame({"f": [1.5, np.nan, np.inf, -np.inf, -0.0], "o": [1.5, None, "2", np.inf, "x"],
                          "a": pd.array([1.5, None, 3.0, np.inf, 0.25], dtype="double[pyarrow]")})
    for column in ("f", "o", "a"):
        expected = [finite_or_nan(value) for value in frame[column].tolist()]
        assert repr(_finite_column(frame, column)) == repr(expected)
    assert repr(_finite_column(frame, "missing")) == repr([math.nan] * 5)


def test_a_sources_coverage_counts_its_figures_among_the_sound_plots():
    def fact(status, registered=math.nan, declared=math.nan, peak=math.nan):
        return PlotFacts(plot_id="P", borrower_id="b", geometry_status=status, registered_mu=registered,
                         declared_mu=declared, peak_ndvi=peak)
    facts = [fact("valid", 1.0, 2.0, 0.5), fact("repaired", 1.0, math.nan, 0.7), fact("valid", math.nan, 3.0),
             fact("rejected", 1.0, 1.0, 0.9), fact("valid", math.inf, 2.0, math.nan)]
    assert source_coverage(facts) == {"registry": (2, 4), "declarations": (3, 4), "satellite season": (2, 4)}
    assert source_coverage([fact("rejected", 1.0)]) == {name: (0, 0) for name in
                                                        ("registry", "declarations", "satellite season")}


def test_a_source_under_half_the_plots_is_thin_and_one_at_half_is_not():
    assert THIN_SOURCE_SHARE == 0.5
    coverage = {"registry": (49, 100), "declarations": (50, 100), "satellite season": (51, 100)}
    assert thin_sources(SimpleNamespace(coverage=coverage)) == {"registry": (49, 100)}
    assert thin_sources(SimpleNamespace(coverage={"registry": (0, 0)})) == {}  # no sound plot: nothing to warn of
