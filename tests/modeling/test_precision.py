"""Inference precision: ``auto`` picks bfloat16 only on a CPU with bfloat16 units; the bfloat16
copy of a trained model answers within the stated tolerance of float32; the logged model records
the knob and the loaded one says which precision it computes in."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import blob_images
from leukemia_cnn.config_schema import ModelConfig
from leukemia_cnn.errors import ConfigError
from leukemia_cnn.modeling import precision
from leukemia_cnn.serving.pyfunc import PRECISION_KEY, LeukemiaCNNModel

CLASSES = ["Benign", "Early", "Pre", "Pro"]
SIZE = 32
WITH_UNITS = "flags : fpu sse2 avx512f avx512_bf16 amx_tile amx_bf16"
WITHOUT_UNITS = "flags : fpu sse2 avx2 avx512f"


@pytest.mark.parametrize("has_units, expected", [(True, "bfloat16"), (False, "float32")])
def test_auto_follows_the_cpus_bfloat16_units(monkeypatch, has_units, expected):
    # the one detection the train stage's mixed_precision=auto uses, patched where it is read
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda cpuinfo=None: has_units)
    assert precision.resolve_inference_precision("auto") == expected


@pytest.mark.parametrize("cpuinfo, expected", [(WITH_UNITS, "bfloat16"),
                                               (WITHOUT_UNITS, "float32")])
def test_auto_reads_the_flags_of_proc_cpuinfo(cpuinfo, expected):
    assert precision.resolve_inference_precision("auto", cpuinfo) == expected


@pytest.mark.parametrize("cpuinfo", [WITH_UNITS, WITHOUT_UNITS])
@pytest.mark.parametrize("setting", ["float32", "bfloat16"])
def test_an_explicit_precision_ignores_the_cpu(setting, cpuinfo):
    assert precision.resolve_inference_precision(setting, cpuinfo) == setting


@given(st.text(min_size=1, max_size=12).filter(lambda s: s not in precision.INFERENCE_PRECISIONS))
def test_an_unknown_precision_is_refused_naming_the_knob(setting):
    with pytest.raises(ConfigError, match="train.inference_precision"):
        precision.resolve_inference_precision(setting)


def test_the_knob_defaults_to_auto_and_is_validated(make_cfg):
    assert make_cfg().train.inference_precision == "auto"
    with pytest.raises(ConfigError, match="inference_precision"):
        make_cfg("train.inference_precision=float16")


def test_the_run_logs_the_knob_as_set(make_cfg, tmp_path):
    from leukemia_cnn.data.lineage import workspace_lineage
    from leukemia_cnn.modeling.trainrun import training_params

    labels = np.arange(8) % 4

    def logged(*overrides):
        cfg = make_cfg(*overrides)
        return training_params(cfg, workspace_lineage(cfg, tmp_path), blob_images(labels, SIZE),
                               labels, labels)["train.inference_precision"]

    # as set, not resolved: the machine that serves the model resolves auto
    assert logged("train.inference_precision=bfloat16") == "bfloat16"
    assert logged() == "auto"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CNN fitted for a few epochs on blob images; its file and a held-out set."""
    import keras

    from leukemia_cnn.modeling.model import build_model, set_seeds

    set_seeds(0)
    model = build_model((SIZE, SIZE, 1), 4, ModelConfig(filters=[8, 8], kernel_sizes=[3, 3], dense_units=32))
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="categorical_crossentropy")
    labels = np.arange(160) % 4
    model.fit(blob_images(labels, SIZE, seed=1), np.eye(4)[labels], epochs=12, batch_size=16,
              verbose=0)
    folder = tmp_path_factory.mktemp("precision")
    model.save(folder / "model.keras")
    held_out = np.arange(80) % 4
    return SimpleNamespace(model=model, folder=folder, x=blob_images(held_out, SIZE, seed=2),
                           y=held_out)


def test_the_bfloat16_copy_answers_within_the_tolerance(trained):
    copy = precision.with_precision(trained.model, "bfloat16")
    assert precision.model_precision(copy) == "bfloat16"
    assert precision.model_precision(trained.model) == "float32"  # the original is untouched
    assert copy.layers[-1].dtype_policy.name == "float32"  # the softmax stays float32
    full = trained.model.predict_on_batch(trained.x)
    half = np.asarray(copy.predict_on_batch(trained.x))
    assert half.dtype == np.float32
    assert np.abs(half - full).max() <= precision.PROBABILITY_TOLERANCE
    # the copy still computes (not a float32 model under another name)
    assert np.abs(half - full).max() > 0
    assert (half.argmax(axis=1) == full.argmax(axis=1)).mean() >= 0.95
    # trained well above chance (0.25): the comparison is of a model that has learnt something
    assert (full.argmax(axis=1) == trained.y).mean() >= 0.6
    back = precision.with_precision(copy, "float32")
    np.testing.assert_allclose(back.predict_on_batch(trained.x), full, atol=1e-6)


def load(folder, setting: str | None, guard=None) -> LeukemiaCNNModel:
    meta = {"classes": CLASSES, "image_size": SIZE, "color_mode": "grayscale"}
    if setting is not None:
        meta[PRECISION_KEY] = setting
    model = LeukemiaCNNModel()
    artifacts = {"keras_model": str(folder / "model.keras")}
    model.load_context(SimpleNamespace(  # as log_model logs it: the preprocessing is model_config
        artifacts={**artifacts, **({"guard": str(guard)} if guard else {})},
        model_config={"preprocessing": meta}))
    return model


@pytest.mark.parametrize("has_units, expected", [(True, "bfloat16"), (False, "float32")])
@pytest.mark.parametrize("setting", ["auto", None])  # None: a model logged before the knob
def test_the_loaded_model_computes_in_what_auto_finds(trained, monkeypatch, setting, has_units,
                                                      expected):
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda cpuinfo=None: has_units)
    served = load(trained.folder, setting)
    assert served.precision == expected
    assert precision.model_precision(served.model) == expected
    answer = served.predict_arrays(trained.x)
    full = trained.model.predict_on_batch(trained.x)
    probabilities = answer[[f"p_{c}" for c in CLASSES]].to_numpy()
    assert np.abs(probabilities - full).max() <= precision.PROBABILITY_TOLERANCE


def test_explain_runs_in_the_served_precision(trained, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda cpuinfo=None: True)
    served = load(trained.folder, "auto")
    images = [Image.fromarray((image[..., 0] * 255).astype(np.uint8)) for image in trained.x[:8]]
    results = served.explain(images)
    answer = served.predict_arrays(trained.x[:8])
    assert [CLASSES[r["class_index"]] for r in results] == list(answer["predicted_class"])
    for result in results:
        assert result["probabilities"].sum() == pytest.approx(1.0, abs=1e-3)


def test_log_model_records_the_knob_and_the_loaded_model_obeys_it(trained, mlflow_store,
                                                                   tmp_path):
    import mlflow

    from leukemia_cnn.serving.pyfunc import log_model

    # its own experiment in the fresh store (MLflow remembers the last test's experiment id)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(
        "precision", artifact_location=(tmp_path / "mlruns").as_uri()))
    with mlflow.start_run():
        info = log_model(trained.folder / "model.keras", CLASSES, SIZE, "grayscale",
                         inference_precision="float32")
    served = mlflow.pyfunc.load_model(info.model_uri).unwrap_python_model()
    config = mlflow.models.Model.load(info.model_uri).flavors["python_function"]["config"]
    assert config["preprocessing"][PRECISION_KEY] == "float32"
    # float32 although this CPU may have bfloat16 units: the knob wins over auto's detection
    assert served.precision == "float32"
    np.testing.assert_allclose(served.predict_arrays(trained.x)[[f"p_{c}" for c in CLASSES]],
                               trained.model.predict_on_batch(trained.x), atol=1e-6)


@pytest.fixture(scope="module")
def calibrated(trained):
    """A guard fitted on ``trained``'s float32 embeddings and thresholded in bfloat16 too,
    saved beside the model; the val images it was thresholded on."""
    from leukemia_cnn.modeling import guard as guard_module

    labels = np.arange(80) % 4
    x_val = blob_images(labels, SIZE, seed=3)
    fitted = guard_module.fit_guard(trained.model, blob_images(labels, SIZE, seed=1), labels,
                                    x_val)
    guard_module.calibrate_precision(fitted, trained.model, x_val, "bfloat16")
    path = guard_module.save_guard(fitted, trained.folder / "guard.npz")
    return SimpleNamespace(guard=fitted, path=path, x_val=x_val)


def test_the_guard_accepts_its_share_of_val_in_either_precision(trained, calibrated,
                                                                monkeypatch):
    fitted = calibrated.guard
    assert fitted.precision == "float32" and set(fitted.calibrations) == {"bfloat16"}
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda cpuinfo=None: True)
    served = load(trained.folder, "auto", guard=calibrated.path)
    assert served.precision == "bfloat16"
    assert served.guard.threshold == fitted.calibrations["bfloat16"]["threshold"]
    half = served.predict_arrays(calibrated.x_val)
    # the quantile rule, in the precision that computed the embeddings
    assert half["in_distribution"].mean() == pytest.approx(
        fitted.calibrations["bfloat16"]["val_accept_rate"])
    assert half["in_distribution"].mean() >= fitted.accept_rate
    served.set_precision("float32")
    assert served.guard.threshold == fitted.threshold
    full = served.predict_arrays(calibrated.x_val)
    assert full["in_distribution"].mean() == pytest.approx(fitted.val_accept_rate)
    # bfloat16 did move the scores: each precision needs its own threshold
    assert not np.array_equal(half["ood_score"], full["ood_score"])


def test_verdicts_differ_between_precisions_only_near_the_threshold(trained, calibrated,
                                                                    monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda cpuinfo=None: True)
    served = load(trained.folder, "auto", guard=calibrated.path)
    # familiar images, and darker, brighter and inverted ones around and past the threshold
    x = np.concatenate([trained.x, np.clip(trained.x * 0.8, 0, 1),
                        np.clip(trained.x + 0.1, 0, 1), 1 - trained.x[:20]])
    half = served.predict_arrays(x)
    served.set_precision("float32")
    full = served.predict_arrays(x)
    assert 0 < full["in_distribution"].mean() < 1  # both verdicts occur
    differ = (half["in_distribution"] != full["in_distribution"]).to_numpy()
    assert differ.mean() <= 0.05
    # where they differ, the image lies within a few percent of a threshold in both precisions
    relative = np.abs(full["ood_score"] / served.guard.threshold - 1.0)
    assert (relative[differ] <= 0.15).all()


def test_a_guard_without_a_bfloat16_threshold_keeps_the_network_in_float32(trained, calibrated,
                                                                           monkeypatch, capsys,
                                                                           tmp_path):
    from dataclasses import replace

    from leukemia_cnn.modeling import guard as guard_module

    # as a guard saved before the train stage set a threshold per precision
    old = replace(calibrated.guard, calibrations={})
    guard_module.save_guard(old, tmp_path / "guard.npz")
    (tmp_path / "model.keras").symlink_to(trained.folder / "model.keras")
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda cpuinfo=None: True)
    served = load(tmp_path, "auto", guard=tmp_path / "guard.npz")
    assert served.precision == "float32"
    assert precision.model_precision(served.model) == "float32"
    assert "threshold for float32 only; computing in float32, not bfloat16" in \
        capsys.readouterr().err
    answer = served.predict_arrays(calibrated.x_val)
    assert answer["in_distribution"].mean() == pytest.approx(old.val_accept_rate)
