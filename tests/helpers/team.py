"""What the team tests share: the real servers of leukemia_cnn.stack as fixtures (each stopped
by its PID, checked gone), commands with a time bound, and byte-for-byte tree comparisons."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from helpers import BIN
from leukemia_cnn.stack import s3, servers, slurm
from leukemia_cnn.stack.procs import StackError, alive

MLFLOW_BUCKET, DVC_BUCKET = "mlflow", "dvc"


def run(*args: str, cwd: Path, env: dict | None = None, timeout: float = 900,
        check: bool = True) -> subprocess.CompletedProcess:
    """A command of the project's venv with ``env`` on top of this one (minus MLFLOW_*),
    bounded by ``timeout`` seconds."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    full["PATH"] = f"{BIN}{os.pathsep}{full['PATH']}"
    full.update(env or {})
    result = subprocess.run(list(args), cwd=cwd, env=full, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def wait_for(ready, timeout: float, what: str, interval: float = 1.0):
    """Poll ``ready()`` until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while not (found := ready()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting until {what}")
        time.sleep(interval)
    return found


def sha256_tree(root: Path, names: list[str]) -> dict[str, str]:
    """sha256 of every file under each of ``names`` (files or folders) below ``root``."""
    digests = {}
    for name in names:
        target = root / name
        files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
        for path in files:
            digests[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def cached_outputs(repo: Path) -> list[str]:
    """data/raw plus every cached stage output that dvc.lock records."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    outs = ["data/raw"]
    for stage in lock["stages"].values():
        outs += [out["path"] for out in stage.get("outs", [])]
    return outs


def start_or_skip(start, *args, **kwargs):
    """Start a service; skip (saying why) only when its binaries are not installed."""
    try:
        return start(*args, **kwargs)
    except StackError as exc:
        if "not found" in str(exc) or "no PostgreSQL server binaries" in str(exc):
            pytest.skip(str(exc))
        raise


def postgres_fixture():
    """A throwaway PostgreSQL with a database ``mlflow``, outside pytest's 0700 temp root
    (the postgres user must reach it); yields the stack's Postgres."""
    base = Path(tempfile.mkdtemp(prefix="leukemia-pg-"))
    server = start_or_skip(servers.start_postgres, base)
    try:
        yield server
    finally:
        servers.stop_postgres(server)
        assert not alive(server.daemon), "postgres is still running"
        shutil.rmtree(base, ignore_errors=True)


def s3_fixture(folder: Path):
    """SeaweedFS's S3 on 127.0.0.1 with buckets ``mlflow`` and ``dvc``."""
    server = start_or_skip(s3.start_s3, folder, (MLFLOW_BUCKET, DVC_BUCKET))
    try:
        yield server
    finally:
        s3.stop_s3(server, timeout=5)  # throwaway data: no need for its 15 s graceful stop
        assert not alive(server.daemon), "weed is still running"
        left = [f"/tmp/seaweedfs-{name}-grpc-{port + 10000}.sock"
                for name, port in server.ports.items()]
        assert not any(Path(p).exists() for p in left), left


def slurm_fixture(folder: Path):
    """A one-node SLURM cluster (munged, slurmctld, slurmd) whose node is idle."""
    missing = slurm.missing_binaries()
    if missing:
        pytest.skip(f"no {', '.join(missing)}: install Debian's slurm-wlm and munge "
                    "(.ci/run does)")
    cluster = slurm.start_slurm(folder)
    daemons = list(cluster.daemons)
    try:
        yield cluster
    finally:
        slurm.stop_slurm(cluster)
        assert not [d.name for d in daemons if alive(d)], "a SLURM daemon is still running"
        assert not cluster.processes(), "a job of the test cluster is still running"


def mlflow_on_s3(folder: Path, postgres, store) -> tuple:
    """``mlflow server`` on PostgreSQL with its artifacts in ``s3://mlflow/artifacts``."""
    return servers.mlflow_server(folder, postgres.uri, f"s3://{MLFLOW_BUCKET}/artifacts",
                                 store.env)


def add_s3_remote(repo: Path, store, prefix: str, env: dict) -> None:
    """The DVC remote ``team`` on ``s3://dvc/<prefix>`` of ``store`` (keys from the env)."""
    run("dvc", "remote", "add", "-d", "team", f"s3://{DVC_BUCKET}/{prefix}", cwd=repo, env=env)
    run("dvc", "remote", "modify", "team", "endpointurl", store.endpoint, cwd=repo, env=env)
