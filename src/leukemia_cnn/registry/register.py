"""Register stage and ``promote``: model versions in the MLflow registry and the alias (not
MLflow's deprecated stages) that marks the champion, chosen among the versions scored on one
validation set (champion.py)."""

from __future__ import annotations

import json
from pathlib import Path

from leukemia_cnn.config_schema import Config
from leukemia_cnn.console import text_table
from leukemia_cnn.data.lineage import UNKNOWN, DataLineage, short, workspace_lineage
from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.fileio import write_json
from leukemia_cnn.registry.candidates import (
    Candidate,
    candidate_from_run,
    candidates,
    current_alias_version,
    registry_client,
    version_summary,
    version_tags,
)
from leukemia_cnn.registry.card_publish import publish_card
from leukemia_cnn.registry.champion import (
    ALL_DATA,
    CURRENT_DATA,
    PROMOTE_MODES,
    choose_champion,
    config_scores,
    data_groups,
    explain_champion,
    group_label,
    promotion_reason,
    select_group,
)
from leukemia_cnn.tracking.store import setup_mlflow

# The tables promote prints: versions by validation set, configurations by mean val accuracy.
CANDIDATE_COLUMNS = ("version", "val_acc", "test_acc", "collapsed", "seed", "config", "run")


def format_candidates(found: list[Candidate], champion: Candidate | None,
                      selected: str | None = None, current: str | None = None,
                      alias_version: str | None = None, alias: str = "champion") -> str:
    """The versions grouped by the validation set they were scored on.

    Parameters
    ----------
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


def _show_choice(header: str, found: list[Candidate], champion: Candidate | None,
                 selected: str | None, current_digest: str, alias_version: str | None, alias: str,
                 scored_group: list[Candidate]) -> None:
    """Print the versions compared (and, for ``--by config``, the configurations of
    ``scored_group``)."""
    print(header)
    print(format_candidates(found, champion, selected, current_digest, alias_version, alias))
    if scored_group:
        print("promote: configurations by mean validation accuracy over their runs:")
        rows = [(score.label[:32], f"{score.mean_val_accuracy:.4f}", score.n_runs,
                 score.n_eligible) for score in config_scores(scored_group)]
        print(text_table(("configuration", "mean_val", "runs", "eligible"), rows,
                         right=("mean_val", "runs", "eligible")))


def _warn_unchanged(name: str, alias: str, selected: str, current: DataLineage,
                    scored: bool) -> None:
    """Say why the alias stays: no version scored on ``selected``, or none eligible there."""
    if not scored:
        print(f"promote: WARNING no version of '{name}' was scored on validation set "
              f"{short(selected)} ({current.describe()}, the workspace's current data); run "
              f"`dvc repro` to train one, or pick other data with `--data`; alias '{alias}' "
              "left unchanged")
        return
    print(f"promote: WARNING no eligible version of '{name}' on validation set "
          f"{short(selected)}: every version is collapsed or has no val_accuracy; alias "
          f"'{alias}' left unchanged")


def _move_alias(name: str, alias: str, champion: Candidate, alias_version: str | None,
                reason: str, by: str, dry_run: bool) -> str:
    """Point ``alias`` at ``champion`` (unless it is there already or ``dry_run``), tag why
    and rewrite the cards of the versions that gained or lost it; return its version."""
    if alias_version == champion.version:
        print(f"promote: alias '{alias}' already on version {champion.version}; nothing to do. "
              f"Why: {reason}")
        return champion.version
    if dry_run:
        print(f"promote: would move '{alias}' from {alias_version} to version "
              f"{champion.version}: {reason}")
        return champion.version
    client = registry_client()
    client.set_registered_model_alias(name, alias, champion.version)
    client.set_model_version_tag(name, champion.version, "promoted_by", reason)
    client.set_model_version_tag(name, champion.version, "promotion_mode", by)
    # The cards say where the alias is: rewrite both the new champion's and the old one's.
    for moved in {champion.version, alias_version} - {None}:
        publish_card(client, name, moved)
    print(f"promote: alias '{alias}' -> version {champion.version} "
          f"(val_accuracy {champion.val_accuracy:.4f}; was {alias_version}); {reason}")
    return champion.version


def promote(cfg: Config, root: Path, dry_run: bool = False, quiet: bool = False,
            by: str = "run", data: str = CURRENT_DATA) -> str | None:
    """Point ``cfg.mlflow.champion_alias`` at the best eligible version scored on one
    validation set; return its number.

    Parameters
    ----------
    cfg : Config
        Composed config (``mlflow``, ``paths``, ``data``).
    root : pathlib.Path
        Project root (the embedded store, the workspace's data and split table).
    dry_run : bool
        Show the choice, move nothing.
    quiet : bool
        Do not list the candidates.
    by : {"run", "config"}
        ``run`` (default): best single run by validation accuracy. ``config``: the
        configuration with the best mean validation accuracy over its seeds, then its best
        run. The reason goes into the version's ``promoted_by`` tag and description.
    data : str
        Which versions are compared: ``current`` (default: those scored on the workspace's
        current validation set), a data version or validation digest (or a unique prefix),
        or ``all``: list every validation set with its best version and move nothing
        (returns the version the alias is on).
    """
    if by not in PROMOTE_MODES:
        raise LeukemiaCNNError(f"promotion mode {by!r} is invalid; allowed: "
                               f"{', '.join(PROMOTE_MODES)}")
    setup_mlflow(cfg, root)
    name, alias = cfg.mlflow.registered_model_name, cfg.mlflow.champion_alias
    found = candidates(name)
    if not found:
        raise LeukemiaCNNError(f"registered model '{name}' has no versions in this store; "
                               "run `dvc repro` (the register stage) first")
    current = workspace_lineage(cfg, root)
    alias_version = current_alias_version(name, alias)
    header = (f"promote: versions of '{name}' by the validation set they were scored on "
              "(chosen by validation accuracy within one set, never test accuracy):")
    if data == ALL_DATA:  # every validation set with its best version; nothing moves
        _show_choice(header, found, None, None, current.val_digest, alias_version, alias, [])
        print(f"promote: --data all lists {len(data_groups(found))} validation set(s) and moves "
              f"nothing: accuracies on different data are not compared; alias '{alias}' stays "
              f"on version {alias_version}. Pick one with `--data <data version or validation "
              "digest>`")
        return alias_version
    selected = select_group(found, data, current)
    group = data_groups(found).get(selected, [])
    others = [c for c in found if c.val_digest != selected]
    champion = choose_champion(group, by=by) if group else None
    if not quiet:
        _show_choice(header, found, champion, selected, current.val_digest, alias_version,
                     alias, group if by == "config" else [])
    if champion is None:
        _warn_unchanged(name, alias, selected, current, bool(group))
        return None
    reason = promotion_reason(group, champion, by, others)
    return _move_alias(name, alias, champion, alias_version, reason, by, dry_run)


# The registered model says what every version is, how the champion is chosen and where to
# look; each version carries its own card (card.py).
MODEL_DESCRIPTION = (
    "Keras CNN classifying acute lymphoblastic leukemia peripheral-blood-smear images into "
    "{classes} (the leukemia-cnn project). Each version is one training run; its description "
    "is its model card (data, val/test accuracy per class, calibration, configuration, known "
    "limits). The alias `{alias}` marks the best validation accuracy among the versions scored "
    "on the workspace's current validation set, never chosen on test accuracy; `leukemia-cnn "
    "promote` moves it. Serve it with `mlflow models serve -m models:/{name}@{alias}`: it takes "
    "a DataFrame with an `image` column of encoded image bytes (JPEG, PNG) and answers the "
    "class and one probability per class. A research model, not a medical device.")


def register(cfg: Config, root: Path, run_id: str, model_uri: str) -> str:
    """Register the model of ``run_id`` (once: a re-run reuses its version); return the version.

    The version gets :func:`version_tags` and :func:`version_summary` as its description.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    setup_mlflow(cfg, root)
    client = registry_client()
    name = cfg.mlflow.registered_model_name
    try:
        existing = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except MlflowException:
        existing = []
    if existing:
        version = str(existing[0].version)
        print(f"register: run {run_id} already registered as '{name}' version {version}")
        return version
    run = client.get_run(run_id)
    if run.info.status != "FINISHED":
        raise LeukemiaCNNError(f"run {run_id} is {run.info.status}, not FINISHED (interrupted or "
                               "still running); not registering it: re-run the train stage")
    version = str(mlflow.register_model(model_uri, name).version)
    candidate = candidate_from_run(version, run)
    for key, value in version_tags(candidate).items():
        client.set_model_version_tag(name, version, key, value)
    summary = version_summary(candidate)
    client.update_model_version(name, version, description=summary)
    # The registered model's description (unless one was written by hand) and tags.
    alias, classes = cfg.mlflow.champion_alias, ", ".join(map(str, cfg.data.classes))
    current = client.get_registered_model(name).description or ""
    if not current or current.startswith(MODEL_DESCRIPTION[:40]):
        client.update_registered_model(name, description=MODEL_DESCRIPTION.format(
            classes=classes, name=name, alias=alias))
    tags = {"task": "image-classification", "classes": classes, "framework": "keras",
            "flavor": "pyfunc (with its preprocessing)",
            "input": "encoded image bytes (column `image`)", "champion_alias": alias,
            "experiment_id": run.info.experiment_id}
    for key, value in tags.items():
        client.set_registered_model_tag(name, key, value)
    client.set_model_version_tag(name, version, "git_commit",
                                 run.data.tags.get("git_commit", "unknown"))
    publish_card(client, name, version)  # model_card.md artifact + the version's description
    print(f"register: '{name}' version {version} from run {run_id}: {summary}")
    return version


def run(cfg: Config, root: Path) -> dict:
    """DVC stage ``register``: register the trained model, then promote the best version
    scored on the workspace's validation set."""
    record_path = root / cfg.paths.model_dir / "run.json"
    if not record_path.is_file():
        raise LeukemiaCNNError(f"{record_path} not found; run the train stage first")
    record = json.loads(record_path.read_text())
    version = register(cfg, root, record["run_id"], record["model_uri"])
    name, alias = cfg.mlflow.registered_model_name, cfg.mlflow.champion_alias
    previous = current_alias_version(name, alias)
    champion = promote(cfg, root)
    found = candidates(name)
    explanation = explain_champion(found, version, champion, previous)
    this = next((c for c in found if c.version == version), None)
    result = {"registered_model": name, "version": version, "run_id": record["run_id"],
              "alias": alias, "champion_version": champion, "previous_champion": previous,
              "champion_explanation": explanation,
              "version_summary": version_summary(this) if this else None}
    write_json(root / cfg.paths.reports_dir / "registered.json", result)
    print(f"register: {explanation}")
    return result
