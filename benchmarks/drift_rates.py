"""How often `leukemia-cnn drift` calls drift: on the test split, and on shifted copies of it.

Usage (in a workspace whose features stage has run, e.g. a scratch project on real images):

    python benchmarks/drift_rates.py --workspace DIR [--batch 30] [--draws 200]

For every variant of the test split (as is; re-encoded as JPEG; stain shifts of 2, 5 and 15%;
Gaussian blur of 1 and 2 pixels; twice the magnification; half the size) and for scikit-image's
sample images it prints, as a Markdown table: the verdict on the whole batch, the features
that shifted, and the share of `--draws` random batches of `--batch` images called drift
(the false-alarm rate for the unchanged split, the detection rate for the others), then the
false-alarm rate on independent batches (val and test pooled and re-split). Shifted
images are written to a temporary folder and removed; nothing is written to the workspace.
The verdict is the shift tests' alone (no model), with the workspace's `drift` settings.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from leukemia_cnn.config import load_params
from leukemia_cnn.data.preprocess import n_workers
from leukemia_cnn.features.imagestats import INPUT_FEATURES, describe_files, pca_columns
from leukemia_cnn.monitoring.kstests import shift_tests, verdict
from leukemia_cnn.monitoring.reference import load_reference, new_pca_features

SAMPLES = ("astronaut", "camera", "chelsea", "coffee", "coins", "moon", "rocket", "page",
           "horse", "clock", "immunohistochemistry", "cell", "grass", "brick")


def stain(factors):
    def change(image):
        rgb = np.asarray(image, dtype=np.float32) * np.array(factors, np.float32)
        return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    return change


def magnify(image):
    w, h = image.size
    return image.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4)).resize((w, h))


VARIANTS = {
    "test split as is": None,
    "re-encoded (JPEG q92)": lambda image: image,
    "stain 2% (R x0.98, B x1.02)": stain([0.98, 1.0, 1.02]),
    "stain 5% (R x0.95, B x1.05)": stain([0.95, 1.0, 1.05]),
    "stain 15% (R x0.85, B x1.12)": stain([0.85, 1.0, 1.12]),
    "blur sigma 1 px": lambda image: image.filter(ImageFilter.GaussianBlur(1)),
    "blur sigma 2 px": lambda image: image.filter(ImageFilter.GaussianBlur(2)),
    "magnified x2 (centre crop)": magnify,
    "downsized to half": lambda image: image.resize((image.width // 2, image.height // 2)),
}


def write_variant(paths: list[Path], change, folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    written = []
    for index, path in enumerate(paths):
        target = folder / f"{index:04d}.jpg"
        change(Image.open(path).convert("RGB")).save(target, "JPEG", quality=92)
        written.append(target)
    return written


def features_of(cfg, paths: list[Path], pca) -> dict[str, np.ndarray]:
    described = describe_files(paths, cfg.preprocess.image_size,
                               cfg.preprocess.color_mode, n_workers())
    return {**described.stats,
            **pca_columns(new_pca_features(cfg, described.model_inputs, pca))}


def decide(cfg, reference: dict, new: dict):
    tests = shift_tests(reference, new, cfg.drift.alpha, cfg.drift.correction)
    return verdict(tests, None, cfg.drift.max_flagged_share, cfg.drift.alpha,
                   cfg.drift.correction), tests


def row(cfg, name: str, reference: dict, new: dict, batch: int, draws: int) -> str:
    whole, tests = decide(cfg, reference, new)
    moved = sorted((t for t in tests if t.shifted), key=lambda t: t.p_adjusted)
    named = ", ".join(t.feature for t in moved[:4]) + (" ..." if len(moved) > 4 else "")
    n = len(next(iter(new.values())))
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(draws if n > batch else 0):
        chosen = rng.choice(n, batch, replace=False)
        hits += decide(cfg, reference, {k: v[chosen] for k, v in new.items()})[0].drift
    rate = f"{hits / draws:.0%} of {draws}" if n > batch else "-"
    return (f"| {name} | {n} | {'drift' if whole.drift else 'no drift'} | {len(moved)} | "
            f"{named or '-'} | {rate} |")


def calibration(cfg, root: Path, batch: int, draws: int) -> str:
    """The false-alarm rate on independent batches: val and test pooled, then per draw a
    fresh random reference of val's size and a batch of ``batch`` from the rest (HOG + PCA
    components only: those whose reference is val)."""
    features = Path(root) / cfg.paths.features_dir
    val, test = (np.load(features / f"{name}.npz")["x"] for name in ("val", "test"))
    pool, rng, hits = np.concatenate([val, test]), np.random.default_rng(1), 0
    for _ in range(draws):
        order = rng.permutation(len(pool))
        reference = pca_columns(pool[order[:len(val)]])
        new = pca_columns(pool[order[len(val):len(val) + batch]])
        hits += decide(cfg, reference, new)[0].drift
    return (f"False alarms on independent batches (val and test pooled, re-split {draws} "
            f"times into a reference of {len(val)} and a batch of {batch}; HOG + PCA "
            f"components only): {hits / draws:.1%}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=30)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--correction", choices=("bh", "bonferroni"), default=None,
                        help="instead of the workspace's drift.correction")
    args = parser.parse_args(argv)
    root = args.workspace.resolve()
    cfg = load_params(root / "params.yaml")
    if args.correction:
        cfg.drift.correction = args.correction
    ref = load_reference(cfg, root)
    reference = {**{k: ref.stats[k] for k in INPUT_FEATURES}, **pca_columns(ref.pca_features)}
    table = pd.read_csv(root / cfg.paths.splits)
    raw = Path(cfg.paths.raw_dir)
    raw = raw if raw.is_absolute() else root / raw
    test = [raw / p for p in table.loc[table["split"] == "test", "path"]]
    print(f"Reference: {ref.n_measured} train images (input features), "
          f"{len(ref.pca_features)} val images (HOG + PCA); alpha {cfg.drift.alpha}, "
          f"correction {cfg.drift.correction}; random batches of {args.batch}.\n")
    print("| new images | n | verdict (whole batch) | features shifted | first shifted "
          f"| batches of {args.batch} called drift |")
    print("|---|---:|---|---:|---|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for index, (name, change) in enumerate(VARIANTS.items()):
            paths = test if change is None else write_variant(test, change,
                                                              Path(tmp) / str(index))
            print(row(cfg, name, reference, features_of(cfg, paths, ref.pca), args.batch,
                      args.draws), flush=True)
        from skimage import data

        samples = Path(tmp) / "samples"
        samples.mkdir()
        for name in SAMPLES:
            Image.fromarray(getattr(data, name)()).save(samples / f"{name}.png")
        print(row(cfg, f"scikit-image samples ({', '.join(SAMPLES)})", reference,
                  features_of(cfg, sorted(samples.iterdir()), ref.pca), args.batch,
                  args.draws))
    print(f"\n{calibration(cfg, root, args.batch, args.draws)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
