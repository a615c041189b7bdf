"""``agricredit area PLOTS -o OUT``: geodesic area, validity, repairs and overlaps of plots."""

from __future__ import annotations

from pathlib import Path

import click

from agricredit.cli.options import id_field_opt, no_bom_opt, output_opt, overwrite_opt, plots_crs_opt


@click.command()
@click.argument("plots", type=click.Path(dir_okay=False, allow_dash=True))
@output_opt
@id_field_opt
@plots_crs_opt
@click.option("--overlap-tolerance", "overlap_tolerance", type=click.FloatRange(min=0), default=1.0,
              show_default=True, help="Shared areas up to this many m² are not reported as overlaps.")
@overwrite_opt
@no_bom_opt
def command(plots: str, output: Path, id_field: str, plots_crs: str | None, overlap_tolerance: float,
            overwrite: bool, no_bom: bool) -> None:
    """Geodesic area (ha, mu), perimeter, geometry status and overlaps of each plot.

    PLOTS is GeoJSON, GeoPackage, Shapefile or GeoParquet, or - for GeoJSON on
    stdin. OUT is .geojson (or - for stdout), .parquet or .csv, with the
    fields of the README's output schema (`area`). Rejected plots keep their
    row with the reason; the exit code is then 3.

    \b
    Examples:
      agricredit area plots.geojson -o areas.csv
      cat plots.geojson | agricredit area - -o - --plots-crs gcj02 > areas.geojson
    """
    from agricredit.cli._tables import exit_if_rejected
    from agricredit.outputs import check_output_file, output_kind, write_plot_table
    from agricredit.plots import area_table, load_plots
    from agricredit.schema import AREA_FIELDS, conform_frame

    output_kind(output)  # an unknown output type fails before any work
    check_output_file(output, [plots], overwrite=overwrite)
    checked = load_plots(plots, id_field=id_field, plots_crs=plots_crs)
    areas = area_table(checked, overlap_tolerance_m2=overlap_tolerance)
    write_plot_table(conform_frame(areas, AREA_FIELDS), output, decimals=None, bom=not no_bom)
    exit_if_rejected(checked)
