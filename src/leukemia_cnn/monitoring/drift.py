"""``leukemia-cnn drift --source DIR``: do new images look like the training images?

A batch check for a scheduled job or CI. It reads a folder of new images (the Kaggle layout
``<Class>/<image>`` or a flat folder; hidden, non-image and unreadable files are skipped with
their reason) through the project's one decode path, and compares them with the training data:

1. **Shift tests** (:mod:`leukemia_cnn.monitoring.kstests`): a two-sample KS test per feature,
   adjusted for the number of tests (``drift.correction``), at level ``drift.alpha``. The
   features are the interpretable input statistics of
   :mod:`leukemia_cnn.features.imagestats` (size, colour, stain, intensity, focus), measured
   on the train images in ``paths.raw_dir`` and on the new ones, and the HOG + PCA components
   of the features stage: the new images' HOG descriptors are reduced by the stage's fitted
   PCA (``<features_dir>/pca.joblib``) and compared with the val split's
   (``<features_dir>/val.npz``: reduced by the same PCA, not fitted on; see
   :func:`load_reference`).
2. **The model's guard**: the model (default: the champion) answers every new image; the
   share its guard flags (column ``in_distribution`` false) is compared with
   ``drift.max_flagged_share``. A model without the column has no guard: the report says so
   and the verdict rests on the shift tests alone.

Drift when a feature shifted or the guard flagged too many images. The report (Markdown and
HTML, :mod:`leukemia_cnn.monitoring.drift_report`) is written to ``<reports_dir>/drift/<folder
name>.md`` (or ``--output``) and logged to MLflow as the artifacts of a ``drift-<name>`` run.
The command exits 4 on drift, 0 without.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np

from leukemia_cnn.config import flatten
from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.lineage import safe_name
from leukemia_cnn.data.preprocess import n_workers
from leukemia_cnn.errors import DataError, LeukemiaCNNError
from leukemia_cnn.features.features import hog_features
from leukemia_cnn.features.imagestats import INPUT_FEATURES, describe_files, pca_columns
from leukemia_cnn.fileio import check_output, write_text
from leukemia_cnn.monitoring import drift_report
from leukemia_cnn.monitoring.kstests import ShiftTest, Verdict, shift_tests, verdict
from leukemia_cnn.quality.raw_manifest import find_image_files
from leukemia_cnn.serving.pyfunc import IN_DISTRIBUTION_COLUMN, OOD_SCORE_COLUMN

# The columns the model's out-of-distribution guard adds to every answer.
GUARD_COLUMN, SCORE_COLUMN = IN_DISTRIBUTION_COLUMN, OOD_SCORE_COLUMN
DRIFT_OUTPUT = "drift"  # the owner its reports are recorded under (fileio.record_output)


@dataclass
class BatchGuardShare:
    """What the model's guard said about the new images (``available`` False: no guard)."""

    available: bool
    note: str
    n_answered: int = 0
    n_flagged: int = 0
    median_score: float | None = None

    @property
    def flagged_share(self) -> float | None:
        return self.n_flagged / self.n_answered if self.available and self.n_answered else None


@dataclass
class Reference:
    """The training side: input statistics of train images, and the val PCA features."""

    stats: dict[str, np.ndarray]
    pca_features: np.ndarray
    pca: object
    n_listed: int
    n_measured: int
    notes: list[str] = field(default_factory=list)


@dataclass
class DriftResult:
    """Everything the check found, and where its report is."""

    source: Path
    n_images: int
    skipped: dict[str, str]
    reference: Reference
    tests: list[ShiftTest]
    guard: BatchGuardShare
    verdict: Verdict
    model_uri: str | None
    settings: dict
    markdown: Path | None = None
    html: Path | None = None
    run_id: str | None = None

    @property
    def drift(self) -> bool:
        return self.verdict.drift


def list_source(source: Path, classes: list[str]) -> tuple[list[Path], dict[str, str]]:
    """The image files under ``source`` and the skipped ones (relative path -> reason)."""
    if not source.exists():
        raise DataError(f"--source {source}: no such folder; pass a folder of images "
                        "(<Class>/<image> or flat)")
    if not source.is_dir():
        raise DataError(f"--source {source}: not a folder; pass the folder that holds the "
                        "images (<Class>/<image> or flat)")
    found, skipped = find_image_files(source, classes)
    return ([source / path for path, _ in found],
            {item.path: item.reason for item in skipped})


def load_reference(cfg: Config, root: Path) -> Reference:
    """The reference side: the input statistics of the train images in ``paths.raw_dir`` (a
    seeded sample of ``drift.reference_images`` of them when set), and the val split's PCA
    features with the fitted PCA of the features stage.

    The PCA features come from val, not train: with thousands of HOG dimensions and a few
    thousand train images, the components fit the train images' own noise, so train scores
    spread wider than those of any image the PCA did not see (test/train standard deviation
    about 0.6-0.75 on real-dev). Against train, even the test split would drift; val, reduced
    by the same PCA without being fitted on, is the like-for-like reference.
    """
    features_dir = root / cfg.paths.features_dir
    train_file, val_file = features_dir / "train.npz", features_dir / "val.npz"
    pca_file = features_dir / "pca.joblib"
    for path in (train_file, val_file, pca_file):
        if not path.is_file():
            raise DataError(f"{path} not found: the drift check compares with the training "
                            "features; run `dvc repro features` first")
    try:
        with np.load(train_file, allow_pickle=False) as data:
            listed = [str(p) for p in data["path"]]
        with np.load(val_file, allow_pickle=False) as data:
            pca_features = data["x"]
        pca = joblib.load(pca_file)
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DataError(f"{features_dir} is unreadable ({exc}); rerun `dvc repro features`"
                        ) from exc
    limit = cfg.drift.reference_images
    if limit is not None and len(listed) > limit:
        chosen = np.random.default_rng(cfg.seed).choice(len(listed), limit, replace=False)
        listed = [listed[i] for i in sorted(chosen)]
    raw_dir = root / cfg.paths.raw_dir
    described = describe_files([raw_dir / p for p in listed], cfg.preprocess.image_size,
                               cfg.preprocess.color_mode, n_workers(), "train images",
                               keep_inputs=False)
    if not described.paths:
        example = next(iter(described.skipped.values()), "no image listed")
        raise DataError(f"none of the {len(listed)} train images listed in {train_file} is "
                        f"readable under {raw_dir} (e.g. {example}); restore them (`dvc "
                        "checkout`, `dvc pull`) or rerun `dvc repro`")
    notes = []
    if described.skipped:
        notes.append(f"{len(described.skipped)} of {len(listed)} train images are missing or "
                     f"unreadable under {cfg.paths.raw_dir} and were left out of the reference")
    return Reference(stats=described.stats, pca_features=pca_features, pca=pca,
                     n_listed=len(listed), n_measured=len(described.paths), notes=notes)


def new_pca_features(cfg: Config, model_inputs: np.ndarray, pca) -> np.ndarray:
    """The new images' HOG descriptors (``features.hog``) reduced by the train PCA."""
    hog = cfg.features.hog
    descriptors = hog_features(model_inputs, int(hog.orientations), tuple(hog.pixels_per_cell),
                               tuple(hog.cells_per_block), str(hog.block_norm),
                               n_jobs=cfg.features.n_jobs)
    expected = getattr(pca, "n_features_in_", descriptors.shape[1])
    if descriptors.shape[1] != expected:
        raise DataError(f"{cfg.paths.features_dir}/pca.joblib was fitted on HOG descriptors of "
                        f"length {expected}, but `preprocess` and `features.hog` give "
                        f"{descriptors.shape[1]}; rerun `dvc repro features`")
    return pca.transform(descriptors.astype(np.float64)).astype(np.float32)


def guard_share(model_uri: str, paths: list[Path]) -> BatchGuardShare:
    """Ask ``model_uri`` (through its pyfunc, as ``predict`` does) about every image and count
    the answers its guard flags (``in_distribution`` false)."""
    from leukemia_cnn.serving.predict import ERROR_COLUMN, predict_files

    try:
        answers = predict_files(model_uri, [str(path) for path in paths])
    except DataError:
        raise
    except LeukemiaCNNError as exc:  # no such model
        raise LeukemiaCNNError(f"{exc}; or pass --no-guard to run the shift tests without a "
                               "model") from exc
    # A model logged without a guard answers every row in distribution with no score.
    if SCORE_COLUMN not in answers.columns or answers[SCORE_COLUMN].isna().all():
        return BatchGuardShare(available=False, note=(
            f"guard not available in this model ({model_uri}): its answers have no "
            f"`{SCORE_COLUMN}`; the verdict rests on the shift tests alone"))
    answered = answers[answers[ERROR_COLUMN].isna()]
    flagged = int((~answered[GUARD_COLUMN].astype(bool)).sum())
    scores = (answered[SCORE_COLUMN].astype(float) if SCORE_COLUMN in answered.columns
              else None)
    version = (f" version {answered['model_version'].iloc[0]}"
               if "model_version" in answered.columns and len(answered) else "")
    return BatchGuardShare(available=True, n_answered=len(answered), n_flagged=flagged,
                       median_score=float(scores.median()) if scores is not None else None,
                       note=f"the guard of {model_uri}{version} flagged {flagged} of "
                            f"{len(answered)} images")


def output_paths(cfg: Config, root: Path, source: Path, output: str | None
                 ) -> tuple[Path, Path]:
    """Where the Markdown and HTML reports go, after the output guard."""
    name = safe_name(source.resolve().name, limit=64)
    markdown = Path(output) if output else root / cfg.paths.reports_dir / "drift" / f"{name}.md"
    html = markdown.with_suffix(".html") if markdown.suffix == ".md" else Path(f"{markdown}.html")
    instead = ("Pass --output with a new file name (e.g. drift.md) or leave it out to write "
               f"{cfg.paths.reports_dir}/drift/{name}.md")
    checked = [check_output(path, kind="file", root=root, flag="--output", owner=DRIFT_OUTPUT,
                            inputs=[source], instead=instead,
                            label=str(path))
               for path in (markdown, html)]
    return checked[0], checked[1]


def log_drift_run(cfg: Config, root: Path, result: DriftResult) -> str:
    """Log the check as an MLflow run ``drift-<name>``: its settings, counts, verdict and
    the two reports as artifacts; return the run id."""
    from leukemia_cnn.tracking.runs import (
        log_artifact,
        log_metrics,
        log_params,
        start_run,
        store_errors,
    )
    from leukemia_cnn.tracking.store import run_tags, setup_mlflow

    name = safe_name(result.source.resolve().name, limit=64)
    metrics = {"n_images": result.n_images, "n_skipped": len(result.skipped),
               "n_tests": len(result.tests), "n_shifted": sum(t.shifted for t in result.tests),
               "drift": int(result.drift)}
    if result.guard.flagged_share is not None:
        metrics["flagged_share"] = result.guard.flagged_share
    with store_errors(cfg, root, "log the drift check"):
        setup_mlflow(cfg, root)
        tags = run_tags(cfg, root, stage="drift", drift_source=str(result.source.resolve()),
                        drift_verdict="drift" if result.drift else "no drift")
        with start_run(run_name=f"drift-{name}", tags=tags) as run:
            log_params({**flatten(cfg.drift, prefix="drift."),
                        "model_uri": result.model_uri or "none"})
            log_metrics(metrics)
            for path in (result.markdown, result.html):
                log_artifact(path, "drift")
            return run.info.run_id


def check(cfg: Config, root: Path, source: Path, model_uri: str | None) -> DriftResult:
    """Compare the images under ``source`` with the training data (no output written)."""
    paths, skipped = list_source(source, list(cfg.data.classes))
    described = describe_files(paths, cfg.preprocess.image_size,
                               cfg.preprocess.color_mode, n_workers(), "new images")
    skipped.update({path.relative_to(source).as_posix(): reason.removeprefix(f"{path}: ")
                    for path, reason in described.skipped.items()})
    if not described.paths:
        listed = "; ".join(f"{path}: {reason}" for path, reason in list(skipped.items())[:5])
        raise DataError(f"--source {source}: no readable image to compare"
                        + (f" (skipped {len(skipped)}: {listed})" if skipped else
                           " (the folder is empty)"))
    reference = load_reference(cfg, root)
    new_pca = new_pca_features(cfg, described.model_inputs, reference.pca)
    tests = shift_tests({**{k: reference.stats[k] for k in INPUT_FEATURES},
                         **pca_columns(reference.pca_features)},
                        {**described.stats, **pca_columns(new_pca)},
                        cfg.drift.alpha, cfg.drift.correction)
    guard = (guard_share(model_uri, described.paths) if model_uri else
             BatchGuardShare(available=False, note="the model was not asked (--no-guard); the "
                                               "verdict rests on the shift tests alone"))
    decided = verdict(tests, guard.flagged_share, cfg.drift.max_flagged_share,
                      cfg.drift.alpha, cfg.drift.correction)
    return DriftResult(source=source, n_images=len(described.paths), skipped=skipped,
                       reference=reference, tests=tests, guard=guard, verdict=decided,
                       model_uri=model_uri, settings=flatten(cfg.drift, prefix="drift."))


def run(cfg: Config, root: Path, source: str, model_uri: str | None = None,
        guard: bool = True, output: str | None = None) -> DriftResult:
    """``leukemia-cnn drift``: check, write the report, log it to MLflow, print the verdict.

    Parameters
    ----------
    source : str
        The folder of new images.
    model_uri : str, optional
        The model whose guard is asked (default: the champion).
    guard : bool
        False: do not ask any model (the shift tests alone).
    output : str, optional
        The Markdown report (default ``<reports_dir>/drift/<folder name>.md``); the HTML
        report goes beside it.
    """
    from leukemia_cnn.serving.predict import default_model_uri
    from leukemia_cnn.tracking.store import setup_mlflow

    root, folder = Path(root), Path(source).expanduser()
    markdown, html = output_paths(cfg, root, folder, output)
    uri = None
    if guard:
        setup_mlflow(cfg, root)
        uri = model_uri or default_model_uri(cfg)
    result = check(cfg, root, folder, uri)
    text = drift_report.markdown(result, cfg)
    result.markdown, result.html = write_text(markdown, text, owner=DRIFT_OUTPUT), write_text(
        html, drift_report.to_html(text, title=f"Drift check: {folder.name}"), owner=DRIFT_OUTPUT)
    result.run_id = log_drift_run(cfg, root, result)
    print(f"drift: {'DRIFT' if result.drift else 'no drift'} in {result.n_images} images of "
          f"{folder} against the training data")
    for reason in result.verdict.reasons:
        print(f"  - {reason}")
    if not result.guard.available:
        print(f"drift: {result.guard.note}", file=sys.stderr)
    for path, reason in list(result.skipped.items())[:20]:
        print(f"drift: skipped {path}: {reason}", file=sys.stderr)
    print(f"drift: report {markdown} (and .html); MLflow run {result.run_id}", file=sys.stderr)
    return result
