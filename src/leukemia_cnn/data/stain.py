"""Stain normalisation at preprocessing (``preprocess.stain_normalize``): Reinhard et al. 2001.

Each image's colour is moved, channel by channel in CIE L*a*b*, to the typical mean and spread
of the training images (:class:`StainReference`): ``(x - image mean) / image std * reference
std + reference mean`` (docs/robust-training.md).
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.color import lab2rgb, rgb2lab

# Below this spread (L*a*b* units) a channel of an image is shifted, not scaled.
MIN_STD = 1.0


@dataclass(frozen=True)
class StainReference:
    """The training images' typical colour: per L*a*b* channel, the mean of their means and
    of their standard deviations."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {"mean": [round(v, 4) for v in self.mean], "std": [round(v, 4) for v in self.std],
                "space": "CIE L*a*b*"}

    @classmethod
    def from_dict(cls, record: dict) -> StainReference:
        return cls(tuple(float(v) for v in record["mean"]),
                   tuple(float(v) for v in record["std"]))


def _lab(image: Image.Image) -> np.ndarray:
    return rgb2lab(np.asarray(image.convert("RGB")))


def lab_statistics(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each L*a*b* channel of ``image``."""
    flat = _lab(image).reshape(-1, 3)
    return flat.mean(axis=0), flat.std(axis=0)


def normalise(image: Image.Image, reference: StainReference) -> Image.Image:
    """``image`` (any mode) with its colour moved to ``reference``, as 8-bit RGB."""
    lab = _lab(image)
    flat = lab.reshape(-1, 3)
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    scale = np.where(std >= MIN_STD, np.asarray(reference.std) / np.maximum(std, MIN_STD), 1.0)
    moved = (lab - mean) * scale + np.asarray(reference.mean)
    with warnings.catch_warnings():  # colours outside sRGB are clipped, which it warns about
        warnings.simplefilter("ignore")
        rgb = lab2rgb(moved)
    return Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def training_stain(files: list[Path], workers: int = 1) -> StainReference:
    """The :class:`StainReference` of image files (the train split)."""
    from leukemia_cnn.data.imaging import open_image

    with ThreadPoolExecutor(max(1, workers)) as pool:
        stats = list(pool.map(lambda path: lab_statistics(open_image(path)), files))
    means = np.array([mean for mean, _ in stats])
    stds = np.array([std for _, std in stats])
    return StainReference(tuple(means.mean(axis=0).tolist()), tuple(stds.mean(axis=0).tolist()))
