"""``agricredit replay AUDIT``: recompute every decision of an audit file and compare."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("audit_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The policy the decisions were made with [default: seeds/policy.toml].")
def command(audit_file: Path, policy_path: Path | None) -> None:
    """Recompute each decision of AUDIT_FILE (audit.jsonl) from its recorded figures.

    Prints one line per borrower whose replay differs, with each difference,
    and a summary. Exit code 1 if any decision differs.
    """
    from agricredit.audit import replay
    from agricredit.errors import InputError
    from agricredit.policy import load_policy

    policy = load_policy(policy_path)
    total = differing = 0
    with open(audit_file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"not JSON ({error.msg})", path=audit_file, record=f"line {number}") from error
            total += 1
            differences = replay(record, policy)
            if differences:
                differing += 1
                click.echo(f"line {number} {record.get('borrower_id')}: {len(differences)} difference(s)")
                for difference in differences:
                    click.echo(f"  {difference}")
    click.echo(f"{total - differing} of {total} decisions reproduced")
    if differing:
        raise SystemExit(1)
