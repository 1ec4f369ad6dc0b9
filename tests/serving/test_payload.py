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


# ------------------------------------------------------------------ issue 31


def strict_json(text: str):
    """``json.loads`` that refuses NaN and Infinity, as ``JSON.parse`` does."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("bad", [None, 1.5, "@@@ not base64 @@@"], ids=["null", "number",
                                                                         "bad base64"])
def test_a_null_number_or_bad_base64_row_is_marked_in_every_format(served, bad):
    """issue 31: with dataframe_split or dataframe_records, MLflow's schema step refused the
    whole request (400) for one such row among good ones; the bad row's p_* and ood_score
    were a bare NaN, which JSON.parse rejects."""
    good = base64.b64encode(encoded_image(1)).decode()
    rows = [good] * 5 + [bad] + [good] * 4
    for name, body in payloads(rows).items():
        status, text = served(body)
        assert status == 200, (name, text[:300])
        answer = strict_json(text)["predictions"]
        assert len(answer) == 10, name
        assert answer[5]["predicted_class"] is None and answer[5]["error"].startswith("row 5: ")
        assert answer[5]["p_Benign"] is None and answer[5]["ood_score"] is None, name
        assert all(row["error"] is None and row["predicted_class"] for i, row in
                   enumerate(answer) if i != 5), name


def test_a_request_past_the_pixel_cap_marks_the_rows_it_did_not_decode(served, monkeypatch):
    from leukemia_cnn.serving import payload

    good = base64.b64encode(encoded_image(2)).decode()  # 24 x 24
    monkeypatch.setattr(payload, "MAX_REQUEST_PIXELS", 3 * 24 * 24)
    status, text = served(payloads([good] * 4)["dataframe_split"])
    answer = strict_json(text)["predictions"]
    assert status == 200 and [row["error"] is None for row in answer] == [True] * 3 + [False]
    assert "over the cap of 1,728 pixels per request" in answer[3]["error"]
    assert "send it in another request" in answer[3]["error"]


def test_a_heatmap_of_a_large_image_is_drawn_at_most_at_the_cap(served):
    from leukemia_cnn.serving.payload import LARGE_IMAGE_PIXELS

    rng = np.random.default_rng(3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (2000, 3000, 3), dtype=np.uint8)).save(buffer, "JPEG")
    body = payloads([base64.b64encode(buffer.getvalue()).decode()])["dataframe_split"]
    status, text = served({**body, "params": {"heatmap": True}})
    assert status == 200, text[:300]
    heatmap = strict_json(text)["predictions"][0]["heatmap"]
    with Image.open(io.BytesIO(base64.b64decode(heatmap))) as drawn:
        assert drawn.width * drawn.height <= LARGE_IMAGE_PIXELS
        assert abs(drawn.width / drawn.height - 1.5) < 0.01  # the image's own aspect


def float_tiff(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.float32), "F").save(buffer, "TIFF")
    return buffer.getvalue()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_float_image_with_nan_or_inf_is_refused_with_its_reason(served, bad):
    """issue 31: a smear with a NaN patch (float TIFF) silently turned black, and numpy's
    RuntimeWarning leaked to stderr."""
    import warnings

    values = np.random.default_rng(4).uniform(0, 1, (32, 32))
    values[4:8, 4:8] = bad
    good = base64.b64encode(encoded_image(5)).decode()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning (NaN cast to uint8) fails the test
        status, text = served(payloads([good, base64.b64encode(float_tiff(values)).decode()])
                              ["dataframe_split"])
    answer = strict_json(text)["predictions"]
    assert status == 200 and answer[0]["error"] is None
    assert answer[1]["predicted_class"] is None
    assert "16 of 1,024 pixels are NaN or infinite" in answer[1]["error"]
    clean = np.random.default_rng(4).uniform(0, 1, (32, 32))  # a finite float image is fine
    status, text = served(payloads([base64.b64encode(float_tiff(clean)).decode()])
                          ["dataframe_split"])
    assert status == 200 and strict_json(text)["predictions"][0]["error"] is None
