"""Grad-CAM plumbing on small untrained models (the planted-feature test of what the maps
show is in tests/serving/test_explain.py)."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.modeling.gradcam import (
    explain_images,
    feature_layer_index,
    gradcam,
    overlay,
    png_bytes,
    upsample,
)

SIZE = 24


@pytest.fixture(scope="module")
def small_models():
    """The paper's network shape, small: plain and with batch norm (Conv -> BN -> ReLU)."""
    from leukemia_cnn.config_schema import ModelConfig
    from leukemia_cnn.modeling.model import build_model, set_seeds

    set_seeds(0)
    small = {"filters": [4, 4], "kernel_sizes": [3, 3], "dense_units": 8, "dropout": 0.0}
    plain = build_model((SIZE, SIZE, 1), 3, ModelConfig(**small))
    normed = build_model((SIZE, SIZE, 1), 3, ModelConfig(**small, batch_norm=True))
    return plain, normed


def test_the_map_is_taken_after_the_last_conv_blocks_pool(small_models):
    from keras import layers

    for model in small_models:
        index = feature_layer_index(model)
        assert isinstance(model.layers[index], layers.MaxPooling2D)
        assert not any(isinstance(layer, layers.Conv2D) for layer in model.layers[index + 1:])


def test_a_model_without_conv_layers_is_refused():
    import keras

    dense = keras.Sequential([keras.Input((SIZE, SIZE, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")], name="dense_only")
    with pytest.raises(LeukemiaCNNError, match="'dense_only' has no Conv2D layer"):
        feature_layer_index(dense)


def test_maps_are_in_unit_range_for_the_predicted_or_a_chosen_class(small_models):
    x = np.random.default_rng(0).random((5, SIZE, SIZE, 1), dtype=np.float32)
    for model in small_models:
        maps, probabilities = gradcam(model, x)
        # 24 -> conv 22 -> pool 11 -> conv 9 -> pool 4
        assert maps.shape == (5, 4, 4) and maps.dtype == np.float32
        assert maps.min() >= 0 and maps.max() <= 1
        assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
        assert np.allclose(probabilities, model.predict(x, verbose=0), atol=1e-5)
        chosen, _ = gradcam(model, x, class_index=[2] * 5)
        assert chosen.shape == maps.shape and chosen.min() >= 0 and chosen.max() <= 1


@settings(max_examples=20, deadline=None)
@given(width=st.integers(1, 40), height=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_a_zero_map_leaves_the_image_as_it_is(width, height, seed):
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    drawn = overlay(image, np.zeros((4, 4), dtype=np.float32))
    assert drawn.size == (width, height) and drawn.mode == "RGB"
    assert np.array_equal(np.asarray(drawn), np.asarray(image))


def test_a_full_map_colours_the_image_and_upsampling_stays_in_range():
    image = Image.new("L", (30, 20), 128)
    drawn = np.asarray(overlay(image, np.ones((4, 4), dtype=np.float32)), dtype=int)
    assert np.abs(drawn - 128).max() > 40  # jet's red drawn over the gray
    heat = upsample(np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32), (30, 20))
    assert heat.shape == (20, 30) and heat.min() >= 0 and heat.max() <= 1


def test_png_bytes_round_trip_and_no_images_no_work(small_models):
    image = Image.new("RGB", (7, 5), (10, 200, 30))
    with Image.open(io.BytesIO(png_bytes(image))) as decoded:
        assert decoded.format == "PNG" and decoded.getpixel((3, 2)) == (10, 200, 30)
    assert explain_images(small_models[0], [], SIZE, "grayscale") == []
