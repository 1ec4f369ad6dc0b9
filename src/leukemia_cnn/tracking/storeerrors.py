"""One line for a failure to store a run's artifacts: through an MLflow server whose artifact
store (S3) is down or refuses the server's credentials, or in S3 directly.

A server that proxies artifacts (``--serve-artifacts``) answers its clients 500 or drops the
upload; only its own log says why. The line names the server and the settings to check there.
A client that writes to S3 itself gets botocore's error: the line names the setting at fault.
"""

from __future__ import annotations

import re

from leukemia_cnn.errors import LeukemiaCNNError

# S3 error codes -> the setting to fix (MLflow and boto3 read these variables).
S3_SETTINGS = {
    "SignatureDoesNotMatch": "AWS_SECRET_ACCESS_KEY (the secret key was refused)",
    "InvalidAccessKeyId": "AWS_ACCESS_KEY_ID (the server knows no such access key)",
    "AccessDenied": "the bucket policy or AWS_ACCESS_KEY_ID (access denied)",
    "NoSuchBucket": "the bucket of the artifact location (it does not exist)",
    "Could not connect to the endpoint URL": "MLFLOW_S3_ENDPOINT_URL (the S3 server did not answer)",
    "Unable to locate credentials": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (not set)",
}
KEPT = ("the run is marked FAILED and the local outputs are as they were: run the command again "
        "once the store is back")


def artifact_store_error(exc: BaseException) -> LeukemiaCNNError | None:
    """The one-line error for ``exc`` when it is a failure to store artifacts, else None."""
    text = f"{type(exc).__name__}: {exc}"
    served = re.search(r"API request to (https?://[^/\s]+)/api/2\.0/mlflow-artifacts/", text)
    if served:
        cause = ("it answered 500" if "500 error" in text
                 else "it dropped the upload" if re.search(r"reset|aborted", text, re.I)
                 else "it could not be reached" if re.search(r"refused|timed out", text, re.I)
                 else "the request failed")
        return LeukemiaCNNError(
            f"the MLflow server {served.group(1)} could not store this run's artifacts ({cause}): "
            "its artifact store (`mlflow server --artifacts-destination`, e.g. s3://...) is "
            "unreachable or refuses the server's S3 settings (MLFLOW_S3_ENDPOINT_URL, "
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY where the server runs); its log says "
            f"which. {KEPT}")
    if not re.search(r"botocore|boto3|S3UploadFailed|ClientError|EndpointConnection|"
                     r"NoCredentials", text):
        return None
    for marker, setting in S3_SETTINGS.items():
        if marker in text:
            return LeukemiaCNNError(f"S3 refused or could not store this run's artifacts: check "
                                    f"{setting}. {KEPT}")
    return None
