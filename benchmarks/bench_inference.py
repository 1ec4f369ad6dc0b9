"""Inference benchmark: the registered MLflow model vs bare Keras, and JPEG files end to end.

On the preprocessed arrays of every split (the preprocess stage's output):

- bare: ``keras.saving.load_model(models/cnn.keras).predict(x, batch_size=256)``;
- registered pyfunc: ``mlflow.pyfunc.load_model("models:/leukemia-cnn/<version>")``.
  Its signature is one binary ``image`` column, so ``PyFuncModel.predict`` refuses an array
  (MLflow's schema enforcement; shown below). The array path of the loaded model is
  ``unwrap_python_model().predict_arrays(x)`` (batch 256), which is what is timed;
- the registered pyfunc in each inference precision (``train.inference_precision``):
  ``set_precision("float32")`` and ``set_precision("bfloat16")`` on copies of the loaded
  wrapper, beside bare float32 ``predict``; plus, on the test split, how far the bfloat16
  probabilities are from float32's (max absolute difference, class and guard agreement, the
  guard using the threshold set on val in each precision).

From bytes and files (every JPEG of the dataset):

- registered pyfunc on a DataFrame of JPEG bytes (the serving path: its own decoding, serial);
- end to end from files: decode, grayscale, resize with ``preprocess.load_images`` (the
  preprocess stage's helper; PIL releases the GIL, so threads use both cores), then
  ``predict_arrays``; one decoding thread (baseline) vs one per core.

Each path gets an untimed warm-up call (graph tracing); timed runs alternate between paths.
Targets (2 cores): registered pyfunc (in the precision ``auto`` picks here) / bare throughput
>= 0.9 and >= 1,000 images/s on arrays; bfloat16 probabilities within
``precision.PROBABILITY_TOLERANCE`` of float32; >= 400 images/s from JPEG files end to end.
"""

from __future__ import annotations

import copy
import json
import time

import benchlib

BATCH = 256


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def precision_agreement(bench, in_precision: dict, x) -> float:
    """Print how the bfloat16 answers on ``x`` differ from float32's, each with the guard's
    threshold for its precision; return max |dp|."""
    import numpy as np

    full, half = (in_precision[name].predict_arrays(x) for name in ("float32", "bfloat16"))
    columns = [c for c in full.columns if c.startswith("p_")]
    worst = float(np.abs(full[columns].to_numpy() - half[columns].to_numpy()).max())
    thresholds = {name: in_precision[name].guard.threshold for name in in_precision}
    moved = np.abs(full["ood_score"] - half["ood_score"]).max() / thresholds["float32"]
    bench.say(f"bfloat16 vs float32 on the test split ({len(x):,} images): max |dp| "
              f"{worst:.4f}, class agreement "
              f"{(full['predicted_class'] == half['predicted_class']).mean():.3f}, guard "
              "acceptance agreement "
              f"{(full['in_distribution'] == half['in_distribution']).mean():.3f} (accepted "
              f"{full['in_distribution'].mean():.3f} in float32, threshold "
              f"{thresholds['float32']:.4g}; {half['in_distribution'].mean():.3f} in bfloat16, "
              f"threshold {thresholds['bfloat16']:.4g}; each set on val in its precision); max "
              f"|d ood_score| / threshold {moved:.4f}")
    return worst


def main(argv: list[str] | None = None) -> int:
    cli = benchlib.parser(__doc__)
    cli.add_argument("--repeats", type=int, default=3, help="timed runs of each path")
    cli.add_argument("--images", type=int, default=None,
                     help="use the first N images/JPEGs only (default: all)")
    args = cli.parse_args(argv)
    bench = benchlib.Bench("inference", "registered MLflow model vs bare Keras; JPEG files "
                                        "end to end")
    with benchlib.workspace_from_args(args, bench) as ws:
        import keras
        import mlflow
        import pandas as pd

        from leukemia_cnn.data.preprocess import load_images, n_workers

        mlflow.set_tracking_uri(ws.tracking_uri)
        mlflow.set_registry_uri(ws.tracking_uri)
        cfg = ws.params()
        registered = json.loads((ws.project / cfg.paths.reports_dir / "registered.json")
                                .read_text())
        uri = f"models:/{registered['registered_model']}/{registered['version']}"
        x, _ = ws.preprocessed()
        x = x[:args.images]
        n = len(x)
        files = ws.jpegs()[:args.images]
        encoded = pd.DataFrame({"image": [path.read_bytes() for path in files]})
        bench.say(f"{n:,} preprocessed images {x.shape[1:]} float32; {len(files):,} JPEGs "
                  f"({files[0].stat().st_size / 1024:.0f} KiB each, 224x224 RGB); registered "
                  f"model {uri}")

        bare = keras.saving.load_model(ws.project / cfg.paths.model_dir / "cnn.keras",
                                       compile=False)
        started = time.perf_counter()
        pyfunc = mlflow.pyfunc.load_model(uri)
        bench.say(f"mlflow.pyfunc.load_model({uri}) took {time.perf_counter() - started:.1f} s")
        inner = pyfunc.unwrap_python_model()
        try:
            pyfunc.predict(x[:8])
            bench.say("PyFuncModel.predict(array): accepted")
        except mlflow.exceptions.MlflowException as exc:
            bench.say("PyFuncModel.predict(array) is refused by MLflow's schema enforcement "
                      f"(signature: {pyfunc.metadata.get_input_schema()}): "
                      f"{str(exc).splitlines()[0][:90]}...")

        from leukemia_cnn.modeling.precision import PROBABILITY_TOLERANCE, with_precision

        bare_half = with_precision(bare, "bfloat16")

        served = f"registered pyfunc, {inner.precision}"  # what auto picks on this CPU
        bench.say(f"train.inference_precision auto computes in {inner.precision} on this CPU")
        in_precision = {}
        for precision in ("float32", "bfloat16"):
            in_precision[precision] = copy.copy(inner)
            in_precision[precision].set_precision(precision)
        array_paths = {
            "bare keras model.predict": lambda: bare.predict(x, batch_size=BATCH, verbose=0),
            # What predict_arrays runs inside: the same forward pass without predict's set-up.
            "bare keras predict_on_batch (chunks)": lambda: [
                bare.predict_on_batch(x[i:i + BATCH]) for i in range(0, n, BATCH)],
            "bare keras model.predict, bfloat16 copy": lambda: bare_half.predict(
                x, batch_size=BATCH, verbose=0),
            "registered pyfunc, float32": lambda: in_precision["float32"].predict_arrays(x, BATCH),
            "registered pyfunc, bfloat16": lambda: in_precision["bfloat16"].predict_arrays(
                x, BATCH),
        }
        # Warm-up (untimed): trace each predict function once.
        bare.predict(x[:BATCH], batch_size=BATCH, verbose=0)
        bare.predict_on_batch(x[:BATCH])
        bare_half.predict(x[:BATCH], batch_size=BATCH, verbose=0)
        for wrapper in in_precision.values():
            wrapper.predict_arrays(x[:BATCH], BATCH)
        pyfunc.predict(encoded.iloc[:8])

        rates: dict[str, list[float]] = {name: [] for name in array_paths}
        names = list(array_paths)
        for repeat in range(args.repeats):
            for name in names if repeat % 2 == 0 else names[::-1]:
                rates[name].append(n / timed(array_paths[name]))
        bench.say(f"on preprocessed arrays ({n:,} images; median of {args.repeats} runs):")
        rate = {name: benchlib.median(values) for name, values in rates.items()}
        for name, value in rate.items():
            bench.say(f"  {name:<40} {value:8.0f} images/s  (runs: "
                      f"{', '.join(f'{v:.0f}' for v in rates[name])}; ratio to bare "
                      f"{value / rate['bare keras model.predict']:.3f})")

        workers = n_workers()
        size, mode = cfg.preprocess.image_size, cfg.preprocess.color_mode

        def end_to_end(threads: int) -> tuple[float, float]:
            started = time.perf_counter()
            arrays = load_images(files, size, mode, workers=threads, desc="decode")
            decoded = time.perf_counter()
            inner.predict_arrays(arrays, BATCH)
            return decoded - started, time.perf_counter() - decoded

        from_bytes, e2e = [], {1: [], workers: []}
        for repeat in range(args.repeats):
            from_bytes.append(len(files) / timed(lambda: pyfunc.predict(encoded)))
            for threads in ((1, workers) if repeat % 2 == 0 else (workers, 1)):
                e2e[threads].append(end_to_end(threads))
        bytes_rate = benchlib.median(from_bytes)
        bench.say(f"from JPEG bytes, registered pyfunc.predict(DataFrame 'image'): "
                  f"{bytes_rate:.0f} images/s (serial decoding inside the model)")
        e2e_rate = {}
        for threads, runs in e2e.items():
            decode = benchlib.median(r[0] for r in runs)
            predict = benchlib.median(r[1] for r in runs)
            e2e_rate[threads] = len(files) / benchlib.median(sum(r) for r in runs)
            bench.say(f"from JPEG files end to end, {threads} decoding thread(s): "
                      f"{e2e_rate[threads]:.0f} images/s (decode+resize {decode:.2f} s = "
                      f"{len(files) / decode:.0f} images/s, predict {predict:.2f} s)")
        on_batch = rate["bare keras predict_on_batch (chunks)"]
        registered_rate = rate[served]
        bench.say(f"registered pyfunc / bare predict_on_batch (the same calls without MLflow): "
                  f"{registered_rate / on_batch:.3f}")
        bench.say(f"baselines in this run: bare Keras predict on the same arrays; one decoding "
                  f"thread for files (speed-up with {workers}: "
                  f"{e2e_rate[workers] / e2e_rate[1]:.2f}x)")
        registered_rate = rate[served]
        bare_rate = rate["bare keras model.predict"]
        for key, value in (("bare", bare_rate), ("registered_pyfunc", registered_rate),
                           ("pyfunc_float32", rate["registered pyfunc, float32"]),
                           ("pyfunc_bfloat16", rate["registered pyfunc, bfloat16"]),
                           ("pyfunc_bytes", bytes_rate), ("end_to_end", e2e_rate[workers])):
            bench.figure(f"{key}_images_per_second", value)
        bench.check("registered pyfunc / bare keras throughput (arrays)",
                    registered_rate / bare_rate, ">=", 0.9, fmt="{:.3f}")
        half_ratio = (rate["registered pyfunc, bfloat16"]
                      / rate["bare keras model.predict, bfloat16 copy"])
        bench.say("registered pyfunc bfloat16 / bare bfloat16 copy (the pyfunc also runs the "
                  f"guard): {half_ratio:.3f}")
        x_test, _ = ws.preprocessed(("test",))
        bench.check("bfloat16 vs float32 max |probability difference| (test split)",
                    precision_agreement(bench, in_precision, x_test), "<=", PROBABILITY_TOLERANCE,
                    fmt="{:.4f}")
        bench.check("registered pyfunc throughput on preprocessed arrays", registered_rate,
                    ">=", 1000, "images/s", fmt="{:.0f}")
        bench.check(f"JPEG files end to end, {workers} threads", e2e_rate[workers], ">=", 400,
                    "images/s", fmt="{:.0f}")
    bench.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
