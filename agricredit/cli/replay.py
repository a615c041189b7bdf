"""``agricredit replay AUDIT``: recompute every decision of an audit file and compare."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("audit_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Replay with this policy file (its sha256 must be the recorded one) "
                   "[default: the policy recorded in each record].")
def command(audit_file: Path, policy_path: Path | None) -> None:
    """Recompute each decision of AUDIT_FILE (audit.jsonl) from its recorded figures and policy.

    Prints each borrower whose replay differs, with every difference, and a
    summary. Exit code 1 if any decision differs.

    \b
    Examples:
      agricredit replay agricredit-output/audit.jsonl
      agricredit replay out/audit.jsonl --policy seeds/policy.toml
    """
    from agricredit.audit import replay_file
    from agricredit.errors import AuditMismatchError
    from agricredit.policy import load_policy

    total, differing = replay_file(audit_file, load_policy(policy_path) if policy_path else None)
    for where, differences in differing.items():
        click.echo(f"{where}: {len(differences)} difference(s)")
        for difference in differences:
            click.echo(f"  {difference}")
    click.echo(f"{total - len(differing)} of {total} decisions reproduced")
    if differing:
        raise AuditMismatchError(f"{len(differing)} of {total} decisions differ from their audit records", path=audit_file)
