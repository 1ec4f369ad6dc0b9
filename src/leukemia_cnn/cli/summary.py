"""``leukemia-cnn summary``: the metrics of the last pipeline run and where to look next."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from leukemia_cnn.config_schema import Config
from leukemia_cnn.console import text_table
from leukemia_cnn.tracking.store import tracking_uri


def run(cfg: Config, root: Path) -> None:
    files = [root / cfg.paths.reports_dir / f"{name}.json"
             for name in ("metrics", "train", "baseline", "robustness", "registered")]
    metrics, train, baseline, robustness, registered = (
        json.loads(path.read_text()) if path.is_file() else {} for path in files)
    if not metrics:
        print("summary: no metrics yet; run `dvc repro` (or `make run`)")
        return

    def cell(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}"

    columns = ("", "val_acc", "test_acc", "val_pred_s", "test_pred_s")
    rows = [("CNN (paper config)", cell(metrics.get("val_accuracy")),
             cell(metrics.get("test_accuracy")), cell(metrics.get("val_prediction_seconds"), 2),
             cell(metrics.get("test_prediction_seconds"), 2)),
            ("HOG+PCA logistic baseline", cell(baseline.get("val_accuracy")),
             cell(baseline.get("test_accuracy")), "-", "-")]
    print()
    print(text_table(columns, rows, right=columns[1:], indent="  "))
    if train:
        print(f"\n  training: {train.get('epochs')} epochs in {train.get('train_seconds')} s")
    if robustness:
        print(f"  robustness (test split under acquisition shifts, docs/robustness.md): lowest "
              f"accuracy under an everyday shift {cell(robustness.get('robustness_moderate_min_accuracy'))}"
              f"; worst {cell(robustness.get('robustness_worst_accuracy'))} "
              f"({robustness.get('worst_case', '-')}); worst on the images the guard accepts "
              f"{cell(robustness.get('robustness_worst_accuracy_accepted'))} "
              f"({robustness.get('worst_accepted_case', '-')})")
    if metrics.get("collapsed"):
        print("  WARNING: the CNN run collapsed (no better than the majority class)")
    if registered:
        print(f"  registry: '{registered.get('registered_model')}' version "
              f"{registered.get('version')}; alias '{registered.get('alias')}' -> version "
              f"{registered.get('champion_version')}")
        if registered.get("version_summary"):
            print(f"  {registered['version_summary']}")
        if registered.get("champion_explanation"):
            # Above all when the champion did not move: say why, in words.
            print(f"  {registered['champion_explanation'][0].upper()}"
                  f"{registered['champion_explanation'][1:]}.")
    uri = tracking_uri(cfg, root)
    print("\nwhere to look next:")
    if uri.startswith("sqlite:///"):
        print(f"  mlflow ui --backend-store-uri {shlex.quote(uri)}     # compare runs, open artifacts")
    else:
        print(f"  MLflow tracking server: {uri}")
    print("  dvc metrics show                  # this run's metrics")
    print("  dvc plots show                    # confusion matrices, curves, accuracy under shift")
    print("  leukemia-cnn predict IMAGE.jpg    # classify with the champion model")
