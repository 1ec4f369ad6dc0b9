"""The logged MLflow model: the Keras CNN plus its own preprocessing.

It takes a DataFrame with an ``image`` column of encoded image bytes (JPEG, PNG, ...; base64
in a JSON request to ``mlflow models serve``) and answers one row per image with the columns
docs/predictions.md lists (``model_version`` is ``unregistered`` for a model loaded by run or
path, not through ``models:/``); the param ``heatmap`` adds a base64 PNG of the Grad-CAM
evidence, else nothing of Grad-CAM runs. Preprocessed arrays (n, H, W, C) in [0, 1] go through
``unwrap_python_model().predict_arrays(x)``: the signature makes ``PyFuncModel.predict``
refuse them. The CNN computes in ``train.inference_precision`` (the wrapper's ``precision``).
"""

from __future__ import annotations

import base64
import io
import json
import sys
from importlib import metadata
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.store.artifact.models_artifact_repo import REGISTERED_MODEL_META_FILE_NAME
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
from PIL import Image

from leukemia_cnn.data.acquisition import acquisition_of
from leukemia_cnn.errors import DataError
from leukemia_cnn.modeling.calibration import apply_temperature
from leukemia_cnn.modeling.guard import load_guard, score_images
from leukemia_cnn.modeling.guardinputs import embedding_model
from leukemia_cnn.modeling.precision import (
    model_precision,
    resolve_inference_precision,
    with_precision,
)
from leukemia_cnn.serving.payload import (
    LARGE_IMAGE_LOCK,
    decode_rows,
    described_columns,
    gray_image,
    heatmap_image,
    json_ready,
    refuse_if_none_decoded,
    with_row_errors,
)

IMAGE_COLUMN = "image"
HEATMAP_PARAM = "heatmap"
HEATMAP_COLUMN = "heatmap"
ERROR_COLUMN = "error"  # why a row of a request was not classified (None when it was)
# The guard's answer beside the class (the drift command and clients rely on these names).
IN_DISTRIBUTION_COLUMN = "in_distribution"
OOD_SCORE_COLUMN = "ood_score"
# The knob ``train.inference_precision`` as recorded in the model's preprocessing config (MLmodel).
PRECISION_KEY = "inference_precision"


def signature(classes: list[str]):
    """Model signature: ``image`` in; class name and probabilities out; the optional param
    ``heatmap`` (default false) adds the Grad-CAM column.

    ``image`` is an optional string (base64 text; bytes from Python pass too) so that the
    model decodes every row itself (:mod:`leukemia_cnn.serving.payload`) and marks a bad one
    in ``error``: as ``binary``, MLflow's schema step refused a whole request for one null or
    bad base64 row, and a request without the column with a 400 quoting its whole data.
    """
    outputs = [ColSpec("string", "predicted_class"), *(ColSpec("double", f"p_{n}") for n in classes),
               ColSpec("boolean", IN_DISTRIBUTION_COLUMN), ColSpec("double", OOD_SCORE_COLUMN),
               ColSpec("string", "model_name"), ColSpec("string", "model_version")]
    return ModelSignature(inputs=Schema([ColSpec("string", IMAGE_COLUMN, required=False)]),
                          outputs=Schema(outputs),
                          params=ParamSchema([ParamSpec(HEATMAP_PARAM, "boolean", False)]))


UNREGISTERED = "unregistered"


def registry_identity(artifact: Path) -> tuple[str, str]:
    """``(model name, version)`` of the registered model an artifact was loaded from.

    MLflow writes ``registered_model_meta`` beside ``MLmodel`` when it downloads a model
    through a ``models:/`` URI (``load_model``, ``mlflow models serve``); a model loaded by
    run or path has none (or one without a version): ``("", "unregistered")``.
    """
    for folder in Path(artifact).resolve().parents:
        if (folder / "MLmodel").is_file():
            meta_file = folder / REGISTERED_MODEL_META_FILE_NAME
            meta = yaml.safe_load(meta_file.read_text()) if meta_file.is_file() else None
            # A logged model loaded by id (``runs:/``, ``models:/m-...``) gets the file too,
            # with no name or version.
            if isinstance(meta, dict) and meta.get("model_version") not in (None, "None", ""):
                return str(meta.get("model_name") or ""), str(meta["model_version"])
            break
    return "", UNREGISTERED


class RequestRefused(MlflowException):
    """A refused request whose message stays its own one line.

    The scoring server rewrites the message of an MlflowException raised by ``predict`` to
    ``Failed to predict data '<the whole parsed request>'``: megabytes of base64 for an
    ``instances``/``inputs`` request. This message keeps its first value.
    """

    @property
    def message(self) -> str:
        return self.__dict__["own_message"]

    @message.setter
    def message(self, value: str) -> None:
        self.__dict__.setdefault("own_message", value)


class LeukemiaCNNModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper; artifacts: ``keras_model`` (.keras file), ``preprocessing`` (JSON)."""

    def load_context(self, context):
        import keras

        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        # The preprocessing is the model_config (shown in MLmodel), or the preprocessing.json
        # artifact of models logged before.
        config = context.model_config or {}
        meta = dict(config["preprocessing"]) if "preprocessing" in config \
            else json.loads(Path(context.artifacts["preprocessing"]).read_text())
        self.classes = list(meta["classes"])
        self.image_size = int(meta["image_size"])
        self.color_mode = str(meta["color_mode"])
        # preprocess.rescale / stain_normalize: every image to the training set's red-cell size
        # and stain first
        self.acquisition = acquisition_of(meta)
        # models logged before calibration existed serve their probabilities unchanged
        self.temperature = float(meta.get("temperature", 1.0))
        self.model_name, self.model_version = registry_identity(
            Path(context.artifacts["keras_model"]))
        guard = context.artifacts.get("guard")  # none in a model logged before the guard
        self.fitted_guard = load_guard(Path(guard), model_precision(self.model)) if guard else None
        self.saved_model = self.model
        # the precision it was logged with, resolved on this machine (logged without it: auto)
        self.set_precision(resolve_inference_precision(meta.get(PRECISION_KEY, "auto")))

    def set_precision(self, precision: str) -> None:
        """Run the CNN (and the guard's forward pass) in ``float32`` or ``bfloat16``, with the
        guard's threshold for that precision; the attribute ``precision`` says which.

        A guard saved without a threshold for ``precision`` (before the train stage set one
        per precision) keeps the network in the guard's own precision, and says so on stderr.
        """
        fitted = getattr(self, "fitted_guard", None)
        if fitted is not None and fitted.in_precision(precision) is None:
            print(f"leukemia-cnn: this model's guard has a threshold for {fitted.precision} "
                  f"only; computing in {fitted.precision}, not {precision} (a model trained "
                  f"now has both)", file=sys.stderr)
            precision = fitted.precision
        self.model = with_precision(self.saved_model, precision)
        self.precision = precision
        self.guard = fitted.in_precision(precision) if fitted is not None else None
        self.two_headed = embedding_model(self.model) if fitted is not None else None

    def preprocess(self, images) -> np.ndarray:
        """Decode and preprocess encoded images (bytes or their base64 text) exactly as the
        preprocess stage does; DataError naming the first row that does not decode."""
        _, x, reasons = decode_rows(images, self.image_size, self.color_mode,
                                    getattr(self, "acquisition", None))
        first = next((reason for reason in reasons if reason), None)
        if first:
            raise DataError(first)
        return x

    def predict_arrays(self, arrays: np.ndarray, batch_size: int = 256) -> pd.DataFrame:
        """Classify already preprocessed images (n, H, W, C) in [0, 1].

        ``predict_on_batch`` on chunks of ``batch_size``: ``model.predict``'s forward pass
        (identical probabilities) without its per-call set-up of about 0.1 s, 15x the forward
        pass of one image.
        """
        x = np.asarray(arrays, dtype=np.float32)
        if x.ndim == 3:
            x = x[..., np.newaxis]
        scores = np.full(len(x), np.nan)
        accepted = np.ones(len(x), dtype=bool)
        if len(x) == 0:
            probabilities = np.zeros((0, len(self.classes)), np.float32)
        elif getattr(self, "guard", None) is not None:
            # one forward pass gives the embedding the guard scores and the probabilities
            result = score_images(self.guard, self.two_headed, x, batch_size)
            probabilities, scores, accepted = (result.probabilities, result.ood_score,
                                               result.in_distribution)
        else:
            probabilities = np.concatenate([np.asarray(self.model.predict_on_batch(
                x[start:start + batch_size])) for start in range(0, len(x), batch_size)])
        if self.temperature != 1.0 and len(x):
            probabilities = apply_temperature(probabilities, self.temperature)
        frame = pd.DataFrame(np.asarray(probabilities, np.float64),
                             columns=[f"p_{name}" for name in self.classes])
        frame.insert(0, "predicted_class", np.asarray(self.classes)[probabilities.argmax(axis=1)])
        frame[IN_DISTRIBUTION_COLUMN] = np.asarray(accepted, dtype=bool)
        frame[OOD_SCORE_COLUMN] = np.asarray(scores, dtype=np.float64)
        frame["model_name"] = getattr(self, "model_name", "")
        frame["model_version"] = getattr(self, "model_version", UNREGISTERED)
        return frame

    def explain(self, images: list) -> list[dict]:
        """Grad-CAM of decoded PIL images: see :func:`leukemia_cnn.modeling.gradcam.explain_images`
        (a model trained with ``preprocess.rescale`` explains the image at its training scale,
        as it classifies it)."""
        from leukemia_cnn.modeling.gradcam import explain_images

        acquisition = getattr(self, "acquisition", None)
        if acquisition is not None:
            images = [acquisition.apply(image) for image in images]

        return explain_images(self.model, images, self.image_size, self.color_mode,
                              self.temperature)

    def heatmaps(self, x: np.ndarray, images) -> list[str]:
        """Base64 PNG of the Grad-CAM overlay per image (the ``heatmap`` column): the maps of
        the model inputs ``x`` (those the answer's class came from), each drawn over the
        image from ``images`` (an iterable of ``() -> PIL image``, called one at a time, at
        most :data:`~leukemia_cnn.serving.payload.LARGE_IMAGE_PIXELS` pixels)."""
        from leukemia_cnn.modeling.gradcam import gradcam, overlay, png_bytes

        maps, _ = gradcam(self.model, x) if len(x) else (np.zeros((0, 1, 1)), None)
        pngs = []
        for cam, image in zip(maps, images, strict=True):
            with LARGE_IMAGE_LOCK:  # one heatmap at a time per process: memory stays bounded
                pngs.append(base64.b64encode(png_bytes(overlay(image(), cam))).decode("ascii"))
        return pngs

    def predict(self, context, model_input: pd.DataFrame, params=None):
        try:
            frame = self._predict(model_input, bool((params or {}).get(HEATMAP_PARAM, False)))
        except DataError as exc:
            # The scoring server answers MlflowException(INVALID_PARAMETER_VALUE) with a 400.
            raise RequestRefused(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc
        return json_ready(frame)

    def _predict(self, model_input, heatmap: bool = False):
        if isinstance(model_input, np.ndarray):
            x = np.asarray(model_input, dtype=np.float32)
            x = x[..., np.newaxis] if x.ndim == 3 else x
            frame = self.predict_arrays(x)
            if heatmap:
                frame[HEATMAP_COLUMN] = self.heatmaps(x, [lambda image=image: gray_image(image)
                                                          for image in x])
            return frame
        if isinstance(model_input, pd.DataFrame):
            if IMAGE_COLUMN not in model_input.columns:
                raise DataError(f"input needs a column '{IMAGE_COLUMN}' of encoded image bytes "
                                f"(base64 in JSON); got {described_columns(model_input)}")
            # One row that does not decode is marked (column `error`), not the request failed
            encoded, x, reasons = decode_rows(model_input[IMAGE_COLUMN].tolist(),
                                              self.image_size, self.color_mode,
                                              getattr(self, "acquisition", None))
            refuse_if_none_decoded(reasons)
            frame = self.predict_arrays(x)
            if heatmap:
                frame[HEATMAP_COLUMN] = self.heatmaps(x, [
                    lambda data=data: heatmap_image(data) for data in encoded if data is not None])
            return with_row_errors(frame, reasons, ERROR_COLUMN)
        raise DataError(f"unsupported input type {type(model_input).__name__}; send a DataFrame "
                        f"with column '{IMAGE_COLUMN}' or a float array (n, H, W, C)")


def pip_requirements() -> list[str]:
    """The pinned packages the served model needs (no slow inference of requirements)."""
    names = ["mlflow", "tensorflow-cpu", "keras", "numpy", "pandas", "pillow", "omegaconf",
             # matplotlib: the heatmap's colour map; scipy, scikit-learn: the guard
             "matplotlib", "scipy", "scikit-learn"]
    return [f"{name}=={metadata.version(name)}" for name in names]


def input_example(image: np.ndarray) -> pd.DataFrame:
    """One row of what the model takes: ``image`` holding a PNG of ``image`` (H, W[, C]) in
    [0, 1], e.g. a validation image (shown as the model's input example)."""
    pixels = np.round(np.clip(np.asarray(image, np.float32), 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1
                    else pixels).save(buffer, format="PNG")
    return pd.DataFrame({IMAGE_COLUMN: [buffer.getvalue()]})


def log_model(keras_path: Path, classes: list[str], image_size: int, color_mode: str,
              temperature: float = 1.0, *, name: str = "leukemia-cnn", example=None,
              params: dict | None = None, guard_path: Path | None = None,
              inference_precision: str = "auto", scale: dict | None = None):
    """Log the pyfunc model into the active MLflow run; return its ``ModelInfo``.

    ``temperature`` (1.0: none) divides the log-probabilities of every prediction it serves.
    The preprocessing goes in as the ``model_config`` (MLmodel shows it; no temporary path);
    ``example`` (an image array in [0, 1]) becomes the input example, ``params`` the logged
    model's params; ``guard_path`` (a ``guard.npz``) is the out-of-distribution guard it
    applies; ``inference_precision`` (``train.inference_precision``) the precision it computes in;
    ``scale`` (:func:`leukemia_cnn.data.preprocess.scale_record`) the training set's red-cell
    size and whether the model puts every image at it (``preprocess.rescale``).
    """
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=LeukemiaCNNModel(),
        artifacts={"keras_model": str(keras_path),
                   **({"guard": str(guard_path)} if guard_path is not None else {})},
        # MLflow also logs a model_config as run params: nested, they read
        # `preprocessing/classes`, ... and sort after the stage's own params
        model_config={"preprocessing": {"classes": list(classes), "image_size": int(image_size),
                                        "color_mode": str(color_mode),
                                        "temperature": float(temperature),
                                        PRECISION_KEY: str(inference_precision),
                                        **(scale or {})}},
        signature=signature(classes),
        input_example=None if example is None else input_example(example),
        code_paths=[str(Path(__file__).resolve().parents[1])],  # the whole leukemia_cnn package
        pip_requirements=pip_requirements(),
        params=params,
    )
