"""Features benchmark: HOG + PCA of every preprocessed image, one process vs both cores.

Runs what the ``features`` stage runs (``features.features_of_splits``: HOG of every split,
PCA fit on train while the workers describe val and test, transform of every split) with
``n_jobs=1`` and with ``features.n_jobs`` worker processes, alternating, and checks that both
give the same HOG descriptors and PCA features bit for bit. The worker pool is shut down
before every parallel repeat, so each pays the worker start-up that a ``leukemia-cnn
features`` process pays.

Target (2 cores): speed-up >= 1.7x over one process, identical features.
"""

from __future__ import annotations

import benchlib
import numpy as np

SPLITS = ("train", "val", "test")


def hog_and_pca(images: dict[str, np.ndarray], fcfg, n_jobs: int) -> dict:
    """The features stage's computation; returns the arrays and the time of each part."""
    from leukemia_cnn.features.features import features_of_splits

    result = features_of_splits(images, fcfg, n_jobs=n_jobs)
    return {"hogs": result.hogs, "reduced": result.reduced, **result.seconds}


def shutdown_workers() -> None:
    """Stop joblib's reusable worker pool so that the next parallel call starts fresh."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def main(argv: list[str] | None = None) -> int:
    cli = benchlib.parser(__doc__)
    cli.add_argument("--repeats", type=int, default=2,
                     help="timed runs of each mode (alternating: 1, N, N, 1, ...)")
    cli.add_argument("--n-jobs", type=int, default=None,
                     help="worker processes of the parallel mode (default: features.n_jobs)")
    args = cli.parse_args(argv)
    bench = benchlib.Bench("features", "HOG + PCA, one process vs both cores")
    with benchlib.workspace_from_args(args, bench) as ws:
        from leukemia_cnn.data.preprocess import load_split

        cfg = ws.params()
        fcfg = cfg.features
        n_jobs = int(args.n_jobs or fcfg.n_jobs)
        images = {name: load_split(ws.project / cfg.paths.preprocessed_dir, name)[0]
                  for name in SPLITS}
        n_images = sum(len(x) for x in images.values())
        bench.say(f"{n_images:,} preprocessed images {images['train'].shape[1:]} "
                  f"(train/val/test {', '.join(str(len(x)) for x in images.values())}); HOG "
                  f"{fcfg.hog.orientations} orientations, cells {list(fcfg.hog.pixels_per_cell)}, "
                  f"blocks {list(fcfg.hog.cells_per_block)}; PCA({fcfg.pca.n_components}, "
                  f"{fcfg.pca.get('svd_solver', 'randomized')} solver) fit "
                  f"on train; parallel mode: {n_jobs} worker processes")
        order = [1, n_jobs, n_jobs, 1] * args.repeats
        order = order[:2 * args.repeats]
        runs: dict[int, list[dict]] = {1: [], n_jobs: []}
        for jobs in order:
            if jobs > 1:
                shutdown_workers()
            result = hog_and_pca(images, fcfg, jobs)
            runs[jobs].append(result)
            bench.say(f"  n_jobs={jobs}: {result['total']:6.2f} s (train HOG back after "
                      f"{result['hog_train']:.2f} s, then PCA fit {result['pca_fit']:.2f} s "
                      "while the workers describe val and test)")

        serial, parallel = runs[1][0], runs[n_jobs][0]
        identical = all(np.array_equal(serial["hogs"][s], parallel["hogs"][s]) and
                        np.array_equal(serial["reduced"][s], parallel["reduced"][s])
                        for s in SPLITS)
        hog_dim = serial["hogs"]["train"].shape[1]
        one = benchlib.median(r["total"] for r in runs[1])
        many = benchlib.median(r["total"] for r in runs[n_jobs])
        hog_one = benchlib.median(r["hog_train"] for r in runs[1])
        hog_many = benchlib.median(r["hog_train"] for r in runs[n_jobs])
        bench.say(f"median of {args.repeats}: one process {one:.2f} s ({n_images / one:.0f} "
                  f"images/s), {n_jobs} workers {many:.2f} s ({n_images / many:.0f} images/s); "
                  f"train HOG alone {hog_one:.2f} s vs {hog_many:.2f} s "
                  f"(speed-up {hog_one / hog_many:.2f}x); HOG length {hog_dim}")
        bench.say(f"baseline: one process (n_jobs=1) in this run; ratio = one-process time / "
                  f"{n_jobs}-worker time")
        bench.figure("n_images", n_images)
        bench.figure("seconds_one_process", one)
        bench.figure("seconds_parallel", many)
        bench.check(f"HOG+PCA speed-up, {n_jobs} workers over one process ({n_images:,} images)",
                    one / many, ">=", 1.7, "x")
        bench.check("features bit-identical (HOG and PCA, every split; 1 = yes)",
                    float(identical), ">=", 1.0, fmt="{:.0f}")
    bench.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
