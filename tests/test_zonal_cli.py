"""``agricredit stats`` end to end."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from agricredit.cli.main import cli
from test_zonal import CRS, X0, Y0, write_ndvi


@pytest.fixture
def inputs(tmp_path):
    tiles = [write_ndvi(tmp_path / f"ndvi_2023060{d}.tif", np.full((20, 20), v, dtype=np.float32))
             for d, v in ((1, 0.3), (6, 0.7))]
    plots = tmp_path / "plots.geojson"
    gpd.GeoDataFrame({"plot_id": ["A", "B", "BAD"]}, geometry=[
        shapely.box(X0 + 10, Y0 - 60, X0 + 60, Y0 - 10), shapely.box(X0 + 100, Y0 - 150, X0 + 140, Y0 - 110),
        shapely.Point(X0, Y0)], crs=CRS).to_crs(4326).to_file(plots)
    return str(plots), tiles


def test_stats_long_csv_and_exit_code_3(tmp_path, inputs):
    plots, tiles = inputs
    out = tmp_path / "stats.csv"
    result = CliRunner().invoke(cli, ["stats", plots, *tiles, "-o", str(out), "--threshold", "0.5", "--progress"])
    assert result.exit_code == 3, result.output
    assert "rejected GEOMETRY_NOT_POLYGON (1): BAD" in result.stderr
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 4 and set(table["date"]) == {"2023-06-01", "2023-06-06"}
    a = table[table["plot_id"] == "A"].set_index("date")
    assert a.loc["2023-06-01", "ndvi_mean"] == pytest.approx(0.3)
    assert a.loc["2023-06-01", "cropped_area_mu"] == 0
    assert a.loc["2023-06-06", "cropped_area_mu"] == pytest.approx(50 * 50 / 10_000 * 15, rel=1e-3)
    assert a.loc["2023-06-06", "pixel_count"] == pytest.approx(25, rel=1e-3)


def test_stats_geojson_nests_dates_per_plot(tmp_path, inputs):
    plots, tiles = inputs
    out = tmp_path / "stats.geojson"
    result = CliRunner().invoke(cli, ["stats", plots, *tiles, "-o", str(out)])
    assert result.exit_code == 3
    features = json.loads(out.read_text())["features"]
    assert [f["properties"]["plot_id"] for f in features] == ["A", "B"]
    assert [d["date"] for d in features[0]["properties"]["dates"]] == ["2023-06-01", "2023-06-06"]


def test_stats_parquet(tmp_path, inputs):
    plots, tiles = inputs
    out = tmp_path / "stats.parquet"
    assert CliRunner().invoke(cli, ["stats", plots, tiles[0], "-o", str(out)]).exit_code == 3
    assert list(pd.read_parquet(out)["plot_id"]) == ["A", "B"]
