"""SLURM launcher overhead: the same four sweep jobs (two configurations times two seeds)
through ``hydra/launcher=slurm`` on a one-node SLURM cluster started here
(``leukemia_cnn.stack``: munged, slurmctld, slurmd; one core per job, so two at a time) and
through the local joblib launcher (``hydra/launcher=parallel``, two workers), timed in one run.

Both launches train the same tiny configuration on the same preprocessed splits of a temporary
copy of the project, log to its embedded MLflow store and register their models. The joblib
launch is the baseline; the ratio is SLURM's wall time over joblib's. With ``--rounds 2`` (the
default) the launches run joblib, SLURM, SLURM, joblib, so that a load that drifts during the
run weighs on both alike; the ratio is of the totals. Target: <= 1.25.
Needs Debian's slurm-wlm and munge (``.ci/run`` installs them).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

import benchlib

from leukemia_cnn.stack import slurm

TINY = ["preprocess.image_size=64", "features.pca.n_components=16", "model.filters=[16,32,32]",
        "model.kernel_sizes=[5,3,3]", "model.dense_units=64", "train.verbose=0"]
CONFIGS = "table1_e15_b64_cce,table1_e15_b32_cce"
LAUNCHERS = {
    "joblib": ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"],
    "slurm": ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1",
              "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=60"],
}
TARGET = 1.25


def build_project(workdir: Path, scale: float, bench: benchlib.Bench) -> Path:
    """A git + DVC copy of the project with synthetic data and its preprocessed splits."""
    project = benchlib.copy_project(workdir / "project")
    env = benchlib.clean_env()
    for command in (["git", "init", "-q"], ["git", "config", "user.email", "b@example.com"],
                    ["git", "config", "user.name", "bench"], ["leukemia-cnn", "params", *TINY],
                    ["leukemia-cnn", "data", "synth", "--scale", str(scale)],
                    ["git", "add", "-A"], ["git", "commit", "-qm", "bench"],
                    ["dvc", "repro", "preprocess"]):
        benchlib.sh(command, project, env)
    n_images = sum(1 for _ in (project / "data" / "raw").rglob("*.jpg"))
    bench.say(f"project: {n_images} synthetic images (scale {scale}), splits preprocessed at "
              "64x64")
    return project


def sweep(project: Path, launcher: str, epochs: int, env: dict, sweep_id: str) -> dict:
    """One launch of the four jobs; wall time and the jobs' own training times."""
    args = ["leukemia-cnn", "sweep", "-m", f"experiment={CONFIGS}", "seed=1,2", *TINY,
            f"train.epochs={epochs}", "sweep.tf_threads=1", f"sweep.id={sweep_id}",
            *LAUNCHERS[launcher]]
    started = time.perf_counter()
    result = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True,
                            timeout=3600)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{launcher} sweep failed:\n{result.stdout[-3000:]}\n"
                           f"{result.stderr[-3000:]}")
    statuses = [json.loads(p.read_text())
                for p in (project / "multirun" / sweep_id).rglob("status.json")]
    train = [s["train_seconds"] for s in statuses]
    return {"seconds": seconds, "jobs": len(statuses), "train_seconds": train}


def order(rounds: int) -> list[str]:
    """joblib, slurm; then slurm, joblib; ... (ABBA: a drifting load weighs on both alike)."""
    pairs = [("joblib", "slurm") if i % 2 == 0 else ("slurm", "joblib") for i in range(rounds)]
    return [launcher for pair in pairs for launcher in pair]


def launch_all(project: Path, cluster, rounds: int, epochs: int, bench) -> dict:
    """Every launch in ABBA order; ``{launcher: [result, ...]}``."""
    results: dict[str, list[dict]] = {"joblib": [], "slurm": []}
    for number, launcher in enumerate(order(rounds)):
        env = benchlib.clean_env(**(cluster.env if launcher == "slurm" else {}))
        r = sweep(project, launcher, epochs, env, f"bench-{launcher}-{number}")
        results[launcher].append(r)
        bench.say(f"{launcher:>6}: {r['jobs']} jobs in {r['seconds']:.1f} s wall; training "
                  f"inside the jobs {min(r['train_seconds']):.1f}-"
                  f"{max(r['train_seconds']):.1f} s each (load {benchlib.load_average()})")
    return results


def main(argv: list[str] | None = None) -> int:
    cli = benchlib.parser(__doc__.split("\n\n")[0], workspace=False)
    cli.add_argument("--scale", type=float, default=0.1, help="synthetic data size")
    cli.add_argument("--epochs", type=int, default=15, help="train.epochs of every job")
    cli.add_argument("--rounds", type=int, default=2,
                     help="pairs of launches (ABBA order); 1 = joblib then SLURM once")
    args = cli.parse_args(argv)
    bench = benchlib.Bench("slurm", "SLURM launcher vs local joblib launcher, same four jobs")
    missing = slurm.missing_binaries()
    if missing:
        bench.say(f"skipped: no {', '.join(missing)} (apt-get install slurm-wlm munge)")
        bench.finish(args.json)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
        workdir = Path(tmp)
        project = build_project(workdir, args.scale, bench)
        started = time.perf_counter()
        cluster = slurm.start_slurm(workdir / "slurm")
        bench.say(f"one-node SLURM cluster up in {time.perf_counter() - started:.1f} s "
                  f"(node {cluster.node}; not counted below)")
        try:
            results = launch_all(project, cluster, args.rounds, args.epochs, bench)
        finally:
            slurm.stop_slurm(cluster)
    totals = {k: sum(r["seconds"] for r in v) for k, v in results.items()}
    pairs = [s["seconds"] / j["seconds"] for s, j in zip(results["slurm"], results["joblib"],
                                                         strict=True)]
    ratio = totals["slurm"] / totals["joblib"]
    # Outside training: wall time minus the jobs' fit time over the two slots, i.e. start-up,
    # data, evaluation, logging and the launcher's own work (submission, polling).
    outside = {k: sum(r["seconds"] - sum(r["train_seconds"]) / 2 for r in v)
               for k, v in results.items()}
    for launcher, runs in results.items():
        fits = sorted(s for r in runs for s in r["train_seconds"])
        bench.say(f"{launcher:>6}: fit inside a job median {benchlib.median(fits):.1f} s; "
                  f"outside the fits {outside[launcher]:.1f} s over {len(runs)} launch(es)")
    bench.say(f"outside-the-fits ratio SLURM / joblib = {outside['slurm'] / outside['joblib']:.3f}"
              " (the launcher's own cost, with the fits' speed taken out)")
    bench.say(f"ratio SLURM / joblib wall time = {ratio:.3f} (totals {totals['slurm']:.1f} s / "
              f"{totals['joblib']:.1f} s over {args.rounds} launch(es) each; per pair "
              f"{', '.join(f'{r:.3f}' for r in pairs)})")
    bench.figure("ratio", ratio)
    bench.figure("seconds", totals)
    bench.check("SLURM launcher wall time / joblib launcher, same 4 jobs", ratio, "<=", TARGET,
                fmt="{:.3f}")
    bench.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
