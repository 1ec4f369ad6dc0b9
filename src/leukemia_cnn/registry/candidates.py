"""Registered model versions as promotion sees them (:class:`Candidate`: validation and test
accuracy, collapse, configuration, seed, data lineage) and the tags and one-sentence summary
a version carries in the registry."""

from __future__ import annotations

from dataclasses import dataclass, field

from leukemia_cnn.data.lineage import UNKNOWN, DataLineage, short
from leukemia_cnn.tracking.store import run_config_id

NO_LINEAGE = DataLineage(UNKNOWN, UNKNOWN, UNKNOWN, "", UNKNOWN)


@dataclass(frozen=True)
class Candidate:
    """A registered version with what promotion looks at (never its test accuracy)."""

    version: str
    run_id: str
    val_accuracy: float | None
    test_accuracy: float | None
    collapsed: bool
    # The run's configuration (tag/params ``config_id``: every knob but the seed) and the
    # conf/experiment file it came from; None for runs that predate them.
    config_id: str | None = None
    experiment_name: str | None = None
    # The data the run was trained and validated on (``unknown`` for runs that predate it).
    lineage: DataLineage = field(default=NO_LINEAGE)
    seed: str | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    run_name: str | None = None

    @property
    def eligible(self) -> bool:
        return self.val_accuracy is not None and not self.collapsed

    @property
    def config_key(self) -> str:
        """Seeds of one configuration share this key; a run without config id is its own."""
        return self.config_id or f"run:{self.run_id}"

    @property
    def val_digest(self) -> str:
        return self.lineage.val_digest


@dataclass(frozen=True)
class ConfigScore:
    """A configuration's mean validation accuracy over its registered runs (collapsed ones
    included: a configuration that collapses on some seeds pays for it)."""

    config_key: str
    label: str
    mean_val_accuracy: float
    n_runs: int
    n_eligible: int


def registry_client():
    """An ``MlflowClient`` of the store ``setup_mlflow`` pointed MLflow at."""
    from mlflow import MlflowClient

    return MlflowClient()


def current_alias_version(name: str, alias: str) -> str | None:
    """The version ``alias`` of registered model ``name`` points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(registry_client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def as_count(value) -> int | None:
    """``value`` (a logged number or its text) as an int, or None when it is not a number."""
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def candidate_from_run(version: str, run) -> Candidate:
    """A :class:`Candidate` from a model version number and its MLflow training run."""
    metrics, tags, params = run.data.metrics, run.data.tags, run.data.params
    return Candidate(
        version=str(version), run_id=run.info.run_id,
        val_accuracy=metrics.get("val_accuracy"), test_accuracy=metrics.get("test_accuracy"),
        collapsed=tags.get("collapsed", "false") == "true" or metrics.get("collapsed", 0) > 0,
        config_id=run_config_id(params, tags.get("config_id")),
        experiment_name=tags.get("experiment_name") or run.info.run_name,
        lineage=DataLineage.from_tags(tags), seed=tags.get("seed"),
        n_train=as_count(params.get("data.n_train")),
        n_val=as_count(params.get("data.n_val", metrics.get("val_n_images"))),
        n_test=as_count(metrics.get("test_n_images")), run_name=run.info.run_name)


def candidates(name: str) -> list[Candidate]:
    """Every version of registered model ``name`` with its run's validation accuracy and data."""
    from mlflow.exceptions import MlflowException

    client = registry_client()
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return []
    found = []
    for version in versions:
        try:
            run = client.get_run(version.run_id)
        except MlflowException:
            continue
        found.append(candidate_from_run(str(version.version), run))
    return sorted(found, key=lambda c: int(c.version))


def version_summary(c: Candidate) -> str:
    """One sentence saying what a model version is: its configuration and seed, the data it
    was trained on (source, version, split sizes), the validation set it was scored on and
    its val and test accuracy. The version's description starts with it."""

    def shown(value, spec: str = "") -> str:
        return "?" if value is None else format(value, spec)

    label = c.experiment_name or c.run_name or c.run_id
    collapsed = " (collapsed: never promoted)" if c.collapsed else ""
    return (f"Version {c.version}: CNN {label} (configuration {c.config_id or '?'}, seed "
            f"{c.seed or '?'}) trained on {c.lineage.describe()} ({shown(c.n_train)} train / "
            f"{shown(c.n_val)} val / {shown(c.n_test)} test images), scored on validation set "
            f"{short(c.val_digest)}: val accuracy {shown(c.val_accuracy, '.4f')}, test "
            f"accuracy {shown(c.test_accuracy, '.4f')}{collapsed}.")


def version_tags(c: Candidate) -> dict[str, str]:
    """The tags a model version carries: its data lineage, sizes, configuration, seed and
    accuracies (searchable in the registry, e.g. ``tags.val_digest = '...'``)."""
    measured = (("n_train", c.n_train, ""), ("n_val", c.n_val, ""), ("n_test", c.n_test, ""),
                ("val_accuracy", c.val_accuracy, ".4f"), ("test_accuracy", c.test_accuracy, ".4f"))
    tags = {**c.lineage.tags(), "config_id": c.config_id or "", "seed": c.seed or "",
            "run_name": c.run_name or "", "collapsed": str(c.collapsed).lower(),
            **{key: format(value, spec) for key, value, spec in measured if value is not None}}
    return {k: v for k, v in tags.items() if v != ""}
