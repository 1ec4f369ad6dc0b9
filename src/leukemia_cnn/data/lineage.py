"""What data a run saw: the data version (:func:`data_version`), where the data came from
(:func:`data_origin`) and the validation rows (:func:`rows_digest`), as the tags
``data_version``, ``data_source``, ``data_name``, ``data_uri`` and ``val_digest`` of every run
and model version (docs/lineage.md tables them). No MLflow here (the registry and tracking
modules turn these into tags and datasets).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from leukemia_cnn.config import find_repo_root
from leukemia_cnn.config_schema import Config

BUILT_IN_SOURCE = "synthetic"
UNKNOWN = "unknown"
# How many hex digits of a digest or data version the tables and sentences show.
SHORT = 12


@dataclass(frozen=True)
class DataLineage:
    """The data a run was trained and validated on."""

    version: str
    source: str
    name: str
    uri: str
    val_digest: str

    def tags(self) -> dict[str, str]:
        """The run/model-version tags."""
        return {"data_version": self.version, "data_source": self.source,
                "data_name": self.name, "data_uri": self.uri, "val_digest": self.val_digest}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> DataLineage:
        """Read back from a run's or a version's tags (``unknown`` where a tag is missing)."""
        return cls(version=tags.get("data_version") or UNKNOWN,
                   source=tags.get("data_source") or UNKNOWN,
                   name=tags.get("data_name") or tags.get("data_source") or UNKNOWN,
                   uri=tags.get("data_uri") or "",
                   val_digest=tags.get("val_digest") or UNKNOWN)

    def describe(self) -> str:
        """``synthetic data 5b386f477773`` / ``folder data 'real-dev' 1a2b3c4d5e6f``."""
        if self.source == UNKNOWN and self.version == UNKNOWN:
            return "unrecorded data"
        named = "" if self.name in (self.source, UNKNOWN) else f" '{self.name}'"
        return f"{self.source} data{named} {short(self.version)}"


def short(digest: str | None) -> str:
    """The first ``SHORT`` characters of a digest or md5 (``.dir`` dropped)."""
    return (digest or UNKNOWN).removesuffix(".dir")[:SHORT]


def data_version(root: Path | None = None) -> str:
    """The md5 that ``data.dvc`` records for data/raw, or ``untracked``."""
    path = (root or find_repo_root()) / "data.dvc"
    try:
        outs = yaml.safe_load(path.read_text()).get("outs", [])
        return str(outs[0]["md5"])
    except (OSError, yaml.YAMLError, AttributeError, LookupError, TypeError):
        return "untracked"


def safe_name(text: str, limit: int = 24) -> str:
    """``text`` reduced to letters, digits, ``.``, ``_`` and ``-`` (for names and labels)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return cleaned[:limit] or "data"


def kaggle_uri(dataset: str) -> str:
    return f"https://www.kaggle.com/datasets/{dataset}"


def origin_of_path(path: Path) -> dict[str, str]:
    """The origin of data ingested from ``path``: ``folder`` or ``archive``, its URI, a name.

    A Kaggle variant folder (``.../leukemia/Original``) is named after its parent too, since
    ``Original`` alone says little.
    """
    path = Path(path).resolve()
    name = path.stem if path.is_file() else path.name
    if name.lower() in ("original", "segmented") and path.parent.name:
        name = f"{path.parent.name}-{name}"
    return {"source": "archive" if path.is_file() else "folder", "uri": path.as_uri(),
            "name": safe_name(name)}


def record_origin(dvc_file: Path, origin: dict[str, str] | None) -> None:
    """Write ``origin`` (source, uri, name) into the ``meta`` block of ``dvc_file``.

    ``None`` (the built-in set) removes a recorded origin, so a ``data.dvc`` that never held
    other data stays byte-identical. DVC keeps ``meta`` when it re-adds the folder.
    """
    dvc_file = Path(dvc_file)
    if not dvc_file.is_file():
        return
    stage = yaml.safe_load(dvc_file.read_text()) or {}
    meta = dict(stage.get("meta") or {})
    if origin is None:
        if "data_origin" not in meta:
            return
        meta.pop("data_origin")
    else:
        meta["data_origin"] = dict(origin)
    if meta:
        stage["meta"] = meta
    else:
        stage.pop("meta", None)
    dvc_file.write_text(yaml.safe_dump(stage, sort_keys=False))
    _restage(dvc_file)


def _restage(path: Path) -> None:
    """With DVC's ``core.autostage`` the file was staged before the origin was written:
    stage it again, so the index (what ``git checkout -- data.dvc`` restores) has it too."""
    import shutil
    import subprocess

    if shutil.which("git") is None:
        return
    staged = subprocess.run(["git", "diff", "--cached", "--name-only", "--", path.name],
                            cwd=path.parent, capture_output=True, text=True)
    if staged.returncode == 0 and staged.stdout.strip():
        subprocess.run(["git", "add", "--", path.name], cwd=path.parent, capture_output=True)


def data_origin(cfg: Config, root: Path) -> tuple[str, str, str]:
    """``(source, name, uri)`` of the workspace's ``data/raw``.

    What ``data get`` recorded in ``data.dvc`` wins over the config's ``data.source`` (which
    says what to fetch next, not what was fetched).
    """
    try:
        stage = yaml.safe_load((root / "data.dvc").read_text()) or {}
        recorded = (stage.get("meta") or {}).get("data_origin")
    except (OSError, yaml.YAMLError, AttributeError):
        recorded = None
    if isinstance(recorded, dict) and recorded.get("source"):
        source = str(recorded["source"])
        return source, str(recorded.get("name") or source), str(recorded.get("uri") or "")
    configured = cfg.data.source
    raw_uri = (root / cfg.paths.raw_dir).resolve()
    if configured == BUILT_IN_SOURCE:
        return BUILT_IN_SOURCE, BUILT_IN_SOURCE, raw_uri.as_uri()
    if configured == "kaggle":
        return "kaggle", "kaggle", kaggle_uri(cfg.data.kaggle_dataset)
    path = Path(configured).expanduser()
    origin = origin_of_path(path if path.is_absolute() else root / path)
    return origin["source"], origin["name"], origin["uri"]


def split_rows(cfg: Config, root: Path) -> pd.DataFrame:
    """One row per image of the workspace's split: ``path, class, label, sha256, split``.

    From the split table (``paths.splits``); without one (a project holding only the
    preprocessed arrays) from ``{train,val,test}.npz``, with the sha256 of each image array.

    Raises
    ------
    DataError
        If neither the split table nor the preprocessed arrays can be read.
    """
    from leukemia_cnn.data.preprocess import SPLITS, load_split, read_split_table
    from leukemia_cnn.errors import DataError

    classes = [str(c) for c in cfg.data.classes]
    table_path = root / cfg.paths.splits
    if table_path.is_file():
        table = read_split_table(table_path, classes)
        if "sha256" not in table.columns:
            table["sha256"] = ""
        return table[["path", "class", "label", "sha256", "split"]].astype(
            {"path": str, "sha256": str})
    frames = []
    for name in SPLITS:
        try:
            x, y, paths = load_split(root / cfg.paths.preprocessed_dir, name)
        except DataError as exc:
            raise DataError(f"no split table ({table_path}) and {exc}") from exc
        frames.append(pd.DataFrame({
            "path": paths.astype(str), "class": np.asarray(classes)[y], "label": y,
            "sha256": [hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
                       for image in x],
            "split": name}))
    return pd.concat(frames, ignore_index=True)


def rows_digest(rows: pd.DataFrame) -> str:
    """sha256 of the rows' ``path, sha256, label`` (sorted by path): same images, same labels,
    same digest, whatever the row order."""
    lines = sorted(f"{path}\t{sha}\t{int(label)}" for path, sha, label in
                   zip(rows["path"], rows["sha256"], rows["label"], strict=True))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def workspace_lineage(cfg: Config, root: Path | None = None) -> DataLineage:
    """The lineage of the workspace's current data and split (``val_digest`` is ``unknown``
    when neither a split table nor preprocessed arrays are there)."""
    return lineage_and_rows(cfg, root)[0]


def lineage_and_rows(cfg: Config, root: Path | None = None):
    """``(lineage, rows)``: :func:`workspace_lineage` and the split rows it read (None when the
    workspace has neither a split table nor preprocessed arrays)."""
    from leukemia_cnn.errors import LeukemiaCNNError

    root = Path(root or find_repo_root())
    source, name, uri = data_origin(cfg, root)
    try:
        rows = split_rows(cfg, root)
    except LeukemiaCNNError:
        rows = None
    digest = rows_digest(rows[rows["split"] == "val"]) if rows is not None else UNKNOWN
    return DataLineage(version=data_version(root), source=source, name=name, uri=uri,
                       val_digest=digest), rows
