"""The sweep's job statuses: where a launch's job folders are, their ``status.json`` files
and the one-line-per-job summary :mod:`leukemia_cnn.study.sweep` prints after the launch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from leukemia_cnn.console import text_table

SWEEP_FOLDER = "multirun"
STATUS_FILE = "status.json"


def override_value(argv: list[str], key: str) -> str | None:
    """The value of ``key=...`` among Hydra arguments (``+key=``/``~key=`` too), or None."""
    return next((arg.split("=", 1)[1] for arg in argv if arg.lstrip("+~").startswith(f"{key}=")),
                None)


def job_folders(argv: list[str], root: Path, sweep_id: str) -> Path:
    """Where this launch's job folders are: ``hydra.sweep.dir`` (multirun) or ``hydra.run.dir``
    when overridden on the command line, else ``multirun/<sweep id>``; relative to ``root``."""
    key = "hydra.sweep.dir" if {"-m", "--multirun"} & set(argv) else "hydra.run.dir"
    given = override_value(argv, key)
    return root / given.replace("${sweep.id}", sweep_id) if given else root / SWEEP_FOLDER / sweep_id


def write_status(out_dir: Path, status: dict) -> None:
    """Write a job's ``status.json`` in ``out_dir``; a file system that refuses is said in one
    line (the sweep's summary then finds the job missing and says so)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / STATUS_FILE).write_text(json.dumps(status, indent=2, default=str) + "\n")
    except OSError as exc:
        print(f"leukemia-cnn sweep: error: cannot write {out_dir / STATUS_FILE}: {exc}",
              file=sys.stderr)


def collect_statuses(sweep_dir: Path) -> list[dict]:
    """The ``status.json`` of every job under ``sweep_dir`` (in job order)."""
    found = []
    for path in sorted(sweep_dir.rglob(STATUS_FILE), key=lambda p: p.parent.name):
        try:
            found.append({**json.loads(path.read_text()), "job_dir": str(path.parent)})
        except (OSError, ValueError):
            found.append({"status": "failed", "error": f"unreadable {path}",
                          "job_dir": str(path.parent)})
    return found


def format_statuses(statuses: list[dict]) -> str:
    """One line per job: experiment, seed, accuracies, collapsed, run id (or the error)."""
    rows = [(s["experiment_name"], s["seed"], f"{s['val_accuracy']:.4f}",
             f"{s['test_accuracy']:.4f}", str(bool(s["collapsed"])).lower(), s["run_id"])
            if s.get("status") == "ok" else
            (s.get("experiment_name", "?"), "", "-", "-", "-", f"FAILED: {s.get('error', '?')}")
            for s in statuses]
    return text_table(("experiment", "seed", "val_acc", "test_acc", "collapsed",
                       "run_id / error"), rows, right=("seed", "val_acc", "test_acc", "collapsed"))


def describe_failed(failed: list[dict]) -> str:
    """The failed jobs in one line: each one's SLURM job id (when it ran on SLURM) or its
    overrides, and its error's first clause."""
    parts = []
    for status in failed:
        where = " ".join(status.get("overrides") or []) or status.get("experiment_name", "?")
        error = str(status.get("error", "?")).split("; ")[0]
        parts.append(f"{error} ({where})" if status.get("slurm_job_id") else f"{where}: {error}")
    return "; ".join(parts)
