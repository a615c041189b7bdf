"""A learned crop classifier for lenders who hold field-visit labels.

Features per plot: the season features of :func:`agricredit.series.phenology`
(dates as day of year) plus the NDVI series resampled to fixed days of year
(:data:`GRID_DOY`, NaN outside the observed period; the histogram gradient
boosting classifier handles missing values natively). Cross-validation is
grouped (by borrower or spatial block) so that neighbouring plots of one
farmer never sit on both sides of a split.

The model is saved with skops (never pickle) together with ``model_card.json``.
The two are bound to each other: the card holds the model file's sha256, and
the model file holds the sha256 of the card's other fields, so editing either
one is detected on load (:class:`~agricredit.errors.ModelError`). This is an
integrity check, not a signature: whoever can rewrite both files can forge them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agricredit import __version__
from agricredit.errors import ModelError, SchemaError
from agricredit.outputs import atomic_path, sha256_file
from agricredit.acquisitions import tile_hashes
from agricredit.series import PlotSeries, Smoothing, phenology, plot_series, resample_doy, smooth_series
from agricredit.seeds import crop_aliases

__all__ = [
    "GRID_DOY",
    "MODEL_FILE",
    "CARD_FILE",
    "TRUSTED_TYPES",
    "CropModel",
    "season_feature_table",
    "spatial_blocks",
    "training_labels",
    "training_input_hashes",
    "train_crop_model",
    "save_crop_model",
    "load_crop_model",
]

logger = logging.getLogger(__name__)

#: Days of year the series are resampled to (every 16 days, as the MODIS composites).
GRID_DOY = np.arange(1, 366, 16)
MODEL_FILE = "model.skops"
CARD_FILE = "model_card.json"
CARD_FORMAT = "agricredit-crop-model/1"
#: Types skops may construct beyond its built-in safe list; anything else is refused.
TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
#: Training runs on one thread below this many plots (thread start-up dominates small fits).
SINGLE_THREAD_BELOW = 20000
_SCALAR_FEATURES = ["peak_ndvi", "base_ndvi", "amplitude", "peak_doy", "greenup_doy", "senescence_doy",
                    "season_length_days", "ndvi_integral", "n_valid"]


def _doy_or_nan(value: Any) -> float:
    if value is None or np.isnat(np.datetime64(value, "D")):
        return np.nan
    day = np.datetime64(value, "D")
    return float((day - day.astype("datetime64[Y]").astype("datetime64[D]")).astype(int) + 1)


def season_feature_table(series: Mapping[str, PlotSeries], *, smoothing: Smoothing = "none") -> pd.DataFrame:
    """The classifier's feature table: one row per plot (index ``plot_id``).

    Columns: ``peak_ndvi, base_ndvi, amplitude, peak_doy, greenup_doy,
    senescence_doy, season_length_days, ndvi_integral, n_valid`` and
    ``ndvi_doy_NNN`` for each day of year in :data:`GRID_DOY`.
    """
    rows = {}
    for plot_id, s in series.items():
        days, curve = smooth_series(s.dates, s.ndvi, smoothing) if smoothing != "none" else (s.dates, s.ndvi)
        pheno = phenology(days, curve)
        row = {
            "peak_ndvi": pheno["peak_ndvi"], "base_ndvi": pheno["base_ndvi"], "amplitude": pheno["amplitude"],
            "peak_doy": _doy_or_nan(pheno["peak_date"]), "greenup_doy": _doy_or_nan(pheno["greenup_date"]),
            "senescence_doy": _doy_or_nan(pheno["senescence_date"]),
            "season_length_days": pheno["season_length_days"], "ndvi_integral": pheno["ndvi_integral"],
            "n_valid": float(len(s.dates)),
        }
        row.update(zip((f"ndvi_doy_{d:03d}" for d in GRID_DOY), resample_doy(days, curve, GRID_DOY)))
        rows[plot_id] = row
    columns = _SCALAR_FEATURES + [f"ndvi_doy_{d:03d}" for d in GRID_DOY]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("plot_id")


@dataclass
class CropModel:
    """A trained classifier and its card (see :func:`load_crop_model`)."""

    estimator: Any
    card: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        """The crops the model knows."""
        return list(self.card["classes"])

    @property
    def min_valid_fraction(self) -> float:
        """The ``min_valid_fraction`` the training series were built with (features must be built alike)."""
        return float(self.card["min_valid_fraction"])

    def check_min_valid_fraction(self, min_valid_fraction: float) -> None:
        """Raise :class:`ModelError` unless series built with ``min_valid_fraction`` give this model's features.

        Parameters
        ----------
        min_valid_fraction
            The threshold the caller's :class:`PlotSeries` were (or will be) built with.
        """
        if not np.isclose(float(min_valid_fraction), self.min_valid_fraction, rtol=0, atol=1e-12):
            raise ModelError(f"the crop model was trained on observations with min_valid_fraction "
                             f"{self.min_valid_fraction:g}, this run uses {float(min_valid_fraction):g}: its features "
                             f"would differ (set the run's min_valid_fraction to {self.min_valid_fraction:g} or retrain)")

    def predict_proba(self, table: pd.DataFrame, *, stat: str = "ndvi_mean") -> pd.DataFrame:
        """Crop probabilities per plot from the zonal engine's long table.

        The series are rebuilt with the card's ``min_valid_fraction`` and
        smoothed with the card's ``smoothing``, so the features are those of training
        whatever the caller's own thresholds.

        Returns
        -------
        pandas.DataFrame
            Index ``plot_id`` (plots of the table), one column per class.
        """
        return self.predict_proba_series(plot_series(table, min_valid_fraction=self.min_valid_fraction, stat=stat))

    def predict_proba_series(self, series: Mapping[str, PlotSeries], *,
                             min_valid_fraction: float | None = None) -> pd.DataFrame:
        """Crop probabilities per plot (index ``plot_id``, one column per class).

        ``series`` must be built with the card's ``min_valid_fraction``; pass
        the value they were built with to have it checked
        (:meth:`check_min_valid_fraction`), or use :meth:`predict_proba` on the long table.
        """
        if min_valid_fraction is not None:
            self.check_min_valid_fraction(min_valid_fraction)
        features = season_feature_table(series, smoothing=self.card["smoothing"])
        if features.empty:
            return pd.DataFrame(columns=self.classes, dtype=float)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1 if len(features) < SINGLE_THREAD_BELOW else None):
            proba = self.estimator.predict_proba(features[self.card["features"]].to_numpy(float))
        return pd.DataFrame(proba, index=features.index, columns=[str(c) for c in self.estimator.classes_])


def spatial_blocks(plots: Any, block_size_m: float) -> dict[str, str]:
    """Group plots into square blocks of ``block_size_m`` on their UTM zone's grid (by centroid).

    For grouped cross-validation when no borrower or other grouping is known:
    neighbouring plots (similar soil, weather, sowing) stay on one side of a split.

    Parameters
    ----------
    plots
        GeoDataFrame with ``plot_id`` (any CRS).
    block_size_m
        Block side in metres.

    Returns
    -------
    dict
        ``plot_id`` → ``"block:i:j"``.
    """
    projected = plots.to_crs(plots.estimate_utm_crs())
    centroids = projected.geometry.centroid
    cells = zip(np.floor(centroids.x / block_size_m).astype(int), np.floor(centroids.y / block_size_m).astype(int))
    return {str(p): f"block:{i}:{j}" for p, (i, j) in zip(plots["plot_id"], cells)}


def training_labels(
    source: pd.DataFrame,
    label_field: str,
    group_field: str | None = None,
    *,
    path: str | Path | None = None,
) -> tuple[dict[str, str], dict[str, str] | None]:
    """The labels (and groups) of a labels table or plot file.

    Parameters
    ----------
    source
        A table with ``plot_id`` and ``label_field`` (:func:`agricredit.tables.read_labels`,
        or the plot file's attributes).
    label_field
        Column of the observed crop; values are stripped and lower-cased, empty ones skipped,
        and names of the crop table (code or Chinese name, :func:`agricredit.seeds.crop_aliases`)
        become the crop code, so that the model's classes match declared crops.
    group_field
        Column grouping plots for cross-validation (e.g. ``borrower_id``), if any.
    path
        The file ``source`` came from, for errors.

    Returns
    -------
    (labels, groups)
        ``plot_id`` → crop, and ``plot_id`` → group (``None`` without ``group_field``).

    Raises
    ------
    SchemaError
        A missing label or group column.
    """
    label_field = _column(source, label_field)
    if label_field not in source.columns:
        raise SchemaError(f"no label column {label_field!r} (use --label-field or --labels)", path=path)
    aliases = {name.lower(): crop for name, crop in crop_aliases().items()}
    labels = {str(p): aliases.get(str(c).strip().lower(), str(c).strip().lower())
              for p, c in zip(source["plot_id"], source[label_field]) if c is not None and not pd.isna(c) and str(c).strip()}
    if group_field is None:
        return labels, None
    group_field = _column(source, group_field)
    if group_field not in source.columns:
        raise SchemaError(f"no group column {group_field!r}", path=path)
    return labels, {str(p): str(g) for p, g in zip(source["plot_id"], source[group_field])}


def _column(frame: pd.DataFrame, name: str) -> str:
    """``name``, or the column equal to it after strip and lower-case (table readers lower-case their headers)."""
    if name in frame.columns:
        return name
    return next((c for c in frame.columns if str(c).strip().lower() == name.strip().lower()), name)


def training_input_hashes(files: Iterable[str | Path], acquisitions: Iterable[Any]) -> dict[str, str]:
    """sha256 of the training inputs for the model card: each file by name, each tile by ``date/name``.

    Parameters
    ----------
    files
        The plot file, the labels table.
    acquisitions
        :class:`agricredit.acquisitions.Acquisition` objects (:func:`agricredit.acquisitions.tile_hashes`).
    """
    return {**{Path(path).name: sha256_file(path) for path in files}, **tile_hashes(acquisitions)}


def _canonical_sha256(document: Mapping[str, Any]) -> str:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _library_versions() -> dict[str, str]:
    import scipy
    import skops
    import sklearn

    return {"agricredit": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "pandas": pd.__version__, "scikit-learn": sklearn.__version__,
            "skops": skops.__version__}


def train_crop_model(
    table: pd.DataFrame,
    labels: Mapping[str, str],
    groups: Mapping[str, str] | None = None,
    *,
    min_valid_fraction: float = 0.6,
    smoothing: Smoothing = "none",
    n_splits: int = 5,
    random_state: int = 0,
    input_hashes: Mapping[str, str] | None = None,
) -> CropModel:
    """Train the crop classifier on labelled plots and cross-validate it by group.

    Parameters
    ----------
    table
        The zonal engine's long table for the labelled plots.
    labels
        ``plot_id`` → crop observed in the field. Plots of the table without a
        label are ignored; labels without observations are an error.
    groups
        ``plot_id`` → group (borrower or spatial block) for
        :class:`sklearn.model_selection.GroupKFold`; default one group per plot.
    min_valid_fraction, smoothing
        As in :func:`agricredit.season.assess_season`; recorded in the card and
        reused when the model predicts.
    n_splits
        Folds (fewer if there are fewer groups; at least 2 groups are needed).
    random_state
        Seed of the estimator (training is deterministic for a given seed).
    input_hashes
        ``name`` → sha256 of the files the table and labels came from, for the card.

    Returns
    -------
    CropModel
        Fitted on all labelled plots; ``card["cv"]`` holds the grouped
        cross-validated accuracy, per-fold accuracies and confusion matrix.
    """
    from sklearn.base import clone
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import accuracy_score, confusion_matrix
    from sklearn.model_selection import GroupKFold
    from threadpoolctl import threadpool_limits

    series = plot_series(table, min_valid_fraction=min_valid_fraction)
    labels = {str(k): str(v) for k, v in labels.items() if v is not None and str(v) != "" and not pd.isna(v)}
    missing = sorted(set(labels) - set(series))
    if missing:
        raise SchemaError(f"{len(missing)} labelled plots have no observations in the long table")
    plot_ids = sorted(set(labels) & set(series))
    features = season_feature_table({p: series[p] for p in plot_ids}, smoothing=smoothing)
    # Days of year the training season never observed carry no information: leave them out.
    features = features.loc[:, features.notna().any()]
    X = features.to_numpy(float)
    y = np.array([labels[p] for p in plot_ids])
    group_of = {str(k): str(v) for k, v in (groups or {}).items()}
    g = np.array([group_of.get(p, f"plot:{p}") for p in plot_ids])
    n_groups = len(set(g))
    classes = sorted({str(c) for c in y})
    if len(classes) < 2:
        raise SchemaError(f"training needs at least 2 crops among the labels, got {classes}")
    if n_groups < 2:
        raise SchemaError("grouped cross-validation needs at least 2 groups")
    # sklearn's default of 20 samples per leaf would forbid any split on a few dozen labelled plots.
    estimator = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=15,
                                               min_samples_leaf=max(2, min(20, len(y) // 10)),
                                               l2_regularization=1.0, random_state=random_state)
    splitter = GroupKFold(n_splits=min(n_splits, n_groups))
    predicted = np.empty_like(y)
    fold_accuracy = []
    # OpenMP threads cost more than they save on a few thousand plots (tenfold on 2 cores).
    with threadpool_limits(1 if len(y) < SINGLE_THREAD_BELOW else None):
        for train, test in splitter.split(X, y, g):
            fold = clone(estimator).fit(X[train], y[train])
            predicted[test] = fold.predict(X[test])
            fold_accuracy.append(float(accuracy_score(y[test], predicted[test])))
        estimator.fit(X, y)
    matrix = confusion_matrix(y, predicted, labels=classes)
    training = features.assign(label=y, group=g).reset_index()
    card = {
        "format": CARD_FORMAT,
        "estimator": type(estimator).__name__,
        "params": {k: v for k, v in estimator.get_params().items() if isinstance(v, (int, float, str, bool, type(None)))},
        "features": list(features.columns),
        "classes": classes,
        "grid_doy": [int(d) for d in GRID_DOY],
        "min_valid_fraction": min_valid_fraction,
        "smoothing": smoothing,
        "n_training_plots": len(plot_ids),
        "class_counts": {c: int(np.sum(y == c)) for c in classes},
        "cv": {
            "method": "GroupKFold", "n_splits": splitter.n_splits, "n_groups": n_groups,
            "accuracy": float(accuracy_score(y, predicted)), "fold_accuracy": fold_accuracy,
            "confusion_matrix": {"labels": classes, "rows_true_columns_predicted": matrix.tolist()},
        },
        "training_table_sha256": hashlib.sha256(training.to_csv(index=False, float_format="%.9g").encode()).hexdigest(),
        "training_inputs": dict(sorted((input_hashes or {}).items())),
        "library_versions": _library_versions(),
        "model_file": MODEL_FILE,
    }
    logger.info("crop model: grouped CV accuracy %.3f over %d plots, %d groups", card["cv"]["accuracy"], len(plot_ids), n_groups)
    return CropModel(estimator=estimator, card=card)


def save_crop_model(model: CropModel, model_dir: str | Path) -> dict[str, Any]:
    """Write ``model.skops`` and ``model_card.json`` into ``model_dir`` (atomically each).

    Returns
    -------
    dict
        The card as written (with ``model_sha256``).
    """
    import skops.io as sio

    folder = Path(model_dir)
    core = {k: v for k, v in model.card.items() if k != "model_sha256"}
    bundle = {"estimator": model.estimator, "card_core_sha256": _canonical_sha256(core)}
    with atomic_path(folder / MODEL_FILE) as tmp:
        sio.dump(bundle, tmp)
    card = {**core, "model_sha256": sha256_file(folder / MODEL_FILE)}
    with atomic_path(folder / CARD_FILE) as tmp:
        tmp.write_text(json.dumps(card, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    model.card = card
    return card


def load_crop_model(model_dir: str | Path) -> CropModel:
    """Load a crop model, refusing it unless the model file and card match.

    Checks, in order: the card parses and has the expected format; the model
    file's sha256 equals the card's ``model_sha256``; the file holds no types
    beyond skops' safe list and :data:`TRUSTED_TYPES`; the sha256 of the card's
    fields stored inside the model equals the card's; classes and feature count agree.

    Raises
    ------
    ModelError
        Naming the file and what does not match.
    """
    import skops.io as sio

    folder = Path(model_dir)
    card_path, model_path = folder / CARD_FILE, folder / MODEL_FILE
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ModelError(f"cannot read the model card: {error.strerror}", path=card_path) from error
    except ValueError as error:
        raise ModelError(f"the model card is not valid JSON ({error})", path=card_path) from error
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelError(f"not an agricredit crop model card (format {CARD_FORMAT})", path=card_path)
    if not model_path.is_file():
        raise ModelError("model file is missing", path=model_path)
    if sha256_file(model_path) != card.get("model_sha256"):
        raise ModelError("model file sha256 does not match its card (file changed or card edited)", path=model_path)
    try:
        untrusted = set(sio.get_untrusted_types(file=model_path)) - set(TRUSTED_TYPES)
        if untrusted:
            raise ModelError(f"model file holds untrusted types {sorted(untrusted)}", path=model_path)
        bundle = sio.load(model_path, trusted=TRUSTED_TYPES)
    except ModelError:
        raise
    except Exception as error:  # skops raises various errors on damaged files
        raise ModelError(f"cannot load the model ({type(error).__name__}: {error})", path=model_path) from error
    core = {k: v for k, v in card.items() if k != "model_sha256"}
    if not isinstance(bundle, dict) or bundle.get("card_core_sha256") != _canonical_sha256(core):
        raise ModelError("the model card was modified after training (card hash stored in the model differs)", path=card_path)
    estimator = bundle["estimator"]
    if [str(c) for c in estimator.classes_] != card["classes"] or estimator.n_features_in_ != len(card["features"]):
        raise ModelError("model classes or features differ from its card", path=model_path)
    return CropModel(estimator=estimator, card=card)
