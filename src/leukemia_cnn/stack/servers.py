"""PostgreSQL (a throwaway cluster of Debian's server) and the MLflow tracking server with
its artifacts on S3, both on 127.0.0.1."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from leukemia_cnn.stack.procs import Daemon, StackError, alive, free_port, spawn, stop, wait_until


@dataclass
class Postgres:
    """A running PostgreSQL cluster: its libpq URI and daemon."""

    uri: str
    daemon: Daemon | None = None


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server binaries (newest), or one on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def as_postgres(args: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


def start_postgres(folder: Path, detach: bool = False, timeout: float = 60) -> Postgres:
    """``initdb`` a cluster in ``folder/data``, start it and create the database ``mlflow``.

    ``folder`` must be reachable by the ``postgres`` user when running as root (a folder under
    pytest's 0700 temporary root is not).
    """
    bindir = postgres_bin()
    if bindir is None or not (bindir / "initdb").is_file():
        raise StackError("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/postgres "
                         "or `postgres` on PATH): install Debian's postgresql (.ci/run does)")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data = folder / "data"
    subprocess.run(as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                                "-A", "trust", "--no-sync"]), check=True, capture_output=True,
                   timeout=120)
    port = free_port()
    server = Postgres(f"postgresql://postgres@127.0.0.1:{port}/mlflow")
    log = folder / "postgres.log"
    server.daemon = spawn("postgres", as_postgres([str(bindir / "postgres"), "-D", str(data),
                                                   "-h", "127.0.0.1", "-p", str(port),
                                                   "-k", str(folder)]),
                          log, detach=detach)
    if os.geteuid() == 0:
        shutil.chown(log, "postgres")
    try:
        ready = [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)]
        wait_until(lambda: subprocess.run(ready, capture_output=True).returncode == 0,
                   timeout, f"PostgreSQL accepted connections on port {port}", server.daemon)
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                        "postgres", "mlflow"], check=True, capture_output=True, timeout=60)
    except BaseException:
        stop_postgres(server)
        raise
    return server


def stop_postgres(server: Postgres) -> None:
    if server.daemon is not None:
        stop(server.daemon, timeout=60)


def mlflow_server(folder: Path, backend_uri: str, artifacts: str, env: dict[str, str],
                  detach: bool = False, timeout: float = 180) -> tuple[Daemon, str]:
    """``mlflow server`` proxying artifacts to ``artifacts`` (``s3://bucket/prefix`` with the
    S3 settings in ``env``, or a folder); return its daemon and URL.

    A ``postgresql://`` backend is given its pinned driver (``postgresql+psycopg2://``):
    SQLAlchemy 2.1 maps a plain one to psycopg 3, which is not installed.
    """
    from leukemia_cnn.devtools import wait_for_http

    if artifacts.startswith("s3://"):  # a refused key: one line now, not 500s on every upload
        from leukemia_cnn.stack.s3 import check_access

        check_access(env.get("MLFLOW_S3_ENDPOINT_URL"), env, artifacts[5:].split("/")[0])
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    args = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", backend_uri.replace("postgresql://", "postgresql+psycopg2://"),
            "--serve-artifacts", "--artifacts-destination", artifacts, "--workers", "1"]
    server_env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, **env}
    daemon = spawn("mlflow-server", args, folder / f"mlflow-server-{port}.log", env=server_env,
                   cwd=folder, detach=detach)
    process = SimpleNamespace(poll=lambda: None if alive(daemon) else 1)  # wait_for_http's use
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process, Path(daemon.log), timeout)
    except RuntimeError as exc:
        stop(daemon)
        raise StackError(f"mlflow server did not start: {exc}") from exc
    return daemon, f"http://127.0.0.1:{port}"

