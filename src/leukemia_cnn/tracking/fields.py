"""What a run says in the MLflow UI: its params, name, description and MLflow's own fields.

A run's params are the knobs of the config groups its stage reads, and of the data it actually
read (a run on a local folder does not log the Kaggle slug of the default config); the whole
resolved config is its ``config.yaml`` artifact. MLflow's standard tags fill the UI's own
columns: ``mlflow.note.content`` (the description), ``mlflow.source.git.commit`` (the Version column).
"""

from __future__ import annotations

from leukemia_cnn.config import flatten
from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.lineage import BUILT_IN_SOURCE, UNKNOWN, DataLineage, safe_name, short

DESCRIPTION_TAG = "mlflow.note.content"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
# The config groups each stage's run logs as params (the rest stay in its config.yaml).
TRAINING_GROUPS = ("data", "split", "preprocess", "model", "train", "evaluate", "seed")
BASELINE_GROUPS = ("data", "split", "preprocess", "features", "seed")
# data.* knobs that matter for each source of the data (`data.source` is the lineage's).
SOURCE_KNOBS = {
    BUILT_IN_SOURCE: ("data.synth.",),
    "kaggle": ("data.kaggle_dataset", "data.variant", "data.skip_unknown_classes"),
    "folder": ("data.variant", "data.skip_unknown_classes"),
    "archive": ("data.variant", "data.skip_unknown_classes"),
}
# Left out of params: the class list is a tag (`classes`), so the compare view's scatter plot,
# which defaults to the alphabetically first param, does not open on it.
LEFT_OUT = ("data.classes", "data.source")

# The per-epoch curves under names MLflow groups into one chart section per quantity (it
# groups by the prefix before "/"), by the Keras history column they come from.
EPOCH_METRICS = {"loss": "loss/train", "val_loss": "loss/val",
                 "argmax_accuracy": "accuracy/train", "val_argmax_accuracy": "accuracy/val"}

EXPERIMENT_DESCRIPTION = (
    "Keras CNN classifying acute lymphoblastic leukemia smear images into {classes}. One run "
    "per training (`train` stage, `leukemia-cnn sweep` jobs: the model, its curves, val and "
    "test scores) and one per HOG+PCA logistic-regression baseline (`features` stage). "
    "Compare `val_accuracy` (the champion is chosen on it, never on test); the registered "
    "model `{model}` marks the best version with the alias `{alias}`. If this page opens on a "
    "GenAI overview, switch the sidebar to \"Model training\" (MLflow keeps that choice in "
    "the browser, not on the server).")


def stage_params(cfg: Config, lineage: DataLineage, groups: tuple[str, ...]) -> dict[str, str]:
    """The params of a stage's run: the config ``groups`` it reads, each value cut at MLflow's
    6000 characters; ``data`` is the data's source, name and URI as recorded in its lineage,
    and only the ``data`` knobs of that source."""
    params = {k: str(v)[:6000] for k, v in flatten(cfg).items()
              if k.split(".", 1)[0] in groups and not k.startswith("data.")}
    if "data" in groups:
        params.update({"data.source": lineage.source, "data.name": lineage.name})
        if lineage.uri:
            params["data.uri"] = lineage.uri
        knobs = SOURCE_KNOBS.get(lineage.source, ())
        params.update({key: str(value) for key, value in flatten(cfg.data, prefix="data.").items()
                       if key.startswith(knobs) and key not in LEFT_OUT})
    return params


def recipe(cfg: Config) -> str:
    """The study row a run belongs to: ``sweep.experiment`` (set by every conf/experiment
    file), else ``paper`` (the default config is the paper's)."""
    name = cfg.sweep.experiment
    return safe_name(str(name)) if name else "paper"


def run_base_name(prefix: str, cfg: Config, lineage: DataLineage | None) -> str:
    """``<prefix>-s<seed>-<data>``: ``fast-s42-dev``, ``baseline-s42-synthetic``."""
    data = safe_name(lineage.name, 16) if lineage is not None and lineage.name != UNKNOWN \
        else "data"
    return f"{safe_name(prefix)}-s{cfg.seed}-{data}"


def run_description(what: str, cfg: Config, lineage: DataLineage, commit: str) -> str:
    """The run's ``mlflow.note.content``: what it is, on which data, from which commit."""
    named = "" if lineage.name in (lineage.source, UNKNOWN) else f" '{lineage.name}'"
    return (f"{what}, seed {cfg.seed}, recipe `{recipe(cfg)}`, on {lineage.source} data{named} "
            f"(data.dvc md5 `{short(lineage.version)}`, validation set "
            f"`{short(lineage.val_digest)}`), git commit `{commit[:12]}`. The full resolved "
            "configuration is the artifact `config.yaml`; params list the knobs of this stage.")


def standard_tags(commit: str, description: str, classes) -> dict[str, str]:
    """MLflow's own tags (git commit without ``-dirty``, description) and the class list."""
    tags = {DESCRIPTION_TAG: description, "classes": ", ".join(map(str, classes))}
    sha = commit.removesuffix("-dirty")
    if sha and sha != "unknown":
        tags[GIT_COMMIT_TAG] = sha
    return tags
