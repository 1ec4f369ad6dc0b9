"""Magnification as a measured quantity: a blood smear carries its own ruler.

Red cells are about 7.5 um across in every smear, so the typical size of the pale discs in a
field tells its magnification: :func:`red_cell_radius` takes the scale of the strongest
Laplacian-of-Gaussian response of the field's optical density. It reads red cells with a pale
centre about a fifth larger than their rim (the built-in generator's discs of radius 10.5 read
about 13): compare images by the ratio of their radii, not in micrometres. docs/robust-training.md
gives the method; :func:`to_reference` puts a field at a reference radius (``preprocess.rescale``).
No tensorflow here.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft
from PIL import Image

from leukemia_cnn.errors import DataError

# The radii searched, in pixels of the half-size image the estimate works on (so 3-40 px at the
# Kaggle set's 224x224): red cells there are about 9-11 px at this module's measure.
MIN_RADIUS, MAX_RADIUS = 1.5, 20.0
N_SCALES = 12
# Mirrored border around the half-size image: more than the widest kernel's reach (3 sigma), so
# the FFT's wrap-around sees no edge.
PAD = 32
# The estimate works on the image halved (box filter): red cells are large enough, and four
# times fewer pixels make it about four times faster.
DOWNSAMPLE = 2
# Optical density above this percentile (nuclei, dense stain) is clipped to it, so that the few
# dark white cells do not outweigh the many red cells.
CLIP_PERCENTILE = 90
# Rescaling by less than this relative change is skipped: it is within the estimate's noise
# on an unchanged smear (about 3% on real-dev, Section "magnification" of
# docs/results/recipe-robust.md) and would only re-sample the image.
MIN_RESCALE = 0.05


def optical_density(image: Image.Image) -> np.ndarray:
    """Light absorbed per pixel relative to the field's background (its 99th-percentile
    brightness per channel), summed over the channels: cells bright, background near 0."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) + 1.0
    background = np.percentile(rgb.reshape(-1, 3), 99, axis=0)
    return np.log(background / rgb).clip(0, None).sum(axis=-1)


# The LoG scales searched (sigma = radius / sqrt 2).
SIGMAS = np.geomspace(MIN_RADIUS, MAX_RADIUS, N_SCALES) / np.sqrt(2)


@functools.lru_cache(maxsize=8)
def log_kernels(height: int, width: int) -> np.ndarray:
    """The scale-normalised -LoG of every scale in :data:`SIGMAS` in the frequency domain of a
    ``height`` x ``width`` real FFT: ``sigma^2 |w|^2 exp(-sigma^2 |w|^2 / 2)``."""
    fy = np.fft.fftfreq(height)[:, np.newaxis]
    fx = np.fft.rfftfreq(width)[np.newaxis, :]
    frequency2 = (4 * np.pi**2 * (fx**2 + fy**2))[np.newaxis]
    scales2 = (SIGMAS**2)[:, np.newaxis, np.newaxis]
    return (scales2 * frequency2 * np.exp(-0.5 * scales2 * frequency2)).astype(np.float32)


def red_cell_radius(image: Image.Image) -> float:
    """The typical red-cell radius of a smear field, in pixels of ``image`` (see the module):
    the scale-normalised LoG at every scale of :data:`SIGMAS` in one FFT, the peak refined by a
    parabola in log scale, as sigma x sqrt 2.

    Raises
    ------
    DataError
        If the image is too small to hold a red cell (under 16 pixels a side).
    """
    if min(image.size) < 16:
        raise DataError(f"image of {image.width}x{image.height} pixels is too small to measure "
                        "its red cells (at least 16x16)")
    small = image.convert("RGB").resize((image.width // DOWNSAMPLE, image.height // DOWNSAMPLE),
                                        Image.Resampling.BOX)
    density = optical_density(small)
    density = np.minimum(density, np.percentile(density, CLIP_PERCENTILE))
    density -= density.mean()
    height, width = density.shape
    padded = np.pad(density, PAD, mode="symmetric")
    # every scale in one batched inverse FFT
    spectrum = scipy.fft.rfft2(padded)
    filtered = scipy.fft.irfft2(spectrum * log_kernels(*padded.shape), s=padded.shape)
    filtered = filtered[:, PAD:PAD + height, PAD:PAD + width]
    response = np.maximum(filtered, 0).mean(axis=(1, 2))
    peak = int(np.argmax(response))
    log_sigma = np.log(SIGMAS[peak])
    if 0 < peak < N_SCALES - 1:
        below, at, above = response[peak - 1:peak + 2]
        curvature = below - 2 * at + above
        if curvature < 0:
            step = np.log(SIGMAS[1] / SIGMAS[0])
            log_sigma += 0.5 * (below - above) / curvature * step
    return float(DOWNSAMPLE * np.exp(log_sigma) * np.sqrt(2))


def relative_radius(image: Image.Image) -> float:
    """:func:`red_cell_radius` as a fraction of the image's width: the same for a field
    photographed at 224 or 448 pixels, as the model sees it after the resize to its input."""
    return red_cell_radius(image) / image.width


def to_reference(image: Image.Image, reference: float) -> Image.Image:
    """``image`` rescaled so that its red cells have the relative radius ``reference``
    (:func:`relative_radius`); unchanged when the change would be under :data:`MIN_RESCALE`."""
    zoom = reference / relative_radius(image)
    if abs(zoom - 1.0) < MIN_RESCALE:
        return image
    from leukemia_cnn.data.shifts import magnify

    return magnify(image, zoom)

