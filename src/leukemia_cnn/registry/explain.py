"""``leukemia-cnn explain IMG...``: per image, ``<stem>_gradcam.png``, the original image with
the heatmap of the evidence for the class a registered model (default: the champion)
predicts; the maps come from :mod:`leukemia_cnn.modeling.gradcam`. Outputs go only into the
output folder and never replace an input."""

from __future__ import annotations

import sys
from pathlib import Path

from leukemia_cnn.data.filekinds import describe_missing, special_kind
from leukemia_cnn.data.imaging import open_image
from leukemia_cnn.errors import DataError, LeukemiaCNNError

OUTPUT_SUFFIX = "_gradcam.png"


def output_paths(images: list[str], output_dir: Path) -> list[Path]:
    """``<output_dir>/<image stem>_gradcam.png`` per image (``-2``, ``-3`` ... for repeated
    stems). Refuses a name that is one of the input images: an explanation never replaces
    its input."""
    output_dir = Path(output_dir).resolve()
    inputs = {Path(p).resolve() for p in images}
    taken: set[str] = set()
    paths = []
    for image in images:
        stem, number = Path(image).stem, 1
        name = f"{stem}{OUTPUT_SUFFIX}"
        while name in taken:
            number += 1
            name = f"{stem}-{number}{OUTPUT_SUFFIX}"
        taken.add(name)
        target = output_dir / name
        if target in inputs:
            raise LeukemiaCNNError(f"{target} is one of the input images; explain would "
                                   "overwrite it. Pick another --output folder")
        paths.append(target)
    return paths


def load_explainer(model_uri: str):
    """The pyfunc wrapper (:class:`leukemia_cnn.modeling.pyfunc.LeukemiaCNNModel`) of ``model_uri``."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    except MlflowException as exc:
        raise LeukemiaCNNError(f"could not load model {model_uri}: {exc.message}. Run `dvc repro` "
                               "(or `leukemia-cnn promote`) so that it exists") from exc


def run(cfg, root: Path, images: list[str], model_uri: str | None = None,
         output: str | None = None) -> list[dict]:
    """``leukemia-cnn explain``: write a Grad-CAM overlay per image; print one line each."""
    from leukemia_cnn.fileio import atomic_write
    from leukemia_cnn.registry.predict import default_model_uri
    from leukemia_cnn.tracking.store import setup_mlflow

    output_dir = Path(output) if output else root / cfg.paths.reports_dir / "explain"
    targets = output_paths(images, output_dir)
    decoded = []
    for path in images:
        if not Path(path).is_file() or special_kind(Path(path)):
            raise DataError(describe_missing(path))  # a FIFO, a folder, a broken link, ...
        decoded.append(open_image(Path(path)))
    setup_mlflow(cfg, root)
    uri = model_uri or default_model_uri(cfg)
    wrapper = load_explainer(uri)
    results = wrapper.explain(decoded)
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for path, target, result in zip(images, targets, results, strict=True):
        atomic_write(target, lambda tmp, r=result: r["overlay"].save(tmp, format="PNG"))
        name = wrapper.classes[result["class_index"]]
        probability = float(result["probabilities"][result["class_index"]])
        print(f"{path}: {name} (p {probability:.3f}) -> {target}")
        rows.append({"path": path, "predicted_class": name, "probability": probability,
                     "heatmap_file": str(target)})
    print(f"explain: {len(rows)} heatmaps from {uri} in {output_dir}", file=sys.stderr)
    return rows
