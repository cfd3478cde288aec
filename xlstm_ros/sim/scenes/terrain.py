"""Rolling hills: an analytic height field, its mesh, and surfaces draped over it (field parcels, roads).

The height is a sum of sinusoids (long waves carry most of the relief) faded to z = 0 towards the edge of a
square, outside which a flat ring continues the ground to the horizon. Draped surfaces sample the same
function on their own grids and float `lift_m` above it, enough to stay above the terrain mesh's facets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import Material, MeshBuilder

Triangles = tuple[np.ndarray, np.ndarray, np.ndarray]   # positions (3 n, 3), normals (3 n, 3), uv (3 n, 2)

_WAVELENGTHS_M = (700.0, 380.0, 210.0, 120.0)


@dataclass(frozen=True, eq=False)
class Terrain:
    """z = fade(x, y) * sum_k a_k (1 + sin(w_k . xy + phase_k)) / 2, non-negative; flat beyond half_extent_m."""

    wave_vectors: np.ndarray      # (k, 2) radians per metre
    amplitudes_m: np.ndarray      # (k,)
    phases: np.ndarray            # (k,)
    half_extent_m: float          # the hills fade out inside the square |x|, |y| < half_extent_m
    fade_m: float

    @classmethod
    def random(cls, rng: np.random.Generator, relief_m: float, half_extent_m: float = 450.0) -> Terrain:
        """Hills of about relief_m from valley to crest, in a random direction per wave."""
        angles = rng.uniform(0.0, 2.0 * np.pi, len(_WAVELENGTHS_M))
        wavelengths = np.asarray(_WAVELENGTHS_M) * rng.uniform(0.8, 1.25, len(angles))
        weights = (wavelengths / wavelengths.max()) ** 1.5 * rng.uniform(0.5, 1.0, len(angles))
        return cls(2.0 * np.pi / wavelengths[:, None] * np.stack([np.cos(angles), np.sin(angles)], -1),
                   relief_m * weights / weights.sum(), rng.uniform(0.0, 2.0 * np.pi, len(angles)),
                   half_extent_m, 0.35 * half_extent_m)

    def height(self, xy: np.ndarray) -> np.ndarray:
        """Ground height (...) at points xy (..., 2)."""
        xy = np.asarray(xy, np.float64)
        waves = 0.5 * (1.0 + np.sin(xy @ self.wave_vectors.T + self.phases)) @ self.amplitudes_m
        return self._fade(xy) * waves

    def _fade(self, xy: np.ndarray) -> np.ndarray:
        edge = (self.half_extent_m - np.abs(xy).max(axis=-1)) / self.fade_m
        t = np.clip(edge, 0.0, 1.0)
        return t * t * (3.0 - 2.0 * t)

    def add_to(self, builder: MeshBuilder, cells: int, material: Material, ring_m: float) -> None:
        """The terrain mesh (cells x cells over the square) and a flat ring out to ring_m around it; uv = xy."""
        half = self.half_extent_m
        builder.triangles(*surface_grid(self, (0.0, 0.0), 0.0, (2 * half, 2 * half), (cells, cells), 0.0,
                                        centred_uv=False), material)
        ring = []
        for x0, y0, x1, y1 in ((-ring_m, -ring_m, ring_m, -half), (-ring_m, half, ring_m, ring_m),
                               (-ring_m, -half, -half, half), (half, -half, ring_m, half)):
            ring += [[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y0, 0], [x1, y1, 0], [x0, y1, 0]]
        ring = np.asarray(ring, np.float64)
        builder.triangles(ring, np.tile([0.0, 0.0, 1.0], (len(ring), 1)), ring[:, :2], material)


def surface_grid(terrain: Terrain, centre_xy, yaw_rad: float, size_m: tuple[float, float],
                 cells: tuple[int, int], lift_m: float, centred_uv: bool = True) -> Triangles:
    """A rectangle (length along yaw, width) draped over the terrain lift_m above it, on a cells grid.

    uv is in metres along (length, width) from the centre, or the world xy when centred_uv is False.
    """
    u = np.linspace(-0.5, 0.5, cells[0] + 1) * size_m[0]
    v = np.linspace(-0.5, 0.5, cells[1] + 1) * size_m[1]
    uu, vv = np.meshgrid(u, v, indexing="ij")
    along = np.array([np.cos(yaw_rad), np.sin(yaw_rad)])
    across = np.array([-along[1], along[0]])
    xy = np.asarray(centre_xy, np.float64) + uu[..., None] * along + vv[..., None] * across
    return _triangulate(terrain, xy, np.stack([uu, vv], -1) if centred_uv else xy, lift_m)


def ribbon(terrain: Terrain, points_xy: np.ndarray, width_m: float, lift_m: float, lanes: int = 2) -> Triangles:
    """A strip of width_m along a polyline (a road), draped over the terrain; uv = (arc length, offset)."""
    points_xy = np.asarray(points_xy, np.float64)
    tangent = np.gradient(points_xy, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], -1)
    offsets = np.linspace(-0.5, 0.5, lanes + 1) * width_m
    xy = points_xy[:, None] + offsets[None, :, None] * normal[:, None]
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points_xy, axis=0), axis=1))])
    uv = np.stack(np.broadcast_arrays(arc[:, None], offsets[None]), -1)
    return _triangulate(terrain, xy, uv, lift_m)


def _triangulate(terrain: Terrain, xy: np.ndarray, uv: np.ndarray, lift_m: float) -> Triangles:
    """Two triangles per cell of a (rows, columns, 2) grid of points; normals from the height gradient."""
    z = terrain.height(xy) + lift_m
    normals = _normals(terrain, xy)
    positions = np.concatenate([xy, z[..., None]], -1)
    corners = [(slice(None, -1), slice(None, -1)), (slice(1, None), slice(None, -1)), (slice(1, None), slice(1, None)),
               (slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None)), (slice(None, -1), slice(1, None))]

    def cells(grid: np.ndarray) -> np.ndarray:
        return np.stack([grid[c] for c in corners], 2).reshape(-1, grid.shape[-1])

    return cells(positions), cells(normals), cells(uv)


def _normals(terrain: Terrain, xy: np.ndarray, step_m: float = 0.5) -> np.ndarray:
    """Unit surface normals (..., 3) by central differences of the height."""
    dx = terrain.height(xy + [step_m, 0.0]) - terrain.height(xy - [step_m, 0.0])
    dy = terrain.height(xy + [0.0, step_m]) - terrain.height(xy - [0.0, step_m])
    normals = np.stack([-dx, -dy, np.full_like(dx, 2.0 * step_m)], -1)
    return normals / np.linalg.norm(normals, axis=-1, keepdims=True)
