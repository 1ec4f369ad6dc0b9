"""Stage validate_raw: manifest of data/raw, Great Expectations checks, reports, failures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from helpers import REPO_ROOT, table_rows
from leukemia_cnn.config import load_config
from leukemia_cnn.errors import ConfigError, DataError
from leukemia_cnn.quality import raw_manifest, validate_raw

CLASSES = ["Benign", "Early", "Pre", "Pro"]
PER_CLASS = 5  # the default validation.min_images_per_class


@pytest.fixture(scope="module")
def cfg():
    return load_config(root=REPO_ROOT)


def save_image(path: Path, size: tuple[int, int] = (40, 40), mode: str = "RGB", shade: int = 0,
               fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = (shade % 256,) * len(mode) if len(mode) > 1 else shade % 256
    Image.new(mode, size, colour).save(path, format=fmt)
    return path


def make_raw(root: Path, per_class: int = PER_CLASS, classes: list[str] = CLASSES) -> Path:
    """A valid raw tree root/data/raw/<Class>/*.jpg with distinct little images."""
    raw = root / "data" / "raw"
    for index, cls in enumerate(classes):
        for number in range(per_class):
            save_image(raw / cls / f"WBC-{cls}-{number:03d}.jpg", shade=index * 40 + number)
    return raw


def run_failing(cfg, root: Path) -> str:
    """Run the stage, expect DataError, return its message; the manifest must not appear."""
    with pytest.raises(DataError) as info:
        validate_raw.run(cfg, root)
    assert not (root / cfg.paths.manifest).exists()
    return str(info.value)


def test_good_set_passes_and_writes_manifest_and_reports(cfg, tmp_path):
    raw = make_raw(tmp_path)

    summary = validate_raw.run(cfg, tmp_path)

    assert summary["success"] is True
    assert summary["n_images"] == 4 * PER_CLASS
    assert summary["counts_per_class"] == dict.fromkeys(CLASSES, PER_CLASS)
    manifest = pd.read_csv(tmp_path / cfg.paths.manifest, keep_default_na=False)
    assert list(manifest.columns) == list(raw_manifest.MANIFEST_COLUMNS)
    assert manifest["path"].tolist() == sorted(manifest["path"])
    first = manifest.iloc[0]
    assert first["path"] == "Benign/WBC-Benign-000.jpg"
    assert first["class"] == "Benign"
    assert first["sha256"] == hashlib.sha256((raw / first["path"]).read_bytes()).hexdigest()
    assert first["size_bytes"] == (raw / first["path"]).stat().st_size
    assert (first["width"], first["height"], first["format"], first["mode"]) == (40, 40, "JPEG", "RGB")
    assert manifest["decodable"].all()

    report = json.loads((tmp_path / "reports" / "validate_raw.json").read_text())
    assert report["success"] is True
    assert report["n_images"] == 4 * PER_CLASS
    assert report["n_failed_expectations"] == 0
    assert report["counts_per_class"] == dict.fromkeys(CLASSES, PER_CLASS)
    assert all(item["success"] for item in report["expectations"])
    names = {item["name"] for item in report["expectations"]}
    assert {"expect_column_values_to_be_in_set", "expect_column_values_to_be_between",
            "expect_table_row_count_to_be_between"} <= names
    markdown = (tmp_path / "reports" / "validate_raw.md").read_text()
    assert "PASSED" in markdown and ["Benign", "5"] in table_rows(markdown)


def _truncated(path: Path) -> None:
    save_image(path, size=(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_FILES = {
    "truncated JPEG": ("Benign/broken.jpg", _truncated, "decodes"),
    "zero-byte file": ("Early/empty.jpg", lambda p: p.write_bytes(b""), "empty"),
    "text named .jpg": ("Pre/readme.jpg", lambda p: p.write_text("not an image"), "decodes"),
    "CMYK image": ("Pro/cmyk.jpg", lambda p: save_image(p, mode="CMYK"), "mode=CMYK"),
    "too small": ("Pro/tiny.png", lambda p: save_image(p, size=(8, 8), fmt="PNG"), "width=8"),
    "unknown format": ("Pro/legacy.bmp", lambda p: save_image(p, fmt="BMP"), "format=BMP"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_fails_naming_it_and_writes_no_manifest(cfg, tmp_path, case):
    relative, make, expected = BAD_FILES[case]
    raw = make_raw(tmp_path)
    make(raw / relative)

    message = run_failing(cfg, tmp_path)

    assert relative in message
    assert expected in message
    assert "reports/validate_raw.md" in message
    report = json.loads((tmp_path / "reports" / "validate_raw.json").read_text())
    assert report["success"] is False and report["n_failed_expectations"] >= 1
    offending = {path for item in report["expectations"] for path in item["offending"]}
    assert relative in offending
    assert relative in (tmp_path / "reports" / "validate_raw.md").read_text()


def test_failure_leaves_an_earlier_manifest_unchanged(cfg, tmp_path):
    raw = make_raw(tmp_path)
    validate_raw.run(cfg, tmp_path)
    manifest_path = tmp_path / cfg.paths.manifest
    before = manifest_path.read_bytes()
    (raw / "Benign" / "empty.jpg").write_bytes(b"")

    with pytest.raises(DataError, match="Benign/empty.jpg"):
        validate_raw.run(cfg, tmp_path)

    assert manifest_path.read_bytes() == before
    assert not list(manifest_path.parent.glob("*.tmp"))


def test_missing_class_folder_fails_naming_the_class(cfg, tmp_path):
    make_raw(tmp_path, classes=["Benign", "Early", "Pre"])

    message = run_failing(cfg, tmp_path)

    assert "class Pro" in message


def test_class_with_too_few_images_fails_naming_the_class(cfg, tmp_path):
    raw = make_raw(tmp_path)
    for path in sorted((raw / "Early").iterdir())[2:]:
        path.unlink()

    message = run_failing(cfg, tmp_path)

    assert "class Early: 2 images" in message
    assert "at least 5" in message


def test_unknown_folder_and_loose_file_fail_the_class_check(cfg, tmp_path):
    raw = make_raw(tmp_path)
    save_image(raw / "Mature" / "cell.jpg")
    save_image(raw / "loose.jpg")

    message = run_failing(cfg, tmp_path)

    assert "Mature/cell.jpg: folder Mature/ is not a configured class" in message
    assert "loose.jpg: not inside a class folder" in message


def test_junk_files_are_skipped_and_reported(cfg, tmp_path):
    raw = make_raw(tmp_path)
    (raw / "Benign" / "Thumbs.db").write_bytes(b"\x00" * 10)
    (raw / ".DS_Store").write_bytes(b"\x00" * 10)
    (raw / "Pre" / "notes.txt").write_text("scanned 2019")
    (raw / ".ipynb_checkpoints").mkdir()
    (raw / ".ipynb_checkpoints" / "x.jpg").write_bytes(b"")

    summary = validate_raw.run(cfg, tmp_path)

    assert summary["n_images"] == 4 * PER_CLASS and summary["n_skipped"] == 4
    manifest = pd.read_csv(tmp_path / cfg.paths.manifest)
    assert not manifest["path"].str.contains("Thumbs|DS_Store|notes|ipynb").any()
    report = json.loads((tmp_path / "reports" / "validate_raw.json").read_text())
    skipped = {item["path"]: item["reason"] for item in report["skipped"]}
    assert set(skipped) == {"Benign/Thumbs.db", ".DS_Store", "Pre/notes.txt", ".ipynb_checkpoints/"}
    assert "not an image extension" in skipped["Pre/notes.txt"]
    markdown = (tmp_path / "reports" / "validate_raw.md").read_text()
    assert "Pre/notes.txt" in markdown and "Benign/Thumbs.db" in markdown


def test_missing_or_empty_raw_dir_says_how_to_get_data(cfg, tmp_path):
    with pytest.raises(DataError, match="leukemia-cnn data synth"):
        validate_raw.run(cfg, tmp_path)
    (tmp_path / "data" / "raw" / "Benign").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "Benign" / "Thumbs.db").write_bytes(b"x")
    with pytest.raises(DataError, match="no image files.*leukemia-cnn data synth"):
        validate_raw.run(cfg, tmp_path)
    assert not (tmp_path / cfg.paths.manifest).exists()


def test_build_manifest_rows_are_sorted_and_describe_each_file(tmp_path):
    raw = make_raw(tmp_path, per_class=2)
    save_image(raw / "benign" / "sub" / "gray.png", mode="L", fmt="PNG")
    (raw / "Pre" / "bad.jpeg").write_text("oops")

    manifest = raw_manifest.build_manifest(raw, CLASSES, progress=False)

    assert list(manifest.columns) == list(raw_manifest.MANIFEST_COLUMNS)
    assert manifest["path"].tolist() == sorted(manifest["path"])
    rows = manifest.set_index("path")
    # folders match the configured class case-insensitively, searched recursively
    assert rows.loc["benign/sub/gray.png", "class"] == "Benign"
    assert rows.loc["benign/sub/gray.png", ["format", "mode"]].tolist() == ["PNG", "L"]
    assert not rows.loc["Pre/bad.jpeg", "decodable"]
    assert "not a decodable image" in rows.loc["Pre/bad.jpeg", "error"]
    assert str(raw) not in rows.loc["Pre/bad.jpeg", "error"]
    assert manifest.attrs["skipped"] == []
    again = raw_manifest.build_manifest(raw, CLASSES, progress=False)
    pd.testing.assert_frame_equal(manifest, again)


def test_invalid_rules_raise_config_error_naming_the_key(cfg, tmp_path):
    manifest = raw_manifest.build_manifest(make_raw(tmp_path, per_class=1), CLASSES, progress=False)
    rules = {**dict(cfg.validation), "min_width": 500, "max_width": 100}
    with pytest.raises(ConfigError, match="validation.min_width"):
        validate_raw.validate(manifest, CLASSES, rules)
    rules = {key: value for key, value in dict(cfg.validation).items() if key != "allowed_modes"}
    with pytest.raises(ConfigError, match="validation.allowed_modes"):
        validate_raw.validate(manifest, CLASSES, rules)


def test_exact_duplicates_are_reported_but_do_not_fail(cfg, tmp_path):
    raw = make_raw(tmp_path)
    original = raw / "Benign" / "WBC-Benign-000.jpg"
    (raw / "Benign" / "copy.jpg").write_bytes(original.read_bytes())

    summary = validate_raw.run(cfg, tmp_path)

    assert summary["success"] is True
    assert any("duplicates" in warning for warning in summary["warnings"])
    report = json.loads((tmp_path / "reports" / "validate_raw.json").read_text())
    assert report["n_duplicate_sha256"] == 1 and report["n_warnings"] == 1
    duplicate = next(item for item in report["expectations"] if item["kind"] == "duplicate")
    assert duplicate["success"] is False and duplicate["severity"] == "warning"
    # the later copy (by path) is named, with the file it copies
    assert duplicate["offending"] == ["Benign/copy.jpg"]
    assert duplicate["offending_values"] == ["Benign/WBC-Benign-000.jpg"]
    markdown = (tmp_path / "reports" / "validate_raw.md").read_text()
    assert "Warnings" in markdown and "Benign/copy.jpg: same content (sha256) as" in markdown


def test_same_content_in_two_classes_is_a_label_conflict(cfg, tmp_path):
    raw = make_raw(tmp_path)
    (raw / "Pro" / "relabelled.jpg").write_bytes((raw / "Early" / "WBC-Early-001.jpg").read_bytes())

    message = run_failing(cfg, tmp_path)

    assert "label conflict" in message
    assert "Pro/relabelled.jpg: same content (sha256) as Early/WBC-Early-001.jpg" in message
    assert "Early/WBC-Early-001.jpg: same content (sha256) as Pro/relabelled.jpg" in message


def test_empty_files_are_not_counted_as_duplicates_or_conflicts(cfg, tmp_path):
    raw = make_raw(tmp_path)
    for cls in ("Benign", "Pre"):
        (raw / cls / "empty.jpg").write_bytes(b"")
    manifest = raw_manifest.build_manifest(raw, CLASSES, progress=False)

    checked = raw_manifest.with_content_columns(manifest)

    assert (checked[raw_manifest.DUPLICATE_OF] == "").all()
    assert (checked[raw_manifest.LABEL_CONFLICT] == "").all()


def test_class_share_outside_bounds_fails_naming_the_class(cfg, tmp_path):
    raw = make_raw(tmp_path)
    for number in range(PER_CLASS, 20):  # Early: 20 of 35 images = 57% > 45%
        save_image(raw / "Early" / f"extra-{number}.jpg", shade=100 + number * 3)

    message = run_failing(cfg, tmp_path)

    assert "class Early holds 10% to 45% of the images" in message
    assert "class Early: 20 images (57.1%)" in message
    assert "class Benign:" not in message


def test_unknown_folder_is_listed_once_and_empty_unknown_folder_is_reported(cfg, tmp_path):
    raw = make_raw(tmp_path)
    for number in range(3):
        save_image(raw / "mature" / f"cell-{number}.jpg", shade=200 + number)

    message = run_failing(cfg, tmp_path)

    assert "unknown class folder mature/ (3 image files)" in message

    for path in (raw / "mature").iterdir():
        path.unlink()
    (raw / "mature" / "Thumbs.db").write_bytes(b"x")
    (raw / "Unused").mkdir()
    validate_raw.run(cfg, tmp_path)
    report = json.loads((tmp_path / "reports" / "validate_raw.json").read_text())
    reasons = {item["path"]: item["reason"] for item in report["skipped"]}
    assert "not a configured class" in reasons["Unused/"]
    assert "not a configured class" in reasons["mature/"]


def test_links_leaving_the_raw_folder_or_to_folders_fail_naming_them(cfg, tmp_path):
    raw = make_raw(tmp_path)
    outside = save_image(tmp_path / "elsewhere" / "outside.jpg", shade=250)
    (raw / "Pre" / "link.jpg").symlink_to(outside)
    (raw / "Pro" / "batch2").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (raw / "Benign" / "inside.jpg").symlink_to(raw / "Benign" / "WBC-Benign-001.jpg")

    message = run_failing(cfg, tmp_path)

    assert "Pre/link.jpg: symbolic link to" in message and "outside the raw image folder" in message
    assert "Pro/batch2: link to a folder" in message
    # a link inside the tree is read through: only a duplicate (a warning, not in the error)
    assert "Benign/inside.jpg" not in message


def test_share_rules_are_checked(cfg, tmp_path):
    manifest = raw_manifest.build_manifest(make_raw(tmp_path, per_class=1), CLASSES, progress=False)
    for rules, key in (({"min_class_share": 0.5, "max_class_share": 0.4}, "validation.min_class_share"),
                       ({"max_class_share": 1.5}, "validation.max_class_share")):
        with pytest.raises(ConfigError, match=key):
            validate_raw.validate(manifest, CLASSES, {**dict(cfg.validation), **rules})
