"""Safe outputs: atomic writes, and the guard every command's output path goes through.

Atomic: each writer writes a temporary file beside the target (``.<name>.<random>.tmp``,
created exclusively, so no file of the user's is ever taken for it) and renames it over the
target when complete; a folder is written beside its target and swapped in
(:func:`replacing_folder`). A crash, Ctrl-C or a full disk never leaves a half-written output.

Guarded (:func:`check_output`; every refusal in docs/data-quality.md): a command writes only
its own outputs. Ownership is recorded, never guessed from content: a folder carries a marker
file (:data:`OUTPUT_MARKER`), a file is listed with its sha256 in the record of its folder
(:data:`OUTPUT_RECORD`), so a file edited by hand since is no longer the command's; or a
manifest of the project declares the path as the command's (``data.dvc``, DVC's Hydra
integration for ``params.yaml``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leukemia_cnn.errors import OutputError, full_disk_cause, full_disk_error, nearest
from leukemia_cnn.tracked import dvc_tracked, git_tracked

if TYPE_CHECKING:  # numpy and pandas are imported where they write: `check-config` needs neither
    import numpy as np
    import pandas as pd

# Written inside every output folder a command writes: `leukemia-cnn <kind>`. A folder
# without it (or a manifest declaring it) is not overwritten. DVC ignores it (.dvcignore).
OUTPUT_MARKER = ".leukemia-cnn-output"
# Beside the output files a command writes: {file name: {"by": kind, "sha256": ...}}.
OUTPUT_RECORD = ".leukemia-cnn-outputs.json"
# Folders that belong to a tool (version control, DVC, MLflow stores, Python environments and
# caches): no output goes into one, wherever it lies (`.git/hooks/pre-commit` would run).
TOOL_FOLDERS = frozenset({".git", ".hg", ".svn", ".dvc", "mlruns", "mlartifacts", ".venv",
                          "venv", ".tox", ".nox", "node_modules", "__pycache__", ".mypy_cache",
                          ".pytest_cache", ".ruff_cache", ".hypothesis", ".ipynb_checkpoints"})
# Where the kernel keeps devices and process files: never a place for an output file.
SYSTEM_FOLDERS = (Path("/dev"), Path("/proc"), Path("/sys"))
# The --output value that means "print to stdout" (for the commands that offer it).
STDOUT = "-"


def atomic_write(target: Path, write: Callable[[Path], Any], owner: str | None = None) -> Path:
    """Call ``write(tmp_path)``, then rename ``tmp_path`` to ``target``; return ``target``.

    The parent folder is created. On any error the temporary file is removed and ``target``
    keeps its previous content (or stays absent). With ``owner``, the file is recorded as the
    output of ``leukemia-cnn <owner>`` (:func:`record_output`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        tmp.open("x").close()  # exclusive: this name is ours, whatever lies in the folder
        write(tmp)
        os.replace(tmp, target)
    except Exception as exc:
        if full_disk_cause(exc) is None:
            raise
        raise full_disk_error(exc, target, "no half-written file is left") from exc
    finally:
        tmp.unlink(missing_ok=True)
    if owner is not None:
        record_output(target, owner)
    return target


def write_text(target: Path, text: str, owner: str | None = None) -> Path:
    """Write ``text`` to ``target`` atomically (recorded as ``owner``'s output when given)."""
    return atomic_write(target, lambda tmp: tmp.write_text(text), owner)


def write_json(target: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (one trailing newline) to ``target`` atomically."""
    return write_text(target, json.dumps(data, indent=2, default=str) + "\n")


def write_csv(target: Path, frame: pd.DataFrame) -> Path:
    """Write ``frame`` without its index, ``\\n`` line ends, to ``target`` atomically."""
    return atomic_write(target, lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n"))


def save_npz(target: Path, compressed: bool = False, **arrays: np.ndarray) -> Path:
    """``numpy.savez`` (or ``savez_compressed``) of ``arrays`` to ``target`` atomically (through
    an open handle: given a path, numpy would append ``.npz`` to the temporary name)."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            save(handle, **arrays)

    return atomic_write(target, write)


def mark_output(folder: Path, kind: str) -> None:
    """Mark ``folder`` as written by ``leukemia-cnn <kind>`` (see :func:`is_marked`)."""
    (Path(folder) / OUTPUT_MARKER).write_text(f"leukemia-cnn {kind}\n")


def is_marked(folder: Path, kind: str) -> bool:
    """Whether ``folder`` holds the marker of ``leukemia-cnn <kind>``."""
    marker = Path(folder) / OUTPUT_MARKER
    try:
        return marker.is_file() and marker.read_text().strip() == f"leukemia-cnn {kind}"
    except OSError:
        return False


def swap_folder(staging: Path, target: Path, token: str, owner: str, declared: Path | None = None) -> Path:
    """Replace ``target`` by the complete ``staging`` tree (:func:`replacing_folder`)."""
    with replacing_folder(staging, target, token, owner, declared):
        return Path(target)


@contextlib.contextmanager
def replacing_folder(staging: Path, target: Path, token: str, owner: str,
                     declared: Path | None = None) -> Iterator[Path]:
    """Swap the complete ``staging`` tree in for ``target``; the previous one waits aside
    (``<target>.old-<token>``) while the block runs: deleted when it ends, put back (the new
    tree back to ``staging``) when it raises, Ctrl-C included. ``target`` is replaced only when
    it is provably ``leukemia-cnn <owner>``'s: marked, or ``declared`` by a manifest such as
    ``data.dvc``; anything else raises OutputError and stays."""
    staging, target = Path(staging), Path(target)
    present = target.exists() or target.is_symlink()
    empty = target.is_dir() and not target.is_symlink() and not any(target.iterdir())
    if present and not (empty or is_own(target, "folder", owner, declared)):
        raise OutputError(f"{target} is not an earlier output of `leukemia-cnn {owner}` (it has "
                          f"no {OUTPUT_MARKER} file); it was left as it was")
    previous, swapped = target.with_name(f"{target.name}.old-{token}"), False
    if present:
        target.rename(previous)
    try:
        staging.rename(target)
        swapped = True
        yield target
    except BaseException:
        if swapped:
            target.rename(staging)  # the caller removes its staging folder
        if present:
            previous.rename(target)
        raise
    if previous.is_symlink() or previous.is_file():
        previous.unlink()
    elif previous.exists():
        shutil.rmtree(previous)


def file_sha256(path: Path) -> str:
    """The sha256 of ``path``'s bytes (hex)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _read_record(record: Path) -> dict:
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_output(path: Path, owner: str, files: dict[str, str] | None = None) -> Path:
    """Record ``path`` (a file as it is, or a folder with its ``files`` as ``{relative path: md5}``)
    as ``leukemia-cnn <owner>``'s, in the :data:`OUTPUT_RECORD` of its parent; return the record."""
    path, record = Path(path), Path(path).parent / OUTPUT_RECORD
    entries = _read_record(record)
    entries[path.name] = ({"by": owner, "folder": True, **({"files": files} if files else {})}
                          if path.is_dir() else {"by": owner, "sha256": file_sha256(path)})
    return write_text(record, json.dumps(entries, indent=2, sort_keys=True) + "\n")


def output_entry(path: Path) -> dict:
    """The record of ``path`` in its folder's :data:`OUTPUT_RECORD` (empty when none)."""
    entry = _read_record(Path(path).parent / OUTPUT_RECORD).get(Path(path).name)
    return entry if isinstance(entry, dict) else {}


def is_own(path: Path, kind: str, owner: str, declared: Path | None = None) -> bool:
    """Whether ``path`` is ``leukemia-cnn <owner>``'s output: ``declared`` by a manifest, a
    marked folder (:func:`is_marked`), or recorded beside it: a folder, or a file whose content
    is unchanged since (an edited file is the user's now)."""
    path = Path(path)
    if declared is not None and path.resolve() == Path(declared).resolve():
        return True
    if kind == "folder" and is_marked(path, owner):
        return True
    entry = output_entry(path)
    if entry.get("by") != owner:
        return False
    if entry.get("folder"):
        return path.is_dir() and not path.is_symlink()
    try:
        return path.is_file() and entry.get("sha256") == file_sha256(path)
    except OSError:
        return False


def shown(path: str | Path, root: str | Path) -> str:
    """``path`` as a user reads it in a message: relative to the project ``root`` (``.`` for the
    root itself) when it lies inside, else as given."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix() or "."
    except ValueError:
        return str(path)


def declared_by(root: Path, manifest: str) -> Path | None:
    """The output the project's ``manifest`` (e.g. ``data.dvc``) declares, if any."""
    outs = [path for path, where in dvc_tracked(root).items() if where == manifest]
    return outs[0] if len(outs) == 1 else None


def _project_reason(real: Path, root: Path) -> str | None:
    if root.is_relative_to(real):
        return "is the project root" if real == root else f"holds the project {root}"
    if real.name in (OUTPUT_MARKER, OUTPUT_RECORD):
        return "is the output record of leukemia-cnn, not an output"
    return None


def _tool_reason(target: str | Path, real: Path) -> str | None:
    """Why an output path, as typed (``target``) or with links resolved (``real``), is a tool's
    place (:data:`TOOL_FOLDERS`, a folder holding ``pyvenv.cfg``) or a device's
    (:data:`SYSTEM_FOLDERS`), or None."""
    given = Path(os.path.abspath(Path(target).expanduser()))
    for path in (given, real):
        system = next((folder for folder in SYSTEM_FOLDERS if path.is_relative_to(folder)), None)
        if system is not None:
            return (f"is in {system}, a device or process file, not a file to write; to print "
                    "to the terminal or a pipe, pass --output - where the command offers it")
        tool = next((part for part in path.parts if part in TOOL_FOLDERS), None)
        if tool is not None:
            return f"is inside {tool}, a folder that belongs to a tool (git, DVC, MLflow, Python)"
        venv = next((folder for folder in path.parents if (folder / "pyvenv.cfg").is_file()),
                    None)
        if venv is not None:
            return f"is inside {venv}, a Python virtual environment"
    return None


def _input_reason(real: Path, kind: str, inputs: Iterable[str | Path]) -> str | None:
    for item in inputs:
        source = Path(item).expanduser().resolve()
        if real == source:
            return f"is an input of this command ({item})"
        if kind == "folder" and (source.is_relative_to(real) or real.is_relative_to(source)):
            return f"overlaps the input {item}"
    return None


def _git_reason(real: Path, root: Path, git_files: list[Path], declared: bool) -> str | None:
    for path in () if declared else git_files:
        if path == real:
            return "is a file git tracks"
        if path.is_relative_to(real):
            return f"holds files git tracks (e.g. {shown(path, root)})"
    return None


def _dvc_reason(real: Path, root: Path, outs: dict[Path, str],
                own: Callable[[], bool]) -> str | None:
    for path, where in outs.items():
        if path.is_relative_to(real) and path != real:
            return f"holds {shown(path, root)}, an output DVC tracks ({where})"
        if real.is_relative_to(path) and path != real:
            return f"is inside {shown(path, root)}, an output DVC tracks ({where})"
    if real in outs and not own():
        return f"is an output DVC tracks ({outs[real]}), not this command's"
    return None


def _existing_reason(real: Path, kind: str, owner: str, own: Callable[[], bool]) -> str | None:
    if not real.exists():
        return None
    if kind == "folder" and not real.is_dir():
        return "exists and is not a folder"
    if kind == "file" and real.is_dir():
        return "is a folder; pass a file path"
    if kind == "file" and not real.is_file():
        return "is not a regular file (a device or pipe)"
    if own() or (kind == "folder" and not any(real.iterdir())):  # empty: nothing to lose
        return None
    if kind == "folder":
        return (f"is an existing folder `leukemia-cnn {owner}` did not write (it has no "
                f"{OUTPUT_MARKER} file)")
    return (f"is an existing file `leukemia-cnn {owner}` did not write (or that was edited "
            f"since: it is not in {OUTPUT_RECORD} as written)")


def _parent_reason(real: Path) -> str | None:
    ancestor = nearest(real.parent)
    return None if ancestor.is_dir() else f"{ancestor} is not a folder"


def check_output(target: str | Path, *, kind: str, root: Path, flag: str, instead: str,
                 owner: str, inputs: Iterable[str | Path] = (), declared: Path | None = None,
                 label: str | None = None) -> Path:
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
        Whose output may be replaced: a folder marked by ``leukemia-cnn <owner>``
        (:func:`mark_output`) or a file recorded as its (:func:`record_output`), unchanged.
    inputs : iterable of paths
        The command's inputs: an output never aliases one.
    declared : Path, optional
        The output a manifest of the project declares as this command's (read from the
        manifest, never from the config): it may be tracked and carry no marker.
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
    root, real = Path(root).resolve(), Path(target).expanduser().resolve()  # relative: to cwd
    is_declared = declared is not None and real == Path(declared).resolve()
    git_files = git_tracked(root)
    own = functools.partial(is_own, real, kind, owner, declared)
    checks = (lambda: STDOUT in (str(target), label) and "this command writes files, not to "
              "stdout", lambda: _project_reason(real, root), lambda: _tool_reason(target, real),
              lambda: _input_reason(real, kind, inputs),
              lambda: _git_reason(real, root, git_files, is_declared),
              lambda: _dvc_reason(real, root, dvc_tracked(root, git_files), own),
              lambda: _existing_reason(real, kind, owner, own), lambda: _parent_reason(real))
    for check in checks:
        reason = check()
        if reason:
            raise OutputError(f"{flag} {label or target}: {reason}; nothing was written. {instead}")
    return real
