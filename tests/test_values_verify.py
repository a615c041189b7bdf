"""A plot verdict as the audit record stores it, figure by figure (issue 16 §1, §5).

The audit form (:meth:`PlotVerdict.to_dict`) is what ``replay`` and an auditor
read; it is compared here with a form written out by hand from the plot's
facts and the policy's tolerances, and read back with :meth:`PlotFacts.from_dict`.
"""

from __future__ import annotations

import json
import math

from _plotfacts import POLICY, honest
from agricredit.verify import Overlap, PlotFacts, verify_plots

DECLARED_TOLERANCE, VIGOR_MIN = 0.03, 0.7  # seeds/policy.toml


def test_the_audit_form_of_a_plot_verdict():
    facts = honest("P1", mu=8.0, declared_mu=8.5, vigor_factor=0.5, peak_ndvi=0.41, satellite_codes=["LOW_VIGOR"],
                   overlaps=[{"other_plot_id": "Q9", "other_borrower_id": "B2", "shared_m2": 50.0}])
    neighbour = honest("Q9", "B2", mu=4.0)
    verdict = verify_plots([facts, neighbour], POLICY)[0]
    assert 8.5 > 8.0 * (1 + DECLARED_TOLERANCE) and 50.0 < 100.0 and 50.0 < 0.05 * 4.0 * 10000 / 15  # no double claim
    expected_facts = {
        "plot_id": "P1", "borrower_id": "B1", "geometry_status": "valid", "geometry_reason": "",
        "drawn_mu": 8.0, "registered_mu": 8.0, "registry_holder_id": "B1", "declared_mu": 8.5, "declared_crop": "maize",
        "pixel_count": 100.0, "cropped_mu_at_peak": 7.2, "peak_ndvi": 0.41,
        "satellite_codes": [{"code": "LOW_VIGOR", "severity": "reduce", "figures": {}}],
        "vigor_factor": 0.5, "best_crop": "maize",
        "overlaps": [{"other_plot_id": "Q9", "other_borrower_id": "B2", "shared_m2": 50.0, "other_drawn_mu": 4.0}],
    }
    expected = {
        "plot_id": "P1", "facts": expected_facts,
        "areas": {"drawn_mu": 8.0, "registered_mu": 8.0, "declared_mu": 8.5, "cropped_mu": 7.2},
        "verified_mu": 8.0, "excluded": False, "light": "yellow",
        "checks": [
            {"code": "AREA_OVER_DECLARED", "severity": "reduce",
             "figures": {"declared_mu": 8.5, "registered_mu": 8.0, "tolerance": DECLARED_TOLERANCE}},
            {"code": "LOW_VIGOR", "severity": "reduce", "figures": {"peak_ndvi": 0.41, "vigor_factor": VIGOR_MIN}},
        ],
        "mu_now": 8.0, "mu_if_confirmed": 8.0, "vigor_factor": VIGOR_MIN,
    }
    got = verdict.to_dict()
    assert json.dumps(got, sort_keys=False) == json.dumps(expected, sort_keys=False)  # values, types and key order
    # The facts read back from their audit form are the same facts (the overlap completed with the neighbour's area).
    assert PlotFacts.from_dict(got["facts"]) == verdict.facts


def test_unknown_figures_are_written_as_null():
    facts = honest("P1", mu=8.0, registered_mu=math.nan, peak_ndvi=math.nan, vigor_factor=math.nan)
    verdict = verify_plots([facts], POLICY)[0]
    form = verdict.to_dict()
    assert form["facts"]["registered_mu"] is None and form["areas"]["registered_mu"] is None
    assert form["facts"]["peak_ndvi"] is None and form["facts"]["vigor_factor"] is None
    assert form["vigor_factor"] == 1.0  # unknown vigor: the yield table as it is
    assert Overlap("Q1", "B2", 12.5).to_dict() == {"other_plot_id": "Q1", "other_borrower_id": "B2", "shared_m2": 12.5,
                                                   "other_drawn_mu": None}
    assert Overlap.coerce(("Q1", "B2", "12.5")) == Overlap("Q1", "B2", 12.5)
    assert Overlap.coerce(("Q1", "B2", 12.5, "3")).other_drawn_mu == 3.0
    assert Overlap.coerce({"other_plot_id": "Q1", "other_borrower_id": "B2", "shared_m2": 1, "other_drawn_mu": ""}) \
        .to_dict()["other_drawn_mu"] is None
