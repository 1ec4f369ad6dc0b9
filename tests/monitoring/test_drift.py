"""`leukemia-cnn drift`: new images against the training images, on data the tests make.

One small project per module: the built-in synthetic set (a tenth of its size, 64x64 model
input, PCA(16)) through the validate_raw, split, preprocess and features stages. Its test
split is the "no drift" batch; colour-shifted, blurred, magnified and downsized copies of it
and scikit-image's sample images are the drifted ones.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from helpers import REPO_ROOT
from leukemia_cnn.cli.main import main as cli_main
from leukemia_cnn.errors import EXIT_UNFAMILIAR
from leukemia_cnn.monitoring import drift, drift_report

SAMPLES = ("astronaut", "camera", "chelsea", "coffee", "coins", "moon", "rocket", "horse",
           "clock", "immunohistochemistry", "cell", "brick")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A workspace with synthetic raw images, the split table, preprocessed arrays and the
    features stage's PCA (``data/features/{train,val,test}.npz``, ``pca.joblib``)."""
    from leukemia_cnn.config import load_config, load_params, validate_config, write_params
    from leukemia_cnn.data import preprocess, split, synthetic
    from leukemia_cnn.features import features
    from leukemia_cnn.quality import validate_raw

    root = tmp_path_factory.mktemp("drift")
    cfg = validate_config(load_config(["preprocess.image_size=64", "features.pca.n_components=16",
                                   "features.n_jobs=1"], root=REPO_ROOT))
    write_params(cfg, root / "params.yaml")
    classes = list(cfg.data.classes)
    synthetic.generate(root / cfg.paths.raw_dir, classes,
                       synthetic.class_sizes(cfg.data.synth.class_counts, classes, 0.1),
                       seed=5, progress=False, n_jobs=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'stages.db'}")
        for stage in (validate_raw, split, preprocess, features):
            stage.run(cfg, root)
    table = pd.read_csv(root / cfg.paths.splits)
    return {"root": root, "cfg": load_params(root / "params.yaml"),
            "test": table[table["split"] == "test"]}


def copy_test_split(project, folder: Path, change=None) -> Path:
    """The test split's raw images in the Kaggle layout; ``change`` (PIL -> PIL) re-encodes
    each as the synthetic set's JPEG (quality 92)."""
    raw = project["root"] / project["cfg"].paths.raw_dir
    for relative in project["test"]["path"]:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if change is None:
            shutil.copy(raw / relative, target)
        else:
            change(Image.open(raw / relative).convert("RGB")).save(target, "JPEG", quality=92)
    return folder


def stain_shift(image: Image.Image) -> Image.Image:
    """Another stain or white balance: less red, more blue."""
    rgb = np.asarray(image, dtype=np.float32) * np.array([0.85, 1.0, 1.12], np.float32)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def magnify(image: Image.Image) -> Image.Image:
    """Twice the magnification at the same pixel size: the centre, scaled up."""
    w, h = image.size
    return image.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4)).resize((w, h))


SHIFTS = {
    # name: (change, a feature the shift must move)
    "stain": (stain_shift, "red_mean"),
    "blur": (lambda image: image.filter(ImageFilter.GaussianBlur(2)), "focus"),
    "magnified": (magnify, "focus"),
    "downsized": (lambda image: image.resize((image.width // 2, image.height // 2)), "width"),
}


def drift_cli(project, monkeypatch, *args: str) -> int:
    monkeypatch.chdir(project["root"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project['root'] / 'mlflow.db'}")
    return cli_main(["drift", "--params", str(project["root"] / "params.yaml"), *args])


def shifted(result) -> set[str]:
    return {test.feature for test in result.tests if test.shifted}


def test_the_test_split_is_not_drift(project, tmp_path, monkeypatch, capsys):
    source = copy_test_split(project, tmp_path / "batch")
    assert drift_cli(project, monkeypatch, "--source", str(source), "--no-guard") == 0
    out = capsys.readouterr().out
    assert "no drift in" in out and "no feature shifted" in out
    report = project["root"] / "reports" / "drift" / "batch.md"
    text = report.read_text()
    assert text.startswith("# Drift check: batch") and "**Verdict: no drift** (exit status 0)" in text
    assert "Benjamini-Hochberg" in text and "the model was not asked" in text
    assert "<table>" in report.with_suffix(".html").read_text()


@pytest.mark.parametrize("name", sorted(SHIFTS))
def test_shifted_copies_are_drift_and_name_the_feature(project, tmp_path, monkeypatch, name):
    change, feature = SHIFTS[name]
    source = copy_test_split(project, tmp_path / name, change)
    assert drift_cli(project, monkeypatch, "--source", str(source), "--no-guard") == \
        EXIT_UNFAMILIAR
    result = drift.check(project["cfg"], project["root"], source, model_uri=None)
    assert result.drift and feature in shifted(result)


def test_scikit_image_samples_are_drift(project, tmp_path, monkeypatch):
    from skimage import data

    folder = tmp_path / "samples"
    folder.mkdir()
    for name in SAMPLES:
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.png")
    result = drift.check(project["cfg"], project["root"], folder, model_uri=None)
    assert result.n_images == len(SAMPLES) and result.drift
    assert {"width", "height", "intensity_mean"} <= shifted(result)
    assert drift_cli(project, monkeypatch, "--source", str(folder), "--no-guard") == \
        EXIT_UNFAMILIAR


def test_the_pca_components_are_compared_with_images_the_pca_was_not_fitted_on(project):
    """Train scores of a PCA fitted on train spread wider than any other image's (on real-dev
    the test split 'drifted' in 77 of 100 components against train, in none against val)."""
    reference = drift.load_reference(project["cfg"], project["root"])
    features = project["root"] / "data" / "features"
    with np.load(features / "val.npz") as val, np.load(features / "train.npz") as train:
        np.testing.assert_array_equal(reference.pca_features, val["x"])
        assert reference.n_measured == len(train["path"])  # the input features: every train image


def test_unreadable_and_special_files_are_skipped_with_their_reason(project, tmp_path):
    source = copy_test_split(project, tmp_path / "mixed")
    (source / "Pro" / "broken.jpg").write_bytes(b"not a jpeg")
    (source / "notes.txt").write_text("a note\n")
    os.mkfifo(source / "Pre" / "pipe.jpg")
    result = drift.check(project["cfg"], project["root"], source, model_uri=None)
    assert result.n_images == len(project["test"]) and not result.drift
    assert "not a decodable image" in result.skipped["Pro/broken.jpg"]
    assert "a FIFO (named pipe), not a regular file" in result.skipped["Pre/pipe.jpg"]
    assert "not an image extension" in result.skipped["notes.txt"]
    text = drift_report.markdown(result, project["cfg"])
    assert "## Skipped files (3)" in text
    assert "`Pre/pipe.jpg`: a FIFO (named pipe), not a regular file" in text


@pytest.mark.parametrize("make", ["missing", "empty", "no images"])
def test_a_missing_or_empty_folder_is_one_line_and_exit_1(project, tmp_path, monkeypatch,
                                                          capsys, make):
    source = tmp_path / "inbox"
    if make != "missing":
        source.mkdir()
    if make == "no images":
        (source / "readme.txt").write_text("nothing to see\n")
    assert drift_cli(project, monkeypatch, "--source", str(source), "--no-guard") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("leukemia-cnn drift: error: --source")
    assert ("no such folder" if make == "missing" else "no readable image") in err[0]


def test_output_never_replaces_a_file_it_did_not_write(project, tmp_path, monkeypatch, capsys):
    source = copy_test_split(project, tmp_path / "batch")
    notes = tmp_path / "notes.md"
    notes.write_text("my notes\n")
    assert drift_cli(project, monkeypatch, "--source", str(source), "--no-guard",
                     "--output", str(notes)) == 1
    assert notes.read_text() == "my notes\n"
    assert "nothing was written" in capsys.readouterr().err
    mine = tmp_path / "out" / "check.md"
    for _ in range(2):  # the second run replaces its own earlier report
        assert drift_cli(project, monkeypatch, "--source", str(source), "--no-guard",
                         "--output", str(mine)) == 0
    assert mine.read_text().startswith(drift_report.TITLE)
    assert (f'<meta name="generator" content="{drift_report.COMMAND}">'
            in mine.with_suffix(".html").read_text())


def test_each_check_is_an_mlflow_run_with_its_report(project, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    source = copy_test_split(project, tmp_path / "blurred", SHIFTS["blur"][0])
    assert drift_cli(project, monkeypatch, "--source", str(source), "--no-guard") == \
        EXIT_UNFAMILIAR
    client = MlflowClient(f"sqlite:///{project['root'] / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(project["cfg"].mlflow.experiment_name)
    (run,) = client.search_runs([experiment.experiment_id],
                                "attributes.run_name = 'drift-blurred'")
    assert run.data.tags["stage"] == "drift" and run.data.tags["drift_verdict"] == "drift"
    assert run.data.metrics["drift"] == 1 and run.data.metrics["n_images"] == len(project["test"])
    assert run.data.params["drift.correction"] == "bh"
    logged = {item.path for item in client.list_artifacts(run.info.run_id, "drift")}
    assert logged == {"drift/blurred.md", "drift/blurred.html"}


# ------------------------------------------------------------------ the model's guard


class BrightnessGuard(mlflow.pyfunc.PythonModel):
    """The served contract of a guarded model, made minimal: a DataFrame with a column
    ``image`` of encoded bytes in; per row a class, ``in_distribution`` and ``ood_score``
    out. It calls an image unusual when its mean gray level is below ``threshold``."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        levels = np.array([mean_gray(item) for item in model_input["image"]])
        return pd.DataFrame({"predicted_class": "Benign", "in_distribution": levels >= self.threshold,
                             "ood_score": self.threshold - levels, "model_version": "1"})


def mean_gray(encoded: bytes) -> float:
    return float(np.asarray(Image.open(io.BytesIO(bytes(encoded))).convert("L")).mean() / 255)


def log_guard_model(threshold: float) -> str:
    """Log :class:`BrightnessGuard` as an MLflow pyfunc model; return its URI."""
    import mlflow

    with mlflow.start_run():
        return mlflow.pyfunc.log_model(name="model", python_model=BrightnessGuard(threshold),
                                       pip_requirements=["pandas"]).model_uri


@pytest.mark.parametrize("quantile,drifted", [(0.0, False), (0.5, True)])
def test_the_share_the_guard_flags_decides_when_the_features_do_not(
        project, tmp_path, monkeypatch, quantile, drifted):
    import mlflow

    source = copy_test_split(project, tmp_path / "batch")
    levels = [mean_gray(path.read_bytes()) for path in sorted(source.rglob("*.jpg"))]
    threshold = float(np.quantile(levels, quantile))
    expected = sum(level < threshold for level in levels) / len(levels)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project['root'] / 'mlflow.db'}")
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    uri = log_guard_model(threshold)
    status = drift_cli(project, monkeypatch, "--source", str(source), "--model-uri", uri)
    assert status == (EXIT_UNFAMILIAR if drifted else 0)
    result = drift.check(project["cfg"], project["root"], source, model_uri=uri)
    assert result.guard.available and not shifted(result)
    assert result.guard.flagged_share == pytest.approx(expected)
    assert result.drift is drifted
    text = (project["root"] / "reports" / "drift" / "batch.md").read_text()
    assert f"flagged {result.guard.n_flagged} of {len(levels)} images" in text
    assert ("above the limit" if drifted else "within the limit") in text


def test_a_model_without_a_guard_is_reported_and_the_tests_decide(project, tmp_path,
                                                                   monkeypatch):
    from helpers.guard import register_tiny_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project['root'] / 'mlflow.db'}")
    register_tiny_model(project["root"])  # the project's own pyfunc model, the champion
    clean = copy_test_split(project, tmp_path / "clean")
    assert drift_cli(project, monkeypatch, "--source", str(clean)) == 0
    text = (project["root"] / "reports" / "drift" / "clean.md").read_text()
    assert "guard not available in this model (models:/leukemia-cnn@champion)" in text
    stained = copy_test_split(project, tmp_path / "stained", stain_shift)
    assert drift_cli(project, monkeypatch, "--source", str(stained)) == EXIT_UNFAMILIAR
    assert "guard not available" in (project["root"] / "reports" / "drift" / "stained.md"
                                     ).read_text()


def test_a_missing_model_says_to_pass_no_guard(project, tmp_path, monkeypatch, capsys):
    source = copy_test_split(project, tmp_path / "batch")
    assert drift_cli(project, monkeypatch, "--source", str(source),
                     "--model-uri", "models:/no-such-model@champion") == 1
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("leukemia-cnn drift: error: could not load model "
                          "models:/no-such-model@champion")
    assert err.endswith("or pass --no-guard to run the shift tests without a model")


# ------------------------------------------------------------------ limits (issue 31)


def test_one_image_is_too_few_to_judge(project, tmp_path, monkeypatch, capsys):
    """issue 31: `drift --source DIR` with 1 image said `no drift`, exit 0."""
    from leukemia_cnn.errors import EXIT_TOO_FEW

    source = copy_test_split(project, tmp_path / "one")
    for path in sorted(source.rglob("*.jpg"))[1:]:
        path.unlink()
    assert drift_cli(project, monkeypatch, "--source", str(source), "--no-guard") == EXIT_TOO_FEW
    out = capsys.readouterr().out
    assert "too few images to judge: 1 new image" in out and "no drift in" not in out
    text = (project["root"] / "reports" / "drift" / "one.md").read_text()
    assert "**Verdict: too few images to judge** (exit status 5)" in text
    minimum = project["cfg"].drift.min_images
    assert f"fewer than drift.min_images ({minimum})" in text


def test_a_shift_found_in_a_small_batch_is_still_drift(project, tmp_path):
    """Too few images to rule drift out, but not to find it: the verdict stands."""
    from skimage import data

    folder = tmp_path / "few"
    folder.mkdir()
    for name in SAMPLES[:8]:
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.png")
    result = drift.check(project["cfg"], project["root"], folder, model_uri=None)
    assert result.n_images < project["cfg"].drift.min_images
    assert result.drift and not result.verdict.too_few


def test_a_source_with_too_many_files_is_refused_while_it_is_listed(project, tmp_path,
                                                                  monkeypatch, capsys):
    """issue 31: `drift --source /` walked the whole filesystem for minutes, 3.8 GB RSS."""
    source = copy_test_split(project, tmp_path / "many")
    for index in range(30):
        (source / f"note-{index}.txt").write_text("not an image\n")
    assert drift_cli(project, monkeypatch, "--source", str(source), "--no-guard",
                     "--max-files", "20") == 1
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"leukemia-cnn drift: error: --source {source}: holds more than 20 "
                          "files (drift.max_files)") and "--max-files N" in err
    assert not (project["root"] / "reports" / "drift" / "many.md").exists()


def test_a_model_folder_without_mlmodel_is_refused_before_anything_is_copied(
        project, tmp_path, monkeypatch, capsys):
    """issue 31: MLflow copied a 2.7 GB folder to /tmp for 217 s, then a 400-character error."""
    source = copy_test_split(project, tmp_path / "batch")
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "weights.bin").write_bytes(b"\0" * 1000)
    for uri in (str(tmp_path / "big"), f"file://{tmp_path / 'big'}"):
        assert drift_cli(project, monkeypatch, "--source", str(source), "--model-uri", uri) == 1
        (err,) = capsys.readouterr().err.strip().splitlines()
        assert f"{tmp_path / 'big'} is not an MLflow model folder (no MLmodel file)" in err


def test_dash_prints_the_report_and_writes_no_file(project, tmp_path, monkeypatch, capsys):
    """issue 31: `drift --output /dev/stdout` into a pipe ran the whole check, then failed on
    `/proc/PID/fd/pipe:[N]...tmp`; `--output -` is the way to print the report."""
    source = copy_test_split(project, tmp_path / "piped")
    assert drift_cli(project, monkeypatch, "--source", str(source), "--no-guard",
                     "--output", "-") == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("# Drift check: piped") and "**Verdict: no drift**" in captured.out
    assert "drift: no drift in" in captured.err and "report printed above" in captured.err
    assert not (project["root"] / "reports" / "drift" / "piped.md").exists()


@pytest.mark.parametrize("change", ["edited", "missing"])
def test_a_data_raw_changed_since_the_features_stage_is_refused(project, tmp_path, monkeypatch,
                                                                capsys, change):
    """issue 31: after `data get --source <the same images re-stained>`, drift measured its
    reference on the new data/raw and called the re-stained test images "no drift"."""
    with np.load(project["root"] / "data" / "features" / "train.npz") as data:
        victim = project["root"] / project["cfg"].paths.raw_dir / str(data["path"][0])
    kept = victim.read_bytes()
    source = copy_test_split(project, tmp_path / "batch", stain_shift)
    try:
        if change == "edited":
            stain_shift(Image.open(victim).convert("RGB")).save(victim, "JPEG", quality=92)
        else:
            victim.unlink()
        assert drift_cli(project, monkeypatch, "--source", str(source), "--no-guard") == 1
    finally:
        victim.write_bytes(kept)
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "changed since the features stage ran: 1 of" in err and f"({change})" in err
    assert "dvc checkout" in err and "dvc repro" in err
