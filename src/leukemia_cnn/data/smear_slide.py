"""The look of a synthetic smear slide, independent of the class: stain, background, focus,
erythrocytes and the microscope's scale label (see :mod:`leukemia_cnn.data.smear`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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
class Slide:
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


def draw_slide(rng: np.random.Generator) -> Slide:
    brightness = rng.uniform(0.86, 1.03)
    return Slide(
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


def paint_rbcs(od: np.ndarray, rng: np.random.Generator, slide: Slide, scale: float) -> None:
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


def draw_label(image: Image.Image, rng: np.random.Generator, style: int, scale: float) -> None:
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

