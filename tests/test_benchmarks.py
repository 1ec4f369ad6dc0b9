"""The benchmark scripts (benchmarks/, run by `make bench`) stay runnable: each answers
--help, and the DVC benchmark's expected re-run list follows dvc.yaml's graph."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import REPO_ROOT as REPO

BENCHMARKS = REPO / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("bench_*.py")) + ["run_all.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_benchmark_answers_help(script):
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {script}")


def test_a_training_knob_is_upstream_of_train_evaluate_and_register(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_dvc

    assert bench_dvc.downstream(REPO, "train.epochs") == [
        "check_config", "train", "evaluate", "register"]
    pca = bench_dvc.downstream(REPO, "features.pca.n_components")
    assert pca[:2] == ["check_config", "features"]
    assert "preprocess" not in pca and "train" not in pca
    # The split feeds everything after it; nothing before it.
    assert bench_dvc.downstream(REPO, "split.seed") == [
        name for name in benchlib_stages() if name != "validate_raw"]


def benchlib_stages() -> list[str]:
    import benchlib

    return list(benchlib.stage_commands(REPO))
