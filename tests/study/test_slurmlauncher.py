"""The SLURM launcher's decisions, without a cluster: which SLURM states end a job without a
result, how pending array tasks are read, and the one line that names failed jobs."""

from __future__ import annotations

from types import SimpleNamespace

from leukemia_cnn.study import slurmlauncher as launcher
from leukemia_cnn.study.jobstatus import describe_failed


def watch(tmp_path, state="RUNNING", since=0.0):
    job = SimpleNamespace(job_id="12_1", paths=SimpleNamespace(result_pickle=tmp_path / "r.pkl"))
    return launcher.Watch(job, state=state, since=since)


def test_array_tasks_expand_what_scontrol_shows_for_pending_tasks():
    assert launcher.array_tasks("3") == ["3"]
    assert launcher.array_tasks("1-3,5%2") == ["1", "2", "3", "5"]
    assert launcher.array_tasks(None) == []


def test_a_cancelled_job_without_result_is_a_failure_naming_why(tmp_path):
    w = watch(tmp_path)
    launcher.update(w, "CANCELLED", "None", now=100.0)
    assert w.outcome is None  # a result may still be on its way
    launcher.update(w, "CANCELLED", "None", now=100.0 + 3 * launcher.POLL_S)
    assert w.outcome == "ended CANCELLED: cancelled (scancel, or its time limit)"


def test_a_dead_node_and_a_vanished_job_are_failures(tmp_path):
    w = watch(tmp_path, "NODE_FAIL", since=0.0)
    launcher.update(w, "NODE_FAIL", "NodeDown", now=60.0)
    assert w.outcome == "ended NODE_FAIL (NodeDown): its node died"
    gone = watch(tmp_path, "GONE")
    launcher.update(gone, "GONE", "", now=60.0)
    assert gone.outcome.startswith("ended GONE")


def test_a_job_with_a_result_or_still_running_is_no_failure(tmp_path):
    running = watch(tmp_path)
    launcher.update(running, "RUNNING", "None", now=1e6)
    assert running.outcome is None
    (tmp_path / "r.pkl").write_bytes(b"x")
    launcher.update(running, "COMPLETED", "None", now=1e6)
    assert running.outcome == "result"


def test_the_sweep_error_line_names_each_failed_slurm_job():
    failed = [{"status": "failed", "slurm_job_id": "12_1", "overrides": ["seed=2"],
               "error": "SLURM job 12_1 ended CANCELLED: cancelled; its log: x.err"},
              {"status": "failed", "overrides": ["seed=3"], "error": "no data"}]
    assert describe_failed(failed) == ("SLURM job 12_1 ended CANCELLED: cancelled (seed=2); "
                                       "seed=3: no data")
