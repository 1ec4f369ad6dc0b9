"""Acquisition-shift augmentation of the training images (the ``augment`` knobs, issue 33).

What changes between two labs, drawn afresh for every training image at every epoch: another
stain batch (HED jitter), objective (zoom), exposure and camera response (brightness,
contrast, gamma), focus (Gaussian blur), compression (JPEG) and, for an RGB model, a grey
camera. Built from albumentations 2 transforms, whose ``Compose`` is seeded so a training run
is reproducible; the stain jitter is scikit-image's colour deconvolution (``rgb2hed`` /
``hed2rgb``) with the draw of Tellez et al. (2018), the same as the robustness suite's stain
shift, wrapped as an albumentations transform so the same seeded generator draws it
(albumentations' own ``HEStain`` projects every pixel on two stains, which changes a smear by
about 5 grey levels at zero jitter, and took 4x as long: ``benchmarks/bench_augment.py``).

The train stage applies it to training batches only (:mod:`leukemia_cnn.modeling.batches`):
validation, test and served images are never augmented. A grayscale model augments the RGB
copy of its training images (``preprocess.train_rgb``) and sees them turned grey afterwards,
with PIL's weights (what ``preprocess`` does to every other image). No tensorflow here.
"""

from __future__ import annotations

import numpy as np

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


def hed_jitter(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """The robustness suite's stain shift (:func:`leukemia_cnn.data.shifts.stain_jitter`) on a
    uint8 RGB array: each HED concentration (``rgb2hed``) scaled by U(1 - sigma, 1 + sigma) and
    shifted by U(-sigma, sigma) x 0.1, back to RGB."""
    from PIL import Image

    from leukemia_cnn.data.shifts import stain_jitter

    return np.asarray(stain_jitter(Image.fromarray(image), sigma, rng))


def stain_transform(sigma: float):
    """:func:`hed_jitter` as an albumentations transform drawn from the ``Compose``'s seed."""
    from albumentations.core.transforms_interface import ImageOnlyTransform

    class HedJitter(ImageOnlyTransform):
        def __init__(self, sigma: float):
            super().__init__(p=1.0)
            self.sigma = sigma

        def apply(self, img, **params):
            return hed_jitter(img, self.sigma, self.random_generator)

        def get_transform_init_args_names(self):
            return ("sigma",)

    return HedJitter(sigma)


def pipeline(augment, seed: int):
    """The albumentations ``Compose`` the ``augment`` knobs describe, seeded with ``seed``;
    order: stain, zoom, blur, exposure and tone, grey camera, compression (as light meets the
    slide, the optics, the sensor and the file)."""
    import albumentations as A
    import cv2

    steps = []
    if augment.stain:
        steps.append(stain_transform(augment.stain))
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
    return A.Compose(steps, seed=seed)


def augment_batch(compose, images: np.ndarray, channels: int) -> np.ndarray:
    """``images`` (n, H, W, 1 or 3) float in [0, 1] through ``compose``, one by one; returned
    float32 with ``channels`` channels (3 -> 1: PIL's grey, as preprocess makes it)."""
    pixels = np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)
    out = np.empty((*pixels.shape[:3], channels), dtype=np.float32)
    for index, image in enumerate(pixels):
        grey_input = image.shape[-1] == 1
        augmented = compose(image=np.repeat(image, 3, axis=-1) if grey_input else image)["image"]
        augmented = augmented.astype(np.float32) / 255.0
        out[index] = augmented @ LUMA[:, np.newaxis] if channels == 1 else augmented
    return out
