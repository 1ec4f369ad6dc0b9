"""Magnification at predict time: rescale the image to the training scale, or flag it?

For the workspace's trained model (params.yaml, models/cnn.keras, data/preprocessed/meta.json:
the train split's red-cell scale) and one split's original images under each zoom of the suite
(``shifts.magnify``), three answers to another magnification:

- ``as is``: the image preprocessed as the served model does today;
- ``rescaled``: first put at the train split's median red-cell size
  (:func:`leukemia_cnn.data.scale.to_reference`, what ``preprocess.rescale`` does at predict
  time; the model itself is the workspace's, trained with or without it);
- ``scale guard``: the image kept as is, but flagged when its red-cell size lies outside the
  train split's 5th-95th percentiles widened by ``--margin``: the share flagged and the accuracy
  on the accepted images (what the estimate could give the guard).

    python benchmarks/scale_vs_guard.py --project . --split val
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ZOOMS = (0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0)


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--project", default=".")
    cli.add_argument("--split", default="val", choices=("val", "test"))
    cli.add_argument("--margin", type=float, default=0.1,
                     help="the accepted red-cell range: train 5th-95th percentile, widened by "
                          "this fraction on each side")
    args = cli.parse_args(argv)

    import keras

    from leukemia_cnn.config import load_params
    from leukemia_cnn.data import shifts
    from leukemia_cnn.data.imaging import to_model_input
    from leukemia_cnn.data.preprocess import load_split, scale_record
    from leukemia_cnn.data.scale import relative_radius, to_reference

    root = Path(args.project).resolve()
    cfg = load_params(root / "params.yaml")
    _, y, paths = load_split(root / cfg.paths.preprocessed_dir, args.split)
    originals = shifts.load_originals(root / cfg.paths.raw_dir, paths)
    model = keras.saving.load_model(root / cfg.paths.model_dir / "cnn.keras", compile=False)
    scale = scale_record(root / cfg.paths.preprocessed_dir)["red_cell_radius"]
    low, high = scale["p05"] * (1 - args.margin), scale["p95"] * (1 + args.margin)
    size, mode = cfg.preprocess.image_size, cfg.preprocess.color_mode
    print(f"{len(y)} {args.split} images of {root}; train red-cell radius median "
          f"{scale['median']:.4f} of the width, accepted range {low:.4f}-{high:.4f}")
    print("| zoom | accuracy, as is | accuracy, rescaled | scale guard: flagged | "
          "scale guard: accuracy on accepted |")
    print("|---|---|---|---|---|")
    for zoom in ZOOMS:
        images = [shifts.magnify(image, zoom) if zoom != 1.0 else image for image in originals]
        radii = np.array([relative_radius(image) for image in images])
        plain = np.stack([to_model_input(image, size, mode) for image in images])
        back = np.stack([to_model_input(to_reference(image, scale["median"]), size, mode)
                         for image in images])
        right = model.predict(plain, batch_size=256, verbose=0).argmax(axis=1) == y
        right_back = model.predict(back, batch_size=256, verbose=0).argmax(axis=1) == y
        accepted = (radii >= low) & (radii <= high)
        on_accepted = f"{right[accepted].mean():.3f}" if accepted.any() else "-"
        print(f"| {zoom:g}x | {right.mean():.3f} | {right_back.mean():.3f} | "
              f"{1 - accepted.mean():.1%} | {on_accepted} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
