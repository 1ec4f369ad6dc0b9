"""Where ``leukemia-cnn data synth|get`` write a raw image tree, and how it is swapped in.

Both commands write the new tree beside the output folder (:func:`staging_folder`), mark it
when it is not ``paths.raw_dir`` and swap it in only once complete, so that an interrupted or
refused run leaves the previous tree as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from leukemia_cnn.data import versioning
from leukemia_cnn.data.staging import staging_folder
from leukemia_cnn.fileio import check_output, declared_by, mark_output, shown, swap_folder

# The marker of a raw image tree `data synth` or `data get` wrote (outside paths.raw_dir).
RAW_OUTPUT = "data"
Filled = TypeVar("Filled")


def write_raw_tree(out_dir: Path, fill: Callable[[Path], Filled], mark: bool,
                   declared: Path | None) -> Filled:
    """Write a tree with ``fill(staging)`` beside ``out_dir``, then swap it in; return what
    ``fill`` returned.

    The staging folder is removed however the block ends (SIGTERM included). ``mark`` puts
    the :data:`RAW_OUTPUT` marker in the tree (any folder but ``paths.raw_dir``, which the
    caller records beside it instead); an existing ``out_dir`` is replaced only when it is
    ``declared`` or an earlier ``leukemia-cnn data`` output (:func:`fileio.swap_folder`).
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with staging_folder(out_dir) as (staging, token):  # removed on SIGTERM too
        filled = fill(staging)
        if mark:
            mark_output(staging, RAW_OUTPUT)
        swap_folder(staging, out_dir, token, RAW_OUTPUT, declared)
    return filled


def check_dvc_target(root: Path, out_dir: Path) -> None:
    """Refuse, before anything is written, an output ``dvc add`` cannot version (outside the
    repository, no DVC installed)."""
    versioning.dvc_target(root, out_dir)
    versioning.dvc_command()


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
                        "paths.raw_dir", owner=RAW_OUTPUT, declared=declared_by(root, "data.dvc"),
                        inputs=inputs, label=label or shown(out_dir, root),
                        instead="Pass --output with a new folder or one an earlier "
                                "`leukemia-cnn data` run wrote")
