"""The red-cell scale estimate (data/scale.py) on smears at known magnifications: its error, its
speed, and the scale of each class.

For every sampled smear of ``--source`` (a Kaggle-layout folder, e.g. ../shared/real-dev, or
``synthetic``: the built-in generator's fields) the estimate is taken on the image and on the
image magnified by each zoom of the suite (``shifts.magnify``); the error of a zoom is
``estimate(zoomed) / estimate(original) / zoom - 1``. The other moderate shifts of the suite
(which do not change the magnification) show how far they move the estimate. Speed: the
estimate's time per image against decoding + preprocessing the same image (the baseline,
measured in the same run).

    python benchmarks/scale_report.py --source ../shared/real-dev --images 400
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ZOOMS = (0.5, 0.67, 0.8, 1.25, 1.5, 2.0)
OTHER = (("brightness", 1.15), ("contrast", 0.8), ("blur", 1.0), ("jpeg", 20.0),
         ("stain", 0.05), ("gamma", 1.5))


def sample(source: str, n: int, seed: int) -> tuple[list, list[str]]:
    """``n`` smears (PIL RGB) and their class names."""
    from PIL import Image

    if source == "synthetic":
        from leukemia_cnn.data.smear import LADDER, generate_image, image_rng

        classes = list(LADDER)
        return ([generate_image(image_rng(seed, i % 4, i), classes[i % 4]) for i in range(n)],
                [classes[i % 4] for i in range(n)])
    files = sorted(Path(source).glob("*/*.jpg"))
    chosen = np.random.default_rng(seed).choice(len(files), size=min(n, len(files)),
                                                replace=False)
    return ([Image.open(files[i]).convert("RGB") for i in chosen],
            [files[i].parent.name for i in chosen])


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--source", default="synthetic")
    cli.add_argument("--images", type=int, default=200)
    cli.add_argument("--seed", type=int, default=0)
    args = cli.parse_args(argv)

    from leukemia_cnn.data import shifts
    from leukemia_cnn.data.imaging import to_model_input
    from leukemia_cnn.data.scale import red_cell_radius

    images, classes = sample(args.source, args.images, args.seed)
    print(f"{len(images)} smears of {args.source} (seed {args.seed})")
    start = time.perf_counter()
    base = np.array([red_cell_radius(image) for image in images])
    estimate_s = (time.perf_counter() - start) / len(images)
    start = time.perf_counter()
    for image in images:
        to_model_input(image, 100, "grayscale")
    preprocess_s = (time.perf_counter() - start) / len(images)
    print(f"speed: estimate {estimate_s * 1000:.1f} ms per image; baseline (the preprocessing "
          f"to 100x100 grey) {preprocess_s * 1000:.2f} ms; ratio {estimate_s / preprocess_s:.1f}")
    print(f"radius (px): median {np.median(base):.2f}, 5-95% {np.percentile(base, 5):.2f}-"
          f"{np.percentile(base, 95):.2f}")
    for name in sorted(set(classes)):
        mine = base[np.array(classes) == name]
        print(f"  {name:<7} n={len(mine):>4} median {np.median(mine):.2f}  IQR "
              f"{np.percentile(mine, 25):.2f}-{np.percentile(mine, 75):.2f}")
    print("| zoom | median error | mean abs error | 90th pct abs error |")
    print("|---|---|---|---|")
    for zoom in ZOOMS:
        error = np.array([red_cell_radius(shifts.magnify(image, zoom)) / r / zoom - 1
                          for image, r in zip(images, base, strict=True)])
        print(f"| {zoom:g}x | {np.median(error):+.3f} | {np.abs(error).mean():.3f} | "
              f"{np.percentile(np.abs(error), 90):.3f} |", flush=True)
    print("| other shift (no zoom) | median change | mean abs change |")
    print("|---|---|---|")
    for family, strength in OTHER:
        case = shifts.ShiftCase(family, strength)
        change = np.array([red_cell_radius(case.apply(image, shifts.case_rng(0, case, i))) / r - 1
                           for i, (image, r) in enumerate(zip(images, base, strict=True))])
        print(f"| {case.name} | {np.median(change):+.3f} | {np.abs(change).mean():.3f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
