"""The learned crop classifier: grouped CV, held-out accuracy, skops round trip, tamper refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agricredit import crop_model, season
from agricredit.series import plot_series
from agricredit.errors import ModelError, SchemaError
from season_synth import SUMMER_DATES, Plot, synth_table

CROPS = ["maize", "soybean", "wheat"]


def _labelled(n_per_crop: int, seed: int, prefix: str):
    rng = np.random.default_rng(seed)
    plots = []
    for crop in CROPS:
        for i in range(n_per_crop):
            cloudy = rng.random(len(SUMMER_DATES)) < 0.2
            plots.append(Plot(f"{prefix}{crop[0]}{i}", crop, int(rng.integers(-10, 11)), rng.uniform(0.85, 1.05), cloudy))
    table = synth_table(plots, SUMMER_DATES, noise=0.03, seed=seed)
    labels = {p.plot_id: p.crop for p in plots}
    groups = {p.plot_id: f"borrower{k // 3}" for k, p in enumerate(plots)}  # 3 plots per borrower
    return table, labels, groups


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    table, labels, groups = _labelled(30, seed=1, prefix="t")
    model = crop_model.train_crop_model(table, labels, groups, input_hashes={"plots.geojson": "ab" * 32})
    folder = tmp_path_factory.mktemp("model")
    crop_model.save_crop_model(model, folder)
    return model, folder


def test_cv_scores_and_card(trained):
    model, folder = trained
    card = json.loads((folder / crop_model.CARD_FILE).read_text())
    assert card["classes"] == CROPS and card["cv"]["method"] == "GroupKFold" and card["cv"]["n_splits"] == 5
    assert card["cv"]["accuracy"] >= 0.85
    matrix = np.array(card["cv"]["confusion_matrix"]["rows_true_columns_predicted"])
    assert matrix.shape == (3, 3) and matrix.sum() == 90 and matrix.sum(axis=1).tolist() == [30, 30, 30]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(card["cv"]["accuracy"])
    assert card["training_inputs"] == {"plots.geojson": "ab" * 32}
    assert len(card["training_table_sha256"]) == 64 and "scikit-learn" in card["library_versions"]
    # Scalar features plus the days of year inside the observed season (1 March - 7 November).
    in_season = [d for d in crop_model.GRID_DOY if 60 <= d <= 311]
    assert card["features"] == crop_model._SCALAR_FEATURES + [f"ndvi_doy_{d:03d}" for d in in_season]


def test_held_out_accuracy_and_round_trip(trained):
    model, folder = trained
    table, labels, _ = _labelled(15, seed=99, prefix="h")
    loaded = crop_model.load_crop_model(folder)
    series = plot_series(table)
    proba = loaded.predict_proba_series(series)
    np.testing.assert_allclose(proba.to_numpy(), model.predict_proba_series(series).to_numpy())
    predicted = proba.idxmax(axis=1)
    accuracy = np.mean([predicted[p] == labels[p] for p in labels])
    assert accuracy >= 0.9


def test_crop_check_uses_the_model(trained):
    _, folder = trained
    loaded = crop_model.load_crop_model(folder)
    plots = [Plot(f"m{i}", "maize", vigor=0.95 + 0.01 * i) for i in range(5)] + [Plot("x", "wheat"), Plot("r", "rice")]
    table = synth_table(plots, SUMMER_DATES, seed=5)
    declared = {p.plot_id: "maize" for p in plots} | {"r": "rice"}
    # Region with a rice calendar (the synthetic rice is the Yangtze mid-season rice of crops.csv).
    result = season.assess_season(table, declared, crop_model=loaded, region="yangtze")
    (flag,) = result.flags["x"]
    assert flag.code == "CROP_MISMATCH" and flag.figures["method"] == "model" and flag.figures["best_crop"] == "wheat"
    frame = result.plots.set_index("plot_id")
    assert frame.loc["x", "p_wheat"] - frame.loc["x", "p_maize"] > 0.5
    assert all(result.flags[f"m{i}"] == [] for i in range(5))
    # rice is unknown to the model: the template fit decides (and rice fits a rice season).
    assert result.flags["r"] == []


def _copy(folder, tmp_path):
    target = tmp_path / "copy"
    target.mkdir()
    for name in (crop_model.MODEL_FILE, crop_model.CARD_FILE):
        (target / name).write_bytes((folder / name).read_bytes())
    return target


def test_tampered_model_file_is_refused(trained, tmp_path):
    _, folder = trained
    target = _copy(folder, tmp_path)
    data = bytearray((target / crop_model.MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (target / crop_model.MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        crop_model.load_crop_model(target)


def test_tampered_card_is_refused(trained, tmp_path):
    _, folder = trained
    target = _copy(folder, tmp_path)
    card = json.loads((target / crop_model.CARD_FILE).read_text())
    card["cv"]["accuracy"] = 0.999
    (target / crop_model.CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="card was modified"):
        crop_model.load_crop_model(target)
    (target / crop_model.CARD_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="JSON"):
        crop_model.load_crop_model(target)


def test_training_needs_two_crops_and_groups():
    table, labels, groups = _labelled(3, seed=2, prefix="z")
    with pytest.raises(SchemaError, match="2 crops"):
        crop_model.train_crop_model(table, {p: "maize" for p in labels}, groups)
    with pytest.raises(SchemaError, match="2 groups"):
        crop_model.train_crop_model(table, labels, {p: "one" for p in labels})
    with pytest.raises(SchemaError, match="no observations"):
        crop_model.train_crop_model(table, labels | {"ghost": "maize"}, groups)
