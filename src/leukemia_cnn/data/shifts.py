"""Images the out-of-distribution guard should flag, made from images at hand: a smear with
another stain, out of focus, or at another magnification, and scikit-image's sample photos.

The guard's tests and its report (``benchmarks/guard_report.py``) use them; nothing is
downloaded (only the samples that ship inside scikit-image are used).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

# scikit-image sample images stored in its wheel (the others need pooch and a download).
SKIMAGE_SAMPLES = ("astronaut", "brick", "camera", "cat", "cell", "checkerboard", "chelsea",
                   "clock", "coffee", "coins", "colorwheel", "grass", "gravel",
                   "hubble_deep_field", "immunohistochemistry", "microaneurysms", "moon",
                   "page", "retina", "rocket", "text")
SHIFTS = ("stain", "blur", "rescale")
# Milder versions of the same shifts (the guard's report measures both).
MILD_SHIFTS = ("mild stain", "mild blur", "mild rescale")


def stain_shift(image: Image.Image, swap: bool = True) -> Image.Image:
    """Another stain: the red and blue channels swapped and the field darkened by a quarter,
    so pale red cells turn blue-grey and purple nuclei turn dark; without ``swap``, only a
    weaker, bluer stain (red x0.9, green x0.85, blue unchanged)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    shifted = (rgb[..., [2, 1, 0]] * np.array([0.75, 0.6, 0.9], dtype=np.float32) if swap
               else rgb * np.array([0.9, 0.85, 1.0], dtype=np.float32))
    return Image.fromarray(np.clip(shifted, 0, 255).astype(np.uint8))


def blur(image: Image.Image, radius_fraction: float = 0.02) -> Image.Image:
    """Out of focus: a Gaussian blur of ``radius_fraction`` of the image width."""
    radius = max(1.0, radius_fraction * image.width)
    return image.convert("RGB").filter(ImageFilter.GaussianBlur(radius))


def rescale(image: Image.Image, zoom: float = 2.5) -> Image.Image:
    """Another magnification: the central ``1 / zoom`` of the field enlarged to full size."""
    width, height = image.size
    crop_w, crop_h = int(round(width / zoom)), int(round(height / zoom))
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return image.convert("RGB").crop((left, top, left + crop_w, top + crop_h)).resize(
        (width, height), Image.Resampling.BICUBIC)


def shifted(image: Image.Image, shift: str) -> Image.Image:
    """``image`` under one of :data:`SHIFTS` or :data:`MILD_SHIFTS`."""
    return {"stain": stain_shift, "blur": blur, "rescale": rescale,
            "mild stain": lambda im: stain_shift(im, swap=False),
            "mild blur": lambda im: blur(im, radius_fraction=0.007),
            "mild rescale": lambda im: rescale(im, zoom=1.4)}[shift](image)


def skimage_samples(names=SKIMAGE_SAMPLES) -> dict[str, Image.Image]:
    """scikit-image's sample images by name, as RGB PIL images."""
    from skimage import data

    samples = {}
    for name in names:
        array = np.asarray(getattr(data, name)())
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        elif array.dtype != np.uint8:
            array = np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)
        samples[name] = Image.fromarray(array).convert("RGB")
    return samples


def matched_to(image: Image.Image, reference: Image.Image) -> Image.Image:
    """``image`` with the colour histogram of ``reference`` (per channel), resized to it: a
    photo with a smear's brightness and contrast, which image statistics alone barely see."""
    from skimage.exposure import match_histograms

    source = np.asarray(image.convert("RGB").resize(reference.size), dtype=np.float64)
    target = np.asarray(reference.convert("RGB"), dtype=np.float64)
    matched = match_histograms(source, target, channel_axis=-1)
    return Image.fromarray(np.clip(np.round(matched), 0, 255).astype(np.uint8))
