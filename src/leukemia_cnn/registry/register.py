"""Register stage and ``promote``: model versions in the MLflow registry and the alias that
marks the champion. The champion is chosen by validation accuracy, never by test accuracy,
and never a collapsed run. (MLflow stages Staging/Production are deprecated: aliases.)"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.registry.card import publish_card
from leukemia_cnn.tracking.store import run_config_id, setup_mlflow

PROMOTE_MODES = ("run", "config")


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

    @property
    def eligible(self) -> bool:
        return self.val_accuracy is not None and not self.collapsed

    @property
    def config_key(self) -> str:
        """Seeds of one configuration share this key; a run without config id is its own."""
        return self.config_id or f"run:{self.run_id}"


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


def candidates(name: str) -> list[Candidate]:
    """Every version of registered model ``name`` with its run's validation accuracy."""
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
        metrics, tags = run.data.metrics, run.data.tags
        configuration = run_config_id(run.data.params, tags.get("config_id"))
        found.append(Candidate(
            version=str(version.version), run_id=version.run_id,
            val_accuracy=metrics.get("val_accuracy"), test_accuracy=metrics.get("test_accuracy"),
            collapsed=tags.get("collapsed", "false") == "true" or metrics.get("collapsed", 0) > 0,
            config_id=configuration,
            experiment_name=tags.get("experiment_name") or run.info.run_name))
    return sorted(found, key=lambda c: int(c.version))


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


def promotion_reason(found: list[Candidate], champion: Candidate, by: str) -> str:
    """Why ``champion`` was chosen, in one line (stored on the model version)."""
    n_eligible = sum(c.eligible for c in found)
    if by == "run":
        return (f"best val_accuracy={champion.val_accuracy:.4f} among {n_eligible} eligible "
                "versions (single best run; test accuracy not used; collapsed runs excluded)")
    scores = config_scores(found)
    best = scores[0]
    runner_up = (f"; next: {scores[1].label} {scores[1].mean_val_accuracy:.4f} over "
                 f"{scores[1].n_runs} runs" if len(scores) > 1 else "")
    return (f"best configuration by mean val_accuracy: {best.label} (config {best.config_key}) "
            f"{best.mean_val_accuracy:.4f} over {best.n_runs} runs among {len(scores)} "
            f"configurations{runner_up}; then its best eligible run val_accuracy="
            f"{champion.val_accuracy:.4f} (test accuracy not used; collapsed runs never promoted)")


def current_alias_version(name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def format_candidates(found: list[Candidate], champion: Candidate | None) -> str:
    lines = [f"{'version':>7}  {'val_acc':>7}  {'test_acc':>8}  {'collapsed':>9}  run_id"]
    for c in found:
        val = f"{c.val_accuracy:.4f}" if c.val_accuracy is not None else "-"
        test = f"{c.test_accuracy:.4f}" if c.test_accuracy is not None else "-"
        mark = "  <- champion" if champion is not None and c.version == champion.version else ""
        lines.append(f"{c.version:>7}  {val:>7}  {test:>8}  {str(c.collapsed).lower():>9}  "
                     f"{c.run_id}{mark}")
    return "\n".join(lines)


def format_config_scores(found: list[Candidate]) -> str:
    lines = [f"{'configuration':<32} {'mean_val':>8}  {'runs':>4}  {'eligible':>8}"]
    for score in config_scores(found):
        lines.append(f"{score.label[:32]:<32} {score.mean_val_accuracy:>8.4f}  "
                     f"{score.n_runs:>4}  {score.n_eligible:>8}")
    return "\n".join(lines)


def promote(cfg: DictConfig, root: Path, dry_run: bool = False, quiet: bool = False,
            by: str = "run") -> str | None:
    """Point ``cfg.mlflow.champion_alias`` at the best eligible version; return its number.

    Parameters
    ----------
    cfg : DictConfig
        Composed config (``mlflow``).
    root : pathlib.Path
        Project root (the embedded store).
    dry_run : bool
        Show the choice, move nothing.
    quiet : bool
        Do not list the candidates.
    by : {"run", "config"}
        ``run`` (default): best single run by validation accuracy. ``config``: the
        configuration with the best mean validation accuracy over its seeds, then its best
        run. The reason goes into the version's ``promoted_by`` tag and description.
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
    champion = choose_champion(found, by=by)
    if not quiet:
        print(f"promote: candidates for '{name}' (chosen by validation accuracy, never test):")
        print(format_candidates(found, champion))
        if by == "config":
            print("promote: configurations by mean validation accuracy over their runs:")
            print(format_config_scores(found))
    if champion is None:
        print(f"promote: WARNING no eligible version of '{name}': every version is collapsed "
              f"or has no val_accuracy; alias '{alias}' left unchanged")
        return None
    current = current_alias_version(name, alias)
    if current == champion.version:
        print(f"promote: alias '{alias}' already on version {champion.version}; nothing to do")
        return champion.version
    if dry_run:
        print(f"promote: would move '{alias}' from {current} to version {champion.version}")
        return champion.version
    client = _client()
    reason = promotion_reason(found, champion, by)
    client.set_registered_model_alias(name, alias, champion.version)
    client.set_model_version_tag(name, champion.version, "promoted_by", reason)
    client.set_model_version_tag(name, champion.version, "promotion_mode", by)
    description = client.get_model_version(name, champion.version).description or ""
    client.update_model_version(name, champion.version, description=(
        f"{description.split(' | promoted: ')[0]} | promoted: '{alias}' ({by}): {reason}"))
    print(f"promote: alias '{alias}' -> version {champion.version} "
          f"(val_accuracy {champion.val_accuracy:.4f}; was {current}); {reason}")
    return champion.version


def register(cfg: DictConfig, root: Path, run_id: str, model_uri: str) -> str:
    """Register the model of ``run_id`` (once: a re-run reuses its version); return the version."""
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
    for key in ("val_accuracy", "test_accuracy"):
        if key in run.data.metrics:
            client.set_model_version_tag(name, version, key, f"{run.data.metrics[key]:.4f}")
    client.set_model_version_tag(name, version, "collapsed", run.data.tags.get("collapsed", "false"))
    client.update_model_version(name, version, description=(
        f"{run.info.run_name}: {run.data.tags.get('hydra_overrides', '')}; data "
        f"{run.data.tags.get('data_version', '?')}; commit {run.data.tags.get('git_commit', '?')}"))
    publish_card(client, name, version)  # model_card.md artifact + the version's description
    print(f"register: '{name}' version {version} from run {run_id}")
    return version


def run(cfg: DictConfig, root: Path) -> dict:
    """DVC stage ``register``: register the trained model, then promote the best version."""
    record_path = root / cfg.paths.model_dir / "run.json"
    if not record_path.is_file():
        raise LeukemiaCNNError(f"{record_path} not found; run the train stage first")
    record = json.loads(record_path.read_text())
    version = register(cfg, root, record["run_id"], record["model_uri"])
    champion = promote(cfg, root)
    result = {"registered_model": cfg.mlflow.registered_model_name, "version": version,
              "run_id": record["run_id"], "alias": cfg.mlflow.champion_alias,
              "champion_version": champion}
    out = root / cfg.paths.reports_dir / "registered.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result
