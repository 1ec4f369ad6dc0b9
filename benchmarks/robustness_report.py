"""Robustness to acquisition shift on real images: docs/results/robustness.md, from logged runs.

Two steps, both in a project (a scratch clone) whose pipeline has run on the data to report:

``guard``
    Refit a guard of another method on the workspace's trained network exactly as the train
    stage fits it (train split, val threshold at ``train.guard_accept_rate``; a ``shift``
    part learns from the val originals shifted with the training seed), score the robustness
    suite of ``conf/robustness/`` on the test split with it, and log the result as an MLflow run
    ``guard-<method>-<training run name>`` (params: the method, the training run, the data
    version; metrics and artifacts as the robustness stage logs them). The same network and
    suite as the training run's own robustness numbers, only the guard differs.

``page``
    Write the Markdown page from runs given as ``LABEL=RUN_ID`` (a training run of the
    pipeline, or a ``guard`` run): one summary row per run against the issue's targets, then
    every shift of the suite per run. Every number comes from those runs' metrics.

    python benchmarks/robustness_report.py guard --project ../scratch-eval --method mahalanobis+input+shift
    python benchmarks/robustness_report.py page --project ../scratch-eval \\
        --run "fast, grayscale | default=<run id>" --run "fast, grayscale | shift=<run id>" \\
        --output docs/results/robustness.md

A run's label is ``MODEL | GUARD``: the page shows one table per model with its guards side
by side (the network's accuracy is the same under each).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

TARGETS = (("clean accuracy", "robustness_clean_accuracy", ">=", None),
           ("lowest accuracy, moderate shifts", "robustness_moderate_min_accuracy", ">=", 0.95),
           ("worst accuracy on accepted", "robustness_worst_accuracy_accepted", ">=", 0.95),
           ("moderate, read right, accepted", "robustness_moderate_correct_accepted", ">=", 0.85),
           ("clean test flagged", "robustness_clean_flagged", "<=", 0.05),
           ("AUROC of ood_score, errors under shift", "robustness_ood_auroc", None, None),
           ("wrong answers accepted", "robustness_wrong_accepted", None, None),
           ("scikit-image photos flagged", "probe_photos_flagged", None, None),
           ("photos with a smear's histogram flagged", "probe_photos_smear_histogram_flagged",
            None, None),
           ("inverted smears flagged", "probe_inverted_flagged", None, None),
           ("red/blue-swapped smears flagged", "probe_stain_swap_flagged", None, None))


def refit_guard(project: Path, method: str, without: tuple[str, ...] = ()) -> dict:
    """Fit ``method`` on the project's network as the train stage does; score the suite; log
    the run. ``without``: shift families the shift part does not learn from (how it does on a
    kind of shift it never saw). Returns its id and summary."""
    import keras
    import mlflow

    from leukemia_cnn.config import load_params
    from leukemia_cnn.data import shifts
    from leukemia_cnn.data.acquisition import acquisition_of
    from leukemia_cnn.data.preprocess import load_split, scale_record
    from leukemia_cnn.modeling import guardshift, robustness
    from leukemia_cnn.modeling.guard import fit_guard, save_guard
    from leukemia_cnn.tracking.store import setup_mlflow

    cfg = load_params(project / "params.yaml")
    record = json.loads((project / cfg.paths.model_dir / "run.json").read_text())
    model = keras.saving.load_model(project / cfg.paths.model_dir / "cnn.keras", compile=False)
    pre = project / cfg.paths.preprocessed_dir
    (x_train, y_train, _), (x_val, y_val, val_paths), (_, y_test, test_paths) = (
        load_split(pre, s) for s in ("train", "val", "test"))
    start = time.perf_counter()
    for family in without:  # the shift part's learning set leaves these families out
        guardshift.LEARNING_RANGES.pop(family)
    cfg.train.guard_method = method
    learning = guardshift.learning_inputs(cfg, project, val_paths, y_val)
    guard = fit_guard(model, x_train, y_train, x_val, method, cfg.train.guard_accept_rate,
                      learning=learning)
    originals = shifts.load_originals(project / cfg.paths.raw_dir, test_paths)
    cases = robustness.suite_cases(cfg.robustness, cfg.preprocess.color_mode)
    scale = scale_record(pre)  # a rescale/stain_normalize model sees each image so first
    table, per_image = robustness.evaluate_suite(robustness.Scorer(model, guard), originals,
                                                 y_test, cases, cfg.robustness.seed,
                                                 cfg.preprocess,
                                                 acquisition=acquisition_of(scale))
    summary = robustness.summary_metrics(table, per_image)
    summary["robustness_seconds"] = round(time.perf_counter() - start, 2)
    summary.update(probe_flags(guard, model, originals, cfg.preprocess, acquisition_of(scale)))
    setup_mlflow(cfg, project)
    trained = mlflow.get_run(record["run_id"])
    name = (f"guard-{method.replace('+', '-')}-{trained.info.run_name}"
            + "".join(f"-without-{family}" for family in without))
    with mlflow.start_run(run_name=name) as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({"guard_method": method, "training_run_id": record["run_id"],
                           "guard_accept_rate": cfg.train.guard_accept_rate,
                           "learnt_without": ",".join(without) or "-"})
        mlflow.set_tags({"kind": "guard-comparison", "training_run": trained.info.run_name,
                         "data_version": trained.data.tags.get("data_version", ""),
                         "data_name": trained.data.tags.get("data_name", ""),
                         "data_source": trained.data.tags.get("data_source", "")})
        mlflow.log_metrics({**robustness.case_metrics(table),
                            **{k: float(v) for k, v in summary.items()},
                            "guard_val_accept_rate": guard.val_accept_rate,
                            "test_accuracy": float(trained.data.metrics.get("test_accuracy",
                                                                            float("nan")))})
        folder = robustness.write_outputs(table, summary, Path(tmp))
        mlflow.log_artifacts(str(folder), "robustness")
        mlflow.log_artifact(str(save_guard(guard, Path(tmp) / "guard.npz")))
        run_id = run.info.run_id
    print(f"robustness_report: logged run {name} ({run_id})", file=sys.stderr)
    return {"run_id": run_id, **summary}


COUNTS = {"robustness_wrong_accepted", "robustness_n_images", "wrong_accepted"}


PROBES = ("photos", "photos_smear_histogram", "inverted", "stain_swap")


def probe_flags(guard, model, originals, preprocess, acquisition=None) -> dict[str, float]:
    """The share the guard flags of images that are not smears like the training ones:
    scikit-image's sample photos (as they are, and with a test smear's colour histogram), the
    test smears inverted, and with red and blue swapped (``shifts.stain_shift``); each first
    through the model's ``acquisition`` (rescale, stain normalisation), as served."""
    import numpy as np
    from PIL import ImageOps

    from leukemia_cnn.data import shifts
    from leukemia_cnn.data.imaging import to_model_input
    from leukemia_cnn.modeling.guard import score_images

    samples = list(shifts.skimage_samples().values())
    sets = {"photos": samples,
            "photos_smear_histogram": [shifts.matched_to(sample, originals[i % len(originals)])
                                       for i, sample in enumerate(samples)],
            "inverted": [ImageOps.invert(image.convert("RGB")) for image in originals],
            "stain_swap": [shifts.stain_shift(image) for image in originals]}
    flags = {}
    for name, images in sets.items():
        x = np.stack([to_model_input(image if acquisition is None else acquisition.apply(image),
                                     preprocess.image_size, preprocess.color_mode)
                      for image in images])
        flags[f"probe_{name}_flagged"] = float(np.mean(~score_images(guard, model, x)
                                                       .in_distribution))
    return flags


def cell(value, count: bool = False) -> str:
    """A number as the page shows it: ``-`` when absent, a count whole, else 3 decimals."""
    if value is None or value != value:  # absent or NaN
        return "-"
    return f"{int(value)}" if count else f"{value:.3f}"


def verdict(value, op, target) -> str:
    if op is None or target is None or value is None or value != value:
        return ""
    met = value >= target if op == ">=" else value <= target
    return " (met)" if met else f" (**misses {target:g}**)"


def summary_table(runs: dict) -> list[str]:
    """One row per run (``model | guard``), one column per target."""
    header = ["model", "guard"] + [
        title + (f" ({op} {target:g})" if target is not None else "")
        for title, _, op, target in TARGETS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, run in runs.items():
        model, _, guard = label.partition("|")
        cells = [f"{cell(run['metrics'].get(key), key in COUNTS)}"
                 f"{verdict(run['metrics'].get(key), op, target)}"
                 for _, key, op, target in TARGETS]
        lines.append(f"| {model.strip()} | {guard.strip()} | " + " | ".join(cells) + " |")
    return lines


SEED_COLUMNS = (("clean accuracy", "robustness_clean_accuracy"),
                ("lowest accuracy, moderate shifts", "robustness_moderate_min_accuracy"),
                ("magnify 0.8x", "robustness/magnify_0.8/accuracy"),
                ("magnify 1.25x", "robustness/magnify_1.25/accuracy"),
                ("brightness 1.15x", "robustness/brightness_1.15/accuracy"),
                ("stain 0.05", "robustness/stain_0.05/accuracy"),
                ("grey photo", "robustness/grayscale_1/accuracy"),
                ("worst accuracy on accepted", "robustness_worst_accuracy_accepted"),
                ("val accuracy", "val_accuracy"))


def seeds_table(runs: dict) -> list[str]:
    """Mean and standard deviation over the seeds of each recipe: the runs labelled
    ``<recipe>, seed <n> | ...`` grouped by recipe (a run's own guard only: each network once)."""
    import numpy as np

    groups: dict[str, list[dict]] = {}
    for label, run in runs.items():
        model = label.partition("|")[0].strip()
        recipe, _, seed = model.rpartition(", seed ")
        if recipe and run["metrics"].get("val_accuracy") is not None:
            groups.setdefault(recipe, []).append(run["metrics"])
    header = ["recipe", "seeds", *(title for title, _ in SEED_COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for recipe, metrics in groups.items():
        cells = []
        for _, key in SEED_COLUMNS:
            values = np.array([m[key] for m in metrics if m.get(key) is not None
                               and m[key] == m[key]])
            cells.append("-" if values.size == 0 else
                         f"{values.mean():.3f}" + (f" ± {values.std(ddof=1):.3f}"
                                                   if values.size > 1 else "")
                         + (f" (n={values.size})" if values.size != len(metrics) else ""))
        lines.append(f"| {recipe} | {len(metrics)} | " + " | ".join(cells) + " |")
    return lines


def case_names(metrics: dict) -> list[str]:
    """The cases of a run's ``robustness/<case>/<stat>`` metrics, clean first, by family and
    strength."""
    cases = {key.split("/")[1] for key in metrics
             if key.startswith("robustness/") and key.count("/") == 2}

    def order(case: str):
        family, _, strength = case.rpartition("_")
        return (case != "clean", family or case, float(strength) if family else 0.0)

    return sorted(cases, key=order)


def model_table(guards: dict) -> list[str]:
    """One row per case: the network's accuracy, then for each guard of ``guards`` (label ->
    run) the share flagged, the accuracy on accepted images and the wrong answers accepted."""
    every: dict = {}
    for run in guards.values():  # a refit guard may have scored cases its training run did not
        every.update(run["metrics"])
    header = ["shift", "accuracy"] + [f"{label}: {stat}" for label in guards
                                      for stat in ("flagged", "accuracy accepted",
                                                   "wrong accepted")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for case in case_names(every):
        def stat(run, name, count=False, case=case):
            return cell(run["metrics"].get(f"robustness/{case}/{name}"), count)

        cells = [cell(every.get(f"robustness/{case}/accuracy"))]  # the network's, any guard
        for run in guards.values():
            cells += [stat(run, "flagged"), stat(run, "accuracy_accepted"),
                      stat(run, "wrong_accepted", True)]
        lines.append(f"| {case.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return lines


def load_runs(project: Path, entries: list[str]) -> dict:
    import mlflow

    from leukemia_cnn.config import load_params
    from leukemia_cnn.tracking.store import setup_mlflow

    setup_mlflow(load_params(project / "params.yaml"), project)
    runs = {}
    for entry in entries:
        label, _, run_id = entry.rpartition("=")
        run = mlflow.get_run(run_id)
        runs[label] = {"id": run_id, "name": run.info.run_name, "metrics": run.data.metrics,
                       "tags": run.data.tags, "params": run.data.params}
    return runs


def page(runs: dict, command: str, summary_only: frozenset = frozenset()) -> str:
    first = next(iter(runs.values()))
    data = (f"{first['tags'].get('data_name') or first['tags'].get('data_source', '?')} "
            f"(data.dvc md5 `{first['tags'].get('data_version', '?')}`)")
    models: dict[str, dict] = {}
    for label, run in runs.items():
        if label in summary_only:
            continue
        model, _, guard = label.partition("|")
        models.setdefault(model.strip(), {})[guard.strip() or "guard"] = run
    lines = ["# Robustness to acquisition shift", "",
             f"Data: {data}: the project's split (test split "
             f"{cell(first['metrics'].get('robustness_n_images'), True)} images); every number "
             "below is a metric of the MLflow run named in the last table. The suite and its "
             "columns: [../robustness.md](../robustness.md). Made by:", "", "```", command,
             "```", "", "## Against the issue's targets", "", *summary_table(runs), "",
             "## Over seeds (each network with its own guard; mean ± standard deviation)", "",
             *seeds_table(runs), ""]
    for model, guards in models.items():
        lines += [f"## {model}", "", *model_table(guards), ""]
    lines += ["## Runs", "", "| model | guard | MLflow run | id |", "|---|---|---|---|"]
    for label, run in runs.items():
        model, _, guard = label.partition("|")
        lines.append(f"| {model.strip()} | {guard.strip()} | `{run['name']}` | `{run['id']}` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = cli.add_subparsers(dest="command", required=True)
    guard = sub.add_parser("guard", help="refit a guard method on the trained network; log it")
    guard.add_argument("--project", required=True)
    guard.add_argument("--method", default="mahalanobis+input+shift")
    guard.add_argument("--without", action="append", default=[], metavar="FAMILY",
                       help="a shift family the shift part does not learn from (repeatable)")
    report = sub.add_parser("page", help="write the Markdown page from logged runs")
    report.add_argument("--project", required=True)
    report.add_argument("--run", action="append", required=True, metavar="LABEL=RUN_ID")
    report.add_argument("--output", required=True)
    report.add_argument("--intro", help="a Markdown file of text to put after the title")
    report.add_argument("--summary-run", action="append", default=[], metavar="LABEL=RUN_ID",
                        help="a run shown in the summary and seed tables only (more seeds)")
    args = cli.parse_args(argv)
    project = Path(args.project).resolve()
    if args.command == "guard":
        print(json.dumps(refit_guard(project, args.method, tuple(args.without)), indent=2))
        return 0
    from leukemia_cnn.fileio import write_text

    runs = load_runs(project, args.run + args.summary_run)
    summary_only = frozenset(entry.rpartition("=")[0] for entry in args.summary_run)
    command = "python benchmarks/robustness_report.py " + " ".join(
        a if " " not in a else f'"{a}"' for a in (argv or sys.argv[1:]))
    text = page(runs, command, summary_only)
    if args.intro:
        title, _, rest = text.partition("\n\n")
        text = f"{title}\n\n{Path(args.intro).read_text().strip()}\n\n{rest}"
    write_text(Path(args.output), text)
    print(f"robustness_report: wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
