"""One plain statement per claim: whether the seeds support it, from a paired t-test of the
means or, for a ``spread`` claim, a one-sided F-test of the variances."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from leukemia_cnn.study.paper import METRIC_TITLES, Claim
from leukemia_cnn.study.statistics import paired_test, spread_test

ACCURACIES = ("val_accuracy", "test_accuracy")


def claim_statements(runs: pd.DataFrame, table: pd.DataFrame, claims: Iterable[Claim],
                     alpha: float) -> list[dict]:
    """One plain statement per claim (see the module).

    Returns dicts with ``claim``, ``text`` (Markdown) and either ``verdicts`` (one per
    accuracy) or, for a claim none of whose configurations ran, ``missing``.
    """
    # The labels of the configurations each conf/experiment file gave (more than one: a claim
    # on it is ambiguous), and the first one's id.
    labels_of: dict[str, list[str]] = {}
    config_of: dict[str, str] = {}
    for _, row in table.iterrows():  # a file's name, and every other file of the same config
        for name in [row["experiment"], *(row.get("aliases") or [])]:
            labels_of.setdefault(name, []).append(row["label"])
            config_of.setdefault(name, row["config_id"])
    return [_untested(claim, labels_of) or _tested(claim, runs, config_of, alpha)
            for claim in claims]


def _untested(claim: Claim, labels_of: dict[str, list[str]]) -> dict | None:
    """The statement of a claim that cannot be tested (ambiguous or not run), else None."""
    names = (claim.better, claim.worse)
    ambiguous = {name: labels_of[name] for name in names if len(labels_of.get(name, [])) > 1}
    if ambiguous:
        which = "; ".join(f"{len(labels)} configurations come from {name} "
                          f"({', '.join(labels)})" for name, labels in ambiguous.items())
        return {"claim": claim,
                "text": f"**{claim.statement}** — not tested: {which}; report one "
                        f"sweep (`--sweep-id`) to compare one of them ({claim.paper})."}
    missing = [name for name in names if name not in labels_of]
    if missing:
        return {"claim": claim, "missing": True,
                "text": f"**{claim.statement}** — not tested: no "
                        f"runs of {', '.join(missing)} ({claim.paper})."}
    return None


def _tested(claim: Claim, runs: pd.DataFrame, config_of: dict[str, str], alpha: float) -> dict:
    parts, verdicts, needed = [], [], []
    for metric in ACCURACIES:
        column = f"metrics.{metric}"
        series = {name: runs[runs["tags.config_id"] == config_of[name]].set_index("seed")[column]
                  for name in (claim.better, claim.worse)}
        test = (spread_test if claim.kind == "spread" else paired_test)(
            series[claim.better], series[claim.worse], alpha)
        verdicts.append(test["verdict"])
        if claim.kind == "spread" and test["n"] >= 2:
            needed.append(test["needed"])
        parts.append(_metric_part(claim, metric, test))
    detail = f"α={alpha:.2f}; {claim.paper}"
    if needed:
        detail = (f"at this many seeds the test calls a spread lower only when its std is "
                  f"below {needed[0]:.2f} times the other's; {detail}")
    return {"claim": claim, "verdicts": verdicts,
            "text": f"**{claim.statement}** — {_overall(verdicts)}: {'; '.join(parts)} "
                    f"({detail})."}


def _metric_part(claim: Claim, metric: str, test: dict) -> str:
    title = METRIC_TITLES[metric]
    if test["n"] < 2:
        return f"{title}: not enough seeds (n={test['n']} paired)"
    if claim.kind == "spread":
        return (f"{title}: std {test['std_lower']:.3f} vs {test['std_higher']:.3f}, "
                f"one-sided F-test p={test['p']:.3g} → {test['verdict']}")
    return (f"{title}: mean difference {test['mean_diff']:+.3f} over {test['n']} paired "
            f"seeds, p={test['p']:.3g} → {test['verdict']}")


def _overall(verdicts: list[str]) -> str:
    if all(v == "supported" for v in verdicts):
        return "The seeds support it"
    if "contradicted" in verdicts:
        return "The seeds contradict it (the reverse is significant)"
    if all(v == "not enough seeds" for v in verdicts):
        return "Not enough seeds to test it (need at least 2 per configuration)"
    if "supported" in verdicts:
        return "The seeds support it only partly"
    return "The seeds do not support it (no significant difference)"
