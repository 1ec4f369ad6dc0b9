"""Where MLflow runs go, and the tags that make runs comparable without opening code."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import warnings
from pathlib import Path
from urllib.parse import unquote, urlparse

from filelock import FileLock

from leukemia_cnn.config import LATE_KNOBS, find_repo_root, overrides_from_defaults, same_setting, shared_root
from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.lineage import DataLineage, data_version, rows_digest, safe_name, workspace_lineage
from leukemia_cnn.errors import ConfigError, full_disk_cause, full_disk_error
from leukemia_cnn.tracking import fields
from leukemia_cnn.tracking.orphans import close_orphaned_runs, process_tags


def tracking_uri(cfg: Config | None = None, root: Path | None = None) -> str:
    """The MLflow tracking URI, most specific first.

    1. ``MLFLOW_TRACKING_URI`` (a team server, or a test's own store);
    2. ``mlflow.tracking_uri`` in the config;
    3. the embedded store ``sqlite:///<repo>/mlflow.db`` as an absolute path, so that runs
       started from DVC's temporary experiment folders land in the same store.
    """
    configured = cfg.mlflow.tracking_uri if cfg is not None else None
    return (os.environ.get("MLFLOW_TRACKING_URI") or configured
            or f"sqlite:///{(shared_root(root) / 'mlflow.db').as_posix()}")


def check_artifact_location(experiment, uri: str, root: Path | None = None) -> None:
    """Refuse an embedded store whose experiment keeps its artifacts outside this project.

    The store records absolute artifact paths, so a copied project (``cp -r``, a backup
    restored elsewhere) would log its models into the original's ``mlruns/``. Only this
    project's embedded store is checked, not a server or another store.
    """
    project = shared_root(root)
    if uri != f"sqlite:///{(project / 'mlflow.db').as_posix()}":
        return  # a server or another store: its artifact root is its own business
    location = local_path(str(experiment.artifact_location or ""))
    if location is None or (artifacts := location.resolve()).is_relative_to(project):
        return
    raise ConfigError(
        f"the MLflow store {project / 'mlflow.db'} keeps experiment "
        f"{experiment.name!r}'s artifacts in {artifacts}, outside this project ({project}): "
        "it was copied from another project. Move mlflow.db and mlruns/ aside to start this "
        "copy's own store, or set MLFLOW_TRACKING_URI to that project's store to share it")


# The experiment holds model training runs (the UI's landing page ignores it: README "Compare
# runs").
EXPERIMENT_KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"


def experiment_tags(cfg: Config) -> dict[str, str]:
    """The experiment's kind and description (``mlflow.note.content``)."""
    return {EXPERIMENT_KIND_TAG: TRAINING_KIND,
            fields.DESCRIPTION_TAG: fields.EXPERIMENT_DESCRIPTION.format(
                classes=", ".join(map(str, cfg.data.classes)),
                model=cfg.mlflow.registered_model_name, alias=cfg.mlflow.champion_alias)}


def setup_mlflow(cfg: Config, root: Path | None = None, read_only: bool = False) -> str | None:
    """Point MLflow at the store and experiment of ``cfg``; return the experiment id.

    ``read_only`` (predict, explain, drift, card): nothing needs writing, so a missing
    experiment is not created (None is returned), its tags are left alone, and closing
    orphaned runs (a write) that fails (a full disk, a read-only store) is said in one line
    and skipped. A full disk while the store is written is one line naming its file.
    """
    import mlflow

    root = root or find_repo_root()
    uri = tracking_uri(cfg, root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if read_only:
        experiment = mlflow.get_experiment_by_name(cfg.mlflow.experiment_name)
        if experiment is None:
            return None
        check_artifact_location(experiment, uri, root)
        try:  # closing orphans is a courtesy: when the store cannot be written, say so, go on
            close_orphaned_runs(experiment.experiment_id)
        except Exception as exc:  # noqa: BLE001
            reason = str(full_disk_cause(exc) or exc).splitlines()[0][:200]
            print(f"mlflow: could not close orphaned runs ({type(exc).__name__}: {reason}); "
                  "they stay RUNNING until a command that can write to the store closes them",
                  file=sys.stderr)
        return experiment.experiment_id
    try:
        return _set_experiment(cfg, root, uri)
    except Exception as exc:
        cause = full_disk_cause(exc)
        if cause is None:
            raise
        raise full_disk_error(cause, sqlite_path(uri) or shared_root(root) / "mlruns",
                              "no run was started") from exc


def _set_experiment(cfg: Config, root: Path, uri: str) -> str:
    import mlflow

    name = cfg.mlflow.experiment_name
    # Serialised: parallel sweep workers or `dvc queue start -j 2` creating it corrupt the store.
    with store_lock(uri):
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is not None:
            check_artifact_location(experiment, uri, root)
            # An experiment created before them gets the kind and description tags; a kind or
            # a description set by hand is left alone.
            for key, value in experiment_tags(cfg).items():
                if key not in (experiment.tags or {}):
                    mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)
            mlflow.set_experiment(name)
            close_orphaned_runs(experiment.experiment_id)
            return experiment.experiment_id
        # A file artifact root, <repo>/mlruns, only for the embedded sqlite store; a server
        # picks its own.
        location = shared_root(root).joinpath("mlruns").as_uri() if uri.startswith("sqlite:") \
            else None
        try:
            experiment_id = mlflow.create_experiment(name, artifact_location=location,
                                                     tags=experiment_tags(cfg))
        except mlflow.exceptions.MlflowException:
            # Another process created it between our lookup and create.
            experiment_id = mlflow.get_experiment_by_name(name).experiment_id
    mlflow.set_experiment(name)
    close_orphaned_runs(experiment_id)
    return experiment_id


def local_path(uri: str) -> Path | None:
    """The path of a ``file:`` (or plain path) URI, None for any other scheme."""
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme in ("", "file") else None


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI, or None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


@contextlib.contextmanager
def store_lock(uri: str):
    """Hold an exclusive lock on ``<db>.lock`` beside a sqlite store (no-op for other stores).

    MLflow creates and migrates the sqlite tables on first use; two processes doing so at
    once leave a broken store. Logging itself is safe in parallel (MLflow sets a busy
    timeout), so only store set-up takes this lock. Re-entrant within a thread: one
    ``FileLock`` per path (``is_singleton``) counts its holders.
    """
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # preserve_lock_file: the lock stays an flock on one lasting file, as before filelock
    with FileLock(path.with_name(path.name + ".lock"), is_singleton=True,
                  preserve_lock_file=True):
        yield


# Params that define a configuration of the study: not the seed, paths, store, sweep/report
# settings, data sizes, nor a late knob at its default (config.LATE_KNOBS: a run logged before
# it trained the same way), so seeds of one configuration share its id. Not the data either:
# runs on different data are told apart by their validation set (`val_digest`).
CONFIG_ID_PREFIXES = ("split.", "preprocess.", "model.", "train.", "evaluate.")


def config_id(params: dict[str, object]) -> str:
    """A short stable id of a run's configuration (its params, minus seed and run plumbing).

    Parameters
    ----------
    params : dict
        The run's flattened params (as logged to MLflow, or ``flatten(cfg)``).

    Returns
    -------
    str
        12 hex digits; runs that differ only in seed (or sweep, paths, store) share it.
    """
    items = sorted((k, str(v)) for k, v in params.items()
                   if k.startswith(CONFIG_ID_PREFIXES) and k != "train.verbose"
                   and not (k in LATE_KNOBS and same_setting(v, LATE_KNOBS[k])))
    return hashlib.sha1(repr(items).encode()).hexdigest()[:12]


def run_config_id(params: dict[str, object], tag: str | None = None) -> str | None:
    """The configuration id of a logged run: recomputed from its params when it has any (so
    runs tagged by an older version, whose id still counted a knob at its default, group with
    newer runs of the same configuration), else its ``config_id`` tag."""
    if any(str(k).startswith(CONFIG_ID_PREFIXES) for k in params):
        return config_id(params)
    return tag


def git_commit(root: Path | None = None) -> str:
    """The current git commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    root = root or find_repo_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def run_tags(cfg: Config, root: Path | None = None, overrides: str | None = None,
             what: str | None = None, groups: tuple[str, ...] | None = None,
             **extra: str) -> dict[str, str]:
    """Tags every run of the project carries (commit, seed, overrides and the data lineage:
    ``data_version``, ``data_source``, ``data_name``, ``data_uri``, ``val_digest``), MLflow's
    ``mlflow.source.git.commit`` and, given ``what`` the run is, its description.

    ``overrides`` is the ``hydra_overrides`` tag; by default it is recovered by comparing
    ``cfg`` with conf/'s composed defaults (a Hydra app passes its own overrides instead);
    ``groups`` keeps only the recovered overrides of those config groups (the baseline's run
    does not carry the CNN's ``train.*`` overrides).
    """
    root = root or find_repo_root()
    conf_root = root if (root / "conf" / "config.yaml").is_file() else find_repo_root()
    if overrides is None:
        try:
            recovered = overrides_from_defaults(cfg, conf_root)
            if groups is not None:
                recovered = [o for o in recovered
                             if o.lstrip("+~").split("=")[0].split(".")[0] in groups]
            overrides = " ".join(recovered) or "(defaults)"
        except Exception:  # noqa: BLE001 - a tag must never break a run
            overrides = "unknown"
    try:
        lineage = workspace_lineage(cfg, root).tags()
    except Exception as exc:  # noqa: BLE001 - a tag must never break a run
        lineage = {"data_version": data_version(root), "data_source": "unknown",
                   "lineage_error": str(exc)[:500]}
    commit = git_commit(root)
    description = fields.run_description(what, cfg, DataLineage.from_tags(lineage), commit) \
        if what else ""
    tags = {
        "git_commit": commit,
        **lineage,
        "seed": cfg.seed,
        **({"hydra_overrides": overrides[:5000]} if overrides else {}),
        **process_tags(),
        **{k: v for k, v in fields.standard_tags(commit, description, cfg.data.classes).items() if v},
    }
    # `mlflow run . -e main` exports its project run id: nest the pipeline's runs under it.
    parent = os.environ.get("MLFLOW_PARENT_RUN_ID")
    if parent:
        tags["mlflow.parentRunId"] = parent
    tags.update(extra)
    return {key: str(value) for key, value in tags.items()}  # MLflow keeps tags as text


def unique_run_name(base: str, experiment_id: str) -> str:
    """``base``, or ``base-2``, ``base-3``, ... : the first name no run of the experiment has
    (``fast-s42-dev``, then ``fast-s42-dev-2`` when trained again)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        runs = mlflow.MlflowClient().search_runs(
            [experiment_id], filter_string=f"attributes.run_name LIKE '{base}%'",
            max_results=50000)
    except MlflowException:
        runs = []
    taken = {run.info.run_name for run in runs}
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}-{number}"
    return name


def log_datasets(lineage: DataLineage, rows, train_paths=None) -> None:
    """Log the train, validation and test rows to the active run as MLflow datasets.

    A dataset's digest is the start of its rows' digest, so that the UI's Dataset column
    tells the splits apart; the validation set's full ``rows_digest`` is the run's ``val_digest``.

    Parameters
    ----------
    rows : pandas.DataFrame
        ``lineage.split_rows`` of the workspace.
    train_paths : array-like, optional
        The train images actually trained on (``train.train_fraction`` < 1); default all.
    """
    import mlflow

    # The MLflow input contexts of the three splits (the runs table's Dataset column shows them).
    for split, context in {"train": "training", "val": "validation", "test": "testing"}.items():
        part = rows[rows["split"] == split]
        if split == "train" and train_paths is not None:
            part = part[part["path"].isin({str(p) for p in train_paths})]
        part = part[["path", "class", "label", "sha256"]].reset_index(drop=True)
        # MLflow warns that a file URI matches two equal source types and that integer
        # columns cannot hold missing values: nothing a user can act on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(
                part, source=lineage.uri or None, targets="label",
                name=f"{safe_name(lineage.name)}-{split}",
                digest=rows_digest(part)[:12])  # what the UI shows; in full: the rows_digest tag
            # (the schema is inferred when the dataset is logged: its warning comes here)
            mlflow.log_input(dataset, context=context,
                             tags={"rows_digest": rows_digest(part), "n_images": str(len(part)),
                                   "data_version": lineage.version})
