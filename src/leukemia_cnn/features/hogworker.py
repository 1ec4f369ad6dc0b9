"""HOG of a block of images, the task that ``features.hog_features`` sends to its workers.

A module of its own so that a worker process imports numpy and scikit-image only, not the
rest of the package (scikit-learn, pandas, MLflow).
"""

from __future__ import annotations

import numpy as np
from skimage.feature import hog


def hog_block(gray: np.ndarray, params: dict) -> np.ndarray:
    """``skimage.feature.hog`` of each image of ``gray`` (n, H, W), stacked to (n, hog_dim)."""
    return np.stack([hog(image, **params) for image in gray])
