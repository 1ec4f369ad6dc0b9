"""``leukemia-cnn sweep``: the paper's study as a Hydra app, one MLflow run per job.

Each job trains and evaluates one configuration (``conf/launch.yaml`` = ``conf/config.yaml``
plus the launcher) on the current preprocessed splits, writes its files in its Hydra job
folder (``multirun/<sweep id>/<job>/``; never ``models/`` or ``reports/``, which belong to
DVC) and logs one run to the project's MLflow experiment, tagged ``sweep_id`` (shared by
every job of one launch), ``experiment_name`` (the ``conf/experiment`` file), ``config_id``
(the configuration without its seed), ``collapsed`` and ``paper_faithful``::

    leukemia-cnn sweep -m 'experiment=glob(table1_*)' seed=1,2,3      # 2 parallel jobs
    leukemia-cnn sweep -m experiment=improved seed=1,2,3 hydra.launcher.n_jobs=1
    leukemia-cnn sweep -m experiment=table1_e15_b64_cce seed=1,2 hydra/launcher=slurm
    leukemia-cnn sweep experiment=improved seed=7                      # one job

``leukemia-cnn report`` then reads the runs back from MLflow and ``leukemia-cnn promote``
picks the champion among the registered versions.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from leukemia_cnn.config import find_repo_root, load_config
from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.pathrules import check_sweep_dir
from leukemia_cnn.study.jobstatus import (
    STATUS_FILE,
    collect_statuses,
    describe_failed,
    format_statuses,
    job_folders,
    override_value,
)
from leukemia_cnn.study.sweep_job import run_task

PRIMARY_CONFIG = "launch"


def job(composed) -> dict:
    """The Hydra task (:func:`leukemia_cnn.study.sweep_job.run_task`), defined here: Hydra
    names the app, its help and each job's log file after the task's module (``sweep``)."""
    return run_task(composed)


def _close_sweep_runs(sweep_id: str) -> int:
    """Mark the RUNNING runs tagged ``sweep_id`` as KILLED; return how many."""
    from leukemia_cnn.tracking.runs import end_running_runs

    try:
        return end_running_runs({"sweep_id": sweep_id}, status="KILLED")
    except Exception as exc:  # noqa: BLE001 - report, never mask the interruption
        print(f"leukemia-cnn sweep: could not close the sweep's runs: {exc}", file=sys.stderr)
        return 0


def child_environment() -> dict[str, str]:
    """The environment of the sweep's child process: this one's, with TensorFlow's C++ info
    lines off (``TF_CPP_MIN_LOG_LEVEL=2``) unless the user set that level or asked for every
    library message (``leukemia-cnn --verbose`` / ``LEUKEMIA_CNN_VERBOSE=1``)."""
    from leukemia_cnn.console import verbose_requested

    env = dict(os.environ)
    if not verbose_requested():
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def main(argv: list[str] | None = None) -> int:
    """``leukemia-cnn sweep``: run the Hydra app in a child process; return its exit status.

    Hydra configures the logging of the process it runs in (closing existing handlers),
    keeps global state and joblib keeps its worker pool: a child process keeps all of that
    away from the caller (the CLI, a test, a notebook).

    Parameters
    ----------
    argv : list of str, optional
        Hydra arguments (``-m``, ``key=value`` overrides, ``hydra/launcher=...``); default
        ``sys.argv[1:]``.

    Returns
    -------
    int
        0 when every job finished, 1 when a job failed or the config is invalid, 130 when
        interrupted.
    """
    import signal

    argv = list(sys.argv[1:] if argv is None else argv)
    child = subprocess.Popen([sys.executable, "-m", "leukemia_cnn.study.sweep", *argv],
                             cwd=find_repo_root(), env=child_environment())

    # SIGTERM to this process: the child stops its jobs too.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:  # Ctrl-C reached the child too; let it clean up
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)


def with_sweep_id(argv: list[str]) -> str:
    """The launch's ``sweep.id``: the one given, or a new one inserted into ``argv``."""
    sweep_id = override_value(argv, "sweep.id")
    if sweep_id is None:
        # YYYYmmdd-HHMMSS-xxxx: sortable by launch time, unique across machines.
        sweep_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        # Beside the other overrides (Hydra's parser rejects one after `--cfg job -p key`).
        first = next((i for i, a in enumerate(argv) if "=" in a and not a.startswith("-")),
                     len(argv))
        argv.insert(first, f"sweep.id={sweep_id}")
    elif "," in sweep_id or not sweep_id.strip():
        raise LeukemiaCNNError(f"config key `sweep.id` = {sweep_id!r} is invalid; allowed: one "
                               "non-empty id per launch")
    return sweep_id


def prepare_store(argv: list[str], root: Path) -> None:
    """Check the sweep folder, then create the MLflow store and experiment once, before
    parallel workers log to it (not for Hydra's informational flags, which run no job)."""
    check_sweep_dir(argv, root)  # jobs write there: the rule of every configured path
    if INFORMATIONAL & set(argv):
        return
    from leukemia_cnn.tracking.runs import store_errors
    from leukemia_cnn.tracking.store import setup_mlflow

    cfg = load_config([a for a in argv if a.startswith("mlflow.") and "," not in a], root=root)
    with store_errors(cfg, root, "connect the sweep"):
        setup_mlflow(cfg, root)


# Hydra's informational flags: they run no job.
INFORMATIONAL = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--resolve"}


def run_app(argv: list[str]) -> int:
    """The Hydra app in this process (what :func:`main` runs in its child process).

    Adds ``sweep.id`` when absent, creates the MLflow store and experiment once (before
    parallel workers log to it), runs the jobs, then prints one line per job.
    """
    import hydra

    argv = list(argv)
    root = find_repo_root()
    if not (root / "conf" / f"{PRIMARY_CONFIG}.yaml").is_file():
        print(f"leukemia-cnn sweep: error: no {root / 'conf' / PRIMARY_CONFIG}.yaml; run from "
              "the project root", file=sys.stderr)
        return 1
    try:
        sweep_id = with_sweep_id(argv)
        prepare_store(argv, root)
    except (LeukemiaCNNError, OSError) as exc:
        print(f"leukemia-cnn sweep: error: {exc}", file=sys.stderr)
        return 1

    app = hydra.main(config_path=str(root / "conf"), config_name=PRIMARY_CONFIG,
                     version_base="1.3")(job)
    # Hydra reads its arguments from sys.argv; job folders are relative to the project root.
    sys.argv = ["leukemia-cnn sweep", *argv]
    os.chdir(root)
    from leukemia_cnn.modeling.train import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            app()
    except SystemExit as exc:
        if exc.code not in (0, None):
            return exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        # joblib has stopped the workers; close their runs rather than leave them RUNNING.
        closed = _close_sweep_runs(sweep_id)
        print(f"leukemia-cnn sweep: interrupted; workers stopped, {closed} running run(s) of "
              f"sweep {sweep_id} marked KILLED", file=sys.stderr)
        return 130
    if INFORMATIONAL & set(argv):
        return 0  # --cfg/--help: no job ran
    sweep_dir = job_folders(argv, root, sweep_id)
    statuses = collect_statuses(sweep_dir)
    if not statuses:
        print(f"leukemia-cnn sweep: error: no job of sweep {sweep_id} left its {STATUS_FILE} "
              f"in {sweep_dir}; see the messages above", file=sys.stderr)
        return 1
    print(f"\nsweep {sweep_id}: {len(statuses)} job(s) in {sweep_dir}")
    print(format_statuses(statuses))
    failed = [s for s in statuses if s.get("status") != "ok"]
    if failed:
        print(f"leukemia-cnn sweep: error: {len(failed)} of {len(statuses)} job(s) failed: "
              f"{describe_failed(failed)}", file=sys.stderr)
        return 1
    print("next: `leukemia-cnn report` (Table 1 from MLflow), `leukemia-cnn promote --by config`")
    return 0


if __name__ == "__main__":
    from leukemia_cnn.console import quiet_libraries

    quiet_libraries(native=False)  # fd 2 is the parent command's, already filtered
    sys.exit(run_app(sys.argv[1:]))
