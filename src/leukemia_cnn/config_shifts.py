"""The config groups of acquisition shift, beside the schema of
:mod:`leukemia_cnn.config_schema`, which holds them: ``augment`` (the shifts the training images
go through, data/augment.py) and ``robustness`` (the shifts the robustness stage measures the
model under, modeling/robustness.py)."""

from __future__ import annotations

from typing import Literal

from leukemia_cnn.config_types import Knobs, setting


class AugmentConfig(Knobs):
    scale: float = setting(0.0, ge=0, le=1, late=True, allowed=(
        "0 (off) or s in (0, 1]: zoom by a factor in [1 / (1 + s), 1 + s]"))
    brightness: float = setting(0.0, ge=0, lt=1, late=True, allowed="0 (off) or a fraction < 1")
    contrast: float = setting(0.0, ge=0, lt=1, late=True, allowed="0 (off) or a fraction < 1")
    gamma: float = setting(0.0, ge=0, le=1, late=True, allowed=(
        "0 (off) or g in (0, 1]: gamma in [1 / (1 + g), 1 + g]"))
    blur: float = setting(0.0, ge=0, le=5, late=True, allowed=(
        "0 (off) or the largest Gaussian sigma in pixels of the model input, up to 5"))
    jpeg_quality: int | None = setting(None, ge=1, le=95, late=True, none="no JPEG",
                                       allowed="null (off) or the lowest JPEG quality, 1-95")
    stain: float = setting(0.0, ge=0, lt=1, late=True, allowed=(
        "0 (off) or the HED jitter sigma in (0, 1), e.g. 0.05"))
    grayscale: float = setting(0.0, ge=0, le=1, late=True, allowed=(
        "the probability that a training image is turned grey, 0-1"))
    probability: float = setting(1.0, gt=0, le=1, late=True, allowed=(
        "the share of training images shifted, in (0, 1]; the others pass as they are"))


# The shift families of data/shifts.py (the schema cannot import it; a test keeps them equal).
SHIFT_FAMILIES = ("magnify", "brightness", "contrast", "gamma", "blur", "jpeg", "stain",
                  "grayscale", "rotate", "flip", "noise")
ShiftFamily = Literal[SHIFT_FAMILIES]


class RobustnessConfig(Knobs):
    seed: int = setting(0, ge=0, late=True)
    families: list[ShiftFamily] = setting(list(SHIFT_FAMILIES), late=True, allowed=(
        "a list of shift families: " + ", ".join(SHIFT_FAMILIES)))
    strengths: dict[ShiftFamily, list[float]] = setting({
        "magnify": [0.67, 0.8, 1.25, 1.5, 2.0], "brightness": [0.7, 0.85, 1.15, 1.3],
        "contrast": [0.6, 0.8, 1.25], "gamma": [0.67, 1.5], "blur": [1.0, 2.0],
        "jpeg": [20.0, 10.0], "stain": [0.05, 0.1, 0.2, 0.35], "grayscale": [1.0],
        "rotate": [45.0, 90.0], "flip": [1.0], "noise": [15.0, 40.0]}, late=True, allowed=(
        "a map from shift family to its list of strengths (see docs/robustness.md)"))
