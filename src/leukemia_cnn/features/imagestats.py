"""Interpretable per-image statistics, for comparing new images with the training images.

Each image goes through the project's one decode path (:func:`leukemia_cnn.data.imaging.
open_image`, then :func:`~leukemia_cnn.data.imaging.to_model_input`), so 16-bit, palette and
transparent images are read as training read them. The statistics are measured on the image
at the model's input size (``preprocess.image_size``): what the model sees, and comparable
between images of different resolutions. The file's own size is measured separately.

- ``width``, ``height``, ``aspect`` (width / height): the file as stored;
- ``red|green|blue_mean|std``: colour, on the RGB version of the model input;
- ``hematoxylin|eosin_mean|std``: stain optical densities (``skimage.color.rgb2hed``, colour
  deconvolution with Ruifrok and Johnston's H&E vectors): a stain or scanner change moves them;
- ``intensity_mean|std``: the model input itself (grayscale, or the luma of RGB);
- ``focus``: variance of its Laplacian, which falls when an image is blurred or magnified.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.color import rgb2hed
from skimage.filters import laplace
from tqdm.auto import tqdm

from leukemia_cnn.data.imaging import open_image, to_model_input
from leukemia_cnn.errors import DataError
from leukemia_cnn.features.features import to_gray

SIZE_FEATURES = ("width", "height", "aspect")
COLOUR_FEATURES = tuple(f"{channel}_{stat}" for channel in ("red", "green", "blue")
                        for stat in ("mean", "std"))
STAIN_FEATURES = tuple(f"{stain}_{stat}" for stain in ("hematoxylin", "eosin")
                       for stat in ("mean", "std"))
INPUT_FEATURES = (*SIZE_FEATURES, *COLOUR_FEATURES, *STAIN_FEATURES,
                  "intensity_mean", "intensity_std", "focus")
# The HOG + PCA components of the features stage, as features: hog_pca_1 ... hog_pca_k.
PCA_PREFIX = "hog_pca_"


def pca_columns(values: np.ndarray) -> dict[str, np.ndarray]:
    """One entry per PCA component of ``values`` (n, k): ``hog_pca_1`` ... ``hog_pca_k``."""
    return {f"{PCA_PREFIX}{index + 1}": values[:, index] for index in range(values.shape[1])}


def image_statistics(image, image_size: int, color_mode: str) -> tuple[dict[str, float],
                                                                      np.ndarray]:
    """The :data:`INPUT_FEATURES` of one decoded PIL image, and its model input.

    Parameters
    ----------
    image : PIL.Image.Image
        A decoded image (:func:`leukemia_cnn.data.imaging.open_image`).
    image_size : int
        ``preprocess.image_size``.
    color_mode : {"grayscale", "rgb"}
        ``preprocess.color_mode``.

    Returns
    -------
    stats : dict of str to float
        One value per feature of :data:`INPUT_FEATURES`.
    model_input : numpy.ndarray
        float32 (image_size, image_size, channels): what the model and HOG see.
    """
    rgb = to_model_input(image, image_size, "rgb")
    model_input = to_model_input(image, image_size, color_mode)
    gray = to_gray(model_input[np.newaxis])[0].astype(np.float64)
    stains = rgb2hed(rgb.astype(np.float64))
    stats = {"width": float(image.width), "height": float(image.height),
             "aspect": image.width / image.height}
    for index, channel in enumerate(("red", "green", "blue")):
        stats[f"{channel}_mean"] = float(rgb[..., index].mean())
        stats[f"{channel}_std"] = float(rgb[..., index].std())
    for index, stain in enumerate(("hematoxylin", "eosin")):
        stats[f"{stain}_mean"] = float(stains[..., index].mean())
        stats[f"{stain}_std"] = float(stains[..., index].std())
    stats["intensity_mean"] = float(gray.mean())
    stats["intensity_std"] = float(gray.std())
    stats["focus"] = float(laplace(gray).var())
    return stats, model_input


@dataclass
class DescribedImages:
    """What :func:`describe_files` measured: per feature one value per readable file, their
    model inputs (same order), and why each other file was skipped."""

    paths: list[Path]
    stats: dict[str, np.ndarray]
    model_inputs: np.ndarray
    skipped: dict[Path, str]


def unreadable(path: Path) -> str | None:
    """Why ``path`` is not an image to measure (naming it), or None."""
    if not path.exists():
        return f"{path}: no such file"
    if not path.is_file():
        return f"{path}: not a regular file"
    return None


def describe_files(paths: list[Path], image_size: int, color_mode: str, workers: int = 1,
                   desc: str = "images", keep_inputs: bool = True) -> DescribedImages:
    """Decode each file once and measure it; unreadable files are skipped with their reason.

    Parameters
    ----------
    paths : list of pathlib.Path
        Image files.
    image_size, color_mode
        ``preprocess.image_size`` and ``preprocess.color_mode``.
    workers : int
        Decoding threads (PIL and numpy release the GIL for most of the work).
    desc : str
        Progress-bar label.
    keep_inputs : bool
        Keep the model inputs (for HOG); False leaves ``model_inputs`` empty.
    """
    def measure(path: Path):
        reason = unreadable(path)
        if reason is not None:
            return reason
        try:
            stats, model_input = image_statistics(open_image(path), image_size, color_mode)
        except DataError as exc:
            return str(exc)
        return stats, (model_input if keep_inputs else None)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(tqdm(pool.map(measure, paths), total=len(paths), desc=desc, unit="img",
                            leave=False, disable=None))
    kept = [(path, result) for path, result in zip(paths, results, strict=True)
            if not isinstance(result, str)]
    channels = 1 if color_mode == "grayscale" else 3
    inputs = (np.stack([result[1] for _, result in kept]) if kept and keep_inputs
              else np.empty((0, image_size, image_size, channels), np.float32))
    return DescribedImages(
        paths=[path for path, _ in kept],
        stats={name: np.array([result[0][name] for _, result in kept], dtype=np.float64)
               for name in INPUT_FEATURES},
        model_inputs=inputs,
        skipped={path: result for path, result in zip(paths, results, strict=True)
                 if isinstance(result, str)})
