import math

import matplotlib
import mlflow
import numpy as np
import pandas as pd
import pytest

from helpers import table_rows
from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.fileio import OUTPUT_MARKER, is_marked
from leukemia_cnn.study import report, statistics
from leukemia_cnn.tracking.store import setup_mlflow

matplotlib.use("Agg")


# What tells the fake configurations apart in their logged params (the report groups runs by
# the configuration id of their params).
FAKE_PARAMS = {
    "table1_e15_b64_cce": {"train.batch_size": 64, "train.loss": "categorical_crossentropy"},
    "table1_e15_b64_bce": {"train.batch_size": 64, "train.loss": "binary_crossentropy"},
    "table1_e15_b32_cce": {"train.batch_size": 32, "train.loss": "categorical_crossentropy"},
    "table1_e10_b32_cce": {"train.batch_size": 32, "train.loss": "categorical_crossentropy",
                           "train.epochs": 10},
    "improved": {"train.batch_size": 16, "train.loss": "categorical_crossentropy",
                 "model.padding": "same"},
}


def fake_sweep_run(tmp_path, sweep_id, experiment, config, seed, val, test, collapsed=False,
                   faithful=True, keras_metric="CategoricalAccuracy", epochs=3):
    """A finished run shaped like a sweep job's: tags, params, metrics, curves, Fig. 2."""
    import matplotlib.pyplot as plt

    with mlflow.start_run(run_name=f"{experiment}-s{seed}") as run:
        mlflow.set_tags({"sweep_id": sweep_id, "experiment_name": experiment, "config_id": config,
                         "seed": str(seed), "collapsed": str(collapsed).lower(),
                         "paper_faithful": str(faithful).lower(),
                         "keras_accuracy_metric": keras_metric})
        mlflow.log_params({"train.epochs": epochs, "model.filters": "[64, 32, 128]",
                           "preprocess.image_size": 100, "preprocess.color_mode": "grayscale",
                           **FAKE_PARAMS.get(experiment, {})})
        for epoch in range(1, epochs + 1):
            mlflow.log_metrics({"loss": 1.0 / epoch, "val_loss": 1.1 / epoch,
                                "argmax_accuracy": val * epoch / epochs,
                                "val_argmax_accuracy": val * epoch / epochs}, step=epoch)
        mlflow.log_metrics({"val_accuracy": val, "test_accuracy": test,
                            "val_prediction_seconds": 0.5 + seed / 100,
                            "test_prediction_seconds": 0.4, "collapsed": int(collapsed)})
        figure = tmp_path / "sample_predictions.png"
        plt.imsave(figure, np.zeros((8, 8)))
        mlflow.log_artifact(str(figure), "evaluation")
    return run.info.run_id


@pytest.fixture
def study(make_cfg, mlflow_store, tmp_path):
    """Three seeds of three Table 1 rows, one seed of a fourth, and an improved config."""
    cfg = make_cfg()
    setup_mlflow(cfg, tmp_path)
    values = {  # config -> val accuracies per seed 1..3 (test = val + 0.01)
        "table1_e15_b64_cce": [0.80, 0.78, 0.82],
        "table1_e15_b32_cce": [0.70, 0.69, 0.71],   # always worse than b64: supported
        "table1_e15_b64_bce": [0.82, 0.75, 0.80],   # no consistent difference to cce
    }
    for name, vals in values.items():
        for seed, val in enumerate(vals, start=1):
            fake_sweep_run(tmp_path, "S1", name, f"id-{name}", seed, val, val + 0.01,
                           keras_metric="CategoricalAccuracy")
    fake_sweep_run(tmp_path, "S1", "table1_e10_b32_cce", "id-e10", 1, 0.25, 0.25, collapsed=True)
    for seed, val in enumerate([0.90, 0.91, 0.93], start=1):
        fake_sweep_run(tmp_path, "S2", "improved", "id-improved", seed, val, val, faithful=False)
    # A run outside any sweep (e.g. `dvc repro`) is not part of the study.
    with mlflow.start_run():
        mlflow.log_metrics({"val_accuracy": 0.99})
    return cfg, tmp_path


def _project_in_cwd(cfg, root, monkeypatch):
    """Make ``root`` a project the CLI finds from the working directory, with ``cfg`` as its
    params.yaml, and go there."""
    from leukemia_cnn.config import write_params

    (root / "conf").mkdir()
    (root / "conf" / "config.yaml").write_text("seed: 42\n")  # marks the project root
    write_params(cfg, root / "params.yaml")
    monkeypatch.chdir(root)


def test_summarize_mean_std_and_t_interval():
    stats = statistics.summarize(np.array([0.8, 0.78, 0.82]))
    assert stats["n"] == 3 and stats["mean"] == pytest.approx(0.8)
    assert stats["std"] == pytest.approx(0.02)
    # t(0.975, 2) = 4.303: half-width 4.303 * 0.02 / sqrt(3)
    assert stats["high"] - stats["mean"] == pytest.approx(4.3027 * 0.02 / math.sqrt(3), rel=1e-3)
    same = statistics.summarize(np.array([0.5, 0.5, 0.5]))  # no spread: the interval is a point
    assert same["std"] == 0 and same["low"] == same["high"] == pytest.approx(0.5)
    single = statistics.summarize(np.array([0.7]))
    assert single["n"] == 1 and math.isnan(single["std"]) and math.isnan(single["low"])


def test_paired_test_verdicts():
    seeds = [1, 2, 3]
    better = pd.Series([0.80, 0.78, 0.82], index=seeds)
    assert statistics.paired_test(better, better - 0.1)["verdict"] == "supported"
    assert statistics.paired_test(better - 0.1, better)["verdict"] == "contradicted"
    noisy = pd.Series([0.82, 0.75, 0.80], index=seeds)
    assert statistics.paired_test(better, noisy)["verdict"] == "not supported"
    assert statistics.paired_test(better, better)["verdict"] == "no difference"
    one = statistics.paired_test(better.loc[[1]], noisy.loc[[1]])
    assert one["verdict"] == "not enough seeds" and one["n"] == 1


def test_spread_test_verdicts_and_the_ratio_it_needs():
    tight = pd.Series([0.800, 0.801, 0.802], index=[1, 2, 3])
    wide = pd.Series([0.70, 0.80, 0.90], index=[4, 5, 6])  # the seeds need not pair up
    result = statistics.spread_test(tight, wide)
    assert result["verdict"] == "supported" and result["p"] < 0.001
    assert result["std_lower"] == pytest.approx(0.001) and result["std_higher"] == pytest.approx(0.1)
    # F(0.05; 2, 2) = 1/19: three seeds each call a spread lower only below 0.229 times the other.
    assert result["needed"] == pytest.approx(math.sqrt(1 / 19))
    assert statistics.spread_test(wide, tight)["verdict"] == "contradicted"
    similar = pd.Series([0.78, 0.80, 0.83], index=[1, 2, 3])
    assert statistics.spread_test(similar, wide)["verdict"] == "not supported"
    assert statistics.spread_test(wide, wide)["verdict"] == "no difference"
    assert statistics.spread_test(tight.loc[[1]], wide)["verdict"] == "not enough seeds"


def test_report_table_claims_and_figures_from_mlflow(study):
    cfg, root = study
    result = report.build(cfg, root)
    table = result["table"].set_index("label")
    assert result["n_runs"] == 13
    assert list(table.index[:4]) == ["table1_e15_b64_cce", "table1_e15_b64_bce",
                                     "table1_e15_b32_cce", "table1_e10_b32_cce"]
    assert table.loc["table1_e15_b64_cce", "val_accuracy.mean"] == pytest.approx(0.80)
    assert table.loc["table1_e15_b64_cce", "n_seeds"] == 3
    assert table.loc["table1_e10_b32_cce", "collapsed"] == 1
    assert not table.loc["improved", "faithful"]

    text = result["markdown"].read_text()
    # Paper-faithful rows apart from the rest, paper numbers beside ours.
    faithful_part, other_part = text.split("## Other configurations")
    labels = [row[0] for row in table_rows(faithful_part)]
    assert "table1_e15_b64_cce" in labels and "improved" not in labels
    assert "improved" in [row[0] for row in table_rows(other_part.split("## The paper's claims")[0])]
    row = next(row for row in table_rows(faithful_part) if row[0] == "table1_e15_b64_cce")
    assert any("0.800 ± 0.020" in cell for cell in row) and {"0.80", "0.82", "2.13"} <= set(row)
    assert any("CategoricalAccuracy" in cell for cell in row)

    claims = {c.split(" — ")[0].strip("- *"): c for c in result["claims"]}
    assert "The seeds support it" in claims["batch 64 beats batch 32 (15 epochs, categorical CE)"]
    assert "do not support" in claims["categorical CE beats binary CE (15 epochs, batch 64)"]
    assert "Not enough seeds" in claims["15 epochs beats 10 epochs (batch 32, categorical CE)"]
    improved = next(c for c in result["claims"] if c.startswith("**the improved configuration beats"))
    assert "improved" in text and "supported" in improved
    # Its spread: std 0.015 vs 0.020 over three seeds each, far from the 0.23 ratio needed.
    spread = next(c for c in result["claims"] if c.startswith("**the improved configuration varies"))
    assert "do not support" in spread and "std 0.015 vs 0.020" in spread
    assert "below 0.23 times" in spread
    for claim in result["claims"]:
        assert claim.replace("**", "").split(" — ")[0] in text.replace("**", "")

    # Fig. 3 and Fig. 2 of the best configuration (improved) and of the best paper-faithful one.
    assets = root / "reports" / "table1_files"
    files = sorted(p.name for p in assets.iterdir() if p.name != OUTPUT_MARKER)
    assert is_marked(assets, "report")  # a later report may replace it, nothing else
    assert any(f.startswith("fig3_curves_improved") for f in files)
    assert any(f.startswith("fig3_curves_table1_e15_b64_cce") for f in files)
    assert any(f.startswith("fig2_samples_improved") for f in files)
    for name in files:
        assert f"table1_files/{name}" in text
    html = result["html"].read_text()
    assert "<table" in html and "table1_e15_b64_cce" in html and "fig3_curves_improved" in html
    # Every claim is an item of a list (not a stray <li>), figures are images.
    assert html.count("<ul>") == 2 and html.count("<li>") == len(result["claims"])
    assert "<img src=\"table1_files/fig3_curves_improved" in html


def test_report_without_sample_images_has_no_image_of_the_data(study, monkeypatch, capsys):
    """`report --no-sample-images`: Fig. 3 curves only, no Fig. 2 (images of the data)."""
    from leukemia_cnn.cli.main import main as cli_main

    cfg, root = study
    _project_in_cwd(cfg, root, monkeypatch)
    assert cli_main(["report", "--no-sample-images", "--name", "public"]) == 0
    files = sorted(p.name for p in (root / "reports" / "public_files").iterdir())
    assert not [f for f in files if f.startswith("fig2")], files
    assert any(f.startswith("fig3_curves_improved") for f in files)
    text = (root / "reports" / "public.md").read_text()
    assert "Fig. 2" not in text and "Fig. 3" in text
    html = (root / "reports" / "public.html").read_text()
    assert "fig2_samples" not in html and "fig3_curves_improved" in html
    # the knob itself, as params.yaml or `dvc exp run -S` sets it
    cfg.report.sample_images = False
    cfg.report.name = "public2"
    text = report.build(cfg, root)["markdown"].read_text()
    assert "Fig. 2" not in text and "Fig. 3" in text


def test_report_restricted_to_one_sweep(study):
    cfg, root = study
    cfg.report.sweep_ids = ["S2"]
    result = report.build(cfg, root)
    assert list(result["table"]["label"]) == ["improved"]
    assert "_No paper-faithful runs._" in result["markdown"].read_text()


def test_runs_from_before_a_knob_existed_group_with_runs_that_log_its_default(study):
    """A run logged before `train.ema_momentum` existed (its tag hashed the old param set) and
    one logging it at its default (0.0) are the same configuration: one row, both seeds."""
    cfg, root = study
    before = fake_sweep_run(root, "S3", "table1_e15_b64_cce", "tag-old", 4, 0.81, 0.82)
    after = fake_sweep_run(root, "S3", "table1_e15_b64_cce", "tag-new", 5, 0.79, 0.80)
    mlflow.MlflowClient().log_param(after, "train.ema_momentum", "0.0")
    changed = fake_sweep_run(root, "S3", "table1_e15_b64_cce", "tag-ema", 6, 0.5, 0.5)
    mlflow.MlflowClient().log_param(changed, "train.ema_momentum", "0.99")
    cfg.report.sweep_ids = ["S1", "S3"]
    table = report.build(cfg, root)["table"]
    rows = table[table["label"].str.startswith("table1_e15_b64_cce")]
    assert sorted(rows["n_seeds"]) == [1, 5]  # seeds 1-5 together; the 0.99 run apart
    apart = rows[rows["n_seeds"] == 1]["label"].iloc[0]
    assert "train.ema_momentum=0.99" in apart
    assert before != after


def test_one_configuration_from_two_files_is_one_row_named_by_the_paper(study, monkeypatch):
    """conv3 is the paper's e15/b64/cce row under another file name: one row, named by the
    paper's row with the other name beside it, and the conv-layer claims tested on it."""
    cfg, root = study
    monkeypatch.setitem(FAKE_PARAMS, "conv3", FAKE_PARAMS["table1_e15_b64_cce"])
    monkeypatch.setitem(FAKE_PARAMS, "conv2", {**FAKE_PARAMS["table1_e15_b64_cce"],
                                              "model.filters": "[64, 32]"})
    for seed, val in enumerate([0.80, 0.78, 0.82], start=1):  # the same runs, conv3's name
        fake_sweep_run(root, "S4", "conv3", "id-conv3", seed, val, val + 0.01)
    for seed, val in enumerate([0.30, 0.31, 0.30], start=1):
        fake_sweep_run(root, "S4", "conv2", "id-conv2", seed, val, val, collapsed=True)
    cfg.report.sweep_ids = ["S1", "S4"]
    result = report.build(cfg, root)
    table = result["table"].set_index("label")
    assert "conv3" not in table.index and table.loc["table1_e15_b64_cce", "aliases"] == ["conv3"]
    assert table.loc["table1_e15_b64_cce", "n_seeds"] == 3
    text = result["markdown"].read_text()
    assert {"table1_e15_b64_cce (= conv3)", "conv2"} <= {row[0] for row in table_rows(text)}
    claims = {c.split(" — ")[0].strip("- *"): c for c in result["claims"]}
    beats_two = claims["3 conv layers (the paper's network) beat 2 (15 epochs, batch 64, "
                       "categorical CE)"]
    assert "The seeds support it" in beats_two
    assert "not tested: no runs of conv4" in claims[
        "3 conv layers (the paper's network) beat 4 (15 epochs, batch 64, categorical CE)"]
    # the paper's own claims still find their row under its Table 1 name
    assert "The seeds support it" in claims["batch 64 beats batch 32 (15 epochs, categorical CE)"]


def test_project_claims_say_when_two_configurations_share_the_improved_file(study):
    cfg, root = study
    run = fake_sweep_run(root, "S3", "improved", "tag-other", 1, 0.5, 0.5, faithful=False)
    mlflow.MlflowClient().log_param(run, "train.lr_warmup_epochs", "3")
    result = report.build(cfg, root)
    improved = [c for c in result["claims"] if c.startswith("**the improved")]
    assert len(improved) == 2
    for claim in improved:
        assert "not tested: 2 configurations come from improved" in claim
        assert "train.lr_warmup_epochs=3" in claim and "--sweep-id" in claim
    assert "not tested: 2 configurations" in result["markdown"].read_text()


def test_report_without_sweep_runs_is_a_clear_error(make_cfg, mlflow_store, tmp_path):
    cfg = make_cfg()
    with pytest.raises(LeukemiaCNNError, match="not found|no finished"):
        report.build(cfg, tmp_path)
    setup_mlflow(cfg, tmp_path)
    with mlflow.start_run():
        mlflow.log_metrics({"val_accuracy": 0.5})
    with pytest.raises(LeukemiaCNNError, match="leukemia-cnn sweep"):
        report.build(cfg, tmp_path)


def test_report_and_promote_by_config_through_the_cli(study, monkeypatch, capsys):
    """`leukemia-cnn report --sweep-id S1` and `promote --by config` as a user types them."""
    from leukemia_cnn.cli.main import main as cli_main

    cfg, root = study
    _project_in_cwd(cfg, root, monkeypatch)
    assert cli_main(["report", "--sweep-id", "S1"]) == 0
    out = capsys.readouterr().out
    assert "report: 10 runs, 4 configurations" in out and "batch 64 beats batch 32" in out
    text = (root / cfg.paths.reports_dir / "table1.md").read_text()
    assert "table1_e15_b64_cce" in text and "improved" not in text
    # No registered versions in this store: a one-line error, not a traceback.
    assert cli_main(["promote", "--by", "config"]) == 1
    assert "has no versions" in capsys.readouterr().err
    assert cli_main(["report", "--sweep-id", "nope"]) == 1
    assert "no finished, evaluated runs of sweeps ['nope']" in capsys.readouterr().err
    # --name: a second study's report beside the first, not over it.
    assert cli_main(["report", "--sweep-id", "S1", "--name", "spread"]) == 0
    capsys.readouterr()
    spread = (root / cfg.paths.reports_dir / "spread.md").read_text()
    assert spread == text.replace("table1_files/", "spread_files/") and "spread_files/" in spread
    assert (root / cfg.paths.reports_dir / "spread_files").is_dir()
    assert (root / cfg.paths.reports_dir / "table1.md").read_text() == text
    # A name that is a path would empty a folder outside reports/: refused, nothing written.
    (root / "keep").mkdir()
    (root / "keep_files").mkdir()
    (root / "keep_files" / "x.txt").write_text("kept")
    assert cli_main(["report", "--sweep-id", "S1", "--name", "../keep"]) == 1
    err = capsys.readouterr().err
    assert "`report.name` = '../keep' is invalid" in err and "--name spread" in err
    assert (root / "keep_files" / "x.txt").read_text() == "kept"


def test_data_statement_names_the_data_and_flags_synthetic_or_mixed_versions():
    from leukemia_cnn.study.sweep_runs import data_statement

    real = pd.DataFrame({"tags.data_source": ["kaggle"] * 2, "tags.data_version": ["abc"] * 2,
                         "params.data.n_train": ["1144"] * 2, "params.data.n_val": ["244"] * 2})
    text = data_statement(real)
    assert "source `kaggle`" in text and "`abc`" in text
    assert "1144 train and 244 val images" in text and "not claims" not in text
    synthetic = real.assign(**{"tags.data_source": "synthetic"})
    assert "not claims about leukemia" in data_statement(synthetic)
    mixed = real.assign(**{"tags.data_version": ["abc", "def"]})
    assert "More than one data version" in data_statement(mixed)


def test_a_report_killed_mid_way_leaves_no_half_figures_folder(study, monkeypatch):
    """SIGTERM while the figures are drawn: interrupted, no staging folder left beside them."""
    import os
    import signal

    cfg, root = study

    def killed(*args):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(report, "figures", killed)
    with pytest.raises(KeyboardInterrupt):
        report.build(cfg, root)
    assert not list((root / "reports").iterdir())
