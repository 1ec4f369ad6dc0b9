import json

import numpy as np
import pandas as pd
import pytest

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
