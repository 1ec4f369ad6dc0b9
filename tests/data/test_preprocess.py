"""Stage ``preprocess``: grayscale, resize, [0, 1] arrays per split, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from helpers import REPO_ROOT as REPO
from leukemia_cnn.config import load_config, updated
from leukemia_cnn.data import preprocess
from leukemia_cnn.data.imaging import load_model_input
from leukemia_cnn.errors import DataError

CLASSES = ["Benign", "Early", "Pre", "Pro"]
# The shapes the real data can have: RGB JPEGs, grayscale PNGs, odd sizes, an alpha channel.
VARIANTS = [("RGB", (60, 48), "jpg"), ("L", (40, 40), "png"), ("RGBA", (32, 50), "png")]


def make_split_table(root: Path, per_split: dict[str, int], seed: int = 0) -> pd.DataFrame:
    """Images under root/data/raw/<Class>/ and the split table the split stage would write."""
    rng = np.random.default_rng(seed)
    raw = root / "data" / "raw"
    rows = []
    index = 0
    for name, count in per_split.items():
        for _ in range(count):
            label = index % len(CLASSES)
            mode, size, ext = VARIANTS[index % len(VARIANTS)]
            image = Image.new(mode, size, "white")
            x, y = rng.integers(5, 30, 2)
            ImageDraw.Draw(image).ellipse([x - 5, y - 5, x + 8, y + 8], fill="purple")
            relative = f"{CLASSES[label]}/img-{index:03d}.{ext}"
            (raw / CLASSES[label]).mkdir(parents=True, exist_ok=True)
            image.save(raw / relative)
            rows.append({"path": relative, "class": CLASSES[label], "label": label,
                         "sha256": f"h{index}", "split": name})
            index += 1
    table = pd.DataFrame(rows)
    table.to_csv(root / "data" / "splits.csv", index=False)
    return table


@pytest.fixture(scope="module")
def cfg():
    return load_config(root=REPO)


def test_run_writes_one_array_file_per_split(tmp_path, cfg):
    table = make_split_table(tmp_path, {"train": 14, "val": 4, "test": 5})

    result = preprocess.run(cfg, tmp_path)

    out = tmp_path / "data" / "preprocessed"
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "test.npz", "train.npz",
                                                     "val.npz"]
    for name in preprocess.SPLITS:
        rows = table[table["split"] == name]
        x, y, paths = preprocess.load_split(out, name)
        assert x.shape == (len(rows), 100, 100, 1) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert y.dtype == np.int64 and y.tolist() == rows["label"].tolist()
        assert paths.tolist() == rows["path"].tolist()
        # Exactly what the served model computes for the same file.
        np.testing.assert_array_equal(
            x[0], load_model_input(tmp_path / "data" / "raw" / paths[0], 100, "grayscale"))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == CLASSES and meta["color_mode"] == "grayscale"
    assert meta["counts"] == {"train": 14, "val": 4, "test": 5} == result["counts"]


def test_image_size_and_color_mode_come_from_config(tmp_path, cfg):
    make_split_table(tmp_path, {"train": 4, "val": 2, "test": 2})
    rgb = updated(cfg, {"preprocess": {"image_size": 32, "color_mode": "rgb"}})

    preprocess.run(rgb, tmp_path)

    x, _, _ = preprocess.load_split(tmp_path / "data" / "preprocessed", "val")
    assert x.shape == (2, 32, 32, 3)


def test_threads_give_the_same_arrays_as_one_worker(tmp_path):
    table = make_split_table(tmp_path, {"train": 24, "val": 0, "test": 0})
    files = [tmp_path / "data" / "raw" / p for p in table["path"]]

    serial = preprocess.load_images(files, 100, "grayscale", workers=1)
    threaded = preprocess.load_images(files, 100, "grayscale", workers=2)

    np.testing.assert_array_equal(serial, threaded)


def test_failed_write_leaves_previous_file_intact_and_no_partial_file(tmp_path, cfg,
                                                                      monkeypatch):
    make_split_table(tmp_path, {"train": 6, "val": 2, "test": 2})
    preprocess.run(cfg, tmp_path)
    out = tmp_path / "data" / "preprocessed"
    before = (out / "train.npz").read_bytes()

    def crash(handle, **arrays):
        handle.write(b"half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", crash)
    with pytest.raises(OSError, match="disk full"):
        preprocess.run(cfg, tmp_path)

    assert (out / "train.npz").read_bytes() == before
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_missing_or_broken_image_is_named(tmp_path, cfg):
    table = make_split_table(tmp_path, {"train": 6, "val": 2, "test": 2})
    victim = table[table["split"] == "val"]["path"].iloc[0]
    (tmp_path / "data" / "raw" / victim).write_bytes(b"not an image")

    with pytest.raises(DataError, match=rf"{victim}.*not a decodable image.*split val"):
        preprocess.run(cfg, tmp_path)

    (tmp_path / "data" / "raw" / victim).unlink()
    with pytest.raises(DataError, match=rf"{victim}: file not found"):
        preprocess.run(cfg, tmp_path)


def test_missing_inputs_say_which_stage_to_run(tmp_path, cfg):
    with pytest.raises(DataError, match="dvc repro split"):
        preprocess.run(cfg, tmp_path)
    with pytest.raises(DataError, match=r"train.npz not found.*dvc repro preprocess"):
        preprocess.load_split(tmp_path, "train")
    with pytest.raises(DataError, match="unknown split"):
        preprocess.load_split(tmp_path, "holdout")


def test_table_written_for_other_classes_is_rejected_as_stale(tmp_path, cfg):
    make_split_table(tmp_path, {"train": 6, "val": 2, "test": 2})
    renamed = updated(cfg, {"data": {"classes": ["Pro", "Pre", "Early", "Benign"]}})

    with pytest.raises(DataError, match="stale.*dvc repro split"):
        preprocess.run(renamed, tmp_path)
