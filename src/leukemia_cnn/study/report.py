"""``leukemia-cnn report``: the paper's Table 1 study from the MLflow runs of the sweeps.

Reads the finished sweep runs (tag ``sweep_id``) of the project's experiment, groups them by
configuration (tag ``config_id``: every knob but the seed) and writes
``<reports_dir>/<report.name>.md`` and ``.html`` with, per configuration, mean +/- std and a
t-interval over seeds of val/test accuracy and val/test prediction time beside the paper's
numbers; one plain statement per paper claim tested by a paired t-test across seeds; the
collapsed runs; which accuracy Keras displayed; the paper's Fig. 3 (curves of the best
configuration's best run, from MLflow's metric history) and Fig. 2 (that run's sample
predictions). Nothing is recomputed from data: every number comes from the store.
"""

from __future__ import annotations

import html
import math
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from leukemia_cnn.config import check_section, knob, paper_faithful
from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.fileio import check_output, mark_output, swap_folder, write_text
from leukemia_cnn.tracking.store import CONFIG_ID_PREFIXES, run_config_id

# Paper Table 1 (val accuracy, val prediction s, test accuracy, test prediction s) by the
# conf/experiment file that reproduces each row.
PAPER_TABLE1 = {
    "table1_e15_b64_cce": {"row": "epoch=15, batch=64, categorical CE", "val_accuracy": 0.80,
                           "val_prediction_seconds": 2.13, "test_accuracy": 0.82,
                           "test_prediction_seconds": 1.98},
    "table1_e15_b64_bce": {"row": "epoch=15, batch=64, binary CE", "val_accuracy": 0.76,
                           "val_prediction_seconds": 2.09, "test_accuracy": 0.78,
                           "test_prediction_seconds": 2.62},
    "table1_e15_b32_cce": {"row": "epoch=15, batch=32, categorical CE", "val_accuracy": 0.74,
                           "val_prediction_seconds": 2.09, "test_accuracy": 0.75,
                           "test_prediction_seconds": 2.62},
    "table1_e10_b32_cce": {"row": "epoch=10, batch=32, categorical CE", "val_accuracy": 0.78,
                           "val_prediction_seconds": 2.09, "test_accuracy": 0.81,
                           "test_prediction_seconds": 2.62},
}
METRICS = ("val_accuracy", "test_accuracy", "val_prediction_seconds", "test_prediction_seconds")
METRIC_TITLES = {"val_accuracy": "val accuracy", "test_accuracy": "test accuracy",
                 "val_prediction_seconds": "val prediction s",
                 "test_prediction_seconds": "test prediction s"}
CURVE_METRICS = ("loss", "val_loss", "argmax_accuracy", "val_argmax_accuracy")
# The first line of every report page: how an earlier report is recognised (and replaced).
REPORT_TITLE = "# Table 1 reproduced: the paper's configurations over seeds"
HTML_HEAD = "<!doctype html><html><head><meta charset='utf-8'><title>Table 1</title>"
REPORT_OUTPUT = "report"  # the marker of a report's figures folder


@dataclass(frozen=True)
class Claim:
    """A claim between two conf/experiment files: ``better`` beats ``worse``.

    ``kind="mean"``: higher accuracy, a paired t-test across seeds; ``kind="spread"``: accuracy
    that varies less over seeds, a one-sided F-test of the two variances.
    """

    statement: str
    better: str
    worse: str
    paper: str
    kind: str = "mean"


CLAIMS = (
    Claim("batch 64 beats batch 32 (15 epochs, categorical CE)", "table1_e15_b64_cce",
          "table1_e15_b32_cce", "paper Table 1: val 0.80 vs 0.74, test 0.82 vs 0.75"),
    Claim("categorical CE beats binary CE (15 epochs, batch 64)", "table1_e15_b64_cce",
          "table1_e15_b64_bce", "paper Table 1: val 0.80 vs 0.76, test 0.82 vs 0.78"),
    Claim("15 epochs beats 10 epochs (batch 32, categorical CE)", "table1_e15_b32_cce",
          "table1_e10_b32_cce", "paper text (\"the model benefits from additional training "
          "epochs\"); its own Table 1 shows the reverse: val 0.74 vs 0.78, test 0.75 vs 0.81"),
    Claim("3 conv layers (the paper's network) beat 2 (15 epochs, batch 64, categorical CE)",
          "conv3", "conv2", "paper Sec. 2.3: the number of conv layers was tuned, and its "
          "network has 3"),
    Claim("3 conv layers (the paper's network) beat 4 (15 epochs, batch 64, categorical CE)",
          "conv3", "conv4", "paper Sec. 2.3: the number of conv layers was tuned, and its "
          "network has 3"),
)
# Not claims of the paper: what this project adds.
PROJECT_CLAIMS = (
    Claim("the improved configuration beats the paper's best (e15/b64/categorical)",
          "improved", "table1_e15_b64_cce", "project claim (conf/experiment/improved.yaml)"),
    Claim("the improved configuration varies less over seeds than the paper's best",
          "improved", "table1_e15_b64_cce", "project claim (conf/experiment/improved.yaml)",
          kind="spread"),
    Claim("the fast recipe beats the paper's best (e15/b64/categorical)",
          "fast", "table1_e15_b64_cce", "project claim (conf/experiment/fast.yaml)"),
    Claim("the fast recipe varies less over seeds than the paper's best",
          "fast", "table1_e15_b64_cce", "project claim (conf/experiment/fast.yaml)",
          kind="spread"),
)


# ----------------------------------------------------------------------------- statistics


def summarize(values: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample std and the t-interval of the mean (NaN bounds when n < 2).

    Parameters
    ----------
    values : array-like of float
        One value per seed.
    confidence : float
        Level of the interval (``report.confidence``).

    Returns
    -------
    dict
        ``n``, ``mean``, ``std``, ``low``, ``high``.
    """
    from scipy import stats

    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "low": math.nan, "high": math.nan}
    mean = float(values.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "std": math.nan, "low": math.nan, "high": math.nan}
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))
    return {"n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def paired_test(better: pd.Series, worse: pd.Series, alpha: float = 0.05) -> dict:
    """Paired t-test of ``better - worse`` over the seeds both have (Series indexed by seed).

    Returns
    -------
    dict
        ``n`` (paired seeds), ``mean_diff``, ``p`` and ``verdict``: ``supported``,
        ``contradicted`` (the reverse is significant), ``not supported`` (no significant
        difference), ``no difference`` (equal on every seed) or ``not enough seeds``.
    """
    from scipy import stats

    seeds = sorted(set(better.dropna().index) & set(worse.dropna().index))
    a = better.loc[seeds].to_numpy(dtype=float)
    b = worse.loc[seeds].to_numpy(dtype=float)
    n = len(seeds)
    mean_diff = float(np.mean(a - b)) if n else math.nan
    if n < 2:
        return {"n": n, "mean_diff": mean_diff, "p": math.nan, "verdict": "not enough seeds"}
    diffs = a - b
    if np.allclose(diffs, diffs[0]):
        # Zero spread: the test is undefined; the sign of a constant difference is the answer.
        p = 0.0 if diffs[0] != 0 else 1.0
    else:
        p = float(stats.ttest_rel(a, b).pvalue)
    if mean_diff == 0 and p >= alpha:
        verdict = "no difference"
    elif p < alpha:
        verdict = "supported" if mean_diff > 0 else "contradicted"
    else:
        verdict = "not supported"
    return {"n": n, "mean_diff": mean_diff, "p": p, "verdict": verdict}


def spread_test(lower: pd.Series, higher: pd.Series, alpha: float = 0.05) -> dict:
    """One-sided F-test that ``lower`` has a smaller variance than ``higher`` (values per seed).

    The seeds need not pair up. Returns ``n`` (the smaller count), ``std_lower``,
    ``std_higher``, ``p`` (of the variance ratio under equal variances), ``verdict``
    (``supported``, ``contradicted``, ``not supported``, ``no difference`` or ``not enough
    seeds``) and ``needed``: the ratio of standard deviations below which this many seeds
    would call the spread lower at ``alpha``.
    """
    from scipy import stats

    a, b = lower.dropna().to_numpy(dtype=float), higher.dropna().to_numpy(dtype=float)
    n = min(len(a), len(b))
    if n < 2:
        return {"n": n, "std_lower": math.nan, "std_higher": math.nan, "p": math.nan,
                "needed": math.nan, "verdict": "not enough seeds"}
    std_a, std_b = float(a.std(ddof=1)), float(b.std(ddof=1))
    dfs = (len(a) - 1, len(b) - 1)
    needed = math.sqrt(float(stats.f.ppf(alpha, *dfs)))
    if std_a == std_b:
        p, verdict = 1.0, "no difference"
    else:
        ratio = (std_a / std_b) ** 2 if std_b else math.inf  # F's cdf(inf) = 1, sf(inf) = 0
        p, p_reverse = float(stats.f.cdf(ratio, *dfs)), float(stats.f.sf(ratio, *dfs))
        verdict = ("supported" if p < alpha else "contradicted" if p_reverse < alpha
                   else "not supported")
    return {"n": n, "std_lower": std_a, "std_higher": std_b, "p": p, "needed": needed,
            "verdict": verdict}


# ----------------------------------------------------------------------------- MLflow runs


def fetch_runs(cfg: DictConfig, root: Path) -> pd.DataFrame:
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
    wanted = [str(s) for s in cfg.report.get("sweep_ids", []) or []]
    if runs.empty or "tags.sweep_id" not in runs:
        runs = runs.iloc[0:0]
    else:
        runs = runs[runs["tags.sweep_id"].notna()]
    if wanted and not runs.empty:
        runs = runs[runs["tags.sweep_id"].isin(wanted)]
    if "metrics.val_accuracy" in runs:
        runs = runs[runs["metrics.val_accuracy"].notna()]
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
    names = runs["tags.experiment_name"].fillna("default") if "tags.experiment_name" in runs \
        else pd.Series("default", index=runs.index)
    runs["experiments"] = names.groupby(runs["tags.config_id"]).transform(
        lambda group: ",".join(sorted(set(group))))
    # A configuration and seed run twice (two sweeps): the newest run counts.
    return runs.drop_duplicates(["tags.config_id", "seed"], keep="last").reset_index(drop=True)


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


def _param(group: pd.DataFrame, key: str, default: str = "?") -> str:
    column = f"params.{key}"
    if column not in group:
        return default
    values = group[column].dropna().unique()
    return str(values[0]) if len(values) else default


def _setup(group: pd.DataFrame) -> str:
    loss = {"categorical_crossentropy": "cce", "binary_crossentropy": "bce"}.get(
        _param(group, "train.loss"), _param(group, "train.loss"))
    filters = _param(group, "model.filters")
    layers = filters.count(",") + 1 if filters.startswith("[") else "?"
    size = _param(group, "preprocess.image_size")
    mode = _param(group, "preprocess.color_mode")
    return (f"e{_param(group, 'train.epochs')}/b{_param(group, 'train.batch_size')}/{loss}, "
            f"{layers} conv, {size}px {mode}, {_param(group, 'data.n_train')} train images")


def _shown(value) -> str:
    """A param value for a label; runs that predate a knob have none."""
    return "unset" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _is_faithful(group: pd.DataFrame) -> bool:
    if "tags.paper_faithful" in group and group["tags.paper_faithful"].notna().all():
        return bool((group["tags.paper_faithful"] == "true").all())
    params = {c.removeprefix("params."): group[c].iloc[0] for c in group if c.startswith("params.")}
    return paper_faithful(params)


def configurations(runs: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """One row per configuration: label, setup, seeds, statistics, collapsed runs, paper row."""
    rows = []
    for config, group in runs.groupby("tags.config_id", sort=False):
        names = group["tags.experiment_name"].fillna("default")
        # One configuration from several files (fetch_runs): named by the paper's Table 1 row
        # if it is one.
        every = group["experiments"].iloc[0].split(",")
        label = next((name for name in PAPER_TABLE1 if name in every), names.mode().iloc[0])
        collapsed = (group.get("tags.collapsed", pd.Series("false", index=group.index)) == "true")
        collapsed |= group.get("metrics.collapsed", pd.Series(0.0, index=group.index)).fillna(0) > 0
        displayed = sorted(set(group.get("tags.keras_accuracy_metric",
                                         pd.Series(dtype=str)).dropna()))
        params = {c.removeprefix("params."): group[c].iloc[0] for c in group
                  if c.startswith("params.")}
        row = {"config_id": config, "experiment": label, "label": label, "setup": _setup(group),
               "params": params, "aliases": [name for name in every if name != label],
               "faithful": _is_faithful(group), "n_seeds": len(group),
               "seeds": sorted(group["seed"].tolist()), "collapsed": int(collapsed.sum()),
               "keras_accuracy": ", ".join(displayed) or "?",
               "sweeps": sorted(group["tags.sweep_id"].unique())}
        for metric in METRICS:
            column = f"metrics.{metric}"
            values = group[column] if column in group else pd.Series(dtype=float)
            for key, value in summarize(values.to_numpy(dtype=float), confidence).items():
                row[f"{metric}.{key}"] = value
        rows.append(row)
    table = pd.DataFrame(rows)
    # Two configurations from one experiment file (e.g. a sweep over colour): name the knobs
    # that tell them apart.
    for label, same in table.groupby("label"):
        if len(same) > 1:
            keys = sorted({k for p in same["params"] for k in p})
            differ = [k for k in keys if k.startswith(CONFIG_ID_PREFIXES)
                      and len({str(p.get(k)) for p in same["params"]}) > 1]
            for index in same.index:
                knobs = ", ".join(f"{k}={_shown(table.loc[index, 'params'].get(k))}"
                                  for k in differ)
                table.loc[index, "label"] = f"{label} [{knobs or table.loc[index, 'config_id']}]"
    table["paper"] = table["label"].map(lambda name: name in PAPER_TABLE1)
    # Paper-faithful first, the paper's rows in its order, then the rest by name.
    paper_order = {name: index for index, name in enumerate(PAPER_TABLE1)}
    table["_order"] = table["label"].map(lambda name: paper_order.get(name, len(paper_order)))
    table = table.sort_values(["faithful", "_order", "label"], ascending=[False, True, True])
    return table.drop(columns="_order").reset_index(drop=True)


# ----------------------------------------------------------------------------- formatting


def _cell(row: pd.Series, metric: str, digits: int) -> str:
    mean, std, low, high = (row[f"{metric}.{k}"] for k in ("mean", "std", "low", "high"))
    if math.isnan(mean):
        return "-"
    if math.isnan(std):
        return f"{mean:.{digits}f} (n=1)"
    return f"{mean:.{digits}f} ± {std:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _paper_cell(label: str, metric: str) -> str:
    paper = PAPER_TABLE1.get(label)
    return f"{paper[metric]:.2f}" if paper else ""


def table_frame(table: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """The printable table: one row per configuration, paper numbers beside ours."""
    level = f"{confidence:.0%}"
    rows = []
    for _, row in table.iterrows():
        aliases = row.get("aliases") or []
        same = f" (= {', '.join(aliases)})" if aliases else ""
        out = {"configuration": f"{row['label']}{same}", "setup": row["setup"],
               "seeds": row["n_seeds"]}
        for metric in METRICS:
            digits = 3 if "accuracy" in metric else 2
            out[f"{METRIC_TITLES[metric]} (mean ± std [{level} CI])"] = _cell(row, metric, digits)
            out[f"paper {METRIC_TITLES[metric]}"] = _paper_cell(row["label"], metric)
        out["collapsed runs"] = f"{row['collapsed']}/{row['n_seeds']}"
        out["Keras `accuracy` shown"] = row["keras_accuracy"]
        rows.append(out)
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def claim_statements(runs: pd.DataFrame, table: pd.DataFrame, claims, alpha: float) -> list[dict]:
    """One plain statement per claim: whether the seeds support it (a paired t-test of the
    means, or for a ``spread`` claim an F-test of the variances)."""
    # The configurations each conf/experiment file gave (more than one: a claim is ambiguous).
    labels_of: dict[str, list[str]] = {}
    config_of: dict[str, str] = {}
    for _, row in table.iterrows():  # a file's name, and every other file of the same config
        for name in [row["experiment"], *(row.get("aliases") or [])]:
            labels_of.setdefault(name, []).append(row["label"])
            config_of.setdefault(name, row["config_id"])
    results = []
    for claim in claims:
        missing = [name for name in (claim.better, claim.worse) if name not in labels_of]
        ambiguous = {name: labels_of[name] for name in (claim.better, claim.worse)
                     if len(labels_of.get(name, [])) > 1}
        if ambiguous:
            which = "; ".join(f"{len(labels)} configurations come from {name} "
                              f"({', '.join(labels)})" for name, labels in ambiguous.items())
            results.append({"claim": claim,
                            "text": f"**{claim.statement}** — not tested: {which}; report one "
                                    f"sweep (`--sweep-id`) to compare one of them "
                                    f"({claim.paper})."})
            continue
        if missing:
            results.append({"claim": claim, "missing": True,
                            "text": f"**{claim.statement}** — not tested: no "
                            f"runs of {', '.join(missing)} ({claim.paper})."})
            continue
        parts, verdicts, needed = [], [], []
        for metric in ("val_accuracy", "test_accuracy"):
            column = f"metrics.{metric}"
            series = {name: runs[runs["tags.config_id"] == config_of[name]].set_index("seed")[column]
                      for name in (claim.better, claim.worse)}
            if claim.kind == "spread":
                test = spread_test(series[claim.better], series[claim.worse], alpha)
            else:
                test = paired_test(series[claim.better], series[claim.worse], alpha)
            verdicts.append(test["verdict"])
            if test["n"] < 2:
                parts.append(f"{METRIC_TITLES[metric]}: not enough seeds (n={test['n']} paired)")
            elif claim.kind == "spread":
                needed.append(test["needed"])
                parts.append(f"{METRIC_TITLES[metric]}: std {test['std_lower']:.3f} vs "
                             f"{test['std_higher']:.3f}, one-sided F-test p={test['p']:.3g} → "
                             f"{test['verdict']}")
            else:
                parts.append(f"{METRIC_TITLES[metric]}: mean difference {test['mean_diff']:+.3f} "
                             f"over {test['n']} paired seeds, p={test['p']:.3g} → "
                             f"{test['verdict']}")
        if all(v == "supported" for v in verdicts):
            overall = "The seeds support it"
        elif "contradicted" in verdicts:
            overall = "The seeds contradict it (the reverse is significant)"
        elif all(v == "not enough seeds" for v in verdicts):
            overall = "Not enough seeds to test it (need at least 2 per configuration)"
        elif "supported" in verdicts:
            overall = "The seeds support it only partly"
        else:
            overall = "The seeds do not support it (no significant difference)"
        detail = f"α={alpha:.2f}; {claim.paper}"
        if needed:
            detail = (f"at this many seeds the test calls a spread lower only when its std is "
                      f"below {needed[0]:.2f} times the other's; {detail}")
        results.append({"claim": claim, "verdicts": verdicts,
                        "text": f"**{claim.statement}** — {overall}: {'; '.join(parts)} "
                                f"({detail})."})
    return results


# ----------------------------------------------------------------------------- figures


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

    columns = {key: metric_history(run_id, key) for key in CURVE_METRICS}
    frame = pd.DataFrame(columns).sort_index()
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

    from leukemia_cnn.modeling.train import plot_curves

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


# ----------------------------------------------------------------------------- the report


def build(cfg: DictConfig, root: Path) -> dict:
    """Read the runs, write the Markdown and HTML report and figures; return what was written.

    Returns
    -------
    dict
        ``markdown``, ``html`` (paths), ``table`` (the per-configuration frame), ``claims``
        (statements), ``n_runs``.
    """
    # The schema refuses a name that is not a file stem: it becomes <reports_dir>/<name>_files,
    # which is emptied first. `--name` and `--sweep-id` are set after loading: checked here.
    settings = check_section("report", cfg.report)
    confidence = float(settings["confidence"])
    alpha = 1 - confidence
    name = str(settings["name"])
    reports_dir = root / cfg.paths.reports_dir
    markdown_path, html_path, assets = check_report_outputs(reports_dir, name, root)
    runs = fetch_runs(cfg, root)
    table = configurations(runs, confidence)
    reports_dir = markdown_path.parent
    # Figures go to a staging folder swapped in at the end: an earlier report stays whole
    # until the new one is complete.
    token = secrets.token_hex(4)
    staging = assets.with_name(f"{assets.name}.tmp-{token}")
    staging.mkdir(parents=True)
    try:
        made = _build(cfg, runs, table, confidence, alpha, reports_dir, staging, assets,
                      markdown_path, html_path, token)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return {"markdown": markdown_path, "html": html_path, "table": table,
            "claims": made["claims"], "n_runs": len(runs), "figures": made["figures"]}


def check_report_outputs(reports_dir: Path, name: str, root: Path) -> tuple[Path, Path, Path]:
    """The guard of the report's outputs ``NAME.md``, ``NAME.html`` and ``NAME_files/``:
    each new or an earlier report's (see :func:`leukemia_cnn.fileio.check_output`)."""
    instead = (f"Pass --name with another name (e.g. --name {name}2) to write a new report "
               "beside it")
    markdown, page, assets = (reports_dir / f"{name}.md", reports_dir / f"{name}.html",
                              reports_dir / f"{name}_files")
    def label(path: Path) -> str:
        return f"{name} ({path.relative_to(root) if path.is_relative_to(root) else path})"

    markdown, page, assets = (
        check_output(path, kind=kind, root=root, flag="--name", owner=REPORT_OUTPUT,
                     instead=instead, label=label(path))
        for path, kind in ((markdown, "file"), (page, "file"), (assets, "folder")))
    return markdown, page, assets


def _build(cfg: DictConfig, runs: pd.DataFrame, table: pd.DataFrame, confidence: float,
           alpha: float, reports_dir: Path, staging: Path, assets: Path, markdown_path: Path,
           html_path: Path, token: str) -> dict:
    claims = claim_statements(runs, table, CLAIMS, alpha)
    project_claims = claim_statements(runs, table, PROJECT_CLAIMS, alpha)
    made = figures(runs, table, staging, bool(knob(cfg, "report.sample_images")))
    for fig in made:  # where they will be once swapped in
        fig["curves"] = assets / fig["curves"].name
        if fig["samples"] is not None:
            fig["samples"] = assets / fig["samples"].name

    faithful = table_frame(table[table["faithful"]], confidence)
    others = table_frame(table[~table["faithful"]], confidence)
    sweeps = sorted({s for row in table["sweeps"] for s in row})
    lines = [
        REPORT_TITLE,
        "",
        f"{len(runs)} finished runs of {len(table)} configuration(s) from MLflow experiment "
        f"`{cfg.mlflow.experiment_name}` (sweeps: {', '.join(sweeps)}). Each cell: mean ± std "
        f"[{confidence:.0%} t-interval] over seeds; `paper` columns: the paper's Table 1 (one "
        "run each). Accuracy is argmax accuracy on the evaluation side, whatever the loss. "
        "Prediction time: wall time to predict the whole split (the paper's measure); it "
        "depends on the machine.",
        "",
        data_statement(runs),
        "",
        "## Paper-faithful configurations (grayscale, the paper's network and training)",
        "",
        _markdown(faithful) if len(faithful) else "_No paper-faithful runs._",
        "",
    ]
    if len(others):
        lines += ["## Other configurations (robust training, RGB, ...)", "",
                  _markdown(others), ""]
    lines += ["## The paper's claims, tested across seeds (paired t-test)", ""]
    lines += [f"- {c['text']}" for c in claims]
    # A project claim is left out when its configuration was not run, said when it is ambiguous.
    shown = [c for c in project_claims if not c.get("missing")]
    if shown:
        lines += ["", "Not a claim of the paper:", ""]
        lines += [f"- {c['text']}" for c in shown]
    lines += [
        "",
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
    for fig in made:
        config, run = fig["config"], fig["run"]
        rel_curves = fig["curves"].relative_to(reports_dir).as_posix()
        lines += [f"## Fig. 3: loss and accuracy, {fig['scope']} `{config['label']}`", "",
                  f"Run `{run['run_id']}` (seed {run['seed']}, val accuracy "
                  f"{run['metrics.val_accuracy']:.3f}), curves from MLflow's metric history.", "",
                  f"![Fig. 3]({rel_curves})", ""]
        if fig["samples"] is not None:
            rel_samples = fig["samples"].relative_to(reports_dir).as_posix()
            lines += [f"## Fig. 2: sample predictions (test split), {fig['scope']}", "",
                      f"![Fig. 2]({rel_samples})", ""]
    mark_output(staging, REPORT_OUTPUT)
    swap_folder(staging, assets, token, REPORT_OUTPUT)
    write_text(markdown_path, "\n".join(lines), owner=REPORT_OUTPUT)
    write_text(html_path, _html(lines, faithful, others, made, reports_dir), owner=REPORT_OUTPUT)
    # A project claim whose configuration was not run is not part of this report.
    return {"claims": [c["text"] for c in claims + shown],
            "figures": [str(f["curves"]) for f in made]}


def _html(lines: list[str], faithful: pd.DataFrame, others: pd.DataFrame, made: list[dict],
          reports_dir: Path) -> str:
    """The same report as a standalone HTML page (tables as HTML, figures linked)."""
    parts = [HTML_HEAD,
             "<style>body{font-family:sans-serif;max-width:1400px;margin:auto}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
             "padding:4px 6px}img{max-width:900px}</style></head><body>"]
    for line in lines:
        if line.startswith("| ") or line.startswith("|---"):
            continue
        if line.startswith("## Paper-faithful"):
            parts.append(f"<h2>{html.escape(line[3:])}</h2>")
            parts.append(faithful.to_html(index=False, escape=True) if len(faithful)
                         else "<p>No paper-faithful runs.</p>")
        elif line.startswith("## Other configurations"):
            parts.append(f"<h2>{html.escape(line[3:])}</h2>")
            parts.append(others.to_html(index=False, escape=True))
        elif line.startswith("# "):
            parts.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            parts.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            src = line[line.index("(") + 1:-1]
            parts.append(f"<p><img src='{html.escape(src)}'></p>")
        elif line.startswith("- "):
            parts.append(f"<li>{html.escape(line[2:]).replace('**', '')}</li>")
        elif line.strip() and not line.startswith("_No"):
            parts.append(f"<p>{html.escape(line)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def run(cfg: DictConfig, root: Path) -> dict:
    """``leukemia-cnn report``: write the report and print where it is and the claims."""
    result = build(cfg, root)
    print(f"report: {result['n_runs']} runs, {len(result['table'])} configurations -> "
          f"{result['markdown']} and {result['html']}")
    for text in result["claims"]:
        print(f"  - {text.replace('**', '')}")
    return result
