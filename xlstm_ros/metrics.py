"""The metrics of this package's evaluations, demo report and benchmarks, in one place.

Forecasts (fev 0.10 definitions): `seasonal_error`, `mase`, `quantile_loss`, `wql`, `geometric_mean`.
Relative depth: `relative_depth_metrics` (AbsRel and delta1 after least-squares alignment in disparity).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from xlstm_ros.models.depth import fit_scale_shift

DELTA1_THRESHOLD = 1.25


# ---------------------------------------------------------------------------------------------------------
# Forecasts


def seasonal_error(contexts: Sequence[np.ndarray], season: int) -> np.ndarray:
    """Mean absolute seasonal difference |y[t] - y[t - season]| over each history, NaNs ignored.

    NaN where it is undefined (history not longer than `season`, or no observed pair).
    """
    if season < 1:
        raise ValueError(f"season must be >= 1, got {season}")
    out = np.full(len(contexts), np.nan)
    for i, past in enumerate(contexts):
        past = np.asarray(past, dtype=np.float64)
        if len(past) > season:
            diffs = np.abs(past[season:] - past[:-season])
            if np.isfinite(diffs).any():
                out[i] = np.nanmean(diffs)
    return out


def mase(y_true: np.ndarray, median: np.ndarray, contexts: Sequence[np.ndarray], season: int) -> float:
    """Mean absolute scaled error of point forecasts `[N, H]`.

    Absolute errors are divided by their series' seasonal error and averaged over all series and steps;
    entries that are not finite (missing targets, undefined or zero seasonal error) are left out.
    """
    scale = seasonal_error(contexts, season)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.abs(np.asarray(y_true, np.float64) - median) / scale[:, None]
    scaled = scaled[np.isfinite(scaled)]
    return float(scaled.mean()) if scaled.size else float("nan")


def quantile_loss(y_true: np.ndarray, quantiles: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Twice the pinball loss of each quantile forecast, `[N, H, Q]`."""
    y = np.asarray(y_true, np.float64)[..., None]
    q = np.asarray(levels, dtype=np.float64)
    return 2.0 * np.abs((y - quantiles) * ((y <= quantiles) - q))


def wql(y_true: np.ndarray, quantiles: np.ndarray, levels: Sequence[float]) -> float:
    """Weighted quantile loss: per level, summed quantile loss / summed |y| over all series and steps
    (missing targets left out), averaged over the levels. With every level equal to a point forecast it
    equals WAPE."""
    y = np.asarray(y_true, np.float64)
    loss = quantile_loss(y, np.asarray(quantiles, np.float64), levels)
    observed = np.isfinite(y)
    per_level = loss[observed].sum(axis=0) / np.abs(y[observed]).sum()
    return float(per_level.mean())


def geometric_mean(values: Iterable[float]) -> float:
    """Geometric mean; NaN if any value is not finite and positive."""
    values = np.asarray(list(values), dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values) & (values > 0)):
        return float("nan")
    return float(np.exp(np.mean(np.log(values))))


# ---------------------------------------------------------------------------------------------------------
# Relative depth


def relative_depth_metrics(prediction: np.ndarray, target_disparity: np.ndarray, mask: np.ndarray,
                           min_disparity: float) -> dict[str, float]:
    """AbsRel and delta1 of one image after least-squares alignment in disparity (module docstring).

    Also `positive_scale`: 1 when the fit kept the prediction's orientation (larger = nearer), else 0.

    prediction, target_disparity: (H, W); mask: bool (H, W), target_disparity > 0 where set;
    min_disparity: the clamp of the aligned prediction (1 / depth cap).
    """
    p = torch.as_tensor(np.asarray(prediction), dtype=torch.float64)
    t = torch.as_tensor(np.asarray(target_disparity), dtype=torch.float64)
    m = torch.as_tensor(np.asarray(mask), dtype=torch.bool)
    if p.shape != t.shape or m.shape != t.shape or p.ndim != 2:
        raise ValueError(f"prediction {tuple(p.shape)}, target_disparity {tuple(t.shape)} and mask "
                         f"{tuple(m.shape)} must be equal (H, W) shapes")
    if int(m.sum()) < 2:
        raise ValueError("mask: fewer than two pixels with ground truth")
    if not bool((t[m] > 0).all()) or not bool(torch.isfinite(p[m]).all()):
        raise ValueError("target_disparity must be > 0 and prediction finite on the mask")
    if not min_disparity > 0:
        raise ValueError(f"min_disparity must be > 0, got {min_disparity}")
    scale, shift = fit_scale_shift(p, t, m)
    aligned = (scale * p[m] + shift).clamp(min=min_disparity)
    depth, truth = 1.0 / aligned, 1.0 / t[m]
    ratio = torch.maximum(depth / truth, truth / depth)
    return {"abs_rel": float(((depth - truth).abs() / truth).mean()),
            "delta1": float((ratio < DELTA1_THRESHOLD).double().mean()),
            "positive_scale": float(scale > 0)}
