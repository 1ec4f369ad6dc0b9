import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers.datasets import image_bytes, write_file
from leukemia_cnn.data import imaging
from leukemia_cnn.data.imaging import (
    load_model_input,
    open_image,
    perceptual_hash,
    skip_reason,
    to_model_input,
)
from leukemia_cnn.errors import DataError
from leukemia_cnn.modeling.gradcam import overlay


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "reason"), [
    ("WBC-Benign-001.jpg", None), ("scan.TIFF", None), ("Thumbs.db", "operating-system"),
    ("._WBC-001.jpg", "operating-system"), (".hidden.jpg", "hidden file"),
    ("notes.txt", "extension '.txt' is not an image extension"),
    ("README", "extension '(none)'"),
])
def test_skip_reason_says_why_a_file_is_not_an_image_row(name, reason):
    found = skip_reason(name)
    assert found is None if reason is None else reason in found


def test_open_image_decodes_paths_and_bytes_fully(tmp_path):
    data = image_bytes(1, size=(30, 20))
    path = write_file(tmp_path / "cell.jpg", data)
    from_path, from_bytes = open_image(path), open_image(data)
    assert from_path.size == from_bytes.size == (30, 20)
    assert np.array_equal(np.asarray(from_path), np.asarray(from_bytes))


def test_undecodable_missing_and_huge_images_are_data_errors_naming_the_source(tmp_path,
                                                                             monkeypatch):
    junk = write_file(tmp_path / "junk.jpg", b"not an image")
    with pytest.raises(DataError, match=r"junk\.jpg: not a decodable image"):
        open_image(junk)
    truncated = write_file(tmp_path / "cut.jpg", image_bytes(2, size=(64, 64))[:200])
    with pytest.raises(DataError, match=r"cut\.jpg: not a decodable image"):
        open_image(truncated)
    with pytest.raises(DataError, match=r"gone\.jpg: file not found"):
        open_image(tmp_path / "gone.jpg")
    monkeypatch.setattr(imaging, "MAX_PIXELS", 100)
    with pytest.raises(DataError, match=r"<bytes>: 20x20 pixels exceeds the 100-pixel limit"):
        open_image(image_bytes(3, size=(20, 20)))


@settings(max_examples=25, deadline=None)
@given(mode=st.sampled_from(["RGB", "L", "RGBA", "LA", "P", "I;16", "I", "CMYK"]),
       width=st.integers(1, 64), height=st.integers(1, 64), size=st.integers(4, 32),
       color_mode=st.sampled_from(["grayscale", "rgb"]))
def test_model_input_has_the_configured_shape_and_range_for_any_mode(mode, width, height, size,
                                                                      color_mode):
    image = Image.new(mode, (width, height))
    array = to_model_input(image, size, color_mode)
    assert array.shape == (size, size, 1 if color_mode == "grayscale" else 3)
    assert array.dtype == np.float32 and array.min() >= 0 and array.max() <= 1


def test_transparent_pixels_are_white_slide_background_and_16_bit_is_rescaled():
    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert np.allclose(to_model_input(clear, 8, "rgb"), 1.0)
    deep = Image.fromarray(np.array([[0, 1000], [2000, 4000]], dtype=np.uint16))
    gray = to_model_input(deep, 2, "grayscale")[..., 0]
    # scaled by the smallest bit depth holding the peak (12 bits: 4095), not by the peak
    assert gray.max() == pytest.approx(round(4000 / 4095 * 255) / 255) and gray.min() == 0.0


def test_load_model_input_is_decode_then_preprocess(tmp_path):
    data = encoded(Image.new("RGB", (10, 6), (255, 0, 0)))
    array = load_model_input(data, 5, "rgb")
    assert array.shape == (5, 5, 3) and np.allclose(array[..., 0], 1) and np.allclose(array[..., 1:], 0)


def test_perceptual_hash_survives_a_reencode_and_tells_images_apart():
    def bits(a: int, b: int) -> int:
        return bin(a ^ b).count("1")

    smooth = np.kron(np.random.default_rng(0).integers(0, 256, (8, 8)), np.ones((16, 16)))
    original = Image.fromarray(smooth.astype(np.uint8)).convert("RGB")
    copy = Image.open(io.BytesIO(encoded(original, "JPEG", quality=70)))
    other = Image.fromarray(np.kron(np.random.default_rng(1).integers(0, 256, (8, 8)),
                                    np.ones((16, 16))).astype(np.uint8)).convert("RGB")
    # measured: 0 bits apart after the JPEG re-encode, 36 from the other image (the module
    # promises a few bits for copies, 10 or more for distinct images)
    assert bits(perceptual_hash(original), perceptual_hash(copy)) <= 4
    assert bits(perceptual_hash(original), perceptual_hash(other)) >= 10
    assert 0 <= perceptual_hash(original) < 2**64


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
