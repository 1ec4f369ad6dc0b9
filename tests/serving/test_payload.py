"""The served model's input rows: base64 in every JSON format MLflow's server takes, and one
bad row marked instead of failing the request (as `leukemia-cnn predict` marks a bad file)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image


def encoded_image(seed: int, fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), fmt=st.sampled_from(["JPEG", "PNG", "BMP", "TIFF"]))
def test_raw_bytes_and_their_base64_text_give_the_same_image(seed, fmt):
    from leukemia_cnn.serving.payload import image_bytes

    data = encoded_image(seed, fmt)
    text = base64.b64encode(data)
    assert image_bytes(data) == data
    assert image_bytes(text) == data and image_bytes(text.decode()) == data
    assert image_bytes(np.bytes_(text)) == data
    assert image_bytes(b"plain text") == b"plain text"  # looks like base64, does not decode


def payloads(rows: list[str]) -> dict[str, dict]:
    """The same rows in the four JSON formats of `mlflow models serve`."""
    return {
        "dataframe_split": {"dataframe_split": {"columns": ["image"], "data": [[r] for r in rows]}},
        "dataframe_records": {"dataframe_records": [{"image": r} for r in rows]},
        "instances": {"instances": [{"image": r} for r in rows]},
        "inputs": {"inputs": {"image": rows}},
    }


@pytest.fixture
def served(trained):
    """The trained model as the scoring server loads it, and its request handler."""
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server

    model = mlflow.pyfunc.load_model(trained.train["model_uri"])
    schema = model.metadata.get_input_schema()

    def post(body: dict):
        """(status, body) as the server answers: an MlflowException becomes its JSON error."""
        from mlflow.exceptions import MlflowException

        try:
            answer = scoring_server.invocations(json.dumps(body), "application/json", model,
                                                schema)
        except MlflowException as exc:
            return exc.get_http_status_code(), exc.serialize_as_json()
        return answer.status, answer.response

    return post


def test_every_json_format_decodes_base64_and_marks_only_the_bad_row(served):
    good = base64.b64encode(encoded_image(1)).decode()
    bad = base64.b64encode(b"plain text, not an image").decode()
    for name, body in payloads([good, bad, good]).items():
        status, text = served(body)
        assert status == 200, (name, text[:500])
        rows = json.loads(text)["predictions"]
        assert len(rows) == 3, name
        assert rows[0]["predicted_class"] and rows[0]["error"] is None, name
        assert rows[0]["predicted_class"] == rows[2]["predicted_class"], name
        assert rows[1]["predicted_class"] is None, name
        assert rows[1]["error"].startswith("row 1: not a decodable image"), name
        assert rows[1]["model_version"] == rows[0]["model_version"], name


def test_a_request_with_no_decodable_row_is_refused_without_echoing_it(served):
    bad = base64.b64encode(b"x" * 300_000).decode()  # 400 kB of base64 text
    for name, body in payloads([bad, bad]).items():
        status, text = served(body)
        assert status == 400, name
        assert "row 0: not a decodable image" in text and "row 1:" in text, name
        assert len(text) < 2_000, (name, len(text))
