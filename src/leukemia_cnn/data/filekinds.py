"""What kind of file a path is, and whether its name can be written down, before anything opens it.

The walkers of ``data get`` and ``validate-raw`` skip, with a reason, FIFOs and devices (opening
one can block for ever) and names that are not UTF-8 (Python holds their bytes as surrogates,
which the manifest, the reports and ``data.dvc`` cannot record).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# stat's test -> what a user calls that kind of file
SPECIAL_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                 (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def printable(name: str | Path) -> str:
    """``name`` with bytes that are not UTF-8 shown as ``\\xNN`` (safe to print and write)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def special_kind(path: Path) -> str | None:
    """``"a FIFO (named pipe)"``, ``"a socket"``, ... when ``path`` (links followed) is neither a
    regular file nor a folder; None otherwise, and for paths that do not exist."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return next((kind for test, kind in SPECIAL_KINDS if test(mode)), None)


def skip_problem(path: Path, relative: str | Path) -> str | None:
    """Why the walkers skip ``path`` (shown as ``relative``) before opening it: a name that is
    not UTF-8, or a special file (:func:`special_kind`); None when neither."""
    try:
        str(relative).encode("utf-8")
    except UnicodeEncodeError:
        return ("file name is not valid UTF-8; skipped (the manifest, reports and data.dvc "
                "cannot record it): rename the file")
    kind = special_kind(path)
    return None if kind is None else f"{kind}, not a regular file; skipped (opening it could block)"


def describe_missing(path: str | Path) -> str:
    """What ``path`` is when it is not a regular file, in a user's words (for one-line errors)."""
    file = Path(path)
    kind = special_kind(file)
    if kind is not None:
        return f"{printable(path)}: {kind}, not an image file"
    if file.is_dir():
        return f"{printable(path)}: a folder, not an image file"
    if file.is_symlink():
        return f"{printable(path)}: a broken symbolic link (to {printable(os.readlink(file))})"
    return f"{printable(path)}: no such file"
