"""Loading, composing and validating the configuration.

``conf/`` (Hydra) is the single source of truth. ``params.yaml`` is the composed default
config; DVC stages read it (``dvc exp run -S key=value`` re-composes it through DVC's Hydra
integration). Every stage function takes the composed config as a ``DictConfig``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from leukemia_cnn.errors import ConfigError

LOSSES = ("categorical_crossentropy", "binary_crossentropy")
VARIANTS = ("Original", "Segmented")
COLOR_MODES = ("grayscale", "rgb")
PADDINGS = ("valid", "same")
CLASS_WEIGHTS = (None, "balanced")
LR_SCHEDULES = ("constant", "cosine", "plateau")
EARLY_STOPPING_MONITORS = ("val_argmax_accuracy", "val_loss")
DISTRIBUTE = (None, "mirrored")
HEADS = ("flatten", "global_average")
STANDARDIZE = (False, True, "per_image")
MIXED_PRECISION = ("off", "bfloat16", "auto")
INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_normal", "he_uniform")
# The knobs of robust training (and of the study's size) that a params file written before the
# knob existed may lack, with the value each takes then: the paper's, or what the code did
# before the knob. The same values are the defaults in conf/ and in build_model's signature
# (tests/test_config.py checks all three agree); code reads these keys with :func:`knob`.
KNOB_DEFAULTS: dict[str, Any] = {
    "model.batch_norm": False,
    "model.batch_norm_momentum": 0.99,
    "model.standardize": False,
    "model.kernel_initializer": "glorot_uniform",
    "model.head": "flatten",
    "train.train_fraction": 1.0,
    "train.augment": False,
    "train.augment_rotation": 0.25,
    "train.class_weight": None,
    "train.early_stopping_patience": None,
    "train.early_stopping_monitor": "val_argmax_accuracy",
    "train.lr_schedule": "constant",
    "train.lr_plateau_patience": 2,
    "train.lr_warmup_epochs": 0,
    "train.ema_momentum": 0.0,
    "train.distribute": None,
    "train.label_smoothing": 0.0,
    "train.weight_decay": 0.0,
    "train.augment_dihedral": False,
    "train.mixed_precision": "off",
    "evaluate.tta": False,
}
# The knobs that change the model or its training away from the paper's, and the paper's value
# of each: a run whose config has all of them trains the paper's model as the paper did.
PAPER_KNOBS: dict[str, Any] = {
    "preprocess.color_mode": "grayscale",
    "model.padding": "valid",
    **{key: KNOB_DEFAULTS[key] for key in (
        "model.batch_norm", "model.standardize", "model.kernel_initializer", "model.head",
        "train.augment", "train.class_weight", "train.early_stopping_patience",
        "train.lr_schedule", "train.lr_warmup_epochs", "train.ema_momentum",
        "train.label_smoothing", "train.weight_decay", "train.augment_dihedral",
        "evaluate.tta")},
}
EXP_TMP_MARKER = ("/.dvc/tmp/exps/",)


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
    for marker in EXP_TMP_MARKER:
        if marker in text:
            return Path(text.split(marker, 1)[0])
    return root


def conf_dir(root: Path | None = None) -> Path:
    """The Hydra config folder of the project at ``root`` (default: the current project)."""
    return (Path(root).resolve() if root else find_repo_root()) / "conf"


def compose(overrides: Iterable[str] = (), root: Path | None = None) -> DictConfig:
    """Compose ``conf/config.yaml`` with Hydra overrides (``key=value`` strings)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    directory = conf_dir(root)
    if not (directory / "config.yaml").is_file():
        raise ConfigError(f"no Hydra config at {directory / 'config.yaml'}; run from the project root")
    try:
        with initialize_config_dir(config_dir=str(directory), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"could not compose conf/ with overrides {list(overrides)}: {exc}") from exc
    OmegaConf.resolve(cfg)
    return cfg


def load_params(path: str | Path = "params.yaml") -> DictConfig:
    """Load and validate the composed config a DVC stage runs with."""
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
    validate_config(cfg)
    return cfg


def write_params(cfg: DictConfig, path: str | Path = "params.yaml") -> Path:
    """Write ``cfg`` as plain YAML (what DVC's Hydra integration writes too)."""
    path = Path(path)
    data = OmegaConf.to_container(cfg, resolve=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None))
    return path


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, Any]:
    """Flatten a nested config to ``{"train.epochs": 15, ...}`` (lists kept as values)."""
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def paper_faithful(flat: dict[str, Any]) -> bool:
    """Whether flattened config values (or a run's MLflow params, as strings) describe the
    paper's model and training: grayscale input and every robust-training knob at the paper's
    value (:data:`PAPER_KNOBS`). Epochs, batch size, loss, conv layers and input size may vary.
    """
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


def is_paper_faithful(cfg: DictConfig) -> bool:
    """:func:`paper_faithful` of a composed config."""
    return paper_faithful(flatten(cfg))


def overrides_from_defaults(cfg: DictConfig, root: Path | None = None) -> list[str]:
    """The ``key=value`` differences between ``cfg`` and the composed defaults of ``conf/``.

    DVC's Hydra integration does not pass the ``-S`` overrides to the stage; this recovers them.
    """
    defaults = flatten(compose(root=root))
    current = flatten(cfg)
    changed = [f"{k}={current[k]}" for k in current if defaults.get(k) != current[k]]
    changed += [f"~{k}" for k in defaults if k not in current]
    return sorted(changed)


def _get(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=None)
    if value is None:
        raise ConfigError(f"config key `{key}` is missing; add it to conf/ (see conf/config.yaml)")
    return value


def knob(cfg: DictConfig, key: str) -> Any:
    """The value of a :data:`KNOB_DEFAULTS` key in ``cfg``, or its default when ``cfg`` lacks it."""
    return OmegaConf.select(cfg, key, default=KNOB_DEFAULTS[key])


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"config key `{key}` = {value!r} is invalid; allowed: {allowed}")


def _positive_int(cfg: DictConfig, key: str) -> int:
    """``key`` as an integer >= 1; a missing :data:`KNOB_DEFAULTS` key (an older params file)
    takes its default, any other missing key raises."""
    value = knob(cfg, key) if key in KNOB_DEFAULTS else _get(cfg, key)
    _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, key, value,
             "an integer >= 1")
    return value


def hog_feature_length(image_size: int, pixels_per_cell: int, cells_per_block: int,
                       orientations: int) -> int:
    """Length of skimage's HOG vector for a square image (``feature_vector=True``)."""
    cells = image_size // pixels_per_cell
    blocks = cells - cells_per_block + 1
    return max(blocks, 0) ** 2 * cells_per_block**2 * orientations


def validate_config(cfg: DictConfig) -> None:
    """Reject a bad config before any work starts, naming the key and the allowed values."""
    classes = list(_get(cfg, "data.classes"))
    _require(len(classes) >= 2 and len(set(classes)) == len(classes), "data.classes", classes,
             "at least two distinct class names")
    lowered = [str(name).lower() for name in classes]
    _require(len(set(lowered)) == len(lowered), "data.classes", classes,
             "class names that differ other than by case (folders are matched case-insensitively)")
    source = _get(cfg, "data.source")
    _require(isinstance(source, str) and source.strip() != "", "data.source", source,
             "synthetic, kaggle, or the path of a Kaggle zip or image folder")
    variant = OmegaConf.select(cfg, "data.variant", default=None)
    _require(variant is None or variant in VARIANTS, "data.variant", variant, ", ".join(VARIANTS))
    skip_unknown = OmegaConf.select(cfg, "data.skip_unknown_classes", default=False)
    _require(isinstance(skip_unknown, bool), "data.skip_unknown_classes", skip_unknown,
             "true or false")
    _validate_validation(cfg)

    ratios = {name: _get(cfg, f"split.{name}") for name in ("train", "val", "test")}
    for name, ratio in ratios.items():
        _require(isinstance(ratio, (int, float)) and 0 < ratio < 1, f"split.{name}", ratio,
                 "a fraction strictly between 0 and 1")
    total = sum(ratios.values())
    _require(math.isclose(total, 1.0, abs_tol=1e-6), "split.train/val/test", ratios,
             f"fractions that sum to 1 (they sum to {total:.4f})")
    near = OmegaConf.select(cfg, "split.near_duplicate_max_distance", default=None)
    _require(near is None or (isinstance(near, int) and not isinstance(near, bool)
                              and 0 <= near <= 64), "split.near_duplicate_max_distance", near,
             "null (byte-identical copies only) or an integer from 0 to 64 (bits)")

    size = _positive_int(cfg, "preprocess.image_size")
    _require(size >= 16, "preprocess.image_size", size, "an integer >= 16")
    mode = _get(cfg, "preprocess.color_mode")
    _require(mode in COLOR_MODES, "preprocess.color_mode", mode, ", ".join(COLOR_MODES))

    ppc = list(_get(cfg, "features.hog.pixels_per_cell"))
    cpb = list(_get(cfg, "features.hog.cells_per_block"))
    orientations = _positive_int(cfg, "features.hog.orientations")
    _require(len(ppc) == 2 and ppc[0] == ppc[1] and ppc[0] >= 1, "features.hog.pixels_per_cell",
             ppc, "two equal positive integers, e.g. [8, 8]")
    _require(len(cpb) == 2 and cpb[0] == cpb[1] and cpb[0] >= 1, "features.hog.cells_per_block",
             cpb, "two equal positive integers, e.g. [2, 2]")
    n_hog = hog_feature_length(size, ppc[0], cpb[0], orientations)
    _require(n_hog > 0, "features.hog", {"pixels_per_cell": ppc, "cells_per_block": cpb},
             f"cells that fit a {size}x{size} image")
    n_components = _positive_int(cfg, "features.pca.n_components")
    _require(n_components <= n_hog, "features.pca.n_components", n_components,
             f"at most the HOG feature count ({n_hog})")
    solver = OmegaConf.select(cfg, "features.pca.svd_solver", default="randomized")
    _require(solver in ("randomized", "full"), "features.pca.svd_solver", solver,
             "randomized, full")
    seed = OmegaConf.select(cfg, "features.pca.random_state", default=0)
    _require(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0,
             "features.pca.random_state", seed, "an integer >= 0")
    _positive_int(cfg, "features.n_jobs")

    filters = list(_get(cfg, "model.filters"))
    kernels = list(_get(cfg, "model.kernel_sizes"))
    _require(len(filters) >= 1 and all(isinstance(f, int) and f >= 1 for f in filters),
             "model.filters", filters, "a non-empty list of positive integers (one per conv layer)")
    _require(len(kernels) == len(filters) and all(isinstance(k, int) and k >= 1 for k in kernels),
             "model.kernel_sizes", kernels,
             f"a list of {len(filters)} positive integers (one per entry of model.filters)")
    padding = _get(cfg, "model.padding")
    _require(padding in PADDINGS, "model.padding", padding, ", ".join(PADDINGS))
    _positive_int(cfg, "model.pool_size")
    _positive_int(cfg, "model.dense_units")
    dropout = _get(cfg, "model.dropout")
    _require(isinstance(dropout, (int, float)) and 0 <= dropout < 1, "model.dropout", dropout,
             "a number in [0, 1)")
    _check_spatial(size, kernels, padding, _get(cfg, "model.pool_size"))
    fraction = knob(cfg, "train.train_fraction")
    _require(isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
             and 0 < fraction <= 1, "train.train_fraction", fraction, "a number in (0, 1]")
    momentum = knob(cfg, "model.batch_norm_momentum")
    _require(isinstance(momentum, float) and 0 < momentum < 1, "model.batch_norm_momentum",
             momentum, "a number strictly between 0 and 1, e.g. 0.99")
    init = knob(cfg, "model.kernel_initializer")
    _require(init in INITIALIZERS, "model.kernel_initializer", init, ", ".join(INITIALIZERS))
    head = knob(cfg, "model.head")
    _require(head in HEADS, "model.head", head, ", ".join(HEADS))
    standardize = knob(cfg, "model.standardize")
    _require(any(standardize is v if isinstance(v, bool) else standardize == v
                 for v in STANDARDIZE), "model.standardize", standardize,
             "false, true (the training images' mean and variance) or per_image")
    for key in ("model.batch_norm", "train.augment", "train.augment_dihedral", "evaluate.tta"):
        flag = knob(cfg, key)
        _require(isinstance(flag, bool), key, flag, "true or false")

    rotation = knob(cfg, "train.augment_rotation")
    _require(isinstance(rotation, (int, float)) and not isinstance(rotation, bool)
             and 0 <= rotation <= 0.5, "train.augment_rotation", rotation,
             "a fraction of a full turn from 0 (flips only) to 0.5")
    epochs = _positive_int(cfg, "train.epochs")
    _positive_int(cfg, "train.batch_size")
    loss = _get(cfg, "train.loss")
    _require(loss in LOSSES, "train.loss", loss, ", ".join(LOSSES))
    lr = _get(cfg, "train.learning_rate")
    _require(isinstance(lr, (int, float)) and lr > 0, "train.learning_rate", lr, "a number > 0")
    patience = knob(cfg, "train.early_stopping_patience")
    _require(patience is None or (isinstance(patience, int) and not isinstance(patience, bool)
                                  and patience >= 1), "train.early_stopping_patience", patience,
             "null (train every epoch) or an integer >= 1")
    monitor = knob(cfg, "train.early_stopping_monitor")
    _require(monitor in EARLY_STOPPING_MONITORS, "train.early_stopping_monitor", monitor,
             ", ".join(EARLY_STOPPING_MONITORS))
    weight = knob(cfg, "train.class_weight")
    _require(weight in CLASS_WEIGHTS, "train.class_weight", weight, "null or balanced")
    schedule = knob(cfg, "train.lr_schedule")
    _require(schedule in LR_SCHEDULES, "train.lr_schedule", schedule, ", ".join(LR_SCHEDULES))
    _positive_int(cfg, "train.lr_plateau_patience")
    warmup = knob(cfg, "train.lr_warmup_epochs")
    _require(isinstance(warmup, int) and not isinstance(warmup, bool) and 0 <= warmup < epochs,
             "train.lr_warmup_epochs", warmup, f"an integer from 0 (none) to train.epochs - 1 "
             f"({epochs - 1})")
    _require(warmup == 0 or schedule != "plateau", "train.lr_warmup_epochs", warmup,
             "0 with train.lr_schedule=plateau (the plateau callback sets the rate itself)")
    ema = knob(cfg, "train.ema_momentum")
    _require(isinstance(ema, (int, float)) and not isinstance(ema, bool) and 0 <= ema < 1,
             "train.ema_momentum", ema, "0 (off) or a number strictly between 0 and 1, e.g. 0.99")
    for key, top in (("train.label_smoothing", 1), ("train.weight_decay", 1)):
        value = knob(cfg, key)
        _require(isinstance(value, (int, float)) and not isinstance(value, bool)
                 and 0 <= value < top, key, value, f"0 (off, the paper) or a number in (0, {top})")
    precision = knob(cfg, "train.mixed_precision")
    _require(precision in MIXED_PRECISION, "train.mixed_precision", precision,
             "off, bfloat16, or auto (bfloat16 only on a CPU with AVX512-BF16 or AMX units)")
    distribute = knob(cfg, "train.distribute")
    _require(distribute in DISTRIBUTE, "train.distribute", distribute,
             "null (one device) or mirrored (tf.distribute.MirroredStrategy over all GPUs)")
    _validate_sweep_and_report(cfg)
    seed = _get(cfg, "seed")
    _require(isinstance(seed, int) and seed >= 0, "seed", seed, "an integer >= 0")


def _validate_validation(cfg: DictConfig) -> None:
    """The data-quality thresholds and ingestion bounds of the ``validation`` group."""
    for key in ("min_class_share", "max_class_share"):
        share = _get(cfg, f"validation.{key}")
        _require(isinstance(share, (int, float)) and not isinstance(share, bool)
                 and 0 <= share <= 1, f"validation.{key}", share, "a fraction from 0 to 1")
    low, high = _get(cfg, "validation.min_class_share"), _get(cfg, "validation.max_class_share")
    _require(low <= high, "validation.min_class_share/max_class_share", [low, high], "min <= max")
    for key in ("max_total_bytes", "max_files", "max_image_pixels"):
        _positive_int(cfg, f"validation.{key}")
    # the split and feature suites (validate_splits, validate_features)
    for key in ("split_size_tolerance", "class_share_tolerance", "min_explained_variance"):
        value = _get(cfg, f"validation.{key}")
        _require(isinstance(value, (int, float)) and not isinstance(value, bool)
                 and 0 <= value <= 1, f"validation.{key}", value, "a fraction from 0 to 1")
    distance = _get(cfg, "validation.near_duplicate_max_distance")
    _require(isinstance(distance, int) and not isinstance(distance, bool) and 0 <= distance <= 63,
             "validation.near_duplicate_max_distance", distance,
             "an integer from 0 (identical perceptual hashes only) to 63 bits")


def _validate_sweep_and_report(cfg: DictConfig) -> None:
    """The ``sweep`` and ``report`` groups (optional: older params files lack them)."""
    threads = OmegaConf.select(cfg, "sweep.tf_threads", default=None)
    _require(threads is None or (isinstance(threads, int) and not isinstance(threads, bool)
                                 and threads >= 1), "sweep.tf_threads", threads,
             "null (TensorFlow's default) or an integer >= 1")
    register = OmegaConf.select(cfg, "sweep.register", default=True)
    _require(isinstance(register, bool), "sweep.register", register, "true or false")
    confidence = OmegaConf.select(cfg, "report.confidence", default=0.95)
    _require(isinstance(confidence, float) and 0 < confidence < 1, "report.confidence",
             confidence, "a number strictly between 0 and 1, e.g. 0.95")
    sweep_ids = OmegaConf.select(cfg, "report.sweep_ids", default=[])
    _require(sweep_ids is not None and not isinstance(sweep_ids, str)
             and all(isinstance(s, str | int) for s in sweep_ids), "report.sweep_ids", sweep_ids,
             "a list of sweep ids (the sweep_id tag); [] = every sweep run of the experiment")
    name = OmegaConf.select(cfg, "report.name", default="table1")
    _require(isinstance(name, str) and name.strip() != "" and "/" not in name, "report.name",
             name, "a file name without folders, e.g. table1")


def _check_spatial(size: int, kernels: list[int], padding: str, pool: int) -> None:
    """Each conv + pool block must leave at least a 1x1 feature map."""
    side = size
    for index, kernel in enumerate(kernels):
        side = side - kernel + 1 if padding == "valid" else side
        side //= pool
        if side < 1:
            raise ConfigError(
                f"config keys `model.kernel_sizes`/`model.filters`: conv layer {index + 1} leaves "
                f"no pixels for a {size}x{size} input (padding={padding}, pool={pool}); "
                "use fewer conv layers, smaller kernels, padding=same or a larger "
                "preprocess.image_size"
            )
