"""The team tests' real servers (tests/helpers/team.py), one of each per test module."""

from __future__ import annotations

import pytest

from helpers import team


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 with a database `mlflow`."""
    yield from team.postgres_fixture()


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """SeaweedFS's S3 gateway on 127.0.0.1 with buckets `mlflow` and `dvc`."""
    yield from team.s3_fixture(tmp_path_factory.mktemp("s3"))


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A one-node SLURM cluster on this machine, its node idle."""
    yield from team.slurm_fixture(tmp_path_factory.mktemp("slurm"))
