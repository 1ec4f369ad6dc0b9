"""What a failed stage leaves in MLflow: ``train``, ``evaluate`` and ``features`` log inside
:func:`cleaned_on_failure`, which removes through MLflow's artifact repositories (a local
folder or a server's proxy alike) what the block logged, models included (MLflow 3 keeps their
files apart, ``mlruns/<experiment>/models/<model id>``): a model half-written on a full disk
would fail every later command.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from leukemia_cnn.errors import full_disk_cause, full_disk_error, nearest
from leukemia_cnn.tracking.runs import end_run
from leukemia_cnn.tracking.store import local_path, sqlite_path


def _repository(uri: str):
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(uri)


def _files(repository, path: str | None = None) -> set[str]:
    """Every artifact file under ``path`` of ``repository`` (recursive)."""
    found: set[str] = set()
    for info in repository.list_artifacts(path):
        found |= _files(repository, info.path) if info.is_dir else {info.path}
    return found


def _fullest(paths: Sequence[Path | None]) -> Path | None:
    """Of ``paths``, the one whose file system has the least free space (the full one)."""
    def free(path: Path) -> int:
        try:  # of the nearest folder that exists
            return shutil.disk_usage(nearest(path)).free
        except OSError:
            return sys.maxsize
    candidates = [Path(p) for p in paths if p is not None]
    return min(candidates, key=free) if candidates else None


def _store_file(cause: BaseException) -> Path | None:
    """The sqlite file of the store, when the disk filled while writing it."""
    import mlflow

    if "database or disk is full" not in str(cause).lower():
        return None
    return sqlite_path(mlflow.get_tracking_uri())


def remove_logged_since(run_id: str, before: set[str] | None, since_ms: int) -> int:
    """Remove the artifact files of run ``run_id`` that are not in ``before`` and the models it
    logged from ``since_ms`` on (their files, and the model, marked deleted); return how many
    artifacts went. Best effort: a store that refuses is left as it is."""
    from mlflow import MlflowClient

    client, removed = MlflowClient(), 0
    run = client.get_run(run_id)
    with contextlib.suppress(Exception):
        repository = _repository(run.info.artifact_uri)
        for path in sorted(_files(repository) - (before or set())):
            repository.delete_artifacts(path)
            removed += 1
    with contextlib.suppress(Exception):
        for model in client.search_logged_models(
                [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"):
            if model.creation_timestamp >= since_ms:
                _repository(model.artifact_location).delete_artifacts()
                removed += 1
                with contextlib.suppress(Exception):
                    client.delete_logged_model(model.model_id)
    return removed


@contextlib.contextmanager
def cleaned_on_failure(run_id: str, outputs: Sequence[Path] = (),
                       kept: str = "earlier outputs are intact") -> Iterator[None]:
    """Inside the active run ``run_id``: on an exception, remove what the block logged, end
    the run FAILED and, for a full disk, raise one :class:`DiskFullError` line naming the
    path (the failed write's own, the store's sqlite file, or the fullest of ``outputs``, the
    run's artifact folder and the temporary folder) and ``kept`` (what is intact).

    Ctrl-C (KeyboardInterrupt) removes what the block logged too; the caller ends the run.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.utils.time import get_current_time_millis

    since = get_current_time_millis()
    artifact_uri = MlflowClient().get_run(run_id).info.artifact_uri
    before = None
    with contextlib.suppress(Exception):
        before = _files(_repository(artifact_uri))
    try:
        yield
    except BaseException as exc:
        cause = full_disk_cause(exc)
        where = cause is not None and (getattr(cause, "filename2", None)
                                       or getattr(cause, "filename", None) or _store_file(cause)
                                       or _fullest([*outputs, local_path(artifact_uri),
                                                    Path(tempfile.gettempdir())]))
        removed = remove_logged_since(run_id, before, since)
        if not isinstance(exc, Exception) or mlflow.active_run() is None:
            raise
        try:
            end_run(status="FAILED")  # MLflow takes the run off its stack before it writes
            ended = "; the MLflow run ended FAILED"
        except Exception as failed:  # noqa: BLE001 - the store itself may be what failed
            reason = str(full_disk_cause(failed) or failed).splitlines()[0][:120]
            ended = (f"; the MLflow run stays RUNNING until the next command closes it (the "
                     f"store could not be written: {reason})")
        if cause is None:
            raise
        gone = f"; {removed} half-logged artifact(s) removed" if removed else ""
        raise full_disk_error(cause, where, f"{kept}{gone}{ended}") from exc
