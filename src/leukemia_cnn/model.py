"""The paper's CNN (Sec. 2.2-2.3), built from config values."""

from __future__ import annotations

import os
import random

import numpy as np
from omegaconf import DictConfig


def set_seeds(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TensorFlow ops deterministic."""
    import keras
    import tensorflow as tf

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def build_model(input_shape: tuple[int, int, int], n_classes: int, filters: list[int],
                kernel_sizes: list[int], padding: str = "valid", pool_size: int = 2,
                dense_units: int = 128, dropout: float = 0.5):
    """Conv blocks (Conv2D + ReLU -> MaxPool) -> Flatten -> Dense ReLU -> Dropout -> softmax.

    Parameters
    ----------
    input_shape : (height, width, channels) of the preprocessed images, e.g. (100, 100, 1).
    n_classes : number of output classes (softmax units).
    filters, kernel_sizes : one entry per conv layer; the paper uses [64, 32, 128] / [5, 5, 3].
    """
    import keras
    from keras import layers

    model = keras.Sequential(name="paper_cnn")
    model.add(keras.Input(shape=tuple(input_shape)))
    for n_filters, kernel in zip(filters, kernel_sizes, strict=True):
        model.add(layers.Conv2D(n_filters, kernel, padding=padding, activation="relu"))
        model.add(layers.MaxPooling2D(pool_size))
    model.add(layers.Flatten())
    model.add(layers.Dense(dense_units, activation="relu"))
    model.add(layers.Dropout(dropout))
    model.add(layers.Dense(n_classes, activation="softmax"))
    return model


def build_from_config(cfg: DictConfig, input_shape: tuple[int, int, int]):
    """Build and compile the model that ``cfg.model`` and ``cfg.train`` describe.

    ``argmax_accuracy`` (categorical accuracy) is always compiled in. Keras 3 resolves the
    string ``"accuracy"`` from the output shape (categorical here, whatever the loss), whereas
    the paper's Keras 2 displayed *binary* accuracy under binary cross-entropy; with that loss
    ``binary_accuracy`` is compiled in too so the two can be told apart.
    """
    import keras

    model = build_model(input_shape, len(cfg.data.classes), list(cfg.model.filters),
                        list(cfg.model.kernel_sizes), cfg.model.padding, cfg.model.pool_size,
                        cfg.model.dense_units, cfg.model.dropout)
    metrics = ["accuracy", keras.metrics.CategoricalAccuracy(name="argmax_accuracy")]
    if cfg.train.loss == "binary_crossentropy":
        metrics.append(keras.metrics.BinaryAccuracy(name="binary_accuracy"))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.train.learning_rate),
                  loss=cfg.train.loss, metrics=metrics)
    return model


def displayed_accuracy_metric(model) -> str:
    """The metric class Keras resolved the string ``"accuracy"`` to (after the first step)."""
    for group in model.metrics:
        for metric in getattr(group, "metrics", []):
            if metric.name == "accuracy":
                return type(metric).__name__
    return "unresolved"
