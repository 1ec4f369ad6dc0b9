"""Daemons of the team stack: start one with its log, wait for it with a bound, stop it by
its PID (and only it), whether this process started it or an earlier ``stack up`` did."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from leukemia_cnn.errors import LeukemiaCNNError


class StackError(LeukemiaCNNError):
    """A service of the team stack did not start or stop; the message names it and its log."""


@dataclass
class Daemon:
    """One running service: its name, PID, start time (to tell a reused PID) and log file."""

    name: str
    pid: int
    started: float
    log: str


_CHILDREN: dict[int, subprocess.Popen] = {}  # reaped on stop, so no zombie stays behind


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (and its +10000 gRPC twin, which SeaweedFS uses)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 10000 < 65536:
            with socket.socket() as twin, contextlib.suppress(OSError):
                twin.bind(("127.0.0.1", port + 10000))
                return port


def spawn(name: str, args: list[str], log: Path, env: dict | None = None,
          cwd: Path | None = None, detach: bool = False) -> Daemon:
    """Start ``args`` in the foreground of a child process writing to ``log``.

    ``detach`` puts it in a session of its own, so that it outlives the command that started
    it (``stack up``) and a Ctrl-C in that terminal does not reach it.
    """
    import psutil

    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                   start_new_session=detach)
    _CHILDREN[process.pid] = process
    started = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        started = psutil.Process(process.pid).create_time()
    return Daemon(name, process.pid, started, str(log))


def alive(daemon: Daemon) -> bool:
    """Whether the daemon's PID still runs the process we started (not a reused PID)."""
    import psutil

    child = _CHILDREN.get(daemon.pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        process = psutil.Process(daemon.pid)
        return (abs(process.create_time() - daemon.started) < 0.05
                and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def log_tail(daemon: Daemon, chars: int = 2000) -> str:
    path = Path(daemon.log)
    return path.read_text(errors="replace")[-chars:] if path.is_file() else "(no log)"


def wait_until(ready: Callable[[], bool], timeout: float, what: str,
               daemon: Daemon | None = None, interval: float = 0.3) -> float:
    """Poll ``ready()`` until it is true; return the seconds that took.

    Raises
    ------
    StackError
        If ``daemon`` exits or ``timeout`` seconds pass first; with the tail of its log.
    """
    started = time.monotonic()
    while not ready():
        if daemon is not None and not alive(daemon):
            raise StackError(f"{daemon.name} exited before {what}; its log {daemon.log}:\n"
                             f"{log_tail(daemon)}")
        if time.monotonic() - started > timeout:
            tail = f"; its log {daemon.log}:\n{log_tail(daemon)}" if daemon else ""
            raise StackError(f"timed out after {timeout:.0f} s waiting until {what}{tail}")
        time.sleep(interval)
    return time.monotonic() - started


def stop(daemon: Daemon, timeout: float = 30, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to the daemon's PID, wait up to ``timeout`` s, then SIGKILL it."""
    if alive(daemon):
        try:
            os.kill(daemon.pid, sig)
            wait_until(lambda: not alive(daemon), timeout, f"{daemon.name} stopped")
        except (ProcessLookupError, StackError):
            kill_pid(daemon.pid)
    reap(daemon.pid)


def kill_pid(pid: int) -> None:
    """SIGKILL one PID and reap it when it is a child of this process."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    reap(pid)


def reap(pid: int) -> None:
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)


def processes_where(environ_matches: Callable[[dict], bool]) -> list[int]:
    """PIDs of the processes (other than this one and its parents) whose environment
    ``environ_matches``: what a service started, found by settings only it passed on."""
    import psutil

    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if (process.pid not in mine and environ_matches(process.environ())
                    and process.status() != psutil.STATUS_ZOMBIE):
                found.append(process.pid)
    return found
