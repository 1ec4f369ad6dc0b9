"""The image statistics the guard and drift share (features/imagestats.py)."""

import numpy as np
import pytest
from PIL import ImageFilter

from leukemia_cnn.data.imaging import to_model_input
from leukemia_cnn.data.smear import generate_image, image_rng
from leukemia_cnn.features.imagestats import (
    STATISTIC_NAMES,
    describe_files,
    image_statistics,
)


@pytest.mark.parametrize("color_mode", ["grayscale", "rgb"])
def test_drift_reads_the_guards_statistics_of_the_same_file(tmp_path, color_mode):
    paths = []
    for index, class_name in enumerate(("Benign", "Pro")):
        path = tmp_path / f"{class_name}.png"
        generate_image(image_rng(3, index, 0), class_name, 160).save(path)
        paths.append(path)
    described = describe_files(paths, 100, color_mode)
    guard = image_statistics(described.model_inputs)
    by_name = {name: guard[:, index] for index, name in enumerate(STATISTIC_NAMES)}
    np.testing.assert_allclose(described.stats["intensity_mean"], by_name["mean"])
    np.testing.assert_allclose(described.stats["intensity_std"], by_name["std"])
    np.testing.assert_allclose(described.stats["focus"], by_name["log_laplacian_var"])


def test_focus_falls_when_the_smear_is_blurred():
    sharp = generate_image(image_rng(5, 2, 0), "Pre", 200)
    inputs = np.stack([to_model_input(image, 100, "grayscale") for image in
                       (sharp, sharp.filter(ImageFilter.GaussianBlur(1)),
                        sharp.filter(ImageFilter.GaussianBlur(3)))])
    focus = image_statistics(inputs)[:, STATISTIC_NAMES.index("log_laplacian_var")]
    assert focus[0] > focus[1] > focus[2]
