import hashlib
import json

import mlflow
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from leukemia_cnn.cli import summary
from leukemia_cnn.data.lineage import DataLineage, workspace_lineage
from leukemia_cnn.registry import register
from leukemia_cnn.registry.candidates import Candidate
from leukemia_cnn.registry.champion import choose_champion, config_scores, promotion_reason

CLASSES = ["Benign", "Early", "Pre", "Pro"]


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def use_data(cfg, root, name, source="folder", n_val=4):
    """Make ``root`` a workspace holding dataset ``name``: a data.dvc (its md5 and, for data
    that is not the built-in set, the origin `data get` records) and a split table."""
    rows = []
    for split, count in (("train", 8), ("val", n_val), ("test", 4)):
        for index in range(count):
            label = index % len(CLASSES)
            rows.append({"path": f"{CLASSES[label]}/{name}-{split}-{index}.jpg",
                         "class": CLASSES[label], "label": label,
                         "sha256": hashlib.sha256(f"{name}{split}{index}".encode()).hexdigest(),
                         "split": split})
    (root / "data").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "data" / "splits.csv", index=False)
    stage = {"outs": [{"md5": hashlib.md5(name.encode()).hexdigest() + ".dir",
                       "path": "data/raw"}]}
    if source != "synthetic":
        stage["meta"] = {"data_origin": {"source": source, "name": name,
                                         "uri": f"file:///datasets/{name}"}}
    (root / "data.dvc").write_text(yaml.safe_dump(stage, sort_keys=False))
    return workspace_lineage(cfg, root)


def fake_training_run(val_accuracy, test_accuracy, collapsed=False, lineage=None, **tags):
    """A finished run with a logged (trivial) model, the metrics evaluate writes and (with
    ``lineage``) the data tags a training run carries."""
    with mlflow.start_run() as run:
        mlflow.log_metrics({"val_accuracy": val_accuracy, "test_accuracy": test_accuracy,
                            "test_n_images": 4})
        mlflow.set_tag("collapsed", str(collapsed).lower())
        mlflow.set_tags({**(lineage.tags() if lineage else {}), **tags})
        # Pinned requirements: inferring them would take seconds per run.
        info = mlflow.pyfunc.log_model(name="model", python_model=Constant(),
                                       pip_requirements=["mlflow"])
    return run.info.run_id, info.model_uri


def register_runs(cfg, root, *runs):
    return [register.register(cfg, root, run_id, uri) for run_id, uri in runs]


def champion_version():
    return str(mlflow.MlflowClient().get_model_version_by_alias("leukemia-cnn",
                                                                "champion").version)


def test_choose_champion_by_validation_never_test():
    found = [Candidate("1", "a", 0.80, 0.99, False), Candidate("2", "b", 0.85, 0.50, False),
             Candidate("3", "c", 0.95, 0.95, True), Candidate("4", "d", None, 0.9, False)]
    assert choose_champion(found).version == "2"
    assert choose_champion([Candidate("1", "a", 0.3, 0.3, True)]) is None


@given(st.lists(st.sampled_from([0.5, 0.75, 0.9]), min_size=1, max_size=8))
def test_ties_go_to_the_newest_version_for_the_alias_and_the_other_data_note(accuracies):
    here = [Candidate(str(i + 1), f"r{i}", acc, None, False) for i, acc in enumerate(accuracies)]
    best = max(accuracies)
    newest_best = str(max(i + 1 for i, acc in enumerate(accuracies) if acc == best))
    assert choose_champion(here).version == newest_best
    # The same versions scored on other data: the reason names the same best version there.
    there = [Candidate(c.version, c.run_id, c.val_accuracy, None, False,
                       lineage=DataLineage("other", "v2", "t", "x", "val-b")) for c in here]
    reason = promotion_reason(here, choose_champion(here), "run", there)
    assert f"best there: version {newest_best}, val_accuracy {best:.4f}" in reason


def test_register_and_promote_in_a_real_registry(make_cfg, mlflow_store, tmp_path, capsys):
    cfg = make_cfg()
    data = use_data(cfg, tmp_path, "set-a")
    register.setup_mlflow(cfg, tmp_path)
    high_test = fake_training_run(0.70, 0.99, lineage=data)
    best_val = fake_training_run(0.90, 0.60, lineage=data)
    collapsed = fake_training_run(0.95, 0.95, collapsed=True, lineage=data)
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
    better = fake_training_run(0.93, 0.10, lineage=data)
    assert register.register(cfg, tmp_path, *better) == "4"
    assert register.promote(cfg, tmp_path) == "4"


def test_moving_the_alias_rewrites_both_cards(make_cfg, mlflow_store, tmp_path):
    cfg = make_cfg()
    data = use_data(cfg, tmp_path, "set-a")
    register.setup_mlflow(cfg, tmp_path)
    register_runs(cfg, tmp_path, fake_training_run(0.80, 0.7, lineage=data))
    assert register.promote(cfg, tmp_path) == "1"
    client = mlflow.MlflowClient()
    first = client.get_model_version("leukemia-cnn", "1").description
    assert "Aliases: `champion`" in first and "## Promotion\nPromoted:" in first
    register_runs(cfg, tmp_path, fake_training_run(0.90, 0.7, lineage=data))
    assert register.promote(cfg, tmp_path) == "2"
    old, new = (client.get_model_version("leukemia-cnn", v).description for v in ("1", "2"))
    assert "Aliases: none" in old and "Formerly promoted" in old
    assert "Aliases: `champion`" in new and "Promoted: " in new
    # the card artifact of each run is rewritten too
    for version, alias in (("1", "none"), ("2", "`champion`")):
        run_id = client.get_model_version("leukemia-cnn", version).run_id
        assert f"Aliases: {alias}" in mlflow.artifacts.load_text(f"runs:/{run_id}/model_card.md")


def test_the_registered_model_and_its_versions_describe_themselves(make_cfg, mlflow_store,
                                                                    tmp_path):
    cfg = make_cfg()
    data = use_data(cfg, tmp_path, "set-a")
    register.setup_mlflow(cfg, tmp_path)
    register_runs(cfg, tmp_path, fake_training_run(0.8, 0.7, lineage=data, git_commit="abc123"))
    client = mlflow.MlflowClient()
    model = client.get_registered_model("leukemia-cnn")
    assert "acute lymphoblastic leukemia" in model.description
    assert model.tags["task"] == "image-classification"
    assert model.tags["classes"] == "Benign, Early, Pre, Pro"
    assert client.get_model_version("leukemia-cnn", "1").tags["git_commit"] == "abc123"
    # a description written by hand is kept
    client.update_registered_model("leukemia-cnn", description="ours")
    register_runs(cfg, tmp_path, fake_training_run(0.8, 0.7, lineage=data))
    assert client.get_registered_model("leukemia-cnn").description == "ours"


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


def test_promote_without_a_split_table_asks_for_one_or_for_data(make_cfg, mlflow_store,
                                                                 tmp_path):
    cfg = make_cfg()
    register.setup_mlflow(cfg, tmp_path)
    register_runs(cfg, tmp_path, fake_training_run(0.8, 0.8))
    with pytest.raises(register.LeukemiaCNNError, match="dvc repro split.*--data"):
        register.promote(cfg, tmp_path)


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
    scores = config_scores(found)
    assert [s.label for s in scores] == ["steady", "lucky", "collapsing"]
    assert scores[0].mean_val_accuracy == pytest.approx(0.845) and scores[0].n_runs == 2
    with pytest.raises(register.LeukemiaCNNError, match="allowed: run, config"):
        choose_champion(found, by="test_accuracy")


def test_promote_by_configuration_records_why(make_cfg, mlflow_store, tmp_path, capsys):
    cfg = make_cfg()
    data = use_data(cfg, tmp_path, "set-a")
    register.setup_mlflow(cfg, tmp_path)
    runs = [fake_training_run(0.95, 0.2, config_id="A", experiment_name="lucky", lineage=data),
            fake_training_run(0.55, 0.9, config_id="A", experiment_name="lucky", lineage=data),
            fake_training_run(0.86, 0.5, config_id="B", experiment_name="steady", lineage=data),
            fake_training_run(0.84, 0.6, config_id="B", experiment_name="steady", lineage=data)]
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


def test_champion_follows_the_workspace_data_and_switching_back_restores_it(
        make_cfg, mlflow_store, tmp_path, capsys):
    cfg = make_cfg()
    register.setup_mlflow(cfg, tmp_path)
    built_in = use_data(cfg, tmp_path, "built-in", source="synthetic")
    v1, v2 = register_runs(cfg, tmp_path, fake_training_run(0.90, 0.90, lineage=built_in),
                           fake_training_run(0.80, 0.95, lineage=built_in))
    assert register.promote(cfg, tmp_path) == v1 == champion_version()

    # A second dataset: its model scores lower, on other images; it still becomes the champion.
    real = use_data(cfg, tmp_path, "real-dev", source="folder")
    assert real.val_digest != built_in.val_digest
    capsys.readouterr()
    (v3,) = register_runs(cfg, tmp_path, fake_training_run(0.60, 0.55, lineage=real))
    assert register.promote(cfg, tmp_path) == v3 == champion_version()
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines()
                  if line.startswith(f"validation set {real.val_digest[:12]}: "))
    assert "folder data 'real-dev'" in header
    assert "the workspace's current data; compared" in header
    assert "other data: not compared" in out
    assert "val_accuracy=0.6000 among 1 eligible versions scored on validation set" in out
    assert "2 version(s) scored on other data not compared (best there: version 1" in out
    reason = mlflow.MlflowClient().get_model_version("leukemia-cnn", v3).tags["promoted_by"]
    assert real.val_digest[:12] in reason

    # Back to the built-in data: its own champion again, not the last promoted version.
    use_data(cfg, tmp_path, "built-in", source="synthetic")
    assert register.promote(cfg, tmp_path) == v1 == champion_version()
    # And forth: the same choice every time (the alias depends only on the workspace data).
    use_data(cfg, tmp_path, "real-dev", source="folder")
    assert register.promote(cfg, tmp_path) == v3 == champion_version()
    assert v2 not in (champion_version(),)


def test_promote_data_all_lists_groups_and_a_named_version_picks_one(
        make_cfg, mlflow_store, tmp_path, capsys):
    cfg = make_cfg()
    register.setup_mlflow(cfg, tmp_path)
    first = use_data(cfg, tmp_path, "set-a", source="synthetic")
    (v1,) = register_runs(cfg, tmp_path, fake_training_run(0.70, 0.70, lineage=first))
    second = use_data(cfg, tmp_path, "set-b")
    (v2,) = register_runs(cfg, tmp_path, fake_training_run(0.90, 0.90, lineage=second))
    use_data(cfg, tmp_path, "set-a", source="synthetic")
    assert register.promote(cfg, tmp_path) == v1
    capsys.readouterr()

    assert register.promote(cfg, tmp_path, data="all") == v1
    out = capsys.readouterr().out
    assert champion_version() == v1, "--data all must not move the alias"
    assert f"validation set {first.val_digest[:12]}: synthetic data" in out
    assert f"validation set {second.val_digest[:12]}: folder data 'set-b'" in out
    assert "<- best on this validation set" in out and "lists 2 validation set(s)" in out

    # A data version (data.dvc md5, a prefix is enough) names the group explicitly.
    assert register.promote(cfg, tmp_path, data=second.version[:8]) == v2 == champion_version()
    assert register.promote(cfg, tmp_path, data=first.val_digest[:10]) == v1
    with pytest.raises(register.LeukemiaCNNError, match="names no data version.*set-b"):
        register.promote(cfg, tmp_path, data="ffffffff")


def test_study_and_plain_run_compared_on_the_same_data_never_across(make_cfg, mlflow_store,
                                                                    tmp_path, capsys):
    cfg = make_cfg()
    register.setup_mlflow(cfg, tmp_path)
    data = use_data(cfg, tmp_path, "set-a")
    study = [fake_training_run(val, 0.5, lineage=data, config_id="S", experiment_name="improved",
                               sweep_id="study") for val in (0.80, 0.82)]
    plain = fake_training_run(0.85, 0.5, lineage=data, config_id="P", stage="train")
    other = use_data(cfg, tmp_path, "set-b")
    elsewhere = fake_training_run(0.99, 0.99, lineage=other, config_id="S",
                                  experiment_name="improved", sweep_id="study")
    v_study1, v_study2, v_plain, v_other = register_runs(cfg, tmp_path, *study, plain, elsewhere)

    use_data(cfg, tmp_path, "set-a")
    # The plain run's configuration (mean 0.85) beats the study's (0.81) on the same data; the
    # study's 0.99 on other data does not lift configuration S.
    assert register.promote(cfg, tmp_path, by="config") == v_plain
    out = capsys.readouterr().out
    scores = out.split("configurations by mean validation accuracy")[1].split("\npromote:")[0]
    assert "0.8500" in scores and "0.8100" in scores and "0.99" not in scores
    assert register.promote(cfg, tmp_path) == v_plain
    use_data(cfg, tmp_path, "set-b")
    assert register.promote(cfg, tmp_path, by="config") == v_other
    assert {v_study1, v_study2}.isdisjoint({champion_version()})


def test_a_version_says_what_it_is(make_cfg, mlflow_store, tmp_path):
    cfg = make_cfg()
    register.setup_mlflow(cfg, tmp_path)
    data = use_data(cfg, tmp_path, "real-dev")
    (version,) = register_runs(cfg, tmp_path, fake_training_run(
        0.8125, 0.75, lineage=data, config_id="abc123", seed="7", experiment_name="improved"))
    stored = mlflow.MlflowClient().get_model_version("leukemia-cnn", version)
    for key in ("data_version", "data_source", "data_name", "data_uri", "val_digest"):
        assert stored.tags[key] == data.tags()[key], key
    assert stored.tags["config_id"] == "abc123" and stored.tags["seed"] == "7"
    assert stored.tags["val_accuracy"] == "0.8125" and stored.tags["n_test"] == "4"
    sentence = register.version_summary(register.candidates("leukemia-cnn")[0])
    assert stored.description.startswith(sentence)
    assert sentence == (
        f"Version {version}: CNN improved (configuration abc123, seed 7) trained on folder data "
        f"'real-dev' {data.version[:12]} (? train / ? val / 4 test images), scored on "
        f"validation set {data.val_digest[:12]}: val accuracy 0.8125, test accuracy 0.7500.")


def test_register_stage_explains_a_champion_that_did_not_move(make_cfg, mlflow_store, tmp_path,
                                                              capsys):
    cfg = make_cfg()
    register.setup_mlflow(cfg, tmp_path)
    data = use_data(cfg, tmp_path, "built-in", source="synthetic")
    best, worse = (fake_training_run(val, 0.5, lineage=data) for val in (0.90, 0.70))
    record = tmp_path / "models" / "run.json"
    record.parent.mkdir()
    for run_id, uri in (best, worse):
        record.write_text(json.dumps({"run_id": run_id, "model_uri": uri}))
        result = register.run(cfg, tmp_path)
    assert result["version"] == "2" and result["champion_version"] == "1"
    assert result["champion_explanation"] == (
        "the champion stayed on version 1: version 2 scored val accuracy 0.7000, below version "
        f"1's 0.9000 on the same validation set {data.val_digest[:12]} (synthetic data "
        f"{data.version[:12]}); test accuracy is never used to choose")

    (tmp_path / "reports" / "metrics.json").write_text(json.dumps(
        {"val_accuracy": 0.7, "test_accuracy": 0.5}))
    capsys.readouterr()
    summary.run(cfg, tmp_path)
    out = capsys.readouterr().out
    assert "The champion stayed on version 1: version 2 scored val accuracy 0.7000" in out
    assert "Version 2: CNN" in out
