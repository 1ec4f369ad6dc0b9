"""The paper's CNN (Sec. 2.2-2.3), built from config values."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

from leukemia_cnn.config_schema import Config, ModelConfig, TrainConfig


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


def build_model(input_shape: tuple[int, int, int], n_classes: int,
                model: ModelConfig | None = None, train: TrainConfig | None = None,
                standardize_data=None):
    """Conv blocks (Conv2D + ReLU -> MaxPool) -> Flatten -> Dense ReLU -> Dropout -> softmax.

    With the default groups this is exactly the paper's network; the knobs of
    ``conf/experiment/improved.yaml`` and ``fast.yaml`` add the robust-training layers.

    Parameters
    ----------
    input_shape : tuple of int
        (height, width, channels) of the preprocessed images, e.g. (100, 100, 1).
    model : ModelConfig, optional
        The ``model`` group (default: the paper's network, ``conf/model/paper_cnn.yaml``).
    train : TrainConfig, optional
        The ``train`` group: its ``augment`` layers (active only while training: the logged
        model sees images unchanged) and ``mixed_precision`` (hidden layers in bfloat16,
        weights and the softmax output in float32; ``auto`` only where
        :func:`cpu_has_bfloat16`, see :func:`resolve_mixed_precision`).
    standardize_data : numpy.ndarray or "per_image", optional
        Training images to adapt a ``Normalization`` layer to (per-channel mean and
        variance); ``"per_image"`` standardises each image by its own statistics.

    Returns
    -------
    keras.Sequential
        The uncompiled model.
    """
    import keras

    model, train = model or ModelConfig(), train or TrainConfig()
    previous_policy = keras.config.dtype_policy()
    if resolve_mixed_precision(train.mixed_precision) == "bfloat16":
        # Layers take the global policy when they are created; restored below.
        keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        network = keras.Sequential(name="paper_cnn")
        network.add(keras.Input(shape=tuple(input_shape)))
        for layer in [*_input_layers(train, standardize_data), *_conv_blocks(model),
                      *_head(model, n_classes)]:
            network.add(layer)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return network


def _input_layers(train: TrainConfig, standardize_data) -> list:
    from keras import layers

    added = []
    if train.augment:
        added.append(layers.RandomFlip("horizontal_and_vertical", name="augment_flip"))
        if train.augment_rotation > 0:
            added.append(layers.RandomRotation(train.augment_rotation, fill_mode="reflect",
                                               name="augment_rotate"))
    if isinstance(standardize_data, str) and standardize_data == "per_image":
        # Each image to mean 0, variance 1 over its pixels and channels (stain and exposure vary
        # by slide); a layer without weights, so the logged model applies it too.
        added.append(layers.LayerNormalization(axis=[1, 2, 3], center=False, scale=False,
                                               epsilon=1e-5, name="standardize_per_image"))
    elif standardize_data is not None:
        normalization = layers.Normalization(axis=-1, name="standardize")
        normalization.adapt(standardize_data)
        added.append(normalization)
    return added


def _conv_blocks(model: ModelConfig) -> list:
    from keras import layers

    added = []
    for n_filters, kernel in zip(model.filters, model.kernel_sizes, strict=True):
        if model.batch_norm:
            added += [layers.Conv2D(n_filters, kernel, padding=model.padding, use_bias=False,
                                    kernel_initializer=model.kernel_initializer),
                      layers.BatchNormalization(momentum=model.batch_norm_momentum),
                      layers.Activation("relu")]
        else:
            added.append(layers.Conv2D(n_filters, kernel, padding=model.padding,
                                       activation="relu",
                                       kernel_initializer=model.kernel_initializer))
        added.append(layers.MaxPooling2D(model.pool_size))
    return added


def _head(model: ModelConfig, n_classes: int) -> list:
    from keras import layers

    return [layers.GlobalAveragePooling2D() if model.head == "global_average"
            else layers.Flatten(),
            layers.Dense(model.dense_units, activation="relu",
                         kernel_initializer=model.kernel_initializer),
            layers.Dropout(model.dropout),
            # float32 probabilities whatever the policy: a bfloat16 softmax rounds them to 3 digits
            layers.Dense(n_classes, activation="softmax", dtype="float32")]


def cpu_has_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has bfloat16 units (AVX512-BF16 or AMX), from ``/proc/cpuinfo`` flags."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return not {"avx512_bf16", "amx_bf16"}.isdisjoint(cpuinfo.split())


def resolve_mixed_precision(setting: str, cpuinfo: str | None = None) -> str:
    """``off`` or ``bfloat16``: what ``train.mixed_precision`` means on this machine.

    ``auto`` is ``bfloat16`` only on a CPU with bfloat16 units (:func:`cpu_has_bfloat16`); without
    them TensorFlow emulates bfloat16 in float32 and every step is slower.
    """
    if setting == "auto":
        return "bfloat16" if cpu_has_bfloat16(cpuinfo) else "off"
    return setting


def learning_rate(cfg: Config, steps_per_epoch: int):
    """``train.learning_rate``, or the schedule ``train.lr_schedule`` and
    ``train.lr_warmup_epochs`` ask for, per step (``plateau`` is a callback, see
    :func:`leukemia_cnn.modeling.train.training_callbacks`).

    Keras's ``CosineDecay`` does all of it: a linear warm-up from 0 over the warm-up steps, then a
    cosine decay to 0 over the rest (``cosine``) or, with ``alpha=1``, the constant rate.
    """
    import keras

    rate = cfg.train.learning_rate
    cosine = cfg.train.lr_schedule == "cosine"
    warmup_steps = steps_per_epoch * cfg.train.lr_warmup_epochs
    if not (cosine or warmup_steps):
        return rate
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup_steps else rate,
        decay_steps=max(1, steps_per_epoch * cfg.train.epochs - warmup_steps),
        alpha=0.0 if cosine else 1.0, warmup_target=rate if warmup_steps else None,
        warmup_steps=warmup_steps)


def build_from_config(cfg: Config, input_shape: tuple[int, int, int], x_train=None,
                      steps_per_epoch: int = 1):
    """Build and compile the model that ``cfg.model`` and ``cfg.train`` describe.

    ``argmax_accuracy`` (categorical accuracy) is always compiled in. Keras 3 resolves the
    string ``"accuracy"`` from the output shape (categorical here, whatever the loss), whereas
    the paper's Keras 2 displayed *binary* accuracy under binary cross-entropy; with that loss
    ``binary_accuracy`` is compiled in too so the two can be told apart.

    Parameters
    ----------
    cfg : Config
        Composed config (``data.classes``, ``model``, ``train``).
    input_shape : tuple of int
        (height, width, channels).
    x_train : numpy.ndarray, optional
        Training images; needed only when ``model.standardize`` is true.
    steps_per_epoch : int, default 1
        Batches per epoch; sets the length of a ``cosine`` learning-rate schedule.
    """
    import keras

    standardize = cfg.model.standardize
    if standardize is True and x_train is None:
        raise ValueError("model.standardize needs the training images (x_train)")
    model = build_model(input_shape, len(cfg.data.classes), cfg.model, cfg.train,
                        standardize_data=("per_image" if standardize == "per_image"
                                          else x_train if standardize else None))
    metrics = ["accuracy", keras.metrics.CategoricalAccuracy(name="argmax_accuracy")]
    if cfg.train.loss == "binary_crossentropy":
        metrics.append(keras.metrics.BinaryAccuracy(name="binary_accuracy"))
    model.compile(optimizer=optimizer_from_config(cfg, steps_per_epoch),
                  loss=loss_from_config(cfg), metrics=metrics)
    return model


def optimizer_from_config(cfg: Config, steps_per_epoch: int = 1):
    """Adam (the paper), or AdamW when ``train.weight_decay`` > 0: decoupled weight decay,
    ``weight_decay`` x rate x weight subtracted each step, on every weight but the biases and
    the batch-norm/normalisation parameters."""
    import keras

    rate = learning_rate(cfg, steps_per_epoch)
    ema = cfg.train.ema_momentum
    shared = {"use_ema": ema > 0, "ema_momentum": ema if ema > 0 else 0.99}
    decay = cfg.train.weight_decay
    if decay > 0:
        optimizer = keras.optimizers.AdamW(learning_rate=rate, weight_decay=decay, **shared)
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "mean",
                                                       "variance", "count"])
        return optimizer
    return keras.optimizers.Adam(learning_rate=rate, **shared)


def loss_from_config(cfg: Config):
    """``train.loss`` as Keras's name (the paper), or its loss object with
    ``train.label_smoothing`` > 0 (targets pulled toward uniform by that fraction)."""
    import keras

    smoothing = cfg.train.label_smoothing
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
