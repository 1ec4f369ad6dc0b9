"""What the benchmarks share: the machine's load, verdicts against the targets, and a
workspace (a copy of the project in a temporary folder with its own synthetic data, MLflow
store and pipeline outputs), so that no benchmark touches the repository's data/, models/ or
mlflow.db.

The machine is shared: every benchmark prints the load average when it starts and ends, and
the figures are only comparable between runs with a similar load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from leukemia_cnn import devtools

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Written by build_workspace: how the workspace was made and each stage's time and memory.
WORKSPACE_RECORD = "benchmark-workspace.json"
# Runs a command and writes the peak resident memory of its largest process (ru_maxrss of
# the waited-for children, in KiB on Linux) to the file named by the first argument.
PEAK_RSS_WRAPPER = """\
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[2], shell=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as handle:
    json.dump({"returncode": code, "seconds": time.perf_counter() - start,
               "peak_rss_bytes": usage.ru_maxrss * 1024}, handle)
sys.exit(code)
"""
GIB = 1024**3
MIB = 1024**2


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``os.getloadavg`` reports them."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Bench:
    """One benchmark's report: a header with the load, lines, verdicts, and the load at the end.

    ``check`` prints ``PASS`` or ``MISS`` against a target and keeps the verdict; ``finish``
    prints the load average again and, when asked, writes everything as JSON for run_all.py.
    """

    def __init__(self, name: str, title: str):
        self.name, self.title = name, title
        self.started = time.perf_counter()
        self.load_start = load_average()
        self.checks: list[dict] = []
        self.figures: dict[str, object] = {}
        print(f"=== {name}: {title}", flush=True)
        print(f"started {now()} on {platform.node()} ({os.cpu_count()} CPUs, Python "
              f"{platform.python_version()})")
        print(f"load average (1/5/15 min) at start: {self.load_start}  [shared machine: other "
              "users' jobs run on the same cores, so figures vary with the load]", flush=True)

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def figure(self, key: str, value) -> None:
        """Keep a number for the JSON summary (not printed)."""
        self.figures[key] = value

    def check(self, what: str, value: float, op: str, limit: float, unit: str = "",
              fmt: str = "{:.2f}") -> bool:
        """Compare a measured ``value`` with its target (``op`` is ``<=`` or ``>=``)."""
        ok = value <= limit if op == "<=" else value >= limit
        shown = f"{fmt.format(value)}{(' ' + unit) if unit else ''}"
        target = f"{op} {fmt.format(limit)}{(' ' + unit) if unit else ''}"
        print(f"TARGET {what}: {shown} (target {target}) -> {'PASS' if ok else 'MISS'}",
              flush=True)
        self.checks.append({"what": what, "value": value, "op": op, "limit": limit,
                            "unit": unit, "shown": shown, "target": target, "ok": ok})
        return ok

    def finish(self, json_path: str | None = None) -> None:
        load_end = load_average()
        seconds = time.perf_counter() - self.started
        print(f"load average (1/5/15 min) at end:   {load_end}; benchmark wall time "
              f"{seconds:.0f} s", flush=True)
        if json_path:
            Path(json_path).write_text(json.dumps({
                "name": self.name, "title": self.title, "load_start": self.load_start,
                "load_end": load_end, "seconds": seconds, "checks": self.checks,
                "figures": self.figures}, indent=2, default=str))


def parser(description: str, workspace: bool = True) -> argparse.ArgumentParser:
    """The options every benchmark takes (``--help`` shows them)."""
    cli = argparse.ArgumentParser(description=description,
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if workspace:
        cli.add_argument("--workdir", default=None,
                         help="workspace folder to create or reuse (default: a new temporary "
                              "folder, deleted at the end)")
        cli.add_argument("--scale", type=float, default=1.0,
                         help="synthetic dataset size as a fraction of the real set's 3,256 "
                              "images (`leukemia-cnn data synth --scale`)")
        cli.add_argument("--pipeline-epochs", type=int, default=2,
                         help="train.epochs of the workspace's pipeline run (fewer than the "
                              "config's 15: the model only has to exist)")
    cli.add_argument("--json", default=None, help="also write the results as JSON here")
    return cli


def median(values) -> float:
    return float(statistics.median(values))


def clean_env(**extra: str) -> dict[str, str]:
    """This environment minus MLFLOW_* (each workspace uses its own store), venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("GIT_PYTHON_REFRESH", "quiet")
    env.update(extra)
    return env


def sh(command: list[str] | str, cwd: Path, env: dict | None = None,
       check: bool = True) -> subprocess.CompletedProcess:
    """Run a command, capture its output, and fail with the output's tail if it fails."""
    result = subprocess.run(command, cwd=cwd, env=env or clean_env(), capture_output=True,
                            text=True, shell=isinstance(command, str))
    if check and result.returncode != 0:
        shown = command if isinstance(command, str) else " ".join(map(str, command))
        raise RuntimeError(f"`{shown}` failed with exit code {result.returncode} in {cwd}:\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def trial(command: list[str], cwd: Path) -> dict:
    """Run one benchmark trial in a fresh process and return the JSON it printed after
    ``TRIAL `` (each script's ``--trial`` mode prints ``TRIAL {...}``)."""
    output = sh(command, cwd).stdout
    return json.loads(output.split("TRIAL ", 1)[1].splitlines()[0])


def copy_project(dest: Path) -> Path:
    """Copy the project's files (tracked or not, minus ignored ones, data, outputs and the
    benchmarks themselves)."""
    return devtools.copy_project(REPO, dest, skip=("benchmarks/",))


def stage_commands(project: Path) -> dict[str, str]:
    """The pipeline's stages in dvc.yaml order (which is their dependency order) and commands."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    return {name: spec["cmd"] for name, spec in stages.items()}


def run_measured(command: str, cwd: Path, env: dict | None = None) -> dict:
    """Run a shell command in a fresh wrapper process; return its wall time and peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "usage.json"
        result = subprocess.run([sys.executable, "-c", PEAK_RSS_WRAPPER, str(out), command],
                                cwd=cwd, env=env or clean_env(), capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"`{command}` failed with exit code {result.returncode} in "
                               f"{cwd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return json.loads(out.read_text())


class Workspace:
    """A project copy under ``<workdir>/project`` with data, pipeline outputs and a champion.

    Built once (:func:`build_workspace`) and shared by the benchmarks of one ``make bench``;
    each benchmark run alone builds its own in a temporary folder.
    """

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.project = self.workdir / "project"
        self.record = json.loads((self.project / WORKSPACE_RECORD).read_text())

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.project / 'mlflow.db'}"

    @property
    def raw_dir(self) -> Path:
        return self.project / "data" / "raw"

    def jpegs(self) -> list[Path]:
        return sorted(self.raw_dir.rglob("*.jpg"))

    def params(self):
        from leukemia_cnn.config import load_params

        return load_params(self.project / "params.yaml")

    def preprocessed(self, splits=("train", "val", "test")):
        """The preprocess stage's arrays of ``splits``, concatenated: ``(x, y)``."""
        import numpy as np

        from leukemia_cnn.data.preprocess import load_split

        parts = [load_split(self.project / "data" / "preprocessed", name)[:2] for name in splits]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def build_workspace(workdir: Path, scale: float, pipeline_epochs: int,
                    say=print) -> Workspace:
    """Copy the project, write the synthetic set at ``scale`` and run every stage once.

    Each stage's ``cmd`` from dvc.yaml runs in its own wrapper process that records its wall
    time and peak resident memory (see :data:`PEAK_RSS_WRAPPER`). Reuses a workspace built
    with the same scale and epochs.
    """
    workdir = Path(workdir)
    project = workdir / "project"
    record_path = project / WORKSPACE_RECORD
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record["scale"] == scale and record["pipeline_epochs"] == pipeline_epochs:
            say(f"workspace: reusing {project} (scale {scale}, {pipeline_epochs} epochs)")
            return Workspace(workdir)
        raise RuntimeError(f"{project} was built with scale {record['scale']} and "
                           f"{record['pipeline_epochs']} epochs; use another --workdir")
    if project.exists():
        shutil.rmtree(project)
    copy_project(project)
    env = clean_env()
    say(f"workspace: {project} (a copy of {REPO} with its own data and MLflow store)")
    sh(["leukemia-cnn", "params", f"train.epochs={pipeline_epochs}"], project, env)
    synth = run_measured(f"leukemia-cnn data synth --scale {scale} --no-dvc-add", project, env)
    n_images = sum(1 for _ in (project / "data" / "raw").rglob("*.jpg"))
    say(f"workspace: `leukemia-cnn data synth --scale {scale}` wrote {n_images:,} JPEGs in "
        f"{synth['seconds']:.1f} s")
    stages = {}
    for name, command in stage_commands(project).items():
        stages[name] = {"command": command, **run_measured(command, project, env)}
        say(f"workspace: stage {name:<13} {stages[name]['seconds']:7.1f} s, peak RSS "
            f"{stages[name]['peak_rss_bytes'] / MIB:7.0f} MiB")
    record = {"scale": scale, "pipeline_epochs": pipeline_epochs, "n_images": n_images,
              "built": now(), "load_after": load_average(), "synth": synth, "stages": stages}
    record_path.write_text(json.dumps(record, indent=2))
    return Workspace(workdir)


class workspace_from_args:
    """``with workspace_from_args(args, bench) as ws``: build or reuse, delete if temporary."""

    def __init__(self, args: argparse.Namespace, bench: Bench):
        self.args, self.bench = args, bench
        self.tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Workspace:
        workdir = self.args.workdir
        if workdir is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="leukemia-bench-")
            workdir = self.tmp.name
        return build_workspace(Path(workdir), self.args.scale, self.args.pipeline_epochs,
                               say=self.bench.say)

    def __exit__(self, *exc) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()
