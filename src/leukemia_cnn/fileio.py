"""Safe outputs: atomic writes, and the guard every command's output path goes through.

Atomic: each writer writes a temporary file beside the target (``.<name>.tmp``, same folder,
so the rename stays on one file system) and renames it over the target only when it is
complete; a folder is written beside its target and swapped in (:func:`swap_folder`). A crash
or Ctrl-C never leaves a half-written output.

Guarded (:func:`check_output`): a command writes only its own outputs. Before anything is
written, a target is refused when it is the project root (or holds it), holds files git or DVC
tracks, is a file git tracks, lies inside a DVC-tracked folder, is one of the command's inputs,
or exists without being this command's own earlier output: folders carry a marker file
(:data:`OUTPUT_MARKER`), files are recognised by their content. The command's configured
default output (``paths.raw_dir``, ``params.yaml``) is its declared output and always allowed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from leukemia_cnn.errors import OutputError

# Written inside every output folder a command writes (except its configured default, whose
# content DVC versions): `leukemia-cnn <kind>`. A folder without it is not overwritten.
OUTPUT_MARKER = ".leukemia-cnn-output"


def atomic_write(target: Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)``, then rename ``tmp_path`` to ``target``; return ``target``.

    The parent folder is created. On any error the temporary file is removed and ``target``
    keeps its previous content (or stays absent).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_text(target: Path, text: str) -> Path:
    """Write ``text`` to ``target`` atomically."""
    return atomic_write(target, lambda tmp: tmp.write_text(text))


def write_json(target: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (one trailing newline) to ``target`` atomically."""
    return write_text(target, json.dumps(data, indent=2, default=str) + "\n")


def write_csv(target: Path, frame: pd.DataFrame) -> Path:
    """Write ``frame`` without its index, ``\\n`` line ends, to ``target`` atomically."""
    return atomic_write(target, lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n"))


def save_npz(target: Path, compressed: bool = False, **arrays: np.ndarray) -> Path:
    """``numpy.savez`` (or ``savez_compressed``) of ``arrays`` to ``target`` atomically.

    The arrays go through an open handle: given a path, numpy would append ``.npz`` to the
    temporary name.
    """
    save = np.savez_compressed if compressed else np.savez

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            save(handle, **arrays)

    return atomic_write(target, write)


# ------------------------------------------------------------------------- output folders


def mark_output(folder: Path, kind: str) -> Path:
    """Mark ``folder`` as written by ``leukemia-cnn <kind>`` (see :func:`is_marked`)."""
    marker = Path(folder) / OUTPUT_MARKER
    marker.write_text(f"leukemia-cnn {kind}\n")
    return marker


def is_marked(folder: Path, kind: str) -> bool:
    """Whether ``folder`` holds the marker of ``leukemia-cnn <kind>``."""
    marker = Path(folder) / OUTPUT_MARKER
    try:
        return marker.is_file() and marker.read_text().strip() == f"leukemia-cnn {kind}"
    except OSError:
        return False


def swap_folder(staging: Path, target: Path, token: str) -> Path:
    """Replace ``target`` by the complete ``staging`` tree: rename aside, rename in, delete.

    On a failed rename the previous ``target`` is put back; return ``target``.
    """
    staging, target = Path(staging), Path(target)
    previous = target.with_name(f"{target.name}.old-{token}")
    if target.exists() or target.is_symlink():
        target.rename(previous)
    try:
        staging.rename(target)
    except OSError:
        if previous.exists() or previous.is_symlink():
            previous.rename(target)
        raise
    if previous.is_symlink() or previous.is_file():
        previous.unlink()
    elif previous.exists():
        shutil.rmtree(previous)
    return target


# ------------------------------------------------------------------------- the guard


def git_tracked(root: Path) -> list[Path]:
    """Absolute paths of the files git tracks under ``root`` (none outside a git work tree)."""
    root = Path(root).resolve()
    if shutil.which("git") is None:
        return []
    listed = subprocess.run(["git", "ls-files", "-z", "--cached"], cwd=root, capture_output=True)
    if listed.returncode != 0:
        return []
    names = listed.stdout.decode("utf-8", errors="surrogateescape").split("\0")
    return [root / name for name in names if name]


def dvc_tracked(root: Path, git_files: Iterable[Path] = ()) -> dict[Path, str]:
    """Outputs DVC tracks under ``root``: each path -> where it is declared.

    Reads the stages' ``outs``, ``metrics`` and ``plots`` of ``dvc.yaml`` and the ``outs`` of
    the ``.dvc`` files (those git tracks and those at the top of ``root``).
    """
    root = Path(root).resolve()
    found: dict[Path, str] = {}

    def load(path: Path) -> dict:
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            return {}
        return data if isinstance(data, dict) else {}

    stages = load(root / "dvc.yaml").get("stages") or {}
    for name, stage in (stages.items() if isinstance(stages, dict) else ()):
        for key in ("outs", "metrics", "plots"):
            for item in (stage.get(key) or []) if isinstance(stage, dict) else []:
                path = next(iter(item), None) if isinstance(item, dict) else item
                if isinstance(path, str):
                    found[(root / path).resolve()] = f"dvc.yaml stage {name}"
    dvc_files = {p for p in git_files if p.suffix == ".dvc"} | set(root.glob("*.dvc"))
    for dvc_file in sorted(dvc_files):
        for out in load(dvc_file).get("outs") or []:
            if isinstance(out, dict) and isinstance(out.get("path"), str):
                found[(dvc_file.parent / out["path"]).resolve()] = dvc_file.relative_to(root).as_posix()
    return found


def shown(path: str | Path, root: str | Path) -> str:
    """``path`` as a user reads it in a message: relative to the project ``root`` (``.`` for the
    root itself) when it lies inside, else as given."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix() or "."
    except ValueError:
        return str(path)


def check_output(target: str | Path, *, kind: str, root: Path, flag: str, instead: str,
                 owner: str, inputs: Iterable[str | Path] = (), default: Path | None = None,
                 owned: Callable[[Path], bool] | None = None, label: str | None = None) -> Path:
    """Refuse ``target`` unless writing it can only replace this command's own output.

    Nothing is written here; call it before any work starts.

    Parameters
    ----------
    target : str or Path
        The output path as given (relative: to the current folder).
    kind : {"file", "folder"}
        What the command writes there.
    root : Path
        The project root (git and DVC are asked what they track under it).
    flag : str
        The option that set the path, named in the message (``--output``, ``--name``).
    instead : str
        What to do instead, appended to the message.
    owner : str
        The marker a folder of this command holds (:func:`mark_output`).
    inputs : iterable of paths
        The command's inputs: an output never aliases one.
    default : Path, optional
        The command's configured default output: allowed although it may be tracked
        (``params.yaml`` by git, ``data/raw`` by DVC) and carries no marker.
    owned : callable, optional
        Recognises an existing target as this command's earlier output (default: a folder
        holding the ``owner`` marker; no file is recognised).
    label : str, optional
        How to show the target after ``flag`` (default: as given).

    Returns
    -------
    Path
        The target with symbolic links resolved: where to write.

    Raises
    ------
    OutputError
        Naming the path, the reason and ``instead``.
    """
    root = Path(root).resolve()
    given = Path(target).expanduser()
    real = (given if given.is_absolute() else Path.cwd() / given).resolve()

    def refuse(reason: str) -> None:
        raise OutputError(f"{flag} {label or target}: {reason}; nothing was written. {instead}")

    if root.is_relative_to(real):
        refuse("is the project root" if real == root else f"holds the project {root}")
    for item in inputs:
        source = Path(item).expanduser().resolve()
        if real == source:
            refuse(f"is an input of this command ({item})")
        if kind == "folder" and (source.is_relative_to(real) or real.is_relative_to(source)):
            refuse(f"overlaps the input {item}")
    is_default = default is not None and real == Path(default).resolve()
    git_files = git_tracked(root)
    for path in git_files:
        if path == real and not is_default:
            refuse("is a file git tracks")
        if path.is_relative_to(real) and path != real:
            refuse(f"holds files git tracks (e.g. {shown(path, root)})")
    dvc_outs = dvc_tracked(root, git_files)
    for path, declared in dvc_outs.items():
        if path.is_relative_to(real) and path != real:
            refuse(f"holds {shown(path, root)}, an output DVC tracks ({declared})")
        if real.is_relative_to(path) and path != real:
            refuse(f"is inside {shown(path, root)}, an output DVC tracks ({declared})")

    if owned is None:
        def owned(path: Path) -> bool:
            return kind == "folder" and is_marked(path, owner)
    exists = real.exists()
    if real in dvc_outs and not is_default and not (exists and owned(real)):
        refuse(f"is an output DVC tracks ({dvc_outs[real]}), not this command's")
    if exists and not is_default:
        if kind == "folder" and not real.is_dir():
            refuse("exists and is not a folder")
        if kind == "file" and real.is_dir():
            refuse("is a folder; pass a file path")
        if not owned(real):
            what = (f"an existing folder `leukemia-cnn {owner}` did not write (it has no "
                    f"{OUTPUT_MARKER} file)" if kind == "folder"
                    else f"an existing file that is not an earlier output of `leukemia-cnn {owner}`")
            refuse(f"is {what}")
    ancestor = real.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        refuse(f"{ancestor} is not a folder")
    return real
