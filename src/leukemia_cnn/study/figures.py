"""The report's figures: the paper's Fig. 3 (curves, from MLflow's metric history) and Fig. 2
(sample predictions, the run's artifact) of the best configuration's best run."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd

from leukemia_cnn.modeling.plots import plot_curves

CURVE_METRICS = ("loss", "val_loss", "argmax_accuracy", "val_argmax_accuracy")


def best_run(runs: pd.DataFrame, table: pd.DataFrame, faithful_only: bool = False):
    """The configuration with the best mean val accuracy and its best non-collapsed run."""
    pool = table[table["faithful"]] if faithful_only else table
    if pool.empty:
        return None, None
    config = pool.sort_values("val_accuracy.mean", ascending=False).iloc[0]
    group = runs[runs["tags.config_id"] == config["config_id"]]
    ok = group[group.get("tags.collapsed", pd.Series("false", index=group.index)) != "true"]
    chosen = (ok if not ok.empty else group).sort_values("metrics.val_accuracy").iloc[-1]
    return config, chosen


def history_frame(run_id: str) -> pd.DataFrame:
    """The run's per-epoch curves from MLflow's metric history (the paper's Fig. 3 data)."""
    from leukemia_cnn.tracking.runs import metric_history

    frame = pd.DataFrame({key: metric_history(run_id, key) for key in CURVE_METRICS}).sort_index()
    frame.insert(0, "epoch", frame.index.astype(int))
    return frame.reset_index(drop=True)


def _sample_figure(run_id: str, target: Path) -> Path | None:
    """The run's ``evaluation/sample_predictions.png`` copied to ``target``; None without it."""
    from leukemia_cnn.tracking.runs import download_artifact

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = download_artifact(run_id, "evaluation/sample_predictions.png", tmp)
        except Exception:  # noqa: BLE001 - a run without the artifact still gets Fig. 3
            return None
        shutil.copyfile(local, target)
    return target


def figures(runs: pd.DataFrame, table: pd.DataFrame, out_dir: Path,
            sample_images: bool = True) -> list[dict]:
    """Fig. 3 (curves) and Fig. 2 (sample predictions) of the best configuration's best run,
    and of the best paper-faithful configuration when that is another one; no Fig. 2 when
    ``sample_images`` is false (``report.sample_images``: it shows images of the data)."""
    made, seen = [], set()
    for scope, faithful_only in (("best configuration", False),
                                 ("best paper-faithful configuration", True)):
        config, run = best_run(runs, table, faithful_only)
        if config is None or config["config_id"] in seen:
            continue
        seen.add(config["config_id"])
        stem = f"{config['experiment']}_{config['config_id'][:6]}"
        curves = plot_curves(history_frame(run["run_id"]), out_dir / f"fig3_curves_{stem}.png",
                             f"{config['label']} (seed {run['seed']}, run {run['run_id'][:8]})")
        samples = (_sample_figure(run["run_id"], out_dir / f"fig2_samples_{stem}.png")
                   if sample_images else None)
        made.append({"scope": scope, "config": config, "run": run, "curves": curves,
                     "samples": samples})
    return made
