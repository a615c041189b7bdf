"""``agricredit monitor``: new acquisitions after an assessment → alerts and recommendations."""

from __future__ import annotations

from pathlib import Path

import click

from agricredit.cli.options import no_bom_opt


@click.command()
@click.argument("assessment", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("new_tiles", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", "output", type=click.Path(file_okay=False, path_type=Path),
              default=Path("agricredit-alerts"), show_default=True, help="Alerts folder.")
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Policy TOML (default: the bundled seeds/policy.toml); its [monitor] section holds the rules.")
@click.option("--overwrite", is_flag=True, help="Replace the outputs of an earlier monitor run in OUTPUT.")
@no_bom_opt
def command(assessment: Path, new_tiles: tuple[Path, ...], output: Path, policy_path: Path | None,
            overwrite: bool, no_bom: bool) -> None:
    """Watch the crop after a loan: extend ASSESSMENT's season with NEW_TILES and raise alerts.

    ASSESSMENT is an `agricredit assess` output folder (plots.geojson,
    borrowers.parquet, series.parquet). NEW_TILES are acquisitions after its
    last date (files, product folders, a folder, a manifest CSV or STAC, as for
    assess). Each new clear observation of each plot is compared with the
    declared crop's regional calendar, the plot's previous observation and its
    peers of the same crop on the same dates. Writes into OUTPUT:
    alerts.geojson, alerts.csv, recommendations.csv, alerts_audit.jsonl (one
    record per alert, sealed with AGRICREDIT_AUDIT_KEY) and manifest.json
    (last). Exit code 0 without alerts, 3 with alerts.

    \b
    Examples:
      agricredit monitor out/ new_tiles/ -o alerts
      agricredit monitor out/ S2_20230720.tif S2_20230730.tif -o alerts --policy lender.toml
    """
    from agricredit.audit import AuditKey
    from agricredit.cli._tables import summary
    from agricredit.cli.main import PartialSuccess
    from agricredit.monitor import OUTPUT_FILES, run_monitor, write_monitor_outputs
    from agricredit.outputs import check_output_folder
    from agricredit.policy import load_policy

    check_output_folder(output, [assessment, *new_tiles], OUTPUT_FILES, overwrite=overwrite)
    audit_key = AuditKey.from_env()
    result = run_monitor(assessment, new_tiles, load_policy(policy_path))
    manifest = write_monitor_outputs(result, output, audit_key, csv_bom=not no_bom)
    alerts = manifest["counts"]["alerts"]
    actions = ", ".join(f"{name} {n}" for name, n in manifest["counts"]["recommendations"].items())
    summary(f"{sum(alerts.values())} alerts ({', '.join(f'{c} {n}' for c, n in alerts.items()) or 'none'}) on "
            f"{len(result.new_dates)} new dates; borrowers: {actions} -> {output}")
    if alerts:
        raise PartialSuccess()
