"""The out-of-distribution guard: does an image look like the training data?

The train stage fits it on the train split and picks its threshold on the validation split so
that it accepts ``train.guard_accept_rate`` of the validation images (default 0.95). It is
saved as ``<model_dir>/guard.npz`` beside ``cnn.keras`` and logged inside the pyfunc model, so
``predict``, ``explain`` and ``mlflow models serve`` apply it.

Methods (``train.guard_method``; each gives a score, higher = more unusual):

``mahalanobis``
    Squared Mahalanobis distance of the penultimate-layer embedding (the dense layer before
    the softmax) to the nearest class mean, with one shared covariance (Ledoit-Wolf shrinkage).
``knn``
    Distance of the L2-normalised embedding to its ``KNN_K``-th nearest training embedding
    (:mod:`leukemia_cnn.modeling.guardparts` holds the distance parts).
``energy``
    Minus the log-sum-exp of the logits (the energy score of Liu et al. 2020).
``input``
    Squared Mahalanobis distance of the image statistics the model's input keeps
    (:mod:`leukemia_cnn.features.imagestats`) to those of the training images.
``shift``
    The probability that the network reads the image wrong, learnt under random acquisition
    shifts (:mod:`leukemia_cnn.modeling.guardshift`).
``mahalanobis+input`` (and any ``a+b``)
    Each part divided by its own score at the accept rate on val; the image's score is the
    largest part, so either gate can flag it.

The other stages read a guard through ``GUARD_FILE``, :func:`load_guard`,
``Guard.in_precision`` and :func:`score_images`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from leukemia_cnn.config import GUARD_METHODS
from leukemia_cnn.errors import DataError
from leukemia_cnn.features.imagestats import (
    STATISTIC_NAMES,
    colour_statistics,
    image_statistics,
)
from leukemia_cnn.modeling import guardshift
from leukemia_cnn.modeling.guardinputs import embedding_model, forward, scale_statistics
from leukemia_cnn.modeling.guardparts import fit_part, score_part
from leukemia_cnn.modeling.guardstore import (  # noqa: F401 - the guard's public API
    GUARD_FILE,
    Guard,
    GuardResult,
    load_guard,
    load_trained,
    save_guard,
    summary,
)


def check_method(method: str) -> list[str]:
    """The parts of ``method`` (``a`` or ``a+b``); a DataError names an unknown one."""
    parts = str(method).split("+")
    unknown = [p for p in parts if p not in GUARD_METHODS]
    if unknown or len(set(parts)) != len(parts):
        raise DataError(f"guard method {method!r} is invalid; allowed: one of {GUARD_METHODS} or "
                        "several joined by '+' (e.g. mahalanobis+input)")
    return parts


def statistics_for(names, x: np.ndarray) -> np.ndarray | None:
    """What the parts ``names`` read of ``x`` besides the embedding: the input statistics, and
    for a ``shift`` part also the red-cell scale (:func:`scale_statistics`) and the colour
    (:func:`colour_statistics`) as last columns."""
    names = set(names)
    if not {"input", "shift"} & names:
        return None
    if "shift" not in names:
        return image_statistics(x)
    return np.column_stack([image_statistics(x), scale_statistics(x), colour_statistics(x)])


def raw_score(name: str, part: dict[str, np.ndarray], embeddings, statistics) -> np.ndarray:
    """Part ``name``'s raw score per image: a distance part's
    (:func:`~leukemia_cnn.modeling.guardparts.score_part`), or the shift part's probability
    of an error (:func:`~leukemia_cnn.modeling.guardshift.score`)."""
    if name == "shift":
        return guardshift.score(part, embeddings, statistics)
    if statistics is not None:  # the input part reads the image statistics only
        statistics = statistics[:, :len(STATISTIC_NAMES)]
    return score_part(name, part, embeddings, statistics)


def combine(scores: dict[str, np.ndarray], scales: dict[str, float]) -> np.ndarray:
    """The ``ood_score`` of the parts' raw ``scores``: the one part's, or the largest part
    divided by its scale."""
    if len(scores) == 1:
        return next(iter(scores.values()))
    return np.max([score / scales[name] for name, score in scores.items()], axis=0)


def combined_scores(guard: Guard, embeddings, statistics) -> np.ndarray:
    """The guard's ``ood_score`` of the images whose ``embeddings`` and ``statistics`` are given."""
    return combine({name: raw_score(name, guard.parts[name], embeddings, statistics)
                    for name in guard.components}, guard.scales)


def quantile_threshold(scores: np.ndarray, accept_rate: float) -> float:
    """The smallest score that accepts at least ``accept_rate`` of ``scores``."""
    return float(np.quantile(scores, accept_rate, method="higher"))


def thresholds(guard: Guard, embeddings, statistics) -> tuple[float, dict[str, float], float]:
    """``(threshold, scales, share accepted)`` that make ``guard`` accept its ``accept_rate``
    of the val images whose ``embeddings`` and ``statistics`` are given. Beside a ``shift``
    part, the distance parts are scaled at :data:`~leukemia_cnn.modeling.guardshift.FAR_ACCEPT_RATE`
    (they flag only what is far from every training image), and the shift part's val scores
    are its out-of-fold ones (``val_oof``: it learnt from these very images)."""
    def scale(name: str, score: np.ndarray) -> float:
        if "shift" not in guard.components or name == "shift":
            return max(quantile_threshold(score, guard.accept_rate), 1e-12)
        # a distance part beside a shift part: far only, and never within the envelope
        envelope = float(guard.parts["shift"].get(f"envelope/{name}", [1e-12])[0])
        far = max(guardshift.FAR_ACCEPT_RATE, guard.accept_rate)
        return max(quantile_threshold(score, far), envelope)

    def val_score(name: str) -> np.ndarray:
        part = guard.parts[name]
        if name == "shift" and len(part.get("val_oof", ())) == len(embeddings):
            return part["val_oof"]
        return raw_score(name, part, embeddings, statistics)

    raw = {name: val_score(name) for name in guard.components}
    scales = {name: scale(name, score) for name, score in raw.items()}
    val_scores = combine(raw, scales)
    threshold = quantile_threshold(val_scores, guard.accept_rate)
    return threshold, scales, float(np.mean(val_scores <= threshold))


def fit_guard(model, x_train, y_train, x_val, method: str = "mahalanobis+input",
              accept_rate: float = 0.95, batch_size: int = 256, val_embeddings=None,
              learning=None) -> Guard:
    """Fit the guard's parts on the train split; set its threshold on the val split.

    ``model`` is the trained Keras classifier (or the two-headed model :func:`embedding_model`
    made from it); ``x_*`` are preprocessed images in [0, 1]; ``val_embeddings``, when given,
    are ``x_val``'s embeddings through that model (the train stage computes them once for the
    calibration's probabilities too); ``learning``: ``(x, y)``, the shifted val images the
    ``shift`` part learns the network's errors from
    (:func:`~leukemia_cnn.modeling.guardshift.learning_set`), needed by that part only.
    """
    from leukemia_cnn.modeling.precision import model_precision

    names = check_method(method)
    two_headed = model if len(model.outputs) == 2 else embedding_model(model)
    last = model.layers[-1].get_weights()
    y_train = np.asarray(y_train)
    train = (forward(two_headed, x_train, batch_size)[0], statistics_for(names, x_train))
    val = (forward(two_headed, x_val, batch_size)[0] if val_embeddings is None
           else val_embeddings, statistics_for(names, x_val))
    guard = Guard(method=method, threshold=0.0, accept_rate=float(accept_rate),
                  precision=model_precision(two_headed))
    inputs = None if train[1] is None else train[1][:, :len(STATISTIC_NAMES)]
    for name in names:
        if name != "shift":
            guard.parts[name] = fit_part(name, train[0], y_train, inputs, last)
    if "shift" in names:
        guard.parts["shift"] = _fit_shift(guard, two_headed, train, y_train, last, learning,
                                          batch_size)
    guard.threshold, guard.scales, guard.val_accept_rate = thresholds(guard, *val)
    guard.train_accept_rate = float(np.mean(combined_scores(guard, *train) <= guard.threshold))
    return guard


def _fit_shift(guard: Guard, two_headed, train, y_train, last, learning,
               batch_size: int) -> dict:
    """The ``shift`` part: the train split's Mahalanobis part and statistics, and what the
    network gets wrong on the ``learning`` images; with the envelope of ``guard``'s distance
    parts (``envelope/<part>``: the 99th percentile of their score on the learning images the
    network reads right), which their far scale never falls below."""
    if learning is None:
        raise DataError("train.guard_method includes `shift`, which learns from the val split's "
                        "original images under shift: none were given (the train stage reads "
                        "them from paths.raw_dir)")
    x_learn, y_learn, groups = learning
    embeddings, probabilities = forward(two_headed, x_learn, batch_size)
    wrong = probabilities.argmax(axis=1) != np.asarray(y_learn)
    mahalanobis = fit_part("mahalanobis", train[0], y_train, None, last)
    statistics = statistics_for(["shift"], x_learn)
    part = guardshift.fit(mahalanobis, train[1], last, embeddings, statistics, wrong, groups)
    for name, fitted in guard.parts.items():
        right = raw_score(name, fitted, embeddings[~wrong], statistics[~wrong])
        if len(right):
            part[f"envelope/{name}"] = np.array([np.quantile(right, guardshift.ENVELOPE)])
    return part


def calibrate_precision(guard: Guard, model, x_val, precision: str,
                        batch_size: int = 256) -> Guard:
    """Add to ``guard`` the threshold and scales for the classifier ``model`` computing in
    ``precision`` (:func:`~leukemia_cnn.modeling.precision.with_precision`): set on
    ``x_val``'s embeddings in that precision, so that the guard accepts its accept rate of val
    there too. Returns ``guard``."""
    from leukemia_cnn.modeling.precision import with_precision

    if precision != guard.precision:
        two_headed = embedding_model(with_precision(model, precision))
        statistics = statistics_for(guard.components, x_val)
        threshold, scales, accepted = thresholds(
            guard, forward(two_headed, x_val, batch_size)[0], statistics)
        guard.calibrations[precision] = {"threshold": threshold, "scales": scales,
                                         "val_accept_rate": accepted}
    return guard


@functools.cache
def _blas_threads():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def score_images(guard: Guard, model, x: np.ndarray, batch_size: int = 256) -> GuardResult:
    """Score preprocessed images ``x`` (n, H, W, C) in [0, 1] with ``guard`` and the Keras
    classifier ``model`` (or the two-headed model :func:`embedding_model` made from it, to skip
    rebuilding it): per image of ``x``, the ``ood_score`` (higher = more unusual),
    ``in_distribution`` (``ood_score <= guard.threshold``) and the model's uncalibrated
    ``probabilities``.

    The parts' matrix products run on one BLAS thread: OpenBLAS's idle threads spin for a
    while after a call, and on 2 cores they took about 0.05 s from the next forward pass of
    1,000 images (a quarter of the guard's cost; benchmarks/bench_guard.py).
    """
    two_headed = model if len(model.outputs) == 2 else embedding_model(model)
    embeddings, probabilities = forward(two_headed, x, batch_size)
    statistics = statistics_for(guard.components, x)
    with _blas_threads().limit(limits=1, user_api="blas"):
        scores = combined_scores(guard, embeddings, statistics)
    return GuardResult(ood_score=scores.astype(np.float64),
                       in_distribution=scores <= guard.threshold, probabilities=probabilities)


def fit_for_training(cfg, model, x_train, y_train, x_val, model_dir: Path,
                     val_embeddings=None, two_headed=None, learning=None) -> tuple[Guard, Path]:
    """The train stage's hook: fit with ``train.guard_method`` and ``train.guard_accept_rate``
    on the classifier ``model`` (``two_headed``: its :func:`embedding_model`, when made
    already; ``learning``: the shift part's images, see :func:`fit_guard`), calibrate it for
    the other inference precision too, save as ``model_dir/guard.npz``, print one line; return
    the guard and its file."""
    guard = fit_guard(two_headed or model, x_train, y_train, x_val,
                      cfg.train.guard_method, cfg.train.guard_accept_rate,
                      val_embeddings=val_embeddings, learning=learning)
    other = "bfloat16" if guard.precision == "float32" else "float32"
    calibrate_precision(guard, model, x_val, other)
    path = save_guard(guard, Path(model_dir) / GUARD_FILE)
    if guard.degenerate:
        print(f"train: WARNING the guard's {' and '.join(guard.degenerate)} part is degenerate: "
              "the training samples it is fitted on have no spread in some direction (the "
              "constant embedding of a collapsed network); it answers through a regularised "
              "covariance but tells little apart")
    print(f"train: guard {guard.method} threshold {guard.threshold:.4g}: accepts "
          f"{guard.val_accept_rate:.1%} of val, {guard.train_accept_rate:.1%} of train "
          f"({guard.precision}; in {other}: threshold "
          f"{guard.calibrations[other]['threshold']:.4g})")
    return guard, path
