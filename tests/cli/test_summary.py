"""``leukemia-cnn summary``: what a user reads after `make run`, from the stage reports."""

import json

from leukemia_cnn.cli import summary


def write_reports(root, **reports):
    folder = root / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in reports.items():
        (folder / f"{name}.json").write_text(json.dumps(data))


def test_without_metrics_it_says_what_to_run(make_cfg, tmp_path, capsys):
    summary.run(make_cfg(), tmp_path)
    assert capsys.readouterr().out.strip() == (
        "summary: no metrics yet; run `dvc repro` (or `make run`)")


def test_it_prints_both_models_the_training_and_the_registry(make_cfg, tmp_path, capsys,
                                                              monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_reports(
        tmp_path,
        metrics={"val_accuracy": 0.8125, "test_accuracy": 0.79, "val_prediction_seconds": 1.234,
                 "test_prediction_seconds": 0.5, "collapsed": 0},
        train={"epochs": 15, "train_seconds": 42.0},
        baseline={"val_accuracy": 0.61, "test_accuracy": 0.6},
        robustness={"robustness_moderate_min_accuracy": 0.5877, "robustness_worst_accuracy": 0.3347,
                    "worst_case": "contrast@0.6", "robustness_worst_accuracy_accepted": 0.1463,
                    "worst_accepted_case": "magnify@2"},
        registered={"registered_model": "leukemia-cnn", "version": 3, "alias": "champion",
                    "champion_version": 2, "version_summary": "3 versions on this data",
                    "champion_explanation": "the champion stays: version 2 scores higher"})
    (tmp_path / "conf").mkdir()  # the project root the embedded store is found from
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    summary.run(make_cfg(), tmp_path)
    out = capsys.readouterr().out
    cnn = next(line for line in out.splitlines() if "CNN (paper config)" in line)
    assert cnn.split()[-4:] == ["0.812", "0.790", "1.23", "0.50"]
    baseline = next(line for line in out.splitlines() if "HOG+PCA" in line)
    assert baseline.split()[-4:] == ["0.610", "0.600", "-", "-"]
    assert "training: 15 epochs in 42.0 s" in out and "collapsed" not in out
    assert ("lowest accuracy under an everyday shift 0.588; worst 0.335 (contrast@0.6); worst on "
            "the images the guard accepts 0.146 (magnify@2)") in out
    assert ("registry: 'leukemia-cnn' version 3; alias 'champion' -> version 2" in out
            and "3 versions on this data" in out)
    assert "The champion stays: version 2 scores higher." in out
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db" in out


def test_a_collapsed_run_and_a_tracking_server_are_said(make_cfg, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    write_reports(tmp_path, metrics={"val_accuracy": 0.25, "collapsed": 1})
    summary.run(make_cfg(), tmp_path)
    out = capsys.readouterr().out
    assert "WARNING: the CNN run collapsed (no better than the majority class)" in out
    assert "MLflow tracking server: http://mlflow.example:5000" in out
    assert "registry:" not in out and "training:" not in out and "robustness" not in out
