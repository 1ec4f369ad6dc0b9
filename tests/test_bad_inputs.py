"""The catalogue of bad inputs (docs/data-quality.md): each one, placed in data/raw or in a
source of `leukemia-cnn data get`, gets its documented outcome (an error naming the file, or
a reported skip/warning), and the raw data, the source and earlier outputs stay unchanged."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import REPO_ROOT, table_rows
from helpers.datasets import (
    CLASSES,
    add_symlink_entry,
    class_tree,
    earlier_data_output,
    image_bytes,
    kaggle_zip,
    tree_digest,
    write_file,
    write_image,
)
from leukemia_cnn.config import load_config
from leukemia_cnn.data.ingest import get as ingest
from leukemia_cnn.errors import DataError
from leukemia_cnn.fileio import OUTPUT_RECORD
from leukemia_cnn.quality import validate_raw


@pytest.fixture(scope="module")
def cfg():
    return load_config(["data=kaggle"], root=REPO_ROOT)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (decompression bomb)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


def sixteen_bit_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(1600, dtype=np.uint16).reshape(40, 40) * 40).save(buffer, "PNG")
    return buffer.getvalue()


def put(relative: str, data: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
    def build(tree: Path) -> None:
        write_file(tree / relative, data() if callable(data) else data)
    return build


def empty_class(tree: Path) -> None:
    for path in (tree / "Pro").iterdir():
        path.unlink()


def junk(tree: Path) -> None:
    (tree / "Benign" / "Thumbs.db").write_bytes(b"\x00" * 64)
    (tree / ".DS_Store").write_bytes(b"\x00" * 64)
    (tree / "Pre" / "notes.txt").write_text("stained 2019-03")


def duplicate(within: bool) -> Callable[[Path], None]:
    def build(tree: Path) -> None:
        target = tree / ("Early" if within else "Pro") / "copy.jpg"
        target.write_bytes((tree / "Early" / "WBC-Early-001.jpg").read_bytes())
    return build


def link_outside(tree: Path) -> None:
    outside = write_image(tree.parent.parent / "elsewhere" / "private.jpg", seed=4242)
    (tree / "Pre" / "linked.jpg").symlink_to(outside)


@dataclass(frozen=True)
class Case:
    """A bad input and its documented outcomes (``error`` or ``ok`` + what the user reads)."""

    build: Callable[[Path], None]
    raw: str  # leukemia-cnn validate-raw on data/raw holding it
    raw_says: tuple[str, ...]
    get: str  # leukemia-cnn data get from a folder holding it
    get_says: tuple[str, ...]


NOT_DECODABLE = "every file decodes as an image"
CATALOGUE = {
    "corrupt JPEG": Case(put("Benign/corrupt.jpg", image_bytes(1)[:30] + os.urandom(300)),
                         "error", (NOT_DECODABLE, "Benign/corrupt.jpg: not a decodable image"),
                         "error", ("Benign/corrupt.jpg: not a decodable image",)),
    "truncated JPEG": Case(put("Benign/truncated.jpg", image_bytes(2, size=(64, 64))[:400]),
                           "error", ("Benign/truncated.jpg: not a decodable image",),
                           "error", ("Benign/truncated.jpg: not a decodable image",)),
    "zero-byte file": Case(put("Early/empty.jpg", b""),
                           "error", ("no file is empty", "Early/empty.jpg: empty file (0 bytes)"),
                           "error", ("Early/empty.jpg: empty file (0 bytes)",)),
    "text file named .jpg": Case(put("Pre/readme.jpg", b"scanned at 40x\n"),
                                 "error", ("Pre/readme.jpg: not a decodable image",),
                                 "error", ("Pre/readme.jpg: not a decodable image",)),
    "RGBA PNG": Case(put("Pro/alpha.png", lambda: image_bytes(3, mode="RGBA", fmt="PNG")),
                     "error", ("colour mode", "Pro/alpha.png: mode=RGBA"),
                     "error", ("Pro/alpha.png: mode=RGBA",)),
    "CMYK JPEG": Case(put("Pro/cmyk.jpg", lambda: image_bytes(4, mode="CMYK")),
                      "error", ("Pro/cmyk.jpg: mode=CMYK",), "error", ("Pro/cmyk.jpg: mode=CMYK",)),
    "16-bit PNG": Case(put("Pro/deep.png", sixteen_bit_png),
                       "error", ("Pro/deep.png: mode=I;16",), "error", ("Pro/deep.png: mode=I;16",)),
    "palette PNG": Case(put("Pro/palette.png", lambda: _palette_png()),
                        "error", ("Pro/palette.png: mode=P",), "error", ("Pro/palette.png: mode=P",)),
    "grayscale JPEG": Case(put("Pro/gray.jpg", lambda: image_bytes(5, mode="L")),
                           "ok", ("Pro/gray.jpg",), "ok", ("Pro/gray.jpg",)),
    "tiny image": Case(put("Early/tiny.jpg", lambda: image_bytes(6, size=(8, 8))),
                       "error", ("width is between", "Early/tiny.jpg: width=8"),
                       "error", ("Early/tiny.jpg: width=8",)),
    "oversized image": Case(put("Early/huge.png", lambda: image_bytes(7, size=(5000, 33), fmt="PNG")),
                            "error", ("Early/huge.png: width=5000",),
                            "error", ("Early/huge.png: width=5000",)),
    "decompression bomb": Case(put("Early/bomb.png", png_bomb),
                               "error", ("Early/bomb.png: not a decodable image", "decompression bomb"),
                               "error", ("Early/bomb.png", "decompression bomb guard")),
    "upper-case extensions": Case(put("Benign/UPPER.JPG", lambda: image_bytes(8)),
                                  "ok", ("Benign/UPPER.JPG",), "ok", ("Benign/UPPER.JPG",)),
    "nested sub-folder": Case(put("Benign/batch2/deep/cell.jpeg", lambda: image_bytes(9)),
                              "ok", ("Benign/batch2/deep/cell.jpeg",),
                              "ok", ("Benign/batch2/deep/cell.jpeg",)),
    "empty class folder": Case(empty_class, "error", ("class Pro: no images",),
                               "error", ("class Pro: no images",)),
    "missing class": Case(lambda tree: shutil.rmtree(tree / "Pro"),
                          "error", ("class Pro: no images",), "error", ("class Pro: no images",)),
    "unknown class folder": Case(put("Mature/cell.jpg", lambda: image_bytes(10)),
                                 "error", ("unknown class folder Mature/ (1 image file)",
                                           "Mature/cell.jpg: folder Mature/ is not a configured class"),
                                 "error", ("Mature/ (1 file)", "data.skip_unknown_classes")),
    "image outside class folders": Case(put("loose.jpg", lambda: image_bytes(11)),
                                        "error", ("loose.jpg: not inside a class folder",),
                                        "error", ("loose.jpg (outside any class folder)",)),
    "duplicate within a class": Case(duplicate(within=True),
                                     "ok", ("Early/copy.jpg: same content (sha256) as "
                                            "Early/WBC-Early-001.jpg",),
                                     "ok", ("no two files have the same content",)),
    "duplicate across classes": Case(duplicate(within=False),
                                     "error", ("label conflict", "Pro/copy.jpg: same content (sha256) "
                                               "as Early/WBC-Early-001.jpg in another class"),
                                     "error", ("Pro/copy.jpg: same content (sha256) as "
                                               "Early/WBC-Early-001.jpg in another class",)),
    "junk files": Case(junk, "ok", ("Benign/Thumbs.db", ".DS_Store", "Pre/notes.txt"),
                       "ok", ("Benign/Thumbs.db", ".DS_Store", "Pre/notes.txt")),
    "symlink pointing outside": Case(link_outside,
                                     "error", ("Pre/linked.jpg: symbolic link to",
                                               "outside the raw image folder"),
                                     "error", ("Pre/linked.jpg is a symbolic link to",
                                               "outside the source folder")),
}


def _palette_png() -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(image_bytes(12))).convert("P").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def earlier_manifest(cfg, tmp_path_factory):
    """The manifest of an earlier, good run on the tree every case starts from."""
    root = tmp_path_factory.mktemp("good")
    class_tree(root / "data" / "raw")
    validate_raw.run(cfg, root)
    return (root / cfg.paths.manifest).read_bytes()


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_validate_raw_outcome(cfg, tmp_path, name, earlier_manifest):
    case = CATALOGUE[name]
    raw = class_tree(tmp_path / "data" / "raw")
    (tmp_path / cfg.paths.manifest).write_bytes(earlier_manifest)
    case.build(raw)
    raw_before = tree_digest(raw)

    if case.raw == "error":
        with pytest.raises(DataError) as info:
            validate_raw.run(cfg, tmp_path)
        told = str(info.value)
        assert (tmp_path / cfg.paths.manifest).read_bytes() == earlier_manifest
    else:
        validate_raw.run(cfg, tmp_path)
        told = (tmp_path / "reports" / "validate_raw.md").read_text()
        assert "PASSED" in told
        told += (tmp_path / cfg.paths.manifest).read_text()  # the file is a row of the manifest
    for fragment in case.raw_says:
        assert fragment in told
    assert tree_digest(raw) == raw_before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["manifest.csv", "raw"]


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_data_get_outcome(cfg, tmp_path, name, capsys):
    case = CATALOGUE[name]
    source = class_tree(tmp_path / "source" / "images")
    case.build(source)
    source_before = tree_digest(tmp_path / "source")
    raw = class_tree(tmp_path / "project" / "data" / "raw", prefix="OLD", seed=9)
    earlier_data_output(raw)  # an earlier `data get`: provably its own, so replaceable
    raw_before = tree_digest(raw)

    if case.get == "error":
        with pytest.raises(DataError) as info:
            ingest.ingest(cfg, source, raw, validate=validate_raw.check_staged, progress=False)
        told = str(info.value)
        assert tree_digest(raw) == raw_before
        assert sorted(p.name for p in raw.parent.iterdir()) == [OUTPUT_RECORD, "raw"]
    else:
        result = ingest.ingest(cfg, source, raw, validate=validate_raw.check_staged, progress=False)
        ingest._report(result, tmp_path / "project", 0.0)
        told = capsys.readouterr().out + "\n".join(str(p.relative_to(raw)) for p in raw.rglob("*"))
        assert not list(raw.rglob("OLD-*"))
    for fragment in case.get_says:
        assert fragment in told
    assert tree_digest(tmp_path / "source") == source_before


ZIP_CASES = {
    "path traversal": ({"../../evil.jpg": image_bytes(1)}, "climbs out of the extraction folder"),
    "absolute path": ({"/etc/cron.d/evil.jpg": image_bytes(1)}, "has an absolute path"),
    "decompression bomb": ({"Original/Pre/bomb.png": png_bomb()}, "Original/Pre/bomb.png"),
}


@pytest.mark.parametrize("name", [*ZIP_CASES, "symlink entry", "not a zip"])
def test_bad_archives_are_refused_before_data_raw_changes(cfg, tmp_path, name):
    archive = tmp_path / "download" / "leukemia.zip"
    if name in ZIP_CASES:
        extra, says = ZIP_CASES[name]
        kaggle_zip(archive, extra=extra)
    elif name == "symlink entry":
        kaggle_zip(archive)
        add_symlink_entry(archive, "Original/Benign/escape.jpg", "../../../../etc/passwd")
        says = "'Original/Benign/escape.jpg' is a symbolic link"
    else:
        archive.parent.mkdir()
        archive.write_bytes(b"<html>Sign in to download</html>")
        says = "not a readable zip archive"
    archive_before = tree_digest(archive)
    raw = earlier_data_output(class_tree(tmp_path / "project" / "data" / "raw", prefix="OLD",
                                         seed=9))
    raw_before = tree_digest(raw)

    with pytest.raises(DataError) as info:
        ingest.ingest(cfg, archive, raw, validate=validate_raw.check_staged, progress=False)

    assert says in str(info.value)
    assert tree_digest(raw) == raw_before and tree_digest(archive) == archive_before
    assert sorted(p.name for p in raw.parent.iterdir()) == [OUTPUT_RECORD, "raw"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["download", "project"]


def start_validation(cwd: Path) -> subprocess.Popen:
    """The validation command exactly as CI runs it, in a fresh process."""
    return subprocess.Popen([sys.executable, "-m", "leukemia_cnn.cli", "validate-raw", "--params",
                             str(REPO_ROOT / "params.yaml")], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_validation_command_is_red_on_a_broken_dataset_and_green_on_a_good_one(tmp_path):
    good_dir, bad_dir = tmp_path / "good", tmp_path / "bad"
    class_tree(good_dir / "data" / "raw")
    raw = class_tree(bad_dir / "data" / "raw")
    (raw / "Early" / "broken.jpg").write_bytes(image_bytes(3)[:200])
    (raw / "Pro" / "copy.jpg").write_bytes((raw / "Benign" / "WBC-Benign-000.jpg").read_bytes())

    # both at once: each process spends most of its time importing Great Expectations
    good, bad = start_validation(good_dir), start_validation(bad_dir)
    (good_out, good_err), (_, bad_err) = good.communicate(timeout=300), bad.communicate(timeout=300)

    assert good.returncode == 0, good_err[-2000:]
    assert '"success": true' in good_out
    assert (good_dir / "data" / "manifest.csv").is_file()
    assert "PASSED" in (good_dir / "reports" / "validate_raw.md").read_text()

    assert bad.returncode == 1
    assert "Early/broken.jpg: not a decodable image" in bad_err
    assert "Pro/copy.jpg: same content (sha256) as Benign/WBC-Benign-000.jpg" in bad_err
    assert "Traceback" not in bad_err
    assert not (bad_dir / "data" / "manifest.csv").exists()
    report = (bad_dir / "reports" / "validate_raw.md").read_text()
    assert "FAILED" in report and "Early/broken.jpg" in report
    assert [CLASSES[0], "6"] in table_rows(report)
