"""Grad-CAM heatmaps: where in the smear the CNN found the evidence for the class it predicted.

The map is built on the last conv block's pooled, rectified feature maps ``A`` (what the
dense head reads; 10x10 for the paper's 100x100 input) and the gradient ``G`` of the predicted
class's score with respect to them, then rectified, normalised to [0, 1], upsampled and drawn
over the original colour image (the preprocessing resizes without cropping, so the map lines up
with it).

- ``method="hirescam"`` (default; HiResCAM, Draelos & Carin 2020): ``sum_k G_k * A_k`` per
  position. The paper's CNN flattens its last feature maps into a dense layer, whose weights
  differ per position; this keeps that position information and is exact for such a head.
- ``method="gradcam"`` (Grad-CAM, Selvaraju et al. 2017): ``sum_k mean(G_k) * A_k``. The
  spatial mean of the gradient suits global-average-pooling heads; with the flatten head it
  averages away where the evidence is.

The score is the class's log-odds against the others (its logit minus the log-sum-exp of the
other logits): a softmax only sees logit differences, so a bare logit may carry none of the
evidence, and unlike log p the log-odds' gradient does not vanish as p -> 1.

Drawn by ``leukemia-cnn explain`` (:mod:`leukemia_cnn.serving.explain`), the evaluate stage's
grid and the served model on request (``params={"heatmap": True}``).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from leukemia_cnn.data.imaging import to_model_input
from leukemia_cnn.errors import LeukemiaCNNError

CAM_METHODS = ("hirescam", "gradcam")


def feature_layer_index(model) -> int:
    """Index in ``model.layers`` of the last conv block's output: the last ``Conv2D`` and the
    BatchNormalization/ReLU (``model.batch_norm``) and max-pool layers right after it.

    The map is taken after the block's max-pool, where the head reads it: before it, the
    pool passes the gradient to one position in each window, and an element-wise map comes
    out as a lattice of isolated dots.
    """
    from keras import layers

    conv = [i for i, layer in enumerate(model.layers) if isinstance(layer, layers.Conv2D)]
    if not conv:
        raise LeukemiaCNNError(f"model {model.name!r} has no Conv2D layer: Grad-CAM needs one")
    index = conv[-1]
    block = (layers.BatchNormalization, layers.Activation, layers.MaxPooling2D)
    while index + 1 < len(model.layers) and isinstance(model.layers[index + 1], block):
        index += 1
    return index


def gradcam(model, x: np.ndarray, class_index=None, method: str = "hirescam",
            ) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps of a Sequential Keras model for a batch of preprocessed images.

    Parameters
    ----------
    model : keras.Sequential
        The project's CNN (conv blocks -> ... -> Dense softmax).
    x : numpy.ndarray of shape (n, H, W, C)
        Preprocessed images, as the model takes them.
    class_index : array-like of int, optional
        The class to explain per image; default: the predicted (argmax) class.
    method : {"hirescam", "gradcam"}
        Element-wise gradient x activation (default), or Grad-CAM's spatially averaged
        gradient per filter (see the module docstring).

    Returns
    -------
    heatmaps : numpy.ndarray of shape (n, h, w), float32 in [0, 1]
        At the resolution of the last conv layer (all zeros where no feature map speaks for
        the class).
    probabilities : numpy.ndarray of shape (n, n_classes)
        The model's softmax output for ``x``.
    """
    import keras
    import tensorflow as tf

    if method not in CAM_METHODS:
        raise LeukemiaCNNError(f"heatmap method {method!r} is invalid; allowed: "
                               f"{', '.join(CAM_METHODS)}")
    x = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
    feature_at = feature_layer_index(model)
    last = model.layers[-1]
    with tf.GradientTape() as tape:
        hidden, features = x, None
        for index, layer in enumerate(model.layers[:-1]):
            hidden = layer(hidden, training=False)
            if index == feature_at:
                features = hidden
        if isinstance(last, keras.layers.Dense) and last.activation is keras.activations.softmax:
            logits = tf.matmul(hidden, last.kernel) + (last.bias if last.use_bias else 0.0)
        else:  # any other head: log-probabilities share the logits' argmax and gradients' sign
            logits = tf.math.log(tf.maximum(last(hidden, training=False), 1e-30))
        probabilities = tf.nn.softmax(logits)
        chosen = (tf.argmax(logits, axis=1) if class_index is None
                  else tf.convert_to_tensor(np.asarray(class_index, dtype=np.int64)))
        mask = tf.one_hot(chosen, tf.shape(logits)[1], on_value=True, off_value=False)
        others = tf.reduce_logsumexp(tf.where(mask, tf.fill(tf.shape(logits), -1e9), logits),
                                     axis=1)
        score = tf.reduce_sum(tf.boolean_mask(logits, mask) - others)
    gradients = tape.gradient(score, features)
    if method == "gradcam":
        gradients = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(gradients * features, axis=-1)).numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    cam = np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)
    return cam.astype(np.float32), probabilities.numpy()


def upsample(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``size`` = (width, height), clipped to [0, 1]."""
    resized = Image.fromarray(np.asarray(heatmap, dtype=np.float32), mode="F").resize(
        size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.55) -> Image.Image:
    """``image`` (any mode, shown in colour) with ``heatmap`` (values in [0, 1], any size)
    drawn over it in the ``jet`` colours, covering it by ``alpha`` where the map is 1; where the
    map is 0 the original shows unchanged."""
    from matplotlib import colormaps

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    heat = upsample(heatmap, image.size)
    colour = colormaps["jet"](heat)[..., :3]
    weight = alpha * heat[..., np.newaxis]
    blended = rgb * (1.0 - weight) + colour * weight
    return Image.fromarray(np.round(blended * 255).astype(np.uint8), mode="RGB")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def explain_images(model, images: list[Image.Image], image_size: int, color_mode: str,
                   temperature: float = 1.0) -> list[dict]:
    """Predict and explain decoded images with the Keras ``model``.

    Returns one dict per image: ``class_index``, ``probabilities`` (after ``temperature``),
    ``heatmap`` (float32 at the image's own resolution) and ``overlay`` (a PIL RGB image at
    that resolution).
    """
    from leukemia_cnn.modeling.calibration import apply_temperature

    if not images:
        return []
    x = np.stack([to_model_input(image, image_size, color_mode) for image in images])
    maps, probabilities = gradcam(model, x)
    probabilities = apply_temperature(probabilities, temperature)
    return [{"class_index": int(p.argmax()), "probabilities": p,
             "heatmap": upsample(cam, image.size), "overlay": overlay(image, cam)}
            for image, cam, p in zip(images, maps, probabilities, strict=True)]
