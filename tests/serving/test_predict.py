import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import blob_images
from leukemia_cnn.cli.main import main as cli_main
from leukemia_cnn.errors import EXIT_UNFAMILIAR, DataError
from leukemia_cnn.registry import register
from leukemia_cnn.serving.predict import predict_files, read_images


def write_jpegs(folder, labels, size=224):
    folder.mkdir(parents=True, exist_ok=True)
    images = blob_images(np.asarray(labels), size, seed=7)
    paths = []
    for index, image in enumerate(images):
        rgb = np.repeat((image * 255).astype(np.uint8), 3, axis=2)
        path = folder / f"cell-{index}.jpg"
        Image.fromarray(rgb).save(path, quality=95)
        paths.append(str(path))
    return paths


@pytest.fixture
def champion(trained):
    register.run(trained.cfg, trained.root)
    return trained


def test_predict_with_the_champion_returns_a_class_and_probabilities(champion, tmp_path):
    classes = list(champion.cfg.data.classes)
    paths = write_jpegs(tmp_path / "imgs", [0, 1, 2, 3])
    result = predict_files("models:/leukemia-cnn@champion", paths)
    assert list(result["path"]) == paths
    assert set(result["predicted_class"]) <= set(classes)
    probabilities = result[[f"p_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_served_preprocessing_matches_the_preprocess_stage(champion, tmp_path):
    """The logged model's own preprocessing gives what the arrays it was trained on give."""
    import mlflow

    from leukemia_cnn.data.imaging import load_model_input

    paths = write_jpegs(tmp_path / "imgs", [0, 3])
    model = mlflow.pyfunc.load_model("models:/leukemia-cnn@champion")
    from_bytes = model.predict(read_images(paths))
    arrays = np.stack([load_model_input(p, 32, "grayscale") for p in paths])
    from_arrays = model.unwrap_python_model().predict_arrays(arrays)
    assert from_bytes["error"].isna().all()  # every row decoded (serving/payload.py)
    pd.testing.assert_frame_equal(from_bytes.drop(columns="error"), from_arrays)


def test_predict_arrays_in_chunks_gives_what_keras_predict_gives(champion):
    import mlflow

    wrapper = mlflow.pyfunc.load_model("models:/leukemia-cnn@champion").unwrap_python_model()
    arrays = blob_images(np.arange(7) % 4, 32, seed=3)

    chunked = wrapper.predict_arrays(arrays, batch_size=3)  # chunks of 3, 3 and 1

    from leukemia_cnn.modeling.calibration import apply_temperature

    # the served probabilities are Keras's after the temperature train fit on val
    expected = apply_temperature(wrapper.model.predict(arrays, verbose=0), wrapper.temperature)
    classes = list(champion.cfg.data.classes)
    np.testing.assert_allclose(chunked[[f"p_{c}" for c in classes]].to_numpy(), expected,
                               rtol=1e-5, atol=1e-6)
    assert list(chunked["predicted_class"]) == [classes[i] for i in expected.argmax(axis=1)]
    empty = wrapper.predict_arrays(arrays[:0])
    assert len(empty) == 0 and list(empty.columns) == list(chunked.columns)


def test_predict_cli_writes_json(champion, tmp_path, monkeypatch):
    monkeypatch.chdir(champion.root)
    from leukemia_cnn.config import write_params

    write_params(champion.cfg, champion.root / "params.yaml")
    paths = write_jpegs(tmp_path / "imgs", [1, 2])
    out = tmp_path / "pred.json"
    assert cli_main(["predict", *paths, "--format", "json", "--output", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [row["path"] for row in rows] == paths
    assert all(row["predicted_class"] in champion.cfg.data.classes for row in rows)


def test_bad_image_is_a_clear_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="broken.jpg"):
        read_images([str(bad)])
    with pytest.raises(DataError, match="missing.jpg: no such file"):
        read_images([str(tmp_path / "missing.jpg")])


def test_cli_reports_bad_image_without_traceback(champion, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(champion.root)
    from leukemia_cnn.config import write_params

    write_params(champion.cfg, champion.root / "params.yaml")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(io.BytesIO(b"\xff\xd8\xff\xe0 truncated").getvalue())
    assert cli_main(["predict", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "Traceback" not in err


def test_one_bad_file_does_not_sink_the_batch(guard_project, monkeypatch, capfd, tmp_path):
    """Every readable image is classified; each unreadable one is named on stderr with its
    reason and marked in column `error`; the command exits 1."""
    from helpers.guard import GUARD_IMAGE

    monkeypatch.chdir(guard_project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bad, missing = tmp_path / "bad.png", tmp_path / "missing.jpg"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "rows.csv"
    code = cli_main(["predict", GUARD_IMAGE, str(bad), str(missing), "--output", str(out)])
    err = capfd.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"predict: skipped {bad}: not a decodable image" in err
    assert f"predict: skipped {missing}: no such file" in err
    assert "skipped 2 of 3 images" in err
    rows = pd.read_csv(out)
    assert list(rows["path"]) == [GUARD_IMAGE, str(bad), str(missing)]
    assert rows.loc[0, "predicted_class"] in ("Benign", "Early", "Pre", "Pro")
    assert pd.isna(rows.loc[0, "error"]) and rows["predicted_class"][1:].isna().all()
    assert rows.loc[1, "error"].startswith(f"{bad}: not a decodable image")

    assert cli_main(["predict", GUARD_IMAGE, str(bad), "--format", "json"]) == 1
    records = json.loads(capfd.readouterr().out)
    assert records[0]["error"] is None and records[0]["predicted_class"]
    assert records[1]["predicted_class"] is None and "not a decodable image" in records[1]["error"]


def test_predict_never_overwrites_its_input(guard_project, monkeypatch, capfd):
    from helpers.guard import GUARD_IMAGE

    monkeypatch.chdir(guard_project)
    before = (guard_project / GUARD_IMAGE).read_bytes()
    assert cli_main(["predict", GUARD_IMAGE, "--output", GUARD_IMAGE]) == 1
    err = capfd.readouterr().err
    assert f"--output {GUARD_IMAGE}: is an input of this command" in err
    assert (guard_project / GUARD_IMAGE).read_bytes() == before


@pytest.mark.parametrize("where", ["folder", "missing folder"])
def test_predict_output_to_a_folder_or_a_missing_one(guard_project, monkeypatch, capfd, where):
    """A folder is refused before the model loads; a file in a missing folder is written."""
    from helpers.guard import GUARD_IMAGE

    monkeypatch.chdir(guard_project)
    if where == "folder":
        (guard_project / "out-folder").mkdir()
        code = cli_main(["predict", GUARD_IMAGE, "--output", "out-folder"])
        err = capfd.readouterr().err
        assert code == 1 and "--output out-folder: is a folder; pass a file path" in err
        assert "Traceback" not in err and "predict: wrote" not in err
        assert list((guard_project / "out-folder").iterdir()) == []
        (guard_project / "out-folder").rmdir()
    else:
        code = cli_main(["predict", GUARD_IMAGE, "--output", "new-folder/deeper/rows.csv"])
        assert code == 0, capfd.readouterr().err
        assert (guard_project / "new-folder/deeper/rows.csv").read_text().startswith("path,")
        shutil.rmtree(guard_project / "new-folder")
def test_predict_names_the_model_and_warns_on_other_data(champion, tmp_path, monkeypatch,
                                                         capsys):
    import mlflow

    monkeypatch.chdir(champion.root)
    from leukemia_cnn.config import write_params

    write_params(champion.cfg, champion.root / "params.yaml")
    version = mlflow.MlflowClient().get_model_version_by_alias("leukemia-cnn", "champion")
    paths = write_jpegs(tmp_path / "imgs", [1])
    assert cli_main(["predict", *paths]) == 0
    err = capsys.readouterr().err
    val = mlflow.get_run(version.run_id).data.metrics["val_accuracy"]
    assert (f"predict: model leukemia-cnn version {version.version} "
            f"(models:/leukemia-cnn@champion): trained on ") in err
    assert f"val accuracy {val:.4f}" in err and "WARNING" not in err

    # The workspace's data changes (a new data.dvc): the same model is now from other data.
    dvc_file = champion.root / "data.dvc"
    dvc_file.write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: data/raw\n")
    try:
        assert cli_main(["predict", *paths]) == 0
    finally:
        dvc_file.unlink()
    err = capsys.readouterr().err
    assert f"WARNING: model leukemia-cnn version {version.version} was trained on " in err
    assert "not on the workspace's current data (synthetic data 0123456789ab" in err


def test_each_prediction_carries_the_model_version_that_answered(champion, tmp_path):
    import mlflow

    version = mlflow.MlflowClient().get_model_version_by_alias("leukemia-cnn", "champion")
    images = read_images(write_jpegs(tmp_path / "imgs", [0, 2]))
    by_alias = mlflow.pyfunc.load_model("models:/leukemia-cnn@champion").predict(images)
    assert list(by_alias["model_version"]) == [str(version.version)] * 2
    assert set(by_alias["model_name"]) == {"leukemia-cnn"}
    by_run = mlflow.pyfunc.load_model(f"runs:/{version.run_id}/leukemia-cnn", dst_path=str(
        tmp_path / "by-run")).predict(images)
    assert set(by_run["model_version"]) == {"unregistered"}


def camera_jpeg(folder) -> str:
    """scikit-image's camera man: a photo, nothing like a smear."""
    from leukemia_cnn.data.shifts import skimage_samples

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "camera.jpg"
    skimage_samples(("camera",))["camera"].save(path, quality=92)
    return str(path)


def test_every_row_says_whether_to_trust_it_and_stderr_counts_the_flagged(
        champion, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(champion.root)
    from leukemia_cnn.config import write_params

    write_params(champion.cfg, champion.root / "params.yaml")
    paths = [*write_jpegs(tmp_path / "imgs", [0, 3]), camera_jpeg(tmp_path / "imgs")]
    out = tmp_path / "rows.csv"
    assert cli_main(["predict", *paths, "--output", str(out)]) == 0
    rows = pd.read_csv(out)
    assert rows["in_distribution"].dtype == bool and rows["ood_score"].dtype == float
    assert not rows["in_distribution"].iloc[2]  # the photo is flagged, still classified
    assert rows["predicted_class"].notna().all()
    flagged = int((~rows["in_distribution"]).sum())
    err = capsys.readouterr().err
    assert f"predict: {flagged} of 3 images flagged as unlike the training images" in err


def test_reject_unfamiliar_leaves_flagged_images_without_a_class(champion, tmp_path,
                                                                 monkeypatch, capsys):
    monkeypatch.chdir(champion.root)
    from leukemia_cnn.config import write_params

    write_params(champion.cfg, champion.root / "params.yaml")
    paths = [*write_jpegs(tmp_path / "imgs", [1]), camera_jpeg(tmp_path / "imgs")]
    code = cli_main(["predict", *paths, "--format", "json", "--reject-unfamiliar"])
    assert code == EXIT_UNFAMILIAR == 4
    records = json.loads(capsys.readouterr().out)
    camera = records[1]
    assert camera["in_distribution"] is False and camera["ood_score"] > 0
    assert camera["predicted_class"] is None
    assert all(camera[f"p_{name}"] is None for name in champion.cfg.data.classes)
    for record in records:  # an accepted image keeps its class
        assert (record["predicted_class"] is not None) == record["in_distribution"]


def header_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels."""
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_a_nan_image_and_a_pil_warning_are_one_line_each(guard_project, tmp_path):
    """issue 31: a float TIFF with a NaN patch turned black without a word while numpy's
    RuntimeWarning leaked; a 90-million-pixel header leaked PIL's DecompressionBombWarning as
    two raw lines before our own refusal. The real command, its stderr as a user sees it."""
    from helpers import sh
    from helpers.guard import GUARD_IMAGE

    values = np.random.default_rng(0).uniform(0, 1, (40, 40)).astype(np.float32)
    values[10:20, 10:20] = np.nan
    Image.fromarray(values, "F").save(tmp_path / "nan-patch.tif")
    (tmp_path / "wide.png").write_bytes(header_png(10_000, 9_000))  # PIL warns above 89.5 M
    done = sh("leukemia-cnn", "predict", GUARD_IMAGE, str(tmp_path / "nan-patch.tif"),
              str(tmp_path / "wide.png"), cwd=guard_project, check=False)
    assert done.returncode == 1, done.stderr
    assert "Warning" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert (f"predict: skipped {tmp_path / 'nan-patch.tif'}: 100 of 1,600 pixels are NaN or "
            "infinite") in done.stderr
    assert (f"predict: skipped {tmp_path / 'wide.png'}: 10000x9000 pixels exceeds the "
            "50,000,000-pixel limit") in done.stderr
    rows = pd.read_csv(io.StringIO(done.stdout))
    assert rows["predicted_class"].notna().tolist() == [True, False, False]


def test_predict_sends_its_files_in_requests_under_the_pixel_cap(guard_project, monkeypatch,
                                                                 capfd, tmp_path):
    """The served model's cap on pixels per request marks the rows past it; `predict` is no
    server: it sends its files in as many requests as the cap needs, and every file gets its
    class (a row the model itself refuses keeps the model's reason, under its file name)."""
    from helpers.datasets import image_bytes
    from leukemia_cnn.serving import payload

    monkeypatch.chdir(guard_project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(payload, "MAX_REQUEST_PIXELS", 2 * 48 * 48)
    files = []
    for seed in range(5):
        files.append(tmp_path / f"cell-{seed}.png")
        files[-1].write_bytes(image_bytes(seed, size=(48, 48), fmt="PNG"))
    assert cli_main(["predict", *map(str, files), "--format", "json"]) == 0
    records = json.loads(capfd.readouterr().out)
    assert [record["path"] for record in records] == list(map(str, files))
    assert all(record["predicted_class"] and record["error"] is None for record in records)
