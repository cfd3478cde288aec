"""Vectorised random signal building blocks for the synthetic series: batch on axis 0, time on axis 1."""
from __future__ import annotations

import numpy as np


def uniform(rng: np.random.Generator, bounds: tuple[float, float], size) -> np.ndarray:
    """Uniform draws in `bounds`."""
    return rng.uniform(bounds[0], bounds[1], size)


def log_uniform(rng: np.random.Generator, bounds: tuple[float, float], size) -> np.ndarray:
    """Log-uniform draws in `bounds` (both > 0): every decade equally likely."""
    return np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]), size))


def integers_between(rng: np.random.Generator, bounds: tuple[int, int], n: int) -> np.ndarray:
    """Integers drawn uniformly from the inclusive range `bounds`, one per series."""
    return rng.integers(bounds[0], bounds[1] + 1, n)


def resample_linear(values: np.ndarray, length: int) -> np.ndarray:
    """Linearly interpolate rows sampled on an even grid over [0, 1] onto `length` even points."""
    knots = values.shape[1]
    if knots == length:
        return values
    position = np.linspace(0.0, knots - 1, length)
    left = np.minimum(position.astype(np.int64), knots - 2)
    weight = position - left
    return values[:, left] * (1.0 - weight) + values[:, left + 1] * weight


def smooth_curve(rng: np.random.Generator, n: int, length: int, knots: int) -> np.ndarray:
    """Piecewise-linear random curves through `knots` standard-normal values, `[n, length]`."""
    return resample_linear(rng.standard_normal((n, knots)), length)


def lowpass(x: np.ndarray, alpha: np.ndarray, initial: np.ndarray | None = None) -> np.ndarray:
    """First-order filter y[t] = alpha * y[t-1] + (1 - alpha) * x[t], one `alpha` per series."""
    alpha = np.asarray(alpha, dtype=np.float64).reshape(-1)
    y = np.empty_like(x)
    state = x[:, 0].copy() if initial is None else np.asarray(initial, dtype=np.float64).copy()
    gain = 1.0 - alpha
    for t in range(x.shape[1]):
        state = alpha * state + gain * x[:, t]
        y[:, t] = state
    return y


def piecewise_constant(rng: np.random.Generator, n: int, length: int,
                       segments: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Segment index `[n, length]` of random segments (count per series in `segments`), and the max count."""
    count = integers_between(rng, segments, n)
    most = int(segments[1])
    bounds = np.sort(rng.integers(1, max(length, 2), (n, max(most - 1, 1))), axis=1)
    active = np.arange(bounds.shape[1])[None, :] < (count - 1)[:, None]
    bounds = np.where(active, bounds, length)  # inactive boundaries sit past the end
    t = np.arange(length)
    index = (t[None, None, :] >= bounds[:, :, None]).sum(axis=1)
    return index, most


def arma_noise(rng: np.random.Generator, n: int, length: int, ar_roots: tuple[float, float],
               ma: tuple[float, float], burn_in: int = 200) -> np.ndarray:
    """Stationary ARMA(2, 1) noise with unit sample std per series.

    The AR polynomial is built from two real roots drawn from `ar_roots` (|root| < 1 keeps it stationary).
    """
    if not (-1.0 < ar_roots[0] <= ar_roots[1] < 1.0):
        raise ValueError(f"ar_roots must lie inside (-1, 1), got {ar_roots}")
    root_a, root_b = uniform(rng, ar_roots, n), uniform(rng, ar_roots, n)
    phi1, phi2 = root_a + root_b, -root_a * root_b
    theta = uniform(rng, ma, n)
    shocks = rng.standard_normal((n, length + burn_in))
    x = np.empty_like(shocks)
    prev1 = prev2 = np.zeros(n)
    prev_shock = np.zeros(n)
    for t in range(shocks.shape[1]):
        current = phi1 * prev1 + phi2 * prev2 + shocks[:, t] + theta * prev_shock
        x[:, t] = current
        prev2, prev1, prev_shock = prev1, current, shocks[:, t]
    x = x[:, burn_in:]
    x -= x.mean(axis=1, keepdims=True)
    return x / np.maximum(x.std(axis=1, keepdims=True), 1e-12)


def seasonal_waves(rng: np.random.Generator, periods: np.ndarray, amplitudes: np.ndarray, length: int,
                   harmonics: int, harmonic_decay: tuple[float, float]) -> np.ndarray:
    """Sum over columns of periodic waves: fundamental of `periods[:, j]` plus weaker harmonics.

    `periods` and `amplitudes` are `[n, k]`; harmonic h has amplitude `amplitude * decay**(h - 1)`
    (decay < 1 keeps the fundamental dominant) and a random phase. Harmonics at or above the Nyquist
    frequency (h / period >= 1/2) are left out: they would alias onto lower frequencies.
    """
    n, k = periods.shape
    t = np.arange(length, dtype=np.float64)
    out = np.zeros((n, length))
    for j in range(k):
        decay = uniform(rng, harmonic_decay, n)
        used = integers_between(rng, (1, harmonics), n)
        for h in range(1, harmonics + 1):
            weight = amplitudes[:, j] * decay ** (h - 1) * (h <= used) * (2 * h < periods[:, j])
            phase = rng.uniform(0.0, 2 * np.pi, n)
            out += weight[:, None] * np.sin(2 * np.pi * h * t[None, :] / periods[:, j, None] + phase[:, None])
    return out
