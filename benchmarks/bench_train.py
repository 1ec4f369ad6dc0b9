"""Training benchmark: the train stage's code path vs a bare ``model.fit``.

Both fit the same model (``model.build_from_config`` of the workspace's params.yaml) on the
same preprocessed arrays (the preprocess stage's train and val splits) for the same epochs
and batch size. Each trial runs in a fresh process (TensorFlow's op-determinism switch is
process-wide, and a fresh process is what ``dvc repro`` starts); trials alternate
bare/stage/stage/bare/... to spread the drift of a shared machine over both.

- bare: load the arrays, build and compile the model, ``model.fit(..., verbose=0)``; run
  twice over: as TensorFlow starts (``bare``), and with the stage's seeds and op determinism
  switched on first (``bare-det``, one call of ``model.set_seeds``). The baseline is the
  faster of the two (medians): the fastest plain Keras fit of the same model. The old bare
  fit ran without the stage's seeding and determinism and was slower than the stage; the
  run prints both, so the cause (or the load's noise) shows in each result.
- stage: ``leukemia_cnn.modeling.train.run``, the function ``leukemia-cnn train`` calls: the same
  loading, seeds and op determinism, an MLflow run with params and tags, the per-epoch
  MLflow callback, the saved model, curves, config and the logged pyfunc model.

The timed span starts after TensorFlow/Keras are imported (both need them) and includes
everything else, so MLflow's import and store opening count as overhead.

Target (2 cores): wall-time ratio stage / bare <= 1.10.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import benchlib

TRIAL_MODES = ("bare", "bare-det", "stage")
BARE_MODES = ("bare", "bare-det")


def trial_config(project: Path, epochs: int, batch_size: int | None):
    from leukemia_cnn.config import load_params, updated

    cfg = load_params(project / "params.yaml")
    overrides = {"train": {"epochs": epochs, "verbose": 0},
                 "paths": {"model_dir": "benchmark-train/models",
                           "reports_dir": "benchmark-train/reports"},
                 "mlflow": {"experiment_name": "benchmark-train"}}
    if batch_size:
        overrides["train"]["batch_size"] = batch_size
    return updated(cfg, overrides)


def run_trial(mode: str, project: Path, epochs: int, batch_size: int | None) -> dict:
    """One timed training in this process; returns seconds (total) and fit_seconds."""
    import keras  # noqa: F401 - imported before the clock starts, as in both paths
    import tensorflow  # noqa: F401

    from leukemia_cnn.data.preprocess import load_split
    from leukemia_cnn.modeling.model import build_from_config, set_seeds
    from leukemia_cnn.modeling.train import one_hot

    cfg = trial_config(project, epochs, batch_size)
    if mode == "stage":
        from leukemia_cnn.modeling import train

        started = time.perf_counter()
        summary = train.run(cfg, project)
        return {"seconds": time.perf_counter() - started, "fit_seconds": summary["train_seconds"]}

    started = time.perf_counter()
    if mode == "bare-det":
        set_seeds(cfg.seed, deterministic=True)
    pre_dir = project / cfg.paths.preprocessed_dir
    x_train, y_train, _ = load_split(pre_dir, "train")
    x_val, y_val, _ = load_split(pre_dir, "val")
    n_classes = len(cfg.data.classes)
    model = build_from_config(cfg, x_train.shape[1:])
    fit_started = time.perf_counter()
    model.fit(x_train, one_hot(y_train, n_classes),
              validation_data=(x_val, one_hot(y_val, n_classes)),
              epochs=cfg.train.epochs, batch_size=cfg.train.batch_size,
              shuffle=True, verbose=0)
    finished = time.perf_counter()
    return {"seconds": finished - started, "fit_seconds": finished - fit_started}


def main(argv: list[str] | None = None) -> int:
    cli = benchlib.parser(__doc__)
    cli.add_argument("--epochs", type=int, default=3, help="epochs of every trial")
    cli.add_argument("--batch-size", type=int, default=None,
                     help="batch size of every trial (default: train.batch_size)")
    cli.add_argument("--repeats", type=int, default=2, help="trials of each mode")
    cli.add_argument("--trial", choices=TRIAL_MODES, help=argparse.SUPPRESS)
    cli.add_argument("--project", help=argparse.SUPPRESS)
    args = cli.parse_args(argv)
    if args.trial:
        result = run_trial(args.trial, Path(args.project), args.epochs, args.batch_size)
        print("TRIAL " + json.dumps(result), flush=True)
        return 0

    bench = benchlib.Bench("train", "train stage code path vs bare model.fit")
    with benchlib.workspace_from_args(args, bench) as ws:
        from leukemia_cnn.config import load_config

        default_epochs = int(load_config([], root=benchlib.REPO).train.epochs)
        cfg = trial_config(ws.project, args.epochs, args.batch_size)
        x, _ = ws.preprocessed(("train",))
        x_val, _ = ws.preprocessed(("val",))
        bench.say(f"model {cfg.model.name} (filters {list(cfg.model.filters)}, kernels "
                  f"{list(cfg.model.kernel_sizes)}), {len(x):,} train + {len(x_val):,} val "
                  f"images {x.shape[1:]}, {cfg.train.epochs} epochs, batch "
                  f"{cfg.train.batch_size}, op determinism {cfg.train.deterministic} (stage); "
                  f"(the config's default: {default_epochs} epochs)")
        order = (["bare", "bare-det", "stage", "stage", "bare-det", "bare"]
                 * args.repeats)[:3 * args.repeats]
        results: dict[str, list[dict]] = {mode: [] for mode in TRIAL_MODES}
        for mode in order:
            command = [sys.executable, __file__, "--trial", mode, "--project", str(ws.project),
                       "--epochs", str(args.epochs)]
            if args.batch_size:
                command += ["--batch-size", str(args.batch_size)]
            result = benchlib.trial(command, ws.project)
            results[mode].append(result)
            bench.say(f"  {mode:<8}: {result['seconds']:7.2f} s (model.fit "
                      f"{result['fit_seconds']:.2f} s)")
        medians = {mode: benchlib.median(r["seconds"] for r in results[mode])
                   for mode in BARE_MODES}
        fastest = min(medians, key=medians.get)
        bench.say(f"bare model.fit as TensorFlow starts {medians['bare']:.2f} s, with the "
                  f"stage's seeds and op determinism {medians['bare-det']:.2f} s: the baseline "
                  f"is `{fastest}` (ratio without/with determinism "
                  f"{medians['bare'] / medians['bare-det']:.3f})")
        bare = medians[fastest]
        stage = benchlib.median(r["seconds"] for r in results["stage"])
        bare_fit = benchlib.median(r["fit_seconds"] for r in results[fastest])
        stage_fit = benchlib.median(r["fit_seconds"] for r in results["stage"])
        outside_fit = (stage - stage_fit) - (bare - bare_fit)
        bench.say(f"median of {args.repeats}: bare {bare:.2f} s, stage {stage:.2f} s; inside "
                  f"model.fit {bare_fit:.2f} s vs {stage_fit:.2f} s (callbacks, determinism); "
                  f"outside model.fit the stage adds {outside_fit:.2f} s (MLflow import, run, "
                  "params, model save and logging, curves)")
        per_epoch_bare = bare_fit / args.epochs
        per_epoch_stage = stage_fit / args.epochs
        projected = ((outside_fit + (bare - bare_fit) + default_epochs * per_epoch_stage)
                     / ((bare - bare_fit) + default_epochs * per_epoch_bare))
        bench.say(f"projection (not a measurement): with the config's {default_epochs} epochs "
                  f"the same fixed and per-epoch costs give a ratio of {projected:.3f}")
        bench.say("baseline: the faster bare model.fit of this run (with or without op "
                  "determinism); ratio = stage time / bare time (medians)")
        bench.figure("bare_seconds", bare)
        bench.figure("stage_seconds", stage)
        bench.figure("projected_ratio_15_epochs", projected)
        bench.check(f"train stage / bare model.fit wall time ({args.epochs} epochs)",
                    stage / bare, "<=", 1.10, fmt="{:.3f}")
    bench.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
