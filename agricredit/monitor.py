"""In-season monitoring: new acquisitions after an assessment → alerts per plot, recommendations per borrower.

The lender watches the crop after the loan is made. :func:`run_monitor` reads a
previous ``assess`` output folder (:func:`read_previous`: the plots, their
borrowers' limits and the season series), runs the zonal engine over the new
acquisitions only (coverage weights are built once per grid and reused for
every new date, :func:`agricredit.zonal.zonal_stats`), extends each plot's
series and compares each new clear observation with

(a) the declared crop's regional calendar (``seeds/calendars.csv``) at that
    point of the season, widened by ``satellite.max_sowing_shift_days``;
(b) the plot's own previous clear observation;
(c) its peers: the plots of the same declared crop and region clear on the
    same new date (a peer's change is from its own previous clear observation).

Alert codes (``seeds/reason_codes.csv``) and their rules (thresholds in the
policy's ``[monitor]`` section, :class:`agricredit.policy.MonitorPolicy`):

- ``SUDDEN_DROP``: the plot fell by ``sudden_drop_min`` or more between its
  consecutive clear observations, ``sudden_drop_excess`` more than the peers'
  median fall, and its change ranks at or below ``drop_percentile`` among the
  peers' (flood, hail, lodging), before the calendar's harvest;
- ``EARLY_HARVEST``: such a fall to bare soil (above ``water_ndvi_max``) after
  the calendar peak and before its senescence window;
- ``REGIONAL_STRESS``: the peers' median fall reached ``regional_drop_min`` in
  the green period and the plot fell with them (drought, haze: not blamed on
  one farmer, and never a ``SUDDEN_DROP`` unless the plot fell much more);
- ``NO_EMERGENCE``: past the calendar green-up (+ shift), no clear observation
  since sowing reached the crop's cropped-NDVI threshold (``seeds/crops.csv``);
- ``GROWTH_LAG``: between green-up and peak (+ shift, and before the
  senescence window, where harvest dates differ) the plot is
  ``growth_lag_gap`` below the peers' median and ranks at or below
  ``growth_lag_percentile``.

Cloud-masked, uncovered or thin observations (valid share below
``satellite.min_valid_fraction``) are skipped, never read as drops. Peer
checks need ``satellite.min_peers`` peers. The peer median includes the plot;
its percentile is among the others (share below it, ties counted half).

Recommendations (:func:`recommend`): each code maps to ``keep``, ``visit`` or
``reduce`` in the policy; a borrower's *lost* area is the verified area of its
plots with a ``reduce`` alert; a lost share at or above ``freeze_min_share``
freezes the undrawn limit, a smaller share reduces the undrawn limit by that
share, otherwise any ``visit`` asks for a field visit, else keep. Every
borrower of the monitored plots gets a row, with its codes and figures.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from agricredit import __version__
from agricredit.errors import InputError, InputNotFoundError, SchemaError

__all__ = ["ALERT_CODES", "Previous", "Monitoring", "read_previous", "new_observations", "season_window",
           "detect_alerts", "recommend", "run_monitor", "write_monitor_outputs", "OUTPUT_FILES"]

#: Alert codes, in the order they are reported for one plot and date.
ALERT_CODES = ("NO_EMERGENCE", "GROWTH_LAG", "SUDDEN_DROP", "EARLY_HARVEST", "REGIONAL_STRESS")
#: What ``monitor`` writes into its output folder (``manifest.json`` last).
OUTPUT_FILES = ("alerts.geojson", "alerts.csv", "recommendations.csv", "alerts_audit.jsonl", "manifest.json")
#: Schema of one audit line of ``alerts_audit.jsonl``.
AUDIT_SCHEMA = "agricredit.alert/1"
#: What the previous folder must hold, and the columns read from each.
_NEEDED = {"plots.geojson": ("plot_id", "borrower", "declared_crop", "region", "verified_mu"),
           "borrowers.parquet": ("borrower", "limit", "verified_mu"),
           "series.parquet": ("plot_id", "date", "ndvi_mean", "valid_frac", "cloud_frac")}


@dataclasses.dataclass(frozen=True)
class Previous:
    """What monitoring reads from an ``assess`` output folder."""

    plots: gpd.GeoDataFrame  # the plots with a series: plot_id, borrower, declared_crop, region, verified_mu
    borrowers: pd.DataFrame  # borrower, limit, verified_mu
    series: pd.DataFrame  # plot_id, date (YYYY-MM-DD), ndvi_mean, valid_frac, cloud_frac
    manifest_sha256: str  # of the folder's manifest.json (empty when it has none)


@dataclasses.dataclass(frozen=True)
class Monitoring:
    """The result of :func:`run_monitor`."""

    alerts: gpd.GeoDataFrame  # one row per alert, ALERT_FIELDS + geometry (WGS84)
    recommendations: pd.DataFrame  # one row per borrower, RECOMMENDATION_FIELDS
    series: pd.DataFrame  # the extended series
    new_dates: tuple[str, ...]
    inputs: dict[str, Any]
    policy: Any


def read_previous(folder: str | Path) -> Previous:
    """Read the plots, borrowers and season series of an ``assess`` output folder.

    Raises
    ------
    InputNotFoundError
        The folder or one of ``plots.geojson``, ``borrowers.parquet``,
        ``series.parquet`` is missing (the message names the file).
    SchemaError
        A file lacks a column monitoring needs.
    """
    from agricredit.outputs import sha256_file

    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFoundError("no such assessment folder", path=folder)
    tables = {}
    for name, columns in _NEEDED.items():
        path = folder / name
        if not path.is_file():
            raise InputNotFoundError(f"the assessment folder lacks {name} (run `agricredit assess` with this "
                                     "version first)", path=path)
        table = gpd.read_file(path) if name.endswith(".geojson") else pd.read_parquet(path)
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise SchemaError(f"{name} lacks column {missing[0]!r}", path=path)
        tables[name] = table
    series = tables["series.parquet"].loc[:, list(_NEEDED["series.parquet"])].copy()
    series["plot_id"] = series["plot_id"].astype(str)
    series["date"] = series["date"].astype(str).str[:10]
    for column in ("ndvi_mean", "valid_frac", "cloud_frac"):
        series[column] = pd.to_numeric(series[column], errors="coerce")
    plots = tables["plots.geojson"]
    plots["plot_id"] = plots["plot_id"].astype(str)
    plots = plots.loc[plots["plot_id"].isin(set(series["plot_id"])),
                      [*_NEEDED["plots.geojson"], "geometry"]].reset_index(drop=True)
    if plots.empty:
        raise InputError("no plot of plots.geojson has a season series", path=folder / "series.parquet")
    borrowers = tables["borrowers.parquet"].loc[:, list(_NEEDED["borrowers.parquet"])].reset_index(drop=True)
    manifest = folder / "manifest.json"
    return Previous(plots.to_crs("EPSG:4326"), borrowers, series.sort_values(["plot_id", "date"], ignore_index=True),
                    sha256_file(manifest) if manifest.is_file() else "")


def new_observations(previous: Previous, acquisitions: Sequence[Any],
                     **zonal_options: Any) -> tuple[list[Any], pd.DataFrame]:
    """The acquisitions after the season's last date, and their zonal figures as series rows.

    Raises
    ------
    InputError
        No acquisition is later than the last date of the previous series.
    """
    from agricredit.acquisitions import observation_table

    last = previous.series["date"].max()
    later = [a for a in acquisitions if a.date.isoformat() > last]
    if not later:
        raise InputError(f"no new acquisition: every date given is on or before the season's last date {last}")
    table = observation_table(previous.plots, later, **zonal_options)
    rows = pd.DataFrame({"plot_id": table["plot_id"].astype(str), "date": table["date"].astype(str).str[:10],
                         **{c: pd.to_numeric(table[c], errors="coerce").round(4) for c in _NEEDED["series.parquet"][2:]}})
    return later, rows


def season_window(crop: str, region: str, date: dt.date, shift_days: int) -> dict[str, dt.date] | None:
    """The declared crop's calendar around ``date``: the stages of every season of it in progress.

    A season is in progress when ``date`` lies between its sowing − shift and
    harvest + shift. With several (a single and a double-crop soybean) the
    window is the widest: ``sowing``, ``peak_early``, ``senescence`` the
    earliest, ``greenup``, ``peak``, ``harvest`` the latest. ``None`` when the
    crop is out of season (or not in the region's calendar).
    """
    from agricredit.seeds import load_calendars

    shift = dt.timedelta(days=shift_days)
    stages = [season.dates(year) for season in load_calendars().get(region, {}).values() if season.crop == crop
              for year in (date.year, date.year + 1)]
    stages = [s for s in stages if s["sowing"] - shift <= date <= s["harvest"] + shift]
    if not stages:
        return None
    return {"sowing": min(s["sowing"] for s in stages), "greenup": max(s["greenup"] for s in stages),
            "peak_early": min(s["peak"] for s in stages), "peak": max(s["peak"] for s in stages),
            "senescence": min(s["senescence"] for s in stages), "harvest": max(s["harvest"] for s in stages)}


def _share_below(values: np.ndarray, sorted_all: np.ndarray) -> np.ndarray:
    """Each value's share of the *other* values below it (ties half), among ``sorted_all`` (which holds them)."""
    below = np.searchsorted(sorted_all, values, side="left")
    ties = np.searchsorted(sorted_all, values, side="right") - below - 1  # not itself
    others = len(sorted_all) - 1
    return (below + 0.5 * ties) / others if others > 0 else np.full(len(values), np.nan)


def _round(value: float) -> float:
    return round(float(value), 4)


def detect_alerts(series: pd.DataFrame, plots: pd.DataFrame, policy: Any, new_dates: Sequence[str]) -> pd.DataFrame:
    """The alerts of the new dates (see the module's rules), one row per plot, code and date.

    Parameters
    ----------
    series
        The extended series (old and new rows): plot_id, date, ndvi_mean, valid_frac.
    plots
        plot_id, borrower, declared_crop, region.
    policy
        :class:`agricredit.policy.Policy` (``[monitor]`` and ``[satellite]`` thresholds).
    new_dates
        The dates to check (``YYYY-MM-DD``).

    Returns
    -------
    DataFrame
        The alert fields of :data:`agricredit.schema.ALERT_FIELDS` but ``action`` and ``recommendation``.
    """
    from agricredit.seeds import load_crops, load_reason_codes

    m, sat = policy.monitor, policy.satellite
    codes, crops = load_reason_codes(), load_crops()
    clear = series.loc[(series["valid_frac"] >= sat.min_valid_fraction) & series["ndvi_mean"].notna(),
                       ["plot_id", "date", "ndvi_mean"]]
    info = plots.set_index("plot_id")[["borrower", "declared_crop", "region"]]
    alerts: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for date in sorted(new_dates):
        day = dt.date.fromisoformat(date)
        now = clear.loc[clear["date"] == date].set_index("plot_id")["ndvi_mean"]
        before = clear.loc[clear["date"] < date].groupby("plot_id").last()
        frame = info.join(now.rename("ndvi"), how="inner").join(
            before.rename(columns={"date": "previous_date", "ndvi_mean": "previous_ndvi"}))
        frame["change"] = frame["ndvi"] - frame["previous_ndvi"]
        for (crop, region), group in frame.groupby(["declared_crop", "region"], sort=True):
            window = season_window(str(crop), str(region), day, sat.max_sowing_shift_days)
            if window is None:
                continue
            alerts += _group_alerts(group, window, day, m, sat, crops.get(str(crop)), clear)
    rows = []
    for alert in sorted(alerts, key=lambda a: (a["date"], a["plot_id"], ALERT_CODES.index(a["code"]))):
        if (alert["plot_id"], alert["code"]) in seen:
            continue  # one alert per plot and code: the first date it was raised
        seen.add((alert["plot_id"], alert["code"]))
        rows.append({**alert, "severity": codes[alert["code"]].severity})
    columns = ["plot_id", "borrower", "declared_crop", "code", "severity", "date", "previous_date", "ndvi",
               "previous_ndvi", "peer_median", "peer_median_change", "peer_percentile", "n_peers", "details"]
    return pd.DataFrame(rows, columns=columns)


def _group_alerts(group: pd.DataFrame, window: dict[str, dt.date], day: dt.date, m: Any, sat: Any, crop: Any,
                  clear: pd.DataFrame) -> list[dict[str, Any]]:
    """The alerts of one crop and region on one date (``group``: the plots clear on it, indexed by plot_id)."""
    shift = dt.timedelta(days=sat.max_sowing_shift_days)
    ndvi, change = group["ndvi"].to_numpy(), group["change"].to_numpy()
    paired = ~np.isnan(change)
    levels, changes = np.sort(ndvi), np.sort(change[paired])
    level_pct = _share_below(ndvi, levels)
    change_pct = np.full(len(group), np.nan)
    change_pct[paired] = _share_below(change[paired], changes)
    n_level, n_change = len(levels) - 1, np.where(paired, len(changes) - 1, 0)
    peer_median = float(np.median(levels))
    peer_change = float(np.median(changes)) if len(changes) else math.nan
    in_green = day < window["senescence"] - shift
    fell = -change  # NaN without a previous clear observation: every comparison below is False
    drop = (n_change >= sat.min_peers) & (fell >= m.sudden_drop_min) & (fell + peer_change >= m.sudden_drop_excess) \
        & (100 * change_pct <= m.drop_percentile)
    bare = (ndvi > m.water_ndvi_max) & (day >= window["peak_early"])
    early_harvest = drop & bare & in_green
    sudden = drop & ~bare & (day <= window["harvest"])
    regional = ~drop & (n_change >= sat.min_peers) & in_green & (-peer_change >= m.regional_drop_min) \
        & (fell >= m.regional_drop_min)
    threshold = crop.cropped_ndvi_threshold if crop is not None else None
    start = (window["sowing"] - shift).isoformat()
    since_sowing = clear.loc[(clear["date"] >= start) & (clear["date"] <= day.isoformat())
                             & clear["plot_id"].isin(group.index)]
    greenest = since_sowing.groupby("plot_id")["ndvi_mean"].max().reindex(group.index).to_numpy()
    no_emergence = np.zeros(len(group), bool) if threshold is None else \
        (window["greenup"] + shift < day <= window["harvest"]) & (greenest < threshold)
    growing = window["greenup"] + shift < day <= window["peak"] + shift and in_green
    lag = ~no_emergence & ~(early_harvest | sudden | regional) & (n_level >= sat.min_peers) & growing \
        & (peer_median - ndvi >= m.growth_lag_gap) & (100 * level_pct <= m.growth_lag_percentile)
    flagged = {"NO_EMERGENCE": no_emergence, "GROWTH_LAG": lag, "SUDDEN_DROP": sudden,
               "EARLY_HARVEST": early_harvest, "REGIONAL_STRESS": regional}
    if not any(mask.any() for mask in flagged.values()):
        return []
    figures = {"sudden_drop_min": m.sudden_drop_min, "sudden_drop_excess": m.sudden_drop_excess,
               "drop_percentile": m.drop_percentile, "regional_drop_min": m.regional_drop_min,
               "water_ndvi_max": m.water_ndvi_max, "growth_lag_gap": m.growth_lag_gap,
               "growth_lag_percentile": m.growth_lag_percentile, "cropped_ndvi_threshold": threshold,
               "min_peers": sat.min_peers, "max_sowing_shift_days": sat.max_sowing_shift_days}
    calendar = {k: v.isoformat() for k, v in window.items()}
    by_plot = since_sowing.groupby("plot_id")
    out = []
    for code, mask in flagged.items():
        is_change = code in ("SUDDEN_DROP", "EARLY_HARVEST", "REGIONAL_STRESS")
        for i in np.flatnonzero(mask):
            plot_id, row = group.index[i], group.iloc[i]
            own = by_plot.get_group(plot_id)
            out.append({
                "plot_id": str(plot_id), "borrower": row["borrower"], "declared_crop": row["declared_crop"],
                "code": code, "date": day.isoformat(),
                "previous_date": row["previous_date"] if is_change else None,
                "ndvi": _round(ndvi[i]), "previous_ndvi": _round(row["previous_ndvi"]) if is_change else None,
                "peer_median": _round(peer_median), "peer_median_change": _round(peer_change) if is_change else None,
                "peer_percentile": _round(change_pct[i] if is_change else level_pct[i]),
                "n_peers": int(n_change[i] if is_change else n_level),
                "details": {"region": row["region"], "calendar": calendar, "thresholds": figures,
                            "series": [[d, _round(v)] for d, v in zip(own["date"], own["ndvi_mean"])]},
            })
    return out


def recommend(alerts: pd.DataFrame, plots: pd.DataFrame, borrowers: pd.DataFrame, policy: Any) -> pd.DataFrame:
    """One recommendation per borrower of ``plots`` by the policy's rules (see the module).

    Parameters
    ----------
    alerts
        From :func:`detect_alerts`.
    plots
        plot_id, borrower, verified_mu.
    borrowers
        borrower, limit, verified_mu (the assessment's).
    policy
        :class:`agricredit.policy.Policy`.

    Returns
    -------
    DataFrame
        :data:`agricredit.schema.RECOMMENDATION_FIELDS`, sorted by borrower.
    """
    m, step = policy.monitor, policy.credit.rounding_step
    action = {code: getattr(m, f"{code.lower()}_action") for code in ALERT_CODES}
    verified = pd.to_numeric(plots.set_index("plot_id")["verified_mu"], errors="coerce").fillna(0.0).to_dict()
    assessed = borrowers.set_index("borrower")[["limit", "verified_mu"]].astype(float).to_dict("index")
    alerts_of: dict[str, list[tuple[str, str]]] = {}
    for plot_id, borrower, code in zip(alerts["plot_id"], alerts["borrower"], alerts["code"]):
        alerts_of.setdefault(borrower, []).append((plot_id, code))
    rows = []
    for borrower in sorted(plots["borrower"].dropna().unique()):
        mine = alerts_of.get(borrower, [])
        codes = sorted({code for _, code in mine}, key=ALERT_CODES.index)
        lost = float(sum(verified.get(p, 0.0) for p in sorted({p for p, code in mine if action[code] == "reduce"})))
        figures = assessed.get(borrower, {"limit": 0.0, "verified_mu": 0.0})
        limit, total = figures["limit"], figures["verified_mu"]
        share = min(1.0, lost / total) if total > 0 else 0.0
        if share > 0 and share >= m.freeze_min_share:
            name, cut = "FREEZE_UNDRAWN", 1.0
            why = f"{share:.1%} of the verified area lost (>= {m.freeze_min_share:.0%}): undrawn limit frozen"
        elif share > 0:
            name, cut = "REDUCE_UNDRAWN", round(share, 4)
            why = f"{lost:.2f} of {total:.2f} verified mu lost: undrawn limit reduced by {cut:.2%}"
        elif any(action[code] == "visit" for code in codes):
            name, cut, why = "FIELD_VISIT", 0.0, "alerts that ask for a loan officer's visit"
        else:
            name, cut = "KEEP", 0.0
            why = "no alert" if not codes else "alerts that change nothing by the policy (" + ";".join(codes) + ")"
        rows.append({"borrower": borrower, "recommendation": name, "reduce_share": cut, "limit": limit,
                     "limit_after": math.floor(limit * (1 - cut) / step + 1e-9) * step,
                     "verified_mu": total, "lost_mu": lost, "alert_codes": codes,
                     "plots": sorted({p for p, _ in mine}), "explanation": why})
    from agricredit.schema import RECOMMENDATION_FIELDS, conformed_table

    return conformed_table(rows, RECOMMENDATION_FIELDS)


def run_monitor(folder: str | Path, tiles: Sequence[str | Path], policy: Any, **reader_options: Any) -> Monitoring:
    """Read an assessment, add the new acquisitions' statistics, raise alerts and recommend.

    Parameters
    ----------
    folder
        An ``assess`` output folder (:func:`read_previous`).
    tiles
        New acquisitions, as :func:`agricredit.acquisitions.discover_acquisitions` takes them.
    policy
        :class:`agricredit.policy.Policy`.
    **reader_options
        Passed to the tile readers.
    """
    from agricredit.acquisitions import discover_acquisitions, tile_hashes
    from agricredit.schema import ALERT_FIELDS, conformed_table

    previous = read_previous(folder)
    acquisitions = discover_acquisitions(list(tiles), **reader_options)
    if not acquisitions:  # (an empty manifest or ItemCollection, say)
        raise InputError("no new acquisition: the new tiles hold none", path=tiles[0])
    acquisitions, fresh = new_observations(previous, acquisitions)
    series = pd.concat([previous.series, fresh], ignore_index=True).sort_values(["plot_id", "date"], ignore_index=True)
    new_dates = tuple(sorted(set(fresh["date"])))
    alerts = detect_alerts(series, previous.plots, policy, new_dates)
    recommendations = recommend(alerts, previous.plots, previous.borrowers, policy)
    action = {code: getattr(policy.monitor, f"{code.lower()}_action") for code in ALERT_CODES}
    alerts["action"] = alerts["code"].map(action)
    alerts["recommendation"] = alerts["borrower"].map(recommendations.set_index("borrower")["recommendation"])
    geometry = previous.plots.set_index("plot_id").geometry
    table = conformed_table(alerts.to_dict("records"), ALERT_FIELDS)
    alerts_gdf = gpd.GeoDataFrame(table, geometry=[geometry[p] for p in table["plot_id"]], crs="EPSG:4326")
    inputs = {"assessment_manifest_sha256": previous.manifest_sha256, "tiles": tile_hashes(acquisitions)}
    return Monitoring(alerts_gdf, recommendations, series, new_dates, inputs, policy)


def write_monitor_outputs(result: Monitoring, folder: str | Path, audit_key: Any, *, csv_bom: bool = True) -> dict:
    """Write ``alerts.geojson``, ``alerts.csv``, ``recommendations.csv``, ``alerts_audit.jsonl``, ``manifest.json``.

    Staged and scanned for personal data like ``assess``'s outputs, manifest
    last (:func:`agricredit.outputs.staged_outputs`); one audit record sealed
    with ``audit_key`` per alert (:func:`agricredit.audit.write_audit`), holding
    the alert, its borrower's recommendation, the policy and the inputs' hashes.

    Returns
    -------
    dict
        The manifest.
    """
    from agricredit.assess_outputs import COORDINATE_DECIMALS
    from agricredit.audit import write_audit
    from agricredit.outputs import atomic_path, sha256_file, staged_outputs, write_plot_table, write_table
    from agricredit.privacy import PersonalDataGuard, check_allowed_fields
    from agricredit.schema import ALERT_FIELDS, RECOMMENDATION_FIELDS, headers

    alerts, recommendations = result.alerts, result.recommendations
    by_borrower = recommendations.set_index("borrower")
    records = [{"schema": AUDIT_SCHEMA, "tool_version": __version__, "policy": result.policy.to_dict(),
                "inputs": result.inputs, "borrower_id": alert["borrower"],
                "alert": {k: v for k, v in alert.items() if k != "geometry"},
                "recommendation": by_borrower.loc[alert["borrower"]].to_dict()}
               for alert in alerts.to_dict("records")]
    guard = PersonalDataGuard.from_borrowers(None)
    with staged_outputs(folder, check=guard.check_folder) as stage:
        check_allowed_fields("alerts", alerts.columns.drop("geometry"))
        write_plot_table(alerts, stage / "alerts.geojson", decimals=COORDINATE_DECIMALS)
        write_table(pd.DataFrame(alerts.drop(columns="geometry")), stage / "alerts.csv", bom=csv_bom,
                    header=headers(ALERT_FIELDS, "en"))
        check_allowed_fields("recommendations", recommendations.columns)
        write_table(recommendations, stage / "recommendations.csv", bom=csv_bom,
                    header=headers(RECOMMENDATION_FIELDS, "en"))
        check_allowed_fields("alerts_audit.jsonl", {name for record in records for name in record})
        audit = write_audit(records, stage / "alerts_audit.jsonl", audit_key)
        manifest = {
            "tool": "agricredit", "tool_version": __version__,
            "policy": {"name": result.policy.meta.name, "version": result.policy.meta.version,
                       "sha256": result.policy.sha256},
            "inputs": {**result.inputs, "new_dates": list(result.new_dates)},
            "outputs": {name: sha256_file(stage / name) for name in OUTPUT_FILES[:-1]},
            "counts": {"alerts": {code: int(n) for code, n in sorted(alerts["code"].value_counts().items())},
                       "recommendations": {name: int(n) for name, n in
                                           sorted(recommendations["recommendation"].value_counts().items())}},
            "audit": audit,
        }
        check_allowed_fields("manifest.json", manifest)
        with atomic_path(stage / "manifest.json") as tmp:
            tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest
