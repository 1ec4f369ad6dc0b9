"""The training split as ``tf.data`` batches with its augmentations: the 8 symmetries of the
square (``train.augment_dihedral``) and the acquisition shifts of the ``augment`` group
(:mod:`leukemia_cnn.data.augment`). Only training batches pass here; validation, test and served
images never do.
"""

from __future__ import annotations

import numpy as np

from leukemia_cnn.data.augment import active, augment_batch, needs_color, pipeline
from leukemia_cnn.errors import ConfigError


def shuffled(x: np.ndarray, y: np.ndarray, seed: int, dihedral: bool):
    """The images and labels reshuffled every epoch; with ``dihedral`` each image turned by a
    random multiple of 90 degrees and mirrored with probability 1/2 (exact pixel moves)."""
    import tensorflow as tf

    if dihedral and x.shape[1] != x.shape[2]:
        raise ConfigError(f"config key `train.augment_dihedral` needs square images; got "
                          f"{x.shape[1]}x{x.shape[2]} (set preprocess.image_size)")

    def turn(image, label):
        image = tf.image.rot90(image, k=tf.random.uniform([], 0, 4, dtype=tf.int32))
        mirrored = tf.random.uniform([]) < 0.5
        return tf.cond(mirrored, lambda: tf.image.flip_left_right(image), lambda: image), label

    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return dataset.map(turn) if dihedral else dataset


def training_batches(cfg, x: np.ndarray, y: np.ndarray, channels: int):
    """The training batches ``cfg`` asks for, or None when no augmentation is on (then Keras
    shuffles and batches the arrays itself, as the paper's config always did).

    ``x`` may hold RGB images for a grayscale model (``preprocess.train_rgb``): the shifts
    (``augment``) see colour and return ``channels`` channels. They run per batch through one
    albumentations ``Compose`` seeded with ``cfg.seed``, in a sequential map, so a run is
    reproducible.
    """
    import tensorflow as tf

    shifts = active(cfg.augment)
    if needs_color(cfg.augment) and x.shape[-1] == 1:
        raise ConfigError("config key `augment.stain` needs RGB training images, got grey ones: "
                          "set preprocess.train_rgb=true and train through the pipeline "
                          "(`dvc exp run`), which loads the train split's RGB copy")
    if not (cfg.train.augment_dihedral or shifts):
        return None
    dataset = shuffled(x, y, cfg.seed, cfg.train.augment_dihedral).batch(cfg.train.batch_size)
    if shifts:
        compose = pipeline(cfg.augment, cfg.seed)

        def shift(images, labels):
            out = tf.numpy_function(lambda batch: augment_batch(compose, batch, channels),
                                    [images], tf.float32, stateful=True)
            out.set_shape([None, x.shape[1], x.shape[2], channels])
            return out, labels

        dataset = dataset.map(shift)
    elif x.shape[-1] != channels:
        raise ConfigError(f"training images have {x.shape[-1]} channels but the model takes "
                          f"{channels}: RGB training images need an `augment` shift")
    return dataset.prefetch(tf.data.AUTOTUNE)
