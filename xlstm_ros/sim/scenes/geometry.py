"""Triangle meshes of the primitives scenes are made of, built in batches with numpy.

The world frame is z-up, metres. Every vertex carries its own material so that a whole scene is one
vertex buffer and one draw call. Vertex layout (VERTEX_FORMAT): position (3), normal (3), uv in metres
(2; the texture coordinate the shader's patterns are drawn in), colour_a (3), colour_b (3), pattern id
(1) and pattern scale in metres (1).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Callable

import numpy as np

VERTEX_FORMAT = "3f 3f 2f 3f 3f 2f"
VERTEX_ATTRIBUTES = ("in_position", "in_normal", "in_uv", "in_color_a", "in_color_b", "in_pattern")
VERTEX_FLOATS = 16


class Pattern(IntEnum):
    """Procedural textures implemented in the fragment shader (shaders.py)."""

    NOISE = 0      # fractal noise blend of colour_a and colour_b (grass, bark, foliage, plaster)
    CHECKER = 1    # checkerboard of colour_a / colour_b with noise (tiles, pavement)
    WINDOWS = 2    # facade: colour_a wall with a grid of colour_b windows, roof on top faces
    STRIPES = 3    # asphalt colour_a with a dashed colour_b centre line along uv.x at uv.y = 0


@dataclass(frozen=True)
class Material:
    """Two linear-RGB colours (0..1), a pattern and its scale in metres."""

    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    pattern: Pattern = Pattern.NOISE
    scale_m: float = 1.0

    def row(self) -> np.ndarray:
        """The per-vertex material attributes (8 floats)."""
        return np.array([*self.color_a, *self.color_b, float(self.pattern), self.scale_m], np.float32)


UvFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Template:
    """A unit primitive: positions and normals (V, 3) and how to derive uv from scaled local positions."""

    positions: np.ndarray
    normals: np.ndarray
    uv: UvFunction


def _box_template() -> _Template:
    """Unit cube [-0.5, 0.5]^2 x [0, 1] standing on z = 0 (12 triangles)."""
    positions, normals = [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u_axis, v_axis = [a for a in range(3) if a != axis]
            corners = []
            for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, -1), (1, 1), (-1, 1)):
                corner = np.zeros(3)
                corner[axis], corner[u_axis], corner[v_axis] = sign * 0.5, du * 0.5, dv * 0.5
                corners.append(corner)
            positions += corners
            normals += [np.eye(3)[axis] * sign] * 6
    positions = np.array(positions) + [0.0, 0.0, 0.5]
    normals = np.array(normals)
    vertical = np.abs(normals[:, 2]) < 0.5
    along = np.where(np.abs(normals[:, 0]) > 0.5, 1, 0)   # horizontal face axis of a vertical face

    def uv(local: np.ndarray, scale: np.ndarray) -> np.ndarray:
        rows = np.arange(local.shape[1])
        u = np.where(vertical, local[:, rows, along], local[..., 0])
        v = np.where(vertical, local[..., 2], local[..., 1])
        return np.stack([u, v], -1)

    return _Template(positions, normals, uv)


def _revolved_template(segments: int, cone: bool) -> _Template:
    """Unit cylinder (or cone) of radius 1 and height 1 on z = 0: side and top cap, no bottom."""
    angles = np.linspace(0.0, 2.0 * np.pi, segments + 1)
    a0, a1 = angles[:-1], angles[1:]
    top_radius = 0.0 if cone else 1.0
    side = []
    for angle, radius, z in ((a0, 1, 0), (a1, 1, 0), (a1, top_radius, 1),
                             (a0, 1, 0), (a1, top_radius, 1), (a0, top_radius, 1)):
        side.append(np.stack([radius * np.cos(angle), radius * np.sin(angle), np.full_like(angle, z),
                              angle], -1))
    side = np.stack(side, 1).reshape(-1, 4)
    slope = 1.0 if cone else 0.0
    side_normals = np.stack([np.cos(side[:, 3]), np.sin(side[:, 3]), np.full(len(side), slope)], -1)
    parts, normals = [side], [side_normals]
    if not cone:
        centre = np.stack([np.zeros(segments), np.zeros(segments), np.ones(segments), a0], -1)
        cap = np.stack([centre, side.reshape(segments, 6, 4)[:, 2], side.reshape(segments, 6, 4)[:, 5]], 1)
        parts.append(cap.reshape(-1, 4))
        normals.append(np.tile([0.0, 0.0, 1.0], (3 * segments, 1)))
    vertices = np.concatenate(parts)
    is_side = np.arange(len(vertices)) < len(side)
    angle = vertices[:, 3]

    def uv(local: np.ndarray, scale: np.ndarray) -> np.ndarray:
        around = angle * scale[:, None, 0]
        return np.stack([np.where(is_side, around, local[..., 0]),
                         np.where(is_side, local[..., 2], local[..., 1])], -1)

    return _Template(vertices[:, :3], np.concatenate(normals), uv)


def _sphere_template(slices: int, stacks: int) -> _Template:
    """Unit sphere centred at the origin (UV sphere)."""
    theta = np.linspace(0.0, 2.0 * np.pi, slices + 1)
    phi = np.linspace(-0.5 * np.pi, 0.5 * np.pi, stacks + 1)
    t0, p0 = np.meshgrid(theta[:-1], phi[:-1], indexing="ij")
    t1, p1 = np.meshgrid(theta[1:], phi[1:], indexing="ij")
    corners = [(t0, p0), (t1, p0), (t1, p1), (t0, p0), (t1, p1), (t0, p1)]
    angles = np.stack([np.stack([t.ravel(), p.ravel()], -1) for t, p in corners], 1).reshape(-1, 2)
    unit = np.stack([np.cos(angles[:, 1]) * np.cos(angles[:, 0]), np.cos(angles[:, 1]) * np.sin(angles[:, 0]),
                     np.sin(angles[:, 1])], -1)

    def uv(local: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return np.stack([angles[None, :, 0] * scale[:, None, 0], local[..., 2]], -1)

    return _Template(unit, unit.copy(), uv)


_TEMPLATES = {"box": _box_template(), "cylinder": _revolved_template(12, cone=False),
              "cone": _revolved_template(12, cone=True), "sphere": _sphere_template(10, 6)}


class MeshBuilder:
    """Collects primitive instances and builds one (n_vertices, VERTEX_FLOATS) float32 triangle list."""

    def __init__(self) -> None:
        # per primitive: rows of (origin xyz, scale xyz, yaw, material 8)
        self._instances: dict[str, list[np.ndarray]] = {name: [] for name in _TEMPLATES}
        self._quads: list[np.ndarray] = []

    def box(self, centre_xy: tuple[float, float], base_z: float, size: tuple[float, float, float],
            yaw_rad: float, material: Material) -> None:
        """A box of size (length along its yaw, width, height) standing on base_z."""
        self._add("box", (*centre_xy, base_z), size, yaw_rad, material)

    def cylinder(self, centre_xy: tuple[float, float], base_z: float, radius: float, height: float,
                 material: Material) -> None:
        """A vertical cylinder with a top cap."""
        self._add("cylinder", (*centre_xy, base_z), (radius, radius, height), 0.0, material)

    def cone(self, centre_xy: tuple[float, float], base_z: float, radius: float, height: float,
             material: Material) -> None:
        """A vertical cone, apex up."""
        self._add("cone", (*centre_xy, base_z), (radius, radius, height), 0.0, material)

    def ellipsoid(self, centre: tuple[float, float, float], radii: tuple[float, float, float],
                  material: Material) -> None:
        """An axis-aligned ellipsoid (a sphere when the radii are equal)."""
        self._add("sphere", centre, radii, 0.0, material)

    def ground(self, half_extent_m: float, material: Material) -> None:
        """The z = 0 ground plane, a square centred at the origin; its uv is the world xy."""
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, -1], [1, 1], [-1, 1]], np.float32) * half_extent_m
        rows = np.zeros((6, VERTEX_FLOATS), np.float32)
        rows[:, 0:2], rows[:, 5], rows[:, 6:8], rows[:, 8:] = corners, 1.0, corners, material.row()
        self._quads.append(rows)

    def _add(self, name: str, origin, scale, yaw_rad: float, material: Material) -> None:
        if min(scale) <= 0:
            raise ValueError(f"{name} size must be positive, got {scale}")
        self._instances[name].append(np.array([*origin, *scale, yaw_rad, *material.row()], np.float64))

    def build(self) -> np.ndarray:
        """All triangles as float32 rows in VERTEX_FORMAT."""
        parts = list(self._quads)
        for name, rows in self._instances.items():
            if rows:
                parts.append(_instantiate(_TEMPLATES[name], np.stack(rows)))
        if not parts:
            return np.zeros((0, VERTEX_FLOATS), np.float32)
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def _instantiate(template: _Template, rows: np.ndarray) -> np.ndarray:
    """Scale, rotate about z and translate `template` once per row; normals use the inverse transpose."""
    origin, scale, yaw, material = rows[:, 0:3], rows[:, 3:6], rows[:, 6], rows[:, 7:]
    world_from_local = np.zeros((len(rows), 3, 3))      # transposed rotations, for row vectors
    world_from_local[:, 0, 0] = world_from_local[:, 1, 1] = np.cos(yaw)
    world_from_local[:, 0, 1], world_from_local[:, 1, 0] = np.sin(yaw), -np.sin(yaw)
    world_from_local[:, 2, 2] = 1.0
    local = template.positions[None] * scale[:, None]
    normals = template.normals[None] / scale[:, None]
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    n_instances, n_vertices = local.shape[:2]
    out = np.empty((n_instances, n_vertices, VERTEX_FLOATS), np.float32)
    out[..., 0:3] = local @ world_from_local + origin[:, None]
    out[..., 3:6] = normals @ world_from_local
    out[..., 6:8] = template.uv(local, scale)
    out[..., 8:] = material[:, None]
    return out.reshape(-1, VERTEX_FLOATS)
