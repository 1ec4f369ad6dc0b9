"""``leukemia-cnn predict``: classify image files with a registered model (default: the
champion), printing or writing one row per image as CSV or JSON.

A batch survives bad files: every readable image is classified, each unreadable one is named
on stderr with its reason and gets a row whose ``error`` column says why (empty class and
probabilities); the command then exits 1 so that scripts notice.

Every row also says whether to trust its class: ``in_distribution`` (the model's
out-of-distribution guard accepts the image) and ``ood_score`` (higher = less like the training
images; accepted when at most the guard's threshold). The count of flagged images goes to
stderr; with ``reject_unfamiliar`` a flagged image gets no class or probabilities.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.imaging import open_image
from leukemia_cnn.errors import DataError, LeukemiaCNNError
from leukemia_cnn.fileio import check_output, write_text
from leukemia_cnn.serving.pyfunc import IMAGE_COLUMN, IN_DISTRIBUTION_COLUMN
from leukemia_cnn.tracking.store import setup_mlflow, sqlite_path, tracking_uri

# The column naming why an image was skipped (empty for a classified image).
ERROR_COLUMN = "error"
PREDICT_OUTPUT = "predict"  # whose record marks a prediction table (fileio.record_output)


def default_model_uri(cfg: Config) -> str:
    return f"models:/{cfg.mlflow.registered_model_name}@{cfg.mlflow.champion_alias}"


def unreadable(path: str) -> str | None:
    """Why ``path`` cannot be classified (naming the file), or None when it is a readable image."""
    file = Path(path)
    if not file.exists():
        return f"{path}: no such file"
    if not file.is_file():
        return f"{path}: not a file"
    try:
        open_image(file)
    except DataError as exc:
        return str(exc)
    return None


def model_load_error(model_uri: str, exc: Exception) -> LeukemiaCNNError:
    """One line for a model that could not be loaded, whatever failed (MLflow, HTTP, disk)."""
    from mlflow.exceptions import MlflowException

    why = exc.message if isinstance(exc, MlflowException) else f"{type(exc).__name__}: {exc}"
    why = " ".join(str(why).split())[:300]
    return LeukemiaCNNError(f"could not load model {model_uri}: {why}. Check the URI, or run "
                            "`dvc repro` (or `leukemia-cnn promote`) so that the model exists")


def read_images(paths: list[str]) -> pd.DataFrame:
    """Encoded bytes of each file, after checking it decodes (errors name the file)."""
    rows = []
    for path in paths:
        reason = unreadable(path)
        if reason is not None:
            raise DataError(reason)
        rows.append(Path(path).read_bytes())
    return pd.DataFrame({IMAGE_COLUMN: rows})


def served_precision(model) -> str:
    """``float32`` or ``bfloat16``: what a loaded pyfunc model computes in
    (``train.inference_precision`` resolved on this machine; float32 for other models)."""
    return str(getattr(model.unwrap_python_model(), "precision", "float32"))


def predict_files(model_uri: str, paths: list[str]) -> pd.DataFrame:
    """Load ``model_uri`` with MLflow and classify ``paths``; one row per file, in order.

    Unreadable files are skipped: their row has the reason in column ``error`` and no class
    or probabilities. When no file is readable, a DataError names each one and the model is
    not loaded.
    """
    import mlflow.pyfunc

    reasons = {path: unreadable(path) for path in dict.fromkeys(paths)}
    readable = [path for path in paths if reasons[path] is None]
    if not readable:
        raise DataError("no readable image to classify: "
                        + "; ".join(reason for reason in reasons.values() if reason))
    images = read_images(readable)
    # Loaded from a private copy: given a models:/ URI on a local store, MLflow would write
    # a `registered_model_meta` file into the store's artifacts, which predict does not own.
    with tempfile.TemporaryDirectory(prefix="leukemia-cnn-model-") as copy:
        try:
            model = mlflow.pyfunc.load_model(model_uri, dst_path=copy)
        except Exception as exc:  # noqa: BLE001 - MLflow, HTTP, file system: one line for all
            raise model_load_error(model_uri, exc) from exc
        print(f"predict: computing in {served_precision(model)}", file=sys.stderr)
        classified = model.predict(images)
    classified.insert(0, "path", readable)
    rows = pd.DataFrame({"path": paths})
    result = rows.merge(classified.drop_duplicates("path"), on="path", how="left")
    result[ERROR_COLUMN] = [reasons[path] for path in paths]
    return result


def check_prediction_output(output: str, root: Path, images: list[str]) -> Path:
    """The guard of ``--output`` (relative: to the current folder): a new file or one an
    earlier ``predict`` wrote and nobody edited since (its record, not its content, says so);
    never an input image, a tracked file or a folder (see
    :func:`leukemia_cnn.fileio.check_output`)."""
    return check_output(output, kind="file", root=root, flag="--output", owner=PREDICT_OUTPUT,
                        inputs=images,
                        instead="Pass --output with a new file name (e.g. predictions.csv) or "
                                "leave it out to print the rows")


def flagged_rows(result: pd.DataFrame) -> pd.Series:
    """True for each classified image the guard flagged (``in_distribution`` false)."""
    return result[IN_DISTRIBUTION_COLUMN].eq(False)  # a skipped image's NaN is not flagged


def report_flagged(result: pd.DataFrame, reject_unfamiliar: bool) -> pd.DataFrame:
    """Print how many images the guard flagged; with ``reject_unfamiliar`` blank their class
    and probabilities (their ``ood_score`` and ``in_distribution`` stay)."""
    flagged = flagged_rows(result)
    classified = int(result[ERROR_COLUMN].isna().sum())
    print(f"predict: {int(flagged.sum())} of {classified} images flagged as unlike the training "
          f"images ({IN_DISTRIBUTION_COLUMN} false)"
          + ("; their class is left empty (--reject-unfamiliar)" if reject_unfamiliar
             and flagged.any() else ""), file=sys.stderr)
    if reject_unfamiliar and flagged.any():
        result = result.copy()
        answer = ["predicted_class", *(c for c in result.columns if c.startswith("p_"))]
        result[answer] = result[answer].astype(object)
        result.loc[flagged, answer] = None
    return result


def check_model_uri(model_uri: str, flag: str = "--model-uri") -> str:
    """Refuse a model URI that cannot name a model before anything is loaded or copied: an
    empty one, or a local path (``file:`` or plain) that is not a folder holding an ``MLmodel``
    file (``file:///etc`` would be copied whole before MLflow fails)."""
    if not model_uri.strip():
        raise LeukemiaCNNError(f"{flag} is empty; leave it out to use the champion")
    parsed = urlparse(model_uri)
    if parsed.scheme in ("models", "runs") or (parsed.scheme and parsed.scheme != "file"):
        return model_uri
    folder = Path(unquote(parsed.path) if parsed.scheme == "file" else model_uri).expanduser()
    if not (folder / "MLmodel").is_file():
        raise LeukemiaCNNError(f"{flag} {model_uri}: {folder} is not an MLflow model folder (no "
                               "MLmodel file); give models:/NAME@ALIAS, runs:/RUN_ID/model or "
                               "a folder holding an MLmodel file")
    return model_uri


def check_store(cfg: Config, root: Path) -> None:
    """Refuse to read from an embedded MLflow store that does not exist (MLflow would create
    an empty ``mlflow.db`` in whatever folder the command runs from)."""
    path = sqlite_path(tracking_uri(cfg, root))
    if path is not None and not path.is_file():
        raise LeukemiaCNNError(f"no MLflow store at {path}: run this in the project, pass "
                               "--params <project>/params.yaml, or set MLFLOW_TRACKING_URI")


def run(cfg: Config, root: Path, images: list[str], model_uri: str | None = None,
         fmt: str = "csv", output: str | None = None,
         reject_unfamiliar: bool = False) -> pd.DataFrame:
    """``leukemia-cnn predict``; returns the rows (column ``error`` marks skipped images,
    ``in_distribution`` false the images the guard flagged)."""
    from leukemia_cnn.registry.provenance import model_provenance

    target = check_prediction_output(output, root, images) if output else None
    model_uri = default_model_uri(cfg) if model_uri is None else check_model_uri(model_uri)
    check_store(cfg, root)
    setup_mlflow(cfg, root)
    for line in model_provenance(cfg, root, model_uri):
        print(f"predict: {line}", file=sys.stderr)
    result = predict_files(model_uri, images)
    for reason in result[ERROR_COLUMN].dropna():
        print(f"predict: skipped {reason}", file=sys.stderr)
    result = report_flagged(result, reject_unfamiliar)
    text = (result.to_json(orient="records", indent=2) + "\n" if fmt == "json"
            else result.to_csv(index=False, float_format="%.4f"))
    if target is not None:
        write_text(target, text, owner=PREDICT_OUTPUT)
        print(f"predict: wrote {len(result)} rows to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return result
