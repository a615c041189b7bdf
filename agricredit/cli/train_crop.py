"""``agricredit train-crop LABELED_PLOTS TILES... -o MODEL_DIR``: train the crop classifier on field labels."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import click

from agricredit.cli.options import output_opt, overwrite_opt, progress_opt, season_opts

log = logging.getLogger(__name__)


@click.command()
@click.argument("labeled_plots", type=click.Path(exists=True, dir_okay=False))
@click.argument("tiles", nargs=-1, required=True, type=click.Path(exists=True))
@output_opt
@season_opts
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Table (CSV in any common encoding, xlsx or Parquet) with plot_id and the label column "
                   "[default: the label column of the plot file].")
@click.option("--label-field", default="crop", show_default=True, help="Column holding the observed crop.")
@click.option("--group-field", default=None,
              help="Column (plot file or labels) grouping plots for cross-validation, e.g. borrower_id "
                   "[default: spatial blocks of --block-size].")
@click.option("--block-size", type=click.FloatRange(min=1), default=2000.0, show_default=True,
              help="Spatial block side (metres) for grouped cross-validation without --group-field.")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Cross-validation folds.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the classifier.")
@overwrite_opt
@progress_opt
def command(labeled_plots: str, tiles: tuple[str, ...], output: Path, start: dt.date | None, end: dt.date | None,
            sensor: str | None, min_valid: float | None, smooth: str, id_field: str, plots_crs: str | None,
            policy_path: str | None, encodings: dict[str, str], labels: str | None, label_field: str,
            group_field: str | None, block_size: float, folds: int, seed: int, overwrite: bool,
            progress: bool | None) -> None:
    """Train a crop classifier (HistGradientBoosting) on plots with field-visit labels.

    Features: season phenology plus the NDVI series resampled every 16 days of
    the year. Reports grouped cross-validated accuracy and the confusion matrix
    on stderr, and writes MODEL_DIR/model.skops (skops, no pickle) and
    MODEL_DIR/model_card.json (input hashes, features, classes, scores,
    library versions, the model's sha256). Use it with `agricredit season --crop-model`.

    \b
    Examples:
      agricredit train-crop plots.geojson season/manifest.csv --labels visits.csv -o model
      agricredit train-crop visited.gpkg tiles/ --label-field crop --group-field borrower_id -o model --overwrite
    """
    import pandas as pd

    from agricredit.cli.season import load_season_plots, observe, season_acquisitions
    from agricredit.crop_model import (
        CARD_FILE,
        MODEL_FILE,
        save_crop_model,
        spatial_blocks,
        train_crop_model,
        training_input_hashes,
        training_labels,
    )
    from agricredit.outputs import check_output_folder, staged_outputs
    from agricredit.policy import load_policy
    from agricredit.season import season_options
    from agricredit.tables import read_labels

    check_output_folder(output, [labeled_plots, *tiles, *(p for p in (labels, policy_path) if p)],
                        (MODEL_FILE, CARD_FILE), overwrite=overwrite)
    policy = load_policy(policy_path)
    min_valid_fraction = season_options(policy, min_valid_fraction=min_valid)["min_valid_fraction"]
    source = read_labels(labels, label_field, encoding=encodings.get("labels", encodings.get("*"))) if labels else None
    checked, good = load_season_plots(labeled_plots, id_field=id_field, plots_crs=plots_crs,
                                      repair_max_area_change=policy.area.repair_max_area_change)
    if source is None:
        source = pd.DataFrame(checked.drop(columns="geometry"))
    # The labels are checked before any raster is read: a missing label column fails at once.
    label_of, groups = training_labels(source, label_field, group_field, path=labels or labeled_plots)
    accepted_ids = set(good["plot_id"].astype(str))  # labels of rejected plots are left out silently
    label_of = {p: c for p, c in label_of.items() if p in accepted_ids}
    acquisitions = season_acquisitions(tiles, start, end, sensor)
    table = observe(good, acquisitions, progress)
    observed = set(table["plot_id"].astype(str))
    unobserved = sorted(set(label_of) - observed)
    if unobserved:
        log.warning("%d labelled plot(s) have no observations and are left out", len(unobserved))
        label_of = {p: c for p, c in label_of.items() if p in observed}
    hashes = training_input_hashes([labeled_plots, *([labels] if labels else [])], acquisitions)
    model = train_crop_model(table, label_of, groups if groups is not None else spatial_blocks(good, block_size),
                             min_valid_fraction=min_valid_fraction, smoothing=smooth, n_splits=folds,
                             random_state=seed, input_hashes=hashes)
    with staged_outputs(output, last=CARD_FILE) as stage:  # both files or neither, the card last
        card = save_crop_model(model, stage)
    cv = card["cv"]
    click.echo(f"grouped CV accuracy {cv['accuracy']:.3f} ({cv['n_splits']} folds, {cv['n_groups']} groups, "
               f"{card['n_training_plots']} plots)", err=True)
    labels_row = cv["confusion_matrix"]["labels"]
    width = max(len(c) for c in labels_row) + 2
    click.echo("true \\ predicted".ljust(width + 4) + "".join(c.rjust(width) for c in labels_row), err=True)
    for name, counts in zip(labels_row, cv["confusion_matrix"]["rows_true_columns_predicted"]):
        click.echo(name.ljust(width + 4) + "".join(str(n).rjust(width) for n in counts), err=True)
