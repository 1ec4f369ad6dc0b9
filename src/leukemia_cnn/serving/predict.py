"""``leukemia-cnn predict``: classify image files with a registered model (default: the
champion), printing or writing one row per image as CSV or JSON.

A batch survives bad files: every readable image is classified, each unreadable one is named
on stderr with its reason and gets a row whose ``error`` column says why (empty class and
probabilities); the command then exits 1 so that scripts notice. Every row also says whether
to trust its class (``in_distribution``, ``ood_score``: docs/predictions.md).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import get_model_info

from leukemia_cnn.config_schema import Config
from leukemia_cnn.console import terminal_safe
from leukemia_cnn.data.imaging import image_pixels, open_image
from leukemia_cnn.errors import DataError, LeukemiaCNNError
from leukemia_cnn.fileio import STDOUT, check_output, write_text
from leukemia_cnn.serving.pyfunc import ERROR_COLUMN, IMAGE_COLUMN, IN_DISTRIBUTION_COLUMN
from leukemia_cnn.tracking.store import setup_mlflow, sqlite_path, tracking_uri

PREDICT_OUTPUT = "predict"  # whose record marks a prediction table (fileio.record_output)
# The first characters that make a spreadsheet read a CSV cell as a formula (OWASP).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


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
    why = exc.message if isinstance(exc, MlflowException) else f"{type(exc).__name__}: {exc}"
    why = " ".join(str(why).split())[:300]
    return LeukemiaCNNError(f"could not load model {model_uri}: {why}. Check the URI, or run "
                            "`dvc repro` (or `leukemia-cnn promote`) so that the model exists")


NOT_OURS = ("is not a leukemia-cnn image model; pass a model logged by `leukemia-cnn train` "
            "(models:/leukemia-cnn@champion, models:/leukemia-cnn/N or its runs:/RUN_ID/"
            "leukemia-cnn)")


def check_model_kind(model_uri: str) -> None:
    """Refuse a model that is not the project's image model by its ``MLmodel`` file alone,
    before any of its code runs: MLflow runs a model's loader (and unpickles its Python
    class) when it loads it, so a scikit-learn model or a folder whose ``MLmodel`` names its
    own loader module is refused here. (Loading any model runs its code: use trusted stores.)
    """
    try:
        flavors = get_model_info(model_uri).flavors
    except Exception as exc:  # noqa: BLE001 - MLflow, HTTP, YAML, file system: one line
        raise model_load_error(model_uri, exc) from exc
    pyfunc = flavors.get("python_function") or {}
    loader = pyfunc.get("loader_module")
    # What MLflow calls to load the project's model (a pyfunc PythonModel); any other loader
    # (mlflow.sklearn for the HOG + PCA baseline, a module named in MLmodel) is not this model.
    if loader != "mlflow.pyfunc.model" or "python_model" not in pyfunc:
        kinds = ", ".join(name for name in flavors if name != "python_function") or "none"
        raise LeukemiaCNNError(f"model {model_uri} {NOT_OURS}: its MLmodel names the loader "
                               f"{loader or 'none'} (flavours: {kinds}); it was not loaded")


def classify(model, model_uri: str, images: pd.DataFrame) -> pd.DataFrame:
    """``model.predict(images)``, every failure of a model that does not take image files
    (MLflow's schema check, an exception of its own, answers without a class) one line."""
    try:
        answers = model.predict(images)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a foreign model raises
        why = exc.message if isinstance(exc, MlflowException) else f"{type(exc).__name__}: {exc}"
        raise LeukemiaCNNError(f"model {model_uri} could not classify image files "
                               f"({' '.join(str(why).split())[:200]}); it {NOT_OURS}") from exc
    if not isinstance(answers, pd.DataFrame) or "predicted_class" not in answers.columns:
        raise LeukemiaCNNError(f"model {model_uri} answered without a `predicted_class` "
                               f"column; it {NOT_OURS}")
    return answers


def read_images(paths: list[str]) -> pd.DataFrame:
    """Encoded bytes of each file, after checking it decodes (errors name the file)."""
    rows = []
    for path in paths:
        reason = unreadable(path)
        if reason is not None:
            raise DataError(reason)
        rows.append(Path(path).read_bytes())
    return pd.DataFrame({IMAGE_COLUMN: rows})


def predict_files(model_uri: str, paths: list[str]) -> pd.DataFrame:
    """Load ``model_uri`` with MLflow and classify ``paths``; one row per file, in order.

    Unreadable files are skipped: their row has the reason in column ``error`` and no class
    or probabilities. When no file is readable, a DataError names each one and the model is
    not loaded.
    """
    reasons = {path: unreadable(path) for path in dict.fromkeys(paths)}
    readable = [path for path in paths if reasons[path] is None]
    if not readable:
        raise DataError("no readable image to classify: "
                        + "; ".join(reason for reason in reasons.values() if reason))
    images = read_images(readable)
    check_model_kind(model_uri)
    # Loaded from a private copy: given a models:/ URI on a local store, MLflow would write
    # a `registered_model_meta` file into the store's artifacts, which predict does not own.
    with tempfile.TemporaryDirectory(prefix="leukemia-cnn-model-") as copy:
        try:
            model = mlflow.pyfunc.load_model(model_uri, dst_path=copy)
        except Exception as exc:  # noqa: BLE001 - MLflow, HTTP, file system: one line for all
            raise model_load_error(model_uri, exc) from exc
        precision = getattr(model.unwrap_python_model(), "precision", "float32")
        print(f"predict: computing in {precision}", file=sys.stderr)
        classified = pd.concat([classify(model, model_uri, batch) for batch in batches(images)],
                               ignore_index=True)
    classified.insert(0, "path", readable)
    if ERROR_COLUMN in classified.columns:  # a row the model could not decode, by its path
        reasons.update({path: re.sub(r"^row \d+: ", f"{path}: ", error) for path, error in
                        zip(readable, classified[ERROR_COLUMN], strict=True) if isinstance(error, str)})
        classified = classified.drop(columns=ERROR_COLUMN)
    rows = pd.DataFrame({"path": paths})
    result = rows.merge(classified.drop_duplicates("path"), on="path", how="left")
    result[ERROR_COLUMN] = [reasons[path] for path in paths]
    return result


def batches(images: pd.DataFrame) -> list[pd.DataFrame]:
    """``images`` in requests of at most the served model's pixel cap each
    (:data:`leukemia_cnn.serving.payload.MAX_REQUEST_PIXELS`): a file is never refused for
    the company it came in, and at most one request's images are decoded at a time."""
    from leukemia_cnn.serving.payload import MAX_REQUEST_PIXELS  # read at call time (tests set it)

    starts, total = [0], 0
    for index, data in enumerate(images[IMAGE_COLUMN]):
        pixels = image_pixels(data) or 0
        if total + pixels > MAX_REQUEST_PIXELS and index > starts[-1]:
            starts.append(index)
            total = 0
        total += pixels
    return [images.iloc[start:end].reset_index(drop=True)
            for start, end in zip(starts, [*starts[1:], len(images)], strict=True)]


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell a spreadsheet would run as a formula (one that begins
    with :data:`FORMULA_START`: an image named ``=HYPERLINK(...).jpg``) prefixed with an
    apostrophe, as OWASP advises for CSV. Numbers (a negative ``ood_score``) stay."""
    def escape(value):
        return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_START) else value

    safe = frame.copy()
    for name in safe.columns:
        if safe[name].dtype == object or pd.api.types.is_string_dtype(safe[name]):
            safe[name] = safe[name].map(escape)
    return safe


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

    target = None
    if output is not None and output != STDOUT:  # a new file or one predict wrote (check_output)
        target = check_output(output, kind="file", root=root, flag="--output",
                              owner=PREDICT_OUTPUT, inputs=images,
                              instead="Pass --output with a new file name (e.g. predictions.csv), "
                                      "or - (or nothing) to print the rows")
    model_uri = default_model_uri(cfg) if model_uri is None else check_model_uri(model_uri)
    check_store(cfg, root)
    setup_mlflow(cfg, root, read_only=True)
    for line in model_provenance(cfg, root, model_uri):
        print(f"predict: {line}", file=sys.stderr)
    result = predict_files(model_uri, images)
    for reason in result[ERROR_COLUMN].dropna():
        print(f"predict: skipped {terminal_safe(reason)}", file=sys.stderr)
    result = report_flagged(result, reject_unfamiliar)
    text = (result.to_json(orient="records", indent=2) + "\n" if fmt == "json"
            else spreadsheet_safe(result).to_csv(index=False, float_format="%.4f"))
    if target is not None:
        write_text(target, text, owner=PREDICT_OUTPUT)
        print(f"predict: wrote {len(result)} rows to {terminal_safe(output)}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return result
