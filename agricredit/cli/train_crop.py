"""``agricredit train-crop LABELED_PLOTS TILES... -o MODEL_DIR``: train the crop classifier on field labels."""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from agricredit.cli.options import output_opt, progress_opt
from agricredit.cli.season import apply_options, satellite_kwargs, season_long_table, season_period_opts
from agricredit.crop_model import save_crop_model, train_crop_model
from agricredit.errors import SchemaError
from agricredit.outputs import sha256_file

log = logging.getLogger(__name__)


def _sha256_path(path: Path) -> str:
    """sha256 of a file; of a folder, over its files' relative names and hashes."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for member in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{member.relative_to(path).as_posix()}\0{sha256_file(member)}\n".encode())
    return digest.hexdigest()


def _read_labels(path: str, label_field: str) -> pd.DataFrame:
    from agricredit.tables import read_text

    frame = pd.read_csv(io.StringIO(read_text(path)), dtype=str, keep_default_na=False)
    missing = {"plot_id", label_field} - set(frame.columns)
    if missing:
        raise SchemaError(f"missing columns {sorted(missing)}", path=path)
    return frame


def spatial_blocks(plots: Any, block_size_m: float) -> dict[str, str]:
    """Group plots into square blocks of ``block_size_m`` on their UTM zone's grid (by centroid)."""
    projected = plots.to_crs(plots.estimate_utm_crs())
    centroids = projected.geometry.centroid
    cells = zip(np.floor(centroids.x / block_size_m).astype(int), np.floor(centroids.y / block_size_m).astype(int))
    return {str(p): f"block:{i}:{j}" for p, (i, j) in zip(plots["plot_id"], cells)}


@click.command()
@click.argument("labeled_plots", type=click.Path(exists=True, dir_okay=False))
@click.argument("tiles", nargs=-1, required=True, type=click.Path(exists=True))
@output_opt
@apply_options(season_period_opts)
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CSV with plot_id and the label column [default: the label column of the plot file].")
@click.option("--label-field", default="crop", show_default=True, help="Column holding the observed crop.")
@click.option("--group-field", default=None,
              help="Column (plot file or labels) grouping plots for cross-validation, e.g. borrower_id "
                   "[default: spatial blocks of --block-size].")
@click.option("--block-size", type=click.FloatRange(min=1), default=2000.0, show_default=True,
              help="Spatial block side (metres) for grouped cross-validation without --group-field.")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Cross-validation folds.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the classifier.")
@progress_opt
def command(labeled_plots: str, tiles: tuple[str, ...], output: Path, start: Any, end: Any, min_valid: float | None,
            smooth: str, id_field: str, policy_path: str | None, labels: str | None, label_field: str,
            group_field: str | None, block_size: float, folds: int, seed: int, progress: bool) -> None:
    """Train a crop classifier (HistGradientBoosting) on plots with field-visit labels.

    Features: season phenology plus the NDVI series resampled every 16 days of
    the year. Reports grouped cross-validated accuracy and the confusion matrix
    on stderr, and writes MODEL_DIR/model.skops (skops, no pickle) and
    MODEL_DIR/model_card.json (input hashes, features, classes, scores,
    library versions, the model's sha256). Use it with `agricredit season --crop-model`.
    """
    min_valid_fraction = satellite_kwargs(policy_path, min_valid_fraction=min_valid)["min_valid_fraction"]
    checked, good, table, acquisitions = season_long_table(labeled_plots, tiles, id_field=id_field, start=start, end=end,
                                             progress=progress)
    source = _read_labels(labels, label_field) if labels else pd.DataFrame(checked.drop(columns="geometry"))
    if label_field not in source.columns:
        raise SchemaError(f"no label column {label_field!r} (use --label-field or --labels)", path=labels or labeled_plots)
    label_of = {str(p): str(c).strip().lower() for p, c in zip(source["plot_id"], source[label_field])
                if c is not None and str(c).strip() and not pd.isna(c)}
    ids = set(good["plot_id"].astype(str))
    label_of = {p: c for p, c in label_of.items() if p in ids}
    if group_field:
        if group_field not in source.columns:
            raise SchemaError(f"no group column {group_field!r}", path=labels or labeled_plots)
        groups = {str(p): str(g) for p, g in zip(source["plot_id"], source[group_field])}
    else:
        groups = spatial_blocks(good, block_size)
    observed = set(table["plot_id"].astype(str))
    unobserved = sorted(set(label_of) - observed)
    if unobserved:
        log.warning("%d labelled plot(s) have no observations and are left out", len(unobserved))
        label_of = {p: c for p, c in label_of.items() if p in observed}
    hashes = {Path(labeled_plots).name: sha256_file(labeled_plots)}
    if labels:
        hashes[Path(labels).name] = sha256_file(labels)
    for acquisition in acquisitions:
        for path in acquisition.paths:
            hashes[f"{acquisition.date}/{path.name}"] = _sha256_path(path)
    model = train_crop_model(table, label_of, groups, min_valid_fraction=min_valid_fraction, smoothing=smooth,
                             n_splits=folds, random_state=seed, input_hashes=hashes)
    card = save_crop_model(model, output)
    cv = card["cv"]
    click.echo(f"grouped CV accuracy {cv['accuracy']:.3f} ({cv['n_splits']} folds, {cv['n_groups']} groups, "
               f"{card['n_training_plots']} plots)", err=True)
    labels_row = cv["confusion_matrix"]["labels"]
    width = max(len(c) for c in labels_row) + 2
    click.echo("true \\ predicted".ljust(width + 4) + "".join(c.rjust(width) for c in labels_row), err=True)
    for name, counts in zip(labels_row, cv["confusion_matrix"]["rows_true_columns_predicted"]):
        click.echo(name.ljust(width + 4) + "".join(str(n).rjust(width) for n in counts), err=True)
