"""The report's Markdown page (:mod:`.report` writes it, and the same as standalone HTML with
:func:`leukemia_cnn.markdown.html_page`, so both pages say the same thing)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from leukemia_cnn.markdown import pipe_table
from leukemia_cnn.study.configurations import table_frame
from leukemia_cnn.study.sweep_runs import data_statement

COLLAPSED_AND_DISPLAYED = [
    "## Collapsed runs and the displayed accuracy",
    "",
    "A run is *collapsed* when it predicts one class or its val accuracy does not beat the "
    "majority-class share; collapsed runs count in the statistics above and are never "
    "promoted. Column `collapsed runs` gives their number per configuration.",
    "",
    "`Keras accuracy shown` is the metric Keras 3 resolved the string `accuracy` to "
    "during training (tag `keras_accuracy_metric`): categorical accuracy whatever the "
    "loss. The paper's Keras 2 displayed *binary* accuracy under binary cross-entropy, "
    "which is inflated for 4 classes (predicting all-zero already scores 0.75).",
    "",
]


def report_markdown(experiment: str, runs: pd.DataFrame, table: pd.DataFrame,
                    confidence: float, claims: list[dict], project_claims: list[dict],
                    made: list[dict], reports_dir: Path) -> str:
    """The report page: tables, claims (``claims``, then the ``project_claims`` to show),
    collapsed runs, and the figures ``made`` (paths under ``reports_dir``)."""
    lines = _table_lines(experiment, runs, table, confidence)
    lines += ["## The paper's claims, tested across seeds (paired t-test)", ""]
    lines += [f"- {c['text']}" for c in claims]
    if project_claims:
        lines += ["", "Not a claim of the paper:", ""]
        lines += [f"- {c['text']}" for c in project_claims]
    lines += ["", *COLLAPSED_AND_DISPLAYED]
    for fig in made:
        lines += _figure_lines(fig, reports_dir)
    return "\n".join(lines)


def _table_lines(experiment: str, runs: pd.DataFrame, table: pd.DataFrame,
                 confidence: float) -> list[str]:
    faithful = table_frame(table[table["faithful"]], confidence)
    others = table_frame(table[~table["faithful"]], confidence)
    sweeps = sorted({s for row in table["sweeps"] for s in row})
    lines = [
        "# Table 1 reproduced: the paper's configurations over seeds",
        "",
        f"{len(runs)} finished runs of {len(table)} configuration(s) from MLflow experiment "
        f"`{experiment}` (sweeps: {', '.join(sweeps)}). Each cell: mean ± std "
        f"[{confidence:.0%} t-interval] over seeds; `paper` columns: the paper's Table 1 (one "
        "run each). Accuracy is argmax accuracy on the evaluation side, whatever the loss. "
        "Prediction time: wall time to predict the whole split (the paper's measure); it "
        "depends on the machine.",
        "",
        data_statement(runs),
        "",
        "## Paper-faithful configurations (grayscale, the paper's network and training)",
        "",
        pipe_table(faithful) if len(faithful) else "_No paper-faithful runs._",
        "",
    ]
    if len(others):
        lines += ["## Other configurations (robust training, RGB, ...)", "",
                  pipe_table(others), ""]
    return lines


def _figure_lines(fig: dict, reports_dir: Path) -> list[str]:
    config, run = fig["config"], fig["run"]
    lines = [f"## Fig. 3: loss and accuracy, {fig['scope']} `{config['label']}`", "",
             f"Run `{run['run_id']}` (seed {run['seed']}, val accuracy "
             f"{run['metrics.val_accuracy']:.3f}), curves from MLflow's metric history.", "",
             f"![Fig. 3]({fig['curves'].relative_to(reports_dir).as_posix()})", ""]
    if fig["samples"] is not None:
        lines += [f"## Fig. 2: sample predictions (test split), {fig['scope']}", "",
                  f"![Fig. 2]({fig['samples'].relative_to(reports_dir).as_posix()})", ""]
    return lines
