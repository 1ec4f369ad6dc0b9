"""What the out-of-distribution guard reads of a batch: image statistics and the embedding.

``image_statistics(x)`` gives the input part's statistics per image (named by
``STATISTIC_NAMES``); ``embedding_model(model)`` a two-headed copy of the classifier whose one
forward pass (``forward``) gives the penultimate-layer embedding the network parts score and the
probabilities. :mod:`leukemia_cnn.modeling.guard` fits and scores the parts on them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from leukemia_cnn.errors import DataError

STATISTICS_SIDE = 50  # image statistics are computed at about this many pixels a side
STATISTICS_CHUNK = 128  # fewer images per thread than this: one thread computes the statistics
STATISTIC_NAMES = ("mean", "std", "p05", "p50", "p95", "log_laplacian_var", "log_gradient_energy")


def image_statistics(x: np.ndarray, workers: int | None = None) -> np.ndarray:
    """Brightness, focus and edge statistics per image of ``x`` (n, H, W, C) in [0, 1].

    Computed at about :data:`STATISTICS_SIDE` pixels a side (every second pixel of a 100x100
    input; percentiles on half as many again): the guard's input gate then costs a few percent
    of the forward pass, and a blur or a stain shift still moves these statistics. Batches of
    :data:`STATISTICS_CHUNK` images or more are split over ``workers`` threads (default: one
    per core; numpy releases the GIL); each image's row is the same either way.
    """
    n = len(x)
    if n == 0:
        return np.zeros((0, len(STATISTIC_NAMES)))
    workers = max(1, min(workers or os.cpu_count() or 1, n // STATISTICS_CHUNK))
    if workers == 1:
        return _statistics(x)
    bounds = np.linspace(0, n, workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(lambda start, stop: _statistics(x[start:stop]),
                                            bounds[:-1], bounds[1:])))


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

    if len(x) == 0:
        return np.zeros((0, 1))
    with ThreadPoolExecutor(max(1, min(workers or os.cpu_count() or 1, len(x)))) as pool:
        return np.array(list(pool.map(one, np.asarray(x))))[:, None]


COLOUR_NAMES = ("red_minus_green", "blue_minus_green", "chroma")


def colour_statistics(x: np.ndarray) -> np.ndarray:
    """The colour of each image of ``x`` (n, H, W, C) in [0, 1]: the mean red and blue minus
    the mean green (the stain's hue) and the mean per-pixel spread of the channels (its
    saturation; 0 for a grey image). All 0 for one channel. (n, 3)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[-1] < 3 or len(x) == 0:
        return np.zeros((len(x), len(COLOUR_NAMES)))
    means = x[..., :3].mean(axis=(1, 2))
    chroma = (x[..., :3].max(axis=-1) - x[..., :3].min(axis=-1)).mean(axis=(1, 2))
    return np.column_stack([means[:, 0] - means[:, 1], means[:, 2] - means[:, 1],
                            chroma]).astype(np.float64)


def _statistics(x: np.ndarray) -> np.ndarray:
    gray = np.asarray(x, dtype=np.float32)
    if gray.ndim == 4:  # a view for one channel: a mean over it would copy every pixel
        gray = gray[..., 0] if gray.shape[-1] == 1 else gray.mean(axis=-1)
    n, step = len(gray), max(1, gray.shape[1] // STATISTICS_SIDE)
    half = np.ascontiguousarray(gray[:, ::step, ::step])
    flat = half.reshape(n, -1)
    percentiles = np.percentile(gray[:, ::2 * step, ::2 * step].reshape(n, -1), [5, 50, 95],
                                axis=1).T
    laplacian = (half[:, 1:-1, :-2] + half[:, 1:-1, 2:] + half[:, :-2, 1:-1]
                 + half[:, 2:, 1:-1] - 4.0 * half[:, 1:-1, 1:-1])
    edges = (np.square(np.diff(half, axis=1)).mean(axis=(1, 2))
             + np.square(np.diff(half, axis=2)).mean(axis=(1, 2)))
    focus = np.log(laplacian.reshape(n, -1).var(axis=1) + 1e-8)
    return np.column_stack([flat.mean(axis=1), flat.std(axis=1), percentiles.reshape(n, 3),
                            focus, np.log(edges + 1e-8)]).astype(np.float64)


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
