"""Helpers the tests and the benchmarks share: a copy of the project, a server's start and stop.

Not used by the pipeline itself; kept in the package so that ``tests/`` and ``benchmarks/``
import one implementation instead of each writing its own.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

# What a copy of the project leaves out: the data and every output of the pipeline.
GENERATED = ("data/", "reports/", "models/")


def copy_project(repo: Path, dest: Path, skip: tuple[str, ...] = ()) -> Path:
    """Copy the project's files (tracked or not, minus ignored ones, data and outputs) from
    its git working tree ``repo`` into ``dest`` (created as needed); return ``dest``.

    Parameters
    ----------
    skip : tuple of str
        Further path prefixes to leave out, e.g. ``("benchmarks/",)``.
    """
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=repo, capture_output=True, text=True, check=True).stdout
    for name in listed.splitlines():
        source = Path(repo) / name
        if (not source.is_file() or name.startswith(GENERATED + tuple(skip))
                or name in ("data.dvc", "dvc.lock")):
            continue
        target = Path(dest) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return Path(dest)


def wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout: float) -> float:
    """Poll ``url`` until it answers 200; return the seconds that took.

    Raises
    ------
    RuntimeError
        If ``process`` exits or ``timeout`` seconds pass first; the message ends with the
        tail of the server's ``log``.
    """
    started = time.monotonic()
    while True:
        with (contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
              urllib.request.urlopen(url, timeout=2) as response):
            if response.status == 200:
                return time.monotonic() - started
        if process.poll() is not None or time.monotonic() - started > timeout:
            tail = Path(log).read_text(errors="replace")[-3000:] if Path(log).exists() else ""
            raise RuntimeError(f"the server did not answer {url} within {timeout:.0f} s "
                               f"(exit code {process.poll()}); its log:\n{tail}")
        time.sleep(1)


def stop_process(process: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
