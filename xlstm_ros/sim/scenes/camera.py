"""Pinhole camera: pose in the z-up world, intrinsics from the field of view, and the GL matrices.

Conventions: the world is z-up in metres. A camera's body frame is x forward, y left, z up (REP 103);
yaw turns it about the world z axis (0 = looking along +x), pitch tilts the nose DOWN when positive (a
drone camera looking at the ground) and roll lowers the right side when positive. Images use the optical
frame (x right, y down, z forward, REP 103) with OpenCV pixel centres: pixel (u, v) is centred at integer
coordinates and the principal point is the image centre ((W - 1) / 2, (H - 1) / 2). `fov_deg` is the
horizontal field of view across the full image width; pixels are square.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# columns: the optical x (right), y (down), z (forward) axes expressed in the body frame (x fwd, y left, z up)
_BODY_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class Camera:
    """Camera pose (position, yaw, pitch, roll) and horizontal field of view."""

    position_m: tuple[float, float, float]
    yaw_rad: float = 0.0
    pitch_rad: float = 0.0
    roll_rad: float = 0.0
    fov_deg: float = 70.0

    def __post_init__(self) -> None:
        if not 1.0 <= self.fov_deg <= 170.0:
            raise ValueError(f"Camera.fov_deg={self.fov_deg}: must be in [1, 170]")
        if len(self.position_m) != 3 or not all(math.isfinite(p) for p in self.position_m):
            raise ValueError(f"Camera.position_m={self.position_m!r}: need three finite numbers")

    def rotation_world_from_optical(self) -> np.ndarray:
        """3x3 rotation whose columns are the optical x (right), y (down), z (forward) axes in the world."""
        cy, sy = math.cos(self.yaw_rad), math.sin(self.yaw_rad)
        cp, sp = math.cos(self.pitch_rad), math.sin(self.pitch_rad)
        cr, sr = math.cos(self.roll_rad), math.sin(self.roll_rad)
        yaw = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
        pitch = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])   # +pitch turns forward to -z
        roll = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
        return yaw @ pitch @ roll @ _BODY_FROM_OPTICAL

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """3x3 pinhole matrix K for an image of width x height pixels."""
        focal = 0.5 * width / math.tan(math.radians(self.fov_deg) / 2.0)
        return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])

    def view_projection(self, width: int, height: int, near_m: float, far_m: float) -> np.ndarray:
        """4x4 OpenGL clip-from-world matrix matching `intrinsics` (pixel centres included)."""
        focal = self.intrinsics(width, height)[0, 0]
        gl_from_optical = np.diag([1.0, -1.0, -1.0])
        view = np.eye(4)
        rotation = self.rotation_world_from_optical()
        view[:3, :3] = gl_from_optical @ rotation.T
        view[:3, 3] = -view[:3, :3] @ np.asarray(self.position_m, np.float64)
        projection = np.zeros((4, 4))
        projection[0, 0] = 2.0 * focal / width
        projection[1, 1] = 2.0 * focal / height
        projection[2, 2] = -(far_m + near_m) / (far_m - near_m)
        projection[2, 3] = -2.0 * far_m * near_m / (far_m - near_m)
        projection[3, 2] = -1.0
        return projection @ view

    def forward(self) -> np.ndarray:
        """Unit viewing direction in the world."""
        return self.rotation_world_from_optical()[:, 2]


def depth_from_window_z(window_z: np.ndarray, near_m: float, far_m: float) -> np.ndarray:
    """Metric camera-z depth (float32) from z-buffer values in [0, 1]; +inf where the buffer is cleared (1).

    Inverts window_z = far (z - near) / ((far - near) z), the depth of a perspective projection with
    glDepthRange(0, 1); computed in float64 so the only error left is the z-buffer's own precision.
    """
    window_z = window_z.astype(np.float64)
    with np.errstate(divide="ignore"):
        depth = near_m * far_m / (far_m - window_z * (far_m - near_m))
    depth[window_z >= 1.0] = np.inf
    return depth.astype(np.float32)
