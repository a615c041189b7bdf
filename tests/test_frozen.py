"""``agricredit.frozen``: frozen dataclass instances made without their ``__init__``, as equal as if made with it."""

from __future__ import annotations

import datetime as dt
import pickle
from dataclasses import dataclass, field

import numpy as np
import pytest

from agricredit.cropfit import SeasonFit, SystemFit, explanations_for
from agricredit.frozen import frozen
from agricredit.verify import Check, PlotFacts


def test_the_same_object_as_the_constructor_makes():
    values = {"plot_id": "P1", "borrower_id": "b1", "geometry_status": "valid", "geometry_reason": "",
              "drawn_mu": 2.5, "registered_mu": 2.0, "registry_holder_id": None, "declared_mu": 3.0,
              "declared_crop": "maize", "pixel_count": 120.0, "cropped_mu_at_peak": 2.0, "peak_ndvi": 0.8,
              "satellite_codes": (Check.make("LOW_VIGOR", vigor_factor=0.6),), "vigor_factor": 1.0,
              "best_crop": "maize", "overlaps": (), "repeated_mu": 0.0, "other_declarants": (), "unread_tiles": (),
              "chain": {}, "processing_failed": ""}
    made, built = frozen(PlotFacts, dict(values)), PlotFacts(**values)
    assert made == built and type(made) is PlotFacts
    assert pickle.loads(pickle.dumps(made)) == built
    assert vars(made) == vars(built)
    with pytest.raises(AttributeError):  # still frozen
        made.drawn_mu = 1.0
    assert Check.make("LOW_VIGOR", b=1, a=2) == Check("LOW_VIGOR", Check.make("LOW_VIGOR").severity,
                                                          {"a": 2, "b": 1})


def test_frozen_fits_made_without_init_are_the_constructors():
    season = explanations_for("ncp")[0].seasons[0]
    dates = {"sowing": dt.date(2023, 6, 10), "harvest": dt.date(2023, 10, 1)}
    fitted = np.array([0.2, 0.5, 0.3])
    made = SeasonFit(season, -3, 0.41, 0.82, dates)
    fast = frozen(SeasonFit, {"season": season, "shift_days": -3, "amplitude": 0.41, "scale": 0.82, "dates": dates})
    assert type(fast) is SeasonFit and fast == made and fast.__dict__ == made.__dict__
    assert pickle.dumps(fast) == pickle.dumps(made) and fast.harvest_year == made.harvest_year
    system = SystemFit("maize", 0.1, 0.09, 0.2, (made,), fitted)
    fast_system = frozen(SystemFit, {"name": "maize", "score": 0.1, "rmse": 0.09, "offset": 0.2, "seasons": (fast,),
                                     "fitted": fitted})
    assert fast_system == system and fast_system.__dict__.keys() == system.__dict__.keys()
    assert fast_system.fitted is fitted and fast_system.label == system.label and repr(fast_system) == repr(system)
    with pytest.raises(AttributeError):
        fast_system.score = 0.0  # still frozen


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_values_must_be_exactly_the_fields(change):
    values = {"code": "LOW_VIGOR", "severity": "review", "figures": {}}
    if change == "missing":
        del values["figures"]  # (a default the constructor would fill in)
    else:
        values["figure"] = 1
    with pytest.raises(TypeError, match="takes the fields"):
        frozen(Check, values)


def test_refuses_what_its_constructor_would_check_or_could_change():
    @dataclass(frozen=True)
    class Checked:
        value: int

        def __post_init__(self):
            if self.value < 0:
                raise ValueError("negative")

    @dataclass
    class Mutable:
        value: int = 0
        more: list = field(default_factory=list)

    for cls in (Checked, Mutable):
        with pytest.raises(TypeError, match="not a frozen dataclass without __post_init__"):
            frozen(cls, {"value": 1} if cls is Checked else {"value": 1, "more": []})
