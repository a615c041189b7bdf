"""Shared builders for the decision-core tests (verify, credit, audit): honest plot facts and policy variants."""

from __future__ import annotations

import dataclasses

from agricredit.policy import Policy, load_policy
from agricredit.verify import PlotFacts

POLICY = load_policy()


def honest(plot_id: str = "P1", borrower_id: str = "B1", mu: float = 10.0, crop: str = "maize", **changes) -> PlotFacts:
    """An honest plot: drawn = registered = ``mu``, declared 1 % less, cultivated, enough pixels, holder = borrower."""
    values = dict(plot_id=plot_id, borrower_id=borrower_id, geometry_status="valid", drawn_mu=mu, registered_mu=mu,
                  registry_holder_id=borrower_id, declared_mu=mu * 0.99, declared_crop=crop, pixel_count=100.0,
                  cropped_mu_at_peak=mu * 0.9, peak_ndvi=0.8, vigor_factor=1.0, best_crop=crop)
    values.update(changes)
    return PlotFacts.from_dict(values)


def policy_with(section: str, **changes) -> Policy:
    """The default policy with some values of one section changed (same sha256: for formula tests only)."""
    attribute = "meta" if section == "policy" else section
    return dataclasses.replace(POLICY, **{attribute: dataclasses.replace(getattr(POLICY, attribute), **changes)})
