"""The paper's CNN (Sec. 2.2-2.3), built from config values."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from leukemia_cnn.config import knob


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
                dense_units: int = 128, dropout: float = 0.5, batch_norm: bool = False,
                batch_norm_momentum: float = 0.99, augment: bool = False,
                standardize_data=None, augment_rotation: float = 0.25,
                kernel_initializer: str = "glorot_uniform", head: str = "flatten",
                mixed_precision: str = "off"):
    """Conv blocks (Conv2D + ReLU -> MaxPool) -> Flatten -> Dense ReLU -> Dropout -> softmax.

    With the defaults this is exactly the paper's network; the keyword knobs add the
    robust-training layers of ``conf/experiment/improved.yaml``.

    Parameters
    ----------
    input_shape : tuple of int
        (height, width, channels) of the preprocessed images, e.g. (100, 100, 1).
    n_classes : int
        Number of output classes (softmax units).
    filters, kernel_sizes, padding, pool_size, dense_units, dropout, batch_norm, \
    batch_norm_momentum, kernel_initializer, head, augment, augment_rotation
        The ``model`` and ``train`` knobs of the same names, documented in
        ``conf/model/paper_cnn.yaml`` and ``conf/train/default.yaml`` (the paper: filters
        [64, 32, 128], kernels [5, 5, 3], valid padding, Flatten head, no batch norm).
        ``augment`` layers act only while training: the logged model sees images unchanged.
    standardize_data : numpy.ndarray or "per_image", optional
        Training images to adapt a ``Normalization`` layer to (per-channel mean and
        variance); ``"per_image"`` standardises each image by its own statistics.
    mixed_precision : {"off", "bfloat16", "auto"}, default "off"
        Hidden layers in bfloat16 (weights and the softmax output stay float32); ``auto``
        only where :func:`cpu_has_bfloat16` (see :func:`resolve_mixed_precision`).

    Returns
    -------
    keras.Sequential
        The uncompiled model.
    """
    import keras
    from keras import layers

    previous_policy = keras.config.dtype_policy()
    if resolve_mixed_precision(mixed_precision) == "bfloat16":
        # Layers take the global policy when they are created; restored below.
        keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = _layers(keras, layers, input_shape, n_classes, filters, kernel_sizes, padding,
                        pool_size, dense_units, dropout, batch_norm, batch_norm_momentum,
                        augment, standardize_data, augment_rotation, kernel_initializer, head)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return model


def _layers(keras, layers, input_shape, n_classes, filters, kernel_sizes, padding, pool_size,
            dense_units, dropout, batch_norm, batch_norm_momentum, augment, standardize_data,
            augment_rotation, kernel_initializer, head):
    model = keras.Sequential(name="paper_cnn")
    model.add(keras.Input(shape=tuple(input_shape)))
    if augment:
        model.add(layers.RandomFlip("horizontal_and_vertical", name="augment_flip"))
        if augment_rotation > 0:
            model.add(layers.RandomRotation(augment_rotation, fill_mode="reflect",
                                            name="augment_rotate"))
    if isinstance(standardize_data, str) and standardize_data == "per_image":
        # Each image to mean 0, variance 1 over its pixels and channels (stain and exposure vary
        # by slide); a layer without weights, so the logged model applies it too.
        model.add(layers.LayerNormalization(axis=[1, 2, 3], center=False, scale=False,
                                            epsilon=1e-5, name="standardize_per_image"))
    elif standardize_data is not None:
        normalization = layers.Normalization(axis=-1, name="standardize")
        normalization.adapt(standardize_data)
        model.add(normalization)
    for n_filters, kernel in zip(filters, kernel_sizes, strict=True):
        if batch_norm:
            model.add(layers.Conv2D(n_filters, kernel, padding=padding, use_bias=False,
                                    kernel_initializer=kernel_initializer))
            model.add(layers.BatchNormalization(momentum=batch_norm_momentum))
            model.add(layers.Activation("relu"))
        else:
            model.add(layers.Conv2D(n_filters, kernel, padding=padding, activation="relu",
                                    kernel_initializer=kernel_initializer))
        model.add(layers.MaxPooling2D(pool_size))
    model.add(layers.GlobalAveragePooling2D() if head == "global_average" else layers.Flatten())
    model.add(layers.Dense(dense_units, activation="relu", kernel_initializer=kernel_initializer))
    model.add(layers.Dropout(dropout))
    # float32 probabilities whatever the policy: a bfloat16 softmax rounds them to 3 digits.
    model.add(layers.Dense(n_classes, activation="softmax", dtype="float32"))
    return model


def cpu_has_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has bfloat16 units (AVX512-BF16 or AMX), from ``/proc/cpuinfo`` flags."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_mixed_precision(setting: str, cpuinfo: str | None = None) -> str:
    """``off`` or ``bfloat16``: what ``train.mixed_precision`` means on this machine.

    ``auto`` is ``bfloat16`` only on a CPU with bfloat16 units (:func:`cpu_has_bfloat16`); without
    them TensorFlow emulates bfloat16 in float32 and every step is slower.
    """
    if setting == "auto":
        return "bfloat16" if cpu_has_bfloat16(cpuinfo) else "off"
    return setting


def learning_rate(cfg: DictConfig, steps_per_epoch: int):
    """``train.learning_rate``, or the schedule ``train.lr_schedule`` and
    ``train.lr_warmup_epochs`` ask for, per step (``plateau`` is a callback, see
    :func:`leukemia_cnn.modeling.train.training_callbacks`).

    Keras's ``CosineDecay`` does all of it: a linear warm-up from 0 over the warm-up steps, then a
    cosine decay to 0 over the rest (``cosine``) or, with ``alpha=1``, the constant rate.
    """
    import keras

    rate = float(cfg.train.learning_rate)
    cosine = knob(cfg, "train.lr_schedule") == "cosine"
    warmup_steps = steps_per_epoch * int(knob(cfg, "train.lr_warmup_epochs"))
    if not (cosine or warmup_steps):
        return rate
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup_steps else rate,
        decay_steps=max(1, steps_per_epoch * int(cfg.train.epochs) - warmup_steps),
        alpha=0.0 if cosine else 1.0, warmup_target=rate if warmup_steps else None,
        warmup_steps=warmup_steps)


def build_from_config(cfg: DictConfig, input_shape: tuple[int, int, int], x_train=None,
                      steps_per_epoch: int = 1):
    """Build and compile the model that ``cfg.model`` and ``cfg.train`` describe.

    ``argmax_accuracy`` (categorical accuracy) is always compiled in. Keras 3 resolves the
    string ``"accuracy"`` from the output shape (categorical here, whatever the loss), whereas
    the paper's Keras 2 displayed *binary* accuracy under binary cross-entropy; with that loss
    ``binary_accuracy`` is compiled in too so the two can be told apart.

    Parameters
    ----------
    cfg : DictConfig
        Composed config (``data.classes``, ``model``, ``train``).
    input_shape : tuple of int
        (height, width, channels).
    x_train : numpy.ndarray, optional
        Training images; needed only when ``model.standardize`` is true.
    steps_per_epoch : int, default 1
        Batches per epoch; sets the length of a ``cosine`` learning-rate schedule.
    """
    import keras

    standardize = knob(cfg, "model.standardize")
    if standardize is True and x_train is None:
        raise ValueError("model.standardize needs the training images (x_train)")
    model = build_model(input_shape, len(cfg.data.classes), list(cfg.model.filters),
                        list(cfg.model.kernel_sizes), cfg.model.padding, cfg.model.pool_size,
                        cfg.model.dense_units, cfg.model.dropout,
                        batch_norm=bool(knob(cfg, "model.batch_norm")),
                        batch_norm_momentum=float(knob(cfg, "model.batch_norm_momentum")),
                        augment=bool(knob(cfg, "train.augment")),
                        augment_rotation=float(knob(cfg, "train.augment_rotation")),
                        standardize_data=("per_image" if standardize == "per_image"
                                          else x_train if standardize else None),
                        kernel_initializer=str(knob(cfg, "model.kernel_initializer")),
                        head=str(knob(cfg, "model.head")),
                        mixed_precision=str(knob(cfg, "train.mixed_precision")))
    metrics = ["accuracy", keras.metrics.CategoricalAccuracy(name="argmax_accuracy")]
    if cfg.train.loss == "binary_crossentropy":
        metrics.append(keras.metrics.BinaryAccuracy(name="binary_accuracy"))
    model.compile(optimizer=optimizer_from_config(cfg, steps_per_epoch),
                  loss=loss_from_config(cfg), metrics=metrics)
    return model


def optimizer_from_config(cfg: DictConfig, steps_per_epoch: int = 1):
    """Adam (the paper), or AdamW when ``train.weight_decay`` > 0: decoupled weight decay,
    ``weight_decay`` x rate x weight subtracted each step, on every weight but the biases and
    the batch-norm/normalisation parameters."""
    import keras

    rate = learning_rate(cfg, steps_per_epoch)
    ema = float(knob(cfg, "train.ema_momentum"))
    shared = {"use_ema": ema > 0, "ema_momentum": ema if ema > 0 else 0.99}
    decay = float(knob(cfg, "train.weight_decay"))
    if decay > 0:
        optimizer = keras.optimizers.AdamW(learning_rate=rate, weight_decay=decay, **shared)
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "mean",
                                                       "variance", "count"])
        return optimizer
    return keras.optimizers.Adam(learning_rate=rate, **shared)


def loss_from_config(cfg: DictConfig):
    """``train.loss`` as Keras's name (the paper), or its loss object with
    ``train.label_smoothing`` > 0 (targets pulled toward uniform by that fraction)."""
    import keras

    smoothing = float(knob(cfg, "train.label_smoothing"))
    if smoothing == 0:
        return cfg.train.loss
    if cfg.train.loss == "binary_crossentropy":
        return keras.losses.BinaryCrossentropy(label_smoothing=smoothing)
    return keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)


def displayed_accuracy_metric(model) -> str:
    """The metric class Keras resolved the string ``"accuracy"`` to (after the first step)."""
    for group in model.metrics:
        for metric in getattr(group, "metrics", []):
            if metric.name == "accuracy":
                return type(metric).__name__
    return "unresolved"
