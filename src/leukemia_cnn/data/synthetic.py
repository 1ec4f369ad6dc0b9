"""The built-in synthetic dataset: smear-field JPEGs in the Kaggle layout.

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

Each image's random stream comes from ``SeedSequence([seed, class index, image index])``:
the output is byte-identical for a seed whatever the number of workers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import gaussian_filter

from leukemia_cnn.config import check_section
from leukemia_cnn.data import versioning
from leukemia_cnn.data.imaging import IMAGE_EXTENSIONS
from leukemia_cnn.data.lineage import record_origin
from leukemia_cnn.data.staging import staging_folder
from leukemia_cnn.errors import ConfigError
from leukemia_cnn.fileio import (
    check_output,
    declared_by,
    mark_output,
    record_output,
    shown,
    swap_folder,
)

# The marker of a raw image tree `data synth` or `data get` wrote (outside paths.raw_dir).
RAW_OUTPUT = "data"

# Kaggle file-name prefix of each class: WBC-Benign-001.jpg, WBC-Malignant-Early-001.jpg, ...
FILE_PREFIXES = {
    "Benign": "WBC-Benign",
    "Early": "WBC-Malignant-Early",
    "Pre": "WBC-Malignant-Pre",
    "Pro": "WBC-Malignant-Pro",
}

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

# Slide looks, as optical densities (absorbance per RGB channel, Beer-Lambert) mixed per slide.
NUCLEUS_STAINS = np.array([
    [0.80, 1.20, 0.35],   # purple
    [1.30, 1.30, 0.25],   # blue-violet
    [0.30, 0.80, 0.15],   # magenta-pink
    [1.00, 1.35, 0.50],   # dark violet
])
CYTOPLASM_STAINS = np.array([
    [0.35, 0.25, 0.08],   # pale blue
    [0.22, 0.32, 0.10],   # lilac
    [0.12, 0.30, 0.16],   # pinkish
])
RBC_STAINS = np.array([
    [0.30, 0.27, 0.14],   # grey-blue
    [0.24, 0.31, 0.12],   # lavender
    [0.08, 0.34, 0.27],   # pink-red
    [0.28, 0.28, 0.24],   # grey
])
BACKGROUNDS = np.array([
    [226.0, 246.0, 250.0],  # cyan
    [248.0, 247.0, 226.0],  # yellowish
    [250.0, 236.0, 246.0],  # pink
    [242.0, 242.0, 242.0],  # neutral
    [238.0, 236.0, 252.0],  # lavender
])
LABEL_TEXTS = ("200 um", "500 px", "100 um", "20 um")


@dataclass(frozen=True)
class _Slide:
    """Everything about a field that does not depend on its class."""

    background: np.ndarray      # RGB 0..255
    nucleus_stain: np.ndarray   # optical density per RGB channel
    cytoplasm_stain: np.ndarray
    rbc_stain: np.ndarray
    zoom: float                 # magnification relative to the reference
    rbc_radius: float
    rbc_coverage: float         # fraction of the field covered by erythrocytes
    rbc_pallor: float           # optical density at the pale centre, relative to the rim
    blur: float                 # focus, Gaussian sigma in pixels
    noise: float                # sensor noise, 0..255 units
    vignette: float
    label_style: int            # 0 white box, 1 red text, 2 black bar only


def _mix(rng: np.random.Generator, anchors: np.ndarray) -> np.ndarray:
    return rng.dirichlet(np.full(len(anchors), 0.6)) @ anchors


def _draw_slide(rng: np.random.Generator) -> _Slide:
    brightness = rng.uniform(0.86, 1.03)
    return _Slide(
        background=np.clip(_mix(rng, BACKGROUNDS) * brightness, 0, 255),
        nucleus_stain=_mix(rng, NUCLEUS_STAINS) * rng.uniform(0.75, 1.25),
        cytoplasm_stain=_mix(rng, CYTOPLASM_STAINS) * rng.uniform(0.7, 1.3),
        rbc_stain=_mix(rng, RBC_STAINS) * rng.uniform(0.65, 1.35),
        zoom=rng.uniform(0.93, 1.07),
        rbc_radius=rng.uniform(9.5, 11.5),
        rbc_coverage=rng.uniform(0.35, 0.95),
        rbc_pallor=rng.uniform(0.15, 0.60),
        blur=rng.uniform(0.5, 2.2),
        noise=rng.uniform(1.0, 4.0),
        vignette=rng.uniform(0.0, 0.15),
        label_style=int(rng.integers(3)),
    )


def _patch(size: int, cx: float, cy: float, reach: float):
    """The bounding box of a shape within the field and its pixel offsets from the centre."""
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, size)
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, size)
    if x0 >= x1 or y0 >= y1:
        return None
    dx = (np.arange(x0, x1) - cx)[np.newaxis, :]
    dy = (np.arange(y0, y1) - cy)[:, np.newaxis]
    return (slice(y0, y1), slice(x0, x1)), dx, dy


def _paint_rbcs(od: np.ndarray, rng: np.random.Generator, slide: _Slide, scale: float) -> None:
    """Erythrocytes: biconcave discs (pale centre, dense rim) that may overlap and add up."""
    size = od.shape[0]
    radius = slide.rbc_radius * slide.zoom * scale
    count = int(slide.rbc_coverage * size * size / (math.pi * radius**2))
    centres = rng.uniform(-radius, size + radius, (count, 2))
    a = radius * rng.uniform(0.88, 1.12, count)
    b = a * rng.uniform(0.80, 1.0, count)
    angle = rng.uniform(0, math.pi, count)
    density = rng.uniform(0.8, 1.1, count)
    # all discs at once, each on its own small sprite; then each sprite is added in place
    half = int(math.ceil(radius * 1.12)) + 2
    corner = np.floor(centres).astype(int)
    fraction = (centres - corner)[:, :, None, None]
    offsets = np.arange(-half, half + 1, dtype=np.float32)
    dx = offsets[None, None, :] - fraction[:, 0]
    dy = offsets[None, :, None] - fraction[:, 1]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = (dx * cos + dy * sin) / a[:, None, None]
    v = (dy * cos - dx * sin) / b[:, None, None]
    rho = np.sqrt(u**2 + v**2)
    edge = np.clip((1.0 - rho) * a[:, None, None] + 0.5, 0.0, 1.0)
    profile = slide.rbc_pallor + (1 - slide.rbc_pallor) * np.minimum(rho / 0.8, 1.0) ** 2
    sprites = (density[:, None, None] * edge * profile).astype(np.float32)
    pad = half + int(math.ceil(radius)) + 1
    canvas = np.zeros((size + 2 * pad, size + 2 * pad), dtype=np.float32)
    for (x, y), sprite in zip(corner + pad - half, sprites, strict=True):
        canvas[y:y + sprite.shape[0], x:x + sprite.shape[1]] += sprite
    od += canvas[pad:pad + size, pad:pad + size]


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
    size = maps.nucleus.shape[0]
    box = _patch(size, cx, cy, radius * 1.15 + 2)
    if box is None:
        return
    region, dx, dy = box
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
    size = maps.nucleus.shape[0]
    box = _patch(size, cx, cy, radius + 2)
    if box is None:
        return
    region, dx, dy = box
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
    size = maps.nucleus.shape[0]
    box = _patch(size, cx, cy, radius * 1.4 + 2)
    if box is None:
        return
    region, dx, dy = box
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
        box = _patch(size, cx, cy, dot_r + 1)
        if box is None:
            continue
        region, dx, dy = box
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


def _draw_label(image: Image.Image, rng: np.random.Generator, style: int, scale: float) -> None:
    """The microscope's scale label in the bottom-right corner."""
    width, height = image.size
    text = LABEL_TEXTS[int(rng.integers(len(LABEL_TEXTS)))]
    stamp = Image.new("RGB", (40, 14), (255, 255, 255))
    draw = ImageDraw.Draw(stamp)
    font = ImageFont.load_default_imagefont()
    ink = (200, 20, 20) if style == 1 else (0, 0, 0)
    draw.text((2, 0), text, fill=ink, font=font)
    if style != 1:
        draw.line((2, 12, 24, 12), fill=ink, width=2)
    factor = rng.uniform(0.45, 0.7) * scale
    stamp = stamp.resize((max(int(40 * factor), 4), max(int(14 * factor), 2)),
                         Image.Resampling.BILINEAR)
    x = width - stamp.width - int(rng.integers(2, 8))
    y = height - stamp.height - int(rng.integers(1, 6))
    if style == 0:
        image.paste(stamp, (x, y))
    else:  # ink only, over the smear
        ink_mask = stamp.convert("L").point(lambda v: 255 - v)
        image.paste(Image.new("RGB", stamp.size, ink), (x, y), ink_mask)


def generate_image(rng: np.random.Generator, class_name: str, image_size: int = 224) -> Image.Image:
    """Paint one smear field of ``class_name`` as an ``image_size`` square RGB image.

    Parameters
    ----------
    rng : numpy.random.Generator
        The image's own random stream (see :func:`image_rng`); the result depends on nothing else.
    class_name : {"Benign", "Early", "Pre", "Pro"}
        Sets the morphology of the nucleated cells; everything else is drawn per slide.
    image_size : int
        Side in pixels; geometry scales from the 224-pixel reference.
    """
    if class_name not in LADDER:
        raise ConfigError(f"config key `data.classes`: the synthetic generator has no class "
                          f"{class_name!r}; allowed: {', '.join(LADDER)}")
    size = int(image_size)
    scale = size / REFERENCE_SIZE
    slide = _draw_slide(rng)
    maps = _Maps(*(np.zeros((size, size), dtype=np.float32) for _ in range(4)),
                 fine=_unit_noise(rng, size, 0.8 * scale), coarse=_unit_noise(rng, size, 2.0 * scale))

    _paint_rbcs(maps.rbc, rng, slide, scale)

    position = LADDER[class_name] + rng.normal(0, IMAGE_SPREAD)
    image_look = _morphology(position)
    n_cells = int(np.clip(np.rint(image_look["cells_per_field"] * rng.lognormal(0, 0.22)), 1, 20))
    cells = []
    for _ in range(n_cells):
        if class_name != "Benign" and rng.random() < NORMAL_CELL_SHARE:
            cell = _morphology(rng.normal(0, CELL_SPREAD))
        else:
            cell = _morphology(position + rng.normal(0, CELL_SPREAD))
        cells.append(cell)
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
    image = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")
    _draw_label(image, rng, slide.label_style, scale)
    return image


def _unit_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal((size, size), dtype=np.float32), sigma,
                            mode="wrap")
    return field / (field.std() or 1.0)


def image_rng(seed: int, class_index: int, image_index: int) -> np.random.Generator:
    """The random stream of one image: independent of every other image and of worker order."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(class_index),
                                                         int(image_index)]))


def file_name(class_name: str, number: int, total: int) -> str:
    """Kaggle-style name: ``WBC-Malignant-Pre-007.jpg`` (1-based, at least three digits)."""
    prefix = FILE_PREFIXES.get(class_name, f"WBC-{class_name}")
    return f"{prefix}-{number:0{max(3, len(str(total)))}d}.jpg"


def class_sizes(class_counts: Mapping[str, int], classes: Sequence[str],
                scale: float) -> dict[str, int]:
    """Images per class: ``round(class_count * scale)``, at least 1 (the values as the config
    schema checked them: a count for every class, scale > 0)."""
    return {name: max(1, round(class_counts[name] * scale)) for name in classes}


def _write_batch(jobs: Sequence[tuple[int, str, int, str]], seed: int, image_size: int,
                 jpeg_quality: int) -> int:
    for class_index, class_name, image_index, path in jobs:
        image = generate_image(image_rng(seed, class_index, image_index), class_name, image_size)
        image.save(path, "JPEG", quality=jpeg_quality)
    return len(jobs)


def generate(out_dir: str | Path, classes: Sequence[str], counts: Mapping[str, int], seed: int,
             image_size: int = 224, jpeg_quality: int = 92, progress: bool = True,
             n_jobs: int = 2) -> list[Path]:
    """Write ``counts[c]`` images of each class ``c`` to ``out_dir/<c>/`` and return their paths.

    Parameters
    ----------
    out_dir : path
        Created if missing; existing files with the same names are overwritten.
    classes : sequence of str
        Class names, in the order that numbers them for seeding.
    counts : mapping
        Images per class.
    seed : int
        Image ``i`` of class ``k`` is painted from ``SeedSequence([seed, k, i])``.
    image_size, jpeg_quality : int
        Side of the square images; JPEG quality (1-95).
    progress : bool
        Show a tqdm progress bar.
    n_jobs : int
        Worker processes; the output does not depend on it.
    """
    from tqdm import tqdm

    for name in classes:
        if name not in LADDER:
            raise ConfigError(f"config key `data.classes`: the synthetic generator has no class "
                              f"{name!r}; allowed: {', '.join(LADDER)}")
    out_dir = Path(out_dir)
    jobs = []
    for class_index, name in enumerate(classes):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        total = int(counts[name])
        for image_index in range(total):
            path = out_dir / name / file_name(name, image_index + 1, total)
            jobs.append((class_index, name, image_index, str(path)))

    bar = tqdm(total=len(jobs), unit="img", desc="synth", disable=not progress)
    batch = 32
    chunks = [jobs[i:i + batch] for i in range(0, len(jobs), batch)]
    try:
        if n_jobs > 1 and len(chunks) > 2:
            from joblib import Parallel, delayed

            runner = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
            for done in runner(delayed(_write_batch)(chunk, seed, image_size, jpeg_quality)
                               for chunk in chunks):
                bar.update(done)
        else:
            for chunk in chunks:
                bar.update(_write_batch(chunk, seed, image_size, jpeg_quality))
    finally:
        bar.close()
    return [Path(job[3]) for job in jobs]


def _holds_images(folder: Path) -> bool:
    return folder.is_dir() and any(
        p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.rglob("*") if p.is_file())


def run(cfg: DictConfig, root: Path, scale: float | None = None, seed: int | None = None,
         output: str | None = None, if_empty: bool = False, dvc_add: bool = True) -> None:
    """``leukemia-cnn data synth``: write the synthetic set, swap it in, version it with DVC.

    The new tree is written next to the output folder and replaces it only when complete, so
    an interrupted run leaves the previous data in place.
    """
    root = Path(root)
    # --scale and --seed override data.synth.scale/seed; the config schema checks the result.
    data = OmegaConf.to_container(cfg.data, resolve=True)
    # Under data=kaggle the schema says `data.synth` belongs to data=synthetic.
    data.setdefault("synth", {}).update(
        {k: v for k, v in (("scale", scale), ("seed", seed)) if v is not None})
    data = check_section("data", data)
    classes, synth_cfg = data["classes"], data["synth"]
    scale, seed = synth_cfg["scale"], synth_cfg["seed"]
    image_size, jpeg_quality = synth_cfg["image_size"], synth_cfg["jpeg_quality"]
    raw_dir = root / str(cfg.paths.raw_dir)
    sizes = class_sizes(synth_cfg["class_counts"], classes, scale)
    if if_empty and _holds_images(raw_output(output, raw_dir)):  # nothing will be written
        print(f"{shown(raw_output(output, raw_dir), root)} already holds images; left untouched "
              "(--if-empty)")
        return
    out_dir = check_raw_output(raw_output(output, raw_dir), root, label=output)

    if dvc_add:  # fail before the work, not after it
        check_dvc_target(root, out_dir)

    started = time.perf_counter()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with staging_folder(out_dir) as (staging, token):  # removed on SIGTERM too
        generate(staging, classes, sizes, seed, image_size, jpeg_quality, progress=True)
        marked = out_dir != raw_dir.resolve()
        if marked:
            mark_output(staging, RAW_OUTPUT)
        swap_folder(staging, out_dir, token, RAW_OUTPUT, declared_by(root, "data.dvc"))
        if not marked:  # the raw folder DVC versions holds no marker: recorded beside it
            record_output(out_dir, RAW_OUTPUT)
    seconds = time.perf_counter() - started
    per_class = ", ".join(f"{name} {count}" for name, count in sizes.items())
    print(f"wrote {sum(sizes.values()):,} synthetic images (seed {seed}, scale {scale}) to "
          f"{shown(out_dir, root)} in {seconds:.1f} s: {per_class}")

    if dvc_add:
        dvc_file = root / "data.dvc" if out_dir.resolve() == raw_dir.resolve() else None
        tracked = versioning.dvc_track(root, out_dir, dvc_file)
        record_origin(tracked, None)  # the built-in set: forget a recorded `data get` source
        print(f"{shown(tracked, root)} versions {shown(out_dir, root)}; commit it with "
              f"`git add {shown(tracked, root)} {shown(out_dir.parent / '.gitignore', root)}`")


def check_dvc_target(root: Path, out_dir: Path) -> None:
    """Refuse, before anything is written, an output ``dvc add`` cannot version (outside the
    repository, no DVC installed)."""
    versioning.dvc_target(root, out_dir)
    versioning.dvc_command()


def raw_output(output: str | None, raw_dir: Path) -> Path:
    """Where ``data synth|get`` write: ``--output`` (relative: to the current folder, as for
    every command's --output) or the configured ``paths.raw_dir``."""
    if not output:
        return Path(raw_dir)
    given = Path(output).expanduser()
    return given if given.is_absolute() else Path.cwd() / given


def check_raw_output(out_dir: Path, root: Path, inputs: Sequence[Path] = (),
                     label: str | None = None) -> Path:
    """The guard of ``data synth`` and ``data get``'s output (see
    :func:`leukemia_cnn.fileio.check_output`): a new folder, the one ``data.dvc`` declares,
    or one an earlier ``leukemia-cnn data`` run wrote; returns the folder to write."""
    return check_output(out_dir, kind="folder", root=root, flag="--output" if label else
                        "paths.raw_dir", owner=RAW_OUTPUT, declared=declared_by(root, "data.dvc"),
                        inputs=inputs, label=label or shown(out_dir, root),
                        instead="Pass --output with a new folder or one an earlier "
                                "`leukemia-cnn data` run wrote")
