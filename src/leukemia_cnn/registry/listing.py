"""The tables ``promote`` prints: versions by validation set, and configurations by mean
validation accuracy."""

from __future__ import annotations

from leukemia_cnn.console import text_table
from leukemia_cnn.data.lineage import UNKNOWN, short
from leukemia_cnn.registry.candidates import Candidate
from leukemia_cnn.registry.champion import choose_champion, config_scores, data_groups, group_label

CANDIDATE_COLUMNS = ("version", "val_acc", "test_acc", "collapsed", "seed", "config", "run")


def format_candidates(found: list[Candidate], champion: Candidate | None,
                      selected: str | None = None, current: str | None = None,
                      alias_version: str | None = None, alias: str = "champion") -> str:
    """The versions grouped by the validation set they were scored on.

    Parameters
    ----------
    found : list of Candidate
        Every registered version.
    champion : Candidate, optional
        The chosen version (``<- champion``).
    selected : str, optional
        The ``val_digest`` of the group compared; with None (``--data all``) every group is
        shown with its best version marked.
    current : str, optional
        The workspace's ``val_digest``.
    alias_version : str, optional
        Where the alias is now (marked when it is not the champion).
    """
    lines = []
    for digest, members in data_groups(found).items():
        n_val = next((c.n_val for c in members if c.n_val is not None), None)
        notes = []
        if digest == current:
            notes.append("the workspace's current data")
        if selected is not None:
            notes.append("compared" if digest == selected else "other data: not compared")
        where = "unknown (runs logged before the data was recorded)" if digest == UNKNOWN \
            else short(digest)
        size = f", {n_val} val images" if n_val is not None else ""
        noted = "  [" + "; ".join(notes) + "]" if notes else ""
        lines.append(f"validation set {where}: {group_label(members)}{size}{noted}")
        best = choose_champion(members) if selected is None else None
        rows = []
        for c in members:
            marks = []
            if champion is not None and c.version == champion.version:
                marks.append("<- champion")
            elif best is not None and c.version == best.version:
                marks.append("<- best on this validation set")
            if c.version == alias_version and (champion is None or c.version != champion.version):
                marks.append(f"<- alias '{alias}' now")
            rows.append((c.version, _accuracy(c.val_accuracy), _accuracy(c.test_accuracy),
                         str(c.collapsed).lower(), c.seed or "-", (c.config_id or "-")[:12],
                         f"{c.run_name or c.run_id}{'  ' + ' '.join(marks) if marks else ''}"))
        lines.append(text_table(CANDIDATE_COLUMNS, rows, right=CANDIDATE_COLUMNS[:5], indent="  "))
    return "\n".join(lines)


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_config_scores(found: list[Candidate]) -> str:
    rows = [(score.label[:32], f"{score.mean_val_accuracy:.4f}", score.n_runs, score.n_eligible)
            for score in config_scores(found)]
    return text_table(("configuration", "mean_val", "runs", "eligible"), rows,
                      right=("mean_val", "runs", "eligible"))
