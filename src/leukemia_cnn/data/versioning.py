"""DVC versioning of a data folder: `dvc add` it and keep its `.dvc` file where the project
expects it (``data.dvc`` for ``data/raw``), staging the move in git when DVC auto-stages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from leukemia_cnn.errors import LeukemiaCNNError


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


def _run(command: list[str], root: Path, what: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise LeukemiaCNNError(f"`{what}` failed in {root}: {' | '.join(detail)}; fix that "
                               "or pass --no-dvc-add")
    return result


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
    _run([*command, "add", target], root, f"dvc add {target}")
    if dvc_file is None or not fresh:
        return dvc_file or default_file

    stage = yaml.safe_load(default_file.read_text())
    stage["outs"][0]["path"] = Path(os.path.relpath(out_dir, dvc_file.parent)).as_posix()
    dvc_file.write_text(yaml.safe_dump(stage, sort_keys=False))
    default_file.unlink()
    _restage(root, default_file, dvc_file)
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
