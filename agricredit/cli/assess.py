"""``agricredit assess``: the main job, plots + tiles + registry + declarations → limits."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from agricredit.cli.options import case_opts


@click.command()
@click.argument("case_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sample", is_flag=True, help="Run on the bundled sample data (sample_tiles/case.toml).")
@case_opts
@click.option("-o", "--output", "output", type=click.Path(file_okay=False, path_type=Path),
              default=Path("agricredit-output"), show_default=True, help="Output folder.")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="Language of the explanations.")
@click.option("--ephemeral-key", is_flag=True,
              help="Without AGRICREDIT_PII_KEY, use a random pseudonym key (pseudonyms differ every run).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Stage messages on stderr.")
def command(case_file: Path | None, sample: bool, output: Path, lang: str, ephemeral_key: bool, progress: bool,
            **case_options: object) -> None:
    """Cross-verify plots, satellite season, registry and declarations; give each borrower a limit.

    The inputs come from CASE_FILE (a TOML file with [inputs] and [options]),
    from --sample, or from the options below (options override the case file).
    Writes OUTPUT/plots.geojson, borrowers.csv, borrowers.geojson, audit.jsonl
    and manifest.json (last). Borrowers appear only as pseudonyms keyed by
    AGRICREDIT_PII_KEY; audit records are sealed with AGRICREDIT_AUDIT_KEY
    (with --sample and no such variable: the public demo audit key). Exit
    code 3: done, but some plots were rejected.
    """
    from agricredit.assess import run_assessment, write_outputs
    from agricredit.audit import AuditKey
    from agricredit.cli._tables import exit_if_rejected
    from agricredit.cli.options import resolve_case, sample_only
    from agricredit.privacy import PseudonymKey

    if output.exists() and not output.is_dir():
        raise click.BadParameter("exists and is not a folder", param_hint="'-o'")
    case = resolve_case(case_file, sample, case_options)
    demo_allowed = sample_only(sample, case_options)
    key = PseudonymKey.from_env(allow_ephemeral=ephemeral_key, sample=demo_allowed)
    audit_key = AuditKey.from_env(pseudonym_key=key, sample=demo_allowed)
    say = (lambda message: click.echo(f"[{dt.datetime.now():%H:%M:%S}] {message}", err=True)) if progress else None
    assessment = run_assessment(case, key, lang=lang, progress=say)
    manifest = write_outputs(assessment, output, audit_key)
    counts = manifest["counts"]
    statuses = ", ".join(f"{status} {n}" for status, n in counts["status"].items())
    click.echo(f"{counts['borrowers']} borrowers ({statuses}), {counts['plots']} plots -> {output}")
    exit_if_rejected(assessment.rejected)
