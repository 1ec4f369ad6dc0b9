"""One line for a failed artifact upload, from what MLflow and boto3 say (the slow team tests
provoke the real failures)."""

from __future__ import annotations

import pytest

from leukemia_cnn.data.remote import remote_error
from leukemia_cnn.tracking.storeerrors import artifact_store_error

SERVER = "http://127.0.0.1:5000"


def test_an_upload_the_server_could_not_store_names_the_server_and_its_settings():
    from mlflow.exceptions import MlflowException

    exc = MlflowException(f"API request to {SERVER}/api/2.0/mlflow-artifacts/artifacts/1/abc/"
                          "artifacts/cnn.keras failed with exception ... (Caused by "
                          "ResponseError('too many 500 error responses'))")
    message = str(artifact_store_error(exc))
    assert message.startswith(f"the MLflow server {SERVER} could not store this run's "
                              "artifacts (it answered 500)")
    assert "AWS_SECRET_ACCESS_KEY" in message and "\n" not in message


def test_a_direct_s3_refusal_names_the_setting_and_other_errors_are_left_alone():
    exceptions = pytest.importorskip("botocore.exceptions", reason="the team extra (.[team])")
    ClientError = exceptions.ClientError  # noqa: N806 - botocore's class

    refused = ClientError({"Error": {"Code": "SignatureDoesNotMatch", "Message": "no"}},
                          "PutObject")
    assert "check AWS_SECRET_ACCESS_KEY" in str(artifact_store_error(refused))
    assert artifact_store_error(ValueError("unrelated")) is None


def test_dvc_remote_errors_name_the_remote_option_and_the_variable():
    refused = remote_error("PermissionError: The access key ID you provided does not exist",
                           "team", "s3://dvc/x", "http://127.0.0.1:9000")
    assert "`access_key_id`" in str(refused) and "AWS_ACCESS_KEY_ID" in str(refused)
    down = remote_error("EndpointConnectionError: Could not connect to the endpoint URL",
                        "team", "s3://dvc/x", "http://127.0.0.1:9000")
    assert "did not answer" in str(down) and "nothing local was lost" in str(down)
