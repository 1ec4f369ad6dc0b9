"""The recipe report's tables, read off logged MLflow runs: each group of runs (a recipe, one
run a seed) as mean +- standard deviation over its runs, clean and under each moderate shift of
the suite, on val (`robustness_val/...`, from `recipe_val_shifts.py`) or test (the robustness
stage's `robustness/...`, and `robustness_test/...` from `recipe_val_shifts.py --split test`
for the cases the stage leaves out, such as a grayscale model's stain jitter).

    python benchmarks/recipe_table.py --project DIR --split test \
        --group "fast gray=fast-s1-real-dev,fast-s2-real-dev,fast-s3-real-dev" --group ...

A group is ``label=run,run,...`` (MLflow run names or ids). Prints one markdown row a group,
with the number of runs and the train seconds; a case a run did not log is left out of its
mean and marked with the count of runs that have it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

CASES = ("clean", "magnify_0.8", "magnify_1.25", "brightness_0.85", "brightness_1.15",
         "contrast_0.8", "blur_1", "jpeg_20", "stain_0.05", "grayscale_1")


def case_value(metrics: dict, split: str, case: str, stat: str) -> float | None:
    """One run's ``stat`` (accuracy, accuracy_accepted) of ``case`` on ``split``."""
    keys = [f"robustness_{split}/{case}/{stat}"]
    if split == "test":
        keys.insert(0, f"robustness/{case}/{stat}")  # the robustness stage's
    if case == "clean":
        keys.append(f"{split}_accuracy" if stat == "accuracy" else f"{split}_accuracy_accepted")
    for key in keys:
        if key in metrics:
            return float(metrics[key])
    return None


def find_run(client, experiment_ids: list[str], name: str):
    """The run called ``name`` (its id, or its run name: the latest of that name)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(name)
    except MlflowException:
        runs = client.search_runs(experiment_ids, f"tags.mlflow.runName = '{name}'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            raise SystemExit(f"recipe_table: no run named {name!r}") from None
        return runs[0]


def cell(values: list[float | None], n: int) -> str:
    """``mean +- sd`` of the values present; ``(k of n)`` when some runs lack the case."""
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    text = f"{np.mean(present):.3f}"
    if len(present) > 1:
        text += f" ± {np.std(present, ddof=1):.3f}"
    return text + (f" ({len(present)} of {n})" if len(present) < n else "")


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--project", default=".", help="project folder (its params.yaml's store)")
    cli.add_argument("--split", choices=("val", "test"), default="val")
    cli.add_argument("--stat", choices=("accuracy", "accuracy_accepted"), default="accuracy")
    cli.add_argument("--group", action="append", required=True, help="label=run,run,...")
    args = cli.parse_args(argv)

    import mlflow

    from leukemia_cnn.config import load_params
    from leukemia_cnn.tracking.store import setup_mlflow

    root = Path(args.project).resolve()
    setup_mlflow(load_params(root / "params.yaml"), root)
    client = mlflow.MlflowClient()
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    print(f"{args.split} {args.stat}, mean ± sd over the runs of each group")
    print("| recipe | runs | train s | " + " | ".join(CASES) + " |")
    print("|---|---|---|" + "---|" * len(CASES))
    for group in args.group:
        label, _, names = group.partition("=")
        runs = [find_run(client, experiment_ids, name) for name in names.split(",") if name]
        seconds = [r.data.metrics.get("train_seconds") for r in runs]
        cells = [cell([case_value(r.data.metrics, args.split, case, args.stat) for r in runs],
                      len(runs)) for case in CASES]
        print(f"| {label} | {len(runs)} | {cell(seconds, len(runs)).split(' ')[0]} | "
              + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
