"""Seasons generated independently of the crop check, for its tests and ``scripts/bench/bench_cropcheck.py``.

The check fits double-logistic curves placed by the calendars' green-up and
senescence dates (``agricredit.cropfit``). This generator shares none of that
code or shape: each crop season is a sum of Gaussian canopy bumps (an
asymmetric Gaussian, as TIMESAT's, for the main canopy; a small autumn
tillering bump for winter crops) placed by the *sowing, peak and harvest*
dates of the cited calendars (``seeds/calendars.csv``), with its own NDVI
levels per crop (field-scale Sentinel-2 peaks of 0.75-0.92 reported for
maize, soybean, wheat and rice), sowing dates spread ±30 days, season lengths
±10 %, vigour 0.75-1.05, field heterogeneity (a share of the plot uncropped,
pixel spread), observation noise, Sentinel-2's 5-day revisit with clouds
(whole dates lost, partial clouds masked, clouded peaks), products without a
cloud mask, tiny plots and plots partly outside the imagery, and double
cropping (the summer crop sown 2-20 days after the winter crop's harvest).

Each generated plot has a truth row (its cropping system and scenario) and
zonal long-table rows with the columns :func:`agricredit.zonal.zonal_stats`
gives (plus ``cloud_masked``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from agricredit.seeds import load_calendars, load_rotations

#: Field-scale peak NDVI range per crop (Sentinel-2 10 m field means in the phenology literature).
PEAK_NDVI = {"maize": (0.80, 0.90), "soybean": (0.80, 0.92), "wheat": (0.75, 0.85), "rice": (0.75, 0.88)}
#: Off-season (bare cropland) NDVI range.
BASE_NDVI = (0.12, 0.26)
#: NDVI at or above which a pixel counts as cropped (as the zonal engine's default threshold).
CROPPED_THRESHOLD = 0.45
REVISIT_DAYS = 5
#: Winter wheat regreening to heading: early March to late April on the North China Plain (~55 days).
SPRING_REGROWTH_DAYS = 55.0
#: Share of a winter crop's sowing delay carried to its heading date (spring thermal time compresses it).
WINTER_SHIFT_CARRIED = 0.3
SCENARIOS = ("clear", "cloudy_peak", "cloudy", "unmasked", "tiny", "partial")


@dataclass
class TruePlot:
    """One generated plot: what grows (a system name of the region, ``bare``), and how it is seen."""

    plot_id: str
    region: str
    system: str  # an explanation name of the region (``maize``, ``maize:summer``, ``wheat-maize``) or ``bare``
    crops: tuple[str, ...]
    scenario: str = "clear"
    area_mu: float = 6.0
    params: dict = field(default_factory=dict)


def _doy_date(year: int, month_day: tuple[int, int]) -> np.datetime64:
    return np.datetime64(dt.date(year, *month_day))


def _canopy(t: np.ndarray, sowing: float, peak: float, harvest: float, winter: bool) -> np.ndarray:
    """Unit canopy of one season on day numbers ``t``: asymmetric Gaussian (+ autumn bump for winter crops)."""
    # A winter crop is dormant through winter: its main canopy grows from spring regrowth to heading.
    emergence = peak - SPRING_REGROWTH_DAYS if winter else sowing + 12.0
    left = max(peak - emergence, 20.0) / np.sqrt(np.log(20.0))  # 5 % of the peak canopy at emergence
    right = max(harvest - peak, 15.0) / np.sqrt(np.log(8.0))  # 12.5 % left at harvest
    main = np.where(t < peak, np.exp(-((t - peak) / left) ** 2), np.exp(-((t - peak) / right) ** 2))
    main = np.where((t < sowing) | (t > harvest + 10), 0.0, main)
    if winter:  # tillering before dormancy (~20 % of the spring peak), green leaves kept through winter
        rise, tiller = sowing + 40.0, 0.2
        autumn = tiller * np.where(t < rise, np.exp(-((t - rise) / 18.0) ** 2), np.exp(-((t - rise) / 150.0) ** 2))
        main = np.maximum(main, np.where(t > harvest, 0.0, autumn))
    return main


def _season_params(rng: np.random.Generator, season, harvest_year: int, shift: float) -> dict:
    day = {k: float(np.datetime64(v).astype(int)) for k, v in season.dates(harvest_year).items()}
    stretch = rng.uniform(0.9, 1.1)
    sowing = day["sowing"] + shift
    if season.slot == "winter":  # vernalisation: a late-sown winter crop heads only a little later
        peak = day["peak"] + WINTER_SHIFT_CARRIED * shift + rng.uniform(-7, 7)
        harvest = peak + (day["harvest"] - day["peak"]) * stretch
    else:
        peak = sowing + (day["peak"] - day["sowing"]) * stretch
        harvest = sowing + (day["harvest"] - day["sowing"]) * stretch
    return {"crop": season.crop, "winter": season.slot == "winter", "sowing": float(sowing), "peak": float(peak),
            "harvest": float(harvest), "peak_ndvi": rng.uniform(*PEAK_NDVI[season.crop]) * rng.uniform(0.85, 1.03)}


def systems_of(region: str) -> list[tuple[str, tuple]]:
    """The region's cropping systems as ``(name, seasons)``: each calendar season alone, then each rotation."""
    singles = [(key, (season,)) for key, season in load_calendars()[region].items()]
    return singles + [(r.system, (r.first, r.second)) for r in load_rotations()[region]]


def make_plots(region: str, n_per_system: int, seed: int, *, harvest_year: int = 2023,
               scenarios: dict[str, float] | None = None, n_bare: int | None = None) -> list[TruePlot]:
    """Plots of every cropping system of ``region`` (and bare ones), with random parameters and scenarios.

    ``scenarios`` gives the probability of each scenario (default: mostly clear, some of each other).
    """
    rng = np.random.default_rng(seed)
    weights = scenarios or {"clear": 0.55, "cloudy_peak": 0.15, "cloudy": 0.1, "unmasked": 0.1, "tiny": 0.05, "partial": 0.05}
    names, probs = list(weights), np.array(list(weights.values()), dtype=float)
    plots = []
    for name, seasons in systems_of(region):
        for k in range(n_per_system):
            params = {"seasons": [], "base": rng.uniform(*BASE_NDVI), "uncropped": rng.uniform(0.0, 0.15),
                      "pixel_sd": rng.uniform(0.03, 0.08), "noise": rng.uniform(0.015, 0.03)}
            shift = rng.uniform(-30, 30)
            for j, season in enumerate(seasons):
                if j == 1:  # the summer crop is sown 2-20 days after the winter crop's harvest
                    first = params["seasons"][0]
                    calendar_sowing = np.datetime64(season.dates(harvest_year)["sowing"]).astype(int)
                    shift = first["harvest"] + rng.uniform(2, 20) - calendar_sowing
                params["seasons"].append(_season_params(rng, season, harvest_year, shift))
            scenario = str(rng.choice(names, p=probs / probs.sum()))
            plots.append(TruePlot(f"{region}-{name}-{seed}-{k:03d}", region, name, tuple(s.crop for s in seasons),
                                  scenario, float(rng.uniform(1.0, 15.0)), params))
    for k in range(n_per_system if n_bare is None else n_bare):
        params = {"seasons": [], "base": rng.uniform(*BASE_NDVI), "uncropped": 1.0, "pixel_sd": 0.04,
                  "noise": rng.uniform(0.015, 0.03), "weeds": rng.uniform(0.0, 0.12)}
        scenario = str(rng.choice(names, p=probs / probs.sum()))
        plots.append(TruePlot(f"{region}-bare-{seed}-{k:03d}", region, "bare", (), scenario,
                              float(rng.uniform(1.0, 15.0)), params))
    return plots


def _normal_sf(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return 1.0 - ndtr(x)


def long_table(plots: list[TruePlot], start: str, end: str, seed: int) -> pd.DataFrame:
    """The zonal long table of ``plots`` observed every 5 days from ``start`` to ``end`` (inclusive)."""
    rng = np.random.default_rng(seed + 7919)
    dates = np.arange(np.datetime64(start), np.datetime64(end) + 1, REVISIT_DAYS)
    t = dates.astype(int).astype(float)
    frames = []
    for plot in plots:
        p = plot.params
        canopy_ndvi = np.full(len(t), p["base"])
        for s in p["seasons"]:
            bump = (s["peak_ndvi"] - p["base"]) * _canopy(t, s["sowing"], s["peak"], s["harvest"], s["winter"])
            canopy_ndvi = np.maximum(canopy_ndvi, p["base"] + bump)
        if not p["seasons"]:  # bare ground, perhaps a little summer weed cover
            canopy_ndvi = p["base"] + p.get("weeds", 0.0) * np.exp(-((t - t.mean()) / 40.0) ** 2)
        uncropped = p["uncropped"]
        mean = (1 - uncropped) * canopy_ndvi + uncropped * p["base"]
        cropped_share = (1 - uncropped) * _normal_sf((CROPPED_THRESHOLD - canopy_ndvi) / p["pixel_sd"])
        ndvi = mean + rng.normal(0, p["noise"], len(t))
        # Clouds: whole dates lost (clear share 0-0.5) with a seasonal probability, partial clouds otherwise.
        clear = np.where(rng.random(len(t)) < rng.uniform(0.3, 0.55), rng.uniform(0.0, 0.5, len(t)),
                         rng.uniform(0.75, 1.0, len(t)))
        masked = np.ones(len(t), dtype=bool)
        covered = np.ones(len(t))
        pixels = plot.area_mu * 666.67 / 100.0
        if plot.scenario == "cloudy_peak":  # every date within 12 days of a season's peak is clouded over 35-45 %
            for s in p["seasons"] or [{"peak": t.mean()}]:
                near = np.abs(t - s["peak"]) <= 12
                clear[near] = rng.uniform(0.55, 0.65, near.sum())
        elif plot.scenario == "cloudy":  # a long cloudy spell over the main canopy
            s = (p["seasons"] or [{"peak": t.mean()}])[-1]
            clear[np.abs(t - s["peak"]) <= 40] = rng.uniform(0.0, 0.3)
        elif plot.scenario == "unmasked":  # no cloud mask: cloudy dates look bare and count as clear
            masked[:] = False
            cloudy = clear < 0.6
            ndvi[cloudy] = ndvi[cloudy] * clear[cloudy] + 0.05 * (1 - clear[cloudy])
            cropped_share[cloudy] *= clear[cloudy]
            clear[:] = 1.0
        elif plot.scenario == "tiny":
            pixels = rng.uniform(0.8, 3.5)
        elif plot.scenario == "partial":
            covered[:] = rng.uniform(0.35, 0.7)
        valid = clear * covered
        frames.append(pd.DataFrame({
            "plot_id": plot.plot_id, "date": dates.astype(str), "ndvi_mean": ndvi,
            "ndvi_median": ndvi, "ndvi_p90": ndvi + 1.28 * p["pixel_sd"], "valid_frac": valid,
            "cloud_frac": (1 - clear) * covered, "covered_frac": covered,
            "cropped_area_mu": cropped_share * valid * plot.area_mu, "pixel_count": pixels, "cloud_masked": masked,
        }))
    return pd.concat(frames, ignore_index=True)


def truth_table(plots: list[TruePlot]) -> pd.DataFrame:
    """One row per plot: ``plot_id, region, system, crops (';'), scenario, area_mu``."""
    return pd.DataFrame([{"plot_id": p.plot_id, "region": p.region, "system": p.system, "crops": ";".join(p.crops),
                          "label": "-".join(p.crops) or "bare", "scenario": p.scenario, "area_mu": p.area_mu}
                         for p in plots])


# --------------------------------------------------------------------------- evaluation

#: Codes by which the crop check speaks about a plot's crop or cultivation (LOW_VIGOR is a peer comparison).
CROP_CODES = ("CROP_MISMATCH", "SEASON_UNRECOGNISED", "NOT_CULTIVATED", "NOT_CULTIVATED_UNCONFIRMED")
#: Scenarios whose review is by design (the plot cannot be verified from space) and not a verdict on its crop.
UNVERIFIABLE = ("tiny", "partial")


def honest_declarations(plot: TruePlot) -> list[tuple[str, ...]]:
    """Every honest declaration of a plot: its crop; for a rotation both crops, or either one alone."""
    if len(plot.crops) == 2:
        return [plot.crops, plot.crops[1:], plot.crops[:1]]
    return [plot.crops] if plot.crops else []


def swapped_declarations(plot: TruePlot, region_crops: list[str]) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """Dishonest declarations as ``(pair label, declared crops, the true crops of those seasons)``: another
    crop in place of the (summer) crop, and for a single-season field the region's rotation ending in its
    crop (a season that was not grown)."""
    if not plot.crops:
        return []
    out = []
    *first, last = plot.crops
    for other in region_crops:
        if other not in plot.crops:
            out.append((f"{last}->{other}", (*first, other), plot.crops))
            if first:
                out.append((f"{last}->{other} (declared alone)", (other,), (last,)))
    if len(plot.crops) == 1:
        for rotation in load_rotations()[plot.region]:
            if rotation.second.crop == last and plot.system != rotation.system:
                out.append((f"{last}->{rotation.system}", (rotation.first.crop, rotation.second.crop), plot.crops))
    return out


def value_per_mu(crops: tuple[str, ...]) -> float:
    """Expected harvest value per mu of the declared crops (``crops.csv``: yield × price), summed over seasons."""
    from agricredit.seeds import load_crops

    table = load_crops()
    return sum(table[c].yield_kg_per_mu * table[c].price_cny_per_kg for c in crops)


def evaluate(result, plots: list[TruePlot], *, crop_mismatch_margin: float, max_fit_rmse: float) -> dict[str, pd.DataFrame]:
    """Flag rates of the crop check on generated plots, from one :func:`agricredit.season.assess_season` result.

    The fits of ``result`` are reused for every declaration (honest and swapped) through
    :func:`agricredit.season.template_flags`; the run's own flags give the cultivation and cloud codes.

    Returns
    -------
    dict
        ``confusion`` (truth system × best explanation, counts), ``honest`` (one row per honest
        declaration: plot, scenario, codes, flagged), ``swaps`` (one row per swapped declaration:
        pair, flagged (any review: CROP_MISMATCH, SEASON_UNRECOGNISED, or CLOUD_INSUFFICIENT when clouds
        hid the declared season), higher_value).
    """
    from agricredit.season import Declared, fit_observations, template_flags

    region_of = {p.plot_id: p.region for p in plots}
    rows = result.plots.set_index("plot_id")
    honest, swaps = [], []
    for plot in plots:
        run_codes = set(filter(None, str(rows.at[plot.plot_id, "flags"]).split(";")))
        region_crops = sorted({s.crop for s in load_calendars()[plot.region].values()})
        fits = result.fits.get(plot.plot_id) or []
        series = result.series[plot.plot_id]
        used = fit_observations(series, fits)
        usable = bool(fits) and not run_codes & {"CLOUD_INSUFFICIENT", "NOT_CULTIVATED", "NOT_CULTIVATED_UNCONFIRMED"}

        def codes_for(crops: tuple[str, ...]) -> set[str]:
            if not usable:
                return run_codes & set(CROP_CODES) | (run_codes & {"CLOUD_INSUFFICIENT"})
            flags = template_flags(fits, [Declared(c) for c in crops], region_of[plot.plot_id], series.dates[used],
                                   series.ndvi[used], crop_mismatch_margin=crop_mismatch_margin, max_fit_rmse=max_fit_rmse)
            return {f.code for f in flags}

        for crops in honest_declarations(plot):
            codes = codes_for(crops)
            honest.append({"plot_id": plot.plot_id, "system": plot.system, "scenario": plot.scenario,
                           "declared": ";".join(crops), "codes": ";".join(sorted(codes)),
                           "flagged": bool(codes & set(CROP_CODES)), "cloud_insufficient": "CLOUD_INSUFFICIENT" in codes,
                           "zeroed": "NOT_CULTIVATED" in codes})
        for pair, crops, true_crops in swapped_declarations(plot, region_crops):
            codes = codes_for(crops)
            swaps.append({"plot_id": plot.plot_id, "region": plot.region, "system": plot.system,
                          "scenario": plot.scenario, "pair": pair, "declared": ";".join(crops),
                          "flagged": bool(codes & {"CROP_MISMATCH", "SEASON_UNRECOGNISED", "CLOUD_INSUFFICIENT"}),
                          "higher_value": value_per_mu(crops) > value_per_mu(true_crops) + 1e-9,
                          "testable": usable and plot.scenario not in UNVERIFIABLE})
    best = rows["best_explanation"].reindex([p.plot_id for p in plots]).fillna("(no fit)")
    confusion = pd.crosstab(pd.Series([p.system for p in plots], name="truth", index=best.index),
                            best.rename("best explanation"))
    return {"confusion": confusion, "honest": pd.DataFrame(honest), "swaps": pd.DataFrame(swaps)}
