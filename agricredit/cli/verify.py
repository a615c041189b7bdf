"""``agricredit verify``: the cross-checks alone, one row per plot."""

from __future__ import annotations

from pathlib import Path

import click

from agricredit.cli.options import case_opts, no_bom_opt


@click.command()
@click.argument("case_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@case_opts
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Plot table: .geojson, .csv or .parquet.")
@no_bom_opt
def command(case_file: Path | None, output: Path, no_bom: bool, sample: bool, ephemeral_key: bool, overwrite: bool,
            progress: bool | None, strict: bool, **case_options: object) -> None:
    """Cross-verify plots against the registry, the declarations and the satellite season.

    Same inputs as `assess`; writes one row per plot with the fields of
    plots.geojson (README: output schema): the four areas (drawn,
    registered, declared, cropped), the verified area, the light
    (green/yellow/red), the reason codes and, in `details`, the failed checks
    with their figures. Exit code 3: done, but some plots were rejected.

    \b
    Examples:
      agricredit verify --sample -o checks.csv
      agricredit verify case.toml -o checks.geojson --overwrite
    """
    from agricredit.assess import run_assessment
    from agricredit.cli._progress import Reporter
    from agricredit.cli._tables import exit_if_rejected, summary, warn_thin_sources
    from agricredit.cli.options import progress_enabled, resolve_case, sample_only
    from agricredit.outputs import check_output_file, output_kind, write_plot_table
    from agricredit.privacy import PseudonymKey

    output_kind(output)  # an unknown output type fails before any work
    case = resolve_case(case_file, sample, case_options)
    check_output_file(output, [*case.input_paths(), *([case_file] if case_file else [])], overwrite=overwrite)
    reporter = Reporter(progress_enabled(progress))
    try:
        assessment = run_assessment(case, PseudonymKey.from_env(allow_ephemeral=ephemeral_key,
                                                                 sample=sample_only(sample, case_options)),
                                    progress=reporter.stage, count_dates=reporter.counter("zonal statistics", "date"), strict=strict)
    finally:
        reporter.close()
    write_plot_table(assessment.plots, output, bom=not no_bom)
    lights = assessment.plots["light"].value_counts()
    summary(", ".join(f"{light} {int(lights.get(light, 0))}" for light in ("green", "yellow", "red"))
            + f" plots -> {output}")
    warn_thin_sources(assessment)
    exit_if_rejected(assessment.rejected)
