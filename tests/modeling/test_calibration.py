from functools import partial

import numpy as np
import pytest
import scipy.special

from leukemia_cnn.modeling.calibration import (
    apply_temperature,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
)

softmax = partial(scipy.special.softmax, axis=1)  # of each row of logits


def calibrated_sample(n=6000, n_classes=4, seed=0):
    """Logits, and labels drawn from softmax(logits): those probabilities are calibrated."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (n, n_classes))
    truth = softmax(logits)
    labels = np.array([rng.choice(n_classes, p=row) for row in truth])
    return logits, labels


def test_temperature_scaling_recovers_a_known_overconfidence():
    """A model whose logits are 2.5x the calibrated ones: the fit finds T ~ 2.5 and ECE drops."""
    logits, labels = calibrated_sample()
    overconfident = softmax(logits * 2.5)

    temperature = fit_temperature(overconfident, labels)

    assert temperature == pytest.approx(2.5, rel=0.08)
    fixed = apply_temperature(overconfident, temperature)
    before = expected_calibration_error(overconfident, labels)
    after = expected_calibration_error(fixed, labels)
    assert before > 0.10
    assert after < 0.03 and after < before / 4
    assert negative_log_likelihood(fixed, labels) < negative_log_likelihood(overconfident, labels)
    # Temperature never changes the predicted class.
    assert (fixed.argmax(axis=1) == overconfident.argmax(axis=1)).all()


def test_an_underconfident_model_gets_a_temperature_below_one():
    logits, labels = calibrated_sample(seed=1)
    assert fit_temperature(softmax(logits * 0.5), labels) == pytest.approx(0.5, rel=0.08)


def test_calibrate_auto_keeps_a_useful_temperature_and_drops_a_useless_one():
    logits, labels = calibrated_sample(seed=2)
    overconfident = calibrate(softmax(logits * 2.0), labels, mode="auto")
    assert overconfident["applied"] and overconfident["temperature"] == pytest.approx(2.0, rel=0.1)
    assert overconfident["nll_after"] < overconfident["nll_before"]

    calibrated = calibrate(softmax(logits), labels, mode="auto")
    assert calibrated["fitted_temperature"] == pytest.approx(1.0, rel=0.1)
    assert not calibrated["applied"] and calibrated["temperature"] == 1.0
    assert calibrate(softmax(logits), labels, mode="on")["applied"]
    off = calibrate(softmax(logits * 2.0), labels, mode="off")
    assert off["temperature"] == 1.0 and not off["applied"]
    with pytest.raises(ValueError, match="mode must be one of auto, on, off"):
        calibrate(softmax(logits), labels, mode="sometimes")


def test_ece_and_reliability_bins_by_hand():
    # Two bins: (0, 0.5] and (0.5, 1]. Confidences 0.9, 0.9, 0.6, 0.4 (3 classes).
    probabilities = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.6, 0.2, 0.2],
                              [0.4, 0.3, 0.3]])
    labels = np.array([0, 2, 0, 1])  # right, wrong, right, wrong
    bins = reliability_bins(probabilities, labels, n_bins=2)
    assert list(bins["count"]) == [1, 3]
    assert bins["confidence"].tolist() == pytest.approx([0.4, 0.8])
    assert bins["accuracy"].tolist() == pytest.approx([0.0, 2 / 3])
    expected = 1 / 4 * 0.4 + 3 / 4 * abs(2 / 3 - 0.8)
    assert expected_calibration_error(probabilities, labels, n_bins=2) == pytest.approx(expected)
    # Empty bins are NaN and do not count.
    ten = reliability_bins(probabilities, labels, n_bins=10)
    assert ten["count"].sum() == 4 and ten["accuracy"].isna().sum() == 7


def test_perfect_confidence_and_accuracy_has_zero_ece():
    probabilities = np.eye(3)[[0, 1, 2, 1]]
    labels = np.array([0, 1, 2, 1])
    assert expected_calibration_error(probabilities, labels) == 0.0
    # A probability that underflowed to 0 for the true class costs a finite NLL.
    assert np.isfinite(negative_log_likelihood(probabilities, np.array([1, 1, 2, 1])))


@pytest.mark.parametrize("call,message", [
    (lambda: expected_calibration_error(np.ones((2, 2)) / 2, np.array([0, 1]), n_bins=0),
     "n_bins must be an integer >= 1"),
    (lambda: apply_temperature(np.ones((2, 2)) / 2, 0.0), "temperature must be"),
    (lambda: negative_log_likelihood(np.ones((2, 2)) / 2, np.array([0, 2])),
     r"class indices in \[0, 1\]"),
    (lambda: negative_log_likelihood(np.ones(4), np.array([0])), "shape"),
])
def test_bad_arguments_are_refused_with_the_parameter_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_auto_refuses_a_temperature_that_lowers_nll_but_worsens_ece():
    """1,000 calibrated predictions (confidence 0.9, 90% right) and 20 confident mistakes
    (p = 1e-6 for the true class): the mistakes dominate the NLL, whose optimum (T ~ 1.78)
    softens the calibrated majority and raises ECE (measured 0.020 -> 0.143)."""
    calibrated = np.tile([0.9, 0.1], (1000, 1))
    mistakes = np.tile([1 - 1e-6, 1e-6], (20, 1))
    probabilities = np.vstack([calibrated, mistakes])
    labels = np.array([0] * 900 + [1] * 100 + [1] * 20)

    forced = calibrate(probabilities, labels, mode="on")
    assert forced["nll_after"] < 0.9 * forced["nll_before"]
    assert forced["ece_after"] > forced["ece_before"] + 0.1

    auto = calibrate(probabilities, labels, mode="auto")
    assert not auto["applied"] and auto["temperature"] == 1.0
    assert auto["fitted_temperature"] == pytest.approx(forced["fitted_temperature"])
