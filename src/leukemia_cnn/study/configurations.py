"""The report's table: one row per configuration (every knob but the seed) with its
statistics over seeds, and the printable frame with the paper's numbers beside ours."""

from __future__ import annotations

import math

import pandas as pd

from leukemia_cnn.config import paper_faithful
from leukemia_cnn.study.paper import METRIC_TITLES, METRICS, PAPER_TABLE1
from leukemia_cnn.study.statistics import summarize
from leukemia_cnn.tracking.store import CONFIG_ID_PREFIXES


def configurations(runs: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """One row per configuration: label, setup, seeds, statistics, collapsed runs, paper row."""
    rows = [_configuration_row(config, group, confidence)
            for config, group in runs.groupby("tags.config_id", sort=False)]
    table = _tell_twins_apart(pd.DataFrame(rows))
    table["paper"] = table["label"].map(lambda name: name in PAPER_TABLE1)
    # Paper-faithful first, the paper's rows in its order, then the rest by name.
    paper_order = {name: index for index, name in enumerate(PAPER_TABLE1)}
    table["_order"] = table["label"].map(lambda name: paper_order.get(name, len(paper_order)))
    table = table.sort_values(["faithful", "_order", "label"], ascending=[False, True, True])
    return table.drop(columns="_order").reset_index(drop=True)


def _configuration_row(config: str, group: pd.DataFrame, confidence: float) -> dict:
    names = group["tags.experiment_name"].fillna("default")
    # One configuration from several files (fetch_runs): named by the paper's Table 1 row
    # if it is one.
    every = group["experiments"].iloc[0].split(",")
    label = next((name for name in PAPER_TABLE1 if name in every), names.mode().iloc[0])
    collapsed = (group.get("tags.collapsed", pd.Series("false", index=group.index)) == "true")
    collapsed |= group.get("metrics.collapsed", pd.Series(0.0, index=group.index)).fillna(0) > 0
    displayed = sorted(set(group.get("tags.keras_accuracy_metric",
                                     pd.Series(dtype=str)).dropna()))
    row = {"config_id": config, "experiment": label, "label": label, "setup": _setup(group),
           "params": _params(group), "aliases": [name for name in every if name != label],
           "faithful": _is_faithful(group), "n_seeds": len(group),
           "seeds": sorted(group["seed"].tolist()), "collapsed": int(collapsed.sum()),
           "keras_accuracy": ", ".join(displayed) or "?",
           "sweeps": sorted(group["tags.sweep_id"].unique())}
    for metric in METRICS:
        summary = summarize(group.get(f"metrics.{metric}", pd.Series(dtype=float)), confidence)
        row |= {f"{metric}.{key}": value for key, value in summary.items()}
    return row


def _tell_twins_apart(table: pd.DataFrame) -> pd.DataFrame:
    """Two configurations from one experiment file (e.g. a sweep over colour): name the knobs
    that tell them apart in their labels."""
    for label, same in table.groupby("label"):
        if len(same) < 2:
            continue
        keys = sorted({k for p in same["params"] for k in p})
        differ = [k for k in keys if k.startswith(CONFIG_ID_PREFIXES)
                  and len({str(p.get(k)) for p in same["params"]}) > 1]
        for index in same.index:
            params = table.loc[index, "params"]  # runs that predate a knob have none: "unset"
            knobs = ", ".join(f"{k}={'unset' if pd.isna(params.get(k)) else params[k]}"
                              for k in differ)
            table.loc[index, "label"] = f"{label} [{knobs or table.loc[index, 'config_id']}]"
    return table


def _params(group: pd.DataFrame) -> dict:
    return {c.removeprefix("params."): group[c].iloc[0] for c in group if c.startswith("params.")}


def _param(group: pd.DataFrame, key: str) -> str:
    values = group.get(f"params.{key}", pd.Series(dtype=object)).dropna().unique()
    return str(values[0]) if len(values) else "?"


def _setup(group: pd.DataFrame) -> str:
    loss = {"categorical_crossentropy": "cce", "binary_crossentropy": "bce"}.get(
        _param(group, "train.loss"), _param(group, "train.loss"))
    filters = _param(group, "model.filters")
    layers = filters.count(",") + 1 if filters.startswith("[") else "?"
    return (f"e{_param(group, 'train.epochs')}/b{_param(group, 'train.batch_size')}/{loss}, "
            f"{layers} conv, {_param(group, 'preprocess.image_size')}px "
            f"{_param(group, 'preprocess.color_mode')}, {_param(group, 'data.n_train')} train images")


def _is_faithful(group: pd.DataFrame) -> bool:
    if "tags.paper_faithful" in group and group["tags.paper_faithful"].notna().all():
        return bool((group["tags.paper_faithful"] == "true").all())
    return paper_faithful(_params(group))


def table_frame(table: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """The printable table: one row per configuration, paper numbers beside ours."""
    level = f"{confidence:.0%}"
    rows = []
    for _, row in table.iterrows():
        aliases = row.get("aliases") or []
        same = f" (= {', '.join(aliases)})" if aliases else ""
        out = {"configuration": f"{row['label']}{same}", "setup": row["setup"],
               "seeds": row["n_seeds"]}
        paper = PAPER_TABLE1.get(row["label"])
        for metric in METRICS:
            digits = 3 if "accuracy" in metric else 2
            out[f"{METRIC_TITLES[metric]} (mean ± std [{level} CI])"] = _cell(row, metric, digits)
            out[f"paper {METRIC_TITLES[metric]}"] = f"{paper[metric]:.2f}" if paper else ""
        out["collapsed runs"] = f"{row['collapsed']}/{row['n_seeds']}"
        out["Keras `accuracy` shown"] = row["keras_accuracy"]
        rows.append(out)
    return pd.DataFrame(rows)


def _cell(row: pd.Series, metric: str, digits: int) -> str:
    mean, std, low, high = (row[f"{metric}.{k}"] for k in ("mean", "std", "low", "high"))
    if math.isnan(mean):
        return "-"
    if math.isnan(std):
        return f"{mean:.{digits}f} (n=1)"
    return f"{mean:.{digits}f} ± {std:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
