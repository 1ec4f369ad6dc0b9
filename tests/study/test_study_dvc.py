"""The study's other launch path: DVC's experiment queue, into the same MLflow store and report."""

import time

import mlflow
import pytest
import yaml

from helpers import sh, table_rows

CONFIGS = ("table1_e15_b64_cce", "table1_e15_b64_bce")


@pytest.mark.slow
def test_dvc_queue_runs_a_tiny_sweep_into_the_report_and_promotion(pipeline):
    # The tiny e2e project (its dvc repro already ran). Queued experiments run in DVC's temp
    # workspaces and leave this workspace as it is; they add runs to its MLflow store.
    repo = pipeline["repo"]
    for config in CONFIGS:
        for seed in (1, 2):
            sh("dvc", "exp", "run", "--queue", "-n", f"{config}-s{seed}", "-S", f"experiment={config}",
               "-S", f"seed={seed}", "-S", "sweep.id=dvcq", "-S", "train.epochs=1", cwd=repo)
    sh("dvc", "queue", "start", "-j", "1", cwd=repo)
    deadline = time.monotonic() + 1500
    while True:
        status = sh("dvc", "queue", "status", cwd=repo).stdout
        if not any(word in status for word in ("Queued", "Running")):
            break
        assert time.monotonic() < deadline, f"queue still busy:\n{status}"
        time.sleep(5)
    if status.count("Success") != 4:
        logs = "\n".join(sh("dvc", "queue", "logs", f"{c}-s{s}", cwd=repo, check=False).stdout[-3000:]
                         for c in CONFIGS for s in (1, 2))
        raise AssertionError(f"{status}\n{logs}")
    shown = sh("dvc", "exp", "show", "--json", cwd=repo).stdout
    for config in CONFIGS:
        assert f"{config}-s1" in shown and f"{config}-s2" in shown
    assert "val_accuracy" in shown

    # Every queued run landed in the project's store, tagged with the study it belongs to.
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["leukemia-cnn"], filter_string="tags.sweep_id = 'dvcq'")
    assert len(runs) == 4 and set(runs["status"]) == {"FINISHED"}
    assert sorted(runs["tags.experiment_name"]) == sorted(CONFIGS * 2)
    assert sorted(runs["tags.seed"]) == ["1", "1", "2", "2"]
    assert runs["tags.config_id"].nunique() == 2
    assert set(runs["params.train.epochs"]) == {"1"}
    # DVC's temporary experiment folders hold the workspace's data and split: the queued runs
    # were scored on the workspace's validation set, so promote compares them with its runs.
    from leukemia_cnn.config import load_config
    from leukemia_cnn.data.lineage import workspace_lineage

    assert set(runs["tags.val_digest"]) == {
        workspace_lineage(load_config([], root=repo), repo).val_digest}

    env = {"MLFLOW_TRACKING_URI": uri}
    out = sh("leukemia-cnn", "report", "--sweep-id", "dvcq", cwd=repo, env_extra=env).stdout
    assert "report: 4 runs, 2 configurations" in out
    table = (repo / "reports" / "table1.md").read_text()
    assert {"table1_e15_b64_cce", "table1_e15_b64_bce"} <= {row[0] for row in table_rows(table)}
    promoted = sh("leukemia-cnn", "promote", "--by", "config", cwd=repo, env_extra=env).stdout
    assert "configurations by mean validation accuracy" in promoted
    # The champion: the best run of the configuration with the best mean val accuracy among
    # every registered version (the queued four and the e2e pipeline's own), never collapsed.
    from leukemia_cnn.registry import register
    from leukemia_cnn.registry.champion import config_scores

    mlflow.set_registry_uri(uri)
    found = register.candidates("leukemia-cnn")
    assert len(found) >= 5
    best = next(score for score in config_scores(found) if score.n_eligible)
    champion = mlflow.MlflowClient().get_model_version_by_alias("leukemia-cnn", "champion")
    chosen = next(c for c in found if c.version == str(champion.version))
    assert chosen.config_key == best.config_key and not chosen.collapsed
    assert yaml.safe_load((repo / "params.yaml").read_text())["seed"] == 42  # workspace untouched
