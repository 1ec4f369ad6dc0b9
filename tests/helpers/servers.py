"""Starting and stopping real servers on loopback for the tests that need one."""

from __future__ import annotations

import os
import socket
import subprocess
from contextlib import contextmanager

from helpers import BIN
from leukemia_cnn import devtools


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server(args: list[str], port: int, cwd, health: str = "/health", timeout: float = 180,
           env_extra: dict | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{cwd / 'mlflow.db'}"
    env.update(env_extra or {})  # e.g. a tracking server instead of the store in cwd
    log = open(cwd / f"server-{port}.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        devtools.wait_for_http(f"http://127.0.0.1:{port}{health}", process,
                               cwd / f"server-{port}.log", timeout)
        yield f"http://127.0.0.1:{port}"
    finally:
        devtools.stop_process(process)
        log.close()
