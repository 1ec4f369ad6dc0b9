"""Figures: one way to make and save them, and the plots more than one command draws.

Figures are built on ``matplotlib.figure.Figure`` rather than pyplot: no global backend to
switch to Agg (works headless, in threads and under pytest), nothing to close afterwards, and
the file is written atomically through :func:`leukemia_cnn.fileio.atomic_write`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from leukemia_cnn.fileio import atomic_write


def new_figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6, 4), **subplots):
    """A figure and its axes (``Figure.subplots``: ``squeeze``, ``sharex``, ``gridspec_kw``...)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize)
    return figure, figure.subplots(nrows, ncols, **subplots)


def save_figure(figure, path: Path, dpi: int = 100) -> Path:
    """Lay ``figure`` out and write it to ``path`` atomically (format from the suffix)."""
    path = Path(path)
    figure.tight_layout()
    fmt = path.suffix.lstrip(".") or "png"
    return atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=dpi, format=fmt))


def plot_curves(history: pd.DataFrame, path: Path, title: str) -> Path:
    """The paper's Fig. 3: loss and accuracy per epoch, train and validation.

    ``history`` has the columns ``epoch``, ``loss``, ``val_loss``, ``argmax_accuracy`` and
    ``val_argmax_accuracy`` (train's history CSV, or a run's MLflow metric history).
    """
    figure, (ax_loss, ax_acc) = new_figure(1, 2, figsize=(10, 4))
    for axis, train_column in ((ax_loss, "loss"), (ax_acc, "argmax_accuracy")):
        for column, style in ((train_column, "-"), (f"val_{train_column}", "--")):
            axis.plot(history["epoch"], history[column], style, marker="o", label=column)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (argmax)", title="Accuracy", ylim=(0, 1))
    for axis in (ax_loss, ax_acc):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    return save_figure(figure, path, dpi=110)


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    """A confusion matrix (rows actual, columns predicted) with its counts, as a PNG."""
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, axis = new_figure(figsize=(5, 4.4))
    display = ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(classes))
    display.plot(ax=axis, cmap="Blues", colorbar=True)  # counts as integers ("d")
    axis.set(xlabel="predicted", ylabel="actual", title=title)
    return save_figure(figure, path, dpi=110)
