"""``agricredit ndvi TILE -o OUT.tif``: NDVI COG with the sensor's cloud mask."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import click

from agricredit.cli.options import baseline_callback, overwrite_opt, progress_opt, sensor_opt


def _no_dash(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None and str(value) == "-":
        raise click.BadParameter("rasters are written to files, not to stdout; give a file name such as out.tif", param_hint=f"'{param.opts[0]}'")
    return value


def _geotiff_name(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    value = _no_dash(ctx, param, value)
    if value.suffix.lower() not in (".tif", ".tiff"):
        raise click.BadParameter(f"the NDVI is a GeoTIFF: name it .tif, not {value.suffix or 'without extension'} "
                                 "(--quicklook writes a PNG)", param_hint="'-o'")
    return value


def _mask_classes(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    from agricredit import sensors

    try:
        return sensors.parse_mask_classes(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="'--mask-classes'") from None


@click.command("ndvi")
@click.argument("tile", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, callback=_geotiff_name,
              type=click.Path(dir_okay=False, writable=True, path_type=Path, allow_dash=True), help="Output NDVI COG (.tif).")
@sensor_opt
@click.option("--bands", metavar="red=N,nir=M[,mask=K]", help="Band numbers (1-based) of a multiband file.")
@click.option("--processing-baseline", callback=baseline_callback, metavar="NN.NN", help="Sentinel-2 processing baseline when the product carries none.")
@click.option("--date", type=click.DateTime(formats=["%Y-%m-%d"]), help="Acquisition date (YYYY-MM-DD); overrides metadata.")
@click.option("--mask-classes", callback=_mask_classes, metavar="C,C,...", help="Sentinel-2 SCL classes to mask [default: 0,1,3,8,9,10].")
@click.option("--mask", "mask_path", type=click.Path(path_type=Path), help="Extra mask raster: nonzero = cloud (resampled nearest).")
@click.option("--no-mask", is_flag=True, help="Do not apply the sensor's cloud/quality mask.")
@click.option("--scale", type=float, help="Reflectance = DN x scale + offset (overrides the sensor's).")
@click.option("--offset", type=float, help="See --scale.")
@click.option("--nodata", type=float, help="DN marking no data in red/NIR.")
@click.option("--quicklook", type=click.Path(path_type=Path, allow_dash=True), callback=_no_dash, help="Also write a colour-mapped PNG with a legend.")
@overwrite_opt
@progress_opt
def command(
    tile: Path,
    output: Path,
    sensor: str | None,
    bands: str | None,
    processing_baseline: str | None,
    date: datetime.datetime | None,
    mask_classes: tuple[int, ...] | None,
    mask_path: Path | None,
    no_mask: bool,
    scale: float | None,
    offset: float | None,
    nodata: float | None,
    quicklook: Path | None,
    overwrite: bool,
    progress: bool | None,
) -> None:
    """NDVI of one acquisition as a Cloud-Optimized GeoTIFF (float32, NaN = no data).

    TILE is a multiband GeoTIFF/COG, a folder of band files (Sentinel-2 incl.
    .SAFE, Landsat Collection 1/2) or a local STAC item JSON. The sensor's
    cloud/quality mask is applied (Sentinel-2 SCL, Landsat QA_PIXEL/BQA). A
    one-line JSON summary (cloud and valid fractions) goes to stdout.

    \b
    Examples:
      agricredit ndvi S2B_MSIL2A_20230730T154809_N0509_R054_T18SVH.SAFE -o ndvi_20230730.tif
      agricredit ndvi scene.tif --sensor generic --bands red=3,nir=4 --scale 0.0001 -o ndvi.tif --quicklook ndvi.png
    """
    from agricredit.cli._progress import Reporter
    from agricredit.cli.options import progress_enabled
    from agricredit.outputs import check_output_file
    from agricredit.raster import open_product, write_ndvi_cog

    inputs = [tile, *([mask_path] if mask_path else [])]
    for path in (output, quicklook):
        if path is not None:
            check_output_file(path, inputs, overwrite=overwrite)

    product = open_product(
        tile,
        sensor=sensor,
        bands=bands,
        processing_baseline=processing_baseline,
        date=None if date is None else date.date(),
        mask_classes=mask_classes,
        no_mask=no_mask,
        mask_path=mask_path,
        scale=scale,
        offset=offset,
        nodata=nodata,
    )
    reporter = Reporter(progress_enabled(progress))
    try:
        report = write_ndvi_cog(product, output, quicklook=quicklook, progress=reporter.counter("ndvi", "block"))
    finally:
        reporter.close()
    click.echo(json.dumps(report.as_dict(), sort_keys=True))
