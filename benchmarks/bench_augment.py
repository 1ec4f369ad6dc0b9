"""Augmentation benchmark: what the acquisition-shift augmentations of issue 33 cost per
epoch with each candidate library, against one training epoch of the ``fast`` recipe measured
in the same run.

Candidates, each on the same N RGB 100x100 smear fields (the built-in generator, preprocessed
as the preprocess stage does):

- ``keras``: Keras 3 preprocessing layers on batches of 32 in ``tf.data`` (RandomZoom,
  RandomBrightness, RandomContrast, RandomGaussianBlur, RandomGrayscale): the part of the list
  Keras has (no gamma, no JPEG, no HED stain);
- ``albumentations``: albumentations 2 per image (Affine scale, RandomBrightnessContrast,
  RandomGamma, GaussianBlur, ImageCompression, HEStain, ToGray): the whole list;
- ``skimage-hed`` / ``albumentations-hed``: the stain jitter alone, scikit-image's
  ``rgb2hed``/``hed2rgb`` with the Tellez draw vs albumentations' ``HEStain``.

Each figure is the median over ``--repeats`` passes over the N images, scaled to seconds per
1,144 images (the real-dev train split). Baseline: one epoch of ``fast`` (bare ``fit``, after
a warm-up epoch) on the same images; ratio = augmentation seconds / training-epoch seconds.
Target (2 cores): the chosen library's full list costs <= 0.3 of a training epoch (the recipe's
budget is 1.3x ``fast``'s training time).
"""

from __future__ import annotations

import time

import benchlib
import numpy as np

TRAIN_IMAGES = 1144  # real-dev's train split: the per-epoch figure is scaled to it


def smear_fields(n: int) -> np.ndarray:
    """``n`` synthetic smear fields as RGB 100x100 uint8 (generator -> preprocessing)."""
    from leukemia_cnn.data.imaging import to_model_input
    from leukemia_cnn.data.smear import LADDER, generate_image, image_rng

    classes = list(LADDER)
    images = [to_model_input(generate_image(image_rng(7, i % 4, i), classes[i % 4]), 100, "rgb")
              for i in range(n)]
    return np.round(np.stack(images) * 255).astype(np.uint8)


def timed(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return benchlib.median(times)


def keras_pass(images: np.ndarray):
    import keras
    import tensorflow as tf

    layers = keras.Sequential([
        keras.layers.RandomZoom((-0.2, 0.25), fill_mode="reflect", seed=1),
        keras.layers.RandomBrightness(0.15, value_range=(0, 1), seed=2),
        keras.layers.RandomContrast(0.2, value_range=(0, 1), seed=3),
        keras.layers.RandomGaussianBlur(factor=0.5, sigma=(0.1, 1.0), value_range=(0, 1), seed=4),
        keras.layers.RandomGrayscale(factor=0.2, seed=5)])
    data = tf.data.Dataset.from_tensor_slices(images.astype(np.float32) / 255).batch(32)
    data = data.map(lambda batch: layers(batch, training=True))

    def run():
        for _ in data:
            pass
    return run


def albumentations_pass(images: np.ndarray, only_stain: bool = False):
    import albumentations as A

    stain = A.HEStain(method="preset", preset="ruifrok", intensity_scale_range=(0.9, 1.1),
                      intensity_shift_range=(-0.05, 0.05), augment_background=False, p=1.0)
    steps = [stain] if only_stain else [
        A.Affine(scale=(0.8, 1.25), border_mode=4, p=1.0),  # cv2.BORDER_REFLECT_101
        A.RandomBrightnessContrast(0.15, 0.2, p=1.0), A.RandomGamma((80, 125), p=1.0),
        A.GaussianBlur(sigma_limit=(0.1, 1.0), blur_limit=0, p=0.5),
        A.ImageCompression(quality_range=(20, 95), p=0.5), stain, A.ToGray(p=0.2)]
    compose = A.Compose(steps, seed=1)

    def run():
        for image in images:
            compose(image=image)
    return run


def skimage_hed_pass(images: np.ndarray):
    from skimage.color import hed2rgb, rgb2hed

    rng = np.random.default_rng(1)

    def run():
        for image in images:
            hed = rgb2hed(image)
            hed2rgb(hed * rng.uniform(0.9, 1.1, 3) + rng.uniform(-0.05, 0.05, 3) * 0.1)
    return run


def training_epoch(images: np.ndarray) -> float:
    """Median epoch time of the fast recipe's ``fit`` on the images tiled to 1,144 (grey),
    epochs 2-3 (the first carries tracing and thread start-up)."""
    import keras

    from leukemia_cnn.config import compose
    from leukemia_cnn.modeling.train import fit

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    times: list[float] = []
    tiled = np.resize(images, (TRAIN_IMAGES, *images.shape[1:]))
    gray = (tiled.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    gray /= 255
    labels = np.arange(len(gray)) % 4
    cfg = compose(["experiment=fast", "train.verbose=0", "train.epochs=3"], root=benchlib.REPO)
    fit(cfg, gray, labels, gray[:64], labels[:64], callbacks=[EpochTimes()])
    return benchlib.median(times[1:])


def main(argv: list[str] | None = None) -> int:
    cli = benchlib.parser(__doc__, workspace=False)
    cli.add_argument("--images", type=int, default=256, help="smear fields per pass")
    cli.add_argument("--repeats", type=int, default=3, help="passes per candidate")
    args = cli.parse_args(argv)
    bench = benchlib.Bench("augment", "acquisition-shift augmentations per epoch, by library")
    images = smear_fields(args.images)
    scale = TRAIN_IMAGES / len(images)
    bench.say(f"{len(images)} synthetic RGB 100x100 smear fields; figures in s per "
              f"{TRAIN_IMAGES:,} images (real-dev's train split); median of {args.repeats}")
    epoch = training_epoch(images)
    bench.say(f"  baseline: one fast-recipe training epoch   {epoch:6.2f} s")
    candidates = {
        "keras layers (5 of 8 shifts)": keras_pass(images),
        "albumentations (all 8 shifts)": albumentations_pass(images),
        "stain only: albumentations HEStain": albumentations_pass(images, only_stain=True),
        "stain only: skimage rgb2hed/hed2rgb": skimage_hed_pass(images),
    }
    seconds = {}
    for name, run in candidates.items():
        run()  # warm-up (tf.data tracing, cv2 thread pools)
        seconds[name] = timed(run, args.repeats) * scale
        bench.say(f"  {name:<38} {seconds[name]:6.2f} s per epoch, {seconds[name] / epoch:5.2f}"
                  " of a training epoch")
        bench.figure(name, round(seconds[name], 3))
    bench.figure("training_epoch_seconds", round(epoch, 3))
    bench.say("baseline: a fast-recipe training epoch in this run; ratio = augmentation / epoch")
    bench.check("albumentations (all 8 shifts) / training epoch",
                seconds["albumentations (all 8 shifts)"] / epoch, "<=", 0.3, fmt="{:.2f}")
    bench.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
