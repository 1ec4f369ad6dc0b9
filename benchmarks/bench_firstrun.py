"""First-run benchmark: the README's first command, ``make run``, in a fresh clone.

It clones the project's committed state (``git clone`` of this repository: no venv, no data,
no outputs, no MLflow store) into a temporary folder and times, as a new user meets them:

- ``make install``: the virtual environment and the pinned packages (from the package
  registries this machine reaches, with pip's own cache as it is on this machine);
- ``make run``: the built-in synthetic dataset (``leukemia-cnn data synth``), then
  ``dvc repro`` (every stage; each stage's time is read from when DVC announces the next
  one), then ``leukemia-cnn summary``.

The target is the whole first run, install included, under 5 minutes on this 2-core machine.
Baseline in the same run: the train stage (the paper's 15 epochs), so the ratio says how much
of the first run is the model's own training and how much is everything around it.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from pathlib import Path

import benchlib

TARGET_SECONDS = 300.0
STAGE = re.compile(r"Running stage '([^']+)'")


def timed_stream(command: list[str], cwd: Path) -> tuple[float, list[tuple[float, str]]]:
    """Run ``command``; return its wall time and each output line with its time from start."""
    env = benchlib.clean_env(PYTHONUNBUFFERED="1")  # the Makefile puts the clone's venv first
    started = time.perf_counter()
    lines = []
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        lines.append((time.perf_counter() - started, line.rstrip("\n")))
    code = process.wait()
    seconds = time.perf_counter() - started
    if code != 0:
        tail = "\n".join(text for _, text in lines[-40:])
        raise RuntimeError(f"`{' '.join(command)}` failed with exit code {code} in {cwd}:\n{tail}")
    return seconds, lines


def phases(lines: list[tuple[float, str]], total: float) -> list[tuple[str, float]]:
    """Split ``make run``'s output into phases: data, each DVC stage, the summary."""
    marks = [(0.0, "data synth (make data)")]
    for at, text in lines:
        found = STAGE.search(text)
        if found:
            marks.append((at, f"stage {found.group(1)}"))
        elif text.endswith("/leukemia-cnn summary"):
            marks.append((at, "summary"))
    ends = [at for at, _ in marks[1:]] + [total]
    return [(name, end - start) for (start, name), end in zip(marks, ends, strict=True)]


def main(argv: list[str] | None = None) -> int:
    cli = benchlib.parser(__doc__, workspace=False)
    cli.add_argument("--keep", default=None,
                     help="clone into this folder and keep it (default: a temporary folder)")
    args = cli.parse_args(argv)
    bench = benchlib.Bench("firstrun", "a fresh clone's `make install` and `make run`")
    with tempfile.TemporaryDirectory(prefix="leukemia-firstrun-") as tmp:
        clone = Path(args.keep or Path(tmp) / "leukemia-cnn")
        benchlib.sh(["git", "clone", "--quiet", str(benchlib.REPO), str(clone)], Path(tmp))
        commit = benchlib.sh(["git", "rev-parse", "--short", "HEAD"], clone).stdout.strip()
        bench.say(f"clone of commit {commit} (committed state only) in {clone}")
        install_s, _ = timed_stream(["make", "install"], clone)
        run_s, lines = timed_stream(["make", "run"], clone)
        parts = phases(lines, run_s)
        bench.say(f"  {'step':<34} {'wall s':>7}")
        bench.say(f"  {'make install':<34} {install_s:>7.1f}")
        for name, seconds in parts:
            bench.say(f"  {name:<34} {seconds:>7.1f}")
        total = install_s + run_s
        train_s = dict(parts).get("stage train", float("nan"))
        bench.say(f"  {'total (install + make run)':<34} {total:>7.1f}")
        bench.say(f"ratio first run / its train stage: {total / train_s:.2f} "
                  f"(train {train_s:.1f} s of {total:.1f} s)")
        for _, text in lines[-6:]:
            bench.say(f"  make run said: {text}")
        bench.figure("install_seconds", install_s)
        bench.figure("run_seconds", run_s)
        bench.figure("phases", dict(parts))
        bench.check("fresh clone: `make install` + `make run`", total, "<=", TARGET_SECONDS,
                    "s", fmt="{:.0f}")
    bench.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
