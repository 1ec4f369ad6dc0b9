"""``leukemia-cnn data push``: ``dvc push`` after one request to the remote that says, in one
line, what is wrong with it (the S3 server down, a credential refused) and which setting to fix:
``dvc push`` itself reports a refused key as ``403 Forbidden`` on ``HeadObject``, while listing
the bucket makes S3 name the refused part (docs/scaling.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from leukemia_cnn.errors import DataError

# What S3 (through s3fs/botocore) says -> (DVC remote option, environment variable, meaning).
REFUSALS = (
    (("signature we calculated does not match",), "secret_access_key", "AWS_SECRET_ACCESS_KEY",
     "the S3 server refused the secret key"),
    (("access key ID you provided does not exist", "InvalidAccessKeyId"), "access_key_id",
     "AWS_ACCESS_KEY_ID", "the S3 server knows no such access key"),
    (("Unable to locate credentials",), "access_key_id and secret_access_key",
     "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", "no S3 credentials are set"),
    (("Access Denied",), "access_key_id", "AWS_ACCESS_KEY_ID", "the key may not use this bucket"),
)
UNREACHABLE = ("Could not connect to the endpoint URL", "Connection refused",
               "Connect timeout", "EndpointConnectionError")
KEPT = ("nothing local was lost: the DVC cache keeps every file; run `leukemia-cnn data push` "
        "(or `dvc push`) again when it answers")


def describe(name: str, url: str, endpoint: str | None) -> str:
    return f"DVC remote `{name}` ({url}{f' at {endpoint}' if endpoint else ''})"


def remote_error(text: str, name: str, url: str, endpoint: str | None) -> DataError | None:
    """The one-line error for what S3 or DVC said about the remote, or None."""
    where = describe(name, url, endpoint)
    for markers, option, variable, meaning in REFUSALS:
        if any(marker in text for marker in markers):
            return DataError(
                f"{where}: {meaning}: fix `{option}` (dvc remote modify --local {name} "
                f"{option.split(' and ')[0]} ...) or {variable}")
    if any(marker in text for marker in UNREACHABLE):
        return DataError(f"{where} did not answer: start the S3 server or fix `endpointurl` "
                         f"(dvc remote modify {name} endpointurl URL); {KEPT}")
    return None


def check_remote(root: Path, name: str | None = None) -> tuple[str, str, str | None]:
    """List the remote's bucket once (S3 remotes; others are left to ``dvc push``); return the
    remote's name, URL and endpoint.

    Raises
    ------
    DataError
        The remote is not configured, its S3 server does not answer or refuses a credential.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            remote = repo.cloud.get_remote(name)
            options = repo.config["remote"].get(remote.name, {})
    except DvcException as exc:
        raise DataError(f"no usable DVC remote in {root}: {exc}; add one with `dvc remote add "
                        "-d NAME URL` (docs/scaling.md)") from exc
    found = (remote.name, str(options.get("url", "?")), options.get("endpointurl"))
    if not found[1].startswith("s3://"):
        return found
    try:
        remote.fs.ls(remote.path.split("/")[0])
    except Exception as exc:  # noqa: BLE001 - s3fs and botocore raise many kinds
        known = remote_error(f"{type(exc).__name__}: {exc}", *found)
        raise (known or DataError(f"{describe(*found)}: {exc}")) from exc
    return found


def push(root: Path, name: str | None = None) -> int:
    """Check the remote, then ``dvc push`` to it; its output goes to the terminal.

    Raises
    ------
    DataError
        The check failed, or the push did (the S3 server went away during it).
    """
    found = check_remote(root, name)
    print(f"data push: {describe(*found)} answers; pushing")
    args = [str(Path(sys.executable).parent / "dvc"), "push", "--remote", found[0]]
    result = subprocess.run(args, cwd=root, stderr=subprocess.PIPE, text=True)
    if result.returncode == 0:
        return 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    said = errors[0] if errors else result.stderr.strip()[-500:]
    raise (remote_error(said, *found)
           or DataError(f"`dvc push` to {describe(*found)} failed: {said}; {KEPT}"))
