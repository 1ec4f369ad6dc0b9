"""Inference benchmark: the registered MLflow model vs bare Keras, and JPEG files end to end.

On the preprocessed arrays of every split (the preprocess stage's output):

- bare: ``keras.saving.load_model(models/cnn.keras).predict(x, batch_size=256)``;
- registered pyfunc: ``mlflow.pyfunc.load_model("models:/leukemia-cnn/<version>")``.
  Its signature is one binary ``image`` column, so ``PyFuncModel.predict`` refuses an array
  (MLflow's schema enforcement; shown below). The array path of the loaded model is
  ``unwrap_python_model().predict_arrays(x)`` (batch 256), which is what is timed;
- Keras flavour via MLflow: the same ``cnn.keras`` logged once with ``mlflow.keras.log_model``
  (tensor signature) and loaded with ``mlflow.pyfunc.load_model`` (``predict(x)``, schema
  enforced; Keras's default batch 32) and with ``mlflow.keras.load_model``.

From bytes and files (every JPEG of the dataset):

- registered pyfunc on a DataFrame of JPEG bytes (the serving path: its own decoding, serial);
- end to end from files: decode, grayscale, resize with ``preprocess.load_images`` (the
  preprocess stage's helper; PIL releases the GIL, so threads use both cores), then
  ``predict_arrays``; one decoding thread (baseline) vs one per core.

Each path gets an untimed warm-up call (graph tracing); timed runs alternate between paths.
Targets (2 cores): registered pyfunc / bare throughput >= 0.9 and >= 1,000 images/s on
arrays; >= 400 images/s from JPEG files end to end.
"""

from __future__ import annotations

import contextlib
import io
import json
import time

import benchlib

BATCH = 256


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def quiet(fn, *args):
    """Call ``fn`` without its Keras progress bar (the Keras flavour's pyfunc shows one)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


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
        from mlflow.models import infer_signature

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

        mlflow.set_experiment("benchmark-inference")
        with mlflow.start_run(run_name="keras-flavour-copy-of-registered-model"):
            sample = x[:4]
            info = mlflow.keras.log_model(bare, name="keras_model",
                                          signature=infer_signature(sample, bare.predict(
                                              sample, verbose=0)))
        keras_pyfunc = mlflow.pyfunc.load_model(info.model_uri)
        keras_flavour = mlflow.keras.load_model(info.model_uri)

        array_paths = {
            "bare keras model.predict": lambda: bare.predict(x, batch_size=BATCH, verbose=0),
            # What predict_arrays runs inside: the same forward pass without predict's set-up.
            "bare keras predict_on_batch (chunks)": lambda: [
                bare.predict_on_batch(x[i:i + BATCH]) for i in range(0, n, BATCH)],
            "registered pyfunc (predict_arrays)": lambda: inner.predict_arrays(x, BATCH),
            "keras flavour, pyfunc.predict": lambda: quiet(keras_pyfunc.predict, x),
            "keras flavour, mlflow.keras.load_model": lambda: keras_flavour.predict(
                x, batch_size=BATCH, verbose=0),
        }
        # Warm-up (untimed): trace each predict function once.
        bare.predict(x[:BATCH], batch_size=BATCH, verbose=0)
        bare.predict_on_batch(x[:BATCH])
        inner.predict_arrays(x[:BATCH], BATCH)
        quiet(keras_pyfunc.predict, x[:BATCH])
        keras_flavour.predict(x[:BATCH], batch_size=BATCH, verbose=0)
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
        size, mode = int(cfg.preprocess.image_size), str(cfg.preprocess.color_mode)

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
        bench.say(f"registered pyfunc / bare predict_on_batch (the same calls without MLflow): "
                  f"{rate['registered pyfunc (predict_arrays)'] / on_batch:.3f}")
        bench.say(f"baselines in this run: bare Keras predict on the same arrays; one decoding "
                  f"thread for files (speed-up with {workers}: "
                  f"{e2e_rate[workers] / e2e_rate[1]:.2f}x)")
        registered_rate = rate["registered pyfunc (predict_arrays)"]
        bare_rate = rate["bare keras model.predict"]
        for key, value in (("bare", bare_rate), ("registered_pyfunc", registered_rate),
                           ("keras_flavour_pyfunc", rate["keras flavour, pyfunc.predict"]),
                           ("pyfunc_bytes", bytes_rate), ("end_to_end", e2e_rate[workers])):
            bench.figure(f"{key}_images_per_second", value)
        bench.check("registered pyfunc / bare keras throughput (arrays)",
                    registered_rate / bare_rate, ">=", 0.9, fmt="{:.3f}")
        bench.check("keras-flavour pyfunc.predict / bare keras throughput (arrays)",
                    rate["keras flavour, pyfunc.predict"] / bare_rate, ">=", 0.9, fmt="{:.3f}")
        bench.check("registered pyfunc throughput on preprocessed arrays", registered_rate,
                    ">=", 1000, "images/s", fmt="{:.0f}")
        bench.check(f"JPEG files end to end, {workers} threads", e2e_rate[workers], ">=", 400,
                    "images/s", fmt="{:.0f}")
    bench.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
