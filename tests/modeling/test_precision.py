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
from leukemia_cnn.errors import ConfigError
from leukemia_cnn.modeling import precision
from leukemia_cnn.modeling.pyfunc import PRECISION_KEY, LeukemiaCNNModel

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
    model = build_model((SIZE, SIZE, 1), 4, [8, 8], [3, 3], dense_units=32)
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

    from leukemia_cnn.modeling.pyfunc import log_model

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


def test_the_guard_accepts_in_bfloat16_what_it_accepts_in_float32(trained, monkeypatch):
    from leukemia_cnn.modeling import guard as guard_module

    labels = np.arange(80) % 4
    fitted = guard_module.fit_guard(trained.model, blob_images(labels, SIZE, seed=1), labels,
                                    blob_images(labels, SIZE, seed=3))
    path = guard_module.save_guard(fitted, trained.folder / "guard.npz")
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda cpuinfo=None: True)
    served = load(trained.folder, "auto", guard=path)
    assert served.precision == "bfloat16"
    # familiar images, and darker, brighter and inverted ones around and past the threshold
    x = np.concatenate([trained.x, np.clip(trained.x * 0.8, 0, 1),
                        np.clip(trained.x + 0.1, 0, 1), 1 - trained.x[:20]])
    half = served.predict_arrays(x)
    served.set_precision("float32")
    full = served.predict_arrays(x)
    assert 0 < full["in_distribution"].mean() < 1  # both verdicts occur
    assert list(half["in_distribution"]) == list(full["in_distribution"])
    near = (np.abs(full["ood_score"] - fitted.threshold)
            <= precision.GUARD_RECHECK_BAND / 2 * abs(fitted.threshold))
    assert near.any()
    # scores near the threshold are float32's own; the others move by a few percent at most
    np.testing.assert_allclose(half["ood_score"][near], full["ood_score"][near], rtol=1e-6)
    np.testing.assert_allclose(half["ood_score"], full["ood_score"],
                               rtol=precision.GUARD_RECHECK_BAND)


@given(network=st.lists(st.floats(0.0, 3.0), min_size=1, max_size=30),
       inputs=st.lists(st.floats(0.0, 3.0), min_size=30, max_size=30))
def test_only_verdicts_the_precision_can_change_are_rechecked(network, inputs):
    from leukemia_cnn.modeling.guard import Guard, GuardResult

    guard = Guard(method="mahalanobis+input", threshold=1.0, accept_rate=0.95)
    net, inp = np.array(network), np.array(inputs[:len(network)])
    score = np.maximum(net, inp)
    result = GuardResult(ood_score=score, in_distribution=score <= 1.0,
                         probabilities=np.zeros((len(net), 4)), network_score=net,
                         input_score=inp)
    mask = precision.recheck_mask(guard, result)
    band = precision.GUARD_RECHECK_BAND
    # an image is re-scored iff its network part is within the band and the input part, which
    # no precision moves, does not already flag it
    assert list(mask) == list((np.abs(net - 1.0) <= band) & (inp <= 1.0))
    # so any network score outside the band, moved by less than the band, keeps the verdict
    for moved in (net - band * 0.99, net + band * 0.99):
        verdict = np.maximum(moved, inp) <= 1.0
        assert list(verdict[~mask]) == list(result.in_distribution[~mask])


def test_a_guard_without_a_network_part_is_never_rechecked():
    from leukemia_cnn.modeling.guard import Guard, GuardResult

    guard = Guard(method="input", threshold=1.0, accept_rate=0.95)
    score = np.array([0.5, 1.0, 1.01, 3.0])
    result = GuardResult(ood_score=score, in_distribution=score <= 1.0,
                         probabilities=np.zeros((4, 4)), input_score=score)
    assert not precision.recheck_mask(guard, result).any()
