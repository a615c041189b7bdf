"""``agricredit lookup PSEUDONYM...``: the borrower-table row behind each pseudonym (needs the key)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("pseudonyms", nargs=-1, required=True)
@click.option("--borrowers", "borrower_table", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The borrower table.")
def command(pseudonyms: tuple[str, ...], borrower_table: Path) -> None:
    """Print the borrower-table row (CSV, with personal data) of each PSEUDONYM.

    For the people allowed to know who a borrower is: it needs the pseudonym
    key in AGRICREDIT_PII_KEY (the one the run used) and refuses without it.
    The rows go to stdout only; nothing is written to a file or a log.

    \b
    Examples:
      agricredit lookup b_02ea5dad44b7faa2 --borrowers sample_tiles/borrowers.csv
    """
    from agricredit.privacy import PseudonymKey
    from agricredit.report.reveal import lookup

    rows = lookup(pseudonyms, borrower_table, PseudonymKey.from_env())
    click.echo(rows.to_csv(index=False), nl=False)
