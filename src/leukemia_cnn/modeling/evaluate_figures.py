"""The evaluate stage's figures: sample predictions (the paper's Fig. 2), reliability
diagrams and the Grad-CAM grid of test predictions. Drawn and saved through
:mod:`leukemia_cnn.modeling.plots`."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.modeling.plots import new_figure, save_figure


def plot_samples(x: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, classes: list[str],
                 path: Path, n: int = 16, seed: int = 0) -> Path:
    """The paper's Fig. 2: a grid of test images with true and predicted class."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(x), size=min(n, len(x)), replace=False)
    cols = 4
    rows = int(np.ceil(len(picks) / cols))
    fig, axes = new_figure(rows, cols, figsize=(cols * 2.4, rows * 2.6), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, index in zip(axes.ravel(), picks, strict=False):
        image = x[index]
        axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
        ok = y_true[index] == y_pred[index]
        axis.set_title(f"true {classes[y_true[index]]}\npred {classes[y_pred[index]]}",
                       fontsize=9, color="green" if ok else "red")
    fig.suptitle("Sample predictions (test split)")
    return save_figure(fig, path, dpi=100)


def plot_reliability(tables: dict, metrics: dict[str, float], split: str, temperature: float,
                     path: Path) -> Path:
    """Reliability diagram: accuracy against confidence per bin, before and after temperature
    scaling, beside the diagonal of perfect calibration; bar widths are the bins, the lower
    panel the share of images per bin."""
    fig, (top, bottom) = new_figure(2, 1, figsize=(5, 5.6), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], ":", color="gray", label="perfect calibration")
    styles = {"uncalibrated": ("tab:red", "T = 1"), "calibrated": ("tab:blue", f"T = {temperature:.2f}")}
    for offset, (name, table) in enumerate(tables.items()):
        colour, label = styles[name]
        filled = table[table["count"] > 0]
        width = float(table["upper"].iloc[0] - table["lower"].iloc[0])
        left = filled["lower"] + width * (0.25 + 0.5 * offset)
        top.bar(left, filled["accuracy"], width=width * 0.45, color=colour, alpha=0.6,
                label=f"{label}: ECE {metrics[f'{split}_ece_{name}']:.3f}, "
                      f"NLL {metrics[f'{split}_nll_{name}']:.3f}")
        bottom.bar(left, filled["count"] / table["count"].sum(), width=width * 0.45,
                   color=colour, alpha=0.6)
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy in bin",
            title=f"Reliability diagram ({split})")
    top.legend(fontsize=8, loc="upper left")
    bottom.set(xlabel="confidence (top-class probability)", ylabel="share of images")
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    return save_figure(fig, path, dpi=110)


def original_image(raw_dir: Path | None, relative: str, fallback: np.ndarray):
    """The raw colour image behind a preprocessed one, or the preprocessed grayscale array
    when the raw tree is not at hand (e.g. a sweep job's copy)."""
    from PIL import Image

    from leukemia_cnn.data.imaging import open_image

    if raw_dir is not None and (raw_dir / relative).is_file():
        with contextlib.suppress(LeukemiaCNNError):
            return open_image(raw_dir / relative)
    array = fallback[..., 0] if fallback.shape[-1] == 1 else fallback
    return Image.fromarray(np.round(np.clip(array, 0, 1) * 255).astype(np.uint8))


def plot_gradcam_grid(model, x: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
                      probabilities: np.ndarray, paths, classes: list[str], per_class: int,
                      raw_dir: Path | None, path: Path) -> Path | None:
    """One row per true class: ``per_class`` correct, then ``per_class`` wrong test
    predictions (most confident first), each the original image with its Grad-CAM map for
    the predicted class. None when ``per_class`` is 0."""
    if per_class < 1:
        return None
    from leukemia_cnn.modeling.gradcam import gradcam, overlay

    confidence = probabilities.max(axis=1)
    picks = []  # per true class: the most confident correct and wrong predictions
    for label in range(len(classes)):
        rows = []
        for correct in (True, False):
            index = np.flatnonzero((y_true == label) & ((y_pred == label) == correct))
            rows.append(index[np.argsort(-confidence[index], kind="stable")][:per_class].tolist())
        picks.append((label, *rows))
    chosen = sorted({i for _, right, wrong in picks for i in right + wrong})
    maps = dict(zip(chosen, gradcam(model, x[chosen])[0], strict=True)) if chosen else {}
    cols = 2 * per_class
    fig, axes = new_figure(len(classes), cols, figsize=(cols * 2.3, len(classes) * 2.5),
                          squeeze=False)
    for row, (label, right, wrong) in enumerate(picks):
        for col in range(cols):
            axis = axes[row, col]
            axis.set(xticks=[], yticks=[])
            group = right if col < per_class else wrong
            slot = col % per_class
            if col == 0:
                axis.set_ylabel(f"true {classes[label]}", fontsize=9)
            if slot >= len(group):  # nothing to show: "none", no frame
                axis.text(0.5, 0.5, "none", ha="center", va="center", color="gray",
                          transform=axis.transAxes)
                axis.spines[:].set_visible(False)
                continue
            index = group[slot]
            image = original_image(raw_dir, str(paths[index]), x[index])
            axis.imshow(overlay(image, maps[index]))
            ok = y_pred[index] == y_true[index]
            axis.set_title(f"pred {classes[y_pred[index]]} {confidence[index]:.2f}", fontsize=8,
                           color="green" if ok else "red")
    fig.suptitle(f"Grad-CAM on test images: {per_class} correct (left), {per_class} wrong "
                 "(right) per class, most confident first", fontsize=10)
    return save_figure(fig, path, dpi=100)
