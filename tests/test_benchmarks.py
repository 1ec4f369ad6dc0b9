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
        "check_config", "train", "evaluate", "robustness", "register"]
    pca = bench_dvc.downstream(REPO, "features.pca.n_components")
    assert pca[:2] == ["check_config", "features"]
    assert "preprocess" not in pca and "train" not in pca
    # The split feeds everything after it; nothing before it.
    assert bench_dvc.downstream(REPO, "split.seed") == [
        name for name in benchlib_stages() if name != "validate_raw"]


def test_first_run_benchmark_splits_make_run_into_data_stages_and_summary(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_firstrun

    lines = [(0.5, ".venv/bin/leukemia-cnn data synth --if-empty"),
             (20.0, "Running stage 'check_config':"), (22.0, "check_config: ok"),
             (23.0, "Running stage 'train':"), (143.0, "train: 120.0 s"),
             (150.0, ".venv/bin/leukemia-cnn summary"), (151.0, "champion: version 1")]
    parts = bench_firstrun.phases(lines, 155.0)
    assert [name for name, _ in parts] == ["data synth (make data)", "stage check_config",
                                           "stage train", "summary"]
    assert [round(s, 1) for _, s in parts] == [20.0, 3.0, 127.0, 5.0]
    assert sum(s for _, s in parts) == pytest.approx(155.0)


def benchlib_stages() -> list[str]:
    import benchlib

    return list(benchlib.stage_commands(REPO))


@pytest.mark.slow  # trains in fresh processes: minutes
def test_recipe_benchmark_times_both_runs_and_prints_the_ratio(tmp_path, make_cfg):
    """bench_recipe on a project folder's arrays: one run of the paper's row and one of the
    recipe, in fresh processes, both times, the ratio and the targets printed."""
    from helpers import TINY_OVERRIDES, write_preprocessed

    write_preprocessed(tmp_path, make_cfg(*TINY_OVERRIDES))
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("features.")]
    command = [sys.executable, str(BENCHMARKS / "bench_recipe.py"), "--data-project",
               str(tmp_path), "--recipe", "fast", "--override", "train.epochs=2",
               "--override", "train.lr_warmup_epochs=1"]
    for override in overrides:
        if not override.startswith("train.epochs"):
            command += ["--override", override]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "table1_e15_b64_cce  :" in out and "fast                :" in out
    assert "epochs on 96 images" in out
    assert "TARGET fast / paper e15/b64 training wall time:" in out
    assert "TARGET fast training wall time:" in out


@pytest.mark.slow  # trains in fresh processes: minutes
def test_precision_benchmark_times_both_precisions_and_says_what_auto_picks():
    """bench_precision: float32 and bfloat16 trials in fresh processes, the ratio, and a
    verdict only where `auto` picks bfloat16."""
    from leukemia_cnn.modeling.model import resolve_mixed_precision

    command = [sys.executable, str(BENCHMARKS / "bench_precision.py"), "--images", "64",
               "--epochs", "1", "--repeats", "1", "--configs", "paper"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "paper  off      :" in out and "paper  bfloat16 :" in out
    assert "compute dtype float32" in out and "compute dtype bfloat16" in out
    assert "paper (table1_e15_b64_cce), median of 1: epoch" in out and "(ratio " in out
    auto = resolve_mixed_precision("auto")
    assert f"train.mixed_precision=auto -> {auto}" in out
    assert ("TARGET paper: bfloat16 / float32 training time" in out) == (auto == "bfloat16")


@pytest.mark.slow  # trains in fresh processes: minutes
def test_guard_benchmark_times_predict_with_and_without_the_guard(tmp_path):
    """bench_guard: predict from JPEG bytes and from arrays, with and without the guard, the
    ratio and its verdict."""
    import json

    summary = tmp_path / "guard.json"
    command = [sys.executable, str(BENCHMARKS / "bench_guard.py"), "--images", "24",
               "--train-images", "32", "--epochs", "1", "--repeats", "1", "--json", str(summary)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    from leukemia_cnn.modeling.precision import resolve_inference_precision

    served = resolve_inference_precision("auto")  # what the benchmark's model serves in
    out = result.stdout
    assert f"{served:<8} bytes : without guard" in out
    assert f"{served:<8} arrays: without guard" in out
    # float32 is timed too where the model serves bfloat16, as the guard's cost beside it
    assert ("float32  bytes : without guard" in out) == (served == "bfloat16")
    assert (f"TARGET predict from JPEG bytes, 24 images, served precision {served}: with guard "
            "/ without:") in out
    figures = json.loads(summary.read_text())["figures"]
    assert figures[f"bytes_{served}_ratio"] == pytest.approx(
        figures[f"bytes_{served}_seconds_with"] / figures[f"bytes_{served}_seconds_without"])
