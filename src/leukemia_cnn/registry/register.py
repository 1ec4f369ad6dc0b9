"""Register stage and ``promote``: model versions in the MLflow registry and the alias that
marks the champion.

A validation accuracy is comparable only with another measured on the same validation rows,
so versions are grouped by the ``val_digest`` of their training run (lineage.py) and the
champion is chosen inside one group: by default the group of the workspace's current data and
split, so after ``dvc repro`` on new data the alias moves to the best model of the new data.
Inside the group: validation accuracy, never test accuracy, never a collapsed run. (MLflow
stages Staging/Production are deprecated: aliases.)"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from leukemia_cnn.data.lineage import UNKNOWN, DataLineage, short, workspace_lineage
from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.registry.card import publish_card
from leukemia_cnn.registry.metadata import describe_registered_model
from leukemia_cnn.tracking.store import run_config_id, setup_mlflow

PROMOTE_MODES = ("run", "config")
# `promote --data`: the workspace's validation set, every group (listed, nothing moved), or a
# data version / validation digest (a prefix is enough).
CURRENT_DATA, ALL_DATA = "current", "all"
NO_LINEAGE = DataLineage(UNKNOWN, UNKNOWN, UNKNOWN, "", UNKNOWN)


@dataclass(frozen=True)
class Candidate:
    """A registered version with what promotion looks at (never its test accuracy)."""

    version: str
    run_id: str
    val_accuracy: float | None
    test_accuracy: float | None
    collapsed: bool
    # The run's configuration (tag/params ``config_id``: every knob but the seed) and the
    # conf/experiment file it came from; None for runs that predate them.
    config_id: str | None = None
    experiment_name: str | None = None
    # The data the run was trained and validated on (``unknown`` for runs that predate it).
    lineage: DataLineage = field(default=NO_LINEAGE)
    seed: str | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    run_name: str | None = None

    @property
    def eligible(self) -> bool:
        return self.val_accuracy is not None and not self.collapsed

    @property
    def config_key(self) -> str:
        """Seeds of one configuration share this key; a run without config id is its own."""
        return self.config_id or f"run:{self.run_id}"

    @property
    def val_digest(self) -> str:
        return self.lineage.val_digest


@dataclass(frozen=True)
class ConfigScore:
    """A configuration's mean validation accuracy over its registered runs (collapsed ones
    included: a configuration that collapses on some seeds pays for it)."""

    config_key: str
    label: str
    mean_val_accuracy: float
    n_runs: int
    n_eligible: int


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def _count(value) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def candidate_from_run(version: str, run) -> Candidate:
    """A :class:`Candidate` from a model version number and its MLflow training run."""
    metrics, tags, params = run.data.metrics, run.data.tags, run.data.params
    return Candidate(
        version=str(version), run_id=run.info.run_id,
        val_accuracy=metrics.get("val_accuracy"), test_accuracy=metrics.get("test_accuracy"),
        collapsed=tags.get("collapsed", "false") == "true" or metrics.get("collapsed", 0) > 0,
        config_id=run_config_id(params, tags.get("config_id")),
        experiment_name=tags.get("experiment_name") or run.info.run_name,
        lineage=DataLineage.from_tags(tags), seed=tags.get("seed"),
        n_train=_count(params.get("data.n_train")),
        n_val=_count(params.get("data.n_val", metrics.get("val_n_images"))),
        n_test=_count(metrics.get("test_n_images")), run_name=run.info.run_name)


def candidates(name: str) -> list[Candidate]:
    """Every version of registered model ``name`` with its run's validation accuracy and data."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return []
    found = []
    for version in versions:
        try:
            run = client.get_run(version.run_id)
        except MlflowException:
            continue
        found.append(candidate_from_run(str(version.version), run))
    return sorted(found, key=lambda c: int(c.version))


def version_summary(c: Candidate) -> str:
    """One sentence saying what a model version is: its configuration and seed, the data it
    was trained on (source, version, split sizes), the validation set it was scored on and
    its val and test accuracy. The version's description starts with it."""

    def size(n: int | None) -> str:
        return "?" if n is None else str(n)

    def accuracy(value: float | None) -> str:
        return "?" if value is None else f"{value:.4f}"

    label = c.experiment_name or c.run_name or c.run_id
    collapsed = " (collapsed: never promoted)" if c.collapsed else ""
    return (f"Version {c.version}: CNN {label} (configuration {c.config_id or '?'}, seed "
            f"{c.seed or '?'}) trained on {c.lineage.describe()} ({size(c.n_train)} train / "
            f"{size(c.n_val)} val / {size(c.n_test)} test images), scored on validation set "
            f"{short(c.val_digest)}: val accuracy {accuracy(c.val_accuracy)}, test accuracy "
            f"{accuracy(c.test_accuracy)}{collapsed}.")


def data_groups(found: list[Candidate]) -> dict[str, list[Candidate]]:
    """The versions by the validation set they were scored on (``val_digest``), in order of
    their newest version."""
    groups: dict[str, list[Candidate]] = {}
    for c in sorted(found, key=lambda c: int(c.version), reverse=True):
        groups.setdefault(c.val_digest, []).append(c)
    return {digest: sorted(members, key=lambda c: int(c.version))
            for digest, members in groups.items()}


def group_label(members: list[Candidate]) -> str:
    """The data of a group in words (several data versions can share a validation set when
    only their train or test images differ)."""
    seen = []
    for c in members:
        if c.lineage.describe() not in seen:
            seen.append(c.lineage.describe())
    return ", ".join(seen)


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
    found : list of Candidate
        Every registered version.
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
    return max(eligible, key=lambda c: (c.val_accuracy, int(c.version)))


def _other_data_note(others: list[Candidate]) -> str:
    """``; N versions scored on other data not compared (best there: ...)``, or ``""``."""
    scored = [c for c in others if c.eligible]
    if not others:
        return ""
    note = f"; {len(others)} version(s) scored on other data not compared"
    if scored:
        best = max(scored, key=lambda c: (c.val_accuracy, int(c.version)))
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


def current_alias_version(name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


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


def promote(cfg: DictConfig, root: Path, dry_run: bool = False, quiet: bool = False,
            by: str = "run", data: str = CURRENT_DATA) -> str | None:
    """Point ``cfg.mlflow.champion_alias`` at the best eligible version scored on one
    validation set; return its number.

    Parameters
    ----------
    cfg : DictConfig
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
    if data == ALL_DATA:
        print(header)
        print(format_candidates(found, None, None, current.val_digest, alias_version, alias))
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
        print(header)
        print(format_candidates(found, champion, selected, current.val_digest, alias_version,
                                alias))
        if by == "config" and group:
            print("promote: configurations by mean validation accuracy over their runs:")
            print(format_config_scores(group))
    if not group:
        print(f"promote: WARNING no version of '{name}' was scored on validation set "
              f"{short(selected)} ({current.describe()}, the workspace's current data); run "
              f"`dvc repro` to train one, or pick other data with `--data`; alias '{alias}' "
              "left unchanged")
        return None
    if champion is None:
        print(f"promote: WARNING no eligible version of '{name}' on validation set "
              f"{short(selected)}: every version is collapsed or has no val_accuracy; alias "
              f"'{alias}' left unchanged")
        return None
    reason = promotion_reason(group, champion, by, others)
    if alias_version == champion.version:
        print(f"promote: alias '{alias}' already on version {champion.version}; nothing to do. "
              f"Why: {reason}")
        return champion.version
    if dry_run:
        print(f"promote: would move '{alias}' from {alias_version} to version "
              f"{champion.version}: {reason}")
        return champion.version
    client = _client()
    client.set_registered_model_alias(name, alias, champion.version)
    client.set_model_version_tag(name, champion.version, "promoted_by", reason)
    client.set_model_version_tag(name, champion.version, "promotion_mode", by)
    # The cards say where the alias is: rewrite both the new champion's and the old one's.
    for moved in {champion.version, alias_version} - {None}:
        publish_card(client, name, moved)
    print(f"promote: alias '{alias}' -> version {champion.version} "
          f"(val_accuracy {champion.val_accuracy:.4f}; was {alias_version}); {reason}")
    return champion.version


def version_tags(c: Candidate) -> dict[str, str]:
    """The tags a model version carries: its data lineage, sizes, configuration, seed and
    accuracies (searchable in the registry, e.g. ``tags.val_digest = '...'``)."""
    tags = {**c.lineage.tags(), "config_id": c.config_id or "", "seed": c.seed or "",
            "run_name": c.run_name or "", "collapsed": str(c.collapsed).lower()}
    for key, value in (("n_train", c.n_train), ("n_val", c.n_val), ("n_test", c.n_test)):
        if value is not None:
            tags[key] = str(value)
    for key, value in (("val_accuracy", c.val_accuracy), ("test_accuracy", c.test_accuracy)):
        if value is not None:
            tags[key] = f"{value:.4f}"
    return {k: v for k, v in tags.items() if v != ""}


def register(cfg: DictConfig, root: Path, run_id: str, model_uri: str) -> str:
    """Register the model of ``run_id`` (once: a re-run reuses its version); return the version.

    The version gets :func:`version_tags` and :func:`version_summary` as its description.
    """
    import mlflow

    setup_mlflow(cfg, root)
    client = _client()
    name = cfg.mlflow.registered_model_name
    from mlflow.exceptions import MlflowException

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
    describe_registered_model(client, cfg, run)  # the model's description, tags; commit tag
    client.set_model_version_tag(name, version, "git_commit",
                                 run.data.tags.get("git_commit", "unknown"))
    publish_card(client, name, version)  # model_card.md artifact + the version's description
    print(f"register: '{name}' version {version} from run {run_id}: {summary}")
    return version


def explain_champion(found: list[Candidate], new: str, champion: str | None,
                     previous: str | None) -> str:
    """In words, why the alias is where it is after registering version ``new``.

    Parameters
    ----------
    found : list of Candidate
        Every registered version.
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
        was = by_version.get(previous)
        if was is not None and was.val_accuracy == this.val_accuracy:
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


def resolve_model(model_uri: str) -> tuple[str | None, Candidate | None]:
    """The registered model name and the :class:`Candidate` behind ``model_uri``
    (``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/RUN_ID/...``); ``(None,
    None)`` when it cannot be looked up (a path, a missing version)."""
    import re

    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        if match := re.fullmatch(r"models:/([^/@]+)@([^/]+)/?", model_uri):
            version = client.get_model_version_by_alias(*match.groups())
        elif match := re.fullmatch(r"models:/([^/@]+)/(\d+)/?", model_uri):
            version = client.get_model_version(*match.groups())
        elif match := re.fullmatch(r"runs:/([^/]+)/.*", model_uri):
            return None, candidate_from_run("-", client.get_run(match.group(1)))
        else:
            return None, None
        return version.name, candidate_from_run(str(version.version),
                                                client.get_run(version.run_id))
    except MlflowException:
        return None, None


def model_provenance(cfg: DictConfig, root: Path, model_uri: str) -> list[str]:
    """Lines saying which model answers (version, the data it was trained on, its val
    accuracy), with a warning when that data is not the workspace's current data."""
    name, c = resolve_model(model_uri)
    if c is None:
        return [f"model {model_uri}: not found in the registry, so the data it was trained on "
                "is unknown"]
    which = f"model {name} version {c.version}" if name else f"model of run {c.run_id}"
    val = "?" if c.val_accuracy is None else f"{c.val_accuracy:.4f}"
    lines = [f"{which} ({model_uri}): trained on {c.lineage.describe()}, val accuracy {val} "
             f"on validation set {short(c.val_digest)}"]
    current = workspace_lineage(cfg, root)
    if c.lineage.version != current.version:
        lines.append(f"WARNING: {which} was trained on {c.lineage.describe()}, not on the "
                     f"workspace's current data ({current.describe()}, data.dvc): its accuracy "
                     "says nothing about images like those; run `dvc repro` to train and promote "
                     "a model on the current data (or `leukemia-cnn promote` if one exists)")
    return lines


def run(cfg: DictConfig, root: Path) -> dict:
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
    out = root / cfg.paths.reports_dir / "registered.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"register: {explanation}")
    return result
