"""Acquisition-shift augmentation (the ``augment`` group): off for the paper's config, seeded,
applied to training batches only, never to validation, test or served images; the robust recipe
composes and trains."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import REPO_ROOT, TINY_OVERRIDES, blob_images
from leukemia_cnn.data.augment import LUMA, active, augment_batch, hed_jitter, pipeline
from leukemia_cnn.errors import ConfigError

ALL_SHIFTS = ["augment.scale=0.25", "augment.brightness=0.2", "augment.contrast=0.25",
              "augment.gamma=0.25", "augment.blur=1.0", "augment.jpeg_quality=20",
              "augment.stain=0.1", "augment.grayscale=0.2"]


def colour_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """RGB float32 images in [0, 1]: a purple disc on a pale pink field."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.empty((n, size, size, 3), dtype=np.float32)
    for index in range(n):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2) < (size * 0.2) ** 2
        images[index] = np.where(disc[..., None], [0.45, 0.25, 0.6], [0.95, 0.85, 0.9])
    return np.clip(images + rng.normal(0, 0.02, images.shape), 0, 1).astype(np.float32)


def test_the_papers_config_augments_nothing(make_cfg):
    from leukemia_cnn.modeling.batches import training_batches

    for experiment in ([], ["experiment=fast"], ["experiment=table1_e15_b64_cce"]):
        cfg = make_cfg(*experiment)
        assert not active(cfg.augment)
        assert not cfg.preprocess.train_rgb and not cfg.preprocess.rescale
    cfg = make_cfg(*TINY_OVERRIDES)
    assert training_batches(cfg, blob_images(np.arange(8) % 4, 32), np.eye(4)[np.arange(8) % 4],
                            1) is None


def test_every_shift_changes_images_and_a_seed_repeats_them(make_cfg):
    cfg = make_cfg(*ALL_SHIFTS, "preprocess.color_mode=rgb")
    images = colour_images(6)
    first = augment_batch(pipeline(cfg.augment, seed=3), images, 3)
    again = augment_batch(pipeline(cfg.augment, seed=3), images, 3)
    other = augment_batch(pipeline(cfg.augment, seed=4), images, 3)
    assert first.shape == images.shape and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert np.abs(first - images).mean() > 0.01
    for knob in ALL_SHIFTS:  # each one alone moves the pixels
        alone = make_cfg(knob, "preprocess.color_mode=rgb")
        changed = augment_batch(pipeline(alone.augment, seed=3), images, 3)
        assert np.abs(changed - images).max() > 0.02, knob


def test_probability_shifts_that_share_of_images_and_passes_the_rest(make_cfg):
    """``augment.probability`` 0.5: about half the images of a batch are shifted, the others
    come back as they went in (to the grey level), and a seed repeats the choice."""
    cfg = make_cfg(*ALL_SHIFTS, "augment.probability=0.5", "preprocess.color_mode=rgb")
    images = np.round(colour_images(64) * 255) / 255  # on the uint8 grid, as preprocess gives
    first = augment_batch(pipeline(cfg.augment, seed=3), images, 3)
    again = augment_batch(pipeline(cfg.augment, seed=3), images, 3)
    np.testing.assert_array_equal(first, again)
    unchanged = np.array([np.abs(a - b).max() < 1e-6 for a, b in zip(first, images, strict=True)])
    assert 16 <= unchanged.sum() <= 48  # binomial(64, 0.5): well inside
    assert np.abs(first[~unchanged] - images[~unchanged]).mean() > 0.01
    with pytest.raises(ConfigError, match="augment.probability"):
        make_cfg("augment.probability=0")


def test_a_grayscale_model_gets_grey_from_augmented_colour(make_cfg):
    cfg = make_cfg("augment.stain=0.1", "preprocess.train_rgb=true")
    images = colour_images(4)
    grey = augment_batch(pipeline(cfg.augment, seed=1), images, 1)
    colour = augment_batch(pipeline(cfg.augment, seed=1), images, 3)
    assert grey.shape == (*images.shape[:3], 1)
    np.testing.assert_allclose(grey[..., 0], colour @ LUMA, atol=1e-6)


def test_hed_jitter_is_the_suites_stain_shift_and_zero_leaves_the_image():
    """The batch jitter computes the robustness suite's stain shift (the same draw gives the
    same image within a grey level: float32 against float64); no jitter leaves the smear."""
    from PIL import Image

    from leukemia_cnn.data.shifts import HED_BIAS_SCALE, stain_jitter

    images = np.round(colour_images(3) * 255).astype(np.uint8)
    ones, zeros = np.ones((3, 3), np.float32), np.zeros((3, 3), np.float32)
    assert np.abs(hed_jitter(images, ones, zeros).astype(int) - images).max() <= 1
    for index, image in enumerate(images):
        rng = np.random.default_rng(index)
        suite = np.asarray(stain_jitter(Image.fromarray(image), 0.2, np.random.default_rng(index)))
        alpha = rng.uniform(0.8, 1.2, 3)[None].astype(np.float32)
        beta = (rng.uniform(-0.2, 0.2, 3) * HED_BIAS_SCALE)[None].astype(np.float32)
        ours = hed_jitter(image[None], alpha, beta)[0]
        assert np.abs(ours.astype(int) - suite).max() <= 1
        assert np.abs(ours.astype(int) - image).mean() > 1  # it did change the colour


def test_stain_on_a_grayscale_model_needs_the_rgb_train_split(make_cfg):
    with pytest.raises(ConfigError, match="preprocess.train_rgb"):
        make_cfg("augment.stain=0.1")
    make_cfg("augment.stain=0.1", "preprocess.color_mode=rgb")  # colour is there


def test_training_batches_are_augmented_and_validation_is_not(make_cfg):
    """Keras validates on the arrays as given: the val loss of the last epoch is the fitted
    model's loss on the untouched val images, while the training batches differ from the
    training images."""
    from leukemia_cnn.modeling.batches import training_batches
    from leukemia_cnn.modeling.train import fit

    cfg = make_cfg(*TINY_OVERRIDES, "train.epochs=2", *ALL_SHIFTS, "preprocess.train_rgb=true")
    labels = np.arange(32) % 4
    x_rgb = colour_images(32)
    x_val = blob_images(labels, 32, seed=5)
    batches = training_batches(cfg, x_rgb, np.eye(4, dtype=np.float32)[labels], 1)
    seen = np.concatenate([images.numpy() for images, _ in batches])
    assert seen.shape == (32, 32, 32, 1)
    grey = x_rgb @ LUMA[:, None]
    assert not any(np.allclose(image, g, atol=1e-3) for image in seen[:4] for g in grey)

    model, history, _ = fit(cfg, x_rgb, labels, x_val, labels)
    assert model.input_shape == (None, 32, 32, 1)
    loss = model.evaluate(x_val, np.eye(4)[labels], verbose=0)[0]
    assert history["val_loss"].iloc[-1] == pytest.approx(loss, rel=1e-4)


@pytest.mark.slow  # trains; about 15 s on 2 cores
def test_the_robust_recipe_composes_and_trains_a_tiny_run(make_cfg):
    from leukemia_cnn.modeling.train import fit

    for mode, channels in (("grayscale", 1), ("rgb", 3)):
        cfg = make_cfg("experiment=robust", *TINY_OVERRIDES, "train.epochs=2",
                       "train.lr_warmup_epochs=1", f"preprocess.color_mode={mode}")
        assert active(cfg.augment) and cfg.augment.stain > 0 and cfg.preprocess.train_rgb
        labels = np.arange(32) % 4
        x_rgb = colour_images(32)
        x_val = x_rgb if channels == 3 else (x_rgb @ LUMA[:, None]).astype(np.float32)
        model, history, _ = fit(cfg, x_rgb, labels, x_val, labels)
        assert model.input_shape == (None, 32, 32, channels)
        assert len(history) == 2 and np.isfinite(history["loss"]).all()


@pytest.mark.slow  # trains; about 15 s on 2 cores
def test_the_train_stage_trains_a_grey_model_on_augmented_colour(tmp_path, mlflow_store):
    """The robust recipe on a grayscale model through the train stage: batches from the train
    split's RGB copy (``x_rgb``), the guard and the logged model on the grey images."""
    from helpers import write_preprocessed
    from leukemia_cnn.config import compose
    from leukemia_cnn.modeling import train

    cfg = compose(["experiment=robust", *TINY_OVERRIDES, "train.epochs=2",
                   "train.lr_warmup_epochs=1", "train.early_stopping_patience=null"],
                  root=REPO_ROOT)
    directory = write_preprocessed(tmp_path, cfg, per_class={"train": 8, "val": 4, "test": 4})
    with np.load(directory / "train.npz") as data:
        arrays = dict(data)
    arrays["x_rgb"] = np.repeat(arrays["x"], 3, axis=-1) * np.array([1.0, 0.9, 0.95],
                                                                     np.float32)
    np.savez(directory / "train.npz", **arrays)
    result = train.run(cfg, tmp_path)
    assert result["epochs"] == 2 and result["run_id"]
    assert (tmp_path / cfg.paths.model_dir / "guard.npz").is_file()
