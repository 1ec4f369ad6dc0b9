"""The out-of-distribution guard on a trained project: docs/results/guard.md.

Run it in a project (or a scratch clone) whose pipeline has run (``dvc repro``: the train
split, the model ``models/cnn.keras``, the raw test images). For each guard method it refits
the guard on the train split and its threshold on val (``train.guard_accept_rate``), exactly as
the train stage does, and measures on held-out images:

- the false-flag rate on the test split (every test image is in distribution);
- the detection rate (share flagged) on the test images re-stained, blurred and re-magnified
  (:mod:`leukemia_cnn.data.shifts`) and on scikit-image's sample images;
- the accuracy on the accepted test images beside the accuracy on all of them;

and, for the configured method, accuracy against coverage ordering the test images by
``ood_score`` and by the top probability. The report names the data (``data.dvc``'s md5 and
origin) and holds numbers only, no image.

    python benchmarks/guard_report.py --project ../scratch-guard --output docs/results/guard.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import yaml

METHODS = ("mahalanobis", "knn", "energy", "input", "mahalanobis+input", "knn+input",
           "energy+input")
COVERAGES = (1.0, 0.95, 0.9, 0.8, 0.7, 0.5)


def probe_sets(project: Path, cfg, test_paths) -> dict[str, np.ndarray]:
    """Preprocessed images of each probe: the shifted raw test images and the samples."""
    from leukemia_cnn.data import shifts
    from leukemia_cnn.data.imaging import open_image, to_model_input

    size, mode = cfg.preprocess.image_size, cfg.preprocess.color_mode
    raw = [open_image(project / cfg.paths.raw_dir / str(p)) for p in test_paths]
    prepare = lambda images: np.stack([to_model_input(i, size, mode) for i in images])  # noqa: E731
    probes = {f"test, {shift}": prepare([shifts.shifted(i, shift) for i in raw])
              for shift in shifts.SHIFTS + shifts.MILD_SHIFTS}
    samples = list(shifts.skimage_samples().values())
    probes["scikit-image samples"] = prepare(samples)
    # each sample given the colour histogram of a test smear (the i-th, in turn)
    probes["samples, smear histogram"] = prepare(
        [shifts.matched_to(sample, raw[i % len(raw)]) for i, sample in enumerate(samples)])
    return probes


def method_row(model, method: str, splits: dict, probes: dict, accept_rate: float) -> dict:
    from leukemia_cnn.modeling.guard import fit_guard

    (x_train, y_train), (x_val, _) = splits["train"], splits["val"]
    guard = fit_guard(model, x_train, y_train, x_val, method, accept_rate)
    return scored_row(method, guard, model, splits, probes)


def scored_row(label: str, guard, model, splits: dict, probes: dict) -> dict:
    """The report's row of ``guard`` with the network ``model``: rates on test and probes."""
    from leukemia_cnn.modeling.guard import score_images

    x_test, y_test = splits["test"]
    test = score_images(guard, model, x_test)
    correct = test.probabilities.argmax(axis=1) == y_test
    row = {"method": label, "threshold": guard.threshold, "val accepted": guard.val_accept_rate,
           "test false-flag": 1.0 - test.in_distribution.mean(),
           "acc, accepted": correct[test.in_distribution].mean(), "acc, all": correct.mean()}
    started = time.perf_counter()
    results = {"test": test}
    for name, x in probes.items():
        results[name] = score_images(guard, model, x)
        row[name] = 1.0 - results[name].in_distribution.mean()
    row["seconds"] = time.perf_counter() - started
    return row | {"_test": test, "_correct": correct, "_results": results, "_guard": guard}


def precision_rows(model, method: str, splits: dict, probes: dict,
                   accept_rate: float) -> list[dict]:
    """``method``'s rows with the network in float32 and in bfloat16, each with the threshold
    the train stage sets on val in that precision (the model's own, and the other one)."""
    from leukemia_cnn.modeling.guard import calibrate_precision, fit_guard
    from leukemia_cnn.modeling.precision import with_precision

    (x_train, y_train), (x_val, _) = splits["train"], splits["val"]
    fitted = fit_guard(model, x_train, y_train, x_val, method, accept_rate)
    other = "bfloat16" if fitted.precision == "float32" else "float32"
    calibrate_precision(fitted, model, x_val, other)
    return [scored_row(precision, fitted.in_precision(precision),
                       with_precision(model, precision), splits, probes)
            for precision in ("float32", "bfloat16")]


def precision_section(rows: list[dict], header: list[str], default: str) -> list[str]:
    """The default guard in float32 and in bfloat16, and where their verdicts differ."""
    full, half = rows
    differ, near, total, moved = 0, [], 0, []
    for name, result in full["_results"].items():
        other = half["_results"][name]
        changed = result.in_distribution != other.in_distribution
        differ += int(changed.sum())
        total += len(changed)
        near += list(np.abs(result.ood_score[changed] / full["threshold"] - 1.0))
        moved += list(np.abs(other.ood_score - result.ood_score) / full["threshold"])
    where = (f"; their float32 `ood_score` lies within {max(near):.1%} of the float32 "
             "threshold" if near else "")
    scales = "; ".join(f"{row['method']}: " + ", ".join(
        f"`{part}` {scale:.4g}" for part, scale in row["_guard"].scales.items()) for row in rows)
    return [
        f"## Served in bfloat16 (`{default}`)", "",
        "On a CPU with bfloat16 units the model serves in bfloat16 "
        "(`train.inference_precision=auto`), which moves every embedding a little; the train "
        "stage thresholds the guard on val computed in each precision, so that it accepts "
        "its share of val in either. The same guard, network in each precision:", "",
        "| precision | " + " | ".join(header[1:]) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join([row["method"], f"{row['threshold']:.4g}"]
                            + [f"{row[name]:.3f}" for name in header[2:]]) + " |"
          for row in rows],
        "",
        f"Verdicts differ between the two on {differ} of the {total:,} images scored (test "
        f"split and every probe above: {differ / total:.2%}){where}. The precision moves an "
        f"image's `ood_score` by {np.median(moved):.2%} of the threshold at the median and "
        f"{max(moved):.1%} at most. Each part's val score at the accept rate (its scale): "
        f"{scales}; the threshold is the val quantile of the largest scaled part.", "",
    ]


def coverage_table(row: dict) -> list[str]:
    from leukemia_cnn.modeling.selective import selective_accuracy

    test, correct = row["_test"], row["_correct"]
    by_score = selective_accuracy(correct, test.ood_score)
    by_confidence = selective_accuracy(correct, -test.probabilities.max(axis=1))
    lines = ["| coverage | accuracy, by ood_score | accuracy, by top probability |",
             "|---|---|---|"]
    for coverage in COVERAGES:
        k = max(1, int(round(coverage * len(correct))))
        lines.append(f"| {coverage:.0%} ({k}) | {by_score[k - 1]:.3f} | {by_confidence[k - 1]:.3f} |")
    return lines


def at(row: dict, coverage: float) -> tuple[float, float]:
    """Accuracy of the ``coverage`` share kept, by ood_score and by top probability."""
    from leukemia_cnn.modeling.selective import selective_accuracy

    test, correct = row["_test"], row["_correct"]
    k = max(1, int(round(coverage * len(correct))))
    return (selective_accuracy(correct, test.ood_score)[k - 1],
            selective_accuracy(correct, -test.probabilities.max(axis=1))[k - 1])


def reading(rows: list[dict], default: str, n_test: int) -> list[str]:
    """What the table says, in numbers taken from it."""
    by = {row["method"]: row for row in rows}
    chosen, inputs = by[default], by["input"]
    embedding = [m for m in ("mahalanobis", "knn", "energy") if m in by]
    best_stain = max(by[m]["test, stain"] for m in embedding)
    return [
        "## Reading",
        "",
        f"- The embedding scores alone ({', '.join(f'`{m}`' for m in embedding)}) flag at most "
        f"{best_stain:.0%} of the re-stained smears and at most "
        f"{max(by[m]['scikit-image samples'] for m in embedding):.0%} of the photos: the "
        "network's input is grayscale (and standardised per image in the `fast` recipe), so "
        "a stain or brightness change hardly reaches its embedding. The input statistics "
        f"(`input`) flag {inputs['test, stain']:.0%} of the re-stained, "
        f"{inputs['test, blur']:.0%} of the blurred and {inputs['test, rescale']:.0%} of the "
        "re-magnified smears.",
        f"- Photos given a smear's histogram are what the statistics barely see: `input` flags "
        f"{inputs['samples, smear histogram']:.0%} of them, `{default}` "
        f"{chosen['samples, smear histogram']:.0%}; its embedding part is there for content "
        f"that is not a smear. Its price: a test false-flag rate of "
        f"{chosen['test false-flag']:.1%} against {inputs['test false-flag']:.1%} "
        f"({round(chosen['test false-flag'] * n_test)} and "
        f"{round(inputs['test false-flag'] * n_test)} of {n_test} smears).",
        f"- Milder shifts are missed more often: `{default}` flags "
        f"{chosen['test, mild stain']:.0%} of the mildly re-stained, "
        f"{chosen['test, mild blur']:.0%} of the mildly blurred and "
        f"{chosen['test, mild rescale']:.0%} of the 1.4x enlarged smears.",
        f"- The guard is for unfamiliar images, not for the errors on familiar ones: keeping "
        f"the 90% most familiar test smears gives an accuracy of {at(chosen, 0.9)[0]:.3f}, "
        f"the 90% most confident {at(chosen, 0.9)[1]:.3f} (all: {chosen['acc, all']:.3f}).",
        "- One model, one split of one lab's images: the validation set that sets the "
        "threshold comes from the same slides, so images from another lab are likely to be "
        "flagged more often than these rates suggest, including those that should pass.",
        "",
    ]


def commit(folder: Path) -> str:
    """The short git commit of ``folder``'s repository (``-dirty`` with changes)."""
    import subprocess

    result = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=folder,
                            capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def report(project: Path, rows: list[dict], default: str, cfg, splits, probes, command,
           precisions: list[dict]) -> str:
    dvc = yaml.safe_load((project / "data.dvc").read_text())
    origin = dvc.get("meta", {}).get("data_origin", {})
    probe_names = list(probes)
    header = ["method", "threshold", "val accepted", "test false-flag", *probe_names,
              "acc, accepted", "acc, all"]
    lines = [
        "# The out-of-distribution guard on real images",
        "",
        f"Measured on **{origin.get('name', 'unknown data')}** ({origin.get('uri', '?')}; "
        f"data.dvc md5 `{dvc['outs'][0]['md5']}`, {dvc['outs'][0].get('nfiles', '?')} images), "
        f"project commit `{commit(project)}`, report script at `{commit(Path(__file__).parent)}`; "
        f"split {len(splits['train'][1])}/{len(splits['val'][1])}/{len(splits['test'][1])} "
        f"(train/val/test). Model: the project's `models/cnn.keras` after the commands below "
        f"(preprocess {cfg.preprocess.image_size}x{cfg.preprocess.image_size} "
        f"{cfg.preprocess.color_mode}). Each guard is fitted on train and thresholded on val to "
        f"accept {cfg.train.guard_accept_rate:.0%} of it (`train.guard_accept_rate`), "
        "as the train stage does. No image is in this report.",
        "",
        "```bash",
        "git clone <this repository> scratch && cd scratch && make install",
        "leukemia-cnn params data=kaggle experiment=fast",
        "leukemia-cnn data get --source ../shared/real-dev",
        "dvc repro",
        command,
        "```",
        "",
        "Shares flagged (detection rate) on images the guard should flag: the "
        f"{len(splits['test'][1])} test images re-stained (red and blue swapped, darkened), "
        "blurred (Gaussian, 2% of the width) and re-magnified (the central 40% enlarged 2.5x); "
        "the same, milder: a weaker, bluer stain (red x0.9, green x0.85), a blur of 0.7% of "
        "the width, a 1.4x enlargement; "
        f"and {probes['scikit-image samples'].shape[0]} scikit-image sample images, as they "
        "are and given the colour histogram of a test smear (a photo with a smear's "
        "brightness and contrast; `leukemia_cnn.data.shifts`). The test false-flag rate is "
        "the share of real test smears flagged. Accuracy (argmax, uncalibrated) on the "
        "accepted test images and on all.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [f"`{row['method']}`" + (" (default)" if row["method"] == default else ""),
                 f"{row['threshold']:.4g}"] + [f"{row[name]:.3f}" for name in header[2:]]
        lines.append("| " + " | ".join(cells) + " |")
    chosen = next(row for row in rows if row["method"] == default)
    lines += ["", f"## Accuracy against coverage (`{default}`, test split)", "",
              "The test images ordered from the most familiar (lowest `ood_score`) or from the "
              "most confident, and the accuracy of the share kept:", "",
              *coverage_table(chosen), "", *precision_section(precisions, header, default),
              *reading(rows, default, len(splits["test"][1]))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--project", required=True, help="a project whose `dvc repro` has run")
    cli.add_argument("--output", required=True, help="the Markdown report to write")
    args = cli.parse_args(argv)
    import keras

    from leukemia_cnn.config import load_params
    from leukemia_cnn.data.preprocess import load_split
    from leukemia_cnn.fileio import write_text

    project = Path(args.project).resolve()
    cfg = load_params(project / "params.yaml")
    model = keras.saving.load_model(project / cfg.paths.model_dir / "cnn.keras", compile=False)
    loaded = {s: load_split(project / cfg.paths.preprocessed_dir, s) for s in ("train", "val", "test")}
    splits = {s: (x, y) for s, (x, y, _) in loaded.items()}
    probes = probe_sets(project, cfg, loaded["test"][2])
    rows = []
    for method in METHODS:
        rows.append(method_row(model, method, splits, probes,
                               cfg.train.guard_accept_rate))
        print(f"guard_report: {method}: " + ", ".join(
            f"{k} {v:.3f}" for k, v in rows[-1].items() if not k.startswith("_")
            and k != "method"), file=sys.stderr)
    default = cfg.train.guard_method
    precisions = precision_rows(model, default, splits, probes,
                                cfg.train.guard_accept_rate)
    command = "python benchmarks/guard_report.py --project . --output docs/results/guard.md"
    text = report(project, rows, default, cfg, splits, probes, command, precisions)
    write_text(Path(args.output), text)
    print(f"guard_report: wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
