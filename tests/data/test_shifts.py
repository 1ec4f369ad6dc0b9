"""The acquisition-shift suite: seeded, reproducible, and every shift changes a smear as named."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from skimage.color import rgb2hed
from skimage.metrics import peak_signal_noise_ratio

from leukemia_cnn.data import shifts
from leukemia_cnn.data.smear import generate_image, image_rng
from leukemia_cnn.errors import DataError

SIZE = 224


@pytest.fixture(scope="module")
def smear() -> Image.Image:
    """A built-in synthetic smear field at the Kaggle size."""
    return generate_image(image_rng(2024, 3, 0), "Pro", SIZE)


def disc(radius: float, size: int = SIZE) -> Image.Image:
    """A dark disc of ``radius`` pixels at the centre of a pale field."""
    image = Image.new("RGB", (size, size), (230, 220, 225))
    c = size / 2
    ImageDraw.Draw(image).ellipse((c - radius, c - radius, c + radius, c + radius),
                                  fill=(60, 30, 90))
    return image


def dark_radius(image: Image.Image) -> float:
    """The radius of the dark area at the centre (from its pixel count; a zoom-out mirrors
    copies of it around, which are other components)."""
    from skimage.measure import label

    components = label(np.asarray(image.convert("L")) < 130)
    centre = components[image.height // 2, image.width // 2]
    return float(np.sqrt((components == centre).sum() / np.pi))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.mark.parametrize("case", shifts.suite(), ids=lambda case: case.name)
def test_every_case_keeps_size_and_mode_and_changes_the_smear(case, smear):
    out = case.apply(smear, rng())
    assert out.size == smear.size and out.mode == "RGB"
    assert np.abs(pixels(out) - pixels(smear)).mean() > 0.3, case.name
    assert smear.tobytes() == generate_image(image_rng(2024, 3, 0), "Pro", SIZE).tobytes()


@pytest.mark.parametrize("family", [name for name, family in shifts.FAMILIES.items()
                                    if family.identity is not None])
def test_the_identity_strength_leaves_the_smear_nearly_as_it_is(family, smear):
    out = shifts.FAMILIES[family].shift(smear, shifts.FAMILIES[family].identity, rng())
    assert np.abs(pixels(out) - pixels(smear)).mean() < 0.6


def test_the_suite_is_reproducible_from_its_seed_and_differs_across_seeds(smear):
    images = [smear, smear.transpose(Image.Transpose.ROTATE_90)]
    case = shifts.ShiftCase("stain", 0.2)

    def apply_suite(images, case, seed):
        return [case.apply(image, shifts.case_rng(seed, case, i)) for i, image in enumerate(images)]

    first = apply_suite(images, case, seed=7)
    again = apply_suite(images, case, seed=7)
    other = apply_suite(images, case, seed=8)
    assert [im.tobytes() for im in first] == [im.tobytes() for im in again]
    assert first[0].tobytes() != other[0].tobytes()
    # each image has its own draw, and an image's draw does not depend on the others
    alone = apply_suite(images[:1], case, seed=7)
    assert alone[0].tobytes() == first[0].tobytes()


@pytest.mark.parametrize("zoom", [0.5, 0.67, 0.8, 1.25, 1.5, 2.0])
def test_a_zoom_scales_a_known_pattern_by_its_factor(zoom):
    radius = 30.0
    measured = dark_radius(shifts.magnify(disc(radius), zoom))
    assert measured == pytest.approx(radius * zoom, rel=0.06)


def test_zooming_out_invents_no_black_border(smear):
    out = pixels(shifts.magnify(smear, 0.5))
    border = np.concatenate([out[0], out[-1], out[:, 0], out[:, -1]])
    assert border.mean() > 0.8 * pixels(smear).mean()
    assert out.sum(axis=-1).min() >= pixels(smear).sum(axis=-1).min() - 30


def test_brightness_contrast_and_gamma_move_the_intensities_as_named(smear):
    gray = lambda image: np.asarray(image.convert("L"), dtype=np.float64)  # noqa: E731
    assert gray(shifts.brightness(smear, 1.15)).mean() > gray(smear).mean() + 3
    assert gray(shifts.brightness(smear, 0.85)).mean() < gray(smear).mean() - 3
    assert gray(shifts.contrast(smear, 0.8)).std() < 0.85 * gray(smear).std()
    assert gray(shifts.gamma(smear, 1.5)).mean() < gray(smear).mean()
    assert gray(shifts.gamma(smear, 0.67)).mean() > gray(smear).mean()


def test_blur_lowers_the_focus_with_its_radius(smear):
    def laplacian_variance(image):
        from scipy.ndimage import laplace

        return laplace(np.asarray(image.convert("L"), dtype=np.float64)).var()

    focus = [laplacian_variance(shifts.gaussian_blur(smear, r)) for r in (0.5, 1.0, 2.0, 3.0)]
    assert laplacian_variance(smear) > focus[0] > focus[1] > focus[2] > focus[3]


def test_a_lower_jpeg_quality_loses_more_of_the_image(smear):
    psnr = [peak_signal_noise_ratio(pixels(smear), pixels(shifts.jpeg(smear, q)), data_range=255)
            for q in (50, 20, 10, 5)]
    assert psnr == sorted(psnr, reverse=True) and psnr[0] > psnr[-1] + 3


def test_stain_jitter_changes_the_stain_channels_more_at_a_higher_strength(smear):
    hed = rgb2hed(np.asarray(smear))
    change = []
    for sigma in (0.05, 0.1, 0.2, 0.35):
        # the mean over several draws: one draw may land near 1 by chance
        shifted = [rgb2hed(np.asarray(shifts.stain_jitter(smear, sigma, np.random.default_rng(s))))
                   for s in range(6)]
        change.append(np.mean([np.abs(h - hed)[..., :2].mean() for h in shifted]))
    assert change == sorted(change) and change[0] > 0


def test_a_grayscale_photo_has_three_equal_channels(smear):
    out = pixels(shifts.grayscale_photo(smear, 1.0))
    assert np.abs(out[..., 0] - out[..., 2]).max() <= 1
    half = pixels(shifts.grayscale_photo(smear, 0.5))
    spread = lambda a: (a.max(axis=-1) - a.min(axis=-1)).mean()  # noqa: E731
    assert spread(out) < spread(half) < spread(pixels(smear))


def test_rotations_and_flips_move_a_marked_corner(smear):
    marked = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    marked.paste((0, 0, 0), (0, 0, 20, 20))  # the top-left corner
    corner = lambda image, y, x: pixels(image)[y, x].mean()  # noqa: E731
    assert corner(shifts.rotate(marked, 90), SIZE - 5, 5) < 10  # counter-clockwise: bottom-left
    assert corner(shifts.rotate(marked, 180), SIZE - 5, SIZE - 5) < 10
    assert corner(shifts.flip(marked, 1), 5, SIZE - 5) < 10
    assert corner(shifts.flip(marked, 2), SIZE - 5, 5) < 10
    tilted = pixels(shifts.rotate(smear, 45))
    assert tilted.sum(axis=-1).min() > 0.5 * pixels(smear).sum(axis=-1).min()  # no black corners


def test_noise_adds_its_standard_deviation(smear):
    flat = Image.new("RGB", (SIZE, SIZE), (128, 128, 128))
    assert pixels(shifts.noise(flat, 15.0, rng())).std() == pytest.approx(15.0, rel=0.05)


def test_the_registry_names_cases_and_holds_the_moderate_set():
    names = {case.name for case in shifts.MODERATE}
    assert names == {"magnify@0.8", "magnify@1.25", "brightness@0.85", "brightness@1.15",
                     "contrast@0.8", "blur@1", "jpeg@20", "stain@0.05", "grayscale@1"}
    assert "grayscale@1" not in {c.name for c in shifts.moderate("grayscale")}
    gray_suite = shifts.suite(color_mode="grayscale")
    assert "grayscale" not in {c.family for c in gray_suite}
    assert "stain@0.05" in {c.name for c in gray_suite}  # a stain moves the grey levels too
    assert set(shifts.moderate("grayscale")) <= set(gray_suite)
    assert shifts.suite(["blur"], strengths={"blur": [2.0]}) == [
        shifts.ShiftCase("blur", 1.0), shifts.ShiftCase("blur", 2.0)]


def test_a_bad_flip_axis_is_one_clear_error(smear):
    with pytest.raises(DataError, match="flip"):
        shifts.ShiftCase("flip", 3.0).apply(smear, rng())


@settings(max_examples=25, deadline=None)
@given(family=st.sampled_from(sorted(shifts.FAMILIES)), index=st.integers(0, 5),
       seed=st.integers(0, 2**31))
def test_any_case_is_a_pure_function_of_image_strength_and_seed(family, index, seed):
    strengths = shifts.FAMILIES[family].strengths
    case = shifts.ShiftCase(family, strengths[index % len(strengths)])
    image = generate_image(image_rng(1, 0, 0), "Benign", 64)
    first = case.apply(image, shifts.case_rng(seed, case, 0))
    assert first.tobytes() == case.apply(image, shifts.case_rng(seed, case, 0)).tobytes()
    assert image.tobytes() == generate_image(image_rng(1, 0, 0), "Benign", 64).tobytes()
