"""The sweep's SLURM launcher (``hydra/launcher=slurm``): hydra-submitit-launcher's, except
how it waits for the jobs (``hydra_plugins/leukemia_cnn_launcher`` defines the class).

submitit learns that a job ended from ``sacct``; on a cluster without the accounting daemon
``sacct`` fails, and a job that died without writing its result (cancelled, its node dead)
is waited on forever. This launcher asks ``scontrol`` (the controller itself) instead, and
every wait has a bound: a job that SLURM ended without a result, one that no node can run,
or a controller silent for :data:`CONTROLLER_SILENCE_S` is reported as a failed job, in its
``status.json`` like any other (``leukemia-cnn sweep`` exits 1 naming it) and its MLflow run,
if still RUNNING, is closed (FAILED; KILLED when cancelled).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf, open_dict

from leukemia_cnn.study.jobstatus import STATUS_FILE

POLL_S = 2.0
# SLURM states after which a job never writes its result.
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
         "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT", "GONE"}
# Seconds a result may lag behind the end of its job (a shared filesystem's cache).
RESULT_GRACE_S = 30.0
# A pending job whose reason says no node can run it is reported after this long.
UNSCHEDULABLE_S = 120.0
UNSCHEDULABLE = ("ReqNodeNotAvail", "Nodes required for job are DOWN", "PartitionDown",
                 "PartitionInactive", "BadConstraints")
CONTROLLER_SILENCE_S = 300.0
WHY = {"CANCELLED": "cancelled (scancel, or its time limit)", "NODE_FAIL": "its node died",
       "FAILED": "its program failed or was killed",
       "TIMEOUT": "it reached its time limit (hydra.launcher.timeout_min)",
       "OUT_OF_MEMORY": "it ran out of memory (hydra.launcher.mem_gb)",
       "GONE": "SLURM no longer knows it", "COMPLETED": "it exited without a result"}


@dataclass
class Watch:
    """What the launcher knows of one submitted job while it waits."""

    job: Any  # submitit.Job
    state: str = "PENDING"
    since: float = 0.0  # when the job entered its current state
    outcome: str | None = None  # None: running; "result": wrote one; else the failure


def slurm_states(job_ids: list[str]) -> dict[str, tuple[str, str]] | None:
    """``{job id: (state, reason)}`` from ``scontrol show job``; None if the controller does
    not answer. A job the controller no longer knows is ``GONE``."""
    found = {}
    for array_id in sorted({j.split("_")[0] for j in job_ids}):
        try:
            result = subprocess.run(["scontrol", "show", "job", "-o", array_id],
                                    capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if result.returncode != 0:
            if "Invalid job id" not in result.stderr:
                return None
            continue
        for line in result.stdout.splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            state = fields.get("JobState", "UNKNOWN")
            reason = line.partition("Reason=")[2].split(" Dependency=")[0]
            for task in array_tasks(fields.get("ArrayTaskId")):
                found[f"{fields.get('ArrayJobId', array_id)}_{task}"] = (state, reason)
            found[fields.get("JobId", "")] = (state, reason)
    return {j: found.get(j, ("GONE", "")) for j in job_ids}


def array_tasks(spec: str | None) -> list[str]:
    """Task ids of ``ArrayTaskId`` (``3``, or ``1-3,5%2`` for pending tasks shown as one)."""
    parts = [part.partition("-") for part in (spec or "").split("%")[0].split(",")]
    return [str(task) for low, _, high in parts if low.isdigit()
            for task in range(int(low), int(high or low) + 1)]


def update(watch: Watch, state: str, reason: str, now: float) -> None:
    """Record a job's new state; decide its outcome when it has one."""
    if watch.job.paths.result_pickle.exists():
        watch.outcome = "result"
        return
    if state != watch.state:
        watch.state, watch.since = state, now
    waited = now - watch.since
    if state in ENDED and waited > (RESULT_GRACE_S if state == "COMPLETED" else POLL_S * 2):
        said = f" ({reason})" if reason and reason != "None" else ""
        watch.outcome = f"ended {state}{said}: {WHY.get(state, 'see its log')}"
    elif (state == "PENDING" and reason.startswith(UNSCHEDULABLE)
          and waited > UNSCHEDULABLE_S):
        watch.outcome = f"cannot start: no node can run it ({reason}); cancelled"
        cancel([watch])


def wait_for(watches: list[Watch]) -> None:
    """Poll SLURM until every job has an outcome (each wait bounded, see the module)."""
    silent_since = None
    while pending := [w for w in watches if w.outcome is None]:
        now = time.monotonic()
        states = slurm_states([w.job.job_id for w in pending])
        if states is None:
            silent_since = silent_since or now
            if now - silent_since > CONTROLLER_SILENCE_S:
                for watch in pending:
                    watch.outcome = (f"slurmctld did not answer for {CONTROLLER_SILENCE_S:.0f} "
                                     f"s (last state {watch.state})")
                return
        else:
            silent_since = None
            for watch in pending:
                update(watch, *states[watch.job.job_id], now)
        time.sleep(POLL_S)


def cancel(watches: list[Watch]) -> None:
    """``scancel`` the jobs (bounded; a failure leaves them to SLURM's own time limit)."""
    ids = [w.job.job_id for w in watches]
    if ids:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["scancel", *ids], capture_output=True, timeout=30)


class ReportingLauncher:
    """The ``launch`` of hydra-submitit-launcher's SLURM launcher, with waits that end (see the
    module); mixed in by ``hydra_plugins.leukemia_cnn_launcher.SweepSlurmLauncher``."""

    def launch(self, job_overrides, initial_job_idx):
        import submitit
        from hydra.core.singleton import Singleton

        assert self.config is not None and len(job_overrides) > 0
        init_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR,
                                         folder=self.params["submitit_folder"],
                                         slurm_max_num_timeout=self.params["max_num_timeout"])
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.params.items() if k not in init_keys})
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        jobs_args = [(list(o), "hydra.sweep.dir", initial_job_idx + i, f"job_id_for_{i}",
                      Singleton.get_state()) for i, o in enumerate(job_overrides)]
        for args in jobs_args:
            print(f"sweep: #{args[2]} {' '.join(filter_overrides(args[0]))}")
        watches = [Watch(job, since=time.monotonic())
                   for job in executor.map_array(self, *zip(*jobs_args, strict=True))]
        print(f"sweep: submitted SLURM job(s) {', '.join(w.job.job_id for w in watches)}")
        try:
            wait_for(watches)
        except KeyboardInterrupt:
            cancel([w for w in watches if w.outcome is None])
            raise
        return [w.job.results()[0] if w.outcome == "result"
                else self.failed_job(args[0], args[2], w) for w, args in zip(watches, jobs_args, strict=True)]

    def failed_job(self, overrides: list[str], number: int, watch: Watch) -> JobReturn:
        """Write the failure as the job's ``status.json``, close its run, return it as a job
        that completed (its status says it failed; ``leukemia-cnn sweep`` reports it)."""
        from leukemia_cnn.tracking.orphans import SLURM_JOB_TAG
        from leukemia_cnn.tracking.runs import end_running_runs

        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        job_id = watch.job.job_id
        with open_dict(config.hydra.job) as job:
            job.num, job.id = number, job_id
        folder = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        status = {"status": "failed", "slurm_job_id": job_id, "slurm_state": watch.state,
                  "experiment_name": config.hydra.runtime.choices.get("experiment") or "default",
                  "overrides": [o for o in overrides if not o.startswith("sweep.id=")],
                  "error": f"SLURM job {job_id} {watch.outcome}; its log: "
                           f"{watch.job.paths.stderr}"}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / STATUS_FILE).write_text(json.dumps(status, indent=2) + "\n")
        try:  # its process could not end its run (killed, its node dead)
            end_running_runs({"sweep_id": str(config.sweep.id), SLURM_JOB_TAG: job_id},
                             status="KILLED" if watch.state == "CANCELLED" else "FAILED")
        except Exception as exc:  # noqa: BLE001 - the report matters more than the run's status
            print(f"sweep: could not close the run of SLURM job {job_id}: {exc}")
        return JobReturn(overrides=overrides, cfg=config, hydra_cfg=config, working_dir=str(folder),
                         task_name=config.hydra.job.name, status=JobStatus.COMPLETED,
                         _return_value=status)
