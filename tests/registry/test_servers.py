"""Real servers on loopback, against the store the end-to-end pipeline filled:
`mlflow server` (runs found through its REST API), `mlflow models serve` (a real JPEG in,
a class out), and `mlflow run` entry points."""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.request

import pytest

from helpers import BIN, sh
from helpers.servers import free_port, server

pytestmark = pytest.mark.slow


def serve_champion_args(port: int) -> list[str]:
    """`mlflow models serve` of the champion on loopback, as the README shows it."""
    return [str(BIN / "mlflow"), "models", "serve", "-m", "models:/leukemia-cnn@champion",
            "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)]


def post(url: str, payload: bytes, content_type: str = "application/json"):
    request = urllib.request.Request(url, payload, {"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_tracking_server_rest_api_lists_runs_and_champion(pipeline):
    repo = pipeline["repo"]
    port = free_port()
    args = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{repo / 'mlflow.db'}", "--workers", "1"]
    with server(args, port, repo) as base:
        with urllib.request.urlopen(
                f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=leukemia-cnn") as r:
            experiment = json.loads(r.read())["experiment"]
        status, body = post(f"{base}/api/2.0/mlflow/runs/search", json.dumps(
            {"experiment_ids": [experiment["experiment_id"]],
             "filter": "tags.model_family = 'cnn'"}).encode())
        assert status == 200
        runs = json.loads(body)["runs"]
        assert runs
        metrics = {m["key"] for m in runs[0]["data"]["metrics"]}
        params = {p["key"] for p in runs[0]["data"]["params"]}
        assert {"val_accuracy", "test_accuracy", "train_seconds"} <= metrics
        assert {"train.epochs", "train.batch_size", "model.filters"} <= params
        # The run's datasets (the UI's Dataset column), as the REST API returns them.
        inputs = runs[0]["inputs"]["dataset_inputs"]
        contexts = {tag["value"] for i in inputs for tag in i["tags"]
                    if tag["key"] == "mlflow.data.context"}
        assert contexts == {"training", "validation", "testing"}
        tags = {t["key"]: t["value"] for t in runs[0]["data"]["tags"]}
        # one digest per split, so that the Dataset column tells the splits apart
        digests = {i["dataset"]["digest"] for i in inputs}
        assert len(digests) == 3 and all(re.fullmatch(r"[0-9a-f]{12}", d) for d in digests)
        assert tags["data_version"]  # the data.dvc md5 stays a tag of the run
        assert experiment["tags"] and {t["key"]: t["value"] for t in experiment["tags"]}[
            "mlflow.experimentKind"] == "custom_model_development"
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/registered-models/alias"
                                    "?name=leukemia-cnn&alias=champion") as r:
            assert json.loads(r.read())["model_version"]["name"] == "leukemia-cnn"


def test_models_serve_answers_a_real_jpeg_and_rejects_junk(pipeline):
    repo = pipeline["repo"]
    port = free_port()
    args = serve_champion_args(port)
    image = sorted((repo / "data" / "raw" / "Early").glob("*.jpg"))[0]
    encoded = base64.b64encode(image.read_bytes()).decode()
    with server(args, port, repo, health="/ping") as base:
        status, body = post(f"{base}/invocations", json.dumps(
            {"dataframe_split": {"columns": ["image"], "data": [[encoded], [encoded]]}}).encode())
        assert status == 200, body
        predictions = json.loads(body)["predictions"]
        assert len(predictions) == 2
        assert predictions[0]["predicted_class"] in {"Benign", "Early", "Pre", "Pro"}
        # Each answer names the model version that gave it.
        from mlflow import MlflowClient

        uri = f"sqlite:///{repo / 'mlflow.db'}"
        champion = MlflowClient(uri, uri).get_model_version_by_alias("leukemia-cnn", "champion")
        assert {(p["model_name"], p["model_version"]) for p in predictions} == {
            ("leukemia-cnn", str(champion.version))}
        not_image = base64.b64encode(b"definitely not an image").decode()
        status, body = post(f"{base}/invocations", json.dumps(
            {"dataframe_split": {"columns": ["image"], "data": [[not_image]]}}).encode())
        assert 400 <= status < 500, body
        status, _ = post(f"{base}/invocations", b"")
        assert 400 <= status < 500
        # Still serving after bad requests.
        status, _ = post(f"{base}/invocations", json.dumps(
            {"dataframe_split": {"columns": ["image"], "data": [[encoded]]}}).encode())
        assert status == 200


def malformed_payloads(encoded: str) -> dict[str, tuple[bytes, str]]:
    """Requests a client can get wrong, by name: (body, content type)."""
    def split(columns, data):
        return json.dumps({"dataframe_split": {"columns": columns, "data": data}}).encode()

    junk = base64.b64encode(os.urandom(37_500_000)).decode()  # a 50 MB body, not an image
    return {
        "empty body": (b"", "application/json"),
        "not JSON": (b"{not json", "application/json"),
        "unknown JSON format": (json.dumps({"images": [encoded]}).encode(), "application/json"),
        "wrong column": (split(["pixels"], [[encoded]]), "application/json"),
        "a number instead of bytes": (split(["image"], [[1.5]]), "application/json"),
        "wrong row shape": (split(["image"], [[encoded, encoded]]), "application/json"),
        "tensor instead of table": (json.dumps({"inputs": [[[0.5] * 4] * 4]}).encode(),
                                    "application/json"),
        "not base64": (split(["image"], [["@@@ not base64 @@@"]]), "application/json"),
        "not an image": (split(["image"], [[base64.b64encode(b"plain text").decode()]]),
                         "application/json"),
        "truncated JPEG": (split(["image"], [[encoded[: len(encoded) // 3 // 4 * 4]]]),
                           "application/json"),
        "CSV without the column": (b"pixels\n1\n", "text/csv"),
        "unsupported content type": (b"hello", "text/plain"),
        "huge body (50 MB)": (split(["image"], [[junk]]), "application/json"),
    }


def test_models_serve_answers_malformed_payloads_with_4xx_and_keeps_serving(pipeline):
    repo = pipeline["repo"]
    port = free_port()
    args = serve_champion_args(port)
    image = sorted((repo / "data" / "raw" / "Pre").glob("*.jpg"))[0]
    encoded = base64.b64encode(image.read_bytes()).decode()
    good = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[encoded]]}}).encode()
    answers = {}
    with server(args, port, repo, health="/ping") as base:
        for name, (body, content_type) in malformed_payloads(encoded).items():
            answers[name] = post(f"{base}/invocations", body, content_type)
            # After every bad request the server still answers a good one.
            status, reply = post(f"{base}/invocations", good)
            assert status == 200, f"after {name!r}: {status} {reply[:500]}"
    for name, (status, body) in answers.items():
        print(f"{name}: {status} {body[:120]!r}")
    wrong = {name: (status, body[:300]) for name, (status, body) in answers.items()
             if not 400 <= status < 500}
    assert not wrong, wrong
    # The answers say what was wrong (the model's own checks: the signature's image column is
    # optional, so that MLflow never lists a request's columns, its data, in a 400).
    assert "needs a column 'image'" in answers["wrong column"][1]
    assert "not a decodable image" in answers["not an image"][1]


def test_mlproject_entry_points_run(pipeline):
    repo = pipeline["repo"]
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}"}
    promoted = sh(str(BIN / "mlflow"), "run", ".", "-e", "promote", "--env-manager", "local",
                  "--experiment-name", "leukemia-cnn", cwd=repo, env_extra=env)
    assert "champion" in promoted.stdout + promoted.stderr
    image = sorted((repo / "data" / "raw" / "Benign").glob("*.jpg"))[0]
    predicted = sh(str(BIN / "mlflow"), "run", ".", "-e", "predict", "--env-manager", "local",
                   "--experiment-name", "leukemia-cnn", "-P", f"images={image}", cwd=repo,
                   env_extra=env)
    assert "predicted_class" in predicted.stdout


def strict_json(text: str):
    """``json.loads`` that refuses NaN and Infinity, as a browser's ``JSON.parse`` does."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_models_serve_marks_a_bad_row_in_every_format_and_never_echoes(pipeline):
    """issue 31: with `dataframe_records` or `dataframe_split`, one bad row (null, a number,
    bad base64) among 50 good ones got the whole request refused (400); a bad row's numbers
    were a bare `NaN` (invalid JSON); a 665 kB JSON body sent as `text/csv` got a 400 of
    1,996 kB: the payload echoed."""
    repo = pipeline["repo"]
    port = free_port()
    image = sorted((repo / "data" / "raw" / "Pro").glob("*.jpg"))[0]
    good = base64.b64encode(image.read_bytes()).decode()
    with server(serve_champion_args(port), port, repo, health="/ping") as base:
        for bad_name, bad in (("null", None), ("number", 1.5), ("bad base64", "@@ no @@")):
            rows = [good] * 25 + [bad] + [good] * 25
            for name, body in {
                "dataframe_split": {"dataframe_split": {"columns": ["image"],
                                                        "data": [[r] for r in rows]}},
                "dataframe_records": {"dataframe_records": [{"image": r} for r in rows]},
                "instances": {"instances": [{"image": r} for r in rows]},
                "inputs": {"inputs": {"image": rows}},
            }.items():
                status, text = post(f"{base}/invocations", json.dumps(body).encode())
                assert status == 200, (bad_name, name, text[:300])
                answer = strict_json(text)["predictions"]
                assert len(answer) == 51, (bad_name, name)
                assert answer[25]["predicted_class"] is None, (bad_name, name)
                assert answer[25]["error"].startswith("row 25: "), (bad_name, name)
                assert answer[25]["p_Pro"] is None and answer[25]["ood_score"] is None
                assert sum(row["error"] is None for row in answer) == 50, (bad_name, name)
        body = json.dumps({"dataframe_split": {"columns": ["image"],
                                               "data": [[good]] * (665_000 // len(good))}})
        status, text = post(f"{base}/invocations", body.encode(), "text/csv")
        assert 400 <= status < 500 and len(text) < 2_000, (status, len(text))
        assert good[:100] not in text
