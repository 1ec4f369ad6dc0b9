"""Run logging for every stage: the one door from the pipeline to MLflow's fluent API.

Only ``tracking/`` and ``registry/`` import mlflow (tests/test_architecture.py checks it), so
features, modeling and study log through these functions. Each is a thin wrapper over the
MLflow call of the same or a similar name and behaves exactly like it: it acts on the active
run (or the one named), in the store :func:`leukemia_cnn.tracking.store.setup_mlflow` or
:func:`set_tracking_uri` chose. mlflow is imported on first call, not at import, so commands
that log nothing start without it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from leukemia_cnn.config_schema import Config
from leukemia_cnn.errors import ConfigError


def start_run(run_name: str | None = None, run_id: str | None = None,
              tags: dict[str, str] | None = None):
    """Start a new run (``run_name``) or reopen one (``run_id``); see ``mlflow.start_run``.

    Returns
    -------
    mlflow.ActiveRun
        A context manager: leaving it ends the run FINISHED, or FAILED on an exception
        (KILLED on KeyboardInterrupt).
    """
    import mlflow

    return mlflow.start_run(run_id=run_id, run_name=run_name, tags=tags)


def end_run(status: str = "FINISHED") -> None:
    """End the active run with ``status`` (FINISHED, FAILED, KILLED); see ``mlflow.end_run``."""
    import mlflow

    mlflow.end_run(status=status)


def log_params(params: dict[str, object]) -> None:
    """Log a batch of params to the active run; see ``mlflow.log_params``."""
    import mlflow

    mlflow.log_params(params)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log a batch of metrics (at ``step``, e.g. the epoch) to the active run; see
    ``mlflow.log_metrics``."""
    import mlflow

    mlflow.log_metrics(metrics, step=step)


class MetricWriter:
    """Log metrics to one run from a background thread, in the order given.

    One thread writes each batch with ``MlflowClient.log_batch`` as it comes (the run page's
    live curves lag by one write). Not MLflow's asynchronous logging: its thread polls its
    queue once a second, and ending the run waits for that poll (~1 s measured) where this
    thread wakes on every batch and on ``close``.
    """

    def __init__(self, run_id: str):
        import queue
        import threading

        from mlflow import MlflowClient

        self.run_id = run_id
        self._client = MlflowClient()  # resolves the store of this thread's tracking URI
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_all, name="metric-writer",
                                        daemon=True)
        self._thread.start()

    def put(self, metrics: dict[str, float], step: int) -> None:
        """Queue ``metrics`` at ``step``, timestamped now."""
        from mlflow.utils.time import get_current_time_millis

        self._queue.put((dict(metrics), int(step), get_current_time_millis()))

    def _write_all(self) -> None:
        from mlflow.entities import Metric

        while (item := self._queue.get()) is not None:  # None: close() asks it to stop
            metrics, step, timestamp = item
            if self._error is not None:
                continue  # the first error is the one reported
            try:
                self._client.log_batch(self.run_id, metrics=[
                    Metric(key, float(value), timestamp, step) for key, value in metrics.items()])
            except Exception as exc:  # noqa: BLE001 - handed to close()
                self._error = exc

    def close(self, raise_errors: bool = True) -> BaseException | None:
        """Write everything queued and stop (idempotent); raise the first error a write met
        (``raise_errors=False``: return it)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if raise_errors and self._error is not None:
            raise self._error
        return self._error


def active_run_id() -> str | None:
    """The id of the active run, or None; see ``mlflow.active_run``."""
    import mlflow

    run = mlflow.active_run()
    return run.info.run_id if run is not None else None


# The run input context whose dataset a metric of each split is measured on.
SPLIT_OF_PREFIX = {"val_": "validation", "test_": "testing"}


def log_split_metrics(metrics: dict[str, float]) -> None:
    """Log step-less metrics to the active run, each ``val_*``/``test_*`` one linked to the
    run's validation/testing dataset and to the run's logged model(s).

    The logged model's page then lists the datasets it was scored on ("Datasets used") and
    every metric once. Same as :func:`log_metrics` for a run without datasets or model.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    from mlflow.utils.time import get_current_time_millis

    client = MlflowClient()
    run = client.get_run(mlflow.active_run().info.run_id)
    by_context = {{t.key: t.value for t in given.tags}.get("mlflow.data.context"):
                  (given.dataset.name, given.dataset.digest)
                  for given in (run.inputs.dataset_inputs if run.inputs else [])}
    model_ids = [o.model_id for o in (run.outputs.model_outputs if run.outputs else [])]
    now = get_current_time_millis()
    entries = []
    for key, value in metrics.items():
        context = next((c for prefix, c in SPLIT_OF_PREFIX.items() if key.startswith(prefix)),
                       None)
        name, digest = by_context.get(context, (None, None))
        entries += [Metric(key, float(value), now, 0, model_id=model_id, dataset_name=name,
                           dataset_digest=digest) for model_id in model_ids or [None]]
    for start in range(0, len(entries), 1000):  # MLflow's batch limit
        client.log_batch(run.info.run_id, metrics=entries[start:start + 1000])


def set_tag(key: str, value: object) -> None:
    """Set one tag on the active run; see ``mlflow.set_tag``."""
    import mlflow

    mlflow.set_tag(key, value)


def set_tags(tags: dict[str, object]) -> None:
    """Set tags on the active run; see ``mlflow.set_tags``."""
    import mlflow

    mlflow.set_tags(tags)


def log_artifact(local_path: str | Path, artifact_path: str | None = None) -> None:
    """Copy one file into the active run's artifacts (under ``artifact_path``); see
    ``mlflow.log_artifact``."""
    import mlflow

    mlflow.log_artifact(str(local_path), artifact_path)


def log_artifacts(local_dir: str | Path, artifact_path: str | None = None) -> None:
    """Copy a folder's files into the active run's artifacts (under ``artifact_path``); see
    ``mlflow.log_artifacts``."""
    import mlflow

    mlflow.log_artifacts(str(local_dir), artifact_path=artifact_path)


def log_sklearn_model(model, sample, name: str = "model"):
    """Log a fitted scikit-learn model to the active run, its signature inferred from
    ``sample`` and its pip requirements MLflow's defaults (inferring them is slow); return its
    ``ModelInfo``. See ``mlflow.sklearn.log_model``."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    return mlflow.sklearn.log_model(
        model, name=name, signature=infer_signature(sample, model.predict(sample)),
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True))


@contextlib.contextmanager
def store_errors(cfg: Config, root: Path, action: str):
    """Turn an MLflow error inside the block into a :class:`ConfigError` naming the store,
    ``could not <action> to MLflow at <uri>: ...``."""
    from mlflow.exceptions import MlflowException

    from leukemia_cnn.tracking.store import tracking_uri

    try:
        yield
    except MlflowException as exc:
        raise ConfigError(f"could not {action} to MLflow at {tracking_uri(cfg, root)}: "
                          f"{exc}; check MLFLOW_TRACKING_URI or config key `mlflow.tracking_uri`"
                          ) from exc


def set_tracking_uri(uri: str) -> None:
    """Read and log runs in the store at ``uri`` from now on (this process); see
    ``mlflow.set_tracking_uri``. Unlike ``setup_mlflow`` it creates no experiment."""
    import mlflow

    mlflow.set_tracking_uri(uri)


def finished_runs(experiment_name: str, max_results: int = 50000):
    """The FINISHED runs of an experiment of the current store, or None when it has no
    experiment of that name.

    Returns
    -------
    pandas.DataFrame or None
        ``mlflow.search_runs``'s frame: one row per run, columns ``run_id``, ``start_time``,
        ``params.*``, ``metrics.*``, ``tags.*``.
    """
    import mlflow

    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    return mlflow.search_runs([experiment.experiment_id],
                              filter_string="attributes.status = 'FINISHED'",
                              max_results=max_results)


def metric_history(run_id: str, key: str) -> dict[int, float]:
    """Every logged value of one metric of a run, by step; see
    ``MlflowClient.get_metric_history``. A per-epoch curve is asked for by its Keras name
    (``val_loss``): it is read under its MLflow name (``loss/val``, fields.EPOCH_METRICS), or
    under the Keras name in runs logged before the rename."""
    from mlflow import MlflowClient

    from leukemia_cnn.tracking.fields import EPOCH_METRICS

    client = MlflowClient()
    history = client.get_metric_history(run_id, EPOCH_METRICS[key]) if key in EPOCH_METRICS \
        else []
    return {m.step: m.value for m in history or client.get_metric_history(run_id, key)}


def download_artifact(run_id: str, artifact_path: str, dst_path: str | Path) -> str:
    """Download one artifact of a run into ``dst_path``; return its local path. Raises
    MLflow's error when the run has no such artifact; see ``mlflow.artifacts.download_artifacts``."""
    import mlflow.artifacts

    return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path,
                                               dst_path=str(dst_path))


def end_running_runs(tags: dict[str, str], status: str = "KILLED") -> int:
    """End with ``status`` every RUNNING run, in every experiment of the current store, that
    carries all of ``tags``; return how many.

    For runs whose own process cannot end them (the workers of an interrupted sweep).
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    condition = " and ".join([f"tags.{key} = '{value}'" for key, value in tags.items()]
                             + ["attributes.status = 'RUNNING'"])
    running = [run for experiment in client.search_experiments()
               for run in client.search_runs([experiment.experiment_id], condition)]
    for run in running:
        client.set_terminated(run.info.run_id, status=status)
    return len(running)
