"""``leukemia-cnn explain IMG...``: per image, ``<stem>_gradcam.png``, the original image with
the heatmap of the evidence for the class a registered model (default: the champion)
predicts; the maps come from :mod:`leukemia_cnn.modeling.gradcam`. Each line (and row) also
says whether the model's out-of-distribution guard accepts the image (``in_distribution``,
``ood_score``): a heatmap of an image unlike the training data explains an answer not to
trust. Outputs go only into the output folder and never replace an input."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from leukemia_cnn.console import terminal_safe
from leukemia_cnn.data.filekinds import describe_missing, special_kind
from leukemia_cnn.data.imaging import open_image, to_model_input
from leukemia_cnn.errors import DataError, LeukemiaCNNError
from leukemia_cnn.fileio import atomic_write, check_output, mark_output

OUTPUT_SUFFIX = "_gradcam.png"
EXPLAIN_OUTPUT = "explain"  # the marker of its output folder, the record of its heatmaps


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


def load_explainer(model_uri: str, copy: str | Path | None = None):
    """The pyfunc wrapper (:class:`leukemia_cnn.serving.pyfunc.LeukemiaCNNModel`) of
    ``model_uri``, loaded from a private copy in ``copy`` when given (MLflow would otherwise
    write a ``registered_model_meta`` file into the store's artifacts)."""
    import mlflow.pyfunc

    from leukemia_cnn.serving.predict import NOT_OURS, check_model_kind, model_load_error
    from leukemia_cnn.serving.pyfunc import LeukemiaCNNModel

    check_model_kind(model_uri)
    try:
        wrapper = mlflow.pyfunc.load_model(model_uri, dst_path=copy).unwrap_python_model()
    except Exception as exc:  # noqa: BLE001 - MLflow, HTTP, file system: one line for all
        raise model_load_error(model_uri, exc) from exc
    if not isinstance(wrapper, LeukemiaCNNModel):
        raise LeukemiaCNNError(f"model {model_uri} {NOT_OURS}: it is a "
                               f"{type(wrapper).__name__}, with no Grad-CAM to explain")
    return wrapper


def run(cfg, root: Path, images: list[str], model_uri: str | None = None,
         output: str | None = None) -> list[dict]:
    """``leukemia-cnn explain``: write a Grad-CAM overlay per image; print one line each."""
    from leukemia_cnn.serving.predict import check_model_uri, check_store, default_model_uri
    from leukemia_cnn.serving.pyfunc import IN_DISTRIBUTION_COLUMN, OOD_SCORE_COLUMN
    from leukemia_cnn.tracking.store import setup_mlflow

    output_dir = Path(output) if output else root / cfg.paths.reports_dir / "explain"
    targets = output_paths(images, output_dir)  # first: an input is never replaced
    # --output: a new folder or one explain wrote (never the project, a tracked or DVC folder
    # such as data/raw/Pro, where a heatmap would become a training image), and in it only new
    # heatmaps or ones explain wrote (fileio.check_output)
    options = dict(root=root, flag="--output", owner=EXPLAIN_OUTPUT, inputs=images,
                   instead="Pass --output with a new folder (or one an earlier explain wrote)")
    output_dir = check_output(output_dir, kind="folder", label=output, **options)
    for target in targets:
        check_output(target, kind="file", label=str(target), **options)
    uri = default_model_uri(cfg) if model_uri is None else check_model_uri(model_uri, "--model")
    decoded = []
    for path in images:
        if not Path(path).is_file() or special_kind(Path(path)):
            raise DataError(describe_missing(path))  # a FIFO, a folder, a broken link, ...
        decoded.append(open_image(Path(path)))
    check_store(cfg, root)
    setup_mlflow(cfg, root, read_only=True)
    with tempfile.TemporaryDirectory(prefix="leukemia-cnn-model-") as copy:
        wrapper = load_explainer(uri, copy)
        print(f"explain: computing in {getattr(wrapper, 'precision', 'float32')}", file=sys.stderr)
        results = wrapper.explain(decoded)
        guarded = wrapper.predict_arrays(np.stack([  # the guard's verdict on each image
            to_model_input(image, wrapper.image_size, wrapper.color_mode) for image in decoded]))
    output_dir.mkdir(parents=True, exist_ok=True)
    mark_output(output_dir, EXPLAIN_OUTPUT)
    rows = []
    for path, target, result, accepted, score in zip(
            images, targets, results, guarded[IN_DISTRIBUTION_COLUMN].astype(bool),
            guarded[OOD_SCORE_COLUMN].astype(float), strict=True):
        atomic_write(target, lambda tmp, r=result: r["overlay"].save(tmp, format="PNG"),
                     owner=EXPLAIN_OUTPUT)
        name = wrapper.classes[result["class_index"]]
        probability = float(result["probabilities"][result["class_index"]])
        warning = "" if accepted else "; UNLIKE THE TRAINING IMAGES, do not trust"
        print(f"{terminal_safe(path)}: {name} (p {probability:.3f}; in_distribution "
              f"{str(accepted).lower()}, ood_score {score:.4g}{warning}) -> "
              f"{terminal_safe(target)}")
        rows.append({"path": path, "predicted_class": name, "probability": probability,
                     "in_distribution": accepted, "ood_score": score,
                     "heatmap_file": str(target)})
    flagged = sum(not row["in_distribution"] for row in rows)
    print(f"explain: {len(rows)} heatmaps from {uri} in {output_dir}; {flagged} image(s) "
          "flagged as unlike the training images", file=sys.stderr)
    return rows
