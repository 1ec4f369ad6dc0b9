"""Acquisition-shift augmentation of the training batches (the ``augment`` knobs, issue 33):
stain, zoom, exposure and tone, blur, JPEG and a grey camera, drawn afresh for every training
image at every epoch, as albumentations 2 transforms under a seeded ``Compose`` but the stain
jitter, the robustness suite's over each batch at once (:func:`hed_jitter`).
docs/robust-training.md gives each knob and why; validation, test and served images are never
augmented. No tensorflow here.
"""

from __future__ import annotations

import numpy as np

# A stain shift of ``sigma`` moves each concentration by up to sigma x this: the suite's.
from leukemia_cnn.data.shifts import HED_BIAS_SCALE

# ITU-R 601-2 luma, PIL's convert("L"): the grey the preprocess stage gives every other image.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Blur and JPEG hit half the images: the other half keep their full sharpness.
BLUR_PROBABILITY = 0.5
JPEG_PROBABILITY = 0.5
BEST_JPEG_QUALITY = 95


def active(augment) -> bool:
    """Whether the ``augment`` group asks for any augmentation (all off: the paper)."""
    return bool(augment.scale or augment.brightness or augment.contrast or augment.gamma
                or augment.blur or augment.jpeg_quality is not None or augment.stain
                or augment.grayscale)


def needs_color(augment) -> bool:
    """Whether the augmentation needs colour in its input: a stain jitter does."""
    return bool(augment.stain)


def hed_jitter(images: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """The robustness suite's stain shift (:func:`leukemia_cnn.data.shifts.stain_jitter`) on a
    batch of uint8 RGB images (n, H, W, 3) at once: image ``i``'s haematoxylin, eosin and DAB
    concentrations (scikit-image's ``hed_from_rgb``) times ``alpha[i]`` plus ``beta[i]``, and
    the colour change that makes (``rgb_from_hed``) applied to the image, in float32: the
    formulas of ``rgb2hed`` / ``hed2rgb``, written over the batch."""
    from skimage.color import hed_from_rgb, rgb_from_hed

    rgb = images.astype(np.float32) / 255.0
    log_floor = np.float32(np.log(1e-6))  # scikit-image's: optical density relative to 1e-6
    hed = np.maximum((np.log(np.maximum(rgb, 1e-6)) / log_floor) @ hed_from_rgb.astype(
        np.float32), 0)
    jittered = hed * alpha[:, None, None, :] + beta[:, None, None, :]
    to_rgb = rgb_from_hed.astype(np.float32) * log_floor
    factor = (np.clip(np.exp(jittered @ to_rgb), 0, 1)
              / np.maximum(np.clip(np.exp(hed @ to_rgb), 0, 1), 1e-6))
    return np.round(np.clip(rgb * factor, 0, 1) * 255).astype(np.uint8)


class Augmentation:
    """The seeded augmentation of one training run: which images of a batch are shifted
    (``probability``), the stain jitter over those at once, then the albumentations
    ``Compose`` of the other shifts on each of them."""

    def __init__(self, compose, stain: float, seed: int, probability: float = 1.0):
        self.compose, self.stain, self.probability = compose, stain, probability
        # the stain and selection draws, apart from Compose's
        self.rng = np.random.default_rng([seed, 33])

    def chosen(self, n: int) -> np.ndarray:
        """Which of ``n`` images are shifted this time (all at ``probability`` 1)."""
        if self.probability >= 1:
            return np.ones(n, dtype=bool)
        return self.rng.random(n) < self.probability

    def stained(self, pixels: np.ndarray) -> np.ndarray:
        """``pixels`` (uint8 RGB) under a fresh stain draw per image (the suite's ranges)."""
        if not self.stain or not len(pixels):
            return pixels
        n = len(pixels)
        alpha = self.rng.uniform(1 - self.stain, 1 + self.stain, (n, 3)).astype(np.float32)
        beta = (self.rng.uniform(-self.stain, self.stain, (n, 3)) * HED_BIAS_SCALE).astype(
            np.float32)
        return hed_jitter(pixels, alpha, beta)


def pipeline(augment, seed: int) -> Augmentation:
    """The augmentation the ``augment`` knobs describe, seeded with ``seed``; order: stain,
    zoom, blur, exposure and tone, grey camera, compression (as light meets the slide, the
    optics, the sensor and the file)."""
    import albumentations as A
    import cv2

    steps = []
    if augment.scale:
        steps.append(A.Affine(scale=(1.0 / (1.0 + augment.scale), 1.0 + augment.scale),
                              balanced_scale=True, border_mode=cv2.BORDER_REFLECT_101, p=1.0))
    if augment.blur:
        steps.append(A.GaussianBlur(blur_limit=0, sigma_limit=(0.1, augment.blur),
                                    p=BLUR_PROBABILITY))
    if augment.brightness or augment.contrast:
        # ColorJitter's brightness and contrast are PIL's ImageEnhance (a factor on every
        # pixel; a blend with the mean grey), as the robustness suite shifts them.
        steps.append(A.ColorJitter(brightness=(1 - augment.brightness, 1 + augment.brightness),
                                   contrast=(1 - augment.contrast, 1 + augment.contrast),
                                   saturation=(1.0, 1.0), hue=(0.0, 0.0), p=1.0))
    if augment.gamma:
        steps.append(A.RandomGamma(gamma_limit=(100 / (1 + augment.gamma),
                                                100 * (1 + augment.gamma)), p=1.0))
    if augment.grayscale:
        steps.append(A.ToGray(num_output_channels=3, p=augment.grayscale))
    if augment.jpeg_quality is not None:
        steps.append(A.ImageCompression(quality_range=(augment.jpeg_quality, BEST_JPEG_QUALITY),
                                        p=JPEG_PROBABILITY))
    return Augmentation(A.Compose(steps, seed=seed), augment.stain, seed, augment.probability)


def augment_batch(augmentation: Augmentation, images: np.ndarray, channels: int) -> np.ndarray:
    """``images`` (n, H, W, 1 or 3) float in [0, 1] through ``augmentation`` (the images it
    does not choose pass unchanged); returned float32 with ``channels`` channels (3 -> 1: PIL's
    grey, as preprocess makes it)."""
    pixels = np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    chosen = augmentation.chosen(len(pixels))
    pixels[chosen] = augmentation.stained(pixels[chosen])
    out = np.empty((*pixels.shape[:3], channels), dtype=np.float32)
    for index, image in enumerate(pixels):
        augmented = augmentation.compose(image=image)["image"] if chosen[index] else image
        augmented = augmented.astype(np.float32) / 255.0
        out[index] = augmented @ LUMA[:, np.newaxis] if channels == 1 else augmented
    return out
