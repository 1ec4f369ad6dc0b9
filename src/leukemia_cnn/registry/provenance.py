"""Which registered model answers a prediction, and whether it was trained on the
workspace's current data."""

from __future__ import annotations

import re
from pathlib import Path

from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.lineage import short, workspace_lineage
from leukemia_cnn.registry.candidates import Candidate, candidate_from_run, registry_client


def resolve_model(model_uri: str) -> tuple[str | None, Candidate | None]:
    """The registered model name and the :class:`Candidate` behind ``model_uri``
    (``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/RUN_ID/...``); ``(None,
    None)`` when it cannot be looked up (a path, a missing version)."""
    from mlflow.exceptions import MlflowException

    client = registry_client()
    try:
        if match := re.fullmatch(r"models:/([^/@]+)@([^/]+)/?", model_uri):
            version = client.get_model_version_by_alias(*match.groups())
        elif match := re.fullmatch(r"models:/([^/@]+)/(\d+)/?", model_uri):
            version = client.get_model_version(*match.groups())
        elif match := re.fullmatch(r"runs:/([^/]+)/.*", model_uri):
            return None, candidate_from_run("-", client.get_run(match.group(1)))
        else:
            return None, None
        return version.name, candidate_from_run(str(version.version),
                                                client.get_run(version.run_id))
    except MlflowException:
        return None, None


def model_provenance(cfg: Config, root: Path, model_uri: str) -> list[str]:
    """Lines saying which model answers (version, the data it was trained on, its val
    accuracy), with a warning when that data is not the workspace's current data."""
    name, c = resolve_model(model_uri)
    if c is None:
        return [f"model {model_uri}: not found in the registry, so the data it was trained on "
                "is unknown"]
    which = f"model {name} version {c.version}" if name else f"model of run {c.run_id}"
    val = "?" if c.val_accuracy is None else f"{c.val_accuracy:.4f}"
    lines = [f"{which} ({model_uri}): trained on {c.lineage.describe()}, val accuracy {val} "
             f"on validation set {short(c.val_digest)}"]
    current = workspace_lineage(cfg, root)
    if c.lineage.version != current.version:
        lines.append(f"WARNING: {which} was trained on {c.lineage.describe()}, not on the "
                     f"workspace's current data ({current.describe()}, data.dvc): its accuracy "
                     "says nothing about images like those; run `dvc repro` to train and promote "
                     "a model on the current data (or `leukemia-cnn promote` if one exists)")
    return lines
