import numpy as np
import pytest

from leukemia_cnn.config_schema import ModelConfig
from leukemia_cnn.modeling.model import build_from_config, build_model, displayed_accuracy_metric


def test_paper_architecture_matches_section_2_2():
    model = build_model((100, 100, 1), 4)
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [64, 32, 128]
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5), (3, 3)]
    assert all(c.activation.__name__ == "relu" for c in convs)
    names = [layer.__class__.__name__ for layer in model.layers]
    assert names == ["Conv2D", "MaxPooling2D"] * 3 + ["Flatten", "Dense", "Dropout", "Dense"]
    assert model.layers[-2].rate == 0.5
    assert model.layers[-1].activation.__name__ == "softmax"
    # 100 -> 96 -> 48 -> 44 -> 22 -> 20 -> 10: flatten 10*10*128, then Dense 128 and 4.
    assert model.count_params() == (5 * 5 * 64 + 64) + (5 * 5 * 64 * 32 + 32) + (
        3 * 3 * 32 * 128 + 128) + (12800 * 128 + 128) + (128 * 4 + 4)


@pytest.mark.parametrize("filters,kernels", [([64, 32], [5, 5]), ([64, 32, 128, 128], [5, 5, 3, 3])])
def test_number_of_conv_layers_is_config(filters, kernels):
    model = build_model((100, 100, 1), 4, ModelConfig(filters=filters, kernel_sizes=kernels))
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert len(convs) == len(filters)
    out = model.predict(np.zeros((2, 100, 100, 1), dtype=np.float32), verbose=0)
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("loss", ["categorical_crossentropy", "binary_crossentropy"])
def test_loss_is_config_and_argmax_accuracy_always_compiled(make_cfg, loss):
    cfg = make_cfg(f"train.loss={loss}", "model.filters=[4,4,4]")
    model = build_from_config(cfg, (100, 100, 1))
    x = np.zeros((4, 100, 100, 1), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert {"loss", "accuracy", "argmax_accuracy"} <= set(logs)
    assert model.loss == loss
    # Keras 3 resolves "accuracy" by output shape: categorical even under binary cross-entropy
    # (the paper's Keras 2 showed binary accuracy there), so binary accuracy is logged apart.
    assert displayed_accuracy_metric(model) == "CategoricalAccuracy"
    assert ("binary_accuracy" in logs) == (loss == "binary_crossentropy")


@pytest.mark.parametrize("rotation,expected", [
    (0.25, ["RandomFlip", "RandomRotation", "Normalization"]),
    (0.0, ["RandomFlip", "Normalization"]),
])
def test_improved_knobs_add_augmentation_and_standardisation_layers(make_cfg, rotation, expected):
    cfg = make_cfg("train.augment=true", f"train.augment_rotation={rotation}",
                   "model.standardize=true", "model.padding=same", "model.filters=[4,4,4]")
    x = np.random.default_rng(0).random((8, 100, 100, 1), dtype=np.float32)
    model = build_from_config(cfg, (100, 100, 1), x_train=x)
    names = [layer.__class__.__name__ for layer in model.layers]
    assert names[:len(expected)] == expected
    rotate = [layer for layer in model.layers if layer.__class__.__name__ == "RandomRotation"]
    assert [r.factor for r in rotate] == ([(-rotation, rotation)] if rotation else [])
    # Augmentation is off at inference: the same image gives the same output twice.
    np.testing.assert_array_equal(model.predict(x[:2], verbose=0), model.predict(x[:2], verbose=0))


def test_kernel_initializer_is_config_for_the_relu_layers(make_cfg):
    paper = build_from_config(make_cfg("model.filters=[4,4,4]"), (100, 100, 1))
    he = build_from_config(make_cfg("model.filters=[4,4,4]", "model.kernel_initializer=he_normal"),
                           (100, 100, 1))

    def initializers(model):
        return [type(layer.kernel_initializer).__name__ for layer in model.layers
                if hasattr(layer, "kernel_initializer")]

    assert initializers(paper) == ["GlorotUniform"] * 5
    # The three convs and the hidden dense layer; the softmax layer keeps Glorot.
    assert initializers(he) == ["HeNormal"] * 4 + ["GlorotUniform"]


def test_global_average_head_replaces_flatten(make_cfg):
    cfg = make_cfg("model.filters=[4,4,8]", "model.head=global_average")
    model = build_from_config(cfg, (100, 100, 1))
    names = [layer.__class__.__name__ for layer in model.layers]
    assert "Flatten" not in names and "GlobalAveragePooling2D" in names
    hidden = model.layers[names.index("GlobalAveragePooling2D") + 1]
    assert hidden.kernel.shape == (8, 128)  # one input per filter of the last conv layer


def _rates(schedule, steps):
    return [float(schedule(step)) if callable(schedule) else schedule for step in steps]


def test_learning_rate_schedules_per_step(make_cfg):
    from leukemia_cnn.modeling.model import learning_rate

    # 10 steps per epoch, 15 epochs (the default config): 150 steps in all.
    assert learning_rate(make_cfg(), 10) == pytest.approx(0.001)
    cosine = learning_rate(make_cfg("train.lr_schedule=cosine"), 10)
    assert _rates(cosine, [0, 75, 150]) == pytest.approx([0.001, 0.0005, 0.0], abs=1e-7)
    # Warm-up over 2 epochs (20 steps) to the constant rate, which it then keeps.
    warm = learning_rate(make_cfg("train.lr_warmup_epochs=2"), 10)
    assert _rates(warm, [0, 10, 20, 21, 100, 150]) == pytest.approx(
        [0.0, 0.0005, 0.001, 0.001, 0.001, 0.001], abs=1e-7)
    # Warm-up, then the cosine decay over the remaining 130 steps.
    both = learning_rate(make_cfg("train.lr_warmup_epochs=2", "train.lr_schedule=cosine"), 10)
    assert _rates(both, [10, 20, 85, 150]) == pytest.approx([0.0005, 0.001, 0.0005, 0.0],
                                                             abs=1e-7)


def test_label_smoothing_and_weight_decay_compile_their_loss_and_optimizer(make_cfg):
    plain = build_from_config(make_cfg("model.filters=[4,4,4]"), (100, 100, 1))
    assert plain.loss == "categorical_crossentropy"
    assert type(plain.optimizer).__name__ == "Adam"
    cfg = make_cfg("model.filters=[4,4,4]", "train.label_smoothing=0.1",
                   "train.weight_decay=0.05")
    model = build_from_config(cfg, (100, 100, 1))
    assert model.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    assert type(model.optimizer).__name__ == "AdamW"
    assert model.optimizer.weight_decay == pytest.approx(0.05)
    # Smoothing pulls the target toward uniform: a confident right answer still costs something.
    import keras

    sure = np.array([[0.999, 0.0003, 0.0004, 0.0003]], dtype=np.float32)
    target = np.eye(4, dtype=np.float32)[:1]
    unsmoothed = float(keras.losses.categorical_crossentropy(target, sure)[0])
    assert unsmoothed < 0.01 and float(model.loss(target, sure)) > 0.5


def test_weight_decay_shrinks_the_kernels_not_the_biases(make_cfg):
    import keras

    cfg = make_cfg("model.filters=[4,4,4]", "train.weight_decay=0.5", "train.learning_rate=0.1")
    model = build_from_config(cfg, (100, 100, 1))
    dense = model.layers[-1]
    dense.bias.assign(np.ones(4, dtype=np.float32))
    dense.kernel.assign(np.full(dense.kernel.shape, 0.1, dtype=np.float32))
    # Zero input and a uniform target: the last layer's gradients are ~0, only decay moves it.
    x = np.zeros((4, 100, 100, 1), dtype=np.float32)
    y = np.full((4, 4), 0.25, dtype=np.float32)
    kernel_before = np.abs(keras.ops.convert_to_numpy(dense.kernel)).sum()
    model.train_on_batch(x, y)
    assert np.abs(keras.ops.convert_to_numpy(dense.kernel)).sum() < 0.99 * kernel_before
    np.testing.assert_allclose(keras.ops.convert_to_numpy(dense.bias), 1.0, atol=0.2)


def test_per_image_standardisation_makes_each_image_mean_0_variance_1(make_cfg):
    cfg = make_cfg("model.filters=[4,4,4]", "model.standardize=per_image")
    model = build_from_config(cfg, (100, 100, 1))
    layer = model.layers[0]
    assert layer.name == "standardize_per_image"
    rng = np.random.default_rng(0)
    # Two images of one pattern, one darker and lower-contrast: the layer makes them equal.
    pattern = rng.random((1, 100, 100, 1)).astype(np.float32)
    x = np.concatenate([pattern, 0.3 * pattern + 0.5])
    out = np.asarray(layer(x))
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1.0, atol=1e-2)
    np.testing.assert_allclose(out[0], out[1], atol=1e-2)


def test_standardize_rejects_an_unknown_value(make_cfg):
    from leukemia_cnn.errors import ConfigError

    with pytest.raises(ConfigError, match="model.standardize"):
        make_cfg("model.standardize=per_channel")
    for key, value in (("train.label_smoothing", 1.0), ("train.weight_decay", -0.1),
                       ("train.mixed_precision", "fp8")):
        with pytest.raises(ConfigError, match=key):
            make_cfg(f"{key}={value}")


def test_mixed_precision_auto_follows_the_cpu_flags(make_cfg):
    from leukemia_cnn.modeling.model import resolve_mixed_precision

    with_units = "flags : fpu sse avx512f avx512_bf16 avx512_vnni"
    without = "flags : fpu sse avx2 avx512f"
    assert resolve_mixed_precision("auto", with_units) == "bfloat16"
    assert resolve_mixed_precision("auto", "flags : amx_bf16 amx_tile") == "bfloat16"
    assert resolve_mixed_precision("auto", without) == "off"
    assert resolve_mixed_precision("bfloat16", without) == "bfloat16"
    assert resolve_mixed_precision("off", with_units) == "off"
    cfg = make_cfg("model.filters=[4,4,4]", "train.mixed_precision=bfloat16")
    model = build_from_config(cfg, (100, 100, 1))
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert {c.compute_dtype for c in convs} == {"bfloat16"}
    assert {c.variable_dtype for c in convs} == {"float32"}
    out = model.predict(np.zeros((2, 100, 100, 1), dtype=np.float32), verbose=0)
    assert out.dtype == np.float32
    # The global policy is restored: the next model is float32 again.
    plain = build_from_config(make_cfg("model.filters=[4,4,4]"), (100, 100, 1))
    assert {layer.compute_dtype for layer in plain.layers} == {"float32"}
