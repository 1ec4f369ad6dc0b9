"""The configuration: one typed schema for every knob, and loading, composing and checking it.

``conf/`` (Hydra config groups) is what users read and edit; ``params.yaml`` is ``conf/``
composed (``leukemia-cnn params``, or DVC's Hydra integration under ``dvc exp run -S``).
Every stage takes the composed config as a plain ``DictConfig``.

The schema
----------
The dataclasses below (:class:`Config` and one class per group) are the only place where a
knob is typed, ranged and defaulted. :func:`validate_config` checks a composed config against
them: an unknown key (``+train.epochz=2`` too) is refused with the nearest valid key; every
value is checked against its type and range (the message names the key, the bad value and
what is allowed); checks that involve several keys live in the ``__post_init__`` of the class
that holds them; a key a params file lacks because it was written before the knob existed
takes the schema's default. Stage code reads ``cfg.train.epochs`` and never re-checks.

Why conf/ stays plain YAML (and not ``defaults: [schema]`` in Hydra's ConfigStore): DVC
composes ``conf/`` in its own process for ``dvc exp run -S``, where this package's
ConfigStore registrations do not exist; plain YAML composes everywhere, and the schema checks
the result before any work starts (``leukemia-cnn params``, every stage, and the first DVC
stage ``check_config``). So the defaults are written twice, by design: in ``conf/`` with the
comments a user reads, and in the schema for params files that lack a knob;
``tests/test_config.py`` fails when the two disagree (or when a key is in one only). One
knob differs on purpose: conf/ sets ``split.near_duplicate_max_distance`` to
``${validation.near_duplicate_max_distance}``, while a params file from before the knob gets
null, what the split did then. The ``data`` group has two options with different keys
(:class:`SyntheticData`, :class:`KaggleData`); the keys present say which one applies.
Functions that take one group's values rather than a config (``split.split_table``,
``validate_raw.validate``) check them with :func:`check_section`, the same schema.

Adding a knob (one place in code, one line in conf/)
---------------------------------------------------
1. Add a field to the group's dataclass: ``name: type = setting(default, ...ranges...)``.
   ``default`` is the behaviour before the knob existed (usually the paper's), and
   ``late=True`` marks a knob added after runs were logged: a params file may lack it, and
   at its default it leaves :func:`leukemia_cnn.tracking.store.config_id` unchanged, so earlier
   runs still group with new ones. Ranges: ``ge``/``gt``/``le``/``lt`` (on list and dict
   items too), ``check=(predicate, "what is allowed")``, ``none="what null means"``; a
   ``Literal[...]`` type lists the choices. A rule over several keys goes in that class's
   ``__post_init__`` (raise with :func:`invalid`).
2. Add the key with the same default and a comment to the group's ``conf/<group>/*.yaml``
   and rewrite ``params.yaml`` (``leukemia-cnn params``).
Nothing else: no second default in code (read ``cfg.group.name``), no check in the stage.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from omegaconf import DictConfig, OmegaConf

from leukemia_cnn.errors import ConfigError

EXP_TMP_MARKER = ("/.dvc/tmp/exps/",)
# The file the `check_config` DVC stage writes; every other stage depends on it, so that DVC
# stops at a refused knob before it removes any stage's outputs.
CONFIG_CHECK_FILE = "config_check.json"


# --------------------------------------------------------------------------------------------
# Declaring a knob
# --------------------------------------------------------------------------------------------

def setting(default: Any, *, ge: float | None = None, gt: float | None = None,
         le: float | None = None, lt: float | None = None,
         check: tuple[Callable[[Any], bool], str] | None = None, allowed: str | None = None,
         none: str | None = None, late: bool = False) -> Any:
    """A schema field: its default, range and how its error message reads.

    Parameters
    ----------
    default
        The value a params file without the key takes (lists and dicts are copied).
    ge, gt, le, lt : number, optional
        Bounds of a number, or of each item of a list or each value of a dict.
    check : (predicate, text), optional
        One more condition on the (type-checked) value and the words for what it allows.
    allowed : str, optional
        Words for what is allowed, instead of the ones made from the type and bounds.
    none : str, optional
        What null means, for an optional knob (``"null (<none>) or ..."``).
    late : bool
        The knob came after the first runs: a params file may lack it, and at its default it
        does not enter a run's configuration id. Other keys are required.
    """
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "check": check, "allowed": allowed,
            "none": none, "late": late}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: _copy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def invalid(key: str, value: Any, allowed: str) -> ConfigError:
    """The error for a bad value: names the key, the value and what is allowed."""
    return ConfigError(f"config key `{key}` = {value!r} is invalid; allowed: {allowed}")


# One range for both perceptual-hash distances (the split's grouping and the suite's check).
HASH_BITS = {"ge": 0, "le": 63}
FILE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _two_equal(value: list[int]) -> bool:
    return len(value) == 2 and value[0] == value[1]


# --------------------------------------------------------------------------------------------
# The schema (conf/<group>/*.yaml holds the same defaults, with comments)
# --------------------------------------------------------------------------------------------

# How evaluate and the served model use the temperature fitted on val (modeling/calibration.py).
CALIBRATION_MODES = ("auto", "on", "off")
# The parts of an out-of-distribution guard (modeling/guard.py METHODS; config cannot import it).
GUARD_METHODS = ("mahalanobis", "knn", "energy", "input")

@dataclass
class PathsConfig:
    raw_dir: str = setting("data/raw")
    manifest: str = setting("data/manifest.csv")
    splits: str = setting("data/splits.csv")
    preprocessed_dir: str = setting("data/preprocessed")
    features_dir: str = setting("data/features")
    model_dir: str = setting("models")
    reports_dir: str = setting("reports")


@dataclass
class _DataBase:
    source: str = setting("synthetic", allowed="synthetic, kaggle, or the path of a Kaggle zip "
                                            "or image folder")
    classes: list[str] = setting(["Benign", "Early", "Pre", "Pro"])

    def __post_init__(self) -> None:
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise invalid("data.classes", self.classes, "at least two distinct class names")
        lowered = [name.lower() for name in self.classes]
        if len(set(lowered)) != len(lowered):
            raise invalid("data.classes", self.classes, "class names that differ other than "
                          "by case (folders are matched case-insensitively)")


@dataclass
class SynthConfig:
    scale: float = setting(0.5, gt=0, allowed="a number > 0 (1.0 = the real class counts; "
                                           "`data synth --scale` overrides it)")
    seed: int = setting(2024, ge=0)
    image_size: int = setting(224, ge=32)
    jpeg_quality: int = setting(92, ge=1, le=95)
    class_counts: dict[str, int] = setting({"Benign": 504, "Early": 985, "Pre": 963, "Pro": 804},
                                        ge=1)


@dataclass
class SyntheticData(_DataBase):
    """``data=synthetic``: the built-in generator (``leukemia-cnn data synth``)."""

    OPTION: ClassVar[str] = "data=synthetic"
    synth: SynthConfig = field(default_factory=SynthConfig, metadata={})

    def __post_init__(self) -> None:
        super().__post_init__()
        missing = [name for name in self.classes if name not in self.synth.class_counts]
        if missing:
            raise invalid("data.synth.class_counts", self.synth.class_counts,
                          f"one count per entry of data.classes {self.classes} "
                          f"(no count for {missing})")


@dataclass
class KaggleData(_DataBase):
    """``data=kaggle``: the Kaggle archive (``leukemia-cnn data get``)."""

    OPTION: ClassVar[str] = "data=kaggle"
    source: str = setting("kaggle", allowed="synthetic, kaggle, or the path of a Kaggle zip or "
                                         "image folder")
    variant: Literal["Original", "Segmented"] = setting("Original")
    kaggle_dataset: str = setting("mehradaria/leukemia", allowed="a Kaggle dataset slug, "
                                                              "owner/name")
    skip_unknown_classes: bool = setting(False, late=True)


@dataclass
class ValidationConfig:
    allowed_formats: list[str] = setting(["JPEG", "PNG"], check=(
        bool, "a non-empty list of PIL names, e.g. [JPEG, PNG]"))
    allowed_modes: list[str] = setting(["RGB", "L"], check=(
        bool, "a non-empty list of PIL modes, e.g. [RGB, L]"))
    min_width: int = setting(32, ge=0)
    max_width: int = setting(4096, ge=0)
    min_height: int = setting(32, ge=0)
    max_height: int = setting(4096, ge=0)
    min_images_per_class: int = setting(5, ge=0)
    min_class_share: float = setting(0.10, ge=0, le=1, allowed="a fraction from 0 to 1")
    max_class_share: float = setting(0.45, ge=0, le=1, allowed="a fraction from 0 to 1")
    max_total_bytes: int = setting(4_000_000_000, ge=1)
    max_files: int = setting(100_000, ge=1)
    max_image_pixels: int = setting(50_000_000, ge=1)
    split_size_tolerance: float = setting(0.02, ge=0, le=1, allowed="a fraction from 0 to 1")
    class_share_tolerance: float = setting(0.05, ge=0, le=1, allowed="a fraction from 0 to 1")
    near_duplicate_max_distance: int = setting(6, **HASH_BITS, allowed=(
        "an integer from 0 (identical perceptual hashes only) to 63 bits"))
    min_explained_variance: float = setting(0.0, ge=0, le=1, allowed="a fraction from 0 to 1")

    def __post_init__(self) -> None:
        for low, high in (("min_width", "max_width"), ("min_height", "max_height"),
                          ("min_class_share", "max_class_share")):
            if getattr(self, low) > getattr(self, high):
                raise invalid(f"validation.{low}/{high}",
                              [getattr(self, low), getattr(self, high)], "min <= max")


@dataclass
class SplitConfig:
    train: float = setting(0.70, gt=0, lt=1, allowed="a fraction strictly between 0 and 1")
    val: float = setting(0.15, gt=0, lt=1, allowed="a fraction strictly between 0 and 1")
    test: float = setting(0.15, gt=0, lt=1, allowed="a fraction strictly between 0 and 1")
    seed: int = setting(42, ge=0)
    # conf/ sets it to ${validation.near_duplicate_max_distance}; a params file from before
    # the knob groups byte-identical copies only, as the split did then.
    near_duplicate_max_distance: int | None = setting(
        None, **HASH_BITS, late=True, none="byte-identical copies only",
        allowed="null (byte-identical copies only) or an integer from 0 to 63 bits")

    def __post_init__(self) -> None:
        ratios = {"train": self.train, "val": self.val, "test": self.test}
        total = sum(ratios.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise invalid("split.train/val/test", ratios,
                          f"fractions that sum to 1 (they sum to {total:.4f})")


@dataclass
class PreprocessConfig:
    image_size: int = setting(100, ge=16)
    color_mode: Literal["grayscale", "rgb"] = setting("grayscale")


@dataclass
class HogConfig:
    orientations: int = setting(9, ge=1)
    pixels_per_cell: list[int] = setting([8, 8], ge=1, check=(
        _two_equal, "two equal positive integers, e.g. [8, 8]"))
    cells_per_block: list[int] = setting([2, 2], ge=1, check=(
        _two_equal, "two equal positive integers, e.g. [2, 2]"))
    block_norm: Literal["L1", "L1-sqrt", "L2", "L2-Hys"] = setting("L2-Hys")


@dataclass
class PcaConfig:
    n_components: int = setting(100, ge=1)
    whiten: bool = setting(False)
    svd_solver: Literal["randomized", "full"] = setting("randomized", late=True)
    random_state: int = setting(0, ge=0, late=True)


@dataclass
class BaselineConfig:
    C: float = setting(1.0, gt=0)
    max_iter: int = setting(2000, ge=1)


@dataclass
class FeaturesConfig:
    hog: HogConfig = field(default_factory=HogConfig)
    pca: PcaConfig = field(default_factory=PcaConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    n_jobs: int = setting(2, ge=1)


@dataclass
class ModelConfig:
    name: str = setting("paper_cnn")
    filters: list[int] = setting([64, 32, 128], ge=1, check=(
        bool, "a non-empty list of positive integers (one per conv layer)"))
    kernel_sizes: list[int] = setting([5, 5, 3], ge=1)
    padding: Literal["valid", "same"] = setting("valid")
    pool_size: int = setting(2, ge=1)
    dense_units: int = setting(128, ge=1)
    dropout: float = setting(0.5, ge=0, lt=1)
    batch_norm: bool = setting(False, late=True)
    batch_norm_momentum: float = setting(0.99, gt=0, lt=1, late=True,
                                      allowed="a number strictly between 0 and 1, e.g. 0.99")
    standardize: bool | Literal["per_image"] = setting(False, late=True, allowed=(
        "false, true (the training images' mean and variance) or per_image"))
    kernel_initializer: Literal["glorot_uniform", "glorot_normal", "he_normal",
                                "he_uniform"] = setting("glorot_uniform", late=True)
    head: Literal["flatten", "global_average"] = setting("flatten", late=True)

    def __post_init__(self) -> None:
        if len(self.kernel_sizes) != len(self.filters):
            raise invalid("model.kernel_sizes", self.kernel_sizes,
                          f"a list of {len(self.filters)} positive integers (one per entry of "
                          "model.filters)")


@dataclass
class TrainConfig:
    epochs: int = setting(15, ge=1)
    batch_size: int = setting(64, ge=1)
    loss: Literal["categorical_crossentropy", "binary_crossentropy"] = setting(
        "categorical_crossentropy")
    learning_rate: float = setting(0.001, gt=0)
    train_fraction: float = setting(1.0, gt=0, le=1, late=True)
    deterministic: bool = setting(True)
    verbose: int = setting(2, ge=0, le=2)
    early_stopping_patience: int | None = setting(None, ge=1, late=True, none="train every epoch")
    early_stopping_monitor: Literal["val_argmax_accuracy", "val_loss"] = setting(
        "val_argmax_accuracy", late=True)
    class_weight: Literal["balanced"] | None = setting(None, late=True, none="the paper")
    augment: bool = setting(False, late=True)
    augment_rotation: float = setting(0.25, ge=0, le=0.5, late=True, allowed=(
        "a fraction of a full turn from 0 (flips only) to 0.5"))
    lr_schedule: Literal["constant", "cosine", "plateau"] = setting("constant", late=True)
    lr_plateau_patience: int = setting(2, ge=1, late=True)
    lr_warmup_epochs: int = setting(0, ge=0, late=True)
    ema_momentum: float = setting(0.0, ge=0, lt=1, late=True, allowed=(
        "0 (off) or a number strictly between 0 and 1, e.g. 0.99"))
    label_smoothing: float = setting(0.0, ge=0, lt=1, late=True,
                                     allowed="0 (off, the paper) or a number in (0, 1)")
    weight_decay: float = setting(0.0, ge=0, lt=1, late=True, allowed=(
        "0 (Adam, the paper) or a number in (0, 1): AdamW's decoupled weight decay"))
    augment_dihedral: bool = setting(False, late=True)
    mixed_precision: Literal["off", "bfloat16", "auto"] = setting("off", late=True, allowed=(
        "off, bfloat16, or auto (bfloat16 only on a CPU with AVX512-BF16 or AMX units)"))
    distribute: Literal["mirrored"] | None = setting(None, late=True, allowed=(
        "null (one device) or mirrored (tf.distribute.MirroredStrategy over all GPUs)"))
    calibration: Literal[CALIBRATION_MODES] = setting("auto", late=True)
    # The out-of-distribution guard (modeling/guard.py), fit with the model.
    guard_method: str = setting("mahalanobis+input", late=True, check=(
        lambda value: bool(value) and all(part in GUARD_METHODS for part in value.split("+"))
        and len(set(value.split("+"))) == len(value.split("+")),
        "one of mahalanobis, knn, energy, input, or several joined by '+' "
        "(e.g. mahalanobis+input)"))
    guard_accept_rate: float = setting(0.95, gt=0, le=1, late=True, allowed=(
        "the share of validation images the guard accepts, in (0, 1], e.g. 0.95"))

    def __post_init__(self) -> None:
        if self.lr_warmup_epochs >= self.epochs:
            raise invalid("train.lr_warmup_epochs", self.lr_warmup_epochs,
                          f"an integer from 0 (none) to train.epochs - 1 ({self.epochs - 1})")
        if self.lr_warmup_epochs and self.lr_schedule == "plateau":
            raise invalid("train.lr_warmup_epochs", self.lr_warmup_epochs,
                          "0 with train.lr_schedule=plateau (the plateau callback sets the "
                          "rate itself)")


@dataclass
class EvaluateConfig:
    ece_bins: int = setting(15, ge=1, late=True)
    gradcam_per_class: int = setting(2, ge=0, late=True, allowed="an integer >= 0 (0: no Grad-CAM grid)")
    tta: bool = setting(False, late=True)


@dataclass
class MlflowConfig:
    tracking_uri: str | None = setting(None, none="the embedded store sqlite:///<repo>/mlflow.db")
    experiment_name: str = setting("leukemia-cnn")
    registered_model_name: str = setting("leukemia-cnn")
    champion_alias: str = setting("champion")


@dataclass
class SweepConfig:
    id: str | int | None = setting(None, late=True, none="the sweep command makes one")
    experiment: str | None = setting(None, late=True)
    register: bool = setting(True, late=True)
    tf_threads: int | None = setting(None, ge=1, late=True, none="TensorFlow's default")


@dataclass
class ReportConfig:
    sweep_ids: list[str | int] = setting([], late=True, allowed=(
        "a list of sweep ids (the sweep_id tag); [] = every sweep run of the experiment"))
    name: str = setting("table1", late=True, check=(
        FILE_STEM.fullmatch, "a file stem: letters, digits, '_', '-' or '.', starting with a "
                             "letter or digit (e.g. `leukemia-cnn report --name spread`)"))
    confidence: float = setting(0.95, gt=0, lt=1, late=True,
                             allowed="a number strictly between 0 and 1, e.g. 0.95")
    sample_images: bool = setting(True, late=True)


@dataclass
class Config:
    """The whole composed config (``conf/config.yaml``): one field per group, then ``seed``."""

    paths: PathsConfig = field(default_factory=PathsConfig)
    data: SyntheticData | KaggleData = field(default_factory=SyntheticData)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig, metadata={"late": True})
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig, metadata={"late": True})
    report: ReportConfig = field(default_factory=ReportConfig, metadata={"late": True})
    seed: int = setting(42, ge=0)

    def __post_init__(self) -> None:
        size, hog = self.preprocess.image_size, self.features.hog
        n_hog = hog_feature_length(size, hog.pixels_per_cell[0], hog.cells_per_block[0],
                                   hog.orientations)
        if n_hog <= 0:
            raise invalid("features.hog", {"pixels_per_cell": hog.pixels_per_cell,
                                           "cells_per_block": hog.cells_per_block},
                          f"cells that fit a {size}x{size} image")
        if self.features.pca.n_components > n_hog:
            raise invalid("features.pca.n_components", self.features.pca.n_components,
                          f"at most the HOG feature count ({n_hog})")
        _check_spatial(size, self.model.kernel_sizes, self.model.padding, self.model.pool_size)


# --------------------------------------------------------------------------------------------
# Checking a config against the schema
# --------------------------------------------------------------------------------------------

@functools.cache
def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def _is_schema(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp) or (
        _is_union(tp) and all(dataclasses.is_dataclass(a) for a in typing.get_args(tp)))


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _option(tp: Any, values: Mapping) -> type:
    """The dataclass of ``tp`` (or of the union ``tp``: the group option whose keys ``values``
    matches best, e.g. ``data.synth`` makes it the synthetic data option)."""
    if not _is_union(tp):
        return tp
    options = typing.get_args(tp)
    return max(options, key=lambda cls: (len(set(values) & set(_fields(cls))),
                                         -options.index(cls)))


def all_keys(cls: Any = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema (groups and leaves), e.g. ``train``, ``train.epochs``."""
    keys = []
    options = typing.get_args(cls) if _is_union(cls) else (cls,)
    for option in options:
        for name, (_, tp) in _fields(option).items():
            key = f"{prefix}{name}"
            if key not in keys:
                keys.append(key)
            if _is_schema(tp):
                keys += [k for k in all_keys(tp, f"{key}.") if k not in keys]
    return keys


def unknown_key(key: str, siblings: Iterable[str] = ()) -> ConfigError:
    """The error for a key the schema does not have, with the nearest valid key."""
    near = difflib.get_close_matches(key, all_keys(), n=1, cutoff=0.6)
    if near:
        hint = f"did you mean `{near[0]}`?"
    else:
        hint = f"valid keys here: {', '.join(siblings) or ', '.join(_fields(Config))}"
    return ConfigError(f"config key `{key}` is unknown (not in conf/); {hint}")


def _conforms(value: Any, tp: Any) -> bool:
    """Whether ``value`` has type ``tp`` (no conversion: ``"15"`` is not an int, nor True 1)."""
    if tp is Any:
        return True
    if _is_union(tp):
        return any(_conforms(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    origin = typing.get_origin(tp)
    if origin is Literal:
        return any(value == choice and type(value) is type(choice)
                   for choice in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_conforms(v, item) for v in value)
    if origin is dict:
        key_tp, item = typing.get_args(tp)
        return isinstance(value, dict) and all(
            _conforms(k, key_tp) and _conforms(v, item) for k, v in value.items())
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    if tp is str:
        return isinstance(value, str) and value.strip() != ""
    raise TypeError(f"schema type {tp!r} is not supported")  # a schema bug, not a user error


def _in_range(value: Any, meta: Mapping) -> bool:
    if isinstance(value, list):
        return all(_in_range(v, meta) for v in value)
    if isinstance(value, dict):
        return all(_in_range(v, meta) for v in value.values())
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return True
    ge, gt, le, lt = (meta.get(k) for k in ("ge", "gt", "le", "lt"))
    return ((ge is None or value >= ge) and (gt is None or value > gt)
            and (le is None or value <= le) and (lt is None or value < lt))


def _range_words(meta: Mapping) -> str:
    ge, gt, le, lt = (meta.get(k) for k in ("ge", "gt", "le", "lt"))
    if ge is not None and le is not None:
        return f" from {ge} to {le}"
    if gt is not None and lt is not None:
        return f" strictly between {gt} and {lt}"
    if ge is not None and lt is not None:
        return f" in [{ge}, {lt})"
    if gt is not None and le is not None:
        return f" in ({gt}, {le}]"
    words = [f"{op} {bound}" for op, bound in {">=": ge, ">": gt, "<=": le, "<": lt}.items()
             if bound is not None]
    return f" {words[0]}" if words else ""


def describe(tp: Any, meta: Mapping) -> str:
    """What a knob allows, in words (from its type and range, or its ``allowed`` text)."""
    if meta.get("allowed"):
        return meta["allowed"]
    if meta.get("check") and meta["check"][1]:
        return meta["check"][1]
    if _is_union(tp) and type(None) in typing.get_args(tp):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = " or ".join(describe(arg, {k: v for k, v in meta.items() if k != "none"})
                            for arg in rest)
        return f"null ({meta['none']}) or {inner}" if meta.get("none") else f"null or {inner}"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return ", ".join(str(c) for c in typing.get_args(tp))
    if origin is list:
        return f"a list of {describe(typing.get_args(tp)[0], meta)}"
    if origin is dict:
        return f"a mapping of names to {describe(typing.get_args(tp)[1], meta)}"
    base = {bool: "true or false", int: "an integer", float: "a number",
            str: "a non-empty string"}.get(tp, str(tp))
    return base + (_range_words(meta) if tp in (int, float) else "")


def _plain(values: Any) -> Any:
    if OmegaConf.is_config(values):
        return OmegaConf.to_container(values, resolve=True)
    if isinstance(values, Mapping):
        return {k: _plain(v) for k, v in values.items()}
    if isinstance(values, (list, tuple)):
        return [_plain(v) for v in values]
    return values


def _build(tp: Any, values: Any, prefix: str) -> Any:
    """The dataclass instance of ``values`` (a mapping), every field checked, defaults filled."""
    if not isinstance(values, Mapping):
        raise invalid(prefix.rstrip("."), values, f"a mapping of the keys of `{prefix[:-1]}` "
                      "(see conf/)")
    cls = _option(tp, values)
    fields = _fields(cls)
    for key in values:
        if key not in fields:
            other = [option for option in (typing.get_args(tp) if _is_union(tp) else ())
                     if key in _fields(option)]
            if other:
                raise ConfigError(f"config key `{prefix}{key}` belongs to {other[0].OPTION}, "
                                  f"not to {cls.OPTION} (the keys of `{prefix[:-1]}` say which "
                                  f"option it is); select {other[0].OPTION} or remove the key")
            raise unknown_key(f"{prefix}{key}", (f"{prefix}{name}" for name in fields))
    built = {}
    for name, (spec, ftp) in fields.items():
        key = f"{prefix}{name}"
        if name not in values:
            if not spec.metadata.get("late"):
                raise ConfigError(f"config key `{key}` is missing; add it to conf/ "
                                  "(see conf/config.yaml)")
            value = spec.default_factory() if spec.default is dataclasses.MISSING else spec.default
            built[name] = value
            continue
        value = values[name]
        if _is_schema(ftp):
            built[name] = _build(ftp, value, f"{key}.")
            continue
        meta = spec.metadata
        check = meta.get("check")
        if not (_conforms(value, ftp) and _in_range(value, meta)
                and (check is None or value is None or check[0](value))):
            raise invalid(key, value, describe(ftp, meta))
        built[name] = value
    return cls(**built)


def _as_dict(instance: Any) -> dict[str, Any]:
    return dataclasses.asdict(instance)


def validate_config(cfg: DictConfig | Mapping) -> DictConfig:
    """Check a composed config against the schema before any work starts.

    Returns
    -------
    DictConfig
        The same config as a plain ``DictConfig``, with the schema's default for each knob
        the config lacks (a params file written before the knob existed).

    Raises
    ------
    ConfigError
        Naming the first unknown, missing or invalid key, its value and what is allowed.
    """
    return OmegaConf.create(_as_dict(_build(Config, _plain(cfg), "")))


def check_section(name: str, values: DictConfig | Mapping) -> dict[str, Any]:
    """One group of the config (``"validation"``, ``"split"``, ...) checked by the schema.

    For functions that take a group's values rather than a whole config (their
    ``ConfigError`` names ``<name>.<key>``). Returns the values as plain Python, with the
    defaults of missing late knobs filled.
    """
    fields = _fields(Config)
    if name not in fields:
        raise unknown_key(name)
    return _as_dict(_build(fields[name][1], _plain(values), f"{name}."))


def schema_field(key: str) -> tuple[dataclasses.Field, Any]:
    """The dataclass field of a dotted key and its type (its ``metadata`` holds the range)."""
    cls: Any = Config
    parts = key.split(".")
    for index, part in enumerate(parts):
        options = typing.get_args(cls) if _is_union(cls) else (cls,)
        for option in options:
            fields = _fields(option)
            if part in fields:
                spec, tp = fields[part]
                break
        else:
            raise unknown_key(key)
        if index < len(parts) - 1:
            cls = tp
    return spec, tp


def default_of(key: str) -> Any:
    """The schema's default of a dotted key (``"train.lr_schedule"`` -> ``"constant"``)."""
    spec, _ = schema_field(key)
    if spec.default is not dataclasses.MISSING:
        return spec.default
    made = spec.default_factory()
    return _as_dict(made) if dataclasses.is_dataclass(made) else made


def _late_defaults(cls: Any = Config, prefix: str = "") -> dict[str, Any]:
    late = {}
    options = typing.get_args(cls) if _is_union(cls) else (cls,)
    for option in options:
        for name, (spec, tp) in _fields(option).items():
            if _is_schema(tp):
                late.update(_late_defaults(tp, f"{prefix}{name}."))
            elif spec.metadata.get("late"):
                late[f"{prefix}{name}"] = default_of(f"{prefix}{name}")
    return late


# The knobs a params file may lack (they came after the first runs), with the value each takes
# then: derived from the schema, not a second list. At these values a knob leaves the
# configuration id of a run unchanged (tracking.config_id).
LATE_KNOBS: dict[str, Any] = _late_defaults()
VARIANTS: tuple[str, ...] = typing.get_args(typing.get_type_hints(KaggleData)["variant"])
# The knobs that change the model or its training away from the paper's, and the paper's value
# of each (the schema's default): a run whose config has all of them trains as the paper did.
PAPER_KNOBS: dict[str, Any] = {key: default_of(key) for key in (
    "preprocess.color_mode", "model.padding", "model.batch_norm", "model.standardize",
    "model.kernel_initializer", "model.head", "train.augment", "train.class_weight",
    "train.early_stopping_patience", "train.lr_schedule", "train.lr_warmup_epochs",
    "train.ema_momentum", "train.label_smoothing", "train.weight_decay", "train.augment_dihedral",
    "evaluate.tta")}


def knob(cfg: DictConfig, key: str) -> Any:
    """The value of ``key`` in ``cfg``, or the schema's default when ``cfg`` lacks it (a config
    that did not go through :func:`validate_config`)."""
    return OmegaConf.select(cfg, key, default=default_of(key))


def hog_feature_length(image_size: int, pixels_per_cell: int, cells_per_block: int,
                       orientations: int) -> int:
    """Length of skimage's HOG vector for a square image (``feature_vector=True``)."""
    cells = image_size // pixels_per_cell
    blocks = cells - cells_per_block + 1
    return max(blocks, 0) ** 2 * cells_per_block**2 * orientations


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


# --------------------------------------------------------------------------------------------
# Finding, composing, loading and writing the config
# --------------------------------------------------------------------------------------------

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
    """Compose ``conf/config.yaml`` with Hydra overrides (``key=value`` strings).

    The result is not checked yet (see :func:`validate_config`); a key that is not in conf/
    (without ``+``) is refused here, with the nearest valid key.
    """
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


def load_params(path: str | Path = "params.yaml") -> DictConfig:
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


def write_params(cfg: DictConfig, path: str | Path = "params.yaml") -> Path:
    """Write ``cfg`` as plain YAML (what DVC's Hydra integration writes too)."""
    path = Path(path)
    data = OmegaConf.to_container(cfg, resolve=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None))
    return path


def write_config_check(cfg: DictConfig, root: Path, params: str | Path = "params.yaml") -> Path:
    """The ``check_config`` stage: ``cfg`` passed the schema; write the marker the other stages
    depend on. Its content does not depend on the knobs, so the stages after it re-run only
    for their own params."""
    target = Path(root) / cfg.paths.reports_dir / CONFIG_CHECK_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    # Atomic like fileio.write_json, without its numpy/pandas imports (2 s of a 3 s check).
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps({"params": Path(params).name, "valid": True}, indent=2) + "\n")
    os.replace(tmp, target)
    return target


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
