"""The painter of the built-in synthetic dataset: one smear field per call, with numpy.

The real images (mehradaria/leukemia) are 224x224 RGB fields of a peripheral blood smear:
many pale erythrocytes, one to many purple nucleated cells, a slide-dependent stain and
background, and a small scale label in a corner. This module paints such fields with numpy.

The four classes differ only in the *morphology* of the nucleated cells, along the ladder
Benign (hematogones: small cells, dense clumped round nuclei, visible cytoplasm) -> Early ->
Pre -> Pro (more and larger blasts, higher nucleus-to-cytoplasm ratio, finer then coarser
chromatin, nucleoli, irregular or clefted nuclei). Every image draws its position on that
ladder from a normal around its class, so neighbouring classes overlap and the task is not
trivial. Stain, background, brightness, focus, noise, erythrocyte density, distractor cells
and the label are drawn per slide independently of the class, so colour is no shortcut.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from leukemia_cnn.data.smear_slide import Slide, draw_label, draw_slide, paint_rbcs

# Morphology of the nucleated cells at each rung of the ladder Benign=0 .. Pro=3; an image at
# a fractional position interpolates between rungs. Lengths are pixels of a 224x224 field.
LADDER = {
    "Benign": 0.0,
    "Early": 1.0,
    "Pre": 2.0,
    "Pro": 3.0,
}
MORPHOLOGY = {                      # Benign  Early   Pre    Pro
    "cells_per_field": np.array([4.0, 4.0, 5.5, 8.0]),
    "cell_radius": np.array([9.0, 14.0, 17.5, 21.0]),
    "nc_ratio": np.array([0.62, 0.80, 0.87, 0.92]),
    "nucleus_density": np.array([1.40, 1.15, 1.05, 1.00]),
    "chromatin_coarseness": np.array([0.85, 0.25, 0.40, 0.60]),
    "chromatin_contrast": np.array([0.30, 0.14, 0.20, 0.26]),
    "nucleoli": np.array([0.0, 0.5, 1.1, 1.8]),
    "irregularity": np.array([0.020, 0.035, 0.050, 0.065]),
    "cleft_probability": np.array([0.0, 0.05, 0.15, 0.30]),
    "cytoplasm_density": np.array([0.55, 0.45, 0.42, 0.40]),
}
# Standard deviation of an image's ladder position around its class (the class overlap), and
# of a cell's position around its image's.
IMAGE_SPREAD = 0.10
CELL_SPREAD = 0.15
# Share of cells in a malignant field that are residual normal lymphocytes (Benign-like).
NORMAL_CELL_SHARE = 0.12

REFERENCE_SIZE = 224  # geometry above is for this field size and scales with image_size


def _patch(size: int, cx: float, cy: float, reach: float):
    """The bounding box of a shape within the field and its pixel offsets from the centre
    (never empty: every centre lies in the field)."""
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, size)
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, size)
    dx = (np.arange(x0, x1) - cx)[np.newaxis, :]
    dy = (np.arange(y0, y1) - cy)[:, np.newaxis]
    return (slice(y0, y1), slice(x0, x1)), dx, dy


def _outline(theta: np.ndarray, radius: float, amplitudes: np.ndarray,
             phases: np.ndarray) -> np.ndarray:
    """A closed outline r(theta): a circle perturbed by harmonics 2, 3, ..."""
    wobble = sum(a * np.cos((k + 2) * theta + p)
                 for k, (a, p) in enumerate(zip(amplitudes, phases, strict=True)))
    return radius * (1.0 + wobble)


@dataclass
class _Maps:
    """Optical-density maps of one field, coloured with the slide's stains at the end."""

    rbc: np.ndarray
    cytoplasm: np.ndarray
    nucleus: np.ndarray
    cover: np.ndarray           # where nucleated cells push erythrocytes aside
    fine: np.ndarray            # chromatin textures (unit variance), fine and coarse grain
    coarse: np.ndarray


def _morphology(position: float) -> dict[str, float]:
    rungs = np.arange(len(LADDER), dtype=float)
    return {name: float(np.interp(position, rungs, values)) for name, values in MORPHOLOGY.items()}


def _paint_nucleated_cell(maps: _Maps, rng: np.random.Generator, cx: float, cy: float,
                          radius: float, cell: dict[str, float], scale: float) -> None:
    region, dx, dy = _patch(maps.nucleus.shape[0], cx, cy, radius * 1.15 + 2)
    r = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx)
    cell_edge = _outline(theta, radius, rng.normal(0, 0.03, 2), rng.uniform(0, 2 * np.pi, 2))
    cell_mask = np.clip(cell_edge - r + 0.5, 0.0, 1.0)

    nc_ratio = float(np.clip(cell["nc_ratio"] + rng.normal(0, 0.03), 0.55, 0.97))
    nucleus_radius = nc_ratio * radius
    # mature cells carry the nucleus off-centre; blasts have little room to do so
    shift = (radius - nucleus_radius) * rng.uniform(0.2, 0.9)
    direction = rng.uniform(0, 2 * np.pi)
    ndx, ndy = dx - shift * math.cos(direction), dy - shift * math.sin(direction)
    rn = np.hypot(ndx, ndy)
    ntheta = np.arctan2(ndy, ndx)
    irregularity = max(cell["irregularity"], 0.0)
    amplitudes = rng.normal(0, irregularity, 4) / np.sqrt(np.arange(1, 5))
    nucleus_edge = _outline(ntheta, nucleus_radius, amplitudes, rng.uniform(0, 2 * np.pi, 4))
    if rng.random() < cell["cleft_probability"]:
        notch = rng.uniform(0, 2 * np.pi)
        gap = np.angle(np.exp(1j * (ntheta - notch)))
        nucleus_edge = nucleus_edge * (1 - rng.uniform(0.25, 0.45) * np.exp(-(gap / 0.25) ** 2))
    nucleus_mask = np.clip(nucleus_edge - rn + 0.5, 0.0, 1.0)

    coarseness = float(np.clip(cell["chromatin_coarseness"], 0, 1))
    texture = (1 - coarseness) * maps.fine[region] + coarseness * maps.coarse[region]
    chromatin = cell["nucleus_density"] * rng.uniform(0.9, 1.1) * (
        1 + cell["chromatin_contrast"] * texture)
    for _ in range(rng.poisson(max(cell["nucleoli"], 0.0))):
        spot_r = rng.uniform(1.3, 2.6) * scale
        offset = nucleus_radius * 0.55 * np.sqrt(rng.random())
        angle = rng.uniform(0, 2 * np.pi)
        d2 = (ndx - offset * math.cos(angle)) ** 2 + (ndy - offset * math.sin(angle)) ** 2
        chromatin = chromatin * (1 - 0.55 * np.exp(-d2 / (2 * spot_r**2)))

    density = cell["cytoplasm_density"] * rng.uniform(0.85, 1.15)
    np.maximum(maps.cytoplasm[region], density * cell_mask, out=maps.cytoplasm[region])
    np.maximum(maps.nucleus[region], np.clip(chromatin, 0, None) * nucleus_mask,
               out=maps.nucleus[region])
    np.maximum(maps.cover[region], cell_mask, out=maps.cover[region])


def _paint_neutrophil(maps: _Maps, rng: np.random.Generator, cx: float, cy: float,
                      radius: float, scale: float) -> None:
    """A segmented neutrophil: a distractor of every class."""
    region, dx, dy = _patch(maps.nucleus.shape[0], cx, cy, radius + 2)
    cell_mask = np.clip(radius - np.hypot(dx, dy) + 0.5, 0.0, 1.0)
    np.maximum(maps.cytoplasm[region], 0.28 * cell_mask * (1 + 0.3 * maps.fine[region]),
               out=maps.cytoplasm[region])
    np.maximum(maps.cover[region], cell_mask, out=maps.cover[region])
    start, sweep = rng.uniform(0, 2 * np.pi), rng.uniform(2.0, 3.5)
    lobes = int(rng.integers(2, 5))
    for angle in np.linspace(start, start + sweep, lobes):
        lobe_r = rng.uniform(3.2, 4.6) * scale
        lx, ly = 0.45 * radius * math.cos(angle), 0.45 * radius * math.sin(angle)
        lobe = np.clip(lobe_r - np.hypot(dx - lx, dy - ly) + 0.5, 0.0, 1.0)
        np.maximum(maps.nucleus[region], 1.3 * lobe, out=maps.nucleus[region])


def _paint_smudge(maps: _Maps, rng: np.random.Generator, cx: float, cy: float,
                  radius: float) -> None:
    """A smudge cell (ruptured, smeared chromatin): a faint ragged blot, in every class."""
    region, dx, dy = _patch(maps.nucleus.shape[0], cx, cy, radius * 1.4 + 2)
    edge = _outline(np.arctan2(dy, dx), radius, rng.normal(0, 0.15, 4), rng.uniform(0, 6.3, 4))
    mask = np.clip((edge - np.hypot(dx, dy)) / 3.0, 0.0, 1.0)
    blot = mask * rng.uniform(0.2, 0.4) * np.clip(1 + 0.8 * maps.coarse[region], 0, None)
    np.maximum(maps.nucleus[region], blot, out=maps.nucleus[region])


def _paint_dots(maps: _Maps, rng: np.random.Generator, count: int, scale: float) -> None:
    """Platelets and stain precipitate: small dark dots."""
    size = maps.nucleus.shape[0]
    for _ in range(count):
        cx, cy = rng.uniform(0, size, 2)
        dot_r = rng.uniform(1.0, 2.4) * scale
        region, dx, dy = _patch(size, cx, cy, dot_r + 1)
        dot = np.clip(dot_r - np.hypot(dx, dy) + 0.5, 0.0, 1.0) * rng.uniform(0.6, 1.2)
        np.maximum(maps.nucleus[region], dot, out=maps.nucleus[region])


def _place(rng: np.random.Generator, size: int, radii: Sequence[float]) -> list[tuple[float, float]]:
    """Centres for cells of the given radii, overlapping little (a few tries each)."""
    centres: list[tuple[float, float]] = []
    for radius in radii:
        best = None
        for _ in range(12):
            cx, cy = rng.uniform(0, size, 2)
            gap = min((math.hypot(cx - x, cy - y) - 0.9 * (radius + r)
                       for (x, y), r in zip(centres, radii, strict=False)), default=1.0)
            if best is None or gap > best[0]:
                best = (gap, cx, cy)
            if gap > 0:
                break
        centres.append((best[1], best[2]))
    return centres


def generate_image(rng: np.random.Generator, class_name: str, image_size: int = 224) -> Image.Image:
    """Paint one smear field of ``class_name`` (a key of :data:`LADDER`, which
    :func:`leukemia_cnn.data.synthetic.generate` checks; the morphology of its nucleated cells)
    as an ``image_size`` square RGB image, from ``rng`` alone (:func:`image_rng`); geometry
    scales from the 224-pixel reference."""
    size = int(image_size)
    scale = size / REFERENCE_SIZE
    slide = draw_slide(rng)
    maps = _Maps(*(np.zeros((size, size), dtype=np.float32) for _ in range(4)),
                 fine=_unit_noise(rng, size, 0.8 * scale), coarse=_unit_noise(rng, size, 2.0 * scale))

    paint_rbcs(maps.rbc, rng, slide, scale)

    position = LADDER[class_name] + rng.normal(0, IMAGE_SPREAD)
    image_look = _morphology(position)
    n_cells = int(np.clip(np.rint(image_look["cells_per_field"] * rng.lognormal(0, 0.22)), 1, 20))
    cells = []
    for _ in range(n_cells):  # a residual normal lymphocyte sits at the Benign rung
        normal = class_name != "Benign" and rng.random() < NORMAL_CELL_SHARE
        cells.append(_morphology((0.0 if normal else position) + rng.normal(0, CELL_SPREAD)))
    radii = [c["cell_radius"] * rng.uniform(0.9, 1.1) * slide.zoom * scale for c in cells]
    extras = []
    if rng.random() < 0.15:
        extras.append(("neutrophil", rng.uniform(12.5, 15.0) * slide.zoom * scale))
    if rng.random() < 0.15:
        extras.append(("smudge", rng.uniform(10.0, 18.0) * slide.zoom * scale))
    centres = _place(rng, size, radii + [r for _, r in extras])
    for (cx, cy), radius, cell in zip(centres, radii, cells, strict=False):
        _paint_nucleated_cell(maps, rng, cx, cy, radius, cell, scale)
    for (cx, cy), (kind, radius) in zip(centres[len(cells):], extras, strict=True):
        if kind == "neutrophil":
            _paint_neutrophil(maps, rng, cx, cy, radius, scale)
        else:
            _paint_smudge(maps, rng, cx, cy, radius)
    _paint_dots(maps, rng, int(rng.poisson(2.0)), scale)

    image = _render(maps, slide, rng, size, scale)
    draw_label(image, rng, slide.label_style, scale)
    return image


def _render(maps: _Maps, slide: Slide, rng: np.random.Generator, size: int,
            scale: float) -> Image.Image:
    """The field's optical densities as light through the slide: focus, vignette and noise."""
    # erythrocytes are pushed aside by nucleated cells (a rim may still overlap)
    rbc = maps.rbc * (1 - 0.85 * maps.cover)
    yy, xx = np.ogrid[:size, :size]
    shading = 1 - slide.vignette * 2 * (((xx + 0.5) / size - 0.5) ** 2 + ((yy + 0.5) / size - 0.5) ** 2)
    rgb = np.empty((size, size, 3), dtype=np.float32)
    for channel in range(3):
        optical_density = (rbc * float(slide.rbc_stain[channel])
                           + maps.cytoplasm * float(slide.cytoplasm_stain[channel])
                           + maps.nucleus * float(slide.nucleus_stain[channel]))
        light = float(slide.background[channel]) * np.exp(-optical_density)
        rgb[..., channel] = gaussian_filter(light, slide.blur * scale, mode="nearest") * shading
    rgb += rng.standard_normal(rgb.shape, dtype=np.float32) * np.float32(slide.noise)
    return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")


def _unit_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal((size, size), dtype=np.float32), sigma,
                            mode="wrap")
    return field / (field.std() or 1.0)


def image_rng(seed: int, class_index: int, image_index: int) -> np.random.Generator:
    """The random stream of one image: independent of every other image and of worker order."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(class_index),
                                                         int(image_index)]))


