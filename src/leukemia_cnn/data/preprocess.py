"""Stage ``preprocess``: the paper's image preprocessing, applied once per split.

Every image of the split table goes through :func:`leukemia_cnn.data.imaging.load_model_input`
(the same function the logged model uses at serving time) and lands in one array file per
split, ``<preprocessed_dir>/{train,val,test}.npz`` with ``x`` (n, H, W, C) float32 in
[0, 1], ``y`` int64 labels and ``path`` (the manifest paths), plus ``meta.json``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from leukemia_cnn.config import SPLITS
from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.imaging import load_model_input
from leukemia_cnn.errors import DataError
from leukemia_cnn.fileio import save_npz, write_json

SPLIT_COLUMNS = ("path", "class", "label", "split")


def n_workers() -> int:
    """Decoding threads: one per CPU core.

    PIL releases the GIL while it decodes and resizes, so threads use all cores without
    the start-up and copy costs of worker processes. The count never changes the arrays.
    """
    return os.cpu_count() or 1


def read_split_table(path: Path, classes: list[str]) -> pd.DataFrame:
    """Read the split table written by the ``split`` stage and check it against ``classes``.

    Parameters
    ----------
    path : pathlib.Path
        The CSV (``paths.splits``).
    classes : list of str
        ``data.classes``; label ``i`` must be ``classes[i]``.

    Returns
    -------
    pandas.DataFrame
        The table, with ``label`` as int64.

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
    missing = [c for c in SPLIT_COLUMNS if c not in table.columns]
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
                desc: str = "images") -> np.ndarray:
    """Decode and preprocess image files into one float32 array, in the order given.

    Parameters
    ----------
    paths : list of pathlib.Path
        Image files.
    image_size : int
        Side of the square output (``preprocess.image_size``).
    color_mode : {"grayscale", "rgb"}
        ``preprocess.color_mode``; 1 or 3 channels.
    workers : int, default 1
        Decoding threads.
    desc : str
        Progress-bar label.

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
        out[index] = load_model_input(paths[index], image_size, color_mode)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        # Consuming the iterator re-raises the first worker error here.
        for _ in tqdm(pool.map(load, range(len(paths))), total=len(paths), desc=desc,
                      unit="img", leave=False, disable=None):
            pass
    return out


def load_split(directory: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load one preprocessed split written by this stage.

    Parameters
    ----------
    directory : pathlib.Path
        ``paths.preprocessed_dir`` (resolved against the project root).
    name : {"train", "val", "test"}
        The split.

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
    """Run the stage: split table + raw images -> ``paths.preprocessed_dir``.

    Parameters
    ----------
    cfg : Config
        Composed config; uses ``paths``, ``data.classes`` and ``preprocess``.
    root : pathlib.Path
        Project root; config paths are relative to it.

    Returns
    -------
    dict
        Image count per split, the output shape and folder.
    """
    root = Path(root)
    classes = list(cfg.data.classes)
    size = cfg.preprocess.image_size
    mode = cfg.preprocess.color_mode
    table = read_split_table(root / cfg.paths.splits, classes)
    raw_dir = root / cfg.paths.raw_dir
    out_dir = root / cfg.paths.preprocessed_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = n_workers()

    counts: dict[str, int] = {}
    shape: list[int] = []
    for name in SPLITS:
        rows = table[table["split"] == name]
        files = [raw_dir / p for p in rows["path"]]
        try:
            x = load_images(files, size, mode, workers=workers, desc=name)
        except DataError as exc:
            raise DataError(f"{exc} (listed in {cfg.paths.splits}, split {name}); restore the "
                            "file or rerun `dvc repro validate_raw split`") from exc
        save_npz(out_dir / f"{name}.npz", compressed=True, x=x,
                         y=rows["label"].to_numpy(dtype=np.int64),
                         path=rows["path"].to_numpy(dtype=str))
        counts[name] = len(rows)
        shape = list(x.shape[1:])

    meta = {"classes": classes, "image_size": size, "color_mode": mode,
            "shape": shape, "dtype": "float32", "counts": counts}
    write_json(out_dir / "meta.json", meta)
    return {"counts": counts, "shape": shape, "output": str(out_dir)}
