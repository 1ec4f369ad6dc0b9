import mlflow
import pytest

from leukemia_cnn.registry import register
from leukemia_cnn.registry.register import Candidate, choose_champion


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def fake_training_run(val_accuracy, test_accuracy, collapsed=False, **tags):
    """A finished run with a logged (trivial) model and the metrics evaluate writes."""
    with mlflow.start_run() as run:
        mlflow.log_metrics({"val_accuracy": val_accuracy, "test_accuracy": test_accuracy})
        mlflow.set_tag("collapsed", str(collapsed).lower())
        mlflow.set_tags(tags)
        info = mlflow.pyfunc.log_model(name="model", python_model=Constant())
    return run.info.run_id, info.model_uri


def test_choose_champion_by_validation_never_test():
    found = [Candidate("1", "a", 0.80, 0.99, False), Candidate("2", "b", 0.85, 0.50, False),
             Candidate("3", "c", 0.95, 0.95, True), Candidate("4", "d", None, 0.9, False)]
    assert choose_champion(found).version == "2"
    assert choose_champion([Candidate("1", "a", 0.3, 0.3, True)]) is None


def test_register_and_promote_in_a_real_registry(make_cfg, mlflow_store, tmp_path, capsys):
    cfg = make_cfg()
    register.setup_mlflow(cfg, tmp_path)
    high_test = fake_training_run(0.70, 0.99)
    best_val = fake_training_run(0.90, 0.60)
    collapsed = fake_training_run(0.95, 0.95, collapsed=True)
    versions = [register.register(cfg, tmp_path, run_id, uri)
                for run_id, uri in (high_test, best_val, collapsed)]
    assert versions == ["1", "2", "3"]
    # Registering the same run again reuses its version.
    assert register.register(cfg, tmp_path, *best_val) == "2"

    assert register.promote(cfg, tmp_path) == "2"
    out = capsys.readouterr().out
    assert "<- champion" in out and "never test" in out
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("leukemia-cnn", "champion")
    assert str(champion.version) == "2" and champion.run_id == best_val[0]
    assert "val_accuracy=0.9000" in champion.tags["promoted_by"]
    # Idempotent.
    assert register.promote(cfg, tmp_path) == "2"
    assert "already on version 2" in capsys.readouterr().out
    # A better run moves the alias.
    better = fake_training_run(0.93, 0.10)
    assert register.register(cfg, tmp_path, *better) == "4"
    assert register.promote(cfg, tmp_path) == "4"


def test_register_stage_writes_record_and_sets_champion(trained):
    result = register.run(trained.cfg, trained.root)
    assert result["version"] == result["champion_version"]
    record = (trained.root / "reports" / "registered.json").read_text()
    assert '"alias": "champion"' in record
    version = mlflow.MlflowClient().get_model_version_by_alias("leukemia-cnn", "champion")
    assert version.run_id == trained.train["run_id"]


def test_promote_without_versions_is_a_clear_error(make_cfg, mlflow_store, tmp_path):
    with pytest.raises(register.LeukemiaCNNError, match="no versions"):
        register.promote(make_cfg(), tmp_path)


def test_choose_champion_by_configuration_mean_never_collapsed():
    found = [
        Candidate("1", "a", 0.95, 0.10, False, "cfgA", "lucky"),   # best single run
        Candidate("2", "b", 0.60, 0.90, False, "cfgA", "lucky"),
        Candidate("3", "c", 0.85, 0.50, False, "cfgB", "steady"),  # best mean: 0.845
        Candidate("4", "d", 0.84, 0.99, False, "cfgB", "steady"),
        Candidate("5", "e", 0.99, 0.99, True, "cfgC", "collapsing"),  # mean 0.985, none eligible
        Candidate("6", "f", 0.98, 0.99, True, "cfgC", "collapsing"),
    ]
    assert choose_champion(found).version == "1"
    assert choose_champion(found, by="config").version == "3"
    scores = register.config_scores(found)
    assert [s.label for s in scores] == ["steady", "lucky", "collapsing"]
    assert scores[0].mean_val_accuracy == pytest.approx(0.845) and scores[0].n_runs == 2
    with pytest.raises(register.LeukemiaCNNError, match="allowed: run, config"):
        choose_champion(found, by="test_accuracy")


def test_promote_by_configuration_records_why(make_cfg, mlflow_store, tmp_path, capsys):
    cfg = make_cfg()
    register.setup_mlflow(cfg, tmp_path)
    runs = [fake_training_run(0.95, 0.2, config_id="A", experiment_name="lucky"),
            fake_training_run(0.55, 0.9, config_id="A", experiment_name="lucky"),
            fake_training_run(0.86, 0.5, config_id="B", experiment_name="steady"),
            fake_training_run(0.84, 0.6, config_id="B", experiment_name="steady")]
    for run_id, uri in runs:
        register.register(cfg, tmp_path, run_id, uri)
    assert register.promote(cfg, tmp_path, by="config") == "3"
    assert "steady" in capsys.readouterr().out
    version = mlflow.MlflowClient().get_model_version_by_alias("leukemia-cnn", "champion")
    assert version.tags["promotion_mode"] == "config"
    reason = version.tags["promoted_by"]
    assert "best configuration by mean val_accuracy: steady" in reason and "0.8500" in reason
    assert "promoted" in version.description and "steady" in version.description
    # The default mode still takes the best single run.
    assert register.promote(cfg, tmp_path) == "1"
    version = mlflow.MlflowClient().get_model_version_by_alias("leukemia-cnn", "champion")
    assert version.tags["promotion_mode"] == "run"
