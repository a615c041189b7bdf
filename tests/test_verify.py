"""Plot checks: each check at, just inside and just outside its tolerance, on hand-made plot facts."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest

from _plotfacts import POLICY, honest
from agricredit.credit import decide
from agricredit.errors import InputError
from agricredit.verify import Check, PlotFacts, verify_plot, verify_plots

AREA = POLICY.area
SAT = POLICY.satellite
NUDGE = 1e-9  # relative step just across a threshold


def codes(verdict):
    return [check.code for check in verdict.checks]


def check_of(verdict, code) -> Check:
    return next(check for check in verdict.checks if check.code == code)


def test_honest_plot_is_green_with_smallest_source():
    verdict = verify_plot(honest(mu=10.0), POLICY)
    assert verdict.checks == () and verdict.light == "green" and not verdict.excluded
    assert verdict.verified_mu == pytest.approx(9.9)  # declared is the smallest source
    assert verdict.contribution.mu_now == verdict.contribution.mu_if_confirmed == pytest.approx(9.9)
    assert verdict.areas == {"drawn_mu": 10.0, "registered_mu": 10.0, "declared_mu": pytest.approx(9.9), "cropped_mu": 9.0}


@pytest.mark.parametrize(("factor", "fires"), [(1.0, False), (1 - NUDGE, False), (1 + NUDGE, True), (2.01, True)])
def test_area_over_declared(factor, fires):
    registered = 10.0
    declared = registered * (1 + AREA.declared_over_tolerance) * factor
    verdict = verify_plot(honest(registered_mu=registered, drawn_mu=10.0, declared_mu=declared), POLICY)
    assert ("AREA_OVER_DECLARED" in codes(verdict)) is fires
    assert verdict.verified_mu == pytest.approx(10.0)  # the registered / drawn area, never the declared excess
    if fires:
        figures = check_of(verdict, "AREA_OVER_DECLARED").figures
        assert figures == {"declared_mu": declared, "registered_mu": 10.0, "tolerance": 0.03}
        assert verdict.light == "yellow" and verdict.contribution.mu_now == pytest.approx(10.0)


@pytest.mark.parametrize(("factor", "fires"), [
    (1 + AREA.drawn_vs_registered_tolerance, False), ((1 + AREA.drawn_vs_registered_tolerance) * (1 + NUDGE), True),
    (1 - AREA.drawn_vs_registered_tolerance, False), ((1 - AREA.drawn_vs_registered_tolerance) * (1 - NUDGE), True),
    (1 / 1.3, True),
])
def test_area_drawn_mismatch(factor, fires):
    registered = 10.0
    drawn = registered * factor
    verdict = verify_plot(honest(registered_mu=registered, drawn_mu=drawn, declared_mu=registered), POLICY)
    assert ("AREA_DRAWN_MISMATCH" in codes(verdict)) is fires
    assert verdict.verified_mu == pytest.approx(min(drawn, registered))
    if fires:
        assert check_of(verdict, "AREA_DRAWN_MISMATCH").figures["ratio"] == pytest.approx(factor)


@pytest.mark.parametrize(("factor", "fires"), [
    (1.0, True), (1 + AREA.unit_ratio_tolerance, True), ((1 + AREA.unit_ratio_tolerance) * (1 + NUDGE), False),
    (1 - AREA.unit_ratio_tolerance, True), ((1 - AREA.unit_ratio_tolerance) * (1 - NUDGE), False),
])
def test_unit_suspected_registered_in_hectares(factor, fires):
    """The registry gives the hectare number labelled mu: registered ~ drawn / 15."""
    registered = 1.0
    drawn = registered * 15.0 * factor
    declared = drawn
    verdict = verify_plot(honest(drawn_mu=drawn, registered_mu=registered, declared_mu=declared), POLICY)
    assert ("AREA_UNIT_SUSPECTED" in codes(verdict)) is fires
    if fires:
        # the registry figure is dropped, and the checks on it are not also fired
        assert codes(verdict) == ["AREA_UNIT_SUSPECTED"]
        assert check_of(verdict, "AREA_UNIT_SUSPECTED").figures["inconsistent"] == ["registered"]
        assert verdict.verified_mu == declared and verdict.light == "red"
        assert verdict.contribution.mu_now == 0.0 and verdict.contribution.mu_if_confirmed == declared
    else:
        assert "AREA_DRAWN_MISMATCH" in codes(verdict)


def test_unit_suspected_inverse_and_declared_source():
    verdict = verify_plot(honest(drawn_mu=1.0, registered_mu=15.0, declared_mu=1.0), POLICY)  # mu recorded as 15x
    assert check_of(verdict, "AREA_UNIT_SUSPECTED").figures["inconsistent"] == ["registered"]
    assert verdict.verified_mu == 1.0
    verdict = verify_plot(honest(drawn_mu=12.0, registered_mu=12.0, declared_mu=0.8), POLICY)  # declared in ha
    assert codes(verdict) == ["AREA_UNIT_SUSPECTED"]
    assert check_of(verdict, "AREA_UNIT_SUSPECTED").figures["inconsistent"] == ["declared"]
    assert verdict.verified_mu == 12.0
    # two sources only: the drawn polygon (a measured, unit-free figure) is kept
    verdict = verify_plot(honest(drawn_mu=12.0, registered_mu=math.nan, declared_mu=0.8), POLICY)
    assert codes(verdict) == ["NO_REGISTRY_RECORD", "AREA_UNIT_SUSPECTED"]
    assert verdict.verified_mu == 12.0 and verdict.contribution.mu_if_confirmed == 12.0


def test_no_registry_record_is_held_for_review():
    verdict = verify_plot(honest(registered_mu=math.nan, registry_holder_id=None), POLICY)
    assert codes(verdict) == ["NO_REGISTRY_RECORD"] and verdict.light == "red" and not verdict.excluded
    assert verdict.contribution.mu_now == 0.0
    assert verdict.contribution.mu_if_confirmed == pytest.approx(9.9)  # min(drawn, declared)


@pytest.mark.parametrize("holder", ["B2", None])
def test_owner_mismatch_holds_the_plot_until_the_lease_is_seen(holder):
    verdict = verify_plot(honest(registry_holder_id=holder), POLICY)
    assert codes(verdict) == ["OWNER_MISMATCH"] and not verdict.excluded and verdict.light == "red"
    assert verdict.contribution.mu_now == 0.0
    assert verdict.contribution.mu_if_confirmed == pytest.approx(verdict.verified_mu) and verdict.verified_mu > 0


@pytest.mark.parametrize(("factor", "fires"), [(1.0, False), (1 + NUDGE, False), (1 - NUDGE, True), (0.0, True)])
def test_not_cultivated_from_cropped_share(factor, fires):
    cropped = 10.0 * SAT.cultivated_min_share * factor
    verdict = verify_plot(honest(drawn_mu=10.0, cropped_mu_at_peak=cropped), POLICY)
    assert ("NOT_CULTIVATED" in codes(verdict)) is fires
    if fires:
        assert check_of(verdict, "NOT_CULTIVATED").figures == {"cropped_mu": cropped, "drawn_mu": 10.0, "min_share": 0.5}
        assert verdict.light == "yellow" and verdict.contribution.mu_if_confirmed == 0.0
        assert verdict.verified_mu == 0.0  # nothing to lend on: the verified area is what the plot adds


def test_satellite_codes_pass_through_with_figures():
    verdict = verify_plot(honest(satellite_codes={"NOT_CULTIVATED": {"greened_up": False}}), POLICY)
    assert check_of(verdict, "NOT_CULTIVATED").figures["greened_up"] is False
    verdict = verify_plot(honest(best_crop="wheat", satellite_codes={"CROP_MISMATCH": {"rmse_declared": 0.21, "rmse_best": 0.04}}), POLICY)
    figures = check_of(verdict, "CROP_MISMATCH").figures
    assert figures == {"best_crop": "wheat", "declared_crop": "maize", "rmse_best": 0.04, "rmse_declared": 0.21}
    assert verdict.light == "red" and verdict.contribution.mu_now == 0.0 and verdict.contribution.mu_if_confirmed > 0
    verdict = verify_plot(honest(vigor_factor=0.55, peak_ndvi=0.45, satellite_codes=["LOW_VIGOR"]), POLICY)
    assert codes(verdict) == ["LOW_VIGOR"] and verdict.light == "yellow"
    assert verdict.contribution.vigor_factor == SAT.vigor_factor_min  # clipped to the policy's range
    assert check_of(verdict, "LOW_VIGOR").figures == {"peak_ndvi": 0.45, "vigor_factor": SAT.vigor_factor_min}


def test_cloud_insufficient_silences_other_satellite_codes():
    facts = honest(cropped_mu_at_peak=0.0, satellite_codes={"CLOUD_INSUFFICIENT": {"valid_observations": 1},
                                                             "CROP_MISMATCH": {}, "NOT_CULTIVATED": {}})
    verdict = verify_plot(facts, POLICY)
    assert codes(verdict) == ["CLOUD_INSUFFICIENT"]
    assert check_of(verdict, "CLOUD_INSUFFICIENT").figures == {"min_observations": 3, "valid_observations": 1}
    assert verdict.contribution.mu_now == 0.0 and verdict.contribution.mu_if_confirmed == pytest.approx(9.9)


@pytest.mark.parametrize(("pixels", "fires"), [(4.0, False), (4.0 * (1 - NUDGE), True), (0.3, True)])
def test_too_few_pixels(pixels, fires):
    facts = honest(mu=0.1, pixel_count=pixels, cropped_mu_at_peak=0.0, satellite_codes={"CLOUD_INSUFFICIENT": {}})
    verdict = verify_plot(facts, POLICY)
    if fires:  # the satellite cannot say more; since issue 9 a person confirms the plot (review, not reduce)
        assert codes(verdict) == ["TOO_FEW_PIXELS"] and verdict.light == "red"
        assert verdict.contribution.mu_now == 0.0 and verdict.contribution.mu_if_confirmed == verdict.verified_mu > 0
    else:
        assert codes(verdict) == ["CLOUD_INSUFFICIENT"]


@pytest.mark.parametrize("cropped", [math.nan, 0.0])  # not measured (as the season reports a sliver), or measured 0
@pytest.mark.parametrize(("pixels", "fires"), [(SAT.min_pixel_count, False), (SAT.min_pixel_count * (1 - NUDGE), True),
                                               (0.74, True)])
def test_a_plot_too_small_for_the_sensor_adds_its_area_once_confirmed(pixels, fires, cropped):
    # The sample's slivers: 0.11 mu drawn and registered, declared 1 % less; issue 9 §5: a person confirms the plot,
    # and limit_if_confirmed shows what it adds — the smallest area source, whatever the satellite saw of it.
    facts = honest("P1", mu=0.11, pixel_count=pixels, cropped_mu_at_peak=cropped if fires else 0.9 * 0.11)
    verdict = verify_plot(facts, POLICY)
    assert verdict.contribution.mu_if_confirmed == verdict.verified_mu == pytest.approx(0.11 * 0.99)
    if fires:
        assert codes(verdict) == ["TOO_FEW_PIXELS"] and verdict.light == "red"
        figures = check_of(verdict, "TOO_FEW_PIXELS").figures
        assert figures == {"pixel_count": pixels, "min_pixel_count": SAT.min_pixel_count}
        assert verdict.contribution.mu_now == 0.0
    else:  # at the threshold the satellite judges the plot: cultivated, it adds its area now
        assert codes(verdict) == [] and verdict.light == "green"
        assert verdict.contribution.mu_now == pytest.approx(0.11 * 0.99)
    # Beside a 10 mu field of the same borrower, the sliver's area counts once confirmed (and now only when judged).
    decision = decide("B1", verify_plots([facts, honest("P2", mu=10.0)], POLICY), POLICY)
    assert decision.if_confirmed.mu == pytest.approx(9.9 + 0.11 * 0.99)
    assert decision.now.mu == pytest.approx(9.9 if fires else 9.9 + 0.11 * 0.99)
    assert decision.status == ("REVIEW" if fires else "APPROVE")


def pair(shared_m2, small_mu=1.5, big_mu=30.0, same_borrower=False):
    a = honest("PA", "B1", mu=small_mu, overlaps=[("PB", "B1" if same_borrower else "B2", shared_m2)])
    b = honest("PB", "B1" if same_borrower else "B2", mu=big_mu)  # lists nothing: the overlap is mirrored
    return verify_plots([b, a], POLICY)


@pytest.mark.parametrize(("shared_m2", "fires"), [
    (50.0, False), (50.0 * (1 + NUDGE), True),  # 5 % of the smaller plot (1.5 mu = 1000 m²)
    (10.0, False),
])
def test_double_claim_share_of_smaller_plot(shared_m2, fires):
    verdicts = pair(shared_m2)
    for verdict in verdicts:
        assert ("DOUBLE_CLAIM" in codes(verdict)) is fires
    if fires:
        a, b = verdicts
        assert check_of(a, "DOUBLE_CLAIM").figures["other_plot_ids"] == ["PB"]
        assert check_of(b, "DOUBLE_CLAIM").figures["other_plot_ids"] == ["PA"]
        assert check_of(a, "DOUBLE_CLAIM").figures["share_of_smaller"] == pytest.approx(0.05)
        assert a.light == b.light == "red" and a.contribution.mu_now == 0.0


@pytest.mark.parametrize(("shared_m2", "fires"), [(100.0, False), (100.0 * (1 + NUDGE), True)])
def test_double_claim_absolute_area(shared_m2, fires):
    verdicts = pair(shared_m2, small_mu=20.0, big_mu=30.0)  # 100 m² is 0.75 % of 20 mu: only the m² rule can fire
    assert all(("DOUBLE_CLAIM" in codes(v)) is fires for v in verdicts)


def test_overlap_with_own_plot_is_a_self_overlap_not_a_double_claim():
    verdicts = pair(900.0, same_borrower=True)
    assert [codes(v) for v in verdicts] == [["SELF_OVERLAP"], ["SELF_OVERLAP"]]
    assert all(v.light == "red" and v.contribution.mu_now == 0.0 for v in verdicts)


@pytest.mark.parametrize(("shared_m2", "fires"), [
    (50.0, False), (50.0 * (1 + NUDGE), True),  # 5 % of the smaller plot (1.5 mu = 1000 m²)
])
def test_self_overlap_tolerance_is_the_double_claim_tolerance(shared_m2, fires):
    verdicts = pair(shared_m2, same_borrower=True)
    assert all(("SELF_OVERLAP" in codes(v)) is fires for v in verdicts)
    assert not any("DOUBLE_CLAIM" in codes(v) for v in verdicts)


@pytest.mark.parametrize(("shared_m2", "fires"), [(100.0, False), (100.0 * (1 + NUDGE), True)])
def test_self_overlap_absolute_area(shared_m2, fires):
    verdicts = pair(shared_m2, small_mu=20.0, big_mu=30.0, same_borrower=True)  # 100 m² = 0.75 % of 20 mu
    assert all(("SELF_OVERLAP" in codes(v)) is fires for v in verdicts)


def test_field_drawn_twice_counts_once():
    # A 30 mu field (20,000 m²) drawn twice: P2 repeats all of P1's 30 mu; their shrunk outlines share 18,000 m².
    first = honest("P1", "B1", mu=30.0, overlaps=[("P2", "B1", 18000.0)])
    second = honest("P2", "B1", mu=30.0, repeated_mu=30.0)
    v1, v2 = verify_plots([second, first], POLICY)
    assert codes(v1) == codes(v2) == ["SELF_OVERLAP"]
    assert check_of(v2, "SELF_OVERLAP").figures["repeated_mu"] == 30.0
    # Held for review now; if confirmed the pair adds 29.7 mu (the declared 99 % of 30), not 59.4.
    assert (v1.contribution.mu_now, v2.contribution.mu_now) == (0.0, 0.0)
    assert v1.contribution.mu_if_confirmed == pytest.approx(29.7)
    assert v2.contribution.mu_if_confirmed == 0.0


def test_partial_self_overlap_takes_off_only_the_repeated_area():
    first = honest("P1", "B1", mu=10.0, overlaps=[("P2", "B1", 1000.0)])
    second = honest("P2", "B1", mu=10.0, declared_mu=10.0, repeated_mu=2.0)
    _, v2 = verify_plots([first, second], POLICY)
    assert v2.contribution.mu_if_confirmed == pytest.approx(8.0)  # min(10, 10, 10) - 2


@pytest.mark.parametrize(("factor", "fires"), [(1.0, False), (1 - NUDGE, False), (1 + NUDGE, True), (1500.0, True)])
def test_absurd_drawn_area(factor, fires):
    ratio = AREA.absurd_area_ratio
    drawn = 10.0 * ratio * factor  # against registered 10 mu, declared 9.9 mu: the larger one counts
    verdict = verify_plot(honest(drawn_mu=drawn, overlaps=[("P9", "B9", 5000.0)]), POLICY)
    if fires:
        assert codes(verdict) == ["AREA_ABSURD"] and verdict.excluded and verdict.light == "red"
        assert verdict.contribution.mu_now == verdict.contribution.mu_if_confirmed == 0.0
        assert check_of(verdict, "AREA_ABSURD").figures["max_ratio"] == ratio
    else:
        assert "AREA_ABSURD" not in codes(verdict)


def test_absurd_area_needs_a_registered_or_declared_figure():
    lone = honest(drawn_mu=150000.0, registered_mu=None, declared_mu=None)
    assert "AREA_ABSURD" not in codes(verify_plot(lone, POLICY))
    only_declared = honest(drawn_mu=150000.0, registered_mu=None, declared_mu=10.0)
    assert codes(verify_plot(only_declared, POLICY)) == ["AREA_ABSURD"]


def test_duplicate_plot_id_held_for_review_on_registry_and_declaration():
    held = honest("P7", "B1", mu=24.0, geometry_status="duplicate", geometry_reason="plot ID used more than once",
                  drawn_mu=None, pixel_count=None, cropped_mu_at_peak=None, peak_ndvi=None)
    other = honest("P7", "B2", mu=24.0, geometry_status="duplicate", drawn_mu=None, registry_holder_id="B1")
    v1, v2 = verify_plots([other, held], POLICY)
    assert (v1.borrower_id, v2.borrower_id) == ("B1", "B2")
    assert codes(v1) == ["DUPLICATE_PLOT_ID"] and v1.light == "red"
    assert v1.contribution.mu_now == 0.0 and v1.contribution.mu_if_confirmed == pytest.approx(24.0 * 0.99)
    assert codes(v2) == ["OWNER_MISMATCH", "DUPLICATE_PLOT_ID"]
    with pytest.raises(InputError, match="P7: duplicate plot id"):
        verify_plots([held, honest("P7", "B3")], POLICY)


def test_contested_declaration_holds_the_plot():
    verdict = verify_plot(honest(other_declarants=["B2"]), POLICY)
    assert codes(verdict) == ["DECLARATION_CONTESTED"] and verdict.light == "red"
    assert check_of(verdict, "DECLARATION_CONTESTED").figures == {"other_declarants": ["B2"]}
    assert verdict.contribution.mu_now == 0.0 and verdict.contribution.mu_if_confirmed == pytest.approx(9.9)


def test_geometry_statuses():
    verdict = verify_plot(honest(geometry_status="repaired", geometry_reason="Self-intersection[1 2]"), POLICY)
    assert codes(verdict) == ["GEOMETRY_REPAIRED"] and verdict.light == "green"
    assert verdict.contribution.mu_now == pytest.approx(9.9)
    for status in ("invalid", "rejected"):
        verdict = verify_plot(honest(geometry_status=status, geometry_reason="Self-intersection[3 4]",
                                     registry_holder_id="B9", cropped_mu_at_peak=0.0), POLICY)
        assert codes(verdict) == ["GEOMETRY_INVALID"] and verdict.excluded and verdict.light == "red"
        assert check_of(verdict, "GEOMETRY_INVALID").figures == {"reason": "Self-intersection[3 4]", "status": status}
        assert verdict.verified_mu == 0.0 and verdict.contribution.mu_if_confirmed == 0.0


def test_dataframe_input_and_row_order():
    rows = [honest(f"P{i}", f"B{i % 3}", mu=1.0 + i).to_dict() for i in range(8)]
    rows[2]["registered_mu"] = None
    rows[5]["overlaps"] = [{"other_plot_id": "P6", "other_borrower_id": "B0", "shared_m2": 800.0}]
    frame = pd.DataFrame(rows)
    verdicts = verify_plots(frame, POLICY)
    expected = [v.to_dict() for v in verdicts]
    assert [v.plot_id for v in verdicts] == sorted(r["plot_id"] for r in rows)
    assert codes(verdicts[2]) == ["NO_REGISTRY_RECORD"] and "DOUBLE_CLAIM" in codes(verdicts[6])
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert [v.to_dict() for v in verify_plots(pd.DataFrame(shuffled), POLICY)] == expected
    assert [v.to_dict() for v in verify_plots([PlotFacts.from_dict(r) for r in shuffled], POLICY)] == expected


def test_bad_facts_are_errors_naming_the_plot():
    with pytest.raises(InputError, match="P1: unknown geometry_status"):
        verify_plot(honest(geometry_status="odd"), POLICY)
    with pytest.raises(InputError, match="P1: satellite code OWNER_MISMATCH"):
        verify_plot(honest(satellite_codes=["OWNER_MISMATCH"]), POLICY)
    with pytest.raises(InputError, match="P1: declared crop 'cotton'"):
        verify_plot(honest(crop="cotton"), POLICY)
    with pytest.raises(InputError, match="P1: duplicate plot id"):
        verify_plots([honest(), honest()], POLICY)


def test_list_cells_from_csv_or_parquet():
    row = honest().to_dict()
    row.update(satellite_codes='{"LOW_VIGOR": {"peer_median": 0.8}}', overlaps=float("nan"))
    assert codes(verify_plot(PlotFacts.from_dict(row), POLICY)) == ["LOW_VIGOR"]
    row.update(satellite_codes=None, overlaps='[["P9", "B9", 500.0]]')
    assert codes(verify_plots([row], POLICY)[0]) == ["DOUBLE_CLAIM"]
    with pytest.raises(InputError, match="unknown reason code 'CLOUDY'"):
        PlotFacts.from_dict({**row, "satellite_codes": ["CLOUDY"]})


@pytest.mark.parametrize(("key", "value", "error"), [
    ("absurd_area_ratio", "17.25", "must exceed 15 x"),  # 15 x (1 + 0.15): a unit slip must go to review
    ("absurd_area_ratio", "17.26", None),
    ("outline_accuracy_m", "-0.1", "out of range"),
    ("outline_accuracy_m", "0", None),
])
def test_claim_policy_keys_are_validated(tmp_path, key, value, error):
    from agricredit.errors import PolicyError
    from agricredit.policy import load_policy
    from agricredit.seeds import DEFAULT_POLICY_PATH

    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    lines = [f"{key} = {value}" if line.startswith(f"{key} =") else line for line in text.splitlines()]
    path = tmp_path / "policy.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if error is None:
        assert getattr(load_policy(path).area, key) == float(value)
    else:
        with pytest.raises(PolicyError, match=error):
            load_policy(path)
