"""The out-of-distribution guard: fitted by the train stage on built-in synthetic smears,
it accepts most test smears and flags photos, re-stained, blurred and re-magnified smears; the
served model answers with it."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import REPO_ROOT, TINY_OVERRIDES
from leukemia_cnn.data import shifts
from leukemia_cnn.data.imaging import to_model_input
from leukemia_cnn.data.smear import generate_image, image_rng
from leukemia_cnn.errors import ConfigError
from leukemia_cnn.features import imagestats
from leukemia_cnn.modeling import guard as guard_module

PER_CLASS = {"train": 40, "val": 15, "test": 15}


def synthetic_split(classes, count: int, seed: int) -> tuple[list, np.ndarray]:
    """``count`` built-in synthetic smear fields per class (PIL images) and their labels."""
    images, labels = [], []
    for index, name in enumerate(classes):
        for number in range(count):
            images.append(generate_image(image_rng(seed, index, number), name, 224))
            labels.append(index)
    return images, np.array(labels, dtype=np.int64)


def model_inputs(images, size: int) -> np.ndarray:
    return np.stack([to_model_input(image, size, "grayscale") for image in images])


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """The train stage on built-in synthetic smears (tiny config), with its MLflow store."""
    import mlflow

    from leukemia_cnn.config import load_config
    from leukemia_cnn.modeling import train

    root = tmp_path_factory.mktemp("guard-run")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = load_config(TINY_OVERRIDES, root=REPO_ROOT)
    size, classes = cfg.preprocess.image_size, list(cfg.data.classes)
    folder = root / cfg.paths.preprocessed_dir
    folder.mkdir(parents=True)
    raw = {}
    for seed, (split, count) in enumerate(PER_CLASS.items(), start=1):
        images, labels = synthetic_split(classes, count, seed)
        raw[split] = images
        np.savez(folder / f"{split}.npz", x=model_inputs(images, size), y=labels,
                 path=np.array([f"{classes[y]}/{split}-{i}.jpg" for i, y in enumerate(labels)]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        record = train.run(cfg, root)
        run = mlflow.get_run(record["run_id"])
        served = mlflow.pyfunc.load_model(record["model_uri"])
    import keras

    model = keras.saving.load_model(root / cfg.paths.model_dir / "cnn.keras", compile=False)
    guard = guard_module.load_guard(root / cfg.paths.model_dir / guard_module.GUARD_FILE)
    return SimpleNamespace(root=root, cfg=cfg, size=size, raw=raw, run=run, served=served,
                           model=model, guard=guard)


def flagged_share(run, images) -> float:
    result = guard_module.score_images(run.guard, run.model, model_inputs(images, run.size))
    return float(np.mean(~result.in_distribution))


def test_train_stage_fits_saves_and_logs_the_guard(synthetic_run):
    guard, run = synthetic_run.guard, synthetic_run.run
    assert guard.method == "mahalanobis+input" and guard.accept_rate == 0.95
    # the threshold accepts about 95% of val (60 images: at least 57)
    assert 0.95 <= guard.val_accept_rate <= 1.0
    assert run.data.tags["guard_method"] == "mahalanobis+input"
    assert run.data.metrics["guard_threshold"] == pytest.approx(guard.threshold)
    assert run.data.metrics["guard_val_accept_rate"] == pytest.approx(guard.val_accept_rate)
    assert run.data.params["train.guard_accept_rate"] == "0.95"
    # thresholded again on val computed in bfloat16, the other precision it may serve in
    assert guard.precision == "float32"
    in_bfloat16 = guard.in_precision("bfloat16")
    assert 0.95 <= in_bfloat16.val_accept_rate <= 1.0
    assert run.data.metrics["guard_threshold_bfloat16"] == pytest.approx(in_bfloat16.threshold)
    assert run.data.metrics["guard_val_accept_rate_bfloat16"] == pytest.approx(
        in_bfloat16.val_accept_rate)
    summary = json.loads((synthetic_run.root / "reports" / "train.json").read_text())
    assert summary["guard_method"] == "mahalanobis+input"


def test_most_test_smears_are_accepted(synthetic_run):
    assert flagged_share(synthetic_run, synthetic_run.raw["test"]) <= 0.15


def test_scikit_image_samples_are_flagged(synthetic_run):
    samples = shifts.skimage_samples()
    assert len(samples) == len(shifts.SKIMAGE_SAMPLES)
    assert flagged_share(synthetic_run, list(samples.values())) >= 0.9


@pytest.mark.parametrize("shift", shifts.SHIFTS)
def test_stain_blur_and_scale_shifted_smears_are_flagged(synthetic_run, shift):
    test_images = synthetic_run.raw["test"]
    assert flagged_share(synthetic_run, [shifts.shifted(im, shift) for im in test_images]) >= 0.8


def jpeg(image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def test_served_model_answers_with_in_distribution_and_ood_score(synthetic_run):
    smears = synthetic_run.raw["test"][:3]
    photos = [shifts.skimage_samples(("camera", "chelsea"))[name] for name in ("camera", "chelsea")]
    frame = pd.DataFrame({"image": [jpeg(image) for image in smears + photos]})
    answer = synthetic_run.served.predict(frame)
    assert {"predicted_class", "in_distribution", "ood_score"} <= set(answer.columns)
    assert answer["in_distribution"].dtype == bool
    # the threshold of the precision it serves in
    served = synthetic_run.served.unwrap_python_model()
    threshold = synthetic_run.guard.in_precision(served.precision).threshold
    assert served.guard.threshold == threshold
    assert (answer["in_distribution"] == (answer["ood_score"] <= threshold)).all()
    assert not answer["in_distribution"].iloc[3:].any()  # the camera man and the cat
    assert answer["ood_score"].iloc[3:].min() > answer["ood_score"].iloc[:3].max()
    outputs = synthetic_run.served.metadata.get_output_schema().input_names()
    assert outputs.index("in_distribution") < outputs.index("model_name")


def test_saved_guard_scores_like_the_fitted_one(synthetic_run, tmp_path):
    x = model_inputs(synthetic_run.raw["val"][:8], synthetic_run.size)
    copy = guard_module.load_guard(guard_module.save_guard(synthetic_run.guard,
                                                           tmp_path / "copy.npz"))
    before = guard_module.score_images(synthetic_run.guard, synthetic_run.model, x)
    after = guard_module.score_images(copy, synthetic_run.model, x)
    np.testing.assert_allclose(before.ood_score, after.ood_score)
    assert copy.threshold == synthetic_run.guard.threshold
    assert copy.precision == "float32"
    assert copy.calibrations == synthetic_run.guard.calibrations


@pytest.mark.parametrize("method", ["mahalanobis", "knn", "energy", "input"])
def test_every_method_meets_its_accept_rate_on_val(synthetic_run, method):
    splits = {s: np.load(synthetic_run.root / "data/preprocessed" / f"{s}.npz")
              for s in ("train", "val")}
    fitted = guard_module.fit_guard(synthetic_run.model, splits["train"]["x"],
                                    splits["train"]["y"], splits["val"]["x"], method, 0.8)
    assert 0.8 <= fitted.val_accept_rate <= 0.85
    result = guard_module.score_images(fitted, synthetic_run.model, splits["val"]["x"])
    assert result.in_distribution.mean() == pytest.approx(fitted.val_accept_rate)


@settings(max_examples=60, deadline=None)
@given(scores=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200),
       rate=st.floats(0.01, 1.0))
def test_threshold_accepts_at_least_the_accept_rate(scores, rate):
    values = np.array(scores)
    threshold = guard_module.quantile_threshold(values, rate)
    assert np.mean(values <= threshold) >= rate - 1e-12
    assert threshold in values


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 40), workers=st.integers(1, 4), seed=st.integers(0, 2**16),
       channels=st.sampled_from([1, 3]))
def test_image_statistics_are_the_same_on_any_number_of_threads(n, workers, seed, channels):
    x = np.random.default_rng(seed).random((n, 24, 24, channels), dtype=np.float32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imagestats, "STATISTICS_CHUNK", 4)  # split even these small batches
        threaded = imagestats.image_statistics(x, workers=workers)
    alone = imagestats.image_statistics(x, workers=1)
    assert threaded.shape == (n, len(imagestats.STATISTIC_NAMES))
    np.testing.assert_array_equal(threaded, alone)


@pytest.mark.parametrize("bad", ["mahalanobis+nope", "", "knn+knn"])
def test_a_bad_guard_method_is_refused_with_the_key(make_cfg, bad):
    with pytest.raises(ConfigError, match="train.guard_method"):
        make_cfg(f"train.guard_method={bad}")


def test_a_bad_accept_rate_is_refused(make_cfg):
    with pytest.raises(ConfigError, match="train.guard_accept_rate"):
        make_cfg("train.guard_accept_rate=1.5")


def test_a_collapsed_network_gets_a_degenerate_guard_not_a_crash(tmp_path, monkeypatch):
    """Issue 31: a learning rate that kills every ReLU gives a constant embedding, whose
    covariance has no Cholesky factor (it was `LinAlgError: Matrix is not positive definite`).
    The run now finishes with a guard that loads and answers, marked degenerate in the run and
    the card; evaluate marks the run collapsed and register never promotes it."""
    import mlflow

    from helpers import write_preprocessed
    from leukemia_cnn.config import compose, write_params
    from leukemia_cnn.modeling import evaluate, train
    from leukemia_cnn.registry import register
    from leukemia_cnn.registry.card import model_card

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    cfg = compose([*TINY_OVERRIDES, "train.learning_rate=5.0", "train.epochs=3"], root=REPO_ROOT)
    write_preprocessed(tmp_path, cfg)
    record = train.run(cfg, tmp_path)
    guard = guard_module.load_guard(tmp_path / "models" / guard_module.GUARD_FILE)
    assert guard.degenerate == ["mahalanobis"]
    x = np.load(tmp_path / "data" / "preprocessed" / "test.npz")["x"]
    import keras

    model = keras.saving.load_model(tmp_path / "models" / "cnn.keras", compile=False)
    result = guard_module.score_images(guard, model, x)
    assert np.isfinite(result.ood_score).all() and result.in_distribution.dtype == bool
    run = mlflow.get_run(record["run_id"])
    assert run.data.tags["guard_degenerate"] == "mahalanobis"

    metrics = evaluate.run(cfg, tmp_path)
    run = mlflow.get_run(record["run_id"])
    assert metrics["collapsed"] == 1 and run.data.tags["collapsed"] == "true"
    assert run.info.status == "FINISHED"
    served = mlflow.pyfunc.load_model(record["model_uri"]).unwrap_python_model()
    answer = served.predict_arrays(x[:4])
    assert answer["ood_score"].notna().all()

    monkeypatch.chdir(tmp_path)
    write_params(cfg, tmp_path / "params.yaml")
    registered = register.run(cfg, tmp_path)
    assert registered["champion_version"] is None
    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name='leukemia-cnn'")
    assert versions and not any(v.aliases for v in versions)
    card = model_card(client, "leukemia-cnn", versions[0].version)
    assert "DEGENERATE guard" in card and "COLLAPSED run" in card


@pytest.fixture(scope="module")
def shift_guard(synthetic_run):
    """A guard with a shift part fitted on the synthetic run's network, learning from its
    val smears under random shifts."""
    from leukemia_cnn.modeling import guardshift

    splits = {s: np.load(synthetic_run.root / "data/preprocessed" / f"{s}.npz")
              for s in ("train", "val")}
    learning = guardshift.learning_set(synthetic_run.raw["val"], splits["val"]["y"], seed=42,
                                       image_size=synthetic_run.size, color_mode="grayscale")
    assert len(learning[1]) == len(splits["val"]["y"]) * (1 + guardshift.DRAWS_PER_IMAGE)
    assert (learning[2][:len(splits["val"]["y"])] == np.arange(len(splits["val"]["y"]))).all()
    return guard_module.fit_guard(synthetic_run.model, splits["train"]["x"],
                                  splits["train"]["y"], splits["val"]["x"],
                                  "mahalanobis+input+shift", 0.95, learning=learning)


def test_a_shift_guard_meets_its_accept_rate_and_saves_and_loads(synthetic_run, shift_guard,
                                                                 tmp_path):
    assert 0.95 <= shift_guard.val_accept_rate <= 1.0
    x = np.load(synthetic_run.root / "data/preprocessed/val.npz")["x"]
    copy = guard_module.load_guard(guard_module.save_guard(shift_guard, tmp_path / "g.npz"))
    before = guard_module.score_images(shift_guard, synthetic_run.model, x)
    after = guard_module.score_images(copy, synthetic_run.model, x)
    np.testing.assert_allclose(before.ood_score, after.ood_score)
    # the val threshold was set on out-of-fold scores of the shift part, as test images are
    # scored; the val images themselves, which it learnt from, are accepted at least as often
    assert len(shift_guard.parts["shift"]["val_oof"]) == len(x)
    assert before.in_distribution.mean() >= 0.9
    # the distance parts flag only what is far: scaled at 99.5% of val, not 95%
    assert shift_guard.scales["mahalanobis"] > guard_module.quantile_threshold(
        guard_module.raw_score("mahalanobis", shift_guard.parts["mahalanobis"],
                               *_val_inputs(synthetic_run, x)), 0.95)


def _val_inputs(run, x):
    from leukemia_cnn.features.imagestats import image_statistics
    from leukemia_cnn.modeling.guardinputs import embedding_model, forward

    return forward(embedding_model(run.model), x)[0], image_statistics(x)


def test_a_shift_guard_still_flags_photos_and_inverted_smears(synthetic_run, shift_guard):
    """Its distance parts flag only beyond the shifted smears the network reads right (the
    envelope), so it flags fewer photos than the default guard (>= 90% here): the trade for
    accepting exposure shifts the network handles (docs/robustness.md)."""
    from PIL import ImageOps

    photos = model_inputs(list(shifts.skimage_samples().values()), synthetic_run.size)
    result = guard_module.score_images(shift_guard, synthetic_run.model, photos)
    assert np.mean(~result.in_distribution) >= 0.75
    inverted = model_inputs([ImageOps.invert(im.convert("RGB")) for im in synthetic_run.raw["test"]],
                            synthetic_run.size)
    result = guard_module.score_images(shift_guard, synthetic_run.model, inverted)
    assert np.mean(~result.in_distribution) >= 0.9


def test_a_shift_part_without_shifted_images_is_one_clear_error(synthetic_run):
    from leukemia_cnn.errors import DataError

    splits = {s: np.load(synthetic_run.root / "data/preprocessed" / f"{s}.npz")
              for s in ("train", "val")}
    with pytest.raises(DataError, match="train.guard_method includes `shift`"):
        guard_module.fit_guard(synthetic_run.model, splits["train"]["x"], splits["train"]["y"],
                               splits["val"]["x"], "mahalanobis+input+shift")
