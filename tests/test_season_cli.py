"""`agricredit season` and `agricredit train-crop` end to end on tiny NDVI rasters (needs the zonal engine)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rasterio
from click.testing import CliRunner
from pyproj import Transformer
from rasterio.transform import from_origin

from agricredit.cli.main import cli
from agricredit.seeds import template_ndvi
from season_synth import SUMMER_DATES, doy

pytest.importorskip("agricredit.zonal", reason="the zonal engine (issue 4) is not merged yet")

PIXEL = 10.0
ORIGIN = (440000.0, 4180000.0)  # EPSG:32618, Virginia's Eastern Shore
SIZE = 8  # plot side in pixels (80 m, 9.6 mu)
# 3 rows x 6 plots: what grows, what is declared.
LAYOUT = [
    [("maize", "maize"), ("maize", "maize"), ("soybean", "soybean"), ("soybean", "soybean"), ("wheat", "wheat"), ("wheat", "wheat")],
    [("maize", "maize"), ("soybean", "soybean"), ("wheat", "wheat"), ("maize", "maize"), ("soybean", "soybean"), ("wheat", "wheat")],
    [("maize", "maize"), ("bare", "maize"), ("wheat", "soybean"), ("soybean", "soybean"), ("maize", "maize"), ("wheat", "wheat")],
]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    rng = np.random.default_rng(0)
    rows, cols = len(LAYOUT) * (SIZE + 2), len(LAYOUT[0]) * (SIZE + 2)
    to_wgs = Transformer.from_crs(32618, 4326, always_xy=True)
    features, truth = [], {}
    for r, line in enumerate(LAYOUT):
        for c, (grows, declared) in enumerate(line):
            pid = f"P{r}{c}"
            truth[pid] = (grows, declared, r * (SIZE + 2) + 1, c * (SIZE + 2) + 1, int(rng.integers(-6, 7)))
            x0, y0 = ORIGIN[0] + (c * (SIZE + 2) + 1) * PIXEL, ORIGIN[1] - (r * (SIZE + 2) + 1) * PIXEL
            ring = [(x0, y0), (x0, y0 - SIZE * PIXEL), (x0 + SIZE * PIXEL, y0 - SIZE * PIXEL), (x0 + SIZE * PIXEL, y0), (x0, y0)]
            ring = [list(to_wgs.transform(x, y)) for x, y in ring]
            features.append({"type": "Feature", "properties": {"plot_id": pid, "crop": grows if grows != "bare" else "",
                                                               "borrower": f"B{(r * 6 + c) // 2}",
                                                               "borrower_id": f"B{(r * 6 + c) // 2}"},
                             "geometry": {"type": "Polygon", "coordinates": [ring]}})
    plots = root / "plots.geojson"
    plots.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    tiles = root / "tiles"
    tiles.mkdir()
    lines = ["date,sensor,path"]
    for date in SUMMER_DATES[::2]:
        ndvi = np.full((rows, cols), 0.3, dtype="float32")
        for grows, _, r0, c0, shift in truth.values():
            value = 0.15 if grows == "bare" else float(template_ndvi(grows, doy(np.array([date])) - shift)[0])
            ndvi[r0:r0 + SIZE, c0:c0 + SIZE] = value + rng.normal(0, 0.02, (SIZE, SIZE))
        name = f"NDVI_{str(date).replace('-', '')}.tif"
        with rasterio.open(tiles / name, "w", driver="GTiff", width=cols, height=rows, count=1, dtype="float32",
                           crs="EPSG:32618", transform=from_origin(*ORIGIN, PIXEL, PIXEL), nodata=float("nan")) as dst:
            dst.write(ndvi[None])
            # An NDVI COG of a cloud-masked L2A product (without MASK_RULE its observations are "unmasked").
            dst.update_tags(AGRICREDIT_PRODUCT="ndvi", ACQUISITION_DATE=str(date), MASK_RULE="scl:0,1,3,8,9,10")
        lines.append(f"{date},ndvi,tiles/{name}")
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    declarations = root / "declarations.csv"
    # The assess declarations table, in GBK, with Chinese crop names for the maize plots; plot P01 is also
    # declared (as wheat) by a borrower who does not hold it: the plot file's borrower_id chooses.
    zh = {"maize": "玉米"}
    rows = [f"B{i // 2},{p},{zh.get(t[1], t[1])},9.6,亩" for i, (p, t) in enumerate(truth.items())] + ["B99,P01,wheat,0.64,ha"]
    declarations.write_text("borrower_id,plot_id,declared_crop,declared_area,area_unit\n" + "\n".join(rows) + "\n",
                            encoding="gbk")
    return {"root": root, "plots": plots, "tiles": tiles, "manifest": manifest, "declarations": declarations, "truth": truth}


def test_season_flags_planted_cases(scene, tmp_path):
    out = tmp_path / "season.csv"
    chart = tmp_path / "p21.png"
    result = CliRunner().invoke(cli, ["season", str(scene["plots"]), str(scene["manifest"]), "-o", str(out),
                                      "--declarations", str(scene["declarations"]), "--smooth", "whittaker",
                                      "--plot-id", "P22", "--chart", str(chart)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, keep_default_na=False).set_index("plot_id")
    assert len(table) == 18
    flags = table["flags"].to_dict()
    assert flags.pop("P21") == "NOT_CULTIVATED"
    assert flags.pop("P22") == "CROP_MISMATCH" and table.loc["P22", "best_crop"] == "wheat"
    assert set(flags.values()) == {""}
    # Drawn area: an 80 m square is 6400 m2 = 9.6 mu.
    assert float(table.loc["P00", "drawn_area_mu"]) == pytest.approx(9.6, rel=0.01)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_season_geojson_and_folder_and_period(scene, tmp_path):
    out = tmp_path / "season.geojson"
    result = CliRunner().invoke(cli, ["season", str(scene["plots"]), str(scene["tiles"]), "-o", str(out),
                                      "--start", "2023-04-01", "--end", "2023-10-31"])
    assert result.exit_code == 0, result.output
    collection = json.loads(out.read_text())
    assert len(collection["features"]) == 18
    props = {f["properties"]["plot_id"]: f["properties"] for f in collection["features"]}
    assert props["P00"]["n_acquisitions"] == 11  # 1 March - 7 November every 20 days, inside April-October
    assert props["P21"]["flags"] == "NOT_CULTIVATED"  # bare, even without a declaration


def test_train_crop_then_season_with_model(scene, tmp_path):
    model_dir = tmp_path / "model"
    result = CliRunner().invoke(cli, ["train-crop", str(scene["plots"]), str(scene["manifest"]), "-o", str(model_dir),
                                      "--group-field", "borrower", "--folds", "3"])
    assert result.exit_code == 0, result.output
    assert "grouped CV accuracy" in result.output
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["classes"] == ["maize", "soybean", "wheat"] and card["n_training_plots"] == 17
    assert "plots.geojson" in card["training_inputs"] and len(card["training_inputs"]) == 1 + 13
    out = tmp_path / "with_model.csv"
    result = CliRunner().invoke(cli, ["season", str(scene["plots"]), str(scene["manifest"]), "-o", str(out),
                                      "--declarations", str(scene["declarations"]), "--crop-model", str(model_dir)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, keep_default_na=False).set_index("plot_id")
    assert {"p_maize", "p_soybean", "p_wheat"} <= set(table.columns)
    assert table.loc["P22", "best_crop"] == "wheat"
    # Another --min-valid for the run does not change what the model sees: it rebuilds its series with its card's.
    other = tmp_path / "other_min_valid.csv"
    result = CliRunner().invoke(cli, ["season", str(scene["plots"]), str(scene["manifest"]), "-o", str(other),
                                      "--declarations", str(scene["declarations"]), "--crop-model", str(model_dir),
                                      "--min-valid", "0.3"])
    assert result.exit_code == 0, result.output
    probabilities = ["p_maize", "p_soybean", "p_wheat"]
    pd.testing.assert_frame_equal(pd.read_csv(other, keep_default_na=False).set_index("plot_id")[probabilities],
                                  table[probabilities])
    (model_dir / "model.skops").write_bytes(b"x" + (model_dir / "model.skops").read_bytes()[1:])
    result = CliRunner().invoke(cli, ["season", str(scene["plots"]), str(scene["manifest"]), "-o", str(out),
                                      "--crop-model", str(model_dir), "--overwrite"])
    assert result.exit_code == 1 and "sha256" in result.output


def test_season_plot_declared_twice_needs_the_plot_borrower(scene, tmp_path):
    collection = json.loads(scene["plots"].read_text())
    for feature in collection["features"]:
        del feature["properties"]["borrower_id"]
    plots = tmp_path / "plots.geojson"
    plots.write_text(json.dumps(collection))
    result = CliRunner().invoke(cli, ["season", str(plots), str(scene["manifest"]), "-o", str(tmp_path / "x.csv"),
                                      "--declarations", str(scene["declarations"])])
    assert result.exit_code == 1
    assert "plot P01 is declared by several borrowers" in result.stderr and "borrower_id" in result.stderr
    assert "B99" not in result.stderr  # borrower IDs stay out of errors


def test_chart_options_go_together(scene, tmp_path):
    result = CliRunner().invoke(cli, ["season", str(scene["plots"]), str(scene["manifest"]), "-o", str(tmp_path / "x.csv"),
                                      "--plot-id", "P00"])
    assert result.exit_code == 2 and "--chart" in result.output


def _spiked_plots(scene, tmp_path):
    """The scene's plots plus P99: P00's square with a 1 m wide bowtie on its side (repair changes the area ~0.2 %)."""
    to_wgs = Transformer.from_crs(32618, 4326, always_xy=True)
    x0, y0 = ORIGIN[0] + PIXEL, ORIGIN[1] - PIXEL
    side = SIZE * PIXEL
    ring = [(x0, y0), (x0 + side, y0), (x0 + side, y0 - side), (x0, y0 - side), (x0, y0 - 50), (x0 - 1, y0 - 30),
            (x0 - 1, y0 - 50), (x0, y0 - 30), (x0, y0)]
    collection = json.loads(scene["plots"].read_text())
    collection["features"].append({"type": "Feature", "properties": {"plot_id": "P99", "borrower_id": "B98"},
                                   "geometry": {"type": "Polygon", "coordinates": [[list(to_wgs.transform(x, y))
                                                                                    for x, y in ring]]}})
    path = tmp_path / "spiked.geojson"
    path.write_text(json.dumps(collection))
    return path


def test_season_repair_threshold_comes_from_the_policy(scene, tmp_path):
    plots = _spiked_plots(scene, tmp_path)
    out = tmp_path / "season.csv"
    result = CliRunner().invoke(cli, ["season", str(plots), str(scene["manifest"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "P99" in set(pd.read_csv(out)["plot_id"])
    policy = tmp_path / "policy.toml"
    from agricredit.seeds import DEFAULT_POLICY_PATH

    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    assert "repair_max_area_change = 0.01" in text
    policy.write_text(text.replace("repair_max_area_change = 0.01", "repair_max_area_change = 0.001"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["season", str(plots), str(scene["manifest"]), "-o", str(out), "--policy", str(policy),
                                      "--overwrite"])
    assert result.exit_code == 3
    assert "rejected GEOMETRY_INVALID (1): P99" in result.stderr
    assert "P99" not in set(pd.read_csv(out)["plot_id"])


@pytest.mark.parametrize("command", ["season", "train-crop"])
def test_plots_crs_reaches_the_plot_reader(scene, tmp_path, command):
    import geopandas as gpd

    projected = tmp_path / "plots.gpkg"
    gpd.read_file(scene["plots"]).to_crs(32618).to_file(projected)
    result = CliRunner().invoke(cli, [command, str(projected), str(scene["manifest"]), "-o", str(tmp_path / "out.csv"),
                                      "--plots-crs", "gcj02"])
    assert result.exit_code == 1 and "needs longitude/latitude" in result.stderr


def test_train_crop_labels_from_an_xlsx_table(scene, tmp_path):
    import openpyxl

    labels = tmp_path / "labels.xlsx"
    workbook = openpyxl.Workbook()
    workbook.active.append(["Plot_ID", "Observed", "Borrower"])
    for pid, (grows, *_rest) in scene["truth"].items():
        workbook.active.append([pid, {"maize": "玉米"}.get(grows, grows) if grows != "bare" else None, f"B{pid[1]}"])
    workbook.save(labels)
    model_dir = tmp_path / "model"
    result = CliRunner().invoke(cli, ["train-crop", str(scene["plots"]), str(scene["manifest"]), "-o", str(model_dir),
                                      "--labels", str(labels), "--label-field", "observed", "--group-field", "borrower",
                                      "--folds", "3"])
    assert result.exit_code == 0, result.output
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["classes"] == ["maize", "soybean", "wheat"] and card["n_training_plots"] == 17  # 玉米 is maize
    assert card["cv"]["n_groups"] == 3 and "labels.xlsx" in card["training_inputs"]
