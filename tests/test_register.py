import mlflow
import pytest

from leukemia_cnn import register
from leukemia_cnn.register import Candidate, choose_champion


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def fake_training_run(val_accuracy, test_accuracy, collapsed=False):
    """A finished run with a logged (trivial) model and the metrics evaluate writes."""
    with mlflow.start_run() as run:
        mlflow.log_metrics({"val_accuracy": val_accuracy, "test_accuracy": test_accuracy})
        mlflow.set_tag("collapsed", str(collapsed).lower())
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
