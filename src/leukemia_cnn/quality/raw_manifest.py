"""The manifest of a raw image tree, one row per image file (:data:`MANIFEST_COLUMNS`), and the
content columns the raw-data suite checks (:mod:`leukemia_cnn.quality.validate_raw`)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image
from tqdm import tqdm

from leukemia_cnn.data.filekinds import printable, skip_problem
from leukemia_cnn.data.imaging import (
    N_THREADS,
    OS_JUNK,
    SkippedFile,
    open_image,
    perceptual_hash,
    skip_reason,
)
from leukemia_cnn.errors import DataError
from leukemia_cnn.fileio import OUTPUT_MARKER, file_sha256

# phash: the 64-bit perceptual hash as 16 hex digits ("" when the file does not decode); the
# split stage keeps near-duplicates together with it.
MANIFEST_COLUMNS = ("path", "class", "sha256", "phash", "size_bytes", "width", "height",
                    "format", "mode", "decodable", "error")
# Columns derived from the manifest for the content checks (not written to the manifest CSV).
DUPLICATE_OF = "duplicate_of"
LABEL_CONFLICT = "label_conflict"


def _class_of(folder: str, classes: list[str]) -> str:
    """The configured class a top-level folder holds; unknown folders keep their own name
    (the class check then fails and names their files)."""
    if folder in classes:
        return folder
    by_lower = {name.lower(): name for name in classes}
    return by_lower.get(folder.lower(), folder)


def find_image_files(raw_dir: Path, classes: list[str]) -> tuple[list[tuple[str, str]],
                                                                 list[SkippedFile]]:
    """List the image files under ``raw_dir`` with their class, and the files skipped.

    Returns ``([(relative POSIX path, class), ...], [SkippedFile, ...])``, both sorted by path.
    An image directly in ``raw_dir`` gets class ``""`` so that the class check names it.
    """
    images: list[tuple[str, str]] = []
    skipped: list[SkippedFile] = []
    for folder, dirnames, filenames in os.walk(raw_dir):
        here = Path(folder).relative_to(raw_dir)
        for dirname in list(dirnames):
            if dirname.startswith(".") or dirname.lower() in OS_JUNK:
                dirnames.remove(dirname)
                skipped.append(SkippedFile((here / dirname).as_posix() + "/",
                                           "hidden or operating-system folder (not searched)"))
            elif (Path(folder) / dirname).is_symlink():
                # os.walk does not follow it; a row makes the decode check name it
                dirnames.remove(dirname)
                relative = here / dirname
                images.append((relative.as_posix(), _class_of(relative.parts[0], classes)))
        dirnames.sort()
        for name in sorted(filenames):
            if name == OUTPUT_MARKER and not here.parts:
                continue  # the tree's own marker (a `leukemia-cnn data --output` folder)
            relative = (here / name).as_posix()
            reason = skip_reason(name) or skip_problem(Path(folder) / name, relative)
            if reason is not None:
                skipped.append(SkippedFile(printable(relative), reason))
                continue
            cls = _class_of(here.parts[0], classes) if here.parts else ""
            images.append((relative, cls))
    with_images = {Path(path).parts[0] for path, _ in images}
    for entry in sorted(raw_dir.iterdir()):
        name = entry.name
        if (entry.is_dir() and not entry.is_symlink() and name not in with_images
                and _class_of(name, classes) not in classes
                and not (name.startswith(".") or name.lower() in OS_JUNK)):
            skipped.append(SkippedFile(f"{printable(name)}/", "folder is not a configured class "
                                       "(data.classes) and holds no images"))
    return sorted(images), sorted(skipped, key=lambda item: item.path)


def _link_problem(raw_dir: Path, path: Path) -> str | None:
    """Why a symbolic link under ``raw_dir`` cannot be a data file, or None when it can."""
    if not path.is_symlink():
        return None
    target = Path(os.path.realpath(path))
    if path.is_dir():
        return (f"link to a folder ({target}); links to folders are not followed: move the "
                "images into the class folder itself")
    if not target.is_relative_to(Path(os.path.realpath(raw_dir))):
        return (f"symbolic link to {target}, outside the raw image folder: data.dvc would not "
                "version what it points to; replace the link by a copy of the file")
    return None


def inspect_image(raw_dir: Path, relative: str, cls: str) -> dict[str, Any]:
    """One manifest row: hash, size and header of ``raw_dir/relative``; whether it decodes."""
    path = raw_dir / relative
    row: dict[str, Any] = {"path": relative, "class": cls, "sha256": "", "phash": "",
                           "size_bytes": 0, "width": None, "height": None, "format": None,
                           "mode": None, "decodable": False, "error": ""}
    link_problem = _link_problem(raw_dir, path)
    if link_problem is not None:
        # never read through a link that leaves the tree; its own size keeps it off "empty"
        row["size_bytes"], row["error"] = path.lstat().st_size, link_problem
        return row
    try:
        row["size_bytes"] = path.stat().st_size
        row["sha256"] = file_sha256(path)
    except OSError as exc:
        row["error"] = f"cannot read file ({exc.strerror or exc})"
        return row
    if row["size_bytes"] == 0:
        row["error"] = "empty file (0 bytes)"
        return row
    try:
        # The header gives the format, which the decoded copy of open_image() no longer has.
        with Image.open(path) as header:
            row.update(width=header.width, height=header.height, format=header.format,
                       mode=header.mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        pass  # open_image() below records why
    try:
        row["phash"] = f"{perceptual_hash(open_image(path)):016x}"
        row["decodable"] = True
    except DataError as exc:
        # Name the file relative to raw_dir, as everywhere else in the reports.
        row["error"] = str(exc).removeprefix(f"{path}: ").replace(str(path), relative)
    return row


def build_manifest(raw_dir: Path, classes: list[str], progress: bool = True) -> pd.DataFrame:
    """Describe every image file under ``raw_dir/<Class>/`` (recursively), one row per file.

    Parameters
    ----------
    raw_dir : Path
        The raw image tree (Kaggle layout: one folder per class).
    classes : list of str
        The configured class names (``data.classes``); folders match them exactly or,
        failing that, case-insensitively. Files of other folders keep the folder name as
        class, so that :func:`validate` reports them.
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`MANIFEST_COLUMNS`, sorted by ``path``. Files that are not images (OS
        junk, dotfiles, other extensions) are not rows: they are listed, with the reason,
        in ``manifest.attrs["skipped"]`` (a list of :class:`SkippedFile`).
    """
    files, skipped = find_image_files(raw_dir, list(classes))
    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        rows = list(tqdm(pool.map(lambda item: inspect_image(raw_dir, *item), files),
                         total=len(files), desc="validate_raw: reading images", unit="img",
                         disable=not progress))
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    manifest = manifest.astype({"size_bytes": "int64", "width": "Int64", "height": "Int64",
                                "decodable": "bool"})
    manifest = manifest.sort_values("path", ignore_index=True)
    manifest.attrs["skipped"] = skipped
    return manifest


def with_content_columns(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest plus two columns for the content checks (empty string = no finding).

    ``duplicate_of``: the first file (by path) with the same bytes, on every later copy.
    ``label_conflict``: the files with the same bytes in *other* classes. Empty and unreadable
    files (no content hash) are left to the other checks.
    """
    duplicate_of = pd.Series("", index=manifest.index, dtype=object)
    label_conflict = pd.Series("", index=manifest.index, dtype=object)
    hashed = manifest[(manifest["sha256"] != "") & (manifest["size_bytes"] > 0)]
    copies = hashed[hashed["sha256"].duplicated(keep=False)]
    for _, group in copies.sort_values("path").groupby("sha256", sort=False):
        first = group["path"].iloc[0]
        duplicate_of[group.index[1:]] = first
        if group["class"].nunique() > 1:
            for index, cls in group["class"].items():
                others = group.loc[group["class"] != cls, "path"]
                label_conflict[index] = ", ".join(others)
    return manifest.assign(**{DUPLICATE_OF: duplicate_of, LABEL_CONFLICT: label_conflict})

