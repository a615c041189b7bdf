"""``agricredit verify``: the cross-checks alone, one row per plot."""

from __future__ import annotations

from pathlib import Path

import click

from agricredit.cli.options import case_opts


@click.command()
@click.argument("case_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sample", is_flag=True, help="Run on the bundled sample data (sample_tiles/case.toml).")
@case_opts
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Plot table: .geojson, .csv or .parquet.")
@click.option("--ephemeral-key", is_flag=True,
              help="Without AGRICREDIT_PII_KEY, use a random pseudonym key (pseudonyms differ every run).")
def command(case_file: Path | None, sample: bool, output: Path, ephemeral_key: bool, **case_options: object) -> None:
    """Cross-verify plots against the registry, the declarations and the satellite season.

    Same inputs as `assess`; writes one row per plot: the four areas (drawn,
    registered, declared, cropped), the verified area, the light
    (green/yellow/red) and the failed checks with their figures. Exit code 3:
    done, but some plots were rejected.
    """
    from agricredit.assess import run_assessment
    from agricredit.cli._tables import exit_if_rejected
    from agricredit.cli.options import resolve_case, sample_only
    from agricredit.outputs import write_plot_table
    from agricredit.privacy import PseudonymKey

    case = resolve_case(case_file, sample, case_options)
    assessment = run_assessment(case, PseudonymKey.from_env(allow_ephemeral=ephemeral_key,
                                                         sample=sample_only(sample, case_options)))
    write_plot_table(assessment.plots, output)
    lights = assessment.plots["light"].value_counts()
    click.echo(", ".join(f"{light} {int(lights.get(light, 0))}" for light in ("green", "yellow", "red"))
               + f" plots -> {output}")
    exit_if_rejected(assessment.rejected)
