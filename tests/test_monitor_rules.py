"""The monitoring rules on hand-made series: each threshold at, inside and outside; recommendations by hand.

Figures are binary fractions (0.75, 0.5, 0.25 ...) so that "at the threshold" is exact.
Peers are maize plots of the ``delmarva`` region (calendar: sowing 04-25, green-up
05-30, peak 07-15, senescence 09-02, harvest 10-15; shift 30 days).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from agricredit.errors import PolicyError
from agricredit.monitor import detect_alerts, recommend, season_window
from agricredit.policy import _from_document, load_policy

BEFORE, NOW = "2023-07-01", "2023-07-10"  # before the maize peak: a fall to bare soil is a loss


def _policy(**monitor):
    policy = load_policy()
    return dataclasses.replace(policy, monitor=dataclasses.replace(policy.monitor, **monitor))


def _case(target: list[float], peers: list[tuple[float, float]], *, before: str = BEFORE, now: str = NOW):
    """Series and plots: plot ``X`` reads ``target`` (before, now); peer ``Pi`` reads ``peers[i]``."""
    rows, plots = [], []
    for plot_id, (a, b) in [("X", target), *((f"P{i:02d}", p) for i, p in enumerate(peers))]:
        rows += [{"plot_id": plot_id, "date": before, "ndvi_mean": a, "valid_frac": 1.0},
                 {"plot_id": plot_id, "date": now, "ndvi_mean": b, "valid_frac": 1.0}]
        plots.append({"plot_id": plot_id, "borrower": f"b_{plot_id}", "declared_crop": "maize",
                      "region": "delmarva"})
    return pd.DataFrame(rows), pd.DataFrame(plots)


def _codes(series, plots, policy=None, now=NOW) -> dict[str, set[str]]:
    alerts = detect_alerts(series, plots, policy or load_policy(), [now])
    return alerts.groupby("plot_id")["code"].apply(set).to_dict()


STEADY = [(0.75, 0.75)] * 10


@pytest.mark.parametrize("after, expected", [(0.5, True),  # fall 0.25: at sudden_drop_min
                                             (0.4375, True),  # inside
                                             (0.53125, False)])  # fall 0.21875: outside (a GROWTH_LAG)
def test_sudden_drop_min(after, expected):
    codes = _codes(*_case([0.75, after], STEADY))
    assert ("SUDDEN_DROP" in codes.get("X", set())) is expected
    assert set(codes) == {"X"}


@pytest.mark.parametrize("peer_after, expected", [(0.71875, True),  # 0.28125 − 0.03125 = 0.25: at
                                                  (0.75, True),  # excess 0.28125: inside
                                                  (0.6875, False)])  # 0.28125 − 0.0625 = 0.21875: outside
def test_sudden_drop_excess_over_peers(peer_after, expected):
    codes = _codes(*_case([0.75, 0.46875], [(0.75, peer_after)] * 10), _policy(sudden_drop_excess=0.25))
    assert ("SUDDEN_DROP" in codes.get("X", set())) is expected


@pytest.mark.parametrize("n_fallen, expected", [(3, True),  # each: (0 + 0.5 × 2) / 10 = 10 %: at drop_percentile
                                                (2, True),  # 5 %: inside
                                                (4, False)])  # 15 %: outside
def test_drop_percentile(n_fallen, expected):
    peers = [(0.75, 0.0)] * (n_fallen - 1) + [(0.75, 0.75)] * (11 - n_fallen)
    codes = _codes(*_case([0.75, 0.0], peers))
    assert ("SUDDEN_DROP" in codes.get("X", set())) is expected


@pytest.mark.parametrize("after, expected", [(0.625, {"REGIONAL_STRESS"}),  # fall 0.125: at regional_drop_min
                                             (0.5, {"REGIONAL_STRESS"}),  # inside
                                             (0.65625, None)])  # 0.09375: outside
def test_regional_stress_when_the_peers_fall_too(after, expected):
    codes = _codes(*_case([0.75, after], [(0.75, after)] * 10), _policy(regional_drop_min=0.125))
    assert codes.get("X") == expected
    assert all("SUDDEN_DROP" not in found for found in codes.values())


def test_regional_fall_after_the_green_period_is_the_season_not_stress():
    # maize senescence 09-02 − 30 days = 08-03: a fall of every plot on 08-10 is the crop ripening
    codes = _codes(*_case([0.75, 0.5], [(0.75, 0.5)] * 10, before="2023-07-30", now="2023-08-10"),
                   now="2023-08-10")
    assert codes == {}


def test_cloudy_reading_is_never_a_drop():
    series, plots = _case([0.75, 0.0], STEADY)
    series.loc[(series["plot_id"] == "X") & (series["date"] == NOW), "valid_frac"] = 0.5  # below 0.6
    assert _codes(series, plots) == {}


def test_water_is_a_sudden_drop_bare_soil_after_the_peak_an_early_harvest():
    after = {"before": "2023-07-10", "now": "2023-07-20"}  # 07-20: after the peak 07-15, before 09-02 − 30 days
    assert _codes(*_case([0.75, 0.09375], STEADY, **after), now=after["now"]) == {"X": {"SUDDEN_DROP"}}  # water
    assert _codes(*_case([0.75, 0.1875], STEADY, **after), now=after["now"]) == {"X": {"EARLY_HARVEST"}}
    # before the peak bare soil is a crop lost, not a harvest
    assert _codes(*_case([0.75, 0.1875], STEADY)) == {"X": {"SUDDEN_DROP"}}
    # after 08-03 a plot harvested before its peers is within the calendar: no alert
    late = {"before": "2023-08-01", "now": "2023-08-10"}
    assert _codes(*_case([0.75, 0.1875], STEADY, **late), now=late["now"]) == {}


@pytest.mark.parametrize("now, level, expected", [("2023-06-29", 0.25, None),  # day = green-up + shift: at
                                                  ("2023-06-30", 0.25, {"NO_EMERGENCE"}),  # a day later
                                                  ("2023-06-30", 0.4375, {"NO_EMERGENCE"}),  # below 0.45
                                                  ("2023-06-30", 0.45, None)])  # at the crop's threshold: green
def test_no_emergence(now, level, expected):
    series, plots = _case([level, level], [(0.5, 0.5)] * 10, before="2023-06-10", now=now)  # peers: no lag
    assert _codes(series, plots, now=now).get("X") == expected


@pytest.mark.parametrize("level, expected", [(0.5, {"GROWTH_LAG"}),  # 0.75 − 0.5 = 0.25: at growth_lag_gap
                                             (0.46875, {"GROWTH_LAG"}),  # inside
                                             (0.53125, None)])  # outside
def test_growth_lag(level, expected):
    series, plots = _case([level, level], [(0.75, 0.75)] * 10, before="2023-07-01", now="2023-07-05")
    assert _codes(series, plots, _policy(growth_lag_gap=0.25), now="2023-07-05").get("X") == expected


def test_season_window_takes_the_widest_of_the_seasons_in_progress():
    window = season_window("soybean", "delmarva", pd.Timestamp("2023-07-20").date(), 30)
    # full-season (05-10 ... 10-25) and double-crop (06-28 ... 11-10) soybean
    assert {k: v.isoformat() for k, v in window.items()} == {
        "sowing": "2023-05-10", "greenup": "2023-07-25", "peak_early": "2023-08-05", "peak": "2023-08-30",
        "senescence": "2023-09-22", "harvest": "2023-11-10"}
    assert season_window("wheat", "delmarva", pd.Timestamp("2023-08-20").date(), 30) is None


def _alerts(*rows):
    return pd.DataFrame([{"plot_id": p, "borrower": b, "code": c} for p, b, c in rows],
                        columns=["plot_id", "borrower", "code"])


def test_recommendations_by_hand():
    plots = pd.DataFrame({"plot_id": ["A1", "A2", "B1", "B2", "C1", "C2", "D1", "E1", "F1"],
                          "borrower": ["a", "a", "b", "b", "c", "c", "d", "e", "f"],
                          "verified_mu": [4.0, 6.0, 5.0, 5.0, 6.0, 4.0, 10.0, 10.0, 10.0]})
    borrowers = pd.DataFrame({"borrower": list("abcdef"), "limit": [10000] * 6, "verified_mu": [10.0] * 6})
    alerts = _alerts(("A1", "a", "SUDDEN_DROP"),  # 4 of 10 mu lost: reduce by 40 %
                     ("B1", "b", "NO_EMERGENCE"),  # 5 of 10: at freeze_min_share 0.5
                     ("C1", "c", "SUDDEN_DROP"), ("C1", "c", "GROWTH_LAG"),  # 6 of 10: frozen
                     ("D1", "d", "EARLY_HARVEST"),  # visit
                     ("E1", "e", "REGIONAL_STRESS"))  # keep, but said
    rec = recommend(alerts, plots, borrowers, load_policy()).set_index("borrower")
    assert rec.loc["a", ["recommendation", "reduce_share", "limit_after", "lost_mu"]].tolist() == \
        ["REDUCE_UNDRAWN", 0.4, 6000, 4.0]
    assert rec.loc["b", ["recommendation", "reduce_share", "limit_after"]].tolist() == ["FREEZE_UNDRAWN", 1.0, 0]
    assert rec.loc["c", ["recommendation", "alert_codes"]].tolist() == ["FREEZE_UNDRAWN", "GROWTH_LAG;SUDDEN_DROP"]
    assert rec.loc["d", ["recommendation", "reduce_share", "limit_after"]].tolist() == ["FIELD_VISIT", 0.0, 10000]
    assert rec.loc["e", ["recommendation", "alert_codes", "limit_after"]].tolist() == \
        ["KEEP", "REGIONAL_STRESS", 10000]
    assert rec.loc["f", ["recommendation", "alert_codes", "explanation"]].tolist() == ["KEEP", "", "no alert"]
    # the same alerts under a policy that only visits: nobody loses undrawn limit
    visiting = _policy(sudden_drop_action="visit", no_emergence_action="visit")
    assert set(recommend(alerts, plots, borrowers, visiting)["recommendation"]) == {"FIELD_VISIT", "KEEP"}
    # a reduction rounds down to the policy's step: 1 of 3 mu lost of 10,000 → 6,666.67 → 6,600
    three = recommend(_alerts(("X", "x", "SUDDEN_DROP")), pd.DataFrame(
        {"plot_id": ["X", "Y"], "borrower": ["x", "x"], "verified_mu": [1.0, 2.0]}),
        pd.DataFrame({"borrower": ["x"], "limit": [10000], "verified_mu": [3.0]}), load_policy())
    assert three.loc[0, ["reduce_share", "limit_after"]].tolist() == [0.3333, 6600]


def test_policy_refuses_an_unknown_action():
    document = {section: dict(values) for section, values in load_policy().values().items()}
    document["monitor"]["sudden_drop_action"] = "ignore"
    with pytest.raises(PolicyError, match=r"monitor.sudden_drop_action must be one of"):
        _from_document(document, Path("lender.toml"))
