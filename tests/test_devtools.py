"""The helpers tests and benchmarks share (leukemia_cnn.devtools)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import REPO_ROOT
from leukemia_cnn import devtools


def test_copy_project_leaves_out_data_outputs_and_what_it_is_told(tmp_path):
    dest = devtools.copy_project(REPO_ROOT, tmp_path / "copy", skip=("benchmarks/",))

    assert (dest / "dvc.yaml").is_file() and (dest / "src" / "leukemia_cnn" / "cli" / "__init__.py").is_file()
    assert not (dest / "benchmarks").exists()
    assert not (dest / "dvc.lock").exists() and not (dest / "data.dvc").exists()
    assert not (dest / "data").exists() and not (dest / "models").exists()


def test_stop_process_kills_what_ignores_sigterm():
    stubborn = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline().strip() == "ready"

    code = devtools.stop_process(stubborn, timeout=1)

    assert code == -9
    stubborn.stdout.close()


def test_wait_for_http_reports_a_server_that_died(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("Traceback: port already in use\n")
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()

    with pytest.raises(RuntimeError, match="exit code 3.*\n.*port already in use"):
        devtools.wait_for_http("http://127.0.0.1:9/ping", dead, log, timeout=30)
