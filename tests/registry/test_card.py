import re

import mlflow
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import table_rows
from leukemia_cnn.cli.main import main as cli_main
from leukemia_cnn.registry import register
from leukemia_cnn.registry.card import CARD_ARTIFACT, model_card
from leukemia_cnn.registry.card_publish import DESCRIPTION_LIMIT, description_text


@pytest.fixture
def registered(trained, monkeypatch):
    from leukemia_cnn.config import write_params

    result = register.run(trained.cfg, trained.root)
    monkeypatch.chdir(trained.root)
    write_params(trained.cfg, trained.root / "params.yaml")
    return trained, result["version"]


def test_card_of_a_registered_tiny_model_has_every_field(registered):
    trained, version = registered
    client = mlflow.MlflowClient()
    card = model_card(client, "leukemia-cnn", version)
    run = client.get_run(trained.train["run_id"])
    metrics, tags = run.data.metrics, run.data.tags

    assert card.startswith(f"# Model card: leukemia-cnn version {version}")
    assert "`champion`" in card  # register.run promoted it
    # data source and version, split sizes
    assert f"Source: synthetic; data version (data.dvc md5): `{tags['data_version']}`" in card
    assert "train 96 images" in card and "val 32" in card and "test 32" in card
    # per-class precision/recall/F1 on val and test, with the measured numbers
    rows = table_rows(card)
    for name in trained.cfg.data.classes:
        cells = next(row for row in rows if row[0] == name)
        assert cells[1:4] == [f"{metrics[f'val_{k}_{name}']:.3f}" for k in
                              ("precision", "recall", "f1")]
        assert cells[5:8] == [f"{metrics[f'test_{k}_{name}']:.3f}" for k in
                              ("precision", "recall", "f1")]
        assert cells[4] == cells[8] == "8"
    assert ["val", "32", f"{metrics['val_accuracy']:.3f}"] in [row[:3] for row in rows]
    # calibration before and after
    assert f"T = {metrics['calibration_fitted_temperature']:.3f} fitted on the validation" in card
    calibration = table_rows(card.split("## Calibration", 1)[1].split("\n## ", 1)[0])
    assert calibration[0] == ["split", "ECE before", "ECE after", "NLL before", "NLL after"]
    assert all(re.fullmatch(r"\d\.\d{3}", cell) for cell in calibration[2][1:])
    # configuration, training time, provenance
    assert "- `train.epochs`: 8" in card and "- `model.filters`: [8, 8, 8]" in card
    assert f"Training time: {metrics['train_seconds']:.0f} s for 8 epochs" in card
    assert tags["git_commit"] in card and run.info.run_id in card
    # known limits
    assert "Class balance (val + test): Benign 25%, Early 25%, Pre 25%, Pro 25%" in card
    assert "Grayscale 32x32 input" in card and "SYNTHETIC" in card
    assert "not a medical device" in card


def test_registration_logs_the_card_and_describes_the_version(registered):
    trained, version = registered
    client = mlflow.MlflowClient()
    model_version = client.get_model_version("leukemia-cnn", version)
    assert f"# Model card: leukemia-cnn version {version}" in model_version.description
    assert len(model_version.description) <= 5000  # MLflow's column size
    logged = mlflow.artifacts.load_text(f"runs:/{trained.train['run_id']}/{CARD_ARTIFACT}")
    assert logged.startswith(f"# Model card: leukemia-cnn version {version}")
    assert "## Calibration" in logged and "## Known limits" in logged


def test_card_cli_prints_the_champions_card(registered, capsys):
    trained, version = registered
    assert cli_main(["card"]) == 0
    assert capsys.readouterr().out.startswith(f"# Model card: leukemia-cnn version {version}")
    assert cli_main(["card", "999"]) == 1
    assert "has no version 999" in capsys.readouterr().err


@given(st.lists(st.text(alphabet="abcdefgh ", min_size=1, max_size=300), min_size=1,
                max_size=40))
def test_a_long_card_leaves_out_whole_sections_and_links_the_full_one(limit_lines):
    sections = [("", ["Aliases: `champion`."]), ("Intended use", ["use"]),
                ("Performance", ["| val | 32 | 0.900 |"]), ("Calibration", limit_lines),
                ("Training", ["- time"]), ("Configuration", ["- `train.epochs`: 8"]),
                ("Known limits", ["- research only"])]
    text = description_text("Version 1: a CNN.", "m", "1", "r1", sections)
    assert len(text) <= DESCRIPTION_LIMIT
    assert text.startswith("Version 1: a CNN.\n\n# Model card: m version 1")
    # what stays is whole: the performance and configuration sections are always there
    assert "| val | 32 | 0.900 |" in text and "- `train.epochs`: 8" in text
    if sum(map(len, limit_lines)) > DESCRIPTION_LIMIT:
        assert "## Calibration" not in text
        assert f"Full card: `runs:/r1/{CARD_ARTIFACT}`" in text
    else:
        assert all(line in text for line in limit_lines) and "Full card" not in text


def test_the_tiny_models_description_is_the_whole_card_with_its_configuration(registered):
    trained, version = registered
    client = mlflow.MlflowClient()
    description = client.get_model_version("leukemia-cnn", version).description
    card = model_card(client, "leukemia-cnn", version)
    body = description[description.index("# Model card"):]
    # the same card but for the time it was written
    assert body.split("\n", 3)[3] == card.split("\n", 3)[3]
    assert "- `train.epochs`: 8" in description and "see the run's" not in description
    assert "Aliases: `champion`" in description


def test_card_describes_the_out_of_distribution_guard(registered):
    trained, version = registered
    client = mlflow.MlflowClient()
    card = model_card(client, "leukemia-cnn", version)
    metrics = client.get_run(trained.train["run_id"]).data.metrics
    section = card.split("## Out-of-distribution guard", 1)[1].split("\n## ", 1)[0]
    assert "Method `mahalanobis+input`" in section
    assert f"threshold {metrics['guard_threshold']:.4g} (network in float32; " in section
    # the threshold a bfloat16 server uses, set on val computed in bfloat16
    assert (f"; {metrics['guard_threshold_bfloat16']:.4g} in bfloat16, set on val in bfloat16)"
            in section)
    test_row = next(row for row in table_rows(section) if row[0] == "test")
    assert test_row[2] == f"{metrics['test_false_flag_rate']:.3f}"
    assert "scikit-image's sample photos" in section and "re-stained" in section


def test_a_moderate_shift_that_costs_accuracy_is_a_limit_of_the_card():
    from leukemia_cnn.registry.card_robustness import shift_limit

    metrics = {"robustness/clean/accuracy": 0.99, "robustness/stain_0.05/accuracy": 0.425,
               "robustness/magnify_1.25/accuracy": 0.97, "robustness/magnify_2/accuracy": 0.3,
               "robustness/grayscale_1/accuracy": 0.25}
    line = shift_limit(metrics)
    # the moderate cases that fell more than 0.05, in MODERATE's order; magnify@2 is not moderate
    assert "clean 0.990; stain@0.05 0.425, grayscale@1 0.250)" in line
    assert "magnify" not in line and "not of the method" in line
    assert shift_limit({"robustness/clean/accuracy": 0.9,
                        "robustness/stain_0.05/accuracy": 0.88}) is None
    assert shift_limit({"test_accuracy": 0.9}) is None  # not scored by the robustness stage
