"""What the out-of-distribution guard reads of a batch besides the image statistics
(:mod:`leukemia_cnn.features.imagestats`, which ``drift`` measures too): the red-cell scale and
the embedding. :mod:`leukemia_cnn.modeling.guard` fits and scores the parts on them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from leukemia_cnn.errors import DataError


def scale_statistics(x: np.ndarray, workers: int | None = None) -> np.ndarray:
    """The log of the typical red-cell radius of each image of ``x`` (n, H, W, C) in [0, 1],
    as a fraction of its width (:func:`leukemia_cnn.data.scale.relative_radius` on the model's
    input): a smear under another magnification moves it by the log of the zoom. (n, 1)."""
    from PIL import Image

    from leukemia_cnn.data.scale import relative_radius

    def one(image: np.ndarray) -> float:
        pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
        picture = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        return float(np.log(relative_radius(picture)))

    with ThreadPoolExecutor(max(1, min(workers or os.cpu_count() or 1, len(x)))) as pool:
        return np.array(list(pool.map(one, np.asarray(x))))[:, None]


def embedding_model(model):
    """A Keras model with two outputs: the penultimate dense layer's activations and the
    classifier's softmax (one forward pass for both).

    The layers are chained afresh on a new input: a loaded Sequential model's layers can
    carry two call nodes, and a model built from ``layer.output`` of both would run the
    convolutions twice (measured: twice the time of the classifier alone).
    """
    import keras

    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    if len(dense) < 2:
        raise DataError(f"model {model.name!r} has no dense layer before its output; the guard "
                        "needs the penultimate-layer embedding")
    inputs = keras.Input(shape=tuple(model.inputs[0].shape[1:]))
    hidden, embedding = inputs, None
    for layer in model.layers:
        hidden = layer(hidden)
        if layer is dense[-2]:
            embedding = hidden
    return keras.Model(inputs=inputs, outputs=[embedding, hidden])


def forward(two_headed, x: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(embeddings, probabilities)`` of ``x`` through :func:`embedding_model`'s model."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., np.newaxis]
    chunks = [two_headed.predict_on_batch(x[start:start + batch_size])
              for start in range(0, len(x), batch_size)]
    if not chunks:
        width = int(two_headed.outputs[0].shape[-1])
        n_classes = int(two_headed.outputs[1].shape[-1])
        return np.zeros((0, width)), np.zeros((0, n_classes), np.float32)
    embeddings = np.concatenate([np.asarray(c[0], dtype=np.float64) for c in chunks])
    probabilities = np.concatenate([np.asarray(c[1], dtype=np.float32) for c in chunks])
    return embeddings, probabilities
