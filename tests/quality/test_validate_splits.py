"""Stage validate_splits: a good split stays green; leaks, near-duplicates, skewed class
shares and wrong sizes turn it red naming the files and the expectation; nothing upstream
(raw data, manifest, split table) changes."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from PIL import Image, ImageEnhance

from helpers import REPO_ROOT, table_rows
from helpers.datasets import class_tree, tree_digest
from leukemia_cnn.cli.main import main as cli_main
from leukemia_cnn.config import load_config
from leukemia_cnn.data import split
from leukemia_cnn.errors import ConfigError, DataError
from leukemia_cnn.quality import validate_raw, validate_splits

PER_CLASS = 20


@pytest.fixture(scope="module")
def cfg():
    return load_config(root=REPO_ROOT)


@pytest.fixture
def project(cfg, tmp_path):
    """A raw tree of distinct images, its manifest and the split stage's table."""
    class_tree(tmp_path / cfg.paths.raw_dir, per_class=PER_CLASS)
    validate_raw.run(cfg, tmp_path)
    split.run(cfg, tmp_path)
    return tmp_path


def splits_of(cfg, root) -> pd.DataFrame:
    return pd.read_csv(root / cfg.paths.splits)


def write_splits(cfg, root, table: pd.DataFrame) -> None:
    table.to_csv(root / cfg.paths.splits, index=False)


def add_row(table: pd.DataFrame, path: str, like: pd.Series, split_name: str) -> pd.DataFrame:
    row = like.to_dict() | {"path": path, "split": split_name}
    return pd.concat([table, pd.DataFrame([row])], ignore_index=True)


def fail(cfg, root) -> tuple[str, dict, str]:
    """Run the stage expecting DataError; upstream files must be unchanged."""
    before = tree_digest(root / "data")
    with pytest.raises(DataError) as info:
        validate_splits.run(cfg, root)
    assert tree_digest(root / "data") == before
    reports = root / cfg.paths.reports_dir
    report = json.loads((reports / validate_splits.REPORT_JSON).read_text())
    markdown = (reports / validate_splits.REPORT_MD).read_text()
    assert report["success"] is False and markdown.startswith("# Split validation: FAILED")
    return str(info.value), report, markdown


def test_good_split_passes_and_writes_both_reports(cfg, project):
    before = tree_digest(project / "data")

    summary = validate_splits.run(cfg, project)

    assert summary["success"] is True and summary["n_images"] == 4 * PER_CLASS
    assert tree_digest(project / "data") == before
    report = json.loads((project / "reports" / "validate_splits.json").read_text())
    assert report["n_failed_expectations"] == 0 and report["n_expectations"] == 4 + 3 + 12
    assert report["counts"] == {"train": 56, "val": 12, "test": 12}
    # distinct noise images are far apart: about half of the 64 bits differ
    assert report["min_phash_distance_across_splits"] > cfg.validation.near_duplicate_max_distance
    markdown = (project / "reports" / "validate_splits.md").read_text()
    assert markdown.startswith("# Split validation: PASSED")
    assert ["Benign", "20 (25.0%)", "14 (25.0%)", "3 (25.0%)", "3 (25.0%)"] in table_rows(markdown)


def test_the_same_image_in_two_splits_is_a_leak(cfg, project):
    table = splits_of(cfg, project)
    train_row = table[table["split"] == "train"].iloc[0]
    copy = f"{train_row['class']}/leaked-copy.jpg"
    (project / cfg.paths.raw_dir / copy).write_bytes(
        (project / cfg.paths.raw_dir / train_row["path"]).read_bytes())
    write_splits(cfg, project, add_row(table, copy, train_row, "test"))

    message, report, markdown = fail(cfg, project)

    assert "no content is in two splits" in message
    assert "expect_column_values_to_be_in_set" in message
    assert f"{copy}: same content (sha256) as {train_row['path']} (train)" in message
    assert f"{train_row['path']}: same content (sha256) as {copy} (test)" in message
    assert report["n_same_content_across_splits"] == 2
    assert f"`{copy}: same content (sha256) as {train_row['path']} (train)`" in markdown


def test_one_file_listed_in_two_splits_is_named(cfg, project):
    table = splits_of(cfg, project)
    row = table[table["split"] == "val"].iloc[0]
    write_splits(cfg, project, add_row(table, row["path"], row, "train"))

    message, _, _ = fail(cfg, project)

    assert "every file is listed once" in message and f"{row['path']}: listed more than once" in message


@pytest.mark.parametrize("change", ["reencode", "brighten"])
def test_a_near_duplicate_in_another_split_is_named(cfg, project, change):
    table = splits_of(cfg, project)
    train_row = table[table["split"] == "train"].iloc[0]
    raw = project / cfg.paths.raw_dir
    image = Image.open(raw / train_row["path"]).convert("RGB")
    if change == "brighten":
        image = ImageEnhance.Brightness(image).enhance(1.08)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=70)
    copy = f"{train_row['class']}/near-copy.jpg"
    (raw / copy).write_bytes(buffer.getvalue())
    write_splits(cfg, project, add_row(table, copy, train_row, "val"))

    message, report, _ = fail(cfg, project)

    assert "no near-duplicate is in two splits (perceptual hash within 6 bits" in message
    assert f"{copy}: near-duplicate of {train_row['path']} (train, " in message
    assert report["n_near_duplicates_across_splits"] == 2
    assert report["n_same_content_across_splits"] == 0  # not byte-identical
    assert report["min_phash_distance_across_splits"] <= 6


def test_skewed_class_shares_name_the_split_and_class(cfg, project):
    table = splits_of(cfg, project)
    # swap all val Benign with train Pro images: sizes stay, class shares do not
    val_benign = table.index[(table["split"] == "val") & (table["class"] == "Benign")]
    train_pro = table.index[(table["split"] == "train") & (table["class"] == "Pro")][:len(val_benign)]
    table.loc[val_benign, "split"] = "train"
    table.loc[train_pro, "split"] = "val"
    write_splits(cfg, project, table)

    message, report, _ = fail(cfg, project)

    assert "class Benign is 25.0% of split val" in message
    assert "split/class val/Benign: 0 images" in message
    assert "split/class val/Pro: 6 images" in message
    assert report["per_class"]["val"]["Benign"] == 0


def test_wrong_split_sizes_name_the_split(cfg, project):
    table = splits_of(cfg, project)
    table.loc[table["split"] == "test", "split"] = "val"  # no test split at all
    write_splits(cfg, project, table)

    message, _, markdown = fail(cfg, project)

    assert "split test holds 15% of the 80 images" in message
    assert "split test: 0 images" in message and "split val: 24 images" in message
    assert "expect_table_row_count_to_be_between" in message
    assert any(row[1] == "**FAIL**" and row[2].startswith("split val holds 15%")
               for row in table_rows(markdown))


def test_a_missing_image_is_a_clear_error(cfg, project):
    table = splits_of(cfg, project)
    (project / cfg.paths.raw_dir / table["path"][0]).unlink()
    with pytest.raises(DataError, match=table["path"][0]):
        validate_splits.run(cfg, project)


@pytest.mark.parametrize(("override", "key"), [
    ("validation.near_duplicate_max_distance=-1", "validation.near_duplicate_max_distance"),
    ("validation.near_duplicate_max_distance=64", "validation.near_duplicate_max_distance"),
    ("validation.split_size_tolerance=1.5", "validation.split_size_tolerance"),
    ("validation.class_share_tolerance=-0.1", "validation.class_share_tolerance"),
    ("validation.min_explained_variance=2", "validation.min_explained_variance"),
])
def test_bad_thresholds_are_rejected_before_any_work(tmp_path, monkeypatch, override, key):
    from leukemia_cnn.config import compose, validate_config, write_params

    bad = compose([override], root=REPO_ROOT)
    with pytest.raises(ConfigError, match=key):
        validate_config(bad)
    write_params(bad, tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["validate-splits", "--params", str(tmp_path / "params.yaml")]) == 1
    assert not (tmp_path / "reports").exists()



def test_the_split_stage_keeps_near_copies_together_so_the_suite_passes(cfg, tmp_path):
    """Re-encoded and brightened copies in data/raw: validate_raw hashes them, split keeps
    each with its original, and the split suite (which fails on a near-duplicate in two
    splits) passes."""
    raw = tmp_path / cfg.paths.raw_dir
    class_tree(raw, per_class=PER_CLASS)
    copies = []
    for name in ("Benign", "Early", "Pre", "Pro"):
        for original in sorted((raw / name).iterdir())[:3]:
            image = Image.open(original).convert("RGB")
            image = ImageEnhance.Brightness(image).enhance(1.08)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=70)
            copy = raw / name / f"near-copy-of-{original.stem}.jpg"
            copy.write_bytes(buffer.getvalue())
            copies.append((f"{name}/{original.name}", f"{name}/{copy.name}"))

    validate_raw.run(cfg, tmp_path)
    manifest = pd.read_csv(tmp_path / cfg.paths.manifest, dtype=str, keep_default_na=False)
    assert manifest["phash"].str.fullmatch(r"[0-9a-f]{16}").all()
    summary = split.run(cfg, tmp_path)
    result = validate_splits.run(cfg, tmp_path)

    by_path = splits_of(cfg, tmp_path).set_index("path")["split"]
    assert all(by_path[a] == by_path[b] for a, b in copies)
    assert summary["near_duplicate_groups"]["n_groups"] >= len(copies)
    assert result["success"] is True

    # The same tree split over sha256 alone spreads the copies and the suite goes red.
    alone = load_config(["split.near_duplicate_max_distance=null"], root=REPO_ROOT)
    split.run(alone, tmp_path)
    message, report, _ = fail(alone, tmp_path)
    assert report["n_near_duplicates_across_splits"] > 0 and "near-copy-of-" in message
