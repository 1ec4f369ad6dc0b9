"""Memory benchmark: peak resident memory of every pipeline stage on the full-size dataset.

The workspace writes ``leukemia-cnn data synth --scale 1.0`` (3,256 JPEGs) into a temporary
project copy and runs each stage's ``cmd`` from dvc.yaml in dvc.yaml order, each in a
wrapper process that reads the peak RSS of the stage's largest process from the kernel
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the largest single process, not the sum of a
stage's worker processes; DVC's own process is not counted). Training runs
``--pipeline-epochs`` epochs (default 2, not the config's 15, to save time).

Baseline in the same run: a bare ``model.fit`` of the same model, arrays, epochs and batch
(benchmarks/bench_train.py's bare trial) in the same wrapper.

Target: the train stage under 3 GiB.
"""

from __future__ import annotations

import sys
from pathlib import Path

import benchlib

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    cli = benchlib.parser(__doc__)
    cli.add_argument("--baseline-epochs", type=int, default=None,
                     help="epochs of the bare model.fit baseline (default: --pipeline-epochs)")
    args = cli.parse_args(argv)
    bench = benchlib.Bench("memory", "peak RSS per pipeline stage, full-size dataset")
    with benchlib.workspace_from_args(args, bench) as ws:
        record = ws.record
        bench.say(f"dataset: {record['n_images']:,} synthetic JPEGs (scale {record['scale']}); "
                  f"train stage with {record['pipeline_epochs']} epochs (config default 15; "
                  f"fewer here to save time); workspace "
                  f"built {record['built']}")
        bench.say(f"  {'step':<44} {'wall s':>8} {'peak RSS MiB':>13}")
        synth = record["synth"]
        bench.say(f"  {'data synth (not a stage)':<44} {synth['seconds']:8.1f} "
                  f"{synth['peak_rss_bytes'] / benchlib.MIB:13.0f}")
        for name, stage in record["stages"].items():
            bench.say(f"  {name + ': ' + stage['command']:<44} {stage['seconds']:8.1f} "
                      f"{stage['peak_rss_bytes'] / benchlib.MIB:13.0f}")
            bench.figure(f"{name}_peak_rss_mib", stage["peak_rss_bytes"] / benchlib.MIB)
        baseline_epochs = args.baseline_epochs or record["pipeline_epochs"]
        command = (f"{sys.executable} {HERE / 'bench_train.py'} --trial bare --project "
                   f"{ws.project} --epochs {baseline_epochs}")
        bare = benchlib.run_measured(command, ws.project)
        train = record["stages"]["train"]
        bench.say(f"  {f'baseline: bare model.fit, {baseline_epochs} ep.':<44} {bare['seconds']:8.1f} "
                  f"{bare['peak_rss_bytes'] / benchlib.MIB:13.0f}")
        bench.say(f"ratio train stage / bare model.fit peak RSS: "
                  f"{train['peak_rss_bytes'] / bare['peak_rss_bytes']:.2f}")
        bench.check("train stage peak RSS", train["peak_rss_bytes"] / benchlib.GIB, "<=", 3.0,
                    "GiB")
    bench.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
