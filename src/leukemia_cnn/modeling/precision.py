"""Inference precision: run a saved float32 CNN in bfloat16 where the CPU has bfloat16 units.

``train.inference_precision`` is recorded with the logged model, which resolves it
(:func:`resolve_inference_precision`) when it is loaded, on the machine that serves it. The
guard has a threshold for each precision (:func:`leukemia_cnn.modeling.guard.calibrate_precision`).
"""

from __future__ import annotations

from leukemia_cnn.errors import ConfigError
from leukemia_cnn.modeling.model import cpu_has_bfloat16

INFERENCE_PRECISIONS = ("auto", "float32", "bfloat16")
# Largest |p_bfloat16 - p_float32| accepted for any class probability of any image: a tiny test
# model reaches about 0.02, the paper's network far less (benchmarks/RESULTS.md).
PROBABILITY_TOLERANCE = 0.05
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def resolve_inference_precision(setting: str, cpuinfo: str | None = None) -> str:
    """``float32`` or ``bfloat16``: what ``train.inference_precision`` means on this machine
    (``auto``: ``bfloat16`` only with bfloat16 units, :func:`cpu_has_bfloat16`; elsewhere
    TensorFlow emulates bfloat16, slower than float32)."""
    if setting not in INFERENCE_PRECISIONS:
        raise ConfigError(f"train.inference_precision is {setting!r}; use one of "
                          f"{', '.join(INFERENCE_PRECISIONS)}")
    if setting == "auto":
        return "bfloat16" if cpu_has_bfloat16(cpuinfo) else "float32"
    return setting


def model_precision(model) -> str:
    """``bfloat16`` when the model's first layer computes in bfloat16, else ``float32``."""
    import keras

    first = next(layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer))
    return "bfloat16" if str(first.dtype_policy.compute_dtype) == "bfloat16" else "float32"


def with_precision(model, precision: str):
    """``model`` computing in ``precision`` (``float32`` or ``bfloat16``), same weights.

    Returns ``model`` itself when it already computes so; otherwise a copy rebuilt layer by
    layer with that dtype policy for the conv blocks, where the time goes; the dense head (the
    layers from the flattening or global pooling on) stays float32: the guard's embedding is
    the penultimate dense layer's output, and rounding it to bfloat16 moved ood_scores by up to
    11% of the threshold (3% with the head in float32; benchmarks/RESULTS.md).
    """
    import keras

    if precision not in POLICIES:
        raise ConfigError(f"inference precision {precision!r}; use float32 or bfloat16")
    if model_precision(model) == precision:
        return model
    heads = (keras.layers.Flatten, keras.layers.GlobalAveragePooling2D, keras.layers.Dense)
    start = next((i for i, layer in enumerate(model.layers) if isinstance(layer, heads)),
                 len(model.layers) - 1)
    head = model.layers[start:]

    def rebuild(layer):
        config = layer.get_config()
        config["dtype"] = "float32" if layer in head else POLICIES[precision]
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=rebuild)
    copy.set_weights(model.get_weights())
    return copy
