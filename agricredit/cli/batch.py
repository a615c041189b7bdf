"""``agricredit batch``: a county-scale assessment on a Dask cluster."""

from __future__ import annotations

from pathlib import Path

import click

from agricredit.cli.options import no_bom_opt


@click.command()
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--scheduler", metavar="ADDRESS", help="A running Dask scheduler (tcp://host:8786); default: a local "
              "cluster of [batch] workers processes.")
@click.option("--resume", is_flag=True, help="Reuse the chunks an interrupted run finished (refused when the "
              "configuration or the inputs changed).")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failing chunk instead of isolating it.")
@click.option("--overwrite", is_flag=True, help="Replace the outputs of an earlier run.")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="Language of the explanations and of the borrowers.csv / .xlsx headers.")
@click.option("--progress/--no-progress", default=None, help="Progress bars on stderr (default: when a terminal).")
@no_bom_opt
def command(config_file: Path, scheduler: str | None, resume: bool, fail_fast: bool, overwrite: bool, lang: str,
            progress: bool | None, no_bom: bool) -> None:
    """Assess a county: the assess pipeline with its per-plot stages mapped on Dask by spatial chunk.

    CONFIG_FILE is a case TOML ([inputs], [options], [tables.NAME]) with a
    [batch] table: output (folder), chunk_size_m, workers, memory_per_worker,
    geojsonseq_min_bytes. The outputs are those of assess, byte for byte;
    OUTPUT/.agricredit-batch keeps the ledger of finished chunks (for
    --resume) and the run log. Exit code 3: done, but some plots were
    rejected or some chunks failed (failures.csv lists these and the plots
    that unreadable tiles hold).

    \b
    Examples:
      agricredit batch county.toml
      agricredit batch county.toml --scheduler tcp://10.0.0.5:8786 --resume
    """
    from agricredit.assess import OUTPUT_FILES
    from agricredit.audit import AuditKey
    from agricredit.batch import (FAILURES, SEQUENCE_FILES, WORK_FOLDER, load_batch_config, refuse_an_unfinished_run,
                                  run_batch)
    from agricredit.cli._progress import Reporter
    from agricredit.cli._tables import exit_if_rejected, summary
    from agricredit.cli.main import keep_until_exit
    from agricredit.cli.options import progress_enabled
    from agricredit.outputs import check_output_folder
    from agricredit.privacy import PseudonymKey

    config = load_batch_config(config_file)
    if not (overwrite or resume):
        refuse_an_unfinished_run(config.output)
    check_output_folder(config.output, [*config.case.input_paths(), config_file],
                        (*OUTPUT_FILES, *SEQUENCE_FILES, FAILURES, WORK_FOLDER), overwrite=overwrite or resume)
    key = PseudonymKey.from_env()
    audit_key = AuditKey.from_env(pseudonym_key=key)
    reporter = Reporter(progress_enabled(progress))
    try:
        run = run_batch(config, key, audit_key, scheduler=scheduler, resume=resume, fail_fast=fail_fast,
                        lang=lang, csv_bom=not no_bom, stage=reporter.stage,
                        count_chunks=reporter.counter("zonal statistics", "chunk"),
                        count_evidence=reporter.counter("season evidence", "chunk"))
        keep_until_exit(run)
    finally:
        reporter.close()
    counts = run.manifest["counts"]
    statuses = ", ".join(f"{status} {n}" for status, n in counts["status"].items())
    summary(f"{counts['borrowers']} borrowers ({statuses}), {counts['plots']} plots, "
            f"{run.reused_chunks} chunks reused -> {config.output}")
    exit_if_rejected(run.assessment.rejected)
