"""The configuration: loading, composing and checking it against one typed schema.

``conf/`` (Hydra config groups) is what users read and edit; ``params.yaml`` is ``conf/``
composed (``leukemia-cnn params``, or DVC's Hydra integration under ``dvc exp run -S``).
:func:`validate_config` checks a composed config against the schema
(:mod:`leukemia_cnn.config_schema`) and returns the typed :class:`Config` every stage takes.

conf/ stays plain YAML, not ``defaults: [schema]`` in Hydra's ConfigStore: DVC composes it in
its own process, where this package's registrations do not exist. So the defaults are written
twice, by design: in ``conf/`` with the comments a user reads, and in the schema for params
files that lack a knob; ``tests/test_config.py`` fails when the two disagree
(``split.near_duplicate_max_distance`` differs on purpose: see ``SplitConfig``).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from leukemia_cnn.config_schema import (  # noqa: F401 - the schema's public names, re-exported
    CALIBRATION_MODES,
    GUARD_METHODS,
    Config,
    KaggleData,
    SyntheticData,
)
from leukemia_cnn.config_types import hog_feature_length  # noqa: F401 - re-exported
from leukemia_cnn.config_validate import (  # noqa: F401 - re-exported
    all_keys,
    bounds,
    check_section,
    default_of,
    is_group,
    is_late,
    node_of,
    plain,
    unknown_key,
    validate_config,
)
from leukemia_cnn.errors import ConfigError
from leukemia_cnn.fileio import write_json

EXP_TMP_MARKER = "/.dvc/tmp/exps/"
# The file the `check_config` DVC stage writes; every other stage depends on it, so that DVC
# stops at a refused knob before it removes any stage's outputs.
CONFIG_CHECK_FILE = "config_check.json"
# The splits of the data, in the order every stage writes and reports them.
SPLITS = ("train", "val", "test")


# The knobs a params file may lack (they came after the first runs), with the value each takes
# then: derived from the schema, not a second list. At these values a knob leaves the
# configuration id of a run unchanged (tracking.config_id).
LATE_KNOBS: dict[str, Any] = {key: default_of(key) for key in all_keys()
                              if not is_group(key) and is_late(key)}
VARIANTS: tuple[str, ...] = typing.get_args(KaggleData.model_fields["variant"].annotation)
# The knobs that change the model or its training away from the paper's, and the paper's value
# of each (the schema's default): a run whose config has all of them trains as the paper did.
PAPER_KNOBS: dict[str, Any] = {key: default_of(key) for key in (
    "preprocess.color_mode", "model.padding", "model.batch_norm", "model.standardize",
    "model.kernel_initializer", "model.head", "train.augment", "train.class_weight",
    "train.early_stopping_patience", "train.lr_schedule", "train.lr_warmup_epochs",
    "train.ema_momentum", "train.label_smoothing", "train.weight_decay", "train.augment_dihedral",
    "evaluate.tta")}


def find_repo_root(start: Path | None = None) -> Path:
    """Return the project root: the nearest folder above ``start`` holding ``dvc.yaml``.

    Inside a DVC temporary experiment workspace (``<repo>/.dvc/tmp/exps/<tmp>/``, where
    ``dvc queue`` runs experiments) this is that workspace: stage outputs stay in it. The
    MLflow store is shared across workspaces: see :func:`shared_root`.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() or (folder / "conf" / "config.yaml").is_file():
            return folder
    return here


def shared_root(root: Path | None = None) -> Path:
    """The repository whose embedded MLflow store ``root`` logs to.

    DVC runs queued/temporary experiments in copies under ``<repo>/.dvc/tmp/exps/``; those
    resolve to the enclosing repository so that every run shares one MLflow store.
    """
    root = Path(root or find_repo_root()).resolve()
    text = root.as_posix() + "/"
    return Path(text.split(EXP_TMP_MARKER, 1)[0]) if EXP_TMP_MARKER in text else root


def compose(overrides: Iterable[str] = (), root: Path | None = None) -> DictConfig:
    """Compose ``conf/config.yaml`` with Hydra overrides (``key=value`` strings).

    The result is not checked yet (see :func:`validate_config`); a key that is not in conf/
    (without ``+``) is refused here, with the nearest valid key.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    directory = (Path(root).resolve() if root else find_repo_root()) / "conf"
    if not (directory / "config.yaml").is_file():
        raise ConfigError(f"no Hydra config at {directory / 'config.yaml'}; run from the project root")
    try:
        with initialize_config_dir(config_dir=str(directory), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        missing = re.search(r"Could not override '([^']+)'", str(exc))
        if missing and missing.group(1) not in all_keys():
            raise unknown_key(missing.group(1)) from None
        # Hydra's messages span lines (option lists, the search path): keep them on one.
        text = str(exc).split("\nConfig search path")[0].strip()
        text = re.sub(r"\s*\n\s*", " ", re.sub(r":\s*\n\s*", ": ", text))
        raise ConfigError(f"could not compose conf/ with overrides {list(overrides)}: "
                          f"{text}") from None
    OmegaConf.resolve(cfg)
    return cfg


def load_config(overrides: Iterable[str] = (), root: Path | None = None) -> Config:
    """``conf/`` composed with ``overrides`` and checked: the typed config (what the tests and
    the study's workspaces hand to stage code without a params file)."""
    return validate_config(compose(overrides, root=root))


def updated(cfg: Config, changes: dict[str, Any]) -> Config:
    """``cfg`` with ``changes`` (a nested mapping, ``{"train": {"epochs": 3}}``) merged in and
    checked again."""
    return validate_config(OmegaConf.merge(cfg.model_dump(), changes))


def load_params(path: str | Path = "params.yaml") -> Config:
    """Load the composed config a DVC stage runs with, checked by the schema (defaults filled)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path} not found; write it with `leukemia-cnn params` (composes conf/) "
            "or run from the project root"
        )
    try:
        cfg = OmegaConf.load(path)
    except Exception as exc:  # noqa: BLE001 - YAML errors come in many types
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path} must hold a mapping of config groups, got {type(cfg).__name__}")
    return validate_config(cfg)


def write_params(cfg: DictConfig | Config, path: str | Path = "params.yaml") -> Path:
    """Write ``cfg`` as plain YAML (what DVC's Hydra integration writes too)."""
    path = Path(path)
    path.write_text(yaml.safe_dump(plain(cfg), sort_keys=False, default_flow_style=None))
    return path


def write_config_check(cfg: Config, root: Path, params: str | Path = "params.yaml") -> Path:
    """The ``check_config`` stage: ``cfg`` passed the schema; write the marker the other stages
    depend on. Its content does not depend on the knobs, so the stages after it re-run only
    for their own params."""
    return write_json(Path(root) / cfg.paths.reports_dir / CONFIG_CHECK_FILE,
                      {"params": Path(params).name, "valid": True})


def flatten(cfg: DictConfig | Config | dict, prefix: str = "") -> dict[str, Any]:
    """Flatten a nested config to ``{"train.epochs": 15, ...}`` (lists kept as values)."""
    flat: dict[str, Any] = {}
    for key, value in plain(cfg).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def paper_faithful(values: DictConfig | Config | dict[str, Any]) -> bool:
    """Whether a config (nested or flattened, or a run's MLflow params, as strings) describes
    the paper's model and training: grayscale input and every robust-training knob at the
    paper's value (:data:`PAPER_KNOBS`). Epochs, batch size, loss, conv layers and input size
    may vary."""
    flat = flatten(values)
    return all(same_setting(flat.get(key, paper), paper) for key, paper in PAPER_KNOBS.items())


def same_setting(value: Any, reference: Any) -> bool:
    """Whether a config value, or a run's logged param (a string), is ``reference``; numbers
    compare as numbers (``"0"``, ``0`` and ``0.0`` are the same learning-rate warm-up)."""
    if reference is None or isinstance(reference, (bool, str)):
        return str(value) == str(reference)
    try:
        return float(str(value)) == float(reference)
    except ValueError:
        return False


def overrides_from_defaults(cfg: Config | DictConfig, root: Path | None = None) -> list[str]:
    """The ``key=value`` differences between ``cfg`` and the composed defaults of ``conf/``.

    DVC's Hydra integration does not pass the ``-S`` overrides to the stage; this recovers them.
    """
    defaults = flatten(compose(root=root))
    current = flatten(cfg)
    changed = [f"{k}={current[k]}" for k in current if defaults.get(k) != current[k]]
    changed += [f"~{k}" for k in defaults if k not in current]
    return sorted(changed)
