"""Stage ``split``: stratified, seeded, duplicate-safe train/val/test table."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from helpers import REPO_ROOT as REPO
from leukemia_cnn.config import load_config, updated
from leukemia_cnn.data import split
from leukemia_cnn.errors import ConfigError, DataError

CLASSES = ["Benign", "Early", "Pre", "Pro"]


def write_image(path: Path, rng: np.random.Generator) -> None:
    """A tiny RGB image with a random ellipse: distinct bytes per call."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (24, 24), tuple(int(v) for v in rng.integers(150, 255, 3)))
    x, y = rng.integers(2, 20, 2)
    ImageDraw.Draw(image).ellipse([x - 4, y - 4, x + 4, y + 4],
                                  fill=tuple(int(v) for v in rng.integers(0, 150, 3)))
    image.save(path)


def write_manifest(raw_dir: Path, manifest_path: Path) -> pd.DataFrame:
    """The manifest columns validate_raw writes, for every image under raw_dir."""
    rows = []
    for path in sorted(raw_dir.rglob("*.png")):
        with Image.open(path) as image:
            width, height, fmt, mode = image.width, image.height, image.format, image.mode
        rows.append({"path": path.relative_to(raw_dir).as_posix(), "class": path.parent.name,
                     "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                     "size_bytes": path.stat().st_size, "width": width, "height": height,
                     "format": fmt, "mode": mode, "decodable": True, "error": ""})
    manifest = pd.DataFrame(rows)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(manifest_path, index=False)
    return manifest


def make_dataset(root: Path, counts: dict[str, int], copies: int = 0, seed: int = 0) -> Path:
    """Images under root/data/raw/<Class>/; ``copies`` byte-identical extra files per class."""
    rng = np.random.default_rng(seed)
    raw = root / "data" / "raw"
    for name, count in counts.items():
        for index in range(count):
            write_image(raw / name / f"WBC-{name}-{index:03d}.png", rng)
        for index in range(copies):
            source = raw / name / f"WBC-{name}-{index:03d}.png"
            shutil.copyfile(source, raw / name / f"copy-{index:03d}-{name}.png")
            shutil.copyfile(source, raw / name / f"zz-copy-{index:03d}-{name}.png")
    write_manifest(raw, root / "data" / "manifest.csv")
    return raw


def fake_manifest(counts: dict[str, int]) -> pd.DataFrame:
    rows = [{"path": f"{name}/{i:03d}.jpg", "class": name, "sha256": f"{name}-{i}"}
            for name, count in counts.items() for i in range(count)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def cfg():
    return load_config(root=REPO)


def test_run_writes_stratified_table_and_metrics(tmp_path, cfg):
    counts = {"Benign": 20, "Early": 40, "Pre": 36, "Pro": 28}
    make_dataset(tmp_path, counts)

    summary = split.run(cfg, tmp_path)

    table = pd.read_csv(tmp_path / "data" / "splits.csv")
    assert list(table.columns) == ["path", "class", "label", "sha256", "split"]
    assert len(table) == sum(counts.values()) == summary["n_images"]
    assert set(table["split"]) == {"train", "val", "test"}
    assert (table["label"] == table["class"].map(CLASSES.index)).all()
    for name, count in counts.items():
        per_split = table[table["class"] == name]["split"].value_counts()
        # Every class in every split, in proportion (one image of slack for rounding).
        assert abs(per_split["train"] - 0.70 * count) <= 1.5
        assert abs(per_split["val"] - 0.15 * count) <= 1.5
        assert abs(per_split["test"] - 0.15 * count) <= 1.5

    report = json.loads((tmp_path / "reports" / "split.json").read_text())
    assert report["counts"] == {s: int((table["split"] == s).sum()) for s in split.SPLITS}
    assert report["per_class"]["train"]["Early"] == int(
        ((table["split"] == "train") & (table["class"] == "Early")).sum())
    assert sum(report["fractions"].values()) == pytest.approx(1.0, abs=1e-3)
    assert report["fractions"]["train"] == pytest.approx(0.70, abs=0.03)


def test_byte_identical_duplicates_share_one_split(tmp_path, cfg):
    make_dataset(tmp_path, {name: 14 for name in CLASSES}, copies=8)

    summary = split.run(cfg, tmp_path)

    table = pd.read_csv(tmp_path / "data" / "splits.csv")
    assert summary["n_duplicates"] == 4 * 8 * 2
    assert (table.groupby("sha256")["split"].nunique() == 1).all()
    groups = table.groupby("sha256").size()
    # The copies really were spread over the table (and so over the splits' draws).
    assert (groups == 3).sum() == 4 * 8
    assert table[table["sha256"].isin(groups[groups == 3].index)]["split"].nunique() > 1


def test_same_input_and_seed_give_same_table_in_any_row_order():
    manifest = fake_manifest({"Benign": 15, "Early": 30, "Pre": 25, "Pro": 20})
    first = split.split_table(manifest, CLASSES, 0.7, 0.15, 0.15, seed=7)
    shuffled = manifest.sample(frac=1.0, random_state=3)
    again = split.split_table(shuffled, CLASSES, 0.7, 0.15, 0.15, seed=7)
    other_seed = split.split_table(manifest, CLASSES, 0.7, 0.15, 0.15, seed=8)

    pd.testing.assert_frame_equal(first, again)
    by_path = first.set_index("path")["split"]
    assert not by_path.equals(other_seed.set_index("path")["split"].loc[by_path.index])


def test_run_is_byte_identical_across_reruns(tmp_path, cfg):
    make_dataset(tmp_path, {name: 10 for name in CLASSES})
    split.run(cfg, tmp_path)
    first = (tmp_path / "data" / "splits.csv").read_bytes()
    split.run(cfg, tmp_path)
    assert (tmp_path / "data" / "splits.csv").read_bytes() == first


def test_same_content_under_two_classes_is_a_label_conflict():
    manifest = fake_manifest({name: 10 for name in CLASSES})
    manifest.loc[manifest["path"] == "Pre/003.jpg", "sha256"] = "Early-5"

    with pytest.raises(DataError, match="label conflict") as info:
        split.split_table(manifest, CLASSES, 0.7, 0.15, 0.15, seed=0)
    assert "Early/005.jpg" in str(info.value) and "Pre/003.jpg" in str(info.value)


def test_too_small_class_names_class_count_and_need():
    manifest = fake_manifest({"Benign": 3, "Early": 20, "Pre": 20, "Pro": 20})
    with pytest.raises(DataError, match=r"Benign: 3.*at least 7"):
        split.split_table(manifest, CLASSES, 0.7, 0.15, 0.15, seed=0)


def test_duplicates_count_once_towards_class_size():
    manifest = fake_manifest({"Benign": 10, "Early": 10, "Pre": 10, "Pro": 10})
    manifest.loc[manifest["class"] == "Pro", "sha256"] = "same-bytes"
    with pytest.raises(DataError, match="Pro: 1"):
        split.split_table(manifest, CLASSES, 0.7, 0.15, 0.15, seed=0)


def test_smallest_class_that_passes_gets_all_three_splits():
    manifest = fake_manifest({"Benign": 7, "Early": 7, "Pre": 7, "Pro": 7})
    table = split.split_table(manifest, CLASSES, 0.7, 0.15, 0.15, seed=0)
    assert (table.groupby("class")["split"].nunique() == 3).all()


def test_bad_rows_and_config_raise_clear_errors(tmp_path, cfg):
    manifest = fake_manifest({name: 10 for name in CLASSES})
    with pytest.raises(DataError, match=r"\['Mono'\].*data.classes"):
        split.split_table(pd.concat([manifest, fake_manifest({"Mono": 10})]), CLASSES,
                          0.7, 0.15, 0.15, seed=0)
    broken = manifest.assign(decodable=["False"] + ["True"] * (len(manifest) - 1))
    with pytest.raises(DataError, match="not decodable.*Benign/000.jpg"):
        split.split_table(broken, CLASSES, 0.7, 0.15, 0.15, seed=0)
    with pytest.raises(DataError, match="sha256"):
        split.split_table(manifest.drop(columns="sha256"), CLASSES, 0.7, 0.15, 0.15, seed=0)
    unhashed = manifest.assign(sha256=[None] + manifest["sha256"].tolist()[1:])
    with pytest.raises(DataError, match="no sha256.*Benign/000.jpg"):
        split.split_table(unhashed, CLASSES, 0.7, 0.15, 0.15, seed=0)
    with pytest.raises(ConfigError, match="sum to 1"):
        split.split_table(manifest, CLASSES, 0.7, 0.2, 0.15, seed=0)

    with pytest.raises(DataError, match="validate_raw"):
        split.run(cfg, tmp_path)
    moved = updated(cfg, {"paths": {"manifest": "elsewhere/manifest.csv"}})
    with pytest.raises(DataError, match="elsewhere/manifest.csv"):
        split.run(moved, tmp_path)


def test_near_duplicate_groups_follow_chains_of_close_hashes():
    contents = pd.DataFrame({"phash": [
        f"{0:016x}", f"{0b111:016x}", f"{0b111111:016x}",  # 3 bits apart, then 3 more
        f"{(1 << 64) - 1:016x}", "", "not-a-hash"]})

    assert split.near_duplicate_groups(contents, 3).tolist() == [0, 0, 0, 3, 4, 5]
    assert split.near_duplicate_groups(contents, 2).tolist() == [0, 1, 2, 3, 4, 5]
    assert split.near_duplicate_groups(contents, None).tolist() == [0, 1, 2, 3, 4, 5]
    assert split.near_duplicate_groups(contents.drop(columns="phash"), 3).tolist() == list(
        range(6))


def test_near_duplicates_share_one_split_and_are_counted():
    manifest = fake_manifest({"Benign": 15, "Early": 30, "Pre": 25, "Pro": 20})
    rng = np.random.default_rng(0)
    # Far-apart hashes for every image, then 12 images made near copies of 12 others.
    hashes = rng.integers(0, 2**63, len(manifest), dtype=np.uint64) * np.uint64(2)
    pairs = [(i, i + 1) for i in range(15, 39, 2)]  # within Early (rows 15-44)
    for a, b in pairs:
        hashes[b] = hashes[a] ^ np.uint64(0b101)  # 2 bits apart
    manifest["phash"] = [f"{int(h):016x}" for h in hashes]

    table = split.split_table(manifest, CLASSES, 0.7, 0.15, 0.15, seed=1,
                              near_duplicate_max_distance=6)

    by_path = table.set_index("path")["split"]
    for a, b in pairs:
        assert by_path[manifest["path"][a]] == by_path[manifest["path"][b]]
    grouped = table.attrs["near_duplicate_groups"]
    assert grouped["n_groups"] == 12 and grouped["n_contents_in_groups"] == 24
    assert grouped["n_mixed_class_groups"] == 0
    # Without near-duplicates the grouping changes nothing: the same table as sha256 alone.
    far = manifest.assign(phash=[f"{int(h):016x}" for h in
                                 rng.integers(0, 2**63, len(manifest), dtype=np.uint64)])
    pd.testing.assert_frame_equal(
        split.split_table(far, CLASSES, 0.7, 0.15, 0.15, seed=1, near_duplicate_max_distance=0),
        split.split_table(far.drop(columns="phash"), CLASSES, 0.7, 0.15, 0.15, seed=1))


def test_a_near_duplicate_group_across_classes_is_counted_with_its_files():
    manifest = fake_manifest({name: 12 for name in CLASSES})
    hashes = np.random.default_rng(2).integers(0, 2**63, len(manifest), dtype=np.uint64)
    manifest["phash"] = [f"{int(h):016x}" for h in hashes]  # about 32 bits apart
    manifest.loc[13, "phash"] = manifest.loc[0, "phash"]  # an Early image close to a Benign one

    table = split.split_table(manifest, CLASSES, 0.7, 0.15, 0.15, seed=1,
                              near_duplicate_max_distance=6)

    grouped = table.attrs["near_duplicate_groups"]
    assert grouped["n_mixed_class_groups"] == 1
    assert grouped["mixed_class_examples"] == [["Benign/000.jpg", "Early/001.jpg"]]
    by_path = table.set_index("path")["split"]
    assert by_path["Benign/000.jpg"] == by_path["Early/001.jpg"]
