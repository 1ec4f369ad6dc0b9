"""An interrupted or refused run leaves the last good model and reports in place, under DVC
as a user runs it (dvc.yaml's `persist` on train, train's staged outputs, check_config)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml

from helpers import BIN, sh, tiny_project

OUTPUTS = ("models/cnn.keras", "models/run.json", "reports/train.json",
           "reports/train_history.csv", "reports/metrics.json")
LONG = "train.epochs=400"  # far longer than any test waits


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    repo = tiny_project(tmp_path_factory.mktemp("interrupts") / "repo")
    sh("dvc", "repro", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "trained", cwd=repo)
    return repo


@pytest.fixture
def repo(project):
    """The trained project, reset to its commit after each test."""
    yield project
    sh("git", "checkout", "-q", "--", ".", cwd=project)
    sh("git", "clean", "-qfd", "--", "models", "reports", cwd=project)


def digests(repo: Path) -> dict[str, str]:
    return {name: hashlib.sha256((repo / name).read_bytes()).hexdigest() for name in OUTPUTS}


def trained_stages(repo: Path) -> dict:
    """dvc.lock's record of the train and evaluate stages."""
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {name: stages[name] for name in ("train", "evaluate")}


def start(repo: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    # A terminal's Ctrl-C reaches a command whose SIGINT is at its default. A test run started
    # in the background of a non-interactive shell inherits SIGINT ignored, and an ignored
    # signal stays ignored across exec: dvc and train would never see the Ctrl-C.
    return subprocess.Popen(list(args), cwd=repo, env=env, start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_training(repo: Path, process: subprocess.Popen) -> list[psutil.Process]:
    """Once train has staged its folder (it is fitting): the train processes under ``process``."""
    started = time.monotonic()
    while not list((repo / "models").glob("cnn.keras.tmp-*")):
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() - started < 300, "train never started"
        time.sleep(0.2)
    time.sleep(2)
    return [p for p in psutil.Process(process.pid).children(recursive=True)
            if "train" in " ".join(p.cmdline())]


@pytest.mark.slow
def test_ctrl_c_during_dvc_exp_run_keeps_the_model_and_reports(repo):
    before = digests(repo)
    process = start(repo, "dvc", "exp", "run", "-S", LONG)
    wait_for_training(repo, process)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
    output = process.communicate(timeout=120)[0]
    assert process.returncode != 0
    assert "interrupted; stage train keeps its earlier outputs (persist), intact" in output
    assert digests(repo) == before
    assert not list((repo / "models").glob("cnn.keras.tmp-*"))


@pytest.mark.slow
def test_sigterm_to_dvc_stops_its_train_child_and_keeps_the_outputs(repo):
    before, lock = digests(repo), trained_stages(repo)
    sh("leukemia-cnn", "params", LONG, cwd=repo)
    process = start(repo, "dvc", "repro")
    trainers = wait_for_training(repo, process)
    assert trainers
    process.send_signal(signal.SIGTERM)  # to dvc only, as `kill <pid>` or a CI timeout does
    process.communicate(timeout=60)
    gone, alive = psutil.wait_procs(trainers, timeout=60)
    assert not alive, "train kept running after dvc died"
    assert digests(repo) == before
    assert trained_stages(repo) == lock  # dvc.lock still describes the model in place
    assert not list((repo / "models").glob("cnn.keras.tmp-*"))


@pytest.mark.slow
def test_sigkill_of_train_keeps_the_outputs_and_its_leftover_is_ignored(repo):
    before = digests(repo)
    sh("leukemia-cnn", "params", LONG, cwd=repo)
    process = start(repo, "dvc", "repro")
    trainers = wait_for_training(repo, process)
    for trainer in trainers:
        trainer.kill()
    process.communicate(timeout=120)
    assert digests(repo) == before
    assert list((repo / "models").glob("cnn.keras.tmp-*"))  # SIGKILL cannot be cleaned up...
    status = sh("git", "status", "--porcelain", "--untracked-files=all", cwd=repo).stdout
    assert "tmp-" not in status  # ...but git (and DVC) ignore it


@pytest.mark.slow
def test_a_refused_dvc_exp_run_restores_params_yaml(repo):
    before, params = digests(repo), (repo / "params.yaml").read_text()
    (repo / "notes.txt").write_text("staged by the user\n")
    sh("git", "add", "notes.txt", cwd=repo)
    result = sh("dvc", "exp", "run", "-S", "train.batch_size=0", cwd=repo, check=False)
    assert result.returncode != 0
    assert "`train.batch_size` = 0 is invalid" in result.stdout + result.stderr
    assert "params.yaml is restored to the experiment's baseline commit" in result.stderr
    assert (repo / "params.yaml").read_text() == params
    assert digests(repo) == before
    # What DVC itself does and we cannot prevent (docs/data-quality.md): a workspace
    # `dvc exp run` stashes and re-applies the working tree, so the index is reset: the
    # user's staged file is back to untracked (unstaged), its content kept.
    status = sh("git", "status", "--porcelain", cwd=repo).stdout
    assert "?? notes.txt" in status and (repo / "notes.txt").read_text() == "staged by the user\n"
