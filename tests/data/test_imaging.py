"""The one decoding place (data/imaging.py): what training, prediction and Grad-CAM see."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from leukemia_cnn.data.imaging import load_model_input, open_image
from leukemia_cnn.modeling.gradcam import overlay


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _gradient8(width: int = 48, height: int = 32) -> np.ndarray:
    return np.tile(np.linspace(0, 255, width).round().astype(np.uint8), (height, 1))


def test_16bit_png_keeps_its_picture_not_a_white_sheet():
    eight = _gradient8()
    sixteen = Image.fromarray(eight.astype(np.uint16) * 257)  # the same picture in 16 bits
    data = _png(sixteen)
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    decoded = open_image(data)
    # convert("RGB") of the raw 16-bit image clips every sample to 255 (a white sheet)
    assert np.asarray(decoded.convert("RGB")).min() < 10
    np.testing.assert_array_equal(np.asarray(decoded), eight)
    np.testing.assert_allclose(load_model_input(data), load_model_input(_png(Image.fromarray(eight))))
    # The heatmap is drawn on the picture: with a zero map the overlay is the image itself
    drawn = np.asarray(overlay(decoded, np.zeros((4, 4), np.float32)))
    np.testing.assert_array_equal(drawn[..., 0], eight)


@settings(max_examples=20, deadline=None)
@given(orientation=st.sampled_from([2, 3, 4, 5, 6, 7, 8]))
def test_exif_orientation_is_applied_as_a_viewer_shows_it(orientation):
    rng = np.random.default_rng(orientation)
    stored = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, format="PNG", exif=exif)
    transpose = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                 4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                 8: Image.Transpose.ROTATE_90}[orientation]
    upright = stored.transpose(transpose)
    decoded = open_image(buffer.getvalue())
    assert decoded.size == upright.size
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(upright))
    # training (preprocess) and prediction (pyfunc) both read through load_model_input
    np.testing.assert_allclose(load_model_input(buffer.getvalue(), 20, "rgb"),
                               load_model_input(_png(upright), 20, "rgb"))
