"""The out-of-distribution guard's distance parts: what each fits on the training split and
how it scores an image (:mod:`leukemia_cnn.modeling.guard` combines them; the ``shift`` part is
:mod:`leukemia_cnn.modeling.guardshift`)."""

from __future__ import annotations

import numpy as np

KNN_K = 5  # the k-th neighbour: one or two near-copies in train do not make an image familiar


def whitener(samples: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(L, degenerate)`` with ``L @ L.T`` the Ledoit-Wolf precision of ``samples`` (centred):
    the squared Mahalanobis distance of ``v`` to ``m`` is then ``|(v - m) @ L|^2``, one matrix
    product. Samples without spread in some direction (the constant or rank-deficient
    embedding of a collapsed network) have no Cholesky factor: ``L`` is then that of the
    pseudo-inverse of their covariance with its eigenvalues floored (:func:`regularised`), and
    ``degenerate`` is True."""
    from sklearn.covariance import LedoitWolf

    precision = LedoitWolf(assume_centered=True).fit(samples).precision_
    try:
        factor = np.linalg.cholesky((precision + precision.T) / 2.0)
    except np.linalg.LinAlgError:
        return regularised(samples), True
    if not np.isfinite(factor).all():
        return regularised(samples), True
    return factor, False


def regularised(samples: np.ndarray) -> np.ndarray:
    """A whitener of ``samples``' covariance whose eigenvalues are floored at a millionth of
    their mean (1 when they are all 0): a direction without spread in training weighs a
    million times one with average spread, instead of infinitely."""
    covariance = samples.T @ samples / max(len(samples), 1)
    values, vectors = np.linalg.eigh((covariance + covariance.T) / 2.0)
    mean = float(np.clip(values, 0, None).mean()) if len(values) else 0.0
    floor = mean * 1e-6 if mean > 0 else 1.0
    return vectors / np.sqrt(np.maximum(values, floor))[None, :]


def squared_distances(values: np.ndarray, means: np.ndarray, whitener: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each row of ``values`` to each row of ``means``."""
    z, centres = values @ whitener, means @ whitener
    return np.maximum((z**2).sum(axis=1)[:, None] - 2.0 * z @ centres.T
                      + (centres**2).sum(axis=1)[None, :], 0.0)


def unit_rows(values: np.ndarray) -> np.ndarray:
    """Each row of ``values`` divided by its Euclidean norm."""
    return values / (np.linalg.norm(values, axis=1, keepdims=True) + 1e-12)


def fit_part(name: str, embeddings, y, statistics, last_layer) -> dict[str, np.ndarray]:
    """The statistics part ``name`` scores against, from the training split; a part fitted
    on samples without spread (:func:`whitener`) holds ``degenerate`` (a 1-element array)."""
    if name == "mahalanobis":
        labels = np.unique(y)
        means = np.stack([embeddings[y == label].mean(axis=0) for label in labels])
        centred = embeddings - means[np.searchsorted(labels, y)]
        return with_whitener({"means": means}, centred)
    if name == "knn":
        return {"references": unit_rows(embeddings).astype(np.float32)}
    if name == "energy":
        kernel, bias = last_layer
        return {"kernel": np.asarray(kernel, np.float64), "bias": np.asarray(bias, np.float64)}
    mean = statistics.mean(axis=0)
    return with_whitener({"means": mean[None, :]}, statistics - mean)


def with_whitener(part: dict[str, np.ndarray], centred: np.ndarray) -> dict[str, np.ndarray]:
    """``part`` with the whitener of ``centred`` (and ``degenerate`` when it has no spread)."""
    factor, degenerate = whitener(centred)
    part["whitener"] = factor
    if degenerate:
        part["degenerate"] = np.ones(1)
    return part


def score_part(name: str, part: dict[str, np.ndarray], embeddings, statistics) -> np.ndarray:
    """Part ``name``'s raw score per image (higher = more unusual)."""
    if name == "mahalanobis":
        return squared_distances(embeddings, part["means"], part["whitener"]).min(axis=1)
    if name == "knn":
        references = part["references"]
        k = min(KNN_K, len(references))
        similarity = unit_rows(embeddings).astype(np.float32) @ references.T
        kth = -np.partition(-similarity, k - 1, axis=1)[:, k - 1]
        return np.sqrt(np.maximum(2.0 - 2.0 * kth, 0.0)).astype(np.float64)
    if name == "energy":
        from scipy.special import logsumexp

        return -logsumexp(embeddings @ part["kernel"] + part["bias"], axis=1)
    return squared_distances(statistics, part["means"], part["whitener"])[:, 0]
