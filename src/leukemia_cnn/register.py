"""Register stage and ``promote``: model versions in the MLflow registry and the alias that
marks the champion. The champion is chosen by validation accuracy, never by test accuracy,
and never a collapsed run. (MLflow stages Staging/Production are deprecated: aliases.)"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.tracking import setup_mlflow


@dataclass(frozen=True)
class Candidate:
    version: str
    run_id: str
    val_accuracy: float | None
    test_accuracy: float | None
    collapsed: bool

    @property
    def eligible(self) -> bool:
        return self.val_accuracy is not None and not self.collapsed


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
        found.append(Candidate(
            version=str(version.version), run_id=version.run_id,
            val_accuracy=metrics.get("val_accuracy"), test_accuracy=metrics.get("test_accuracy"),
            collapsed=tags.get("collapsed", "false") == "true" or metrics.get("collapsed", 0) > 0))
    return sorted(found, key=lambda c: int(c.version))


def choose_champion(found: list[Candidate]) -> Candidate | None:
    """Best validation accuracy; ties go to the newest version. Test accuracy is not looked at."""
    eligible = [c for c in found if c.eligible]
    if not eligible:
        return None
    return max(eligible, key=lambda c: (c.val_accuracy, int(c.version)))


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


def promote(cfg: DictConfig, root: Path, dry_run: bool = False, quiet: bool = False) -> str | None:
    """Point ``cfg.mlflow.champion_alias`` at the best eligible version; return its number."""
    setup_mlflow(cfg, root)
    name, alias = cfg.mlflow.registered_model_name, cfg.mlflow.champion_alias
    found = candidates(name)
    if not found:
        raise LeukemiaCNNError(f"registered model '{name}' has no versions in this store; "
                               "run `dvc repro` (the register stage) first")
    champion = choose_champion(found)
    if not quiet:
        print(f"promote: candidates for '{name}' (chosen by validation accuracy, never test):")
        print(format_candidates(found, champion))
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
    client.set_registered_model_alias(name, alias, champion.version)
    client.set_model_version_tag(name, champion.version, "promoted_by",
                                 f"best val_accuracy={champion.val_accuracy:.4f} among "
                                 f"{sum(c.eligible for c in found)} eligible versions")
    print(f"promote: alias '{alias}' -> version {champion.version} "
          f"(val_accuracy {champion.val_accuracy:.4f}; was {current})")
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
    version = str(mlflow.register_model(model_uri, name).version)
    for key in ("val_accuracy", "test_accuracy"):
        if key in run.data.metrics:
            client.set_model_version_tag(name, version, key, f"{run.data.metrics[key]:.4f}")
    client.set_model_version_tag(name, version, "collapsed", run.data.tags.get("collapsed", "false"))
    client.update_model_version(name, version, description=(
        f"{run.info.run_name}: {run.data.tags.get('hydra_overrides', '')}; data "
        f"{run.data.tags.get('data_version', '?')}; commit {run.data.tags.get('git_commit', '?')}"))
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
