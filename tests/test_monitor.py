"""``agricredit monitor``: simulated events on the sample season are caught with the right code.

The sample is assessed once; its season is cut after 2023-07-10 (maize and
soybean green, wheat harvested), and new NDVI tiles dated 2023-07-20 are built
in tmp_path from the sample's own 2023-07-10 reading, with events painted into
chosen plots: a flood (NDVI of water), a drought (every pixel × 0.6), a plot
never sown (bare soil all season) and a harvest before the peers'.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import rasterio.features
from click.testing import CliRunner

from agricredit.cli.main import cli
from agricredit.errors import InputError
from agricredit.monitor import read_previous, run_monitor
from agricredit.policy import load_policy
from agricredit.zonal import _tile_reader, open_tile

SAMPLE = Path(__file__).resolve().parents[1] / "sample_tiles"
CUT = "2023-07-10"
NEW_DATE = "20230720"
ENV = {"AGRICREDIT_PII_KEY": "monitor-test-pseudonym-key", "AGRICREDIT_AUDIT_KEY": "monitor-test-audit-key-0123"}
#: Plots of the sample with a planted problem (sample_tiles/planted_cases.csv); every other plot is honest.
PLANTED = {row["plot_id"] for row in csv.DictReader(open(SAMPLE / "planted_cases.csv", encoding="utf-8"))}


@pytest.fixture(scope="module")
def assessed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample assessed, with its season cut after :data:`CUT`."""
    out = tmp_path_factory.mktemp("assess") / "out"
    result = CliRunner().invoke(cli, ["assess", "--sample", "-o", str(out)], env=ENV)
    assert result.exit_code in (0, 3), result.output
    series = pd.read_parquet(out / "series.parquet")
    series.loc[series["date"] <= CUT].to_parquet(out / "series.parquet", index=False)
    return out


@pytest.fixture(scope="module")
def last_ndvi() -> tuple[np.ndarray, dict]:
    """The sample's NDVI of :data:`CUT` (NaN = cloud) and a float32 GeoTIFF profile of its grid."""
    tile = open_tile(SAMPLE / "season" / f"S2_L2A_SIM_{CUT.replace('-', '')}.tif")
    with _tile_reader(tile) as read:
        ndvi, cloud = read(rasterio.windows.Window(0, 0, tile.width, tile.height))
    profile = {"driver": "GTiff", "dtype": "float32", "count": 1, "width": tile.width, "height": tile.height,
               "crs": tile.crs.to_wkt(), "transform": tile.transform, "nodata": float("nan")}
    return np.where(cloud, np.nan, ndvi).astype(np.float32), profile


@pytest.fixture(scope="module")
def plots(assessed: Path) -> gpd.GeoDataFrame:
    return read_previous(assessed).plots


def _inside(plots: gpd.GeoDataFrame, ids: list[str], profile: dict) -> np.ndarray:
    """Pixels touching the plots ``ids``."""
    shapes = plots.loc[plots["plot_id"].isin(ids)].to_crs(profile["crs"]).geometry
    return rasterio.features.geometry_mask(shapes, (profile["height"], profile["width"]), profile["transform"],
                                           all_touched=True, invert=True)


def _write_tile(folder: Path, ndvi: np.ndarray, profile: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"NDVI_{NEW_DATE}.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(ndvi.astype(np.float32), 1)
    return path


def _honest(plots: gpd.GeoDataFrame, crop: str, n: int, assessed: Path, skip: set[str] = frozenset()) -> list[str]:
    """``n`` honest plots of ``crop`` clear and green on :data:`CUT`."""
    series = pd.read_parquet(assessed / "series.parquet")
    green = set(series.loc[(series["date"] == CUT) & (series["valid_frac"] == 1) & (series["ndvi_mean"] > 0.7),
                           "plot_id"])
    ids = sorted(p for p in plots.loc[plots["declared_crop"] == crop, "plot_id"]
                 if p in green and p not in PLANTED and p not in skip)
    return ids[:n]


def _monitor(assessed: Path, tile: Path, out: Path) -> tuple[int, pd.DataFrame, pd.DataFrame]:
    result = CliRunner().invoke(cli, ["monitor", str(assessed), str(tile), "-o", str(out)], env=ENV)
    assert result.exit_code in (0, 3), result.output
    alerts = pd.read_csv(out / "alerts.csv", encoding="utf-8-sig", dtype={"plot_id": str})
    recommendations = pd.read_csv(out / "recommendations.csv", encoding="utf-8-sig")
    return result.exit_code, alerts, recommendations


def test_unchanged_season_alerts_only_planted_plots(assessed, last_ndvi, tmp_path):
    ndvi, profile = last_ndvi
    code, alerts, recommendations = _monitor(assessed, _write_tile(tmp_path / "tiles", ndvi, profile), tmp_path / "a")
    assert set(alerts["plot_id"]) <= PLANTED, alerts[["plot_id", "code"]]
    assert "SUDDEN_DROP" not in set(alerts["code"]) and "REGIONAL_STRESS" not in set(alerts["code"])
    assert code == (3 if len(alerts) else 0)
    assert len(recommendations) == recommendations["borrower"].nunique() > 100


def test_flood_never_sown_and_early_harvest(assessed, last_ndvi, plots, tmp_path):
    ndvi, profile = last_ndvi
    flooded = _honest(plots, "soybean", 3, assessed)
    harvested = _honest(plots, "maize", 1, assessed)
    never = _honest(plots, "maize", 1, assessed, skip=set(harvested))
    ndvi = ndvi.copy()
    ndvi[_inside(plots, flooded, profile)] = 0.02  # water
    ndvi[_inside(plots, harvested, profile)] = 0.18  # bare soil after the maize peak (07-15), before 08-03
    ndvi[_inside(plots, never, profile)] = 0.15
    # the never-sown plot: bare soil on every date of the season too
    series = pd.read_parquet(assessed / "series.parquet")
    folder = tmp_path / "before"
    shutil.copytree(assessed, folder)
    series.loc[series["plot_id"].isin(never) & series["ndvi_mean"].notna(), "ndvi_mean"] = 0.15
    series.to_parquet(folder / "series.parquet", index=False)
    code, alerts, recommendations = _monitor(folder, _write_tile(tmp_path / "tiles", ndvi, profile), tmp_path / "a")
    assert code == 3
    by_plot = alerts.groupby("plot_id")["code"].apply(set).to_dict()
    for plot_id in flooded:
        assert by_plot[plot_id] == {"SUDDEN_DROP"}
    assert by_plot[harvested[0]] == {"EARLY_HARVEST"}
    assert by_plot[never[0]] == {"NO_EMERGENCE"}
    assert set(by_plot) - set(flooded + harvested + never) <= PLANTED
    drop = alerts.loc[alerts["plot_id"] == flooded[0]].iloc[0]
    assert drop["previous_date"] == CUT and drop["date"] == "2023-07-20"
    assert drop["ndvi"] == pytest.approx(0.02, abs=0.005) and drop["previous_ndvi"] > 0.7
    assert drop["peer_percentile"] <= 0.1 and abs(drop["peer_median_change"]) < 0.05
    evidence = json.loads(drop["details"])
    assert evidence["calendar"]["peak"] == "2023-08-30" and evidence["series"][-1] == ["2023-07-20", 0.02]
    # recommendations: the borrower of a flooded (reduce) plot loses area; early harvest asks for a visit
    rec = recommendations.set_index("borrower")
    flooded_borrower = plots.set_index("plot_id").at[flooded[0], "borrower"]
    assert rec.at[flooded_borrower, "recommendation"] in {"REDUCE_UNDRAWN", "FREEZE_UNDRAWN"}
    assert "SUDDEN_DROP" in rec.at[flooded_borrower, "alert_codes"]


def test_drought_is_regional_stress_not_sudden_drop(assessed, last_ndvi, plots, tmp_path):
    ndvi, profile = last_ndvi
    code, alerts, recommendations = _monitor(assessed, _write_tile(tmp_path / "tiles", ndvi * 0.6, profile),
                                             tmp_path / "a")
    assert code == 3
    stressed = set(alerts.loc[alerts["code"] == "REGIONAL_STRESS", "plot_id"])
    green = set(_honest(plots, "maize", 1000, assessed) + _honest(plots, "soybean", 1000, assessed))
    assert green <= stressed
    assert "SUDDEN_DROP" not in set(alerts["code"])
    assert set(recommendations.loc[recommendations["borrower"].isin(
        plots.loc[plots["plot_id"].isin(green), "borrower"]), "recommendation"]) <= {"KEEP", "FIELD_VISIT"}


def test_outputs_are_rfc7946_csv_and_sealed_audit(assessed, last_ndvi, plots, tmp_path):
    ndvi, profile = last_ndvi
    ndvi = ndvi.copy()
    flooded = _honest(plots, "soybean", 2, assessed)
    ndvi[_inside(plots, flooded, profile)] = 0.0
    code, alerts, _ = _monitor(assessed, _write_tile(tmp_path / "tiles", ndvi, profile), tmp_path / "a")
    collection = json.loads((tmp_path / "a" / "alerts.geojson").read_text(encoding="utf-8"))
    assert collection["type"] == "FeatureCollection" and "crs" not in collection
    assert len(collection["features"]) == len(alerts)
    for feature in collection["features"]:
        assert feature["geometry"]["type"] in {"Polygon", "MultiPolygon"}
        lon, lat = feature["geometry"]["coordinates"][0][0][:2] if feature["geometry"]["type"] == "Polygon" \
            else feature["geometry"]["coordinates"][0][0][0][:2]
        assert -180 <= lon <= 180 and -90 <= lat <= 90
        assert all(not isinstance(v, (dict, list)) for v in feature["properties"].values())
    assert (tmp_path / "a" / "alerts.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    lines = (tmp_path / "a" / "alerts_audit.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(alerts)
    first = json.loads(lines[0])
    assert first["schema"] == "agricredit.alert/1" and first["mac"] and first["policy"]["monitor"]
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["audit"]["records"] == len(alerts)
    assert manifest["inputs"]["new_dates"] == ["2023-07-20"]
    # deterministic: the same inputs, policy and version give the same bytes
    _monitor(assessed, tmp_path / "tiles" / f"NDVI_{NEW_DATE}.tif", tmp_path / "b")
    for name in ("alerts.geojson", "alerts.csv", "recommendations.csv", "alerts_audit.jsonl", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_refuses_folder_without_series(assessed, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(assessed, folder)
    (folder / "series.parquet").unlink()
    result = CliRunner().invoke(cli, ["monitor", str(folder), str(SAMPLE / "season"), "-o", str(tmp_path / "a")],
                                env=ENV)
    assert result.exit_code not in (0, 3)
    assert "series.parquet" in result.output and "Traceback" not in result.output


def test_refuses_tiles_not_after_the_season(assessed, tmp_path):
    with pytest.raises(InputError, match="no new acquisition: every date given is on or before the season's last"):
        run_monitor(assessed, [SAMPLE / "season" / f"S2_L2A_SIM_{CUT.replace('-', '')}.tif"], load_policy())
    empty = tmp_path / "manifest.csv"  # no tile at all: said so, not as tiles of past dates
    empty.write_text("date,sensor,path\n", encoding="utf-8")
    with pytest.raises(InputError, match="manifest.csv: no new acquisition: the new tiles hold none$"):
        run_monitor(assessed, [empty], load_policy())


def test_no_alert_exits_0_with_empty_outputs(assessed, last_ndvi, tmp_path):
    ndvi, profile = last_ndvi
    policy = tmp_path / "lender.toml"  # the bundled policy without GROWTH_LAG (the planted low-vigor plots)
    text = (SAMPLE.parent / "seeds" / "policy.toml").read_text(encoding="utf-8")
    policy.write_text(text.replace("growth_lag_gap = 0.20", "growth_lag_gap = 1.5"), encoding="utf-8")
    tile = _write_tile(tmp_path / "tiles", ndvi, profile)
    result = CliRunner().invoke(cli, ["monitor", str(assessed), str(tile), "-o", str(tmp_path / "a"),
                                      "--policy", str(policy)], env=ENV)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a" / "alerts.geojson").read_text(encoding="utf-8"))["features"] == []
    assert pd.read_csv(tmp_path / "a" / "alerts.csv", encoding="utf-8-sig").empty
    assert (tmp_path / "a" / "alerts_audit.jsonl").read_text(encoding="utf-8") == ""
    recommendations = pd.read_csv(tmp_path / "a" / "recommendations.csv", encoding="utf-8-sig")
    assert set(recommendations["recommendation"]) == {"KEEP"}
