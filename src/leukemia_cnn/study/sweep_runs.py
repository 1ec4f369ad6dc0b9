"""The runs a report is made of: the finished, evaluated sweep runs of the MLflow experiment,
one per configuration and seed, and a statement of the data they ran on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from leukemia_cnn.config_schema import Config
from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.tracking.store import run_config_id


def fetch_runs(cfg: Config, root: Path) -> pd.DataFrame:
    """Finished sweep runs of the experiment (``report.sweep_ids`` if set), one per config+seed.

    Raises
    ------
    LeukemiaCNNError
        If the experiment or its sweep runs are missing from the store.
    """
    from leukemia_cnn.tracking.runs import finished_runs, set_tracking_uri
    from leukemia_cnn.tracking.store import tracking_uri

    uri = tracking_uri(cfg, root)
    set_tracking_uri(uri)
    name = cfg.mlflow.experiment_name
    runs = finished_runs(name, max_results=50000)
    if runs is None:
        raise LeukemiaCNNError(f"MLflow experiment '{name}' not found in {uri}; run a sweep "
                               "first: leukemia-cnn sweep -m 'experiment=glob(table1_*)' seed=1,2,3")
    wanted = cfg.report.sweep_ids
    runs = evaluated_sweep_runs(runs, wanted)
    if runs.empty:
        scope = f"sweeps {wanted}" if wanted else "any sweep"
        raise LeukemiaCNNError(f"no finished, evaluated runs of {scope} in experiment '{name}' "
                               f"({uri}); run `leukemia-cnn sweep -m ...` first or fix "
                               "`report.sweep_ids`")
    runs = runs.sort_values("start_time")
    runs["seed"] = runs["tags.seed"].astype(int)
    # The configuration from the logged params (runs logged before a knob existed group with
    # newer runs that log it at its default), else the run's tag.
    runs["tags.config_id"] = runs.apply(_logged_config_id, axis=1)
    # Every conf/experiment file that gave each configuration (conv3 is table1_e15_b64_cce).
    names = runs.get("tags.experiment_name", pd.Series("default", index=runs.index)).fillna("default")
    runs["experiments"] = names.groupby(runs["tags.config_id"]).transform(
        lambda group: ",".join(sorted(set(group))))
    # A configuration and seed run twice (two sweeps): the newest run counts.
    return runs.drop_duplicates(["tags.config_id", "seed"], keep="last").reset_index(drop=True)


def evaluated_sweep_runs(runs: pd.DataFrame, wanted: list[str]) -> pd.DataFrame:
    """The runs of a sweep (of the ``wanted`` sweeps, if any) that logged a val accuracy."""
    if "tags.sweep_id" not in runs:
        return runs.iloc[0:0]
    runs = runs[runs["tags.sweep_id"].notna()]
    if wanted:
        runs = runs[runs["tags.sweep_id"].isin(wanted)]
    if "metrics.val_accuracy" in runs:
        runs = runs[runs["metrics.val_accuracy"].notna()]
    return runs


def data_statement(runs: pd.DataFrame) -> str:
    """Which data the runs trained and were scored on, from their tags and params."""
    def values(column: str) -> list[str]:
        return sorted({str(v) for v in runs[column].dropna()}) if column in runs else []

    sources, versions = values("tags.data_source") or ["unknown"], values("tags.data_version")
    sizes = [f"{'/'.join(values(f'params.data.n_{split}')) or '?'} {split}"
             for split in ("train", "val")]
    text = (f"Data: source `{', '.join(sources)}`, data version (data.dvc md5) "
            f"`{', '.join(versions) or 'unknown'}`, {' and '.join(sizes)} images per run.")
    if sources == ["synthetic"]:
        text += (" These are the built-in synthetic images, made for the plumbing and the tests: "
                 "the numbers are not claims about leukemia smears.")
    elif len(versions) > 1:
        text += " **More than one data version: runs on different data are mixed here.**"
    return text


def _logged_config_id(run: pd.Series) -> str | None:
    params = {c.removeprefix("params."): v for c, v in run.items()
              if c.startswith("params.") and isinstance(v, str)}
    return run_config_id(params, run.get("tags.config_id"))
