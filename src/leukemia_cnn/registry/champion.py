"""Choosing the champion: versions grouped by the validation set they were scored on, the
best one inside a group (by single run or by configuration mean; validation accuracy only,
never a collapsed run) and the reasons, in words, for where the alias goes."""

from __future__ import annotations

from leukemia_cnn.data.lineage import UNKNOWN, DataLineage, short
from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.registry.candidates import Candidate, ConfigScore

PROMOTE_MODES = ("run", "config")
# `promote --data`: the workspace's validation set, every group (listed, nothing moved), or a
# data version / validation digest (a prefix is enough).
CURRENT_DATA, ALL_DATA = "current", "all"


def best_by_validation(eligible: list[Candidate]) -> Candidate:
    """The version with the best validation accuracy; ties go to the newest version."""
    return max(eligible, key=lambda c: (c.val_accuracy, int(c.version)))


def data_groups(found: list[Candidate]) -> dict[str, list[Candidate]]:
    """The versions by the validation set they were scored on (``val_digest``), in order of
    their newest version."""
    groups: dict[str, list[Candidate]] = {}
    for c in sorted(found, key=lambda c: int(c.version), reverse=True):
        groups.setdefault(c.val_digest, []).insert(0, c)  # each group oldest first
    return groups


def group_label(members: list[Candidate]) -> str:
    """The data of a group in words (several data versions can share a validation set when
    only their train or test images differ)."""
    return ", ".join(dict.fromkeys(c.lineage.describe() for c in members))


def select_group(found: list[Candidate], data: str, current: DataLineage) -> str:
    """The ``val_digest`` of the group ``data`` names: ``current`` (the workspace's), or a
    data version or validation digest (a unique prefix is enough).

    Raises
    ------
    LeukemiaCNNError
        If the workspace's validation set is unknown, or ``data`` matches no group or several.
    """
    groups = data_groups(found)
    if data == CURRENT_DATA:
        if current.val_digest == UNKNOWN:
            raise LeukemiaCNNError(
                "the workspace has no split table (paths.splits) nor preprocessed arrays, so "
                "its validation set is unknown; run `dvc repro split`, or name the data with "
                "`leukemia-cnn promote --data <data version or validation digest>` (`--data "
                "all` lists them)")
        return current.val_digest
    wanted = data.removesuffix(".dir")
    matches = [digest for digest, members in groups.items()
               if digest.startswith(wanted)
               or any(c.lineage.version.startswith(wanted) for c in members)]
    listing = "; ".join(f"{short(d)} ({group_label(m)})" for d, m in groups.items())
    if not matches:
        raise LeukemiaCNNError(f"--data {data!r} names no data version or validation set of the "
                               f"registered versions; they were scored on: {listing}")
    if len(matches) > 1:
        raise LeukemiaCNNError(
            f"--data {data!r} matches {len(matches)} validation sets: "
            + "; ".join(f"{short(d)} ({group_label(groups[d])})" for d in matches)
            + "; pass the validation digest (a longer prefix)")
    return matches[0]


def config_scores(found: list[Candidate]) -> list[ConfigScore]:
    """Mean validation accuracy per configuration, best first (configurations with no
    eligible run last: they cannot provide a champion)."""
    groups: dict[str, list[Candidate]] = {}
    for c in found:
        if c.val_accuracy is not None:
            groups.setdefault(c.config_key, []).append(c)
    scores = []
    for key, members in groups.items():
        labels = [c.experiment_name for c in members if c.experiment_name]
        scores.append(ConfigScore(
            config_key=key, label=max(set(labels), key=labels.count) if labels else key,
            mean_val_accuracy=sum(c.val_accuracy for c in members) / len(members),
            n_runs=len(members), n_eligible=sum(c.eligible for c in members)))
    return sorted(scores, key=lambda s: (s.n_eligible > 0, s.mean_val_accuracy, s.n_runs),
                  reverse=True)


def choose_champion(found: list[Candidate], by: str = "run") -> Candidate | None:
    """The version to promote; test accuracy is never looked at, collapsed runs never chosen.

    Parameters
    ----------
    by : {"run", "config"}
        ``run``: the best validation accuracy of any single run (ties: newest version).
        ``config``: the configuration with the best mean validation accuracy over its runs
        (seeds), then its best eligible run.
    """
    if by not in PROMOTE_MODES:
        raise LeukemiaCNNError(f"promotion mode {by!r} is invalid; allowed: "
                               f"{', '.join(PROMOTE_MODES)}")
    eligible = [c for c in found if c.eligible]
    if not eligible:
        return None
    if by == "config":
        best = config_scores(found)[0]
        eligible = [c for c in eligible if c.config_key == best.config_key]
    return best_by_validation(eligible)


def _other_data_note(others: list[Candidate]) -> str:
    """``; N versions scored on other data not compared (best there: ...)``, or ``""``."""
    scored = [c for c in others if c.eligible]
    if not others:
        return ""
    note = f"; {len(others)} version(s) scored on other data not compared"
    if scored:
        best = best_by_validation(scored)
        note += (f" (best there: version {best.version}, val_accuracy {best.val_accuracy:.4f} "
                 f"on {best.lineage.describe()})")
    return note


def promotion_reason(found: list[Candidate], champion: Candidate, by: str,
                     others: list[Candidate] = ()) -> str:
    """Why ``champion`` was chosen among ``found`` (the versions scored on its validation
    set), in one line (stored on the model version); ``others`` were scored on other data."""
    n_eligible = sum(c.eligible for c in found)
    where = (f"validation set {short(champion.val_digest)} "
             f"({group_label([c for c in found if c.val_digest == champion.val_digest])})")
    if by == "run":
        return (f"best val_accuracy={champion.val_accuracy:.4f} among {n_eligible} eligible "
                f"versions scored on {where}{_other_data_note(list(others))} (single best run; "
                "test accuracy not used; collapsed runs excluded)")
    scores = config_scores(found)
    best = scores[0]
    runner_up = (f"; next: {scores[1].label} {scores[1].mean_val_accuracy:.4f} over "
                 f"{scores[1].n_runs} runs" if len(scores) > 1 else "")
    return (f"best configuration by mean val_accuracy: {best.label} (config {best.config_key}) "
            f"{best.mean_val_accuracy:.4f} over {best.n_runs} runs among {len(scores)} "
            f"configurations scored on {where}{runner_up}; then its best eligible run "
            f"val_accuracy={champion.val_accuracy:.4f}{_other_data_note(list(others))} (test "
            "accuracy not used; collapsed runs never promoted)")


def explain_champion(found: list[Candidate], new: str, champion: str | None,
                     previous: str | None) -> str:
    """In words, why the alias is where it is after registering version ``new``.

    Parameters
    ----------
    new : str
        The version just registered.
    champion : str, optional
        Where the alias is now.
    previous : str, optional
        Where it was before.
    """
    by_version = {c.version: c for c in found}
    this = by_version.get(new)
    chosen = by_version.get(champion) if champion else None
    if this is None or chosen is None:
        return "no eligible version on the workspace's validation set; the alias did not move"
    data = f"validation set {short(this.val_digest)} ({group_label([this])})"
    if champion == new:
        if previous is None or previous == new:
            return (f"version {new} is the champion: the best val accuracy "
                    f"({this.val_accuracy:.4f}) of the versions scored on {data}")
        before = by_version.get(previous)
        if before is not None and before.val_digest != this.val_digest:
            return (f"the champion moved from version {previous} to version {new}: the workspace's "
                    f"data is now {group_label([this])}, and version {previous} was scored on "
                    f"other data ({before.lineage.describe()}), so its val accuracy is not "
                    f"compared; version {new} is the best on {data} ({this.val_accuracy:.4f})")
        if before is not None and before.val_accuracy == this.val_accuracy:
            return (f"the champion moved from version {previous} to version {new}: the same val "
                    f"accuracy ({this.val_accuracy:.4f}) on {data}, and ties go to the newer "
                    "version")
        return (f"the champion moved from version {previous} to version {new}: val accuracy "
                f"{this.val_accuracy:.4f} beats the previous best on {data}")
    if this.collapsed:
        why = (f"version {new} collapsed (it predicts one class or no better than the majority "
               "class), and a collapsed run is never promoted")
    elif this.val_accuracy is None:
        why = f"version {new} has no val accuracy (was the evaluate stage run?)"
    else:
        tie = " (ties go to the newer version)" if this.val_accuracy == chosen.val_accuracy else ""
        why = (f"version {new} scored val accuracy {this.val_accuracy:.4f}, below version "
               f"{champion}'s {chosen.val_accuracy:.4f} on the same {data}{tie}")
    return (f"the champion stayed on version {champion}: {why}; test accuracy is never used to "
            "choose")
