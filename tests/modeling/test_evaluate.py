import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leukemia_cnn.modeling.evaluate import is_collapsed, split_metrics


def test_metrics_plots_and_figures_written(trained):
    root, classes = trained.root, list(trained.cfg.data.classes)
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    for split in ("val", "test"):
        assert 0.0 <= metrics[f"{split}_accuracy"] <= 1.0
        assert 0.0 <= metrics[f"{split}_f1_macro"] <= 1.0
        assert metrics[f"{split}_prediction_seconds"] > 0
        for name in classes:
            assert 0.0 <= metrics[f"{split}_recall_{name}"] <= 1.0
        confusion = pd.read_csv(root / "reports" / f"confusion_{split}.csv")
        assert len(confusion) == metrics[f"{split}_n_images"] == 32
        assert set(confusion["actual"]) <= set(classes)
        accuracy = float((confusion["actual"] == confusion["predicted"]).mean())
        assert accuracy == pytest.approx(metrics[f"{split}_accuracy"])
    # The tiny model learns the blob sizes: better than the majority class.
    assert metrics["val_accuracy"] > metrics["val_majority_share"]
    assert metrics["collapsed"] == 0
    for name in ("confusion_val.png", "confusion_test.png", "sample_predictions.png"):
        assert (root / "reports" / "figures" / name).stat().st_size > 1000
    assert "precision" in (root / "reports" / "classification_report.txt").read_text()


def test_metrics_logged_to_the_training_run(trained):
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.get_run(trained.train["run_id"])
    for key in ("val_accuracy", "test_accuracy", "val_prediction_seconds",
                "test_prediction_seconds", "val_f1_macro"):
        assert key in run.data.metrics
    assert run.data.tags["collapsed"] == "false"
    evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/confusion_test.png" in evaluation
    assert "evaluation/sample_predictions.png" in evaluation


def test_accuracy_is_argmax_and_per_class_metrics():
    classes = ["A", "B", "C"]
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    metrics = split_metrics(y_true, y_pred, classes, "val")
    assert metrics["val_accuracy"] == pytest.approx(4 / 6)
    assert metrics["val_recall_B"] == 1.0
    assert metrics["val_precision_B"] == pytest.approx(2 / 3)
    assert metrics["val_recall_C"] == 0.5


@pytest.mark.parametrize("y_pred,collapsed", [
    ([1, 1, 1, 1, 1], True),     # one class predicted
    ([1, 1, 1, 0, 0], True),     # accuracy 0.6 == majority share 0.6
    ([0, 0, 1, 1, 1], False),    # perfect
])
def test_collapse_detection(y_pred, collapsed):
    assert is_collapsed(np.array([0, 0, 1, 1, 1]), np.array(y_pred)) is collapsed


def test_calibration_reported_before_and_after_and_served(trained):
    """ECE/NLL per split before and after the val-fit temperature, reliability tables and
    diagrams, the Grad-CAM grid; the logged model serves the temperature train chose."""
    import mlflow

    root = trained.root
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    for split in ("val", "test"):
        for kind in ("ece", "nll"):
            for variant in ("uncalibrated", "calibrated"):
                assert np.isfinite(metrics[f"{split}_{kind}_{variant}"])
        assert 0 <= metrics[f"{split}_ece_uncalibrated"] <= 1
        for variant in ("uncalibrated", "calibrated"):
            table = pd.read_csv(root / "reports" / "reliability" / f"{split}_{variant}.csv")
            assert table["count"].sum() == metrics[f"{split}_n_images"]
            assert table["confidence"].between(0, 1).all()
        assert (root / "reports" / "figures" / f"reliability_{split}.png").stat().st_size > 1000
    # fit on val: the temperature cannot make the val NLL worse
    assert metrics["val_nll_calibrated"] <= metrics["val_nll_uncalibrated"] + 1e-9
    assert (root / "reports" / "figures" / "gradcam_test.png").stat().st_size > 1000

    run = mlflow.MlflowClient().get_run(trained.train["run_id"])
    assert run.data.metrics["val_ece_calibrated"] == pytest.approx(metrics["val_ece_calibrated"])
    served = metrics["calibration_temperature"]
    assert run.data.metrics["calibration_temperature"] == pytest.approx(served)
    assert served in (1.0, pytest.approx(metrics["calibration_fitted_temperature"]))
    wrapper = mlflow.pyfunc.load_model(trained.train["model_uri"]).unwrap_python_model()
    assert wrapper.temperature == pytest.approx(served)
def test_test_time_augmentation_averages_the_eight_dihedral_views():
    import keras

    from leukemia_cnn.modeling.evaluate import dihedral_views, timed_predict

    rng = np.random.default_rng(0)
    x = rng.random((3, 6, 6, 1)).astype(np.float32)
    views = dihedral_views(x)
    assert len(views) == 8
    assert len({v.tobytes() for v in views}) == 8  # all different for a random image
    np.testing.assert_array_equal(views[1][0, :, :, 0], np.rot90(x[0, :, :, 0]))
    # A model that reads the top-left pixel: one prediction sees one pixel, TTA the 4 corners.
    inputs = keras.Input((6, 6, 1))
    corner = keras.layers.Cropping2D(((0, 5), (0, 5)))(inputs)
    logits = keras.layers.Dense(2, kernel_initializer="ones", bias_initializer="zeros")(
        keras.layers.Flatten()(corner))
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    plain, _ = timed_predict(model, x)
    averaged, seconds = timed_predict(model, x, tta=True)
    np.testing.assert_allclose(plain, np.full((3, 2), 0.5), atol=1e-6)  # equal logits
    expected = np.mean([model.predict(v, verbose=0) for v in views], axis=0)
    np.testing.assert_allclose(averaged, expected, rtol=1e-6)
    assert seconds > 0


def test_evaluate_stage_with_tta_logs_the_served_models_accuracy_too(trained):
    import keras

    from leukemia_cnn.config import updated
    from leukemia_cnn.data.preprocess import load_split
    from leukemia_cnn.modeling import evaluate

    cfg = updated(trained.cfg, {"evaluate": {"tta": True}})

    model = keras.models.load_model(trained.root / "models" / "cnn.keras")
    pre = trained.root / trained.cfg.paths.preprocessed_dir
    splits = {name: load_split(pre, name) for name in ("val", "test")}
    out = trained.root / "reports-tta"
    out.mkdir()
    metrics, _ = evaluate.evaluate_model(model, cfg, splits, out)
    for split in ("val", "test"):
        assert 0 <= metrics[f"{split}_accuracy_no_tta"] <= 1
        assert 0 <= metrics[f"{split}_accuracy"] <= 1


def test_selective_prediction_under_the_guard_is_reported(trained):
    """Accuracy on the images the guard accepts beside the overall accuracy, the false-flag
    rate, and the risk-coverage curve `dvc plots` draws."""
    import mlflow
    import pandas as pd

    from leukemia_cnn.modeling.evaluate import HEADLINE_METRICS
    from leukemia_cnn.modeling.selective import RISK_COVERAGE_FILE

    metrics = json.loads((trained.root / "reports" / "metrics.json").read_text())
    for split in ("val", "test"):
        coverage = metrics[f"{split}_guard_coverage"]
        assert metrics[f"{split}_false_flag_rate"] == pytest.approx(1 - coverage)
        assert 0.0 <= metrics[f"{split}_accuracy_accepted"] <= 1.0
    assert 0.95 <= metrics["val_guard_coverage"] <= 1.0  # the threshold was set on val
    # first in metrics.json, where `dvc metrics show` opens
    assert "test_false_flag_rate" in list(metrics)[:len(HEADLINE_METRICS)]
    curve = pd.read_csv(trained.root / "reports" / RISK_COVERAGE_FILE)
    assert list(curve.columns) == ["coverage", "accuracy_ood_score", "accuracy_confidence",
                                   "risk_ood_score"]
    assert curve["coverage"].is_monotonic_increasing and curve["coverage"].iloc[-1] == 1.0
    # answering everything is the overall accuracy, whatever the order
    assert curve["accuracy_ood_score"].iloc[-1] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert curve["accuracy_confidence"].iloc[-1] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    logged = mlflow.MlflowClient().get_run(trained.train["run_id"]).data.metrics
    assert logged["test_false_flag_rate"] == pytest.approx(metrics["test_false_flag_rate"])


@settings(max_examples=50, deadline=None)
@given(correct=st.lists(st.booleans(), min_size=1, max_size=300),
       seed=st.integers(0, 2**16))
def test_risk_coverage_ranks_by_the_score(correct, seed):
    from leukemia_cnn.modeling.selective import CURVE_POINTS, risk_coverage

    correct = np.array(correct)
    # a score that knows the answer puts every right image first
    perfect = risk_coverage(correct, np.where(correct, 0.0, 1.0),
                            np.random.default_rng(seed).random(len(correct)))
    assert len(perfect) <= CURVE_POINTS
    n_right = int(correct.sum())
    assert (perfect.loc[perfect["coverage"] * len(correct) <= n_right + 1e-9,
                        "accuracy_ood_score"] == 1.0).all()
    assert perfect["accuracy_ood_score"].iloc[-1] == pytest.approx(correct.mean(), abs=1e-6)
