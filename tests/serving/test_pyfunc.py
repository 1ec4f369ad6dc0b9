"""The logged model's own logic, without a store: what a client of `mlflow models serve`
sends (encoded images) and gets back (class, probabilities, which model answered)."""

import base64
import io
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.datasets import image_bytes
from leukemia_cnn.config_schema import ModelConfig
from leukemia_cnn.errors import DataError
from leukemia_cnn.serving.payload import json_ready
from leukemia_cnn.serving.pyfunc import (
    UNREGISTERED,
    LeukemiaCNNModel,
    registry_identity,
    signature,
)

CLASSES = ["Benign", "Early", "Pre", "Pro"]
SIZE = 24


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A small untrained CNN saved as the pyfunc artifacts (model file, preprocessing.json)."""
    import keras

    from leukemia_cnn.modeling.model import build_model, set_seeds

    set_seeds(0)
    folder = tmp_path_factory.mktemp("pyfunc")
    small = ModelConfig(filters=[4], kernel_sizes=[3], dense_units=8)
    keras.saving.save_model(build_model((SIZE, SIZE, 1), 4, small), folder / "model.keras")
    return folder


def loaded(folder, temperature=None) -> LeukemiaCNNModel:
    meta = {"classes": CLASSES, "image_size": SIZE, "color_mode": "grayscale"}
    if temperature is not None:
        meta["temperature"] = temperature
    model = LeukemiaCNNModel()
    # as log_model logs it: the preprocessing is the model's model_config
    model.load_context(SimpleNamespace(artifacts={"keras_model": str(folder / "model.keras")},
                                       model_config={"preprocessing": meta}))
    return model


def request(*seeds: int) -> pd.DataFrame:
    return pd.DataFrame({"image": [image_bytes(seed, size=(40, 30)) for seed in seeds]})


def test_encoded_images_get_a_class_probabilities_and_the_answering_model(artifacts):
    answer = loaded(artifacts).predict(None, request(1, 2, 3))
    assert list(answer.columns) == ["predicted_class", *(f"p_{c}" for c in CLASSES),
                                    "in_distribution", "ood_score", "model_name", "model_version",
                                    "error"]
    assert answer["error"].isna().all()  # every row decoded
    # logged without a guard: every image passes, with no score to say how familiar it is
    assert answer["in_distribution"].all() and answer["ood_score"].isna().all()
    probabilities = answer[[f"p_{c}" for c in CLASSES]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert list(answer["predicted_class"]) == [CLASSES[i] for i in probabilities.argmax(axis=1)]
    assert set(answer["model_version"]) == {UNREGISTERED}  # loaded by path, not models:/


def test_arrays_and_bytes_of_the_same_images_answer_the_same(artifacts):
    model = loaded(artifacts)
    images = request(4, 5)
    arrays = model.preprocess(images["image"].tolist())
    assert arrays.shape == (2, SIZE, SIZE, 1)
    by_array = model.predict_arrays(arrays, batch_size=1)
    # one image per batch or both at once: the same answer (to float32 rounding); predict
    # answers a missing number (no guard here: no ood_score) as None, for JSON
    pd.testing.assert_frame_equal(json_ready(by_array),
                                  model.predict(None, images).drop(columns="error"), atol=1e-6)
    assert len(model.predict_arrays(np.zeros((0, SIZE, SIZE, 1)))) == 0


def test_a_temperature_softens_the_probabilities_but_keeps_the_class(artifacts):
    plain, scaled = loaded(artifacts), loaded(artifacts, temperature=3.0)
    images = request(6, 7, 8)
    a, b = plain.predict(None, images), scaled.predict(None, images)
    assert list(a["predicted_class"]) == list(b["predicted_class"])
    columns = [f"p_{c}" for c in CLASSES]
    assert (b[columns].max(axis=1) <= a[columns].max(axis=1) + 1e-6).all()


def test_the_heatmap_param_adds_a_png_at_each_images_resolution(artifacts):
    answer = loaded(artifacts).predict(None, request(9), params={"heatmap": True})
    with Image.open(io.BytesIO(base64.b64decode(answer["heatmap"].iloc[0]))) as heat:
        assert heat.format == "PNG" and heat.size == (40, 30)
    assert "heatmap" not in loaded(artifacts).predict(None, request(9))


def test_bad_requests_are_400_errors_that_name_the_row_or_column(artifacts):
    from mlflow.exceptions import MlflowException

    model = loaded(artifacts)
    # one bad row is marked, the others answered (tests/serving/test_payload.py); a request
    # with no decodable row is refused naming its rows
    marked = model.predict(None, pd.DataFrame({"image": [image_bytes(1), b"junk"]}))
    assert marked["predicted_class"][1] is None
    assert marked["error"][1].startswith("row 1: not a decodable image")
    with pytest.raises(MlflowException, match=r"row 0: not a decodable image.*row 1: not a deco"):
        model.predict(None, pd.DataFrame({"image": [b"junk", b"more junk"]}))
    with pytest.raises(MlflowException, match="needs a column 'image'.*got 1 column\\(s\\): 'img'"):
        model.predict(None, pd.DataFrame({"img": [image_bytes(1)]}))
    with pytest.raises(DataError, match="row 0: not a decodable image"):
        model.preprocess(["aGVsbG8="])  # base64 text is decoded: b"hello" is no image
    with pytest.raises(MlflowException, match="unsupported input type list"):
        model.predict(None, [image_bytes(1)])


def test_registry_identity_reads_the_registered_model_meta(tmp_path):
    model_dir = tmp_path / "model"
    (model_dir / "artifacts").mkdir(parents=True)
    (model_dir / "MLmodel").write_text("flavors: {}\n")
    artifact = model_dir / "artifacts" / "model.keras"
    assert registry_identity(artifact) == ("", UNREGISTERED)
    (model_dir / "registered_model_meta").write_text("model_name: leukemia-cnn\nmodel_version: 'None'\n")
    assert registry_identity(artifact) == ("", UNREGISTERED)  # a logged model loaded by id
    (model_dir / "registered_model_meta").write_text("model_name: leukemia-cnn\nmodel_version: '7'\n")
    assert registry_identity(artifact) == ("leukemia-cnn", "7")


def test_the_signature_takes_image_text_and_an_optional_heatmap():
    schema = signature(CLASSES).to_dict()
    # an optional string: MLflow's schema step passes every row (null, a number, bad base64)
    # to the model, which marks the bad ones, instead of refusing the whole request
    assert json.loads(schema["inputs"]) == [{"type": "string", "name": "image",
                                             "required": False}]
    outputs = [column["name"] for column in json.loads(schema["outputs"])]
    assert outputs == ["predicted_class", *(f"p_{c}" for c in CLASSES), "in_distribution",
                       "ood_score", "model_name", "model_version"]
    assert json.loads(schema["params"]) == [{"name": "heatmap", "type": "boolean",
                                             "default": False, "shape": None}]
