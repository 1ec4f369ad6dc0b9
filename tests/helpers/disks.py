"""Full disks the tests make themselves: a small tmpfs mounted where the test can mount one
(root, or CAP_SYS_ADMIN), else the test is skipped with the reason; and a DVC project for the
data commands. Nothing depends on the test machine's own free space."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def can_mount() -> str | None:
    """None when this process may mount a tmpfs, else why not."""
    if sys.platform != "linux":
        return "tmpfs mounts need Linux"
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root (CI runs unprivileged: the seam tests cover it)"
    if shutil.which("mount") is None:
        return "no `mount` command"
    return None


@contextlib.contextmanager
def small_disk(path: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of ``size_kb`` KiB mounted at ``path`` (created) for the block; skips the test
    when no tmpfs can be mounted here."""
    reason = can_mount()
    if reason:
        pytest.skip(reason)
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path, leave_kb: int) -> Path:
    """Fill the file system of ``folder`` until about ``leave_kb`` KiB are left; return the
    filler file (delete it to free the space)."""
    filler = folder / "filler.bin"
    free = shutil.disk_usage(folder).free - leave_kb * 1024
    with open(filler, "wb") as handle:
        with contextlib.suppress(OSError):
            handle.write(b"\0" * max(0, free))
    return filler


def enospc(path: str | Path = "") -> OSError:
    """The OSError a full disk raises (no file name, as from a write())."""
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if path:
        error.filename = str(path)
    return error


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=True,
                          capture_output=True, text=True, env={**os.environ,
                                                               "DVC_NO_ANALYTICS": "1"})


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout


def dvc_project(root: Path, overrides: tuple[str, ...] = ("data.synth.scale=0.01",)) -> Path:
    """A git + DVC project with conf/ and a params.yaml (conf/ composed with ``overrides``),
    nothing else: enough for `leukemia-cnn params` and `leukemia-cnn data synth|get`."""
    from helpers import REPO_ROOT
    from leukemia_cnn.config import compose, write_params

    shutil.copytree(REPO_ROOT / "conf", root / "conf")
    git("init", "-q", cwd=root)
    dvc("init", "-q", cwd=root)
    write_params(compose(list(overrides), root=REPO_ROOT), root / "params.yaml")
    return root
