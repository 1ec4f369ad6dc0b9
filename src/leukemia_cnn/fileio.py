"""Atomic file writes shared by the stages: a crash or Ctrl-C never leaves a half-written output.

Each writer writes a temporary file beside the target (``.<name>.tmp``, same folder, so the
rename stays on one file system) and renames it over the target only when it is complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


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


def swap_in(staging: Path, out_dir: Path, token: str) -> None:
    """Replace ``out_dir`` by the complete ``staging`` tree: rename aside, rename in, delete."""
    previous = out_dir.with_name(f"{out_dir.name}.old-{token}")
    if out_dir.exists():
        out_dir.rename(previous)
    try:
        staging.rename(out_dir)
    except OSError:
        if previous.exists():
            previous.rename(out_dir)
        raise
    if previous.exists():
        shutil.rmtree(previous)
