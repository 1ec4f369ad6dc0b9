"""What the tests share besides fixtures: the repository root, tiny configurations, images the
tests make themselves, and scratch copies of the project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from leukemia_cnn import devtools

REPO_ROOT = Path(__file__).resolve().parents[2]

# A configuration small enough to train in seconds on 2 cores.
TINY_OVERRIDES = [
    "train.epochs=8",
    "train.batch_size=16",
    "train.learning_rate=0.003",
    "train.verbose=0",
    "model.filters=[8,8,8]",
    "model.kernel_sizes=[3,3,3]",
    "model.dense_units=32",
    "preprocess.image_size=32",
    "features.pca.n_components=8",
]


def blob_images(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Grayscale float32 images in [0, 1] whose dark disc grows with the class label."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.empty((len(labels), size, size, 1), dtype=np.float32)
    for index, label in enumerate(labels):
        cy, cx = rng.uniform(size * 0.35, size * 0.65, 2)
        radius = size * (0.12 + 0.07 * label) * rng.uniform(0.9, 1.1)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2) < radius**2
        image = 0.85 - 0.55 * disc + rng.normal(0, 0.05, (size, size))
        images[index, ..., 0] = np.clip(image, 0, 1)
    return images


def write_preprocessed(root: Path, cfg, per_class: dict[str, int] | None = None,
                       seed: int = 0) -> Path:
    """Write data/preprocessed/{train,val,test}.npz in the preprocess stage's format."""
    classes = list(cfg.data.classes)
    n_classes = len(classes)
    per_class = per_class or {"train": 24, "val": 8, "test": 8}
    directory = root / cfg.paths.preprocessed_dir
    directory.mkdir(parents=True, exist_ok=True)
    for offset, (split, count) in enumerate(per_class.items()):
        labels = np.repeat(np.arange(n_classes), count).astype(np.int64)
        x = blob_images(labels, cfg.preprocess.image_size, seed=seed + offset)
        paths = np.array([f"{classes[y]}/img-{split}-{i}.jpg"
                          for i, y in enumerate(labels)])
        np.savez(directory / f"{split}.npz", x=x, y=labels, path=paths)
    return directory


BIN = Path(sys.executable).parent
# Written into the copy's conf/config.yaml (after `_self_`, so they win): both `dvc repro`
# (via params.yaml) and `dvc exp run` (which re-composes conf/) then run the tiny setup.
TINY_CONF = {
    "data": {"synth": {"scale": 0.1}},
    "preprocess": {"image_size": 64},
    "features": {"pca": {"n_components": 16}},
    "model": {"filters": [16, 32, 32], "kernel_sizes": [5, 3, 3], "dense_units": 64},
    "train": {"epochs": 15, "batch_size": 16, "learning_rate": 0.001, "verbose": 0},
}


def sh(*args: str, cwd: Path, check: bool = True, env_extra: dict | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env.update(env_extra or {})
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def copy_project(dest: Path) -> Path:
    """The working tree's project files (tracked or not, minus ignored/generated ones)."""
    return devtools.copy_project(REPO_ROOT, dest)


def stage_outputs(repo: Path) -> list[str]:
    """Every output path dvc.yaml declares (outs, metrics, plots), in stage order."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    return [out if isinstance(out, str) else next(iter(out)) for stage in stages.values()
            for kind in ("outs", "metrics", "plots") for out in stage.get(kind, [])]


def ran_pipeline(dest: Path) -> Path:
    """A git + DVC copy of the project whose dvc.lock records every stage as run: stand-in
    outputs committed with `dvc commit` (what such tests check is which stages a change
    re-runs, or what a refused run leaves, not the stages themselves)."""
    repo = copy_project(dest)
    for args in (("git", "init", "-q"), ("git", "config", "user.email", "ci@example.com"),
                 ("git", "config", "user.name", "ci"), ("leukemia-cnn", "params")):
        sh(*args, cwd=repo)
    (repo / "data" / "raw" / "Benign").mkdir(parents=True)
    (repo / "data" / "raw" / "Benign" / "a.jpg").write_bytes(b"stand-in image")
    for output in stage_outputs(repo):
        path = repo / output
        if path.suffix:  # a file; a folder gets one file inside
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"an earlier output of {output}\n")
        else:
            path.mkdir(parents=True, exist_ok=True)
            (path / "earlier.txt").write_text(f"an earlier output of {output}\n")
    sh("dvc", "commit", "-f", "-q", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "pipeline ran", cwd=repo)
    return repo


def tiny_project(dest: Path, train: dict | None = None) -> Path:
    """The tiny project (TINY_CONF, ``train`` keys on top) as a git repository with its
    synthetic data, ready for ``dvc repro``."""
    repo = copy_project(dest)
    config = yaml.safe_load((repo / "conf" / "config.yaml").read_text())
    config.update(TINY_CONF)
    config["train"] = {**TINY_CONF["train"], **(train or {})}
    (repo / "conf" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for args in (("git", "init", "-q"), ("git", "config", "user.email", "ci@example.com"),
                 ("git", "config", "user.name", "ci"), ("leukemia-cnn", "params"),
                 ("leukemia-cnn", "data", "synth"), ("git", "add", "-A"),
                 ("git", "commit", "-qm", "tiny project")):
        sh(*args, cwd=repo)
    return repo


def write_raw_and_preprocessed(root: Path, cfg, per_class: dict[str, int] | None = None,
                               seed: int = 0, raw_size: int = 64) -> Path:
    """Blob images (:func:`blob_images`) as original RGB PNGs under ``paths.raw_dir`` and
    their preprocessed arrays (through ``to_model_input``, as the preprocess stage makes them)
    in ``paths.preprocessed_dir``: for stages that read both (robustness)."""
    from PIL import Image

    from leukemia_cnn.data.imaging import to_model_input

    classes = list(cfg.data.classes)
    per_class = per_class or {"train": 24, "val": 8, "test": 8}
    raw_dir, directory = root / cfg.paths.raw_dir, root / cfg.paths.preprocessed_dir
    directory.mkdir(parents=True, exist_ok=True)
    for offset, (split, count) in enumerate(per_class.items()):
        labels = np.repeat(np.arange(len(classes)), count).astype(np.int64)
        blobs = blob_images(labels, raw_size, seed=seed + offset)
        paths, arrays = [], []
        for index, (blob, label) in enumerate(zip(blobs, labels, strict=True)):
            path = f"{classes[label]}/img-{split}-{index}.png"
            gray = np.round(blob[..., 0] * 255).astype(np.uint8)
            rgb = np.stack([gray, (gray * 0.8).astype(np.uint8), gray], axis=-1)  # a tint
            image = Image.fromarray(rgb)
            (raw_dir / path).parent.mkdir(parents=True, exist_ok=True)
            image.save(raw_dir / path)
            paths.append(path)
            arrays.append(to_model_input(image, int(cfg.preprocess.image_size),
                                         str(cfg.preprocess.color_mode)))
        np.savez(directory / f"{split}.npz", x=np.stack(arrays), y=labels, path=np.array(paths))
    return directory


def table_rows(markdown: str) -> list[list[str]]:
    """The stripped cells of every Markdown pipe-table row in ``markdown``, header rows
    included, rule rows (``|---|:--:|``) left out; an escaped ``\\|`` stays inside its cell."""
    import re

    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            for line in markdown.splitlines()
            if line.startswith("|") and not set(line.strip()) <= set("|:- ")]
