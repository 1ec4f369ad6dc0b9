"""Files of a raw image folder that no record holds: what replacing the folder would destroy.

A file may go only when it can be brought back: unchanged in the version the ``.dvc`` file
declaring the folder (``data.dvc``) records, with its object in DVC's cache; or, in a folder DVC
does not version, unchanged since the last ``leukemia-cnn data`` run wrote it (the listing
:func:`leukemia_cnn.fileio.record_output` keeps beside it). Any other file is the user's: the
command refuses and names it, or with ``--discard-local-changes`` first moves it to
``<folder>.local-<time>/`` (docs/data-quality.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from leukemia_cnn.errors import LeukemiaCNNError, OutputError
from leukemia_cnn.fileio import OUTPUT_MARKER, output_entry, shown

MAX_SHOWN = 10


@dataclass(frozen=True)
class LocalFile:
    """A file of the folder that no record holds: its path inside the folder, and why."""

    path: str
    why: str


def file_md5(path: Path) -> str:
    """The md5 of ``path``'s bytes (hex), as DVC records it."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def tree_files(folder: Path) -> dict[str, Path]:
    """Every file (and link) under ``folder`` by its POSIX path inside it, but the marker."""
    found = {}
    for parent, folders, files in os.walk(folder):
        names = files + [name for name in folders if os.path.islink(os.path.join(parent, name))]
        for name in names:
            path = Path(parent) / name
            relative = path.relative_to(folder).as_posix()
            if relative != OUTPUT_MARKER:
                found[relative] = path
    return found


def tree_listing(folder: Path) -> dict[str, str]:
    """``{path inside folder: md5}`` of every file: what a ``leukemia-cnn data`` run wrote."""
    return {relative: file_md5(path) for relative, path in tree_files(folder).items()
            if path.is_file()}


@dataclass(frozen=True)
class DvcRecord:
    """The version of a folder that a ``.dvc`` file records: ``{path: md5}``, and where the
    cache keeps each object."""

    files: dict[str, str]
    objects: Path

    def cached(self, md5: str) -> bool:
        return (self.objects / md5[:2] / md5[2:]).is_file()


def dvc_record(dvc_file: Path, folder: Path) -> DvcRecord | None:
    """What ``dvc_file`` records of ``folder`` (files and cache), or None when it does not
    declare it. The ``.dir`` object (a JSON list of ``{md5, relpath}``) is read from DVC's
    cache (``dvc cache dir``); when it is missing, nothing of the folder is recoverable."""
    from leukemia_cnn.data.versioning import cache_dir

    try:
        outs = yaml.safe_load(Path(dvc_file).read_text()).get("outs") or []
    except (OSError, AttributeError, yaml.YAMLError):
        return None
    out = next((o for o in outs if isinstance(o, dict) and isinstance(o.get("path"), str)
                and (Path(dvc_file).parent / o["path"]).resolve() == Path(folder).resolve()), None)
    if out is None or not str(out.get("md5", "")).endswith(".dir"):
        return None
    cache = cache_dir(Path(dvc_file).parent)
    # DVC 3 keeps `hash: md5` outputs under files/md5; older ones at the top of the cache.
    record = DvcRecord({}, cache / "files" / "md5" if out.get("hash") == "md5" else cache)
    listing = record.objects / out["md5"][:2] / out["md5"][2:]
    try:
        entries = json.loads(listing.read_text())
    except (OSError, ValueError):
        return record
    record.files.update({e["relpath"]: e["md5"] for e in entries
                         if isinstance(e, dict) and "relpath" in e and "md5" in e})
    return record


def _why(relative: str, md5: str | None, record: DvcRecord | None) -> str | None:
    """Why the file would be lost, or None when DVC's cache holds it."""
    if record is None:
        return "in no recorded version"
    recorded = record.files.get(relative)
    if recorded is None:
        return "new"
    if recorded != md5:
        return "edited"
    return None if record.cached(md5) else "not in DVC's cache"


def unrecorded_files(folder: Path, dvc_file: Path | None, owner: str) -> list[LocalFile]:
    """The files of ``folder`` that replacing it would destroy (see the module doc).

    ``dvc_file`` is the ``.dvc`` file versioning ``folder`` (None: DVC does not);
    ``owner`` the command whose recorded listing counts (``data``).
    """
    files = tree_files(folder) if Path(folder).is_dir() else {}
    if not files:
        return []
    record = dvc_record(dvc_file, folder) if dvc_file is not None else None
    entry = output_entry(folder) if record is None else {}  # DVC's record, when it has one
    ours = entry.get("files") if entry.get("by") == owner else None
    ours = ours if isinstance(ours, dict) else {}
    found = []
    for relative, path in sorted(files.items()):
        md5 = file_md5(path) if path.is_file() else None
        if md5 is not None and ours.get(relative) == md5:
            continue
        why = _why(relative, md5, record) if md5 else "a link to nothing"
        if why:
            found.append(LocalFile(relative, why))
    return found


def _listed(found: list[LocalFile]) -> str:
    """``a (new), b (edited)``, or ``a, b (all new)`` when they share the reason."""
    whys = {item.why for item in found}
    names = [item.path if len(whys) == 1 else f"{item.path} ({item.why})"
             for item in found[:MAX_SHOWN]]
    text = ", ".join(names) + (f" and {len(found) - MAX_SHOWN} more"
                               if len(found) > MAX_SHOWN else "")
    return f"{text} ({'all ' if len(found) > 1 else ''}{found[0].why})" if len(whys) == 1 else text


def refusal(folder: Path, found: list[LocalFile], root: Path, record: str) -> OutputError:
    """The one-line refusal naming the files and the three ways on."""
    where = shown(folder, root)
    return OutputError(
        f"{where} holds {len(found)} file(s) that are in no recorded version ({record}) and "
        f"that replacing it would delete: {_listed(found)}; nothing was changed. Keep them with "
        f"`dvc add {shlex.quote(where)}` (then commit the .dvc file) or move them elsewhere; or "
        f"pass --discard-local-changes to move them to {where}.local-<time>/ first")


def set_aside(folder: Path, found: list[LocalFile], root: Path) -> Path:
    """Move ``found`` out of ``folder`` into a new ``<folder>.local-<time>/`` (same layout);
    print what went where and return that folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = folder.with_name(f"{folder.name}.local-{stamp}")
    number = 1
    while aside.exists():
        number += 1
        aside = folder.with_name(f"{folder.name}.local-{stamp}-{number}")
    for item in found:
        target = aside / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.move(folder / item.path, target)
        except OSError as exc:
            raise LeukemiaCNNError(f"could not move {folder / item.path} to {target} "
                                   f"({exc.strerror or exc}); nothing was replaced") from exc
    print(f"moved {len(found)} file(s) of {shown(folder, root)} that no recorded version holds "
          f"to {shown(aside, root)}/ (recover them from there): {_listed(found)}")
    return aside
