"""Small image trees and archives the ingestion and bad-input tests make themselves."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["Benign", "Early", "Pre", "Pro"]
PER_CLASS = 6


def image_bytes(seed: int, size: tuple[int, int] = (40, 40), mode: str = "RGB",
                fmt: str = "JPEG") -> bytes:
    """A small noise image, different for every seed."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "CMYK": 4}.get(mode)
    shape = (size[1], size[0], channels) if channels else (size[1], size[0])
    image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def write_file(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path``, creating its folders (any bytes: images, junk, bombs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_image(path: Path, seed: int, **kwargs) -> Path:
    """Write :func:`image_bytes` of ``seed`` to ``path``, creating its folders."""
    return write_file(path, image_bytes(seed, **kwargs))


def class_tree(folder: Path, per_class: int = PER_CLASS, classes=CLASSES, seed: int = 0,
               prefix: str = "WBC", **image) -> Path:
    """``folder/<Class>/<prefix>-<Class>-NNN.jpg``: a valid tree of distinct images
    (``image``: :func:`image_bytes`'s size, mode, format)."""
    for index, cls in enumerate(classes):
        for number in range(per_class):
            write_image(folder / cls / f"{prefix}-{cls}-{number:03d}.jpg",
                        seed=seed * 10_000 + index * 100 + number, **image)
    return folder


def kaggle_zip(path: Path, per_class: int = PER_CLASS, variants=("Original", "Segmented"),
               extra: dict[str, bytes] | None = None) -> Path:
    """The Kaggle archive layout: ``<Variant>/<Class>/WBC-<Class>-NNN.jpg`` plus ``extra``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for offset, variant in enumerate(variants):
            for index, cls in enumerate(CLASSES):
                for number in range(per_class):
                    archive.writestr(f"{variant}/{cls}/WBC-{cls}-{number:03d}.jpg",
                                     image_bytes(offset * 10_000 + index * 100 + number))
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


def add_symlink_entry(path: Path, name: str, target: str) -> None:
    """Append a symbolic-link entry (as `zip --symlinks` writes it) to an archive."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(info, target)


def tree_digest(path: Path) -> dict[str, str]:
    """Every entry under ``path`` (files by sha256, links by target, folders): a fingerprint."""
    path = Path(path)
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    digest = {}
    for folder, dirnames, filenames in os.walk(path):
        here = Path(folder)
        for name in dirnames + filenames:
            item = here / name
            key = item.relative_to(path).as_posix()
            if item.is_symlink():
                digest[key] = "link:" + os.readlink(item)
            elif item.is_dir():
                digest[key] = "dir"
            else:
                digest[key] = hashlib.sha256(item.read_bytes()).hexdigest()
    return digest


def earlier_data_output(folder: Path) -> Path:
    """Make ``folder`` what an earlier ``leukemia-cnn data get|synth --output`` left: marked,
    with the listing of the files it wrote beside it (so a later run may replace it)."""
    from leukemia_cnn.data.localfiles import tree_listing
    from leukemia_cnn.data.rawtree import RAW_OUTPUT
    from leukemia_cnn.fileio import mark_output, record_output

    mark_output(folder, RAW_OUTPUT)
    record_output(folder, RAW_OUTPUT, files=tree_listing(folder))
    return folder


def write_tiny_split(root: Path, images) -> None:
    """The split table and raw images of a tiny project from 8 PIL images: image ``i`` of class
    ``CLASSES[i % 4]`` as ``<Class>/f<i>.png``; 6 train, 1 val, 1 test."""
    import pandas as pd

    rows = []
    for index, image in enumerate(images):
        name = CLASSES[index % 4]
        relative = f"{name}/f{index}.png"
        (root / "data" / "raw" / name).mkdir(parents=True, exist_ok=True)
        image.save(root / "data" / "raw" / relative)
        split = "train" if index < 6 else ("val" if index == 6 else "test")
        rows.append({"path": relative, "class": name, "label": index % 4, "split": split})
    pd.DataFrame(rows).to_csv(root / "data" / "splits.csv", index=False)
