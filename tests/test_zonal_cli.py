"""``agricredit stats`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from exactextract import exact_extract

from agricredit import plots as P
from agricredit import raster
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


def test_stats_geojson_has_one_flat_feature_per_plot_and_date(tmp_path, inputs):
    plots, tiles = inputs
    out = tmp_path / "stats.geojson"
    result = CliRunner().invoke(cli, ["stats", plots, *tiles, "-o", str(out)])
    assert result.exit_code == 3
    features = json.loads(out.read_text())["features"]
    assert sorted((f["properties"]["plot_id"], f["properties"]["date"]) for f in features) == [
        ("A", "2023-06-01"), ("A", "2023-06-06"), ("B", "2023-06-01"), ("B", "2023-06-06")]
    assert all(not isinstance(v, (list, dict)) for f in features for v in f["properties"].values())
    outlines = {f["properties"]["plot_id"]: [] for f in features}
    for f in features:
        outlines[f["properties"]["plot_id"]].append(f["geometry"])
    assert all(g[0] == g[1] and g[0]["type"] == "Polygon" for g in outlines.values())


def test_stats_parquet(tmp_path, inputs):
    plots, tiles = inputs
    out = tmp_path / "stats.parquet"
    assert CliRunner().invoke(cli, ["stats", plots, tiles[0], "-o", str(out)]).exit_code == 3
    assert list(pd.read_parquet(out)["plot_id"]) == ["A", "B"]


# --------------------------------------------------------------------------- tile forms (as `season` finds them)

SAMPLE = Path(__file__).resolve().parents[1] / "sample_tiles"


def _plots(path, boxes):
    gpd.GeoDataFrame({"plot_id": list(boxes)}, geometry=list(boxes.values()), crs=CRS).to_crs(4326).to_file(path)
    return str(path)


def _run(*args):
    return CliRunner().invoke(cli, ["stats", *map(str, args)])


@pytest.fixture
def straddling(tmp_path):
    """A plot half on a west tile (NDVI 0.2) and half on an east tile (0.6) of one date."""
    return _plots(tmp_path / "plots.geojson", {"S": shapely.box(X0 + 150, Y0 - 100, X0 + 250, Y0 - 50)})


def test_folder_mosaics_one_date_and_keeps_dates_apart(tmp_path, straddling):
    folder = tmp_path / "tiles"
    (folder / "june").mkdir(parents=True)
    write_ndvi(folder / "ndvi_20230601_west.tif", np.full((20, 20), 0.2, dtype=np.float32))
    write_ndvi(folder / "ndvi_20230601_east.tif", np.full((20, 20), 0.6, dtype=np.float32), x0=X0 + 200)
    write_ndvi(folder / "june" / "ndvi_2023-06-11.tif", np.full((20, 40), 0.7, dtype=np.float32))
    out = tmp_path / "stats.csv"
    result = _run(straddling, folder, "-o", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, keep_default_na=False).set_index("date")
    assert list(table.index) == ["2023-06-01", "2023-06-11"]
    assert table.loc["2023-06-01", "ndvi_mean"] == pytest.approx(0.4)  # equal halves of the mosaic
    assert table.loc["2023-06-01", "ndvi_median"] == pytest.approx(0.4)
    assert table.loc["2023-06-11", "ndvi_mean"] == pytest.approx(0.7)
    np.testing.assert_allclose(table["covered_frac"], 1.0, atol=1e-4)
    assert (table["flags"] == "").all()


def test_manifest_dates_win_over_file_names(tmp_path, straddling):
    write_ndvi(tmp_path / "west.tif", np.full((20, 20), 0.2, dtype=np.float32))
    write_ndvi(tmp_path / "east.tif", np.full((20, 20), 0.6, dtype=np.float32), x0=X0 + 200)
    write_ndvi(tmp_path / "later_20990101.tif", np.full((20, 40), 0.7, dtype=np.float32))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("date,sensor,path\n2023-05-02,,west.tif\n2023-05-02,,east.tif\n2023-05-20,,later_20990101.tif\n")
    out = tmp_path / "stats.parquet"
    assert _run(straddling, manifest, "-o", out).exit_code == 0
    table = pd.read_parquet(out).set_index("date")
    assert list(table.index) == ["2023-05-02", "2023-05-20"]
    np.testing.assert_allclose(table["ndvi_mean"], [0.4, 0.7], rtol=1e-6)


def test_undated_tile_needs_date(tmp_path, straddling):
    tile = write_ndvi(tmp_path / "ndvi.tif", np.full((20, 40), 0.5, dtype=np.float32))
    out = tmp_path / "stats.csv"
    result = _run(straddling, tile, "-o", out)
    assert result.exit_code == 1 and not out.exists()
    assert "ndvi.tif" in result.stderr and "pass --date or put YYYYMMDD in the file name" in result.stderr
    assert _run(straddling, tile, "--date", "2023-07-01", "-o", out).exit_code == 0
    row = pd.read_csv(out).iloc[0]
    assert row["date"] == "2023-07-01" and row["ndvi_mean"] == pytest.approx(0.5)


def test_date_applies_to_one_acquisition_only(tmp_path, inputs):
    plots, tiles = inputs  # two dates
    out = tmp_path / "stats.csv"
    result = _run(plots, *tiles, "--date", "2023-07-01", "-o", out)
    assert result.exit_code == 2 and "one acquisition" in result.output
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"date,sensor,path\n2023-06-01,,{Path(tiles[0]).name}\n")
    assert _run(plots, manifest, "--date", "2023-07-01", "-o", out).exit_code == 2
    # one dated tile: --date overrides its date, as `ndvi --date` does
    assert _run(plots, tiles[0], "--date", "2023-07-01", "-o", out).exit_code == 3
    assert set(pd.read_csv(out)["date"]) == {"2023-07-01"}


def test_uncovered_plot_gets_a_row_per_date(tmp_path, inputs):
    _, tiles = inputs  # 20 × 20 px tiles of 2023-06-01 (NDVI 0.3) and 2023-06-06 (0.7)
    plots = _plots(tmp_path / "two.geojson", {"A": shapely.box(X0 + 10, Y0 - 60, X0 + 60, Y0 - 10),
                                              "FAR": shapely.box(X0 + 5000, Y0 - 60, X0 + 5050, Y0 - 10)})
    out = tmp_path / "stats.csv"
    result = _run(plots, *tiles, "-o", out)
    assert result.exit_code == 0, result.output
    assert "1 plot(s) not covered by any tile" in result.stderr
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 4
    far = pd.read_csv(out).query("plot_id == 'FAR'")
    assert list(far["date"]) == ["2023-06-01", "2023-06-06"]
    assert (far["flags"] == "NOT_COVERED").all()
    assert (far[["covered_frac", "valid_frac", "pixel_count"]] == 0).all().all()
    assert far[["ndvi_mean", "ndvi_median", "ndvi_p90", "cropped_area_mu"]].isna().all().all()
    assert (table.query("plot_id == 'A'")["flags"] == "").all()
    geojson = tmp_path / "stats.geojson"
    assert _run(plots, *tiles, "-o", geojson).exit_code == 0
    features = [f["properties"] for f in json.loads(geojson.read_text())["features"]]
    assert [f["flags"] for f in features if f["plot_id"] == "FAR"] == ["NOT_COVERED", "NOT_COVERED"]


# --------------------------------------------------------------------------- the bundled real tiles

#: Outputs carry NDVI to 4 decimals (README: output schema): a written value is within half a step of the exact one.
NDVI_HALF_STEP = 0.5e-4 + 1e-9

needs_sample = pytest.mark.skipif(not (SAMPLE / "s2_l1c_eastern_shore.tif").exists(), reason="sample data not built")


def _exactextract_means(array, profile_of, plots, tmp_path):
    """exactextract's coverage-weighted mean of ``array`` (NaN = no data) on the grid of ``profile_of``."""
    reference = tmp_path / "reference.tif"
    with rasterio.open(profile_of) as src:
        crs, transform = src.crs, src.transform
    with rasterio.open(reference, "w", driver="GTiff", width=array.shape[1], height=array.shape[0], count=1,
                       dtype="float32", crs=crs, transform=transform, nodata=np.nan) as dst:
        dst.write(array.astype(np.float32), 1)
    ref = exact_extract(str(reference), plots.to_crs(crs), ["mean"], include_cols=["plot_id"], output="pandas")
    return ref.set_index("plot_id")["mean"]


@needs_sample
def test_real_sentinel2_l1c_tile_with_date(tmp_path):
    tile = SAMPLE / "s2_l1c_eastern_shore.tif"
    plots = P.accepted(P.load_plots(SAMPLE / "plots.geojson"))
    out = tmp_path / "stats.csv"
    result = _run(SAMPLE / "plots.geojson", tile, "--date", "2016-06-01", "--sensor", "s2-l1c", "-o", out)
    assert result.exit_code == 3, result.output  # the sample holds two invalid plots
    table = pd.read_csv(out).set_index("plot_id")
    assert len(table) == len(plots) and set(table["date"]) == {"2016-06-01"}
    with rasterio.open(tile) as src:  # plain numpy NDVI from the DNs: the tile's add offset is 0, DN 0 = no data
        bands = dict(zip(src.descriptions, src.read().astype(np.float64)))
    red, nir = (np.where(bands[b] == 0, np.nan, bands[b] / 10_000) for b in ("B04", "B08"))
    with np.errstate(invalid="ignore", divide="ignore"):
        reference = _exactextract_means((nir - red) / (nir + red), tile, plots, tmp_path)
    np.testing.assert_allclose(table.loc[reference.index, "ndvi_mean"], reference, atol=NDVI_HALF_STEP)
    # --processing-baseline reaches the reader: baseline 04.00 subtracts 1000 DN before NDVI
    result = _run(SAMPLE / "plots.geojson", tile, "--date", "2016-06-01", "--processing-baseline", "04.00", "-o", out,
                  "--overwrite")
    assert result.exit_code == 3, result.output
    shifted = pd.read_csv(out).set_index("plot_id")
    ndvi, _ = raster.read_ndvi(raster.open_product(tile, processing_baseline="04.00"))
    reference = _exactextract_means(ndvi, tile, plots, tmp_path)
    np.testing.assert_allclose(shifted.loc[reference.index, "ndvi_mean"], reference, atol=NDVI_HALF_STEP)
    assert (shifted["ndvi_mean"] - table["ndvi_mean"]).abs().min() > 0.01


@needs_sample
def test_real_landsat8_c1_tile_with_date(tmp_path):
    """The sample plots lie elsewhere (NOT_COVERED rows); a plot drawn inside the Landsat scene gets its mean."""
    tile = SAMPLE / "l8_c1_cloudy.tif"
    with rasterio.open(tile) as src:
        left, top, crs = src.bounds.left, src.bounds.top, src.crs
    inside = gpd.GeoDataFrame({"plot_id": ["L1", "L2"]}, geometry=[
        shapely.box(left + 3000, top - 3400, left + 3700, top - 2900),
        shapely.box(left + 9015, top - 8020, left + 9600, top - 7400)], crs=crs)
    sample = P.accepted(P.load_plots(SAMPLE / "plots.geojson"))[["plot_id", "geometry"]].head(5)
    plots = tmp_path / "plots.geojson"
    pd.concat([sample, inside.to_crs(4326)], ignore_index=True).pipe(gpd.GeoDataFrame, crs=4326).to_file(plots)
    out = tmp_path / "stats.csv"
    result = _run(plots, tile, "--date", "2016-06-01", "-o", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, keep_default_na=False).set_index("plot_id")
    assert len(table) == 7
    assert (table.loc[sample["plot_id"], "flags"] == "NOT_COVERED").all()
    ndvi, _ = raster.read_ndvi(raster.open_product(tile, date="2016-06-01"))
    reference = _exactextract_means(ndvi, tile, inside, tmp_path)
    assert np.isfinite(reference).all()
    np.testing.assert_allclose(table.loc[["L1", "L2"], "ndvi_mean"].astype(float), reference, atol=NDVI_HALF_STEP)
