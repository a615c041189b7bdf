"""The engine and the checks on the bundled sample data (real plots, simulated season tiles)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from exactextract import exact_extract

from agricredit import plots as P
from agricredit import raster, zonal

SAMPLE = Path(__file__).resolve().parents[1] / "sample_tiles"
TILE = SAMPLE / "season" / "S2_L2A_SIM_20230620.tif"
pytestmark = pytest.mark.skipif(not TILE.exists(), reason="sample data not built")


@pytest.fixture(scope="module")
def sample_plots():
    return P.load_plots(SAMPLE / "plots.geojson")


def test_planted_geometry_cases_are_found(sample_plots):
    bad = sample_plots.loc[sample_plots["geometry_status"] != "OK"].set_index("plot_id")["geometry_status"]
    assert bad.to_dict() == {"P0156": "GEOMETRY_REPAIRED", "P0168": "GEOMETRY_INVALID",
                             "P0269": "GEOMETRY_REPAIRED", "P0290": "GEOMETRY_INVALID"}


def test_raw_product_and_its_ndvi_cog_match_exactextract(sample_plots, tmp_path):
    plots = P.accepted(sample_plots)
    product = raster.open_product(TILE)
    ndvi, _ = raster.read_ndvi(product)
    reference_tif = tmp_path / "ndvi_plain.tif"
    with rasterio.open(reference_tif, "w", driver="GTiff", width=product.width, height=product.height, count=1,
                       dtype="float32", crs=product.crs, transform=product.transform) as dst:
        dst.write(ndvi, 1)
    ref = exact_extract(str(reference_tif), plots.to_crs(product.crs), ["mean", "median", "quantile(q=0.9)"],
                        include_cols=["plot_id"], output="pandas")
    cog = tmp_path / "ndvi_20230620.tif"
    raster.write_ndvi_cog(product, cog, workers=1)
    for source in (TILE, cog):  # on the fly from the raw product, and from `agricredit ndvi`'s COG
        merged = ref.merge(zonal.zonal_stats(plots, [source]), on="plot_id")
        assert len(merged) == len(plots)
        for theirs, mine in [("mean", "ndvi_mean"), ("median", "ndvi_median"), ("quantile_90", "ndvi_p90")]:
            np.testing.assert_allclose(merged[mine], merged[theirs], atol=1e-6)
        np.testing.assert_allclose(merged["covered_frac"], 1.0, atol=1e-3)
