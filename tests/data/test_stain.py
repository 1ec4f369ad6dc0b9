"""Stain normalisation at preprocessing (data/stain.py, preprocess.stain_normalize), on the
built-in generator's smears: a re-stained smear is moved back to the training stain, the
preprocess stage records and applies the reference, and the served model applies it too."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from helpers import REPO_ROOT
from helpers.datasets import write_tiny_split
from leukemia_cnn.config import compose
from leukemia_cnn.data import preprocess, shifts
from leukemia_cnn.data.acquisition import Acquisition, acquisition_of
from leukemia_cnn.data.imaging import load_model_input
from leukemia_cnn.data.smear import LADDER, generate_image, image_rng
from leukemia_cnn.data.stain import StainReference, lab_statistics, normalise, training_stain

CLASSES = list(LADDER)


@pytest.fixture(scope="module")
def fields():
    return [generate_image(image_rng(17, i % 4, i), CLASSES[i % 4]) for i in range(8)]


def reference_of(image: Image.Image) -> StainReference:
    mean, std = lab_statistics(image)
    return StainReference(tuple(mean.tolist()), tuple(std.tolist()))


@pytest.mark.parametrize("strength", [0.1, 0.2, 0.35])
def test_a_restained_smear_is_moved_back_to_the_training_stain(fields, strength):
    for index, image in enumerate(fields[:4]):
        restained = shifts.ShiftCase("stain", strength).apply(
            image, shifts.case_rng(3, shifts.ShiftCase("stain", strength), index))
        reference = reference_of(image)
        back = normalise(restained, reference)
        mean, std = lab_statistics(back)
        # each L*a*b* channel's mean and spread land on the reference's (within gamut clipping)
        np.testing.assert_allclose(mean, reference.mean, atol=1.5)
        np.testing.assert_allclose(std, reference.std, atol=1.5)
        before = np.abs(np.asarray(restained, float) - np.asarray(image, float)).mean()
        after = np.abs(np.asarray(back, float) - np.asarray(image, float)).mean()
        assert after < before


def test_a_grey_photo_is_shifted_not_blown_up(fields):
    reference = reference_of(fields[0])
    grey = fields[1].convert("L").convert("RGB")
    out = normalise(grey, reference)
    mean, std = lab_statistics(out)
    # a* and b* of a grey photo have no spread: moved to the reference's mean colour, with no
    # noise amplified into colour
    np.testing.assert_allclose(mean[1:], reference.mean[1:], atol=1.5)
    assert np.all(std[1:] < 1.5)
    assert np.isfinite(np.asarray(out, float)).all()


def test_preprocess_records_the_train_stain_and_applies_it_to_every_split(tmp_path, fields):
    restained = [*fields[:6], *(shifts.ShiftCase("stain", 0.3).apply(image, np.random.default_rng(i))
                                for i, image in enumerate(fields[6:]))]
    write_tiny_split(tmp_path, restained)
    cfg = compose(["preprocess.image_size=32", "preprocess.color_mode=rgb",
                   "preprocess.stain_normalize=true"], root=REPO_ROOT)
    preprocess.run(cfg, tmp_path)
    out = tmp_path / "data" / "preprocessed"
    meta = json.loads((out / "meta.json").read_text())
    expected = training_stain([tmp_path / "data" / "raw" / f"{CLASSES[i % 4]}/f{i}.png"
                               for i in range(6)])
    assert meta["stain_normalize"] is True
    recorded = StainReference.from_dict(meta["stain_reference"])
    np.testing.assert_allclose(recorded.mean, expected.mean, atol=1e-3)
    np.testing.assert_allclose(recorded.std, expected.std, atol=1e-3)
    acquisition = acquisition_of(preprocess.scale_record(out))
    assert acquisition is not None and acquisition.radius is None
    x_val, _, _ = preprocess.load_split(out, "val")
    np.testing.assert_array_equal(
        x_val[0], load_model_input(tmp_path / "data" / "raw" / "Pre" / "f6.png", 32, "rgb",
                                   acquisition))
    # off by default: nothing recorded but the switch, nothing applied
    cfg = compose(["preprocess.image_size=32", "preprocess.color_mode=rgb"], root=REPO_ROOT)
    preprocess.run(cfg, tmp_path)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["stain_normalize"] is False and "stain_reference" not in meta
    assert acquisition_of(preprocess.scale_record(out)) is None


def test_the_served_model_normalises_the_stain_as_the_preprocess_stage(fields):
    from leukemia_cnn.serving.pyfunc import LeukemiaCNNModel

    buffer = io.BytesIO()
    shifts.ShiftCase("stain", 0.3).apply(fields[3], np.random.default_rng(0)).save(buffer, "PNG")
    served = LeukemiaCNNModel()
    served.image_size, served.color_mode = 32, "rgb"
    served.acquisition = acquisition_of({"stain_normalize": True, "red_cell_radius": {},
                                         "stain_reference": reference_of(fields[3]).to_dict()})
    assert served.acquisition == Acquisition(stain=served.acquisition.stain)
    x = served.preprocess([buffer.getvalue()])
    np.testing.assert_array_equal(
        x[0], load_model_input(buffer.getvalue(), 32, "rgb", served.acquisition))
    served.acquisition = None
    assert not np.array_equal(served.preprocess([buffer.getvalue()])[0], x[0])
