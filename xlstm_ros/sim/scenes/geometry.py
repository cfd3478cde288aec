"""Triangle meshes of the primitives scenes are made of, built in batches with numpy.

The world frame is z-up, metres. Every vertex carries its own material so that a whole scene is one
vertex buffer and one draw call. Vertex layout (VERTEX_FLOATS per row): position (3), normal (3), uv in metres
(2; the texture coordinate the shader's patterns are drawn in), colour_a (3), colour_b (3), pattern id
and scale in metres (2), photo layer, scale in metres, gain and offset (4), and last whether the surface
casts shadows (1; the shadow pass reads it alone).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Callable

import numpy as np

VERTEX_FLOATS = 21
# How each render pass reads the rows (moderngl buffer format, then attribute names): the shading pass all
# but the shadow flag, the shadow pass the position and the flag.
SHADING_LAYOUT = ("3f 3f 2f 3f 3f 2f 4f 4x", "in_position", "in_normal", "in_uv", "in_color_a", "in_color_b",
                  "in_pattern", "in_photo")
SHADOW_LAYOUT = (f"3f {4 * (VERTEX_FLOATS - 4)}x 1f", "in_position", "in_casts_shadow")


class Pattern(IntEnum):
    """Procedural textures implemented in the fragment shader (shaders.py)."""

    NOISE = 0      # fractal noise blend of colour_a and colour_b (grass, bark, foliage, plaster)
    CHECKER = 1    # checkerboard of colour_a / colour_b with noise (tiles, pavement)
    WINDOWS = 2    # facade: colour_a wall with a grid of colour_b windows, roof on top faces
    STRIPES = 3    # asphalt colour_a with a dashed colour_b centre line along uv.x at uv.y = 0
    PLANKS = 4     # boards of width scale_m along uv.x, each a shade between colour_a and colour_b, with grain


@dataclass(frozen=True)
class Material:
    """Two linear-RGB colours (0..1), a pattern and its scale in metres, and optionally a photo.

    photo: a layer of textures.PHOTO_CROPS (-1: none). When the renderer has the photos, the photo scaled
    by photo_gain takes colour_a's place in the pattern and a darker copy colour_b's in tiles and boards
    (NOISE shows the photo alone; windows and road lines keep colour_b). One photo tile spans photo_scale_m
    metres, starting photo_offset (0..1) of the way into the photo so that surfaces sharing a photo show
    different parts of it. casts_shadow: False for surfaces a light shines through in a scene (a room's
    walls and ceiling around its lamp).
    """

    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    pattern: Pattern = Pattern.NOISE
    scale_m: float = 1.0
    photo: int = -1
    photo_scale_m: float = 1.0
    photo_gain: float = 0.7
    photo_offset: float = 0.0
    casts_shadow: bool = True

    def row(self) -> np.ndarray:
        """The per-vertex material attributes (VERTEX_FLOATS - 8 floats)."""
        return np.array([*self.color_a, *self.color_b, float(self.pattern), self.scale_m, float(self.photo),
                         self.photo_scale_m, self.photo_gain, self.photo_offset, float(self.casts_shadow)],
                        np.float32)


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


def _prism_template() -> _Template:
    """Unit gable roof on z = 0: footprint [-0.5, 0.5]^2, ridge along x at height 1 (no bottom face)."""
    ridge_l, ridge_r = [-0.5, 0.0, 1.0], [0.5, 0.0, 1.0]
    faces = []
    for side in (-1.0, 1.0):
        eave_l, eave_r = [-0.5, side * 0.5, 0.0], [0.5, side * 0.5, 0.0]
        faces.append(([eave_l, eave_r, ridge_r, eave_l, ridge_r, ridge_l], [0.0, side, 0.5]))
        faces.append(([[side * 0.5, -0.5, 0.0], [side * 0.5, 0.5, 0.0], [side * 0.5, 0.0, 1.0]], [side, 0.0, 0.0]))
    positions = np.array([p for corners, _ in faces for p in corners])
    normals = np.array([normal for corners, normal in faces for _ in corners])
    gable = np.abs(normals[:, 0]) > 0.5

    def uv(local: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return np.stack([np.where(gable, local[..., 1], local[..., 0]), local[..., 2]], -1)

    return _Template(positions, normals, uv)


# "coarse_" variants have a fraction of the triangles, for the many trees of a forest
_TEMPLATES = {"box": _box_template(), "prism": _prism_template(),
              "cylinder": _revolved_template(20, cone=False), "coarse_cylinder": _revolved_template(7, cone=False),
              "cone": _revolved_template(20, cone=True), "coarse_cone": _revolved_template(8, cone=True),
              "sphere": _sphere_template(12, 8), "coarse_sphere": _sphere_template(9, 5)}


class MeshBuilder:
    """Collects primitive instances and builds one (n_vertices, VERTEX_FLOATS) float32 triangle list."""

    def __init__(self) -> None:
        # per primitive: rows of (origin xyz, scale xyz, yaw, Material.row())
        self._instances: dict[str, list[np.ndarray]] = {name: [] for name in _TEMPLATES}
        self._triangles: list[np.ndarray] = []

    def box(self, centre_xy: tuple[float, float], base_z: float, size: tuple[float, float, float],
            yaw_rad: float, material: Material) -> None:
        """A box of size (length along its yaw, width, height) standing on base_z."""
        self._add("box", (*centre_xy, base_z), size, yaw_rad, material)

    def cylinder(self, centre_xy: tuple[float, float], base_z: float, radius: float, height: float,
                 material: Material, coarse: bool = False) -> None:
        """A vertical cylinder with a top cap (coarse: fewer sides, for things seen from afar)."""
        self._add("coarse_cylinder" if coarse else "cylinder", (*centre_xy, base_z), (radius, radius, height), 0.0,
                  material)

    def cone(self, centre_xy: tuple[float, float], base_z: float, radius: float, height: float,
             material: Material, coarse: bool = False) -> None:
        """A vertical cone, apex up (coarse: fewer sides)."""
        self._add("coarse_cone" if coarse else "cone", (*centre_xy, base_z), (radius, radius, height), 0.0, material)

    def ellipsoid(self, centre: tuple[float, float, float], radii: tuple[float, float, float],
                  material: Material, coarse: bool = False) -> None:
        """An axis-aligned ellipsoid, a sphere when the radii are equal (coarse: fewer facets)."""
        self._add("coarse_sphere" if coarse else "sphere", centre, radii, 0.0, material)

    def prism(self, centre_xy: tuple[float, float], base_z: float, size: tuple[float, float, float],
              yaw_rad: float, material: Material) -> None:
        """A gable roof of size (length along its yaw, width, height) on base_z, ridge along its length."""
        self._add("prism", (*centre_xy, base_z), size, yaw_rad, material)

    def ground(self, half_extent_m: float, material: Material) -> None:
        """The z = 0 ground plane, a square centred at the origin; its uv is the world xy."""
        corners = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, -1, 0], [1, 1, 0], [-1, 1, 0]]) * half_extent_m
        self.triangles(corners, np.tile([0.0, 0.0, 1.0], (6, 1)), corners[:, :2], material)

    def triangles(self, positions: np.ndarray, normals: np.ndarray, uv: np.ndarray, material: Material) -> None:
        """Raw triangles: positions and normals (3 n, 3) and uv in metres (3 n, 2), all of one material."""
        if len(positions) % 3 or not len(positions) == len(normals) == len(uv):
            raise ValueError(f"triangles need 3 n positions, normals and uvs, got {len(positions)}, "
                             f"{len(normals)}, {len(uv)}")
        rows = np.empty((len(positions), VERTEX_FLOATS), np.float32)
        rows[:, 0:3], rows[:, 3:6], rows[:, 6:8], rows[:, 8:] = positions, normals, uv, material.row()
        self._triangles.append(rows)

    def _add(self, name: str, origin, scale, yaw_rad: float, material: Material) -> None:
        if min(scale) <= 0:
            raise ValueError(f"{name} size must be positive, got {scale}")
        self._instances[name].append(np.array([*origin, *scale, yaw_rad, *material.row()], np.float64))

    def build(self) -> np.ndarray:
        """All triangles as float32 rows of VERTEX_FLOATS (the layout above)."""
        parts = list(self._triangles)
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
