"""The config groups of acquisition shift (issue 33), typed as in :mod:`leukemia_cnn.config_schema`
(which holds them in its ``Config``): ``augment``, the shifts drawn on the training images
(:mod:`leukemia_cnn.data.augment`), and ``robustness``, the suite the robustness stage scores
(:mod:`leukemia_cnn.modeling.robustness`)."""

from __future__ import annotations

from typing import Literal

from leukemia_cnn.config_types import Knobs, setting


# --- augment: acquisition-shift augmentation of the training images (data/augment.py) ---
class AugmentConfig(Knobs):
    scale: float = setting(0.0, ge=0, le=1, late=True)
    brightness: float = setting(0.0, ge=0, lt=1, late=True)
    contrast: float = setting(0.0, ge=0, lt=1, late=True)
    gamma: float = setting(0.0, ge=0, le=1, late=True)
    blur: float = setting(0.0, ge=0, le=5, late=True)
    jpeg_quality: int | None = setting(None, ge=1, le=95, late=True, none="no JPEG")
    stain: float = setting(0.0, ge=0, lt=1, late=True)
    grayscale: float = setting(0.0, ge=0, le=1, late=True)
# --- end augment ---


# --- robustness: the acquisition-shift suite of the robustness stage (modeling/robustness.py) ---
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
# --- end robustness ---
