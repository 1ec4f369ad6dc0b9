"""Image decoding and the paper's preprocessing, shared by the preprocess stage and the
logged model (so that a served model sees exactly what training saw)."""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from leukemia_cnn.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# Threads that decode and hash images (validate_raw, validate_splits): decoding and hashing
# release the GIL, so threads use every core without pickling.
N_THREADS = min(8, os.cpu_count() or 1)
# Files that operating systems and archivers drop next to images (compared lower-case).
OS_JUNK = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", ".ds_store", "__macosx"})


@dataclass(frozen=True)
class SkippedFile:
    """A file under ``raw_dir`` that is not an image row of the manifest, and why."""

    path: str
    reason: str


def skip_reason(name: str) -> str | None:
    """Why a file name is not an image row, or None when it is one."""
    if name.lower() in OS_JUNK or name.startswith("._"):
        return "operating-system metadata file"
    if name.startswith("."):
        return "hidden file"
    suffix = Path(name).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        return (f"extension {suffix or '(none)'!r} is not an image extension "
                f"({', '.join(IMAGE_EXTENSIONS)})")
    return None
# Refuse decompression bombs: far above any smear image (the Kaggle set is 224x224).
MAX_PIXELS = 50_000_000
# PIL warns (two raw lines on stderr) above its own limit of 89 million pixels, below which
# open_image has already refused the image with one line of its own: the warning says nothing
# more. (PIL still raises its DecompressionBombError at twice its limit.)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def open_image(source: str | Path | bytes, draft_pixels: int | None = None) -> Image.Image:
    """Decode an image from a path or raw bytes, fully, or raise DataError naming the source.

    The one decoding place of training, prediction, serving and Grad-CAM: the image comes back
    turned upright by its EXIF orientation tag and with 16-bit, 32-bit or float samples scaled
    to 8 bits (:func:`upright_8bit`), so every consumer sees the same pixels.

    ``draft_pixels``: for a picture only (a heatmap's background, never a model input), a
    JPEG larger than this is decoded at 1/2, 1/4 or 1/8 scale (PIL's ``draft``, at least this
    many pixels): a 7000x7000 JPEG then takes 12 MB instead of 190 MB.
    """
    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        with Image.open(handle) as image:
            if image.width * image.height > MAX_PIXELS:
                raise DataError(f"{name}: {image.width}x{image.height} pixels exceeds the "
                                f"{MAX_PIXELS:,}-pixel limit (decompression bomb guard)")
            if draft_pixels and image.format == "JPEG" and image.width * image.height > draft_pixels:
                scale = (draft_pixels / (image.width * image.height)) ** 0.5
                image.draft(image.mode, (int(image.width * scale) + 1,
                                         int(image.height * scale) + 1))
            image.load()
            problem = non_finite(image)
            if problem:
                raise DataError(f"{name}: {problem}")
            return upright_8bit(image)
    except FileNotFoundError as exc:
        raise DataError(f"{name}: file not found") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        # PIL names a buffer by its repr (``<_io.BytesIO object at 0x...>``): noise, dropped
        why = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(exc))
        raise DataError(f"{name}: not a decodable image ({why})") from exc


def image_pixels(data: bytes) -> int | None:
    """Width x height from an encoded image's header (nothing decoded), or None when the
    header cannot be read (the decode that follows says why)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width * image.height
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError):
        return None


def non_finite(image: Image.Image) -> str | None:
    """Why a float image cannot be shown (NaN or infinite samples: a TIFF with masked or
    missing values), or None. Scaled to 8 bits, one NaN made the whole image black."""
    if image.mode != "F":
        return None
    array = np.asarray(image)
    bad = int(array.size - np.isfinite(array).sum())
    if not bad:
        return None
    return (f"{bad:,} of {array.size:,} pixels are NaN or infinite (a float image with missing "
            "values); refused rather than guessed: fill or mask them and save the image again")


def upright_8bit(image: Image.Image) -> Image.Image:
    """``image`` rotated/flipped by its EXIF orientation, high-bit-depth samples scaled to 8 bits.

    ``convert("RGB")`` clips 16-bit samples at 255 (a 16-bit PNG turns white), so integer
    images are scaled by the smallest of 8, 10, 12, 14, 16 or 32 bits that holds their peak
    (65535 -> 255; a 12-bit camera's 4095 -> 255), the same factor for every image of one
    bit depth, and float images by [0, 1] (or [0, 255]) when they fit.
    """
    problem = non_finite(image)
    if problem:
        raise DataError(problem)
    upright = ImageOps.exif_transpose(image)  # a copy, even without a tag
    if upright.mode not in ("I", "F") and not upright.mode.startswith("I;16"):
        return upright
    array = np.asarray(upright, dtype=np.float64)
    if upright.mode == "F" and array.size and 0.0 <= array.min() and array.max() <= 255.0:
        scale = 1.0 if array.max() <= 1.0 else 255.0
    else:  # the smallest common bit depth that holds the peak: 12-bit data in 16 bits too
        peak = float(array.max()) if array.size else 0.0
        scale = next(float(2**bits - 1) for bits in (8, 10, 12, 14, 16, 32)
                     if peak <= 2**bits - 1 or bits == 32)
    array = np.clip(array, 0, scale) / scale * 255.0
    return Image.fromarray(np.round(array).astype(np.uint8), "L")


def perceptual_hash(image: Image.Image) -> int:
    """64-bit perceptual hash (``imagehash.phash``) of a decoded image, as an int.

    Copies that differ by a re-encode, a resize, a small brightness or contrast change or a
    blur stay within a few bits of each other; distinct smear images are 10 or more apart.
    """
    import imagehash

    bits = imagehash.phash(image).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def to_model_input(image: Image.Image, image_size: int = 100,
                   color_mode: str = "grayscale") -> np.ndarray:
    """Paper Sec. 2.1: grayscale (or RGB), resize to ``image_size`` square, scale to [0, 1];
    float32 of shape (image_size, image_size, channels)."""
    pil_mode = "L" if color_mode == "grayscale" else "RGB"
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = upright_8bit(image)  # an image that did not come through open_image()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white (slide background), not black.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    converted = image.convert(pil_mode).resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.atleast_3d(np.asarray(converted, dtype=np.float32) / 255.0)


def load_model_input(source: str | Path | bytes, image_size: int = 100,
                     color_mode: str = "grayscale", acquisition=None) -> np.ndarray:
    """Decode ``source``, apply ``acquisition`` when given
    (:class:`leukemia_cnn.data.acquisition.Acquisition`), then :func:`to_model_input`."""
    image = open_image(source)
    if acquisition is not None:
        image = acquisition.apply(image)
    return to_model_input(image, image_size, color_mode)
