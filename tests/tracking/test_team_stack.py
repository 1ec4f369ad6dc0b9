"""`make team-stack` / `make team-stack-down` (python -m leukemia_cnn.stack up|down): the team
setup of docs/scaling.md section 0 comes up on this machine, says what to export, and goes
away leaving no process and no socket behind."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from helpers import REPO_ROOT
from helpers.team import run
from leukemia_cnn.stack import servers, slurm
from leukemia_cnn.stack.procs import Daemon, alive

pytestmark = pytest.mark.slow


def test_team_stack_up_prints_the_exports_and_down_stops_every_process(tmp_path):
    missing = slurm.missing_binaries()
    if missing or servers.postgres_bin() is None:
        pytest.skip(f"no {', '.join(missing) or 'PostgreSQL'}: .ci/run installs them")
    folder = tmp_path / "stack"
    up = run("python", "-m", "leukemia_cnn.stack", "up", "--dir", str(folder), cwd=REPO_ROOT,
             timeout=300)
    record = json.loads((folder / "stack.json").read_text())
    daemons = [Daemon(**d) for d in record["daemons"]]
    try:
        exports = dict(line.removeprefix("export ").split("=", 1)
                       for line in (folder / "env.sh").read_text().splitlines())
        assert set(exports) == {"MLFLOW_TRACKING_URI", "SLURM_CONF", "AWS_ACCESS_KEY_ID",
                                "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                "AWS_ENDPOINT_URL"}
        assert all(f"export {k}={v}" in up.stdout for k, v in exports.items())
        assert {d.name for d in daemons} == {"postgres", "seaweedfs", "mlflow-server", "munged",
                                             "slurmctld", "slurmd"}
        with urllib.request.urlopen(f"{exports['MLFLOW_TRACKING_URI']}/health", timeout=10) as r:
            assert r.status == 200
        sinfo = run("sinfo", "-h", "-o", "%T", cwd=tmp_path, env=exports)
        assert sinfo.stdout.strip() == "idle"
        again = run("python", "-m", "leukemia_cnn.stack", "up", "--dir", str(folder),
                    cwd=REPO_ROOT, check=False)
        assert again.returncode == 1 and "make team-stack-down" in again.stderr
    finally:
        down = run("python", "-m", "leukemia_cnn.stack", "down", "--dir", str(folder),
                   cwd=REPO_ROOT, timeout=300)
    assert not [d.name for d in daemons if alive(d)], down.stdout
    assert not (folder / "stack.json").exists()
    assert not any(Path(p).exists() for p in record["tmp"])
    assert not any(Path(f"/tmp/seaweedfs-{name}-grpc-{port + 10000}.sock").exists()
                   for name, port in record["s3"]["ports"].items())
