"""What is made from a depth map for people and other nodes: colour pictures and 3D points.

Both understand the two kinds of map a DepthEstimator returns: relative inverse depth (larger is nearer,
unit-less) and metric depth in metres. Colour maps put near = warm for both. Points need a z in metres;
for a relative map z = 1 / disparity is used, which is correct only up to an unknown scale and shift and
is documented as such wherever points are published.
"""
from __future__ import annotations

import cv2
import numpy as np

from xlstm_ros.models.depth import METRIC

COLORMAPS = {"turbo": cv2.COLORMAP_TURBO, "inferno": cv2.COLORMAP_INFERNO, "viridis": cv2.COLORMAP_VIRIDIS,
             "magma": cv2.COLORMAP_MAGMA, "jet": cv2.COLORMAP_JET, "plasma": cv2.COLORMAP_PLASMA}


def nearness(depth: np.ndarray, kind: str) -> np.ndarray:
    """A map where larger means nearer: disparity as is, metres inverted; invalid pixels become NaN."""
    depth = depth.astype(np.float32, copy=False)
    if kind == METRIC:
        with np.errstate(divide="ignore", invalid="ignore"):
            near = np.where(depth > 0, 1.0 / depth, np.nan)
    else:
        near = np.where(np.isfinite(depth), depth, np.nan)
    return near.astype(np.float32, copy=False)


def robust_limits(values: np.ndarray, low_pct: float = 2.0, high_pct: float = 98.0) -> tuple[float, float]:
    """Percentile limits of the finite values (a flat or empty map gives a unit range)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [low_pct, high_pct])
    return float(low), float(high if high > low else low + 1.0)


class RunningLimits:
    """Colour limits that follow the scene slowly (exponential average of per-frame percentile limits)."""

    def __init__(self, smoothing: float = 0.9):
        self.smoothing = smoothing
        self.limits: tuple[float, float] | None = None

    def update(self, near: np.ndarray) -> tuple[float, float]:
        low, high = robust_limits(near)
        if self.limits is not None:
            a = self.smoothing
            low, high = a * self.limits[0] + (1 - a) * low, a * self.limits[1] + (1 - a) * high
        self.limits = (low, high)
        return self.limits


def colorize(depth: np.ndarray, kind: str, limits: tuple[float, float] | None = None,
             colormap: str = "turbo") -> np.ndarray:
    """BGR uint8 picture of a depth map (near = warm); `limits` on the nearness scale, default robust."""
    near = nearness(depth, kind)
    low, high = limits if limits is not None else robust_limits(near)
    scaled = np.clip((near - low) / max(high - low, 1e-12), 0.0, 1.0)
    picture = cv2.applyColorMap(np.nan_to_num(scaled * 255.0, nan=0.0).astype(np.uint8), COLORMAPS[colormap])
    picture[~np.isfinite(near)] = 0
    return picture


def metric_z(depth: np.ndarray, kind: str) -> np.ndarray:
    """z in metres for METRIC maps; 1 / disparity (unit-less, up to scale and shift) for RELATIVE ones."""
    if kind == METRIC:
        return depth.astype(np.float32, copy=False)
    with np.errstate(divide="ignore"):
        return np.where(depth > 1e-6, 1.0 / depth, np.inf).astype(np.float32)


def back_project(z: np.ndarray, K: np.ndarray, stride: int = 1) -> np.ndarray:
    """(N, 3) float32 camera-frame points (x right, y down, z forward) of the finite pixels, every `stride`."""
    rows, cols = np.mgrid[0:z.shape[0]:stride, 0:z.shape[1]:stride]
    depth = z[::stride, ::stride]
    keep = np.isfinite(depth) & (depth > 0)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    zs = depth[keep]
    points = np.stack([(cols[keep] - cx) * zs / fx, (rows[keep] - cy) * zs / fy, zs], axis=1)
    return points.astype(np.float32, copy=False)


def intrinsics_from_fov(width: int, height: int, horizontal_fov_deg: float) -> np.ndarray:
    """A pinhole K with square pixels and the principal point at the image centre."""
    focal = 0.5 * width / np.tan(np.radians(horizontal_fov_deg) / 2.0)
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
