"""A fitted out-of-distribution guard as data, its file ``guard.npz`` and its run record, and
the trained model beside it (:func:`load_trained`); :mod:`leukemia_cnn.modeling.guard` fits and
scores guards and re-exports these names."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from leukemia_cnn.errors import DataError

GUARD_FILE = "guard.npz"


@dataclass
class Guard:
    """A fitted guard: its method, threshold and the statistics each part scores against."""

    method: str
    threshold: float
    accept_rate: float
    val_accept_rate: float = float("nan")
    train_accept_rate: float = float("nan")
    # part name -> arrays (means and whitener, references, or last-layer weights)
    parts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    # part name -> the part's val score at the accept rate (divides it in a combination)
    scales: dict[str, float] = field(default_factory=dict)
    # the precision of the network whose embeddings set ``threshold`` and ``scales``
    precision: str = "float32"
    # another precision -> {"threshold", "scales", "val_accept_rate"} set on val embeddings
    # computed in it (:func:`calibrate_precision`)
    calibrations: dict[str, dict] = field(default_factory=dict)

    @property
    def components(self) -> list[str]:
        return self.method.split("+")

    @property
    def degenerate(self) -> list[str]:
        """The parts fitted on training samples without spread (a collapsed network's constant
        embedding): they answer, through a regularised covariance, but tell little apart."""
        return [name for name, part in self.parts.items() if "degenerate" in part]

    def in_precision(self, precision: str) -> Guard | None:
        """This guard with the threshold and scales set for a network computing in
        ``precision``; None when it was not calibrated for it (a guard saved before)."""
        if precision == self.precision:
            return self
        calibration = self.calibrations.get(precision)
        if calibration is None:
            return None
        return replace(self, precision=precision, threshold=float(calibration["threshold"]),
                       scales={k: float(v) for k, v in calibration["scales"].items()},
                       val_accept_rate=float(calibration["val_accept_rate"]),
                       train_accept_rate=float("nan"), calibrations={})


@dataclass
class GuardResult:
    """What :func:`score_images` returns, one entry per image."""

    ood_score: np.ndarray
    in_distribution: np.ndarray
    probabilities: np.ndarray


def summary(guard: Guard) -> dict:
    """The guard's method, threshold and measured rates (logged to the training run), and
    its threshold and val rate in the other precision (``guard_threshold_bfloat16``, ...)."""
    record = {"guard_method": guard.method, "guard_threshold": guard.threshold,
              "guard_accept_rate": guard.accept_rate,
              "guard_val_accept_rate": guard.val_accept_rate,
              "guard_train_accept_rate": guard.train_accept_rate}
    for precision, calibration in guard.calibrations.items():
        record[f"guard_threshold_{precision}"] = float(calibration["threshold"])
        record[f"guard_val_accept_rate_{precision}"] = float(calibration["val_accept_rate"])
    if guard.degenerate:
        record["guard_degenerate"] = "+".join(guard.degenerate)
    return record


def save_guard(guard: Guard, path: Path) -> Path:
    """Write ``guard`` as one ``.npz`` (arrays, and its settings as JSON; no pickle)."""
    from leukemia_cnn.fileio import save_npz

    meta = {f.name: getattr(guard, f.name) for f in fields(guard) if f.name != "parts"}
    arrays = {f"{name}/{key}": value for name, part in guard.parts.items()
              for key, value in part.items()}
    save_npz(Path(path), meta=np.array(json.dumps(meta)), **arrays)
    return Path(path)


def load_guard(path: Path, precision: str = "float32") -> Guard:
    """Read a guard :func:`save_guard` wrote; a DataError names a missing or broken file.
    ``precision``: the guard's own for a file saved before it was recorded (that of the
    network it was saved beside)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            parts: dict[str, dict[str, np.ndarray]] = {}
            for key in data.files:
                if key != "meta":
                    name, _, array = key.partition("/")
                    parts.setdefault(name, {})[array] = data[key]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a readable guard file ({exc}); re-run the train stage "
                        "(`dvc repro train`)") from exc
    rates = {key: float(meta[key])
             for key in ("threshold", "accept_rate", "val_accept_rate", "train_accept_rate")}
    return Guard(method=meta["method"], **rates, parts=parts,
                 scales={k: float(v) for k, v in meta["scales"].items()},
                 precision=str(meta.get("precision", precision)),
                 calibrations=dict(meta.get("calibrations", {})))


def load_trained(model_dir: Path) -> tuple[dict, object, Guard | None]:
    """What the train stage left in ``model_dir``: its record (``run.json``), the Keras model
    and its guard (None for a model trained before the guard); a DataError before train ran."""
    import keras

    run_file = model_dir / "run.json"
    if not run_file.is_file():
        raise DataError(f"{run_file} not found; run the train stage first (`dvc repro train`)")
    guard_file = model_dir / GUARD_FILE
    return (json.loads(run_file.read_text()),
            keras.saving.load_model(model_dir / "cnn.keras", compile=False),
            load_guard(guard_file) if guard_file.is_file() else None)
