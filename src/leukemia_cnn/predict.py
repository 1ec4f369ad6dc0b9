"""``leukemia-cnn predict``: classify image files with a registered model (default: the
champion), printing or writing one row per image as CSV or JSON."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from leukemia_cnn.errors import DataError, LeukemiaCNNError
from leukemia_cnn.imaging import open_image
from leukemia_cnn.pyfunc import IMAGE_COLUMN
from leukemia_cnn.tracking import setup_mlflow


def default_model_uri(cfg: DictConfig) -> str:
    return f"models:/{cfg.mlflow.registered_model_name}@{cfg.mlflow.champion_alias}"


def read_images(paths: list[str]) -> pd.DataFrame:
    """Encoded bytes of each file, after checking it decodes (errors name the file)."""
    rows = []
    for path in paths:
        file = Path(path)
        if not file.is_file():
            raise DataError(f"{path}: no such file")
        open_image(file)  # raises DataError naming the file if it is not a readable image
        rows.append(file.read_bytes())
    return pd.DataFrame({IMAGE_COLUMN: rows})


def predict_files(model_uri: str, paths: list[str]) -> pd.DataFrame:
    """Load ``model_uri`` with MLflow and classify ``paths``; one row per file."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    images = read_images(paths)
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except MlflowException as exc:
        raise LeukemiaCNNError(f"could not load model {model_uri}: {exc.message}. Run `dvc repro` "
                               "(or `leukemia-cnn promote`) so that it exists") from exc
    result = model.predict(images)
    result.insert(0, "path", paths)
    return result


def main(cfg: DictConfig, root: Path, images: list[str], model_uri: str | None = None,
         fmt: str = "csv", output: str | None = None) -> pd.DataFrame:
    from leukemia_cnn.register import model_provenance

    setup_mlflow(cfg, root)
    model_uri = model_uri or default_model_uri(cfg)
    for line in model_provenance(cfg, root, model_uri):
        print(f"predict: {line}", file=sys.stderr)
    result = predict_files(model_uri, images)
    text = (result.to_json(orient="records", indent=2) + "\n" if fmt == "json"
            else result.to_csv(index=False, float_format="%.4f"))
    if output:
        Path(output).write_text(text)
        print(f"predict: wrote {len(result)} rows to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return result
