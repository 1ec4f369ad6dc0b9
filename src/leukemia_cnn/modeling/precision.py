"""Inference precision: run a saved float32 CNN in bfloat16 where the CPU has bfloat16 units.

``train.inference_precision`` (``auto``, ``float32`` or ``bfloat16``) is recorded with the
logged model; the pyfunc model resolves it when it is loaded, on the machine that serves it:
``auto`` is ``bfloat16`` only where :func:`leukemia_cnn.modeling.model.cpu_has_bfloat16` finds
AVX512-BF16 or AMX units (elsewhere TensorFlow emulates bfloat16 and is slower than float32).

The model is rebuilt from its config with the Keras dtype policy ``mixed_bfloat16`` (weights
stay float32, each layer computes in bfloat16) and the trained weights; its softmax layer keeps
float32, so probabilities are not rounded to bfloat16's three significant digits.
"""

from __future__ import annotations

from leukemia_cnn.errors import ConfigError
from leukemia_cnn.modeling.model import cpu_has_bfloat16

INFERENCE_PRECISIONS = ("auto", "float32", "bfloat16")
# Largest |p_bfloat16 - p_float32| accepted for any class probability of any image. Measured
# on the test split of the built-in synthetic set with a 3-epoch model (benchmarks/RESULTS.md):
# max 0.0101, class agreement 1.000; 0.05 leaves room for other trained weights.
PROBABILITY_TOLERANCE = 0.05
# Keras dtype policy per resolved precision.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def resolve_inference_precision(setting: str, cpuinfo: str | None = None) -> str:
    """``float32`` or ``bfloat16``: what ``train.inference_precision`` means on this machine."""
    if setting not in INFERENCE_PRECISIONS:
        raise ConfigError(f"train.inference_precision is {setting!r}; use one of "
                          f"{', '.join(INFERENCE_PRECISIONS)}")
    if setting == "auto":
        return "bfloat16" if cpu_has_bfloat16(cpuinfo) else "float32"
    return setting


def model_precision(model) -> str:
    """``bfloat16`` when the model's first layer computes in bfloat16, else ``float32``."""
    first = model.layers[0]
    return "bfloat16" if str(first.dtype_policy.compute_dtype) == "bfloat16" else "float32"


def with_precision(model, precision: str):
    """``model`` computing in ``precision`` (``float32`` or ``bfloat16``), same weights.

    Returns ``model`` itself when it already computes so; otherwise a copy rebuilt layer by
    layer with that dtype policy (the last layer, the softmax, stays float32).
    """
    import keras

    if precision not in POLICIES:
        raise ConfigError(f"inference precision {precision!r}; use float32 or bfloat16")
    if model_precision(model) == precision:
        return model
    last = model.layers[-1]

    def rebuild(layer):
        config = layer.get_config()
        config["dtype"] = "float32" if layer is last else POLICIES[precision]
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=rebuild)
    copy.set_weights(model.get_weights())
    return copy
