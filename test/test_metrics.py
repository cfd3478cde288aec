"""The metrics module against numbers worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from xlstm_ros import metrics as M

# --------------------------------------------------------------------------------------------------------
# Forecasts


def test_mase_matches_hand_computed_toy_example():
    contexts = [np.array([1.0, 3.0, 2.0, 4.0]), np.array([10.0, 10.0, 12.0, 12.0, 14.0])]
    y_true = np.array([[5.0, 6.0], [13.0, 15.0]])
    median = np.array([[4.0, 4.0], [14.0, 14.0]])
    # season 1: scales |3-1|,|2-3|,|4-2| -> 5/3 and 0,2,0,2 -> 1; scaled errors 0.6, 1.2, 1, 1
    assert M.mase(y_true, median, contexts, season=1) == pytest.approx((0.6 + 1.2 + 1.0 + 1.0) / 4)
    # season 2: scales |2-1|,|4-3| -> 1 and 2,2,2 -> 2; scaled errors 1, 2, 0.5, 0.5
    assert M.mase(y_true, median, contexts, season=2) == pytest.approx(1.0)


def test_mase_leaves_out_missing_targets_and_undefined_scales():
    contexts = [np.array([1.0, 3.0, 2.0, 4.0]), np.array([1.0, 2.0]), np.array([5.0, 5.0, 5.0, 5.0])]
    y_true = np.array([[5.0, np.nan], [3.0, 3.0], [6.0, 6.0]])
    median = np.array([[4.0, 4.0], [2.0, 2.0], [5.0, 5.0]])
    # season 2: series 1 scale 1 -> error 1 (step 2 missing); series 2 too short; series 3 scale 0
    assert M.mase(y_true, median, contexts, season=2) == pytest.approx(1.0)
    np.testing.assert_array_equal(M.seasonal_error(contexts, 2), [1.0, np.nan, 0.0])


def test_wql_matches_hand_computed_toy_example():
    y_true = np.array([[2.0, 4.0]])
    quantiles = np.array([[[1.0, 2.0, 3.0], [3.0, 5.0, 6.0]]])
    # 2 * pinball: level 0.1 -> 0.2 + 0.2, level 0.5 -> 0 + 1.0, level 0.9 -> 0.2 + 0.4; sum |y| = 6
    expected = np.mean([0.4 / 6, 1.0 / 6, 0.6 / 6])
    assert M.wql(y_true, quantiles, levels=(0.1, 0.5, 0.9)) == pytest.approx(expected)
    assert expected == pytest.approx(1 / 9)


def test_wql_of_a_point_forecast_is_wape_and_ignores_missing_targets():
    y_true = np.array([[10.0, -5.0, np.nan], [2.0, 3.0, 4.0]])
    point = np.array([[12.0, -5.0, 0.0], [1.0, 3.0, 8.0]])
    quantiles = np.repeat(point[:, :, None], 9, axis=2)
    assert M.wql(y_true, quantiles, levels=np.linspace(0.1, 0.9, 9)) == pytest.approx((2 + 0 + 1 + 0 + 4) / (10 + 5 + 2 + 3 + 4))


def test_geometric_mean():
    assert M.geometric_mean([0.5, 2.0, 1.0]) == pytest.approx(1.0)
    assert M.geometric_mean([0.25, 1.0]) == pytest.approx(0.5)
    assert np.isnan(M.geometric_mean([1.0, np.nan]))


# --------------------------------------------------------------------------------------------------------
# Relative depth

# Four pixels with ground truth and two masked ones holding junk.
PREDICTION = np.array([[0.0, 1.0, 2.0], [3.0, 100.0, -5.0]])
TARGET = np.array([[1.0, 2.0, 2.0], [4.0, 0.0, 0.0]])
MASK = np.array([[True, True, True], [True, False, False]])


def test_metrics_match_a_hand_computed_example():
    # Least squares over the mask: mean p 1.5, mean t 2.25, cov 1.125, var p 1.25 -> s = 0.9, b = 0.9,
    # aligned disparity 0.9, 1.8, 2.7, 3.6 -> depth 10/9, 5/9, 10/27, 5/18 against 1, 1/2, 1/2, 1/4.
    # Relative errors 1/9, 1/9, 7/27, 1/9 -> AbsRel 4/27; ratios 1.11, 1.11, 1.35, 1.11 -> delta1 3/4.
    scores = M.relative_depth_metrics(PREDICTION, TARGET, MASK, min_disparity=0.01)
    assert scores["abs_rel"] == pytest.approx(4 / 27, rel=1e-12)
    assert scores["delta1"] == 0.75 and scores["positive_scale"] == 1.0
    # Clamping the aligned disparity at 1 makes the first pixel exact: AbsRel (0 + 1/9 + 7/27 + 1/9) / 4.
    clamped = M.relative_depth_metrics(PREDICTION, TARGET, MASK, min_disparity=1.0)
    assert clamped["abs_rel"] == pytest.approx(13 / 108, rel=1e-12)
    assert clamped["delta1"] == 0.75


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="equal"):
        M.relative_depth_metrics(PREDICTION[:1], TARGET, MASK, 0.01)
    with pytest.raises(ValueError, match="fewer than two"):
        M.relative_depth_metrics(PREDICTION, TARGET, np.zeros_like(MASK), 0.01)
    with pytest.raises(ValueError, match="target_disparity must be > 0"):
        M.relative_depth_metrics(PREDICTION, TARGET, np.ones_like(MASK), 0.01)
