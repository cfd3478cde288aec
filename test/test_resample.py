"""GridResampler: slot means, gaps, jitter, late samples, clock jumps, and complete accounting."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlstm_ros.engines.resample import GridResampler


def values_of(segments):
    return np.concatenate([s.values for s in segments]) if segments else np.array([])


def test_regular_samples_fill_consecutive_slots():
    grid = GridResampler(0.1)
    for k in range(10):
        assert grid.push(100.0 + 0.1 * k, float(k)) is None
    segments = grid.drain()
    assert len(segments) == 1 and segments[0].first_slot == 1000
    np.testing.assert_allclose(segments[0].values, np.arange(8.0))  # the last two wait for lateness
    assert grid.next_slot == 1008


def test_faster_samples_are_averaged_and_gaps_are_nan():
    grid = GridResampler(1.0, lateness_s=0.0)
    for stamp, value in [(0.0, 1.0), (0.2, 3.0), (3.1, 5.0), (4.0, 7.0), (5.0, 0.0)]:
        grid.push(stamp, value)
    values = values_of(grid.drain())
    np.testing.assert_array_equal(values[[0, 3, 4]], [2.0, 5.0, 7.0])
    assert math.isnan(values[1]) and math.isnan(values[2])


def test_jitter_within_lateness_is_absorbed_and_older_samples_are_late():
    grid = GridResampler(1.0, lateness_s=1.0)
    grid.push(10.0, 1.0)
    grid.push(11.2, 2.0)
    assert grid.push(10.4, 3.0) is None      # slot 10 still open: jitter absorbed
    grid.push(13.0, 4.0)                      # completes slots 10 and 11
    assert grid.push(10.9, 5.0) == "late"     # slot 11 is completed now
    assert grid.dropped["late"] == 1
    np.testing.assert_allclose(values_of(grid.drain()), [2.0, 2.0])


def test_nonfinite_values_are_missing_and_counted():
    grid = GridResampler(1.0, lateness_s=0.0)
    assert grid.push(0.0, float("nan")) == "nonfinite"
    assert grid.push(1.0, float("inf")) == "nonfinite"
    grid.push(2.0, 4.0)
    grid.push(3.0, 5.0)
    values = values_of(grid.drain())
    assert np.isnan(values[:2]).all() and values[2] == 4.0
    assert grid.dropped["nonfinite"] == 2


def test_clock_jumps_restart_the_grid():
    grid = GridResampler(1.0, lateness_s=0.0, max_gap_s=100.0, max_jump_back_s=50.0)
    for t in range(5):
        grid.push(float(t), 1.0)
    grid.push(3600.0 * 5, 2.0)                   # hours forward
    grid.push(3600.0 * 5 + 1, 2.0)
    grid.push(10.0, 3.0)                         # hours backward
    grid.push(11.0, 3.0)
    segments = grid.drain()
    assert [s.reset_before for s in segments] == [False, True, True]
    assert segments[1].first_slot == 18000 and segments[2].first_slot == 10
    assert grid.resets == 2
    assert all(len(s.values) < 10 for s in segments)  # no hours of NaN


@settings(max_examples=60, deadline=None)
@given(stamps=st.lists(st.floats(0.0, 50.0), min_size=1, max_size=200),
       bad=st.lists(st.booleans(), min_size=200, max_size=200))
def test_every_sample_is_accounted_for(stamps, bad):
    grid = GridResampler(0.5, lateness_s=0.5, max_gap_s=10.0, max_jump_back_s=20.0)
    for stamp, is_bad in zip(stamps, bad):
        grid.push(stamp, float("nan") if is_bad else 1.0)
    assert grid.accepted + sum(grid.dropped.values()) == len(stamps)
    segments = grid.drain()
    for earlier, later in zip(segments, segments[1:]):
        assert later.reset_before or later.first_slot == earlier.end_slot


def test_invalid_period():
    with pytest.raises(ValueError, match="period_s"):
        GridResampler(0.0)
