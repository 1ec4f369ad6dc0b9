"""The guard's ``shift`` part: a small calibrated model of the network's errors under
acquisition shift (docs/robustness.md, "A guard judged by what it lets through").

A distance to the training images says how unusual an image is, not whether the network reads
it wrong. At training time the val split's original images are shifted at random strengths
(:data:`LEARNING_RANGES`, with the training seed; never the robustness stage's grid or seed,
never the test split), scored by the trained network, and a logistic regression learns which of
them it gets wrong from what the guard can see of any image (:func:`features`). Its score is the
predicted probability of an error. Beside it the distance parts are scaled at
:data:`FAR_ACCEPT_RATE` of val, so that they flag only what is far from every training image.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy.special import softmax

from leukemia_cnn.data import shifts
from leukemia_cnn.data.acquisition import acquisition_of
from leukemia_cnn.data.imaging import N_THREADS, to_model_input
from leukemia_cnn.data.preprocess import scale_record
from leukemia_cnn.modeling.guardparts import squared_distances

# The strengths the shift part learns from: (low, high, log-uniform?) per family; flip draws
# its axis. Wider than the robustness stage's moderate cases, so that the part sees errors.
LEARNING_RANGES: dict[str, tuple[float, float, bool]] = {
    "magnify": (0.5, 2.0, True), "brightness": (0.6, 1.5, True), "contrast": (0.5, 1.6, True),
    "gamma": (0.6, 1.7, True), "blur": (0.0, 3.5, False), "jpeg": (5.0, 60.0, False),
    "stain": (0.0, 0.4, False), "grayscale": (0.0, 1.0, False), "rotate": (0.0, 360.0, False),
    "flip": (1.0, 2.0, False), "noise": (0.0, 50.0, False),
}
DRAWS_PER_IMAGE = 6  # shifted copies of each val image the part learns from (plus the image)
FAR_ACCEPT_RATE = 0.995  # the distance parts' scale beside a shift part: far from everything
# ... and never below this quantile of their score on the shifted val images the network reads
# right: a distance part does not flag a shift the network handles (the shift part judges it).
ENVELOPE = 0.99
FEATURE_NAMES = ("log_mahalanobis", "log_statistics_norm", "top_probability", "margin",
                 "entropy")
FOLDS = 5  # of the out-of-fold val scores (``val_oof``)


def learning_cases(rng: np.random.Generator, n: int, color_mode: str) -> list[shifts.ShiftCase]:
    """``n`` cases of random families at random strengths from :data:`LEARNING_RANGES`
    (colour-only families left out for a grayscale model)."""
    families = [name for name in LEARNING_RANGES
                if not (shifts.FAMILIES[name].color_only and color_mode == "grayscale")]
    cases = []
    for family in rng.choice(families, size=n):
        low, high, log = LEARNING_RANGES[str(family)]
        if family == "flip":
            strength = float(rng.integers(1, 3))
        elif log:
            strength = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        else:
            strength = float(rng.uniform(low, high))
        cases.append(shifts.ShiftCase(str(family), round(strength, 4)))
    return cases


def learning_set(originals, labels: np.ndarray, seed: int, image_size: int, color_mode: str,
                 draws: int = DRAWS_PER_IMAGE, acquisition=None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The inputs the shift part learns from: every image of ``originals`` unchanged and
    under ``draws`` random cases, preprocessed as served (``acquisition``: the model's
    ``preprocess.rescale`` and ``stain_normalize`` references); ``(x, labels, groups)``,
    ``groups`` the index in ``originals`` of each row (the first ``len(originals)`` rows are
    the images unchanged)."""
    rng = np.random.default_rng([seed, 31, 2])
    jobs = [(index, None) for index in range(len(originals))]
    jobs += [(index, case) for index in range(len(originals))
             for case in learning_cases(rng, draws, color_mode)]

    def one(job_index: int) -> np.ndarray:
        index, case = jobs[job_index]
        image = originals[index]
        if case is not None:
            image = case.apply(image, shifts.case_rng(seed + 1_000_003, case, job_index))
        if acquisition is not None:
            image = acquisition.apply(image)
        return to_model_input(image, image_size, color_mode)

    with ThreadPoolExecutor(min(N_THREADS, 2)) as pool:
        x = np.stack(list(pool.map(one, range(len(jobs)))))
    groups = np.array([index for index, _ in jobs])
    return x, np.asarray(labels)[groups], groups


def features(part: dict[str, np.ndarray], embeddings: np.ndarray,
             statistics: np.ndarray) -> np.ndarray:
    """The part's input per image: :data:`FEATURE_NAMES`, then the signed and absolute
    z-scores of the image statistics (:func:`leukemia_cnn.modeling.guard.statistics_for`)."""
    probabilities = softmax(embeddings @ part["kernel"] + part["bias"], axis=1)
    top = np.sort(probabilities, axis=1)[:, ::-1]
    entropy = -(probabilities * np.log(np.clip(probabilities, 1e-12, None))).sum(axis=1)
    distance = squared_distances(embeddings, part["means"], part["whitener"]).min(axis=1)
    z = (statistics - part["statistics_mean"]) / part["statistics_scale"]
    columns = [np.log1p(distance / embeddings.shape[1]), np.log1p((z**2).sum(axis=1)),
               top[:, 0], top[:, 0] - top[:, 1], entropy]
    return np.column_stack([*columns, z, np.abs(z)])


def fit(mahalanobis: dict[str, np.ndarray], statistics_train: np.ndarray, last_layer,
        embeddings: np.ndarray, statistics: np.ndarray, wrong: np.ndarray,
        groups: np.ndarray) -> dict[str, np.ndarray]:
    """The part, from the fitted ``mahalanobis`` part, the training images' statistics, the
    network's last layer and the learning set's embeddings, statistics, errors and image index
    per row (:func:`learning_set`: its first rows are the val images unchanged, in order).

    ``val_oof`` holds each unchanged val image's score from a model fitted without any row of
    that image (:data:`FOLDS` folds by image): the val threshold is set on these, as a test
    image will be scored, not on scores of rows the model was fitted on (which made the shift
    part flag 31% of a small blob set's clean test images instead of 5%).
    """
    kernel, bias = last_layer
    scale = statistics_train.std(axis=0)
    part = {"means": mahalanobis["means"], "whitener": mahalanobis["whitener"],
            "kernel": np.asarray(kernel, np.float64), "bias": np.asarray(bias, np.float64),
            "statistics_mean": statistics_train.mean(axis=0),
            "statistics_scale": np.where(scale > 0, scale, 1.0)}
    table = features(part, embeddings, statistics)
    centre, spread = table.mean(axis=0), table.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    table = (table - centre) / spread
    wrong = np.asarray(wrong, dtype=bool)
    part.update(feature_mean=centre, feature_scale=spread, errors_seen=np.array([wrong.sum()]))
    part.update(_logistic(table, wrong))
    clean = np.arange(len(np.unique(groups)))  # the first rows: the val images unchanged
    part["val_oof"] = _out_of_fold(table, wrong, np.asarray(groups), clean)
    return part


def _logistic(table: np.ndarray, wrong: np.ndarray) -> dict[str, np.ndarray]:
    """The logistic regression's coefficients; with nothing to tell apart (no error, or only
    errors), minus the top probability (confident answers are trusted)."""
    from sklearn.linear_model import LogisticRegression

    if wrong.all() or not wrong.any():
        coef = np.zeros(table.shape[1])
        coef[FEATURE_NAMES.index("top_probability")] = -1.0
        return {"coef": coef, "intercept": np.zeros(1)}
    model = LogisticRegression(max_iter=2000).fit(table, wrong)
    return {"coef": model.coef_[0].astype(np.float64),
            "intercept": model.intercept_.astype(np.float64)}


def _out_of_fold(table: np.ndarray, wrong: np.ndarray, groups: np.ndarray,
                 rows: np.ndarray) -> np.ndarray:
    """The score of each of ``rows`` from a model fitted on the other folds' images."""
    from sklearn.model_selection import GroupKFold

    scores = np.empty(len(rows))
    folds = min(FOLDS, len(np.unique(groups)))
    if folds < 2:
        return _probability(table[rows], _logistic(table, wrong))
    for fit_rows, held in GroupKFold(n_splits=folds).split(table, wrong, groups):
        model = _logistic(table[fit_rows], wrong[fit_rows])
        wanted = np.isin(rows, held)
        scores[wanted] = _probability(table[rows[wanted]], model)
    return scores


def _probability(table: np.ndarray, model: dict[str, np.ndarray]) -> np.ndarray:
    logit = table @ model["coef"] + model["intercept"][0]
    return 1.0 / (1.0 + np.exp(-np.clip(logit, -60, 60)))


def score(part: dict[str, np.ndarray], embeddings: np.ndarray,
          statistics: np.ndarray) -> np.ndarray:
    """The predicted probability that the network reads each image wrong."""
    table = (features(part, embeddings, statistics) - part["feature_mean"]) / part["feature_scale"]
    return _probability(table, part)


def learning_inputs(cfg, root: Path, paths, labels: np.ndarray):
    """The shift part's learning set for the val split (``paths`` relative to
    ``paths.raw_dir``, ``labels``), or None when ``train.guard_method`` has no ``shift`` part;
    shifted with the training ``seed`` (never ``robustness.seed``)."""
    if "shift" not in cfg.train.guard_method.split("+"):
        return None
    originals = shifts.load_originals(Path(root) / cfg.paths.raw_dir, paths)
    scale = scale_record(Path(root) / cfg.paths.preprocessed_dir)
    x, y, groups = learning_set(originals, labels, cfg.seed, cfg.preprocess.image_size,
                                cfg.preprocess.color_mode, acquisition=acquisition_of(scale))
    print(f"train: the guard's shift part learns from {len(y):,} val images "
          f"({len(originals)} unchanged and {DRAWS_PER_IMAGE} shifted copies of each)")
    return x, y, groups
