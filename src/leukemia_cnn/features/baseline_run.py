"""The features stage's MLflow run ``baseline-s<seed>-<data>``: the HOG + PCA
logistic-regression baseline."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline

from leukemia_cnn.config_schema import Config


def variance_figure(pca: PCA, path: Path) -> None:
    """Per-component and cumulative explained variance of the PCA, saved to ``path``."""
    # The object API needs no global backend (no pyplot state, works headless).
    from matplotlib.figure import Figure

    ratio = pca.explained_variance_ratio_
    components = np.arange(1, len(ratio) + 1)
    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.subplots()
    axes.bar(components, ratio, color="#9ecae1", label="per component")
    axes.plot(components, np.cumsum(ratio), color="#08519c", label="cumulative")
    axes.set_xlabel("principal component")
    axes.set_ylabel("explained variance ratio")
    axes.set_ylim(0, 1)
    axes.set_title(f"PCA on train HOG: {ratio.sum():.1%} in {len(ratio)} components")
    axes.legend(loc="center right")
    figure.tight_layout()
    figure.savefig(path)


def log_baseline(cfg: Config, root: Path, metrics: dict, counts: dict, pca: PCA,
                 model: Pipeline, report_path: Path, train_hog: np.ndarray) -> str:
    """Log the baseline as its own MLflow run; return the run id.

    Params are the knobs of ``BASELINE_GROUPS`` and the split sizes; inputs the split datasets;
    metrics are those of ``baseline.json``; artifacts are ``baseline.json``, an
    explained-variance plot and the model ``PCA -> StandardScaler -> LogisticRegression``
    that takes HOG vectors.
    """
    from leukemia_cnn.data.lineage import lineage_and_rows
    from leukemia_cnn.data.staging import interrupted_note
    from leukemia_cnn.tracking.failures import cleaned_on_failure
    from leukemia_cnn.tracking.fields import BASELINE_GROUPS, run_base_name, stage_params
    from leukemia_cnn.tracking.runs import (
        log_artifact,
        log_metrics,
        log_params,
        log_sklearn_model,
        start_run,
        store_errors,
    )
    from leukemia_cnn.tracking.store import (
        log_datasets,
        run_tags,
        setup_mlflow,
        unique_run_name,
    )

    with store_errors(cfg, root, "log the baseline"):
        experiment_id = setup_mlflow(cfg, root)
        lineage, rows = lineage_and_rows(cfg, root)
        label = unique_run_name(run_base_name("baseline", cfg, lineage), experiment_id)
        tags = run_tags(cfg, root, what="Baseline (HOG + PCA, logistic regression) by `features`",
                        groups=BASELINE_GROUPS, stage="features", model_family="baseline")
        with (start_run(run_name=label, tags=tags) as run,
              cleaned_on_failure(run.info.run_id, (report_path.parent,),
                                 interrupted_note(root))):
            log_params({**stage_params(cfg, lineage, BASELINE_GROUPS),
                        **{f"data.n_{name}": n for name, n in counts.items()}})
            if rows is not None:
                log_datasets(lineage, rows)
            log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
            log_artifact(report_path)
            with tempfile.TemporaryDirectory() as tmp:
                figure_path = Path(tmp) / "pca_explained_variance.png"
                variance_figure(pca, figure_path)
                log_artifact(figure_path)
            log_sklearn_model(Pipeline([("pca", pca), *model.steps]), train_hog[:5], name="hog-pca-logreg")
            return run.info.run_id
