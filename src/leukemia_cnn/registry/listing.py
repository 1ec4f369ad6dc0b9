"""The tables ``promote`` prints: versions by validation set, and configurations by mean
validation accuracy."""

from __future__ import annotations

from leukemia_cnn.data.lineage import UNKNOWN, short
from leukemia_cnn.registry.candidates import Candidate
from leukemia_cnn.registry.champion import choose_champion, config_scores, data_groups, group_label


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
        lines.append(f"  {'version':>7}  {'val_acc':>7}  {'test_acc':>8}  {'collapsed':>9}  "
                     f"{'seed':>4}  {'config':<12}  run")
        best = choose_champion(members) if selected is None else None
        for c in members:
            val = f"{c.val_accuracy:.4f}" if c.val_accuracy is not None else "-"
            test = f"{c.test_accuracy:.4f}" if c.test_accuracy is not None else "-"
            marks = []
            if champion is not None and c.version == champion.version:
                marks.append("<- champion")
            elif best is not None and c.version == best.version:
                marks.append("<- best on this validation set")
            if c.version == alias_version and (champion is None or c.version != champion.version):
                marks.append(f"<- alias '{alias}' now")
            lines.append(f"  {c.version:>7}  {val:>7}  {test:>8}  {str(c.collapsed).lower():>9}  "
                         f"{c.seed or '-':>4}  {(c.config_id or '-')[:12]:<12}  "
                         f"{c.run_name or c.run_id}{'  ' + ' '.join(marks) if marks else ''}")
    return "\n".join(lines)


def format_config_scores(found: list[Candidate]) -> str:
    lines = [f"{'configuration':<32} {'mean_val':>8}  {'runs':>4}  {'eligible':>8}"]
    for score in config_scores(found):
        lines.append(f"{score.label[:32]:<32} {score.mean_val_accuracy:>8.4f}  "
                     f"{score.n_runs:>4}  {score.n_eligible:>8}")
    return "\n".join(lines)
