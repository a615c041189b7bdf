"""``agricredit replay AUDIT``: check the seal of an audit file and recompute every decision."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("audit_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Replay with this policy file (its canonical sha256 must be the recorded one) "
                   "[default: the policy embedded in each record, checked against its hash].")
@click.option("--manifest", "manifest_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The run's manifest.json (record count, chain head, file hash) [default: beside AUDIT_FILE].")
@click.option("--inputs", "case_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A case file (TOML) of the run's inputs: recompute the plot facts from them and compare too "
                   "(needs the run's AGRICREDIT_PII_KEY).")
@click.option("--sample", is_flag=True,
              help="The file comes from `assess --sample`: accept the public demo keys.")
def command(audit_file: Path, policy_path: Path | None, manifest_path: Path | None, case_file: Path | None,
            sample: bool) -> None:
    """Check and replay AUDIT_FILE (audit.jsonl) record by record.

    Checks each record's HMAC with AGRICREDIT_AUDIT_KEY, the chain (each record
    names the previous one's MAC) and the manifest's count, chain head and file
    hash: a deleted, duplicated, reordered or forged record is named. Then
    recomputes each decision from its recorded figures and policy, and with
    --inputs the figures themselves from the input files. Prints every problem
    and a summary; exit code 1 if any record fails.

    \b
    Examples:
      agricredit replay agricredit-output/audit.jsonl
      agricredit replay out/audit.jsonl --inputs case.toml
    """
    from agricredit.audit import AuditKey, records_by_borrower, recorded_policy, replay_file
    from agricredit.errors import AuditMismatchError
    from agricredit.policy import load_policy

    policy = load_policy(policy_path) if policy_path else None
    recomputed = None
    if case_file is not None:
        from agricredit.assess import load_case, run_assessment
        from agricredit.privacy import PseudonymKey

        pseudonym_key = PseudonymKey.from_env(sample=sample)
        key = AuditKey.from_env(pseudonym_key=pseudonym_key, sample=sample)
        fresh = run_assessment(load_case(case_file), pseudonym_key, policy=policy or recorded_policy(audit_file))
        recomputed = records_by_borrower(fresh.audit)
    else:
        key = AuditKey.from_env(sample=sample)
    report = replay_file(audit_file, key, policy=policy, manifest=manifest_path, sample=sample, recomputed=recomputed)
    for where, problems in report.problems.items():
        click.echo(f"{where}: {len(problems)} problem(s)")
        for problem in problems:
            click.echo(f"  {problem}")
    failed = sum(1 for where in report.problems if where.startswith("line "))
    click.echo(f"{report.total - failed} of {report.total} decisions reproduced")
    if report.problems:
        raise AuditMismatchError(f"{failed} of {report.total} records fail replay; first: {report.first}",
                                 path=audit_file)
