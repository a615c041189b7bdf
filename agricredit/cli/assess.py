"""``agricredit assess``: the main job, plots + tiles + registry + declarations → limits."""

from __future__ import annotations

from pathlib import Path

import click

from agricredit.cli.options import case_opts, no_bom_opt


@click.command()
@click.argument("case_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@case_opts
@click.option("-o", "--output", "output", type=click.Path(file_okay=False, path_type=Path),
              default=Path("agricredit-output"), show_default=True, help="Output folder.")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="Language of the explanations and of the borrowers.csv / .xlsx headers (codes stay English).")
@click.option("--visits", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Field visits that settle reviews (CSV/xlsx: plot_id, visit_date, officer_id, crop_seen, "
                   "measured_mu, reason_code, outcome confirmed|rejected).")
@no_bom_opt
def command(case_file: Path | None, output: Path, lang: str, no_bom: bool, sample: bool, ephemeral_key: bool,
            overwrite: bool, progress: bool | None, strict: bool, visits: Path | None, **case_options: object) -> None:
    """Cross-verify plots, satellite season, registry and declarations; give each borrower a limit.

    The inputs come from CASE_FILE (a TOML file with [inputs], [options] and
    [tables.NAME] encodings), from --sample, or from the options below
    (options override the case file). Writes into OUTPUT: plots.geojson,
    plots.parquet, plots.qml, borrowers.csv, borrowers.xlsx,
    borrowers.geojson, borrowers.parquet, borrowers.qml, chips.parquet and
    series.parquet (for `agricredit report`), audit.jsonl and manifest.json
    (last); the fields are in the README's output schema. With --visits, the
    reviews the officers settled in the field are decided again.
    OUTPUT must not hold an input, nor files of another run or program
    unless --overwrite. Borrowers appear only as pseudonyms keyed by
    AGRICREDIT_PII_KEY; audit records are sealed with AGRICREDIT_AUDIT_KEY
    (with --sample and no such variable: the public demo audit key). Exit
    code 3: done, but some plots were rejected.

    \b
    Examples:
      agricredit assess --sample -o out
      agricredit assess sample_tiles/case.toml -o out --lang zh --overwrite
      agricredit assess sample_tiles/case.toml --sales sales.csv \\
          --input-purchases purchases.xlsx --machinery coop.csv --encoding machinery=gbk -o out
      agricredit assess --plots p.geojson --tiles season/ --registry r.csv \\
          --declarations d.csv --borrowers b.csv --encoding registry=gbk -o out
    """
    from agricredit.assess import OUTPUT_FILES, run_assessment, write_outputs
    from agricredit.cli._progress import Reporter
    from agricredit.cli._tables import exit_if_rejected, summary, warn_thin_sources
    from agricredit.cli.main import keep_until_exit
    from agricredit.audit import AuditKey
    from agricredit.cli.options import progress_enabled, resolve_case, sample_only
    from agricredit.outputs import check_output_folder
    from agricredit.privacy import PseudonymKey

    case = resolve_case(case_file, sample, case_options)
    if visits is not None:
        import dataclasses

        case = dataclasses.replace(case, visits=visits)
    check_output_folder(output, [*case.input_paths(), *([case_file] if case_file else [])], OUTPUT_FILES,
                        overwrite=overwrite)
    demo_allowed = sample_only(sample, case_options)
    key = PseudonymKey.from_env(allow_ephemeral=ephemeral_key, sample=demo_allowed)
    audit_key = AuditKey.from_env(pseudonym_key=key, sample=demo_allowed)
    reporter = Reporter(progress_enabled(progress))
    try:
        assessment = run_assessment(case, key, lang=lang, progress=reporter.stage,
                                    count_dates=reporter.counter("zonal statistics", "date"), strict=strict)
        keep_until_exit(assessment)
        reporter.stage(f"writing {output}")
        manifest = write_outputs(assessment, output, audit_key, csv_bom=not no_bom)
    finally:
        reporter.close()
    counts = manifest["counts"]
    statuses = ", ".join(f"{status} {n}" for status, n in counts["status"].items())
    summary(f"{counts['borrowers']} borrowers ({statuses}), {counts['plots']} plots -> {output}")
    warn_thin_sources(assessment)
    exit_if_rejected(assessment.rejected)
