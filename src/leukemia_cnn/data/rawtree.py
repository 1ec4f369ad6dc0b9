"""Where ``leukemia-cnn data synth|get`` write a raw image tree, and how it is swapped in.

Both commands write the new tree beside the output folder (:func:`staging_folder`), mark it
when it is not ``paths.raw_dir`` and swap it in only once complete, so that an interrupted or
refused run leaves the previous tree as it was. Files of the previous tree that no record
holds are never destroyed (:mod:`leukemia_cnn.data.localfiles`). The previous tree waits
aside until ``dvc add`` has versioned the new one, with every file in DVC's cache; when it
fails (a full disk), the previous tree and its ``.dvc`` file are put back.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from leukemia_cnn.data import versioning
from leukemia_cnn.data.localfiles import (
    refusal,
    set_aside,
    tree_listing,
    unrecorded_files,
)
from leukemia_cnn.data.staging import staging_folder
from leukemia_cnn.errors import LeukemiaCNNError, full_disk_cause, full_disk_error
from leukemia_cnn.fileio import (
    check_output,
    declared_by,
    mark_output,
    record_output,
    replacing_folder,
    shown,
)

# The marker of a raw image tree `data synth` or `data get` wrote (outside paths.raw_dir).
RAW_OUTPUT = "data"
# The .dvc file that versions paths.raw_dir.
RAW_DVC_FILE = "data.dvc"
Filled = TypeVar("Filled")


@dataclass(frozen=True)
class RawTarget:
    """Where a raw tree goes: ``out_dir``; ``mark`` it (any folder but ``paths.raw_dir``, which
    is recorded beside it instead); the folder ``data.dvc`` ``declares`` (replaced without a
    marker); the ``dvc_file`` versioning ``out_dir`` (None: DVC does not); whether local files
    may be moved aside (``discard_local``); ``root``, the project (for messages)."""

    out_dir: Path
    mark: bool
    declared: Path | None
    dvc_file: Path | None = None
    discard_local: bool = False
    root: Path | None = None

    @classmethod
    def of(cls, root: Path, out_dir: Path, raw_dir: Path, discard_local: bool = False,
           dvc_add: bool = False) -> RawTarget:
        """The target of ``out_dir``; with ``dvc_add``, refuse first, before anything is
        written, an output ``dvc add`` cannot version (outside the repository, no DVC)."""
        if dvc_add:
            versioning.dvc_target(root, out_dir)
            versioning.dvc_command()
        declared = declared_by(root, RAW_DVC_FILE)
        versioned = declared is not None and Path(out_dir).resolve() == declared.resolve()
        return cls(Path(out_dir), Path(out_dir).resolve() != Path(raw_dir).resolve(), declared,
                   Path(root) / RAW_DVC_FILE if versioned else None, discard_local, Path(root))

    @property
    def shown_root(self) -> Path:
        return self.root or self.out_dir.parent

    def check_local_files(self, final: bool = False) -> None:
        """Refuse (or, with ``discard_local`` and ``final``, move aside) the files of
        ``out_dir`` that no record holds; ``final``: just before the swap."""
        found = unrecorded_files(self.out_dir, self.dvc_file, RAW_OUTPUT)
        if not found:
            return
        if not self.discard_local:
            record = (f"{self.dvc_file.name} and DVC's cache" if self.dvc_file is not None else
                      "the listing the last `leukemia-cnn data` run kept")
            raise refusal(self.out_dir, found, self.shown_root, record)
        if final:
            set_aside(self.out_dir, found, self.shown_root)


def write_raw_tree(target: RawTarget, fill: Callable[[Path], Filled],
                   version: Callable[[], object] | None = None) -> Filled:
    """Write a tree with ``fill(staging)`` beside ``target.out_dir``, swap it in as the module
    says, run ``version()`` (``dvc add``) while the previous tree waits aside; return what
    ``fill`` returned. An existing ``out_dir`` is replaced only when it is ``declared`` or an
    earlier ``leukemia-cnn data`` output (:func:`fileio.replacing_folder`); when ``version``
    fails, the folder's ``.gitignore`` is put back too."""
    out_dir = target.out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    kept = f"{shown(out_dir, target.shown_root)} is as it was"
    with staging_folder(out_dir) as (staging, token):  # removed on SIGTERM too
        try:
            filled = fill(staging)
        except Exception as exc:
            if full_disk_cause(exc) is None:
                raise
            raise full_disk_error(exc, staging, kept) from exc
        if target.mark:
            mark_output(staging, RAW_OUTPUT)
        listing = tree_listing(staging)
        target.check_local_files(final=True)
        saved = versioning.snapshot([target.dvc_file or out_dir.with_name(f"{out_dir.name}.dvc"),
                                     out_dir.parent / ".gitignore"])
        try:
            with replacing_folder(staging, out_dir, token, RAW_OUTPUT, target.declared):
                if version is not None:
                    version()
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)  # the new tree: its space first
            versioning.restore(saved)
            if isinstance(exc, LeukemiaCNNError):
                dvc_file = target.dvc_file.name if target.dvc_file else "its .dvc file"
                raise type(exc)(f"{exc}; {kept} and so is {dvc_file}. Free some space (or move "
                                "DVC's cache: `dvc cache dir PATH`) and run the command again"
                                if full_disk_cause(exc) else f"{exc}; {kept}") from exc
            raise
    record_output(out_dir, RAW_OUTPUT, files=listing)
    return filled


def dvc_add_raw_tree(target: RawTarget, origin: dict[str, str] | None) -> Path:
    """``dvc add`` ``target.out_dir`` (in ``data.dvc`` when it is ``paths.raw_dir``) and record
    where it came from there (:func:`leukemia_cnn.data.lineage.record_origin`; None, the
    built-in set, forgets a recorded ``data get`` source); return the ``.dvc`` file."""
    from leukemia_cnn.data.lineage import record_origin

    dvc_file = None if target.mark else target.root / RAW_DVC_FILE
    tracked = versioning.dvc_track(target.root, target.out_dir, dvc_file)
    record_origin(tracked, origin)  # runs and model versions name their data from it
    return tracked


def raw_output(output: str | None, raw_dir: Path) -> Path:
    """Where ``data synth|get`` write: ``--output`` (relative: to the current folder, as for
    every command's --output) or the configured ``paths.raw_dir``."""
    if not output:
        return Path(raw_dir)
    given = Path(output).expanduser()
    return given if given.is_absolute() else Path.cwd() / given


def check_raw_output(out_dir: Path, root: Path, inputs: Sequence[Path] = (),
                     label: str | None = None) -> Path:
    """The guard of ``data synth`` and ``data get``'s output (see
    :func:`leukemia_cnn.fileio.check_output`): a new folder, the one ``data.dvc`` declares,
    or one an earlier ``leukemia-cnn data`` run wrote; returns the folder to write."""
    return check_output(out_dir, kind="folder", root=root, flag="--output" if label else
                        "paths.raw_dir", owner=RAW_OUTPUT, declared=declared_by(root, RAW_DVC_FILE),
                        inputs=inputs, label=label or shown(out_dir, root),
                        instead="Pass --output with a new folder or one an earlier "
                                "`leukemia-cnn data` run wrote")


def commit_hint(root: Path, tracked: Path, out_dir: Path) -> str:
    """``data.dvc versions data/raw; commit it with `git add -- ...``` (paths quoted)."""
    files = [shown(tracked, root), shown(out_dir.parent / ".gitignore", root)]
    return (f"{shown(tracked, root)} versions {shown(out_dir, root)}; commit it with "
            f"`git add -- {shlex.join(files)}`")
