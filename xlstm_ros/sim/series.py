"""Synthetic time series for pre-training the forecaster, generated in numpy from a seed.

Every generator is a frozen dataclass (its fields are the recipe) called as `gen(rng, n, length)` and
returns `n` series as a float64 array `[n, length]`, vectorised over the batch. The families follow the
zero-shot forecasting literature (TimesFM, Chronos, TiRex):

* `Structural`: piecewise-linear trend, level steps, calendar seasonalities with harmonics, ARMA noise.
* `KernelSynth`: Gaussian-process samples from a random composition of kernels (Chronos).
* `TSMixup`: Dirichlet mixtures of 1-3 mean-scaled series (Chronos).
* `MultiSeasonal`: sums of sines with calendar or free periods.
* Sensor regimes of a drone or robot (sensors.py): `Battery` voltage, `Temperature`, `Imu` acceleration,
  `BaroAltitude`.

`Augmentations` adds TiRex-style corruptions (amplitude modulation, censoring, spikes, NaN gaps) and is cheap
enough to apply to every training batch. `Mixture` draws from weighted generators; `SeriesCache` writes a
mixture sample once to an `.npy` file and memory-maps it, so training never regenerates.

Evaluation data never enters training: this module draws only from numpy's random generator and imports no
dataset package (test/test_series.py checks that importing it and sampling load none).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from xlstm_ros.sim.sensors import BaroAltitude, Battery, Imu, Temperature
from xlstm_ros.sim.signals import arma_noise, integers_between, log_uniform, resample_linear, seasonal_waves, \
    smooth_curve, uniform

#: Seasonal periods of common sampling frequencies: quarterly 4, daily-weekly 7, monthly 12, hourly 24,
#: half-hourly 48, weekly-yearly 52.
CALENDAR_PERIODS: tuple[int, ...] = (4, 7, 12, 24, 48, 52)
#: Longer calendar periods for Gaussian-process and sine families (hourly-weekly 168, daily-yearly 365, ...).
LONG_CALENDAR_PERIODS: tuple[int, ...] = (96, 168, 336, 365)
#: Version of the cache file layout and generator recipes; bump it when a generator's output changes.
SERIES_FORMAT_VERSION = 1


class SeriesGenerator(Protocol):
    """A family of synthetic series: `gen(rng, n, length) -> float64 [n, length]`."""

    def __call__(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray: ...


# ---------------------------------------------------------------------------------------------------------
# Generic families


@dataclass(frozen=True)
class Structural:
    """Trend + level steps + seasonalities + ARMA noise (TimesFM-style structural series).

    The trend is piecewise linear with up to `max_trend_breaks` slope changes; its overall change across the
    series is drawn from `trend_change` (so the base slope per sample is change / length).
    """

    periods: tuple[int, ...] = CALENDAR_PERIODS
    seasonalities: tuple[int, int] = (0, 3)
    seasonal_amplitude: tuple[float, float] = (0.3, 2.0)
    harmonics: int = 3
    harmonic_decay: tuple[float, float] = (0.1, 0.7)
    trend_change: tuple[float, float] = (-4.0, 4.0)
    max_trend_breaks: int = 3
    max_level_steps: int = 2
    step_std: float = 1.0
    noise_std: tuple[float, float] = (0.05, 0.6)
    ar_roots: tuple[float, float] = (-0.5, 0.95)
    ma: tuple[float, float] = (-0.5, 0.5)

    def __call__(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        t = np.arange(length, dtype=np.float64)
        slope = uniform(rng, self.trend_change, n) / length
        y = slope[:, None] * t[None, :]
        break_scale = max(abs(self.trend_change[0]), abs(self.trend_change[1])) / length
        for _ in range(self.max_trend_breaks):
            active = rng.random(n) < 0.5
            at = rng.uniform(0.1, 0.9, n) * length
            change = rng.normal(0.0, break_scale, n) * active
            y += change[:, None] * np.maximum(t[None, :] - at[:, None], 0.0)
        for _ in range(self.max_level_steps):
            active = rng.random(n) < 0.5
            at = rng.uniform(0.05, 0.95, n) * length
            y += (rng.normal(0.0, self.step_std, n) * active)[:, None] * (t[None, :] >= at[:, None])
        count = integers_between(rng, self.seasonalities, n)
        most = self.seasonalities[1]
        if most > 0:
            periods = rng.choice(np.asarray(self.periods, dtype=np.float64), (n, most))
            amplitudes = uniform(rng, self.seasonal_amplitude, (n, most)) * (np.arange(most) < count[:, None])
            y += seasonal_waves(rng, periods, amplitudes, length, self.harmonics, self.harmonic_decay)
        noise = arma_noise(rng, n, length, self.ar_roots, self.ma)
        return y + uniform(rng, self.noise_std, n)[:, None] * noise


#: Kernel names of `KernelSynth.bank`.
KERNELS = ("constant", "white", "linear", "rbf", "rational_quadratic", "periodic")


@dataclass(frozen=True)
class KernelSynth:
    """Gaussian-process samples with a random kernel: 1..`max_kernels` draws from `bank`, joined by + or x.

    Cost-aware length: the GP is drawn on at most `max_gp_length` points spread over the series and linearly
    interpolated, so the Cholesky cost is bounded by max_gp_length**3 whatever `length` is. Periodic kernels
    use calendar periods in output samples, restricted to periods the GP grid resolves with at least
    `min_points_per_period` points. The Cholesky is jittered (1e-6 of the diagonal, raised tenfold on
    failure); a kernel that still fails is redrawn. BLAS runs single-threaded here: for matrices this small
    threads only contend (10x slower on a busy 2-core machine).
    """

    bank: tuple[str, ...] = KERNELS
    max_kernels: int = 5
    periods: tuple[int, ...] = CALENDAR_PERIODS + LONG_CALENDAR_PERIODS
    max_gp_length: int = 512
    min_points_per_period: int = 8

    def __post_init__(self) -> None:
        unknown = sorted(set(self.bank) - set(KERNELS))
        if unknown or not self.bank:
            raise ValueError(f"KernelSynth.bank: unknown kernels {unknown}; choose from {KERNELS}")

    def __call__(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        points = min(length, self.max_gp_length)
        tau = np.linspace(0.0, 1.0, points)
        stride = (length - 1) / max(points - 1, 1)
        periods = [p for p in self.periods if p / stride >= self.min_points_per_period and p <= length / 2]
        if not periods and set(self.bank) == {"periodic"}:
            raise ValueError(f"KernelSynth.periods: none of {self.periods} is resolvable at length {length} "
                             f"with max_gp_length={self.max_gp_length}; add longer periods or raise "
                             "max_gp_length")
        distance = np.abs(tau[:, None] - tau[None, :])
        out = np.empty((n, points))
        with threadpool_limits(limits=1, user_api="blas"):
            for i in range(n):
                out[i] = self._sample(rng, tau, distance, length, periods)
        return resample_linear(out, length)

    def _sample(self, rng: np.random.Generator, tau: np.ndarray, distance: np.ndarray, length: int,
                periods: list[int]) -> np.ndarray:
        for _ in range(10):
            covariance = self._random_kernel(rng, tau, distance, length, periods)
            factor = _jittered_cholesky(covariance)
            if factor is not None:
                return factor @ rng.standard_normal(len(tau))
        raise RuntimeError(f"KernelSynth: 10 kernels drawn from {self.bank} in a row were not positive definite")

    def _random_kernel(self, rng: np.random.Generator, tau: np.ndarray, distance: np.ndarray, length: int,
                       periods: list[int]) -> np.ndarray:
        bank = [k for k in self.bank if k != "periodic" or periods]
        names = rng.choice(bank, rng.integers(1, self.max_kernels + 1))
        covariance = self._kernel(str(names[0]), rng, tau, distance, length, periods)
        for name in names[1:]:
            other = self._kernel(str(name), rng, tau, distance, length, periods)
            covariance = covariance + other if rng.random() < 0.5 else covariance * other
        return covariance

    @staticmethod
    def _kernel(name: str, rng: np.random.Generator, tau: np.ndarray, distance: np.ndarray, length: int,
                periods: list[int]) -> np.ndarray:
        if name == "constant":
            return np.full_like(distance, rng.uniform(0.1, 1.0))
        if name == "white":
            return np.eye(len(tau)) * rng.choice([0.01, 0.05, 0.1])
        if name == "linear":
            centre = rng.uniform()
            return rng.choice([0.0, 1.0, 10.0]) + np.outer(tau - centre, tau - centre)
        if name == "rbf":
            scale = rng.choice([0.02, 0.1, 1.0, 10.0])
            return np.exp(-0.5 * (distance / scale) ** 2)
        if name == "rational_quadratic":
            alpha = rng.choice([0.1, 1.0, 10.0])
            return (1.0 + distance ** 2 / (2 * alpha)) ** -alpha
        period = rng.choice(periods) / (length - 1)  # calendar period in samples, in tau units
        scale = rng.choice([0.5, 1.0, 2.0])
        return np.exp(-2.0 * np.sin(np.pi * distance / period) ** 2 / scale ** 2)


def _jittered_cholesky(covariance: np.ndarray, tries: int = 5) -> np.ndarray | None:
    """Cholesky factor of covariance + jitter * I, raising the jitter until it succeeds (None if never).

    The jitter is added to the diagonal in place: `covariance` is scratch space.
    """
    diagonal = np.diag_indices_from(covariance)
    jitter = 1e-6 * max(float(np.mean(covariance[diagonal])), 1e-12)
    added = 0.0
    for _ in range(tries):
        covariance[diagonal] += jitter - added
        added = jitter
        try:
            return np.linalg.cholesky(covariance)
        except np.linalg.LinAlgError:
            jitter *= 10.0
    return None


@dataclass(frozen=True)
class MultiSeasonal:
    """Sums of 1..`max_components` sines: calendar periods with probability `calendar_share`, else free
    periods drawn log-uniformly from `free_period` (in samples), plus a small white-noise floor."""

    max_components: int = 4
    periods: tuple[int, ...] = CALENDAR_PERIODS + LONG_CALENDAR_PERIODS
    calendar_share: float = 0.7
    free_period: tuple[float, float] = (2.5, 500.0)
    amplitude: tuple[float, float] = (0.1, 3.0)
    harmonics: int = 2
    harmonic_decay: tuple[float, float] = (0.0, 0.5)
    noise_std: tuple[float, float] = (0.0, 0.3)

    def __call__(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        k = self.max_components
        calendar = rng.choice(np.asarray(self.periods, dtype=np.float64), (n, k))
        free = log_uniform(rng, self.free_period, (n, k))
        periods = np.where(rng.random((n, k)) < self.calendar_share, calendar, free)
        count = integers_between(rng, (1, k), n)
        amplitudes = log_uniform(rng, self.amplitude, (n, k)) * (np.arange(k) < count[:, None])
        y = seasonal_waves(rng, periods, amplitudes, length, self.harmonics, self.harmonic_decay)
        return y + uniform(rng, self.noise_std, n)[:, None] * rng.standard_normal((n, length))


@dataclass(frozen=True)
class CalendarSeasonal:
    """Business-style series with one strong calendar seasonality (quarterly 4, weekly 7, monthly 12,
    weekly-yearly 52): a positive level with a trend and level shifts, a fixed random seasonal profile that
    is multiplicative (scales with the level) with probability `multiplicative_share`, else additive, and
    noise relative to the level. Monthly retail, quarterly tourism and weekly demand look like this."""

    periods: tuple[int, ...] = (4, 7, 12, 52)
    seasonal_strength: tuple[float, float] = (0.1, 0.6)
    multiplicative_share: float = 0.5
    trend_change: tuple[float, float] = (-0.6, 1.5)
    max_level_shifts: int = 3
    level_shift: float = 0.25
    noise: tuple[float, float] = (0.01, 0.15)

    def __call__(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        t = np.arange(length, dtype=np.float64)
        period = rng.choice(np.asarray(self.periods, dtype=np.int64), n)
        level = log_uniform(rng, (1.0, 1e4), n)[:, None] * np.exp(
            uniform(rng, self.trend_change, n)[:, None] * t[None, :] / length)
        for _ in range(self.max_level_shifts):
            at = rng.uniform(0.05, 0.95, n)[:, None] * length
            shift = rng.normal(0.0, self.level_shift, n) * (rng.random(n) < 0.4)
            level = level * np.exp(shift[:, None] * (t[None, :] >= at))
        # one seasonal profile per series: smooth harmonics plus a per-slot irregular part, zero mean
        most = int(max(self.periods))
        slots = np.arange(most)[None, :] / period[:, None]
        profile = sum(rng.normal(0.0, 1.0 / h, (n, 1)) * np.sin(2 * np.pi * h * slots + rng.uniform(0, 6.3, (n, 1)))
                      for h in (1, 2, 3))
        profile = profile + 0.5 * rng.standard_normal((n, most))
        position = (t[None, :].astype(np.int64) + rng.integers(0, most, n)[:, None]) % period[:, None]
        season = np.take_along_axis(profile, position, axis=1)
        in_cycle = np.arange(most)[None, :] < period[:, None]
        mean = (profile * in_cycle).sum(axis=1) / period
        spread = np.sqrt(((profile - mean[:, None]) ** 2 * in_cycle).sum(axis=1) / period)
        season = (season - mean[:, None]) / spread[:, None] * uniform(rng, self.seasonal_strength, n)[:, None]
        multiplicative = (rng.random(n) < self.multiplicative_share)[:, None]
        scale = np.where(multiplicative, level, level[:, :1])     # additive seasons keep the starting size
        noise = uniform(rng, self.noise, n)[:, None] * rng.standard_normal((n, length))
        return level + scale * season + level * noise


@dataclass(frozen=True)
class TSMixup:
    """Convex Dirichlet(`alpha`) mixtures of 1..`max_sources` series from `base`, each divided by its mean
    absolute value first, so that no source dominates by scale (Chronos TSMixup)."""

    base: SeriesGenerator
    max_sources: int = 3
    alpha: float = 1.5

    def __call__(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        sources = integers_between(rng, (1, self.max_sources), n)
        pool = self.base(rng, int(sources.sum()), length)
        pool = pool / np.maximum(np.nanmean(np.abs(pool), axis=1, keepdims=True), 1e-12)
        weights = rng.dirichlet(np.full(self.max_sources, self.alpha), n)
        weights = np.where(np.arange(self.max_sources)[None, :] < sources[:, None], weights, 0.0)
        weights /= weights.sum(axis=1, keepdims=True)
        owner = np.repeat(np.arange(n), sources)
        slot = np.arange(len(owner)) - np.repeat(np.cumsum(sources) - sources, sources)
        out = np.zeros((n, length))
        np.add.at(out, owner, weights[owner, slot][:, None] * pool)
        return out


# ---------------------------------------------------------------------------------------------------------
# Augmentations


def amplitude_modulation(rng: np.random.Generator, x: np.ndarray, depth: tuple[float, float]) -> np.ndarray:
    """Scale each series' deviation from its mean by a slow positive random envelope 1 + depth * curve."""
    n, length = x.shape
    envelope = 1.0 + uniform(rng, depth, n)[:, None] * np.tanh(smooth_curve(rng, n, length, 6))
    mean = np.nanmean(x, axis=1, keepdims=True)
    return mean + (x - mean) * envelope


def censor(rng: np.random.Generator, x: np.ndarray, quantile: tuple[float, float]) -> np.ndarray:
    """Clip each series at its own quantile q (upper side) or 1 - q (lower side), like a saturating sensor."""
    n = x.shape[0]
    q = uniform(rng, quantile, n)
    upper = rng.random(n) < 0.5
    ordered = np.sort(x, axis=1)  # NaNs sort last
    observed = np.isfinite(x).sum(axis=1)
    index = np.floor(np.where(upper, q, 1.0 - q) * np.maximum(observed - 1, 0)).astype(np.int64)
    level = ordered[np.arange(n), index][:, None]
    return np.where(upper[:, None], np.minimum(x, level), np.maximum(x, level))


def inject_spikes(rng: np.random.Generator, x: np.ndarray, rate: tuple[float, float],
                  magnitude_std: tuple[float, float]) -> np.ndarray:
    """Add isolated spikes (a fraction `rate` of the samples) of +-`magnitude_std` series standard deviations."""
    n, length = x.shape
    hit = rng.random((n, length)) < uniform(rng, rate, n)[:, None]
    size = uniform(rng, magnitude_std, (n, length)) * rng.choice([-1.0, 1.0], (n, length))
    return x + hit * size * np.nanstd(x, axis=1, keepdims=True)


def add_missing(rng: np.random.Generator, x: np.ndarray, fraction: np.ndarray | float,
                block_share: float = 0.7, block_length: tuple[int, int] = (8, 128)) -> np.ndarray:
    """Set exactly round(fraction * length) samples of each series to NaN.

    About `block_share` of them come as contiguous missing blocks (lengths from `block_length`), the rest as
    isolated gaps at random positions.
    """
    n, length = x.shape
    fraction = np.broadcast_to(np.asarray(fraction, dtype=np.float64), (n,))
    if np.any((fraction < 0) | (fraction >= 1)):
        raise ValueError(f"missing fraction must lie in [0, 1), got {fraction.min()}..{fraction.max()}")
    target = np.round(fraction * length).astype(np.int64)
    t = np.arange(length)
    missing = np.zeros((n, length), dtype=bool)
    budget = np.floor(block_share * target).astype(np.int64)
    placed = np.zeros(n, dtype=np.int64)
    while True:
        room = budget - placed
        if not np.any(room >= block_length[0]):
            break
        size = np.minimum(rng.integers(block_length[0], block_length[1] + 1, n), room)
        size = np.where(room >= block_length[0], size, 0)
        start = rng.integers(0, np.maximum(length - size, 1))
        missing |= (t[None, :] >= start[:, None]) & (t[None, :] < (start + size)[:, None])
        placed += size  # overlaps make `placed` an upper bound; the isolated fill below tops up exactly
    need = np.maximum(target - missing.sum(axis=1), 0)
    keys = np.where(missing, np.inf, rng.random((n, length)))
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    missing |= rank < need[:, None]
    return np.where(missing, np.nan, x)


@dataclass(frozen=True)
class Augmentations:
    """TiRex-style corruptions, each applied to a random share of the series (`p_*`)."""

    p_amplitude: float = 0.2
    amplitude_depth: tuple[float, float] = (0.1, 0.8)
    p_censor: float = 0.1
    censor_quantile: tuple[float, float] = (0.7, 0.99)
    p_spikes: float = 0.1
    spike_rate: tuple[float, float] = (0.0005, 0.01)
    spike_std: tuple[float, float] = (3.0, 10.0)
    p_missing: float = 0.2
    missing_fraction: tuple[float, float] = (0.01, 0.3)
    missing_block_share: float = 0.7

    def __call__(self, rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
        x = np.array(x, dtype=np.float64)
        n = x.shape[0]
        steps: list[tuple[float, Callable[[np.ndarray], np.ndarray]]] = [
            (self.p_amplitude, lambda v: amplitude_modulation(rng, v, self.amplitude_depth)),
            (self.p_censor, lambda v: censor(rng, v, self.censor_quantile)),
            (self.p_spikes, lambda v: inject_spikes(rng, v, self.spike_rate, self.spike_std)),
            (self.p_missing, lambda v: add_missing(rng, v, uniform(rng, self.missing_fraction, len(v)),
                                                   self.missing_block_share)),
        ]
        for probability, apply in steps:
            rows = np.flatnonzero(rng.random(n) < probability)
            if len(rows):
                x[rows] = apply(x[rows])
        return x


# ---------------------------------------------------------------------------------------------------------
# Mixture and cache


@dataclass(frozen=True)
class Mixture:
    """Weighted generators: `components` is a tuple of (name, generator, weight); weights need not sum to 1.

    Counts per component are multinomial and rows are shuffled, so a batch mixes all families. With
    `augment`, the sampled series are corrupted before they are returned.
    """

    components: tuple[tuple[str, SeriesGenerator, float], ...]
    augment: Augmentations | None = None

    def __post_init__(self) -> None:
        weights = np.array([w for _, _, w in self.components], dtype=np.float64)
        if not self.components or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError("Mixture.components: need at least one generator and non-negative weights "
                             "with a positive sum")

    def __call__(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        weights = np.array([w for _, _, w in self.components], dtype=np.float64)
        counts = rng.multinomial(n, weights / weights.sum())
        parts = [gen(rng, int(c), length) for (_, gen, _), c in zip(self.components, counts) if c > 0]
        out = np.concatenate(parts, axis=0)[rng.permutation(n)] if parts else np.empty((0, length))
        return self.augment(rng, out) if self.augment is not None else out

    def sample(self, n: int, length: int, seed: int) -> np.ndarray:
        """`n` series of `length` samples as float32, identical for identical (seed, n, length, recipe)."""
        _check_shape(n, length)
        return self(np.random.default_rng(seed), n, length).astype(np.float32)


def _check_shape(n: int, length: int) -> None:
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if int(length) != length or length < 16:
        raise ValueError(f"length must be an integer >= 16, got {length!r}")


#: The first pre-training recipe (the 2.1M model of November 2026): generic families, TSMixup over them,
#: and the drone/robot sensor regimes.
SENSOR_MIXTURE = Mixture(components=(
    ("structural", Structural(), 0.30),
    ("kernel_synth", KernelSynth(), 0.20),
    ("multi_seasonal", MultiSeasonal(), 0.15),
    ("tsmixup", TSMixup(base=Mixture(components=(("structural", Structural(), 0.45),
                                                 ("kernel_synth", KernelSynth(), 0.25),
                                                 ("multi_seasonal", MultiSeasonal(), 0.30)))), 0.15),
    ("battery", Battery(), 0.05),
    ("temperature", Temperature(), 0.05),
    ("imu", Imu(), 0.05),
    ("baro_altitude", BaroAltitude(), 0.05),
))

#: The second recipe: a fifth of the series from `CalendarSeasonal` (strong quarterly, weekly or monthly
#: seasons, multiplicative or additive, level shifts), also inside TSMixup, and fewer generic ones.
SEASONAL_MIXTURE = Mixture(components=(
    ("structural", Structural(), 0.22),
    ("kernel_synth", KernelSynth(), 0.15),
    ("multi_seasonal", MultiSeasonal(), 0.10),
    ("calendar_seasonal", CalendarSeasonal(), 0.20),
    ("tsmixup", TSMixup(base=Mixture(components=(("structural", Structural(), 0.35),
                                                 ("kernel_synth", KernelSynth(), 0.20),
                                                 ("multi_seasonal", MultiSeasonal(), 0.20),
                                                 ("calendar_seasonal", CalendarSeasonal(), 0.25)))), 0.13),
    ("battery", Battery(), 0.05),
    ("temperature", Temperature(), 0.05),
    ("imu", Imu(), 0.05),
    ("baro_altitude", BaroAltitude(), 0.05),
))

#: The recipes by name (the forecaster training's `mixture` option).
MIXTURES: dict[str, Mixture] = {"sensor-v1": SENSOR_MIXTURE, "seasonal-v2": SEASONAL_MIXTURE}
DEFAULT_MIXTURE = SEASONAL_MIXTURE


class SeriesCacheError(ValueError):
    """A series cache file exists but does not hold what its recipe says."""


@dataclass
class SeriesCache:
    """`n` mixture series of `length` samples generated once into `<directory>/series-<key>.npy`.

    The key hashes the recipe (mixture repr, n, length, seed, format version), so different recipes never
    share a file. Generation runs in chunks of `chunk_size` series, each from its own seed stream, written
    into a memory-mapped temporary file and renamed into place when complete, so an interrupted run leaves
    no half file. A JSON sidecar records the recipe and the generation speed.
    """

    directory: Path
    n: int
    length: int
    seed: int
    mixture: Mixture = DEFAULT_MIXTURE
    chunk_size: int = 256
    _array: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_shape(self.n, self.length)
        self.directory = Path(self.directory)

    @property
    def recipe(self) -> dict:
        return {"format_version": SERIES_FORMAT_VERSION, "n": int(self.n), "length": int(self.length),
                "seed": int(self.seed), "chunk_size": int(self.chunk_size), "mixture": repr(self.mixture)}

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.recipe, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def path(self) -> Path:
        return self.directory / f"series-{self.key}.npy"

    @property
    def meta_path(self) -> Path:
        return self.directory / f"series-{self.key}.json"

    @property
    def meta(self) -> dict:
        """The sidecar: recipe plus `wall_s` and `series_per_s` of the generation run."""
        try:
            return json.loads(self.meta_path.read_text())
        except (OSError, ValueError) as error:
            raise SeriesCacheError(f"{self.meta_path}: cannot read cache metadata ({error})") from error

    def exists(self) -> bool:
        return self.path.is_file() and self.meta_path.is_file()

    def series(self, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """The series as a read-only float32 memmap `[n, length]`, generated first if not cached yet.

        `progress(done, total)` is called after each generated chunk.
        """
        if self._array is None:
            if not self.exists():
                self.generate(progress)
            self._array = self._open()
        return self._array

    def generate(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Generate the series into the cache file (overwriting any previous file of this recipe)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp_path = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.npy")
        start = time.perf_counter()
        array = np.lib.format.open_memmap(tmp_path, mode="w+", dtype=np.float32, shape=(self.n, self.length))
        try:
            for chunk, first in enumerate(range(0, self.n, self.chunk_size)):
                count = min(self.chunk_size, self.n - first)
                rng = np.random.default_rng([self.seed, chunk])
                array[first:first + count] = self.mixture(rng, count, self.length)
                if progress is not None:
                    progress(first + count, self.n)
            array.flush()
            del array
            wall_s = time.perf_counter() - start
            meta = dict(self.recipe, wall_s=round(wall_s, 3), series_per_s=round(self.n / wall_s, 1))
            tmp_meta = self.meta_path.with_name(f".{self.meta_path.name}.{os.getpid()}.tmp")
            tmp_meta.write_text(json.dumps(meta, indent=1))
            os.replace(tmp_path, self.path)
            os.replace(tmp_meta, self.meta_path)
        finally:
            if tmp_path.exists():
                tmp_path.unlink()

    def _open(self) -> np.ndarray:
        meta = self.meta
        if {key: meta.get(key) for key in self.recipe} != self.recipe:
            raise SeriesCacheError(f"{self.meta_path}: recipe does not match this cache; delete the file pair "
                                   f"{self.path.name}/{self.meta_path.name} to regenerate")
        try:
            array = np.load(self.path, mmap_mode="r")
        except (OSError, ValueError) as error:
            raise SeriesCacheError(f"{self.path}: cannot memory-map cached series ({error}); delete it to "
                                   "regenerate") from error
        if array.shape != (self.n, self.length) or array.dtype != np.float32:
            raise SeriesCacheError(f"{self.path}: holds {array.dtype}{list(array.shape)}, expected "
                                   f"float32[{self.n}, {self.length}]; delete it to regenerate")
        return array


def generation_speed(mixture: Mixture = DEFAULT_MIXTURE, length: int = 2048 + 64, n: int = 64,
                     seed: int = 0) -> dict[str, float]:
    """Series per second of each component of `mixture` and of the whole mixture, at `length` samples."""
    rng = np.random.default_rng(seed)
    speed = {}
    for name, gen, _ in mixture.components:
        start = time.perf_counter()
        gen(rng, n, length)
        speed[name] = n / (time.perf_counter() - start)
    start = time.perf_counter()
    mixture(rng, n, length)
    speed["mixture"] = n / (time.perf_counter() - start)
    return speed
