"""The workspace's trained model on the VALIDATION split under the moderate cases of the shift
suite: what `conf/experiment/robust.yaml`'s variants were chosen by. `--split test` gives the
same cases on the test split for the report, once the recipe is chosen (the robustness stage
scores test too, but leaves the stain jitter out for a grayscale model, which still sees its
luminance).

Run in a project folder after `dvc repro` / `dvc exp run` (it reads params.yaml,
`models/cnn.keras`, `models/guard.npz`, `models/run.json`, the val split and its original
images). Prints one line per case and logs each case's accuracy to the training run in MLflow
as `robustness_<split>/<case>/accuracy` (and `.../accuracy_accepted`), plus
`robustness_<split>_moderate_min_accuracy`, so the choice can be read off the runs.

    python benchmarks/recipe_val_shifts.py [--project DIR] [--split val|test] [--no-log]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--project", default=".", help="project folder (default: here)")
    cli.add_argument("--split", choices=("val", "test"), default="val",
                     help="the split scored (default val: what recipes are chosen by)")
    cli.add_argument("--no-log", action="store_true", help="print only; log nothing to MLflow")
    args = cli.parse_args(argv)

    import keras

    from leukemia_cnn.config import load_params
    from leukemia_cnn.data import shifts
    from leukemia_cnn.data.acquisition import acquisition_of
    from leukemia_cnn.data.preprocess import load_split, scale_record
    from leukemia_cnn.modeling.guard import GUARD_FILE, load_guard
    from leukemia_cnn.modeling.robustness import Scorer, evaluate_suite
    from leukemia_cnn.tracking.runs import log_metrics, start_run
    from leukemia_cnn.tracking.store import setup_mlflow

    root = Path(args.project).resolve()
    cfg = load_params(root / "params.yaml")
    model_dir = root / cfg.paths.model_dir
    pre_dir = root / cfg.paths.preprocessed_dir
    _, labels, paths = load_split(pre_dir, args.split)
    originals = shifts.load_originals(root / cfg.paths.raw_dir, paths)
    model = keras.saving.load_model(model_dir / "cnn.keras", compile=False)
    guard = load_guard(model_dir / GUARD_FILE) if (model_dir / GUARD_FILE).is_file() else None
    scale = scale_record(pre_dir)
    cases = list(shifts.moderate(cfg.preprocess.color_mode))
    if cfg.preprocess.color_mode == "grayscale":  # a grey model still sees a stain's luminance
        cases.append(shifts.ShiftCase("stain", 0.05))
    table, _ = evaluate_suite(Scorer(model, guard), originals, labels, sorted(set(cases)),
                              cfg.robustness.seed, cfg.preprocess, progress=False,
                              acquisition=acquisition_of(scale))
    metrics = {}
    for row in table.itertuples():
        print(f"{args.split} {row.case:<16} accuracy {row.accuracy:.3f}  accepted accuracy "
              f"{row.accuracy_accepted:.3f}  flagged {row.flagged:.1%}", flush=True)
        key = row.case.replace("@", "_")
        metrics[f"robustness_{args.split}/{key}/accuracy"] = float(row.accuracy)
        metrics[f"robustness_{args.split}/{key}/accuracy_accepted"] = float(row.accuracy_accepted)
    shifted = table[table["case"] != "clean"]
    worst = f"robustness_{args.split}_moderate_min_accuracy"
    metrics[worst] = float(shifted["accuracy"].min())
    print(f"{args.split} moderate min accuracy {metrics[worst]:.3f} "
          f"({shifted.loc[shifted['accuracy'].idxmin(), 'case']})")
    if not args.no_log:
        record = json.loads((model_dir / "run.json").read_text())
        setup_mlflow(cfg, root)
        with start_run(run_id=record["run_id"]):
            log_metrics(metrics)
        print(f"logged to MLflow run {record['run_id']} ({record.get('run_name', '')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
