"""The config schema: one pydantic model per group of ``conf/``, one typed field per knob.

The only place where a knob is typed, ranged and defaulted (``conf/`` repeats the defaults
with the comments a user reads; ``tests/test_config.py`` checks they agree). Adding a knob: one
field ``name: type = setting(default, ...)`` in its group's model (a rule over several keys
goes in the model's ``model_validator``, raising :func:`invalid`) and its line in ``conf/``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, Discriminator, Tag, model_validator

from leukemia_cnn.config_shifts import AugmentConfig, RobustnessConfig
from leukemia_cnn.config_types import (
    Count,
    Knobs,
    Square,
    Text,
    check_spatial,
    group,
    hog_feature_length,
    invalid,
    setting,
)

# One range for both perceptual-hash distances (the split's grouping and the suite's check).
HASH_BITS = {"ge": 0, "le": 63}
FILE_STEM = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
FRACTION = "a fraction from 0 to 1"
OPEN_FRACTION = "a fraction strictly between 0 and 1"
SOURCE = "synthetic, kaggle, or the path of a Kaggle zip or image folder"
# How evaluate and the served model use the temperature fitted on val (modeling/calibration.py).
CALIBRATION_MODES = ("auto", "on", "off")
# The parts of an out-of-distribution guard (modeling/guard.py; config cannot import it).
GUARD_METHODS = ("mahalanobis", "knn", "energy", "input", "shift")


def _guard_parts(value: str) -> str:
    parts = value.split("+")
    if not all(part in GUARD_METHODS for part in parts) or len(set(parts)) != len(parts):
        raise ValueError("known, distinct guard methods")
    return value


GuardMethod = Annotated[str, AfterValidator(_guard_parts)]


def _as_text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# A sweep id: text, also when Hydra reads `sweep.id=3` as a number (it names runs by a tag).
SweepId = Annotated[Text, BeforeValidator(_as_text)]


class PathsConfig(Knobs):
    raw_dir: Text = setting("data/raw")
    manifest: Text = setting("data/manifest.csv")
    splits: Text = setting("data/splits.csv")
    preprocessed_dir: Text = setting("data/preprocessed")
    features_dir: Text = setting("data/features")
    model_dir: Text = setting("models")
    reports_dir: Text = setting("reports")


class DataBase(Knobs):
    OPTION: ClassVar[str] = ""
    source: Text = setting("synthetic", allowed=SOURCE)
    classes: list[Text] = setting(["Benign", "Early", "Pre", "Pro"])

    @model_validator(mode="after")
    def _distinct_classes(self) -> DataBase:
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise invalid("data.classes", self.classes, "at least two distinct class names")
        lowered = [name.lower() for name in self.classes]
        if len(set(lowered)) != len(lowered):
            raise invalid("data.classes", self.classes, "class names that differ other than "
                          "by case (folders are matched case-insensitively)")
        return self


class SynthConfig(Knobs):
    scale: float = setting(0.5, gt=0, allowed="a number > 0 (1.0 = the real class counts; "
                                              "`data synth --scale` overrides it)")
    seed: int = setting(2024, ge=0)
    image_size: int = setting(224, ge=32)
    jpeg_quality: int = setting(92, ge=1, le=95)
    class_counts: dict[Text, Count] = setting({"Benign": 504, "Early": 985, "Pre": 963,
                                               "Pro": 804})


class SyntheticData(DataBase):
    """``data=synthetic``: the built-in generator (``leukemia-cnn data synth``)."""

    OPTION: ClassVar[str] = "data=synthetic"
    synth: SynthConfig = group(SynthConfig)

    @model_validator(mode="after")
    def _one_count_per_class(self) -> SyntheticData:
        missing = [name for name in self.classes if name not in self.synth.class_counts]
        if missing:
            raise invalid("data.synth.class_counts", self.synth.class_counts,
                          f"one count per entry of data.classes {self.classes} "
                          f"(no count for {missing})")
        return self


class KaggleData(DataBase):
    """``data=kaggle``: the Kaggle archive (``leukemia-cnn data get``)."""

    OPTION: ClassVar[str] = "data=kaggle"
    source: Text = setting("kaggle", allowed=SOURCE)
    variant: Literal["Original", "Segmented"] = setting("Original")
    kaggle_dataset: Text = setting("mehradaria/leukemia",
                                   allowed="a Kaggle dataset slug, owner/name")
    skip_unknown_classes: bool = setting(False, late=True)


DATA_OPTIONS: tuple[type[DataBase], ...] = (SyntheticData, KaggleData)


def data_option(values: Mapping | BaseModel) -> type[DataBase]:
    """The data option whose keys ``values`` matches best (``data.synth``: synthetic)."""
    if isinstance(values, BaseModel):
        return type(values)
    keys = set(values) if isinstance(values, Mapping) else set()
    return max(DATA_OPTIONS, key=lambda cls: (len(keys & set(cls.model_fields)),
                                              -DATA_OPTIONS.index(cls)))


DataConfig = Annotated[
    Union[tuple(Annotated[cls, Tag(cls.OPTION)] for cls in DATA_OPTIONS)],  # noqa: UP007
    Discriminator(lambda values: data_option(values).OPTION)]


class ValidationConfig(Knobs):
    allowed_formats: list[Text] = setting(["JPEG", "PNG"], min_length=1, allowed=(
        "a non-empty list of PIL names, e.g. [JPEG, PNG]"))
    allowed_modes: list[Text] = setting(["RGB", "L"], min_length=1, allowed=(
        "a non-empty list of PIL modes, e.g. [RGB, L]"))
    min_width: int = setting(32, ge=0)
    max_width: int = setting(4096, ge=0)
    min_height: int = setting(32, ge=0)
    max_height: int = setting(4096, ge=0)
    min_images_per_class: int = setting(5, ge=0)
    min_class_share: float = setting(0.10, ge=0, le=1, allowed=FRACTION)
    max_class_share: float = setting(0.45, ge=0, le=1, allowed=FRACTION)
    max_total_bytes: int = setting(4_000_000_000, ge=1)
    max_files: int = setting(100_000, ge=1)
    max_image_pixels: int = setting(50_000_000, ge=1)
    split_size_tolerance: float = setting(0.02, ge=0, le=1, allowed=FRACTION)
    class_share_tolerance: float = setting(0.05, ge=0, le=1, allowed=FRACTION)
    near_duplicate_max_distance: int = setting(6, **HASH_BITS, allowed=(
        "an integer from 0 (identical perceptual hashes only) to 63 bits"))
    min_explained_variance: float = setting(0.0, ge=0, le=1, allowed=FRACTION)

    @model_validator(mode="after")
    def _min_below_max(self) -> ValidationConfig:
        for low, high in (("min_width", "max_width"), ("min_height", "max_height"),
                          ("min_class_share", "max_class_share")):
            if getattr(self, low) > getattr(self, high):
                raise invalid(f"validation.{low}/{high}",
                              [getattr(self, low), getattr(self, high)], "min <= max")
        return self


class SplitConfig(Knobs):
    train: float = setting(0.70, gt=0, lt=1, allowed=OPEN_FRACTION)
    val: float = setting(0.15, gt=0, lt=1, allowed=OPEN_FRACTION)
    test: float = setting(0.15, gt=0, lt=1, allowed=OPEN_FRACTION)
    seed: int = setting(42, ge=0)
    # conf/ sets it to ${validation.near_duplicate_max_distance}; a params file from before
    # the knob groups byte-identical copies only, as the split did then.
    near_duplicate_max_distance: int | None = setting(
        None, **HASH_BITS, late=True, none="byte-identical copies only",
        allowed="null (byte-identical copies only) or an integer from 0 to 63 bits")

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitConfig:
        ratios = {"train": self.train, "val": self.val, "test": self.test}
        total = sum(ratios.values())
        if abs(total - 1.0) > 1e-6:
            raise invalid("split.train/val/test", ratios,
                          f"fractions that sum to 1 (they sum to {total:.4f})")
        return self


class PreprocessConfig(Knobs):
    image_size: int = setting(100, ge=16)
    color_mode: Literal["grayscale", "rgb"] = setting("grayscale")
    # data/scale.py: every image's red cells to the train split's median size
    rescale: bool = setting(False, late=True)
    # data/stain.py: every image's colour to the train split's stain (Reinhard, L*a*b*)
    stain_normalize: bool = setting(False, late=True)
    # the train split also in RGB (train.npz `x_rgb`), for a grayscale model's stain jitter
    train_rgb: bool = setting(False, late=True)


class HogConfig(Knobs):
    orientations: int = setting(9, ge=1)
    pixels_per_cell: Square = setting([8, 8], allowed="two equal positive integers, e.g. [8, 8]")
    cells_per_block: Square = setting([2, 2], allowed="two equal positive integers, e.g. [2, 2]")
    block_norm: Literal["L1", "L1-sqrt", "L2", "L2-Hys"] = setting("L2-Hys")


class PcaConfig(Knobs):
    n_components: int = setting(100, ge=1)
    whiten: bool = setting(False)
    svd_solver: Literal["randomized", "full"] = setting("randomized", late=True)
    random_state: int = setting(0, ge=0, late=True)


class BaselineConfig(Knobs):
    C: float = setting(1.0, gt=0)
    max_iter: int = setting(2000, ge=1)


class FeaturesConfig(Knobs):
    hog: HogConfig = group(HogConfig)
    pca: PcaConfig = group(PcaConfig)
    baseline: BaselineConfig = group(BaselineConfig)
    n_jobs: int = setting(2, ge=1)


class ModelConfig(Knobs):
    name: Text = setting("paper_cnn")
    filters: list[Count] = setting([64, 32, 128], min_length=1, allowed=(
        "a non-empty list of positive integers (one per conv layer)"))
    kernel_sizes: list[Count] = setting([5, 5, 3])
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

    @model_validator(mode="after")
    def _one_kernel_per_layer(self) -> ModelConfig:
        if len(self.kernel_sizes) != len(self.filters):
            raise invalid("model.kernel_sizes", self.kernel_sizes,
                          f"a list of {len(self.filters)} positive integers (one per entry of "
                          "model.filters)")
        return self


class TrainConfig(Knobs):
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
    # The served model's compute precision (modeling/precision.py), resolved where it is loaded.
    inference_precision: Literal["auto", "float32", "bfloat16"] = setting(
        "auto", late=True, allowed=("auto (bfloat16 only on a CPU with AVX512-BF16 or AMX "
                                    "units), float32 or bfloat16"))
    distribute: Literal["mirrored"] | None = setting(None, late=True, allowed=(
        "null (one device) or mirrored (tf.distribute.MirroredStrategy over all GPUs)"))
    calibration: Literal[CALIBRATION_MODES] = setting("auto", late=True)
    # The out-of-distribution guard (modeling/guard.py), fit with the model.
    guard_method: GuardMethod = setting("mahalanobis+input", late=True, allowed=(
        "one of mahalanobis, knn, energy, input, shift, or several joined by '+' "
        "(e.g. mahalanobis+input)"))
    guard_accept_rate: float = setting(0.95, gt=0, le=1, late=True, allowed=(
        "the share of validation images the guard accepts, in (0, 1], e.g. 0.95"))

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainConfig:
        if self.lr_warmup_epochs >= self.epochs:
            raise invalid("train.lr_warmup_epochs", self.lr_warmup_epochs,
                          f"an integer from 0 (none) to train.epochs - 1 ({self.epochs - 1})")
        if self.lr_warmup_epochs and self.lr_schedule == "plateau":
            raise invalid("train.lr_warmup_epochs", self.lr_warmup_epochs,
                          "0 with train.lr_schedule=plateau (the plateau callback sets the "
                          "rate itself)")
        return self


class EvaluateConfig(Knobs):
    ece_bins: int = setting(15, ge=1, late=True)
    gradcam_per_class: int = setting(2, ge=0, late=True,
                                     allowed="an integer >= 0 (0: no Grad-CAM grid)")
    tta: bool = setting(False, late=True)


class MlflowConfig(Knobs):
    tracking_uri: Text | None = setting(
        None, none="the embedded store sqlite:///<repo>/mlflow.db")
    experiment_name: Text = setting("leukemia-cnn")
    registered_model_name: Text = setting("leukemia-cnn")
    champion_alias: Text = setting("champion")


# `register` is also ABCMeta's method on every model class: the knob name wins (the class
# attribute is never used), so pydantic's warning about it is silenced.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "register"')

    class SweepConfig(Knobs):
        id: SweepId | None = setting(None, late=True, none="the sweep command makes one")
        experiment: Text | None = setting(None, late=True)
        register: bool = setting(True, late=True)
        tf_threads: int | None = setting(None, ge=1, late=True, none="TensorFlow's default")


class ReportConfig(Knobs):
    sweep_ids: list[SweepId] = setting([], late=True, allowed=(
        "a list of sweep ids (the sweep_id tag); [] = every sweep run of the experiment"))
    name: str = setting("table1", late=True, pattern=FILE_STEM, allowed=(
        "a file stem: letters, digits, '_', '-' or '.', starting with a letter or digit "
        "(e.g. `leukemia-cnn report --name spread`)"))
    confidence: float = setting(0.95, gt=0, lt=1, late=True,
                                allowed="a number strictly between 0 and 1, e.g. 0.95")
    sample_images: bool = setting(True, late=True)


# drift: `leukemia-cnn drift` (monitoring/drift.py), new images against the training data
class DriftConfig(Knobs):
    alpha: float = setting(0.05, gt=0, lt=1, late=True, allowed=OPEN_FRACTION + ", e.g. 0.05")
    correction: Literal["bh", "bonferroni"] = setting("bh", late=True, allowed=(
        "bh (Benjamini-Hochberg: false discovery rate) or bonferroni (family-wise error)"))
    max_flagged_share: float = setting(0.15, ge=0, le=1, late=True, allowed=FRACTION)
    reference_images: int | None = setting(None, ge=10, late=True, none="every train image",
                                           allowed="null (every train image) or an integer "
                                                   ">= 10")
    min_images: int = setting(20, ge=1, late=True)
    max_files: int = setting(10_000, ge=1, late=True)


class Config(Knobs):
    """The whole composed config (``conf/config.yaml``): one field per group, then ``seed``."""

    paths: PathsConfig = group(PathsConfig)
    data: DataConfig = group(SyntheticData)
    validation: ValidationConfig = group(ValidationConfig)
    split: SplitConfig = group(SplitConfig)
    preprocess: PreprocessConfig = group(PreprocessConfig)
    features: FeaturesConfig = group(FeaturesConfig)
    model: ModelConfig = group(ModelConfig)
    train: TrainConfig = group(TrainConfig)
    augment: AugmentConfig = group(AugmentConfig, late=True)
    evaluate: EvaluateConfig = group(EvaluateConfig, late=True)
    mlflow: MlflowConfig = group(MlflowConfig)
    sweep: SweepConfig = group(SweepConfig, late=True)
    report: ReportConfig = group(ReportConfig, late=True)
    drift: DriftConfig = group(DriftConfig, late=True)
    robustness: RobustnessConfig = group(RobustnessConfig, late=True)
    seed: int = setting(42, ge=0)

    @model_validator(mode="after")
    def _fits_the_image(self) -> Config:
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
        check_spatial(size, self.model.kernel_sizes, self.model.padding, self.model.pool_size)
        if (self.augment.stain and self.preprocess.color_mode == "grayscale"
                and not self.preprocess.train_rgb):
            raise invalid("preprocess.train_rgb", self.preprocess.train_rgb,
                          "true when augment.stain > 0 on a grayscale model (a stain jitter "
                          "needs the colour of the training images)")
        return self
