"""The one exception type a user of leukemia-cnn can hit, and the exit statuses of
``leukemia-cnn`` (as ``leukemia-cnn --help`` documents them)."""

import os
import shutil
from collections.abc import Callable
from pathlib import Path

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# Images unlike the training images: `predict --reject-unfamiliar` flagged one, or `drift` found drift.
EXIT_UNFAMILIAR = 4
# `drift` on fewer images than drift.min_images found no drift: too few images to judge.
EXIT_TOO_FEW = 5


class LeukemiaCNNError(Exception):
    """A problem the user can fix: the message says what was wrong, where and how to fix it.

    The CLI prints the message (no traceback) and exits with status 1.
    """


class ConfigError(LeukemiaCNNError):
    """A configuration value is invalid; the message names the key, the value and what is allowed."""


class DataError(LeukemiaCNNError):
    """Input data is missing or unusable; the message names the offending files."""


class OutputError(LeukemiaCNNError):
    """An output path would overwrite something the command does not own (the project, a
    tracked file, an input, a folder it did not write); nothing was written."""


class DiskFullError(OutputError):
    """A write failed because the disk (or the user's quota) is full; the message names the
    path, the free space there and what was kept."""


# How a full disk shows itself: OSError's errno, or the text sqlite and DVC put in its place.
DISK_FULL_ERRNOS = (28, 122)  # ENOSPC, EDQUOT
DISK_FULL_TEXTS = ("no space left on device", "database or disk is full", "disk quota exceeded")


def full_disk_cause(exc: BaseException | None) -> BaseException | None:
    """The exception in ``exc``'s chain (``__cause__``/``__context__``) that says the disk is
    full, or None; our own :class:`DiskFullError` (which names the path) first. MLflow,
    SQLAlchemy and Keras wrap the OSError; the chain keeps it."""
    chain: list[BaseException] = []
    while exc is not None and all(exc is not seen for seen in chain):
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    ours = [item for item in chain if isinstance(item, DiskFullError)]
    errnos = [item for item in chain if isinstance(item, OSError)
              and item.errno in DISK_FULL_ERRNOS]  # the failed write itself, maybe its path
    texts = [item for item in chain if any(text in str(item).lower() for text in DISK_FULL_TEXTS)]
    return (ours or errnos or texts or [None])[0]


def nearest(path: Path, test: Callable[[Path], bool] = Path.exists) -> Path:
    """``path`` or its nearest ancestor where ``test`` holds (default: exists), else the root."""
    return next((p for p in (path, *path.parents) if test(p)), Path(path.anchor))


def free_space(path) -> str:
    """``"<mount point> has N MB free"`` for the file system holding ``path`` (or its nearest
    existing folder), or an empty string when it cannot be read."""
    folder = nearest(Path(path).absolute())
    mount = nearest(folder, os.path.ismount)
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return ""
    return f"{mount} has {usage.free / 1e6:,.1f} MB free of {usage.total / 1e6:,.1f} MB"


def full_disk_error(cause: BaseException, path, kept: str) -> DiskFullError:
    """One line for a full disk: the full path that could not be written (the OSError's own
    file name when it has one, else ``path``; None: unknown), the space left there and
    ``kept`` (what is intact)."""
    # shutil.copy's error names the source, then the destination: the one that filled
    named = getattr(cause, "filename2", None) or getattr(cause, "filename", None) or path
    where = os.path.abspath(os.fsdecode(named)) if named else None
    space = free_space(where or ".")
    return DiskFullError(f"no space left on device{f' writing {where}' if where else ''}"
                         f"{f' ({space})' if space else ''}; {kept}. Free some space there "
                         "and run the command again")
