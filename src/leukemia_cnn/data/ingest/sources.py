"""The sources ``leukemia-cnn data get`` reads: a zip archive or a folder, listed safely, read only.

Zip entries that are links, absolute or climb out with ``..`` refuse the whole archive, as do
links that leave a source folder; special files and names that are not UTF-8 are skipped with
the reason (:mod:`leukemia_cnn.data.filekinds`).
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from leukemia_cnn.data.filekinds import printable, skip_problem
from leukemia_cnn.data.imaging import SkippedFile
from leukemia_cnn.errors import DataError


@dataclass(frozen=True)
class Entry:
    """A file of a source: its POSIX path inside the source and its (declared) size."""

    name: str
    size: int


class ZipSource:
    """A zip archive, read in place; unsafe entries refuse the whole archive."""

    def __init__(self, path: Path):
        self.path = path
        self.label = path.name
        self.skipped: list[SkippedFile] = []  # a zip holds no special files; names are text
        try:
            self._archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{path}: not a readable zip archive ({exc}); download it again or "
                            "unpack it and pass the folder with --source") from exc
        self._by_name: dict[str, zipfile.ZipInfo] = {}

    def entries(self) -> list[Entry]:
        entries = []
        for info in self._archive.infolist():
            name = info.filename.replace("\\", "/")
            where = f"{self.label}: entry {info.filename!r}"
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DataError(f"{where} is a symbolic link; archives with links are refused "
                                "(a link can point outside the data). Unpack it yourself and "
                                "pass the folder with --source")
            if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
                raise DataError(f"{where} has an absolute path; refusing to extract the archive")
            if ".." in name.split("/"):
                raise DataError(f"{where} climbs out of the extraction folder ('..'); refusing "
                                "to extract the archive (path traversal)")
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise DataError(f"{where} is encrypted; unpack the archive yourself and pass "
                                "the folder with --source")
            parts = [part for part in name.split("/") if part not in ("", ".")]
            entries.append(Entry("/".join(parts), info.file_size))
            self._by_name[entries[-1].name] = info
        return entries

    def open(self, name: str) -> BinaryIO:
        return self._archive.open(self._by_name[name])

    def close(self) -> None:
        self._archive.close()


class FolderSource:
    """A folder, read in place; links to folders and links leaving it are refused."""

    def __init__(self, path: Path):
        self.path = path.resolve()
        self.label = str(path)
        # FIFOs, devices, sockets and names that are not UTF-8 (filekinds.py), with why
        self.skipped: list[SkippedFile] = []

    def entries(self) -> list[Entry]:
        entries = []
        for folder, dirnames, filenames in os.walk(self.path):
            here = Path(folder)
            for dirname in sorted(dirnames):
                if (here / dirname).is_symlink():
                    raise DataError(f"{here / dirname} is a link to a folder "
                                    f"({os.path.realpath(here / dirname)}); links to folders are "
                                    "not followed: copy the folder in instead")
            dirnames.sort()
            for filename in sorted(filenames):
                path = here / filename
                if path.is_symlink():
                    target = Path(os.path.realpath(path))
                    if not target.is_relative_to(self.path):
                        raise DataError(f"{path} is a symbolic link to {target}, outside the "
                                        f"source folder {self.label}; refusing to follow it. "
                                        "Copy the file in instead of linking it")
                    if not target.exists():
                        raise DataError(f"{path} is a broken symbolic link (to {target})")
                relative = path.relative_to(self.path).as_posix()
                reason = skip_problem(path, relative)
                if reason is not None:
                    self.skipped.append(SkippedFile(printable(relative), reason))
                    continue
                entries.append(Entry(relative, path.stat().st_size))
        return entries

    def open(self, name: str) -> BinaryIO:
        return (self.path / name).open("rb")

    def close(self) -> None:
        pass


@contextmanager
def open_source(path: Path) -> Iterator[ZipSource | FolderSource]:
    """The zip file or folder at ``path`` as a source (DataError when it is neither)."""
    if path.is_dir():
        source: ZipSource | FolderSource = FolderSource(path)
    elif path.is_file():
        source = ZipSource(path)
    else:
        raise DataError(f"source {path} does not exist; pass the Kaggle zip, an image folder, "
                        "`kaggle` or `synthetic` with --source (or set data.source)")
    try:
        yield source
    finally:
        source.close()

