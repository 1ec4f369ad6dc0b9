"""Magnification measured on the smear's own ruler (data/scale.py): the red-cell estimate follows
a known zoom of the built-in generator's smears, and the rescale puts a zoomed smear back near
the training scale, in the preprocess stage and in the logged model's preprocessing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from helpers import REPO_ROOT
from helpers.datasets import write_tiny_split
from leukemia_cnn.config import compose
from leukemia_cnn.data import preprocess
from leukemia_cnn.data.acquisition import Acquisition, acquisition_of
from leukemia_cnn.data.imaging import load_model_input
from leukemia_cnn.data.scale import red_cell_radius, relative_radius, to_reference
from leukemia_cnn.data.shifts import magnify as rescaled
from leukemia_cnn.data.smear import LADDER, generate_image, image_rng
from leukemia_cnn.data.smear_slide import draw_slide
from leukemia_cnn.errors import DataError

CLASSES = list(LADDER)


def smears(n: int = 8, seed: int = 11) -> list[Image.Image]:
    """``n`` built-in smear fields (224x224), two of each class."""
    return [generate_image(image_rng(seed, i % 4, i), CLASSES[i % 4]) for i in range(n)]


@pytest.fixture(scope="module")
def fields():
    return smears()


@pytest.mark.parametrize("zoom", [0.8, 1.25, 1.5, 2.0])
def test_estimate_follows_a_known_zoom(fields, zoom):
    ratios = [red_cell_radius(rescaled(image, zoom)) / red_cell_radius(image)
              for image in fields]
    # the median over 8 fields within 8% of the zoom (12% at 2x, which leaves a quarter of the
    # field: fewer red cells to measure), three fields in four within 20% (30% at 2x)
    assert np.median(ratios) == pytest.approx(zoom, rel=0.12 if zoom >= 2 else 0.08)
    errors = np.abs(np.array(ratios) / zoom - 1)
    assert np.quantile(errors, 0.75) < (0.3 if zoom >= 2 else 0.2)


def test_estimate_reads_the_generators_red_cells():
    """The generator paints red cells of radius 9.5-11.5 px x zoom 0.93-1.07 at 224 px; the
    estimate (a LoG scale, which reads a pale-centred disc a little large) lands near them."""
    true, estimated = [], []
    for index in range(8):
        slide = draw_slide(image_rng(5, index % 4, index))  # the image's first draw
        true.append(slide.rbc_radius * slide.zoom)
        estimated.append(red_cell_radius(generate_image(image_rng(5, index % 4, index),
                                                        CLASSES[index % 4])))
    assert 0.9 < np.median(np.array(estimated) / np.array(true)) < 1.6


def test_estimate_is_relative_to_the_image_width(fields):
    image = fields[0]
    doubled = image.resize((448, 448), Image.Resampling.BICUBIC)
    assert red_cell_radius(doubled) == pytest.approx(2 * red_cell_radius(image), rel=0.1)
    assert relative_radius(doubled) == pytest.approx(relative_radius(image), rel=0.1)


@pytest.mark.parametrize("zoom", [0.67, 1.25, 1.6])
def test_rescale_puts_a_zoomed_smear_back_near_the_training_scale(fields, zoom):
    reference = float(np.median([relative_radius(image) for image in fields]))
    errors_before, errors_after = [], []
    for image in fields:
        zoomed = rescaled(image, zoom)
        errors_before.append(abs(np.log(relative_radius(zoomed) / reference)))
        errors_after.append(abs(np.log(relative_radius(to_reference(zoomed, reference))
                                       / reference)))
    assert np.median(errors_after) < 0.1  # within about 10% of the reference
    assert np.median(errors_after) < 0.5 * np.median(errors_before)


def test_rescale_leaves_an_image_at_the_reference_unchanged(fields):
    image = fields[1]
    assert to_reference(image, relative_radius(image)) is image


def test_too_small_an_image_is_refused():
    with pytest.raises(DataError, match="too small to measure"):
        red_cell_radius(Image.new("RGB", (10, 10), "white"))


def test_model_input_with_a_reference_is_rescaled(tmp_path, fields):
    path = tmp_path / "zoomed.png"
    zoomed = rescaled(fields[2], 1.5)
    zoomed.save(path)
    reference = relative_radius(fields[2])
    plain = load_model_input(path, 64, "rgb")
    back = load_model_input(path, 64, "rgb", Acquisition(radius=reference))
    expected = load_model_input_of(to_reference(zoomed, reference))
    assert not np.array_equal(plain, back)
    np.testing.assert_array_equal(back, expected)


def load_model_input_of(image: Image.Image) -> np.ndarray:
    from leukemia_cnn.data.imaging import to_model_input

    return to_model_input(image, 64, "rgb")


def test_preprocess_records_the_training_scale_and_rescale_is_off_by_default(tmp_path, fields):
    write_tiny_split(tmp_path, fields)
    cfg = compose(["preprocess.image_size=32"], root=REPO_ROOT)
    preprocess.run(cfg, tmp_path)
    out = tmp_path / "data" / "preprocessed"
    meta = json.loads((out / "meta.json").read_text())
    radii = [relative_radius(image) for image in fields[:6]]
    assert meta["red_cell_radius"]["median"] == pytest.approx(np.median(radii), rel=1e-3)
    assert meta["red_cell_radius"]["n"] == 6
    assert meta["rescale"] is False
    assert preprocess.scale_record(out) == {"red_cell_radius": meta["red_cell_radius"],
                                            "rescale": False}
    with np.load(out / "train.npz") as data:
        assert "x_rgb" not in data.files  # preprocess.train_rgb is off by default


def test_preprocess_with_rescale_puts_every_split_at_the_training_scale(tmp_path, fields):
    zoomed = [*fields[:6], rescaled(fields[6], 1.6), rescaled(fields[7], 1.6)]
    write_tiny_split(tmp_path, zoomed)
    cfg = compose(["preprocess.image_size=32", "preprocess.rescale=true",
                   "preprocess.train_rgb=true"], root=REPO_ROOT)
    preprocess.run(cfg, tmp_path)
    out = tmp_path / "data" / "preprocessed"
    reference = json.loads((out / "meta.json").read_text())["red_cell_radius"]["median"]
    x_val, _, _ = preprocess.load_split(out, "val")
    expected = load_model_input(tmp_path / "data" / "raw" / "Pre" / "f6.png", 32, "grayscale",
                                Acquisition(radius=reference))
    np.testing.assert_array_equal(x_val[0], expected)
    rgb = preprocess.train_rgb(out)
    x_train, _, _ = preprocess.load_split(out, "train")
    assert rgb.shape == (*x_train.shape[:3], 3)


def test_the_served_model_preprocesses_at_its_training_scale(fields):
    """A logged model trained with preprocess.rescale puts every request image at its training
    red-cell size before the resize, as the preprocess stage did."""
    import io

    from leukemia_cnn.serving.pyfunc import LeukemiaCNNModel

    buffer = io.BytesIO()
    rescaled(fields[3], 1.5).save(buffer, format="PNG")
    served = LeukemiaCNNModel()
    served.image_size, served.color_mode = 32, "grayscale"
    served.acquisition = acquisition_of({"rescale": True,
                                         "red_cell_radius": {"median": relative_radius(fields[3])}})
    x = served.preprocess([buffer.getvalue()])
    expected = load_model_input(buffer.getvalue(), 32, "grayscale", served.acquisition)
    np.testing.assert_array_equal(x[0], expected)
    served.acquisition = None  # a model trained without it: the image as it comes
    assert not np.array_equal(served.preprocess([buffer.getvalue()])[0], expected)
