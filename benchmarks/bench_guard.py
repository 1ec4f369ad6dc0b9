"""Guard benchmark: what the out-of-distribution guard adds to ``predict``'s time.

The paper's network (``conf/`` defaults: grayscale 100x100) is fitted for ``--epochs`` epochs
on built-in synthetic smear fields and its guard (``train.guard_method``, default
``mahalanobis+input``) on the same train images, thresholded on a val set in float32 and in bfloat16 as the
train stage does; nothing is read from
the project's data. Then the served model (:class:`leukemia_cnn.serving.pyfunc.LeukemiaCNNModel`,
loaded through its own ``load_context`` as MLflow does) classifies ``--images`` JPEG smears:

- from bytes: ``predict`` on a DataFrame of the JPEG bytes (decode, grayscale, resize, forward
  pass, guard): what ``leukemia-cnn predict`` and the served model run per batch;
- from arrays: ``predict_arrays`` on the preprocessed images (forward pass and guard only):
  the strictest view of the guard's share.

Each path runs in the precision the model serves in (``auto``: bfloat16 where the CPU has the
units) and, where that is not float32, again in float32, with the guard and without it (the
same model loaded without ``guard.npz``), after an untimed warm-up; timed runs alternate
without/with/with/without so the drift of a shared machine falls on both. Wall time is the
target; the process's CPU time (all its threads) is printed beside it, as it moves less with
other users' load. Baseline: the same model without the guard, in the same run.
Target: with / without <= 1.10 on the bytes path (``predict``'s time on 1,000 images).
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import benchlib


def synthetic_jpegs(count: int, seed: int) -> tuple[list[bytes], list[int]]:
    """``count`` built-in synthetic smear fields (224x224 JPEG bytes), classes in turn."""
    from leukemia_cnn.data.synthetic import generate_image, image_rng

    classes = ("Benign", "Early", "Pre", "Pro")
    images, labels = [], []
    for number in range(count):
        label = number % len(classes)
        buffer = io.BytesIO()
        generate_image(image_rng(seed, label, number), classes[label], 224).save(
            buffer, "JPEG", quality=92)
        images.append(buffer.getvalue())
        labels.append(label)
    return images, labels


def served_models(workdir: Path, n_train: int, epochs: int):
    """The served wrapper with and without the guard, and the config it was built from."""
    import numpy as np

    from leukemia_cnn.config import load_config
    from leukemia_cnn.data.imaging import load_model_input
    from leukemia_cnn.modeling.guard import GUARD_FILE, fit_for_training
    from leukemia_cnn.modeling.train import fit
    from leukemia_cnn.serving.pyfunc import LeukemiaCNNModel

    cfg = load_config([f"train.epochs={epochs}", "train.verbose=0"], root=benchlib.REPO)
    size, mode = cfg.preprocess.image_size, cfg.preprocess.color_mode
    arrays = {}
    for split, (count, seed) in {"train": (n_train, 1), "val": (n_train // 4, 2)}.items():
        images, labels = synthetic_jpegs(count, seed)
        arrays[split] = (np.stack([load_model_input(b, size, mode) for b in images]),
                         np.array(labels))
    model, _, _ = fit(cfg, *arrays["train"], *arrays["val"])
    # as the train stage: thresholded on val in float32 and in bfloat16
    guard, _ = fit_for_training(cfg, model, *arrays["train"], arrays["val"][0], workdir)
    model.save(workdir / "cnn.keras")
    preprocessing = {"classes": list(cfg.data.classes), "image_size": size, "color_mode": mode}
    wrappers = {}
    for name, extra in (("without", {}), ("with", {"guard": str(workdir / GUARD_FILE)})):
        wrapper = LeukemiaCNNModel()
        wrapper.load_context(SimpleNamespace(
            artifacts={"keras_model": str(workdir / "cnn.keras"), **extra},
            model_config={"preprocessing": preprocessing}))  # as log_model logs it
        wrappers[name] = wrapper
    return wrappers, guard


def timed(fn) -> tuple[float, float]:
    """Wall time and this process's CPU time (all threads) of ``fn()``."""
    started, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - started, time.process_time() - cpu


def time_paths(bench, wrappers, paths, args, precision: str) -> dict[str, float]:
    """Time each path with and without the guard in ``precision``; print; ratio per path."""
    ratios = {}
    for path, call in paths.items():
        for wrapper in wrappers.values():
            call(wrapper)  # warm-up: graph tracing, oneDNN kernels
        times: dict[str, list[tuple[float, float]]] = {"without": [], "with": []}
        for index in range(2 * args.repeats):
            name = ("without", "with", "with", "without")[index % 4]
            times[name].append(timed(lambda n=name, c=call: c(wrappers[n])))
        seconds = {name: benchlib.median(t[0] for t in values) for name, values in times.items()}
        cpu = {name: benchlib.median(t[1] for t in values) for name, values in times.items()}
        ratios[path] = seconds["with"] / seconds["without"]
        bench.say(f"  {precision:<8} {path:<6}: without guard {seconds['without']:.2f} s "
                  f"({args.images / seconds['without']:.0f} images/s), with guard "
                  f"{seconds['with']:.2f} s ({args.images / seconds['with']:.0f} images/s); "
                  f"ratio {ratios[path]:.3f}; CPU time {cpu['without']:.2f} s vs "
                  f"{cpu['with']:.2f} s, ratio {cpu['with'] / cpu['without']:.3f}")
        key = f"{path}_{precision}"
        bench.figure(f"{key}_cpu_ratio", cpu["with"] / cpu["without"])
        bench.figure(f"{key}_seconds_without", seconds["without"])
        bench.figure(f"{key}_seconds_with", seconds["with"])
        bench.figure(f"{key}_ratio", ratios[path])
    return ratios


def main(argv: list[str] | None = None) -> int:
    cli = benchlib.parser(__doc__, workspace=False)
    cli.add_argument("--images", type=int, default=1000, help="images predicted per timed run")
    cli.add_argument("--train-images", type=int, default=400,
                     help="synthetic images the network and its guard are fitted on")
    cli.add_argument("--epochs", type=int, default=2, help="training epochs of the network")
    cli.add_argument("--repeats", type=int, default=5, help="timed runs of each variant")
    args = cli.parse_args(argv)

    import pandas as pd

    bench = benchlib.Bench("guard", "predict with and without the out-of-distribution guard")
    with tempfile.TemporaryDirectory(prefix="leukemia-bench-guard-") as work:
        wrappers, guard = served_models(Path(work), args.train_images, args.epochs)
        images, _ = synthetic_jpegs(args.images, seed=3)
        frame = pd.DataFrame({"image": images})
        arrays = wrappers["with"].preprocess(images)
        half = guard.in_precision("bfloat16")
        bench.say(f"paper network (100x100 grayscale), {args.epochs} epochs on "
                  f"{args.train_images} synthetic smears; guard {guard.method}, threshold "
                  f"{guard.threshold:.4g} (float32), {half.threshold:.4g} (bfloat16), accepts "
                  f"{guard.val_accept_rate:.1%}, {half.val_accept_rate:.1%} of val")
        bench.say(f"{args.images:,} synthetic 224x224 JPEG smears; median of {args.repeats} runs")
        paths = {"bytes": lambda w: w.predict(None, frame),
                 "arrays": lambda w: w.predict_arrays(arrays)}
        served = wrappers["with"].precision
        ratios = time_paths(bench, wrappers, paths, args, served)
        if served != "float32":  # what the guard costs where the forward pass is slower
            for wrapper in wrappers.values():
                wrapper.set_precision("float32")
            time_paths(bench, wrappers, paths, args, "float32")
            for wrapper in wrappers.values():
                wrapper.set_precision(served)
        flagged = 1.0 - float(wrappers["with"].predict_arrays(arrays)["in_distribution"].mean())
        bench.say(f"the guard flagged {flagged:.1%} of the {args.images:,} smears "
                  "(fresh images of the training distribution)")
    bench.say("baseline: the same model without its guard, in this run; ratio = with / without")
    bench.check(f"predict from JPEG bytes, {args.images:,} images, served precision "
                f"{served}: with guard / without",
                ratios["bytes"], "<=", 1.10, fmt="{:.3f}")
    bench.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
