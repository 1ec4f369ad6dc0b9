"""DVC versioning of a data folder: `dvc add` it and keep its `.dvc` file where the project
expects it (``data.dvc`` for ``data/raw``), staging the move in git when DVC auto-stages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from leukemia_cnn.errors import DISK_FULL_TEXTS, DiskFullError, LeukemiaCNNError, free_space


def dvc_target(root: Path, out_dir: Path) -> str:
    """``out_dir`` relative to the DVC repository at ``root``, or a LeukemiaCNNError."""
    root, out_dir = Path(root).resolve(), Path(out_dir).resolve()
    if not (root / ".dvc").is_dir():
        raise LeukemiaCNNError(f"{root} is not a DVC repository (no .dvc/ folder); run "
                               "`dvc init` there or pass --no-dvc-add")
    try:
        return out_dir.relative_to(root).as_posix()
    except ValueError:
        raise LeukemiaCNNError(f"{out_dir} is outside the DVC repository {root}; "
                               "pass --no-dvc-add") from None


def dvc_command() -> list[str]:
    import importlib.util

    if importlib.util.find_spec("dvc") is not None:
        return [sys.executable, "-m", "dvc"]
    executable = shutil.which("dvc")
    if executable is None:
        raise LeukemiaCNNError("`dvc` is not installed in this environment; install the project "
                               "(`make install`) or pass --no-dvc-add")
    return [executable]


def cache_dir(root: Path) -> Path:
    """DVC's cache folder for the repository at ``root`` (``dvc cache dir``; the default
    ``.dvc/cache`` when DVC cannot say)."""
    default = Path(root) / ".dvc" / "cache"
    try:
        command = dvc_command()
    except LeukemiaCNNError:
        return default
    result = subprocess.run([*command, "cache", "dir"], cwd=root, capture_output=True,
                            text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    listed = result.stdout.strip().splitlines()
    return Path(listed[-1]) if result.returncode == 0 and listed else default


def _run(command: list[str], root: Path, what: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        output = result.stderr or result.stdout
        if any(text in output.lower() for text in DISK_FULL_TEXTS):
            raise DiskFullError(f"`{what}` ran out of disk space (No space left on device; DVC's "
                                f"cache {cache_dir(root)}: {free_space(cache_dir(root))}, the "
                                f"project: {free_space(root)})")
        # DVC's ERROR: line (not the traceback of a library under it), else its last line
        lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
        errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
        said = errors[0] if errors else (lines[-1] if lines else "no output")
        raise LeukemiaCNNError(f"`{what}` failed in {root}: {said}; fix that or pass --no-dvc-add")
    return result


def snapshot(paths: list[Path]) -> dict[Path, bytes | None]:
    """The bytes of each of ``paths`` (None: absent), for :func:`restore`."""
    return {Path(p): Path(p).read_bytes() if Path(p).is_file() else None for p in paths}


def restore(saved: dict[Path, bytes | None]) -> None:
    """Put back the files :func:`snapshot` saw (remove those that were absent)."""
    for path, data in saved.items():
        if data is None:
            path.unlink(missing_ok=True)
        elif not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)


def dvc_track(root: Path, out_dir: Path, dvc_file: Path | None = None) -> Path:
    """``dvc add`` the folder ``out_dir`` and return the ``.dvc`` file that versions it.

    DVC 3 has no ``dvc add --file``: the first time, the ``<out_dir>.dvc`` DVC writes is moved
    to ``dvc_file`` with its path made relative to the new place. Later runs of ``dvc add``
    find the output in ``dvc_file`` and update it in place.
    """
    root = Path(root).resolve()
    out_dir = Path(out_dir).resolve()
    target = dvc_target(root, out_dir)
    command = dvc_command()
    default_file = out_dir.with_name(f"{out_dir.name}.dvc")
    fresh = dvc_file is not None and not dvc_file.exists()
    dvc_file = dvc_file or default_file
    _run([*command, "add", "--", target], root, f"dvc add {target}")
    if fresh:
        stage = yaml.safe_load(default_file.read_text())
        stage["outs"][0]["path"] = Path(os.path.relpath(out_dir, dvc_file.parent)).as_posix()
        dvc_file.write_text(yaml.safe_dump(stage, sort_keys=False))
        default_file.unlink()
        _restage(root, default_file, dvc_file)
    # DVC 3.67 can exit 0 from `dvc add` while a full cache disk left objects out
    versioned = dvc_file.resolve().relative_to(root).as_posix()
    result = _run([*command, "status", "--json", "--", versioned], root, f"dvc status {versioned}")
    if "not in cache" in result.stdout:
        cache = cache_dir(root)
        raise DiskFullError(f"`dvc add` did not store every file of {versioned} in DVC's cache "
                            f"{cache} ({free_space(cache)}); the disk holding it is probably full")
    return dvc_file


def _restage(root: Path, moved_from: Path, moved_to: Path) -> None:
    """With ``core.autostage``, DVC staged the file we moved: stage the move instead."""
    if not (root / ".git").exists() or shutil.which("git") is None:
        return
    old, new = (p.relative_to(root).as_posix() for p in (moved_from, moved_to))
    staged = subprocess.run(["git", "ls-files", "--cached", "--", old], cwd=root,
                            capture_output=True, text=True)
    if staged.returncode == 0 and staged.stdout.strip():
        subprocess.run(["git", "rm", "--cached", "--quiet", "--", old], cwd=root, check=True)
        subprocess.run(["git", "add", "--", new], cwd=root, check=True)
