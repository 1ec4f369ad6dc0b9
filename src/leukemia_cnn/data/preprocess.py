"""Stage ``preprocess``: the paper's image preprocessing, applied once per split.

Every image of the split table goes through :func:`leukemia_cnn.data.imaging.load_model_input`
(the same function the logged model uses at serving time) and lands in one array file per
split, ``<preprocessed_dir>/{train,val,test}.npz`` with ``x`` (n, H, W, C) float32 in
[0, 1], ``y`` int64 labels and ``path`` (the manifest paths), plus ``meta.json``.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from leukemia_cnn.config import SPLITS
from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.acquisition import acquisition_of
from leukemia_cnn.data.imaging import load_model_input, open_image
from leukemia_cnn.data.scale import relative_radius
from leukemia_cnn.data.stain import training_stain
from leukemia_cnn.errors import DataError
from leukemia_cnn.fileio import save_npz, write_json


def n_workers() -> int:
    """Decoding threads: one per CPU core (PIL releases the GIL while it decodes and resizes,
    so threads use all cores without worker processes). The count never changes the arrays."""
    return os.cpu_count() or 1


def read_split_table(path: Path, classes: list[str]) -> pd.DataFrame:
    """Read the split table (``paths.splits``) with ``label`` as int64, and check that label
    ``i`` is ``classes[i]`` (``data.classes``).

    Raises
    ------
    DataError
        If the file is missing or unreadable, lacks a column, names an unknown split, or its
        labels disagree with ``classes`` (the split table is stale).
    """
    if not path.is_file():
        raise DataError(f"split table {path} not found; run `dvc repro split` first")
    try:
        table = pd.read_csv(path, dtype={"path": str, "class": str, "split": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"split table {path} is not a readable CSV ({exc}); rerun "
                        "`dvc repro split`") from exc
    missing = [c for c in ("path", "class", "label", "split") if c not in table.columns]
    if missing:
        raise DataError(f"split table {path} lacks column(s) {missing}; rerun `dvc repro split`")
    unknown = sorted(set(table["split"]) - set(SPLITS))
    if unknown:
        raise DataError(f"split table {path} has unknown split name(s) {unknown}; "
                        f"allowed: {list(SPLITS)}; rerun `dvc repro split`")
    table["label"] = table["label"].astype("int64")
    expected = table["label"].map(lambda i: classes[i] if 0 <= i < len(classes) else None)
    stale = table[expected != table["class"]]
    if len(stale):
        row = stale.iloc[0]
        raise DataError(f"split table {path} labels {row['path']} as {row['label']} "
                        f"({row['class']}), but `data.classes` = {classes}; the table is stale: "
                        "rerun `dvc repro split`")
    return table


def load_images(paths: list[Path], image_size: int, color_mode: str, workers: int = 1,
                desc: str = "images", acquisition=None) -> np.ndarray:
    """Decode and preprocess image files into one float32 array, in the order given, with
    ``workers`` threads and a progress bar labelled ``desc``.

    Parameters
    ----------
    image_size, color_mode : int, {"grayscale", "rgb"}
        ``preprocess.image_size`` (side of the square output), ``preprocess.color_mode``.
    acquisition : leukemia_cnn.data.acquisition.Acquisition, optional
        Put every image at the training set's red-cell size and stain first
        (``preprocess.rescale``, ``preprocess.stain_normalize``).

    Returns
    -------
    numpy.ndarray
        float32 of shape (len(paths), image_size, image_size, channels), values in [0, 1].

    Raises
    ------
    DataError
        If a file is missing or not a decodable image (the message names it).
    """
    channels = 1 if color_mode == "grayscale" else 3
    out = np.empty((len(paths), image_size, image_size, channels), dtype=np.float32)

    def load(index: int) -> None:
        out[index] = load_model_input(paths[index], image_size, color_mode, acquisition)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        # Consuming the iterator re-raises the first worker error here.
        for _ in tqdm(pool.map(load, range(len(paths))), total=len(paths), desc=desc,
                      unit="img", leave=False, disable=None):
            pass
    return out


def train_rgb(directory: Path) -> np.ndarray | None:
    """The train split in RGB (``x_rgb``, written with ``preprocess.train_rgb`` for a grayscale
    model), or None when the stage did not write it."""
    with np.load(Path(directory) / "train.npz", allow_pickle=False) as data:
        return data["x_rgb"] if "x_rgb" in data.files else None


def load_split(directory: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load the split ``name`` this stage wrote to ``directory`` (``paths.preprocessed_dir``).

    Returns
    -------
    x : numpy.ndarray
        float32 images, shape (n, H, W, C), values in [0, 1].
    y : numpy.ndarray
        int64 labels (indices into ``data.classes``), shape (n,).
    paths : numpy.ndarray
        str manifest paths (relative to ``paths.raw_dir``), shape (n,).

    Raises
    ------
    DataError
        If the split name is unknown or the file is missing or unreadable.
    """
    if name not in SPLITS:
        raise DataError(f"unknown split {name!r}; allowed: {list(SPLITS)}")
    path = Path(directory) / f"{name}.npz"
    if not path.is_file():
        raise DataError(f"preprocessed split {path} not found; run `dvc repro preprocess`")
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["x"], data["y"], data["path"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"preprocessed split {path} is unreadable ({exc}); rerun "
                        "`dvc repro preprocess`") from exc


def run(cfg: Config, root: Path) -> dict:
    """Run the stage: split table + raw images -> ``paths.preprocessed_dir`` (config paths
    relative to ``root``); return the image count per split, the output shape and folder."""
    classes = list(cfg.data.classes)
    size = cfg.preprocess.image_size
    mode = cfg.preprocess.color_mode
    table = read_split_table(root / cfg.paths.splits, classes)
    raw_dir = root / cfg.paths.raw_dir
    out_dir = root / cfg.paths.preprocessed_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = n_workers()
    train_files = [raw_dir / p for p in table.loc[table["split"] == "train", "path"]]
    # the training set's magnification, measured on its red cells, and its stain
    scale = training_scale(train_files, cfg.paths.splits, workers)
    stain = training_stain(train_files, workers) if cfg.preprocess.stain_normalize else None
    record = {"red_cell_radius": scale, "rescale": cfg.preprocess.rescale,
              "stain_normalize": cfg.preprocess.stain_normalize,
              **({"stain_reference": stain.to_dict()} if stain is not None else {})}
    reference = acquisition_of(record)

    counts: dict[str, int] = {}
    shape: list[int] = []
    for name in SPLITS:
        rows = table[table["split"] == name]
        files = [raw_dir / p for p in rows["path"]]
        try:
            x = load_images(files, size, mode, workers, name, reference)
            extra = ({"x_rgb": load_images(files, size, "rgb", workers, f"{name} rgb", reference)}
                     if name == "train" and cfg.preprocess.train_rgb and mode == "grayscale"
                     else {})
        except DataError as exc:
            raise DataError(f"{exc} (listed in {cfg.paths.splits}, split {name}); restore the "
                            "file or rerun `dvc repro validate_raw split`") from exc
        save_npz(out_dir / f"{name}.npz", compressed=True, x=x,
                         y=rows["label"].to_numpy(dtype=np.int64),
                         path=rows["path"].to_numpy(dtype=str), **extra)
        counts[name] = len(rows)
        shape = list(x.shape[1:])

    meta = {"classes": classes, "image_size": size, "color_mode": mode,
            "shape": shape, "dtype": "float32", "counts": counts,
            **record}
    write_json(out_dir / "meta.json", meta)
    return {"counts": counts, "shape": shape, "output": str(out_dir)}


def training_scale(files: list[Path], splits_path, workers: int) -> dict:
    """The red-cell radius of the train split's ``files`` as a fraction of the image width
    (:func:`leukemia_cnn.data.scale.relative_radius`; median, 5th and 95th percentiles), as
    ``meta.json`` records it."""
    def measure(path: Path) -> float:
        return relative_radius(open_image(path))

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            radii = np.array(list(tqdm(pool.map(measure, files), total=len(files), unit="img",
                                       desc="red-cell scale", leave=False, disable=None)))
    except DataError as exc:
        raise DataError(f"{exc} (listed in {splits_path}, split train); restore the file or "
                        "rerun `dvc repro validate_raw split`") from exc
    return {"median": round(float(np.median(radii)), 5),
            "p05": round(float(np.percentile(radii, 5)), 5),
            "p95": round(float(np.percentile(radii, 95)), 5), "n": int(len(radii)),
            "unit": "fraction of the image width"}


def scale_record(directory: Path) -> dict:
    """What the preprocess stage recorded of the magnification (``meta.json``):
    ``red_cell_radius`` (the train split's, :func:`training_scale`) and ``rescale`` (whether
    every image was put at its median), and of the stain (``stain_normalize``,
    ``stain_reference``, when it was on); empty for arrays written before it measured scale.
    :func:`leukemia_cnn.data.acquisition.acquisition_of` turns it into what to apply."""
    path = Path(directory) / "meta.json"
    meta = json.loads(path.read_text()) if path.is_file() else {}
    if "red_cell_radius" not in meta:
        return {}
    return {"red_cell_radius": meta["red_cell_radius"], "rescale": bool(meta.get("rescale")),
            **({"stain_normalize": True, "stain_reference": meta["stain_reference"]}
               if meta.get("stain_normalize") and meta.get("stain_reference") else {})}
