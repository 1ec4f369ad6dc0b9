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
    assert gray.max() == pytest.approx(1.0) and gray.min() == 0.0  # the peak maps to white


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
