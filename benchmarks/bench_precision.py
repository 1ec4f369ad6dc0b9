"""Mixed-precision benchmark: ``train.mixed_precision`` bfloat16 against float32 (``off``), for
training and for inference, and what ``auto`` picks on this machine.

Each trial runs in a fresh process (Keras's dtype policy is process-wide) with TensorFlow's
default threads: it builds a configuration's network with ``model.build_from_config``, fits
one warm-up epoch, then times ``--epochs`` epochs of ``model.fit`` on ``--images`` random
100x100 grayscale images (batch of the configuration) and ``model.predict`` of the same images
(batch 256). Random pixels time the arithmetic as well as real ones: no dataset is needed.
Trials alternate off/bfloat16/bfloat16/off/... so the drift of a shared machine falls on both.

Baseline: float32 (``off``) in the same run; ratio = bfloat16 time / float32 time.
Targets: on a CPU whose flags name bfloat16 units (AVX512-BF16 or AMX), where ``auto`` picks
bfloat16, it must be faster for both training and inference (ratio < 1.0); on any other CPU
``auto`` stays float32 and there is nothing to check.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import benchlib

CONFIGS = {"paper": "table1_e15_b64_cce", "fast": "fast"}
MODES = ("off", "bfloat16")


def run_trial(experiment: str, mode: str, images: int, epochs: int) -> dict:
    """Fit and predict timings of one configuration in one precision, in this process."""
    import numpy as np

    from leukemia_cnn.config import load_config
    from leukemia_cnn.modeling.model import build_from_config, set_seeds

    cfg = load_config([f"experiment={experiment}", f"train.mixed_precision={mode}"],
                      root=benchlib.REPO)
    size = cfg.preprocess.image_size
    rng = np.random.default_rng(0)
    x = rng.random((images, size, size, 1), dtype=np.float32)
    y = np.eye(len(cfg.data.classes), dtype=np.float32)[rng.integers(0, len(cfg.data.classes),
                                                                     images)]
    set_seeds(1)
    batch = cfg.train.batch_size
    model = build_from_config(cfg, (size, size, 1), steps_per_epoch=-(-images // batch))
    model.fit(x, y, epochs=1, batch_size=batch, verbose=0)  # graph tracing, oneDNN warm-up
    started = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0)
    fit_seconds = (time.perf_counter() - started) / epochs
    model.predict(x[:256], batch_size=256, verbose=0)
    started = time.perf_counter()
    model.predict(x, batch_size=256, verbose=0)
    predict_seconds = time.perf_counter() - started
    return {"epoch_seconds": fit_seconds, "predict_seconds": predict_seconds,
            "compute_dtype": str(model.layers[0].compute_dtype)}


def main(argv: list[str] | None = None) -> int:
    cli = benchlib.parser(__doc__, workspace=False)
    cli.add_argument("--images", type=int, default=1024, help="random images per trial")
    cli.add_argument("--epochs", type=int, default=2, help="timed epochs per trial")
    cli.add_argument("--repeats", type=int, default=2, help="trials of each precision")
    cli.add_argument("--configs", default="paper,fast",
                     help=f"comma-separated, from {sorted(CONFIGS)}")
    cli.add_argument("--trial", nargs=2, metavar=("EXPERIMENT", "MODE"), help=argparse.SUPPRESS)
    args = cli.parse_args(argv)
    if args.trial:
        result = run_trial(args.trial[0], args.trial[1], args.images, args.epochs)
        print("TRIAL " + json.dumps(result), flush=True)
        return 0

    from leukemia_cnn.modeling.model import cpu_has_bfloat16, resolve_mixed_precision

    bench = benchlib.Bench("precision", "train.mixed_precision: bfloat16 vs float32")
    auto = resolve_mixed_precision("auto")
    bench.say(f"CPU bfloat16 units (avx512_bf16 / amx_bf16 in /proc/cpuinfo): "
              f"{'yes' if cpu_has_bfloat16() else 'no'}; train.mixed_precision=auto -> {auto}")
    bench.say(f"{args.images:,} random 100x100 grayscale images; {args.epochs} timed epochs after "
              f"a warm-up epoch; predict batch 256; TensorFlow's default threads")
    order = (list(MODES) + list(reversed(MODES))) * args.repeats
    order = order[:2 * args.repeats]
    ratios = {}
    for name in args.configs.split(","):
        experiment = CONFIGS[name]
        results: dict[str, list[dict]] = {mode: [] for mode in MODES}
        for mode in order:
            command = [sys.executable, __file__, "--trial", experiment, mode,
                       "--images", str(args.images), "--epochs", str(args.epochs)]
            result = benchlib.trial(command, benchlib.REPO)
            results[mode].append(result)
            bench.say(f"  {name:<6} {mode:<9}: {result['epoch_seconds']:6.2f} s per epoch, "
                      f"predict {args.images / result['predict_seconds']:6.0f} images/s "
                      f"(compute dtype {result['compute_dtype']})")
        fit = {m: benchlib.median(r["epoch_seconds"] for r in results[m]) for m in MODES}
        pred = {m: benchlib.median(r["predict_seconds"] for r in results[m]) for m in MODES}
        ratios[name] = (fit["bfloat16"] / fit["off"], pred["bfloat16"] / pred["off"])
        bench.say(f"{name} ({experiment}), median of {args.repeats}: epoch {fit['off']:.2f} s "
                  f"float32 vs {fit['bfloat16']:.2f} s bfloat16 (ratio {ratios[name][0]:.2f}); "
                  f"predict {pred['off']:.2f} s vs {pred['bfloat16']:.2f} s "
                  f"(ratio {ratios[name][1]:.2f})")
        bench.figure(f"{name}_fit_ratio", ratios[name][0])
        bench.figure(f"{name}_predict_ratio", ratios[name][1])
    bench.say("baseline: float32 (train.mixed_precision=off) in this run; "
              "ratio = bfloat16 time / float32 time")
    if auto == "bfloat16":
        for name, (fit_ratio, predict_ratio) in ratios.items():
            bench.check(f"{name}: bfloat16 / float32 training time (auto picks bfloat16 here)",
                        fit_ratio, "<=", 1.0)
            bench.check(f"{name}: bfloat16 / float32 prediction time (auto picks bfloat16 here)",
                        predict_ratio, "<=", 1.0)
    else:
        bench.say("auto stays float32 on this CPU: nothing to check (bfloat16 is emulated here)")
    bench.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
