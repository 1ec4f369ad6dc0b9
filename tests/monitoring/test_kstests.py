"""The shift tests behind `leukemia-cnn drift`: the correction for many tests, what a KS test
flags, and the verdict."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leukemia_cnn.monitoring.kstests import adjust_p_values, shift_tests, verdict

p_values = st.lists(st.floats(0, 1), min_size=1, max_size=60)


@given(p_values, st.sampled_from(["bh", "bonferroni"]))
def test_adjusted_p_values_are_never_below_the_raw_ones_and_keep_their_order(p, correction):
    raw = np.array(p)
    adjusted = adjust_p_values(raw, correction)
    assert np.all(adjusted >= raw - 1e-12) and np.all(adjusted <= 1)
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(adjusted[order]) >= -1e-12)


@given(p_values)
def test_bonferroni_is_never_less_strict_than_benjamini_hochberg(p):
    assert np.all(adjust_p_values(p, "bonferroni") >= adjust_p_values(p, "bh") - 1e-12)


def test_benjamini_hochberg_and_bonferroni_on_a_worked_example():
    p = [0.01, 0.02, 0.03, 0.5]
    np.testing.assert_allclose(adjust_p_values(p, "bh"), [0.04, 0.04, 0.04, 0.5])
    np.testing.assert_allclose(adjust_p_values(p, "bonferroni"), [0.04, 0.08, 0.12, 1.0])


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(1.5, 5.0))
def test_a_location_shift_of_one_and_a_half_spreads_is_flagged(seed, delta):
    rng = np.random.default_rng(seed)
    reference = {"a": rng.normal(0, 1, 300), "b": rng.normal(0, 1, 300)}
    new = {"a": rng.normal(delta, 1, 60), "b": rng.normal(0, 1, 60)}
    tests = {t.feature: t for t in shift_tests(reference, new, 0.05, "bonferroni")}
    assert tests["a"].shifted and tests["a"].new_median > tests["a"].reference_median


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50))
def test_a_sample_against_itself_is_never_shifted(values):
    (test,) = shift_tests({"x": np.array(values)}, {"x": np.array(values)})
    assert test.statistic == 0 and not test.shifted


def test_a_feature_without_finite_values_is_left_out_and_a_constant_is_compared():
    tests = shift_tests({"width": np.full(50, 224.0), "empty": np.full(50, np.nan)},
                        {"width": np.full(8, 112.0), "empty": np.ones(8)})
    assert [t.feature for t in tests] == ["width"]
    assert tests[0].statistic == 1 and tests[0].shifted


def test_the_verdict_is_drift_on_a_shift_or_on_too_many_flagged_images():
    rng = np.random.default_rng(0)
    same = shift_tests({"x": rng.normal(0, 1, 200)}, {"x": rng.normal(0, 1, 50)})
    assert not verdict(same, None, 0.15, 0.05, "bh").drift
    assert not verdict(same, 0.10, 0.15, 0.05, "bh").drift
    flagged = verdict(same, 0.40, 0.15, 0.05, "bh")
    assert flagged.drift and "40.0%" in flagged.reasons[-1] and "above" in flagged.reasons[-1]
    moved = shift_tests({"x": rng.normal(0, 1, 200)}, {"x": rng.normal(3, 1, 50)})
    assert verdict(moved, None, 0.15, 0.05, "bh").drift


def test_a_bad_alpha_or_correction_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        shift_tests({"x": np.ones(3)}, {"x": np.ones(3)}, alpha=1.5)
    with pytest.raises(ValueError, match="correction"):
        adjust_p_values([0.1], "holm")
