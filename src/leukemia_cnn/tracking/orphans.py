"""Runs left RUNNING by a killed process: the tags that name a run's process, and closing
the runs whose process is gone (every MLflow set-up calls :func:`close_orphaned_runs`)."""

from __future__ import annotations

import os
import socket

# Tags naming the process that owns a RUNNING run, so that a later command can tell a run
# whose process was killed (SIGKILL, power loss) from one that is still training.
HOST_TAG, PID_TAG, PID_START_TAG = "process.host", "process.pid", "process.start_time"

# The SLURM job a run was trained in (``12_3`` for task 3 of array job 12, as squeue, scancel
# and submitit's folders name it) and its node: what to look up when a cluster job fails.
SLURM_JOB_TAG, SLURM_NODE_TAG = "slurm_job_id", "slurm_node"


def process_tags() -> dict[str, str]:
    """``process.host``, ``process.pid`` and ``process.start_time`` of this process, and inside
    a SLURM job its ``slurm_job_id`` and ``slurm_node``."""
    import psutil

    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()),
            PID_START_TAG: f"{psutil.Process().create_time():.2f}"}
    job, array, task = (os.environ.get(k) for k in
                        ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"))
    if job:
        tags[SLURM_JOB_TAG] = f"{array}_{task}" if array and task else job
        tags[SLURM_NODE_TAG] = os.environ.get("SLURMD_NODENAME", socket.gethostname())
    return tags


def process_alive(pid: int, start_time: str | None) -> bool:
    """Whether ``pid`` runs on this host and is the same process (not a reused pid)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return start_time is None or f"{process.create_time():.2f}" == start_time
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # exists but not inspectable: assume it is alive
        return True


def close_orphaned_runs(experiment_id: str) -> list[str]:
    """Close (as FAILED) the RUNNING runs of this host whose process is gone; return their ids.

    A run whose process was killed (SIGKILL) stays RUNNING forever in MLflow. Runs started on
    this host (``process.host`` tag) whose ``process.pid`` no longer exists are ended FAILED
    with an ``orphaned`` tag saying why; runs from other hosts or without the tags are left
    alone: their process cannot be checked from here.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    host = socket.gethostname()
    try:
        running = client.search_runs([experiment_id], filter_string=(
            f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"), max_results=1000)
    except MlflowException:
        return []
    closed = []
    for run in running:
        tags = run.data.tags
        try:
            pid = int(tags.get(PID_TAG, ""))
        except ValueError:
            continue
        if pid == os.getpid() or process_alive(pid, tags.get(PID_START_TAG)):
            continue
        client.set_tag(run.info.run_id, "orphaned",
                       f"process {pid} on {host} ended without closing the run; closed as FAILED")
        client.set_terminated(run.info.run_id, status="FAILED")
        print(f"mlflow: closed orphaned run {run.info.run_id} ({run.info.run_name}): its process "
              f"{pid} on {host} is gone (killed?); marked FAILED")
        closed.append(run.info.run_id)
    return closed
