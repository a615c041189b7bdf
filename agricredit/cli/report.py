"""``agricredit report OUTDIR``: the loan officer's pages (HTML, one per borrower, and an index)."""

from __future__ import annotations

from pathlib import Path

import click

from agricredit.cli.options import overwrite_opt


@click.command()
@click.argument("outdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder [default: OUTDIR/report].")
@click.option("--borrower", "borrowers", multiple=True, metavar="REF",
              help="Write only this borrower's page (a pseudonym; repeatable). The index is always written.")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="Language of the pages and charts (zh: Noto Sans CJK, Debian fonts-noto-cjk).")
@click.option("--pdf", is_flag=True, help="Also print each borrower page to PDF with headless Chromium.")
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The policy of the run (its min_valid_fraction marks cloudy dates) [default: seeds/policy.toml].")
@click.option("--reveal", is_flag=True,
              help="Show each borrower's name (needs --borrowers and AGRICREDIT_PII_KEY); the pages are "
                   "marked as holding personal data (banner, PERSONAL_DATA_ file names).")
@click.option("--borrowers", "borrower_table", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The borrower table (for --reveal).")
@overwrite_opt
def command(outdir: Path, output: Path | None, borrowers: tuple[str, ...], lang: str, pdf: bool,
            policy_path: Path | None, reveal: bool, borrower_table: Path | None, overwrite: bool) -> None:
    """Write self-contained HTML pages (no network needed) from the assess output folder OUTDIR.

    One page per borrower: status, limit and limit if confirmed, reasons in
    words, each plot outlined over its NDVI at the peak date with scale bar
    and north arrow, its season against the declared crop's calendar (cloudy
    dates marked), the four areas and every check. An index: map of all
    plots by light, distribution of limits, counts by status and reason, and
    the fairness table (approval rate, median limit and limit per verified mu
    by village and by declared-area band; adverse-impact ratio under 0.8
    highlighted).

    \b
    Examples:
      agricredit report agricredit-output
      agricredit report out -o pages --lang zh --borrower b_02ea5dad44b7faa2 --pdf
      agricredit report out --reveal --borrowers sample_tiles/borrowers.csv
    """
    from agricredit.outputs import check_output_folder
    from agricredit.policy import load_policy
    from agricredit.report.pages import load_run, report_files, write_report
    from agricredit.report.pdf import find_chromium, print_pdf

    if reveal != (borrower_table is not None):
        raise click.UsageError("--reveal and --borrowers go together")
    output = output or outdir / "report"
    run = load_run(outdir)
    inputs = [*(p for p in outdir.iterdir() if p.is_file()), *([borrower_table] if borrower_table else [])]
    check_output_folder(output, inputs, report_files(run, borrowers, personal=reveal, pdf=pdf), overwrite=overwrite)
    names = None
    if reveal:
        from agricredit.privacy import PseudonymKey
        from agricredit.report.reveal import names_by_pseudonym

        names = names_by_pseudonym(borrower_table, PseudonymKey.from_env(), run.manifest)
    policy = load_policy(policy_path)
    written = write_report(run, output, lang=lang, borrowers=list(borrowers) or None, names=names,
                           min_valid_fraction=policy.satellite.min_valid_fraction)
    click.echo(f"{len(written) - 1} borrower page(s) and the index -> {output}", err=True)
    if pdf:
        browser = find_chromium()
        if browser is None:
            click.echo("no PDF engine: headless Chromium is not installed (Debian: apt-get install chromium); "
                       "HTML pages only", err=True)
            return
        for page in written[1:]:
            print_pdf(page, page.with_suffix(".pdf"), browser=browser)
        click.echo(f"{len(written) - 1} PDF(s) printed with {browser}", err=True)
