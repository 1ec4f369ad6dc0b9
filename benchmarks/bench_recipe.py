"""Recipe benchmark: one training run of a recipe (a conf/experiment file) against a baseline
recipe, by default the paper's e15/b64 row (``table1_e15_b64_cce``), on the same data and
machine (``--baseline fast --max-ratio 1.3``: the robust recipe against ``fast``).

Each run is ``leukemia_cnn.modeling.train.fit`` (the train stage's fit: same seeds, op determinism,
callbacks and early stopping; no MLflow) in a fresh process with TensorFlow's default threads
(every core), on the preprocess stage's train and val arrays of ``--data-project`` (a project
folder with ``data/preprocessed``, e.g. a study workspace ``studies/real``) or of a synthetic
benchmark workspace. Runs alternate paper/recipe/recipe/paper/... The figure is the wall time
of ``fit``; each run's val accuracy (argmax, the fitted model) is printed beside it.

Targets (2 cores): recipe / baseline wall time <= ``--max-ratio`` (3.0 against the paper's
row); one recipe run <= 600 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import benchlib

PAPER = "table1_e15_b64_cce"


def run_trial(experiment: str, data_project: Path, overrides: list[str]) -> dict:
    """One timed ``fit`` of ``experiment`` in this process."""
    import numpy as np

    from leukemia_cnn.config import load_config
    from leukemia_cnn.data.preprocess import load_split
    from leukemia_cnn.modeling.train import fit, train_subset, training_source

    cfg = load_config([f"experiment={experiment}", "train.verbose=0", *overrides],
                      root=benchlib.REPO)
    pre_dir = data_project / "data" / "preprocessed"
    x_train, y_train, _ = train_subset(cfg, *load_split(pre_dir, "train")[:2])
    x_val, y_val, _ = load_split(pre_dir, "val")
    x_source = training_source(cfg, pre_dir, x_train)  # RGB for a grey model's stain jitter
    started = time.perf_counter()
    model, history, _ = fit(cfg, x_source, y_train, x_val, y_val)
    seconds = time.perf_counter() - started
    predicted = model.predict(x_val, batch_size=256, verbose=0).argmax(axis=1)
    return {"seconds": seconds, "epochs_run": len(history), "n_train": len(y_train),
            "val_accuracy": float(np.mean(predicted == y_val))}


def main(argv: list[str] | None = None) -> int:
    cli = benchlib.parser(__doc__)
    cli.add_argument("--recipe", default="fast", help="conf/experiment file of the recipe")
    cli.add_argument("--baseline", default=PAPER, help="conf/experiment file to compare with")
    cli.add_argument("--max-ratio", type=float, default=3.0,
                     help="target: recipe / baseline training wall time at most this")
    cli.add_argument("--data-project", default=None,
                     help="project folder whose data/preprocessed arrays to train on (default: "
                          "the synthetic benchmark workspace)")
    cli.add_argument("--repeats", type=int, default=1, help="runs of each configuration")
    cli.add_argument("--override", action="append", default=[],
                     help="Hydra override for both runs (repeatable), e.g. train.epochs=2")
    cli.add_argument("--trial", help=argparse.SUPPRESS)
    args = cli.parse_args(argv)
    if args.trial:
        result = run_trial(args.trial, Path(args.data_project), args.override)
        print("TRIAL " + json.dumps(result), flush=True)
        return 0

    baseline = args.baseline
    label = "paper e15/b64" if baseline == PAPER else baseline
    bench = benchlib.Bench("recipe", f"one training run: {args.recipe} vs {label}")
    # A given project's arrays need no synthetic workspace.
    with (contextlib.nullcontext() if args.data_project
          else benchlib.workspace_from_args(args, bench)) as ws:
        data_project = Path(args.data_project).resolve() if args.data_project else ws.project
        bench.say(f"data: {data_project / 'data' / 'preprocessed'}; extra overrides: "
                  f"{args.override or 'none'}; TensorFlow's default threads")
        order = ([baseline, args.recipe, args.recipe, baseline] * args.repeats)[:2 * args.repeats]
        results: dict[str, list[dict]] = {baseline: [], args.recipe: []}
        for experiment in order:
            command = [sys.executable, __file__, "--trial", experiment, "--data-project",
                       str(data_project)]
            for override in args.override:
                command += ["--override", override]
            result = benchlib.trial(command, benchlib.REPO)
            results[experiment].append(result)
            bench.say(f"  {experiment:<20}: {result['seconds']:7.1f} s, {result['epochs_run']} "
                      f"epochs on {result['n_train']:,} images, val accuracy "
                      f"{result['val_accuracy']:.3f}")
        base = benchlib.median(r["seconds"] for r in results[baseline])
        recipe = benchlib.median(r["seconds"] for r in results[args.recipe])
        bench.say(f"median of {args.repeats}: {label} {base:.1f} s, {args.recipe} "
                  f"{recipe:.1f} s, ratio {recipe / base:.2f}")
        bench.say(f"baseline: {label} in this run; ratio = recipe / baseline")
        bench.figure("paper_seconds" if baseline == PAPER else "baseline_seconds", base)
        bench.figure("recipe_seconds", recipe)
        bench.check(f"{args.recipe} / {label} training wall time", recipe / base, "<=",
                    args.max_ratio, fmt="{:.2f}")
        bench.check(f"{args.recipe} training wall time", recipe, "<=", 600.0, unit="s",
                    fmt="{:.0f}")
    bench.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
