"""Procedural scenes: geometry, materials, lighting and a collision-free flight path, drawn from a seed.

Every scene is laid out around a `FlightPath`: a ground track with a lateral half-width and an altitude
range inside which a camera never meets an object, so random views and flights need no collision tests.
Objects taller than the lowest flight altitude keep out of the path's corridor (plus `CLEARANCE_M`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import SceneConfig
from .geometry import Material, MeshBuilder, Pattern

CLEARANCE_M = 1.0
RGB = tuple[float, float, float]

_GROUND_COLOURS = [((0.10, 0.20, 0.05), (0.22, 0.18, 0.08)), ((0.28, 0.24, 0.10), (0.16, 0.14, 0.07)),
                   ((0.12, 0.10, 0.07), (0.25, 0.20, 0.14)), ((0.55, 0.55, 0.58), (0.35, 0.36, 0.40))]
_FOLIAGE = [(0.06, 0.16, 0.04), (0.10, 0.22, 0.06), (0.05, 0.10, 0.05), (0.20, 0.22, 0.06), (0.30, 0.12, 0.04)]
_BARK = (0.14, 0.09, 0.05)
_WALLS = [(0.55, 0.50, 0.42), (0.40, 0.20, 0.13), (0.30, 0.30, 0.32), (0.60, 0.58, 0.55), (0.45, 0.38, 0.25),
          (0.20, 0.24, 0.30)]
_GLASS = [(0.05, 0.07, 0.10), (0.10, 0.14, 0.18), (0.20, 0.22, 0.20)]
_PAINT = [(0.50, 0.05, 0.04), (0.05, 0.15, 0.45), (0.60, 0.45, 0.05), (0.70, 0.70, 0.70), (0.04, 0.04, 0.04),
          (0.10, 0.30, 0.10), (0.45, 0.25, 0.10)]


@dataclass(frozen=True)
class Lighting:
    """Sun, ambient, sky and fog of a scene; colours are linear RGB (tone-mapped in the shader)."""

    sun_direction: RGB            # unit vector towards the sun (or the main indoor light)
    sun_rgb: RGB
    ambient_rgb: RGB
    sky_zenith_rgb: RGB
    sky_horizon_rgb: RGB
    fog_rgb: RGB
    fog_distance_m: float         # 63 % of a surface's colour is replaced by fog at this distance
    cloud_cover: float            # 0 = clear sky, 1 = overcast
    exposure: float
    shadows: bool


@dataclass(frozen=True)
class FlightPath:
    """Collision-free corridor: a ground track sampled every metre, a lateral half-width and altitudes."""

    points_xy: np.ndarray                  # (n, 2)
    halfwidth_m: float
    altitude_m: tuple[float, float]

    @property
    def length_m(self) -> float:
        return float(self._arc_lengths()[-1])

    def _arc_lengths(self) -> np.ndarray:
        steps = np.linalg.norm(np.diff(self.points_xy, axis=0), axis=1)
        return np.concatenate([[0.0], np.cumsum(steps)])

    def at(self, arc_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground positions (..., 2) and headings (...) in radians at arc lengths `arc_m`."""
        arcs = self._arc_lengths()
        arc_m = np.clip(np.asarray(arc_m, np.float64), 0.0, arcs[-1])
        xy = np.stack([np.interp(arc_m, arcs, self.points_xy[:, i]) for i in range(2)], -1)
        delta = np.diff(self.points_xy, axis=0)
        segment = np.clip(np.searchsorted(arcs, arc_m, side="right") - 1, 0, len(delta) - 1)
        return xy, np.arctan2(delta[segment, 1], delta[segment, 0])

    def clear_of(self, xy: np.ndarray, radius_m: np.ndarray, top_m: np.ndarray) -> np.ndarray:
        """Mask of objects (centre xy, footprint radius, top height) a camera on this path cannot touch."""
        distance = np.linalg.norm(xy[:, None, :] - self.points_xy[None, ::2], axis=-1).min(axis=1)
        return (distance > self.halfwidth_m + CLEARANCE_M + radius_m) | \
               (top_m < self.altitude_m[0] - CLEARANCE_M)


@dataclass(frozen=True, eq=False)
class Scene:
    """One procedural scene: triangles (geometry.VERTEX_FORMAT rows), lighting and its flight path."""

    kind: str
    seed: int
    vertices: np.ndarray
    lighting: Lighting
    path: FlightPath
    near_m: float
    far_m: float

    @classmethod
    def random(cls, seed: int, config: SceneConfig = SceneConfig()) -> Scene:
        """Draw a scene of a random kind from `config`; the same seed gives the same scene."""
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"Scene.random seed={seed!r}: must be a non-negative integer")
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5CE4E]))
        weights = np.asarray(config.kind_weights, np.float64)
        kind = config.kinds[int(rng.choice(len(config.kinds), p=weights / weights.sum()))]
        builder, path = _LAYOUTS[kind](rng, config)
        lighting = _indoor_lighting(rng) if kind == "corridor" else _outdoor_lighting(rng, config)
        builder.ground(0.5 * config.far_m, _ground_material(rng, kind))
        return cls(kind, int(seed), builder.build(), lighting, path, config.near_m, config.far_m)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], size=None):
    return rng.uniform(bounds[0], bounds[1], size)


def _tint(rng: np.random.Generator, colour: RGB, amount: float = 0.15) -> RGB:
    """`colour` with each channel scaled by a random factor in [1 - amount, 1 + amount]."""
    factors = rng.uniform(1 - amount, 1 + amount, 3).tolist()
    return tuple(min(1.0, max(0.0, c * f)) for c, f in zip(colour, factors))


def _shade(rng: np.random.Generator, colour: RGB, amount: float = 0.3) -> RGB:
    """`colour` scaled by one random factor in [1 - amount, 1 + amount] (keeps greys grey)."""
    factor = rng.uniform(1 - amount, 1 + amount)
    return tuple(float(min(1.0, c * factor)) for c in colour)


def _pick(rng: np.random.Generator, palette: list) -> tuple:
    return palette[int(rng.integers(len(palette)))]


def _ground_material(rng: np.random.Generator, kind: str) -> Material:
    if kind == "street":
        asphalt = _shade(rng, (0.07, 0.07, 0.075))
        return Material(asphalt, _tint(rng, _pick(rng, [(0.8, 0.8, 0.75), (0.8, 0.6, 0.1)])), Pattern.STRIPES,
                        float(rng.uniform(0.5, 2.0)))
    if kind == "corridor":
        return Material(_tint(rng, (0.50, 0.48, 0.45), 0.4), _tint(rng, (0.25, 0.24, 0.22), 0.4),
                        Pattern.CHECKER, float(rng.uniform(0.4, 1.2)))
    if rng.random() < 0.2:
        return Material(_shade(rng, (0.45, 0.42, 0.38)), _shade(rng, (0.20, 0.19, 0.18)), Pattern.CHECKER,
                        float(rng.uniform(1.0, 5.0)))
    a, b = _pick(rng, _GROUND_COLOURS)
    return Material(_tint(rng, a, 0.08), _tint(rng, b, 0.08), Pattern.NOISE, float(rng.uniform(2.0, 10.0)))


def _outdoor_lighting(rng: np.random.Generator, config: SceneConfig) -> Lighting:
    elevation = math.radians(_uniform(rng, config.sun_elevation_deg))
    azimuth = rng.uniform(0.0, 2.0 * math.pi)
    sun = (math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation))
    overcast = rng.random() < 0.25
    warmth = math.sin(elevation)
    intensity = rng.uniform(0.5, 1.2) if overcast else rng.uniform(2.2, 3.2)
    sun_rgb = tuple(intensity * c for c in (1.0, 0.82 + 0.18 * warmth, 0.65 + 0.35 * warmth))
    if overcast:
        zenith = _tint(rng, (0.55, 0.57, 0.60), 0.1)
        horizon = _tint(rng, (0.70, 0.71, 0.72), 0.05)
    else:
        zenith = _tint(rng, (0.15, 0.32, 0.70), 0.2)
        horizon = _tint(rng, (0.62, 0.72, 0.85), 0.1)
    ambient = _uniform(rng, config.ambient) * (1.5 if overcast else 1.0)
    ambient_rgb = tuple(ambient * (0.5 * z + 0.5 * h) / 0.6 for z, h in zip(zenith, horizon))
    return Lighting(sun, sun_rgb, ambient_rgb, zenith, horizon, horizon,
                    float(math.exp(rng.uniform(math.log(250.0), math.log(3000.0)))),
                    float(rng.uniform(0.6, 1.0) if overcast else rng.uniform(0.0, 0.6)),
                    float(rng.uniform(0.8, 1.3)), config.shadows)


def _indoor_lighting(rng: np.random.Generator) -> Lighting:
    light = np.array([rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3), 1.0])
    light /= np.linalg.norm(light)
    warm = _tint(rng, (1.0, 0.92, 0.80), 0.1)
    intensity, ambient = rng.uniform(1.0, 2.0), rng.uniform(0.3, 0.6)
    dark = float(rng.uniform(0.01, 0.06))
    return Lighting(tuple(float(c) for c in light), tuple(intensity * c for c in warm),
                    tuple(ambient * c for c in warm), (dark,) * 3, (dark,) * 3, (dark,) * 3,
                    float(rng.uniform(20.0, 80.0)), 0.0, float(rng.uniform(0.9, 1.4)), False)


def _tree(builder: MeshBuilder, rng: np.random.Generator, xy, trunk_m: float, crown_m: float) -> None:
    """A trunk with a round (ellipsoid) or conifer (cone) crown of horizontal radius crown_m."""
    x, y = float(xy[0]), float(xy[1])
    foliage = Material(_tint(rng, _pick(rng, _FOLIAGE)), _tint(rng, _pick(rng, _FOLIAGE)), Pattern.NOISE,
                       float(rng.uniform(0.3, 1.0)))
    builder.cylinder((x, y), 0.0, float(rng.uniform(0.1, 0.3)), trunk_m + crown_m,
                     Material(_tint(rng, _BARK), _tint(rng, _BARK, 0.4), Pattern.NOISE, 0.3))
    if rng.random() < 0.65:
        height = crown_m * rng.uniform(0.8, 1.4)
        builder.ellipsoid((x, y, trunk_m + height), (crown_m, crown_m * rng.uniform(0.8, 1.0), height), foliage)
    else:
        builder.cone((x, y), trunk_m * 0.5, crown_m, 2.0 * crown_m + trunk_m * 1.5, foliage)


def _tree_top(trunk_m: float, crown_m: float) -> float:
    """An upper bound on the top of `_tree(.., trunk_m, crown_m)`."""
    return trunk_m + 2.8 * crown_m + trunk_m


def _windows_material(rng: np.random.Generator) -> Material:
    return Material(_tint(rng, _pick(rng, _WALLS)), _tint(rng, _pick(rng, _GLASS)), Pattern.WINDOWS,
                    float(rng.uniform(2.6, 4.0)))


def _field(rng: np.random.Generator, config: SceneConfig) -> tuple[MeshBuilder, FlightPath]:
    """Open ground: trees (also in rows along the path), poles, boxes, boulders and houses."""
    arc = np.arange(0.0, config.path_length_m + 1.0)
    heading = rng.uniform(-math.pi, math.pi) + sum(
        rng.uniform(0.0, 0.5) * np.sin(2 * math.pi * arc / rng.uniform(60.0, 200.0) + rng.uniform(0, 6.3))
        for _ in range(2))
    points = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], -1), axis=0)
    path = FlightPath(points - points.mean(axis=0), float(rng.uniform(2.0, 6.0)), config.altitude_m)
    density = _uniform(rng, config.object_density)
    low, high = path.points_xy.min(axis=0) - 50.0, path.points_xy.max(axis=0) + 50.0
    builder = MeshBuilder()

    def spots(count: float) -> np.ndarray:
        return rng.uniform(low, high, (int(density * count), 2))

    trees = [spots(rng.uniform(50, 150))]
    for side in (-1.0, 1.0):
        if rng.random() < 0.5:
            along = np.arange(rng.uniform(0, 5), path.length_m, rng.uniform(6.0, 12.0))
            xy, theta = path.at(along)
            offset = side * (path.halfwidth_m + rng.uniform(3.0, 6.0))
            trees.append(xy + offset * np.stack([-np.sin(theta), np.cos(theta)], -1))
    trees = np.concatenate(trees)
    trunk, crown = rng.uniform(1.0, 3.5, len(trees)), rng.uniform(1.0, 3.5, len(trees))
    for i in np.flatnonzero(path.clear_of(trees, crown, _tree_top(trunk, crown))):
        _tree(builder, rng, trees[i], float(trunk[i]), float(crown[i]))

    poles = spots(rng.uniform(5, 25))
    pole_height, arm = rng.uniform(4.0, 12.0, len(poles)), rng.uniform(0.5, 3.0, len(poles))
    metal = Material(_shade(rng, (0.35, 0.35, 0.36)), _shade(rng, (0.2, 0.2, 0.2)), Pattern.NOISE, 0.5)
    for i in np.flatnonzero(path.clear_of(poles, arm, pole_height)):
        builder.cylinder(tuple(poles[i]), 0.0, float(rng.uniform(0.08, 0.2)), float(pole_height[i]), metal)
        builder.box(tuple(poles[i]), float(pole_height[i]) - 0.6, (2 * float(arm[i]), 0.12, 0.12),
                    float(rng.uniform(0, math.pi)), metal)

    boxes = spots(rng.uniform(10, 40))
    size = rng.uniform((0.5, 0.5, 0.3), (4.0, 4.0, 3.0), (len(boxes), 3))
    for i in np.flatnonzero(path.clear_of(boxes, np.hypot(size[:, 0], size[:, 1]) / 2, size[:, 2])):
        pattern = Pattern.CHECKER if rng.random() < 0.4 else Pattern.NOISE
        builder.box(tuple(boxes[i]), 0.0, tuple(size[i]), float(rng.uniform(0, math.pi)),
                    Material(_tint(rng, _pick(rng, _PAINT)), _tint(rng, _pick(rng, _PAINT)), pattern,
                             float(rng.uniform(0.2, 1.0))))

    rocks = spots(rng.uniform(0, 10))
    radius = rng.uniform(0.3, 1.5, len(rocks))
    for i in np.flatnonzero(path.clear_of(rocks, radius, 1.4 * radius)):
        grey = _shade(rng, (0.3, 0.29, 0.27))
        builder.ellipsoid((*rocks[i], 0.4 * float(radius[i])), (float(radius[i]),) * 3,
                          Material(grey, _tint(rng, grey, 0.5), Pattern.NOISE, 0.4))

    # low clutter (stones, shrubs) near the path; inside the corridor only when below the lowest altitude
    along = rng.uniform(0.0, path.length_m, int(density * rng.uniform(60, 150)))
    xy, theta = path.at(along)
    clutter = xy + rng.uniform(-10.0, 10.0, (len(along), 1)) * np.stack([-np.sin(theta), np.cos(theta)], -1)
    radius = rng.uniform(0.1, 0.25, len(clutter))
    for i in np.flatnonzero(path.clear_of(clutter, radius, 2 * radius)):
        colour = _tint(rng, _pick(rng, _FOLIAGE + [(0.3, 0.29, 0.27)]))
        builder.ellipsoid((*clutter[i], 0.6 * float(radius[i])), (float(radius[i]),) * 3,
                          Material(colour, _tint(rng, colour, 0.5), Pattern.NOISE, 0.2))

    houses = spots(rng.uniform(2, 10))
    size = rng.uniform((6.0, 6.0, 3.0), (16.0, 12.0, 10.0), (len(houses), 3))
    for i in np.flatnonzero(path.clear_of(houses, np.hypot(size[:, 0], size[:, 1]) / 2, size[:, 2])):
        builder.box(tuple(houses[i]), 0.0, tuple(size[i]), float(rng.uniform(0, math.pi)), _windows_material(rng))
    return builder, path


def _street(rng: np.random.Generator, config: SceneConfig) -> tuple[MeshBuilder, FlightPath]:
    """A straight street along x: sidewalks, two rows of buildings, lamp posts, trees and parked cars."""
    half_road, sidewalk = rng.uniform(4.0, 9.0), rng.uniform(1.5, 4.0)
    length = config.path_length_m
    arc = np.arange(0.0, length + 1.0) - length / 2
    path = FlightPath(np.stack([arc, np.zeros_like(arc)], -1), half_road - 2.5, config.altitude_m)
    builder = MeshBuilder()
    reach = length / 2 + 80.0
    pavement = Material(_shade(rng, (0.40, 0.39, 0.37)), _shade(rng, (0.30, 0.29, 0.28)), Pattern.CHECKER,
                        float(rng.uniform(0.4, 1.0)))
    metal = Material(_shade(rng, (0.25, 0.26, 0.27)), (0.1, 0.1, 0.1), Pattern.NOISE, 0.5)
    tallest = math.exp(rng.uniform(math.log(8.0), math.log(60.0)))
    for side in (-1.0, 1.0):
        builder.box((0.0, side * (half_road + sidewalk / 2)), 0.0, (2 * reach, sidewalk, 0.15), 0.0, pavement)
        x = -reach
        while x < reach:
            width = rng.uniform(8.0, 30.0)
            depth, height = rng.uniform(8.0, 25.0), rng.uniform(4.0, tallest)
            y = side * (half_road + sidewalk + rng.uniform(0.0, 2.0) + depth / 2)
            builder.box((x + width / 2, y), 0.0, (width, depth, height), 0.0, _windows_material(rng))
            x += width + (rng.uniform(8.0, 16.0) if rng.random() < 0.15 else rng.uniform(0.0, 3.0))
        pole_y, arm = side * (half_road + 0.4), rng.uniform(0.8, 1.5)
        for x in np.arange(-reach + rng.uniform(0, 20), reach, rng.uniform(15.0, 35.0)):
            height = rng.uniform(5.0, 9.0)
            builder.cylinder((float(x), pole_y), 0.0, 0.1, height, metal)
            builder.box((float(x), pole_y - side * arm / 2), height - 0.3, (arm, 0.12, 0.12), math.pi / 2, metal)
        if rng.random() < 0.6:
            for x in np.arange(-reach + rng.uniform(0, 10), reach, rng.uniform(8.0, 15.0)):
                _tree(builder, rng, (x, side * (half_road + sidewalk / 2)), rng.uniform(2.0, 4.0),
                      rng.uniform(1.0, sidewalk / 2 + 1.0))
        x = -reach
        while x < reach:
            x += rng.uniform(5.0, 30.0)
            colour = _tint(rng, _pick(rng, _PAINT))
            builder.box((x, side * (half_road - 1.1)), 0.15, (rng.uniform(3.8, 4.8), 1.8, rng.uniform(1.2, 1.5)),
                        0.0, Material(colour, _tint(rng, colour, 0.5), Pattern.NOISE, 0.3))
    return builder, path


def _corridor(rng: np.random.Generator, config: SceneConfig) -> tuple[MeshBuilder, FlightPath]:
    """An indoor hallway along x: walls, ceiling, end walls, pillars, cabinets and ducts near the walls."""
    width, height = rng.uniform(3.5, 8.0), rng.uniform(2.6, 5.0)
    length = config.path_length_m + 30.0
    arc = np.arange(0.0, config.path_length_m + 1.0) - config.path_length_m / 2
    path = FlightPath(np.stack([arc, np.zeros_like(arc)], -1), max(0.1, width / 2 - 1.6), (0.6, height - 0.5))
    builder = MeshBuilder()
    pattern = _pick(rng, [Pattern.NOISE, Pattern.CHECKER, Pattern.WINDOWS])
    wall = Material(_tint(rng, _pick(rng, _WALLS), 0.3), _tint(rng, _pick(rng, _WALLS + _GLASS), 0.3), pattern,
                    float(rng.uniform(0.3, 0.8) if pattern == Pattern.CHECKER else rng.uniform(2.0, 3.0)))
    ceiling = Material(_shade(rng, (0.6, 0.6, 0.58)), _shade(rng, (0.45, 0.45, 0.44)), Pattern.CHECKER,
                       float(rng.uniform(0.5, 1.2)))
    builder.box((0.0, 0.0), height, (length + 0.6, width + 0.6, 0.3), 0.0, ceiling)
    for side in (-1.0, 1.0):
        builder.box((0.0, side * (width / 2 + 0.15)), 0.0, (length, 0.3, height), 0.0, wall)
        builder.box((side * (length / 2 + 0.15), 0.0), 0.0, (0.3, width + 0.6, height + 0.3), 0.0, wall)
        pillar = Material(_tint(rng, _pick(rng, _WALLS)), _tint(rng, _pick(rng, _WALLS)), Pattern.NOISE, 0.5)
        depth = rng.uniform(0.3, 0.8)
        for x in np.arange(-length / 2 + rng.uniform(0, 5), length / 2, rng.uniform(4.0, 10.0)):
            builder.box((float(x), side * (width / 2 - depth / 2)), 0.0, (depth, depth, height), 0.0, pillar)
        x = -length / 2
        while x < length / 2 - 3.0:
            x += rng.uniform(1.0, 8.0)
            size = (rng.uniform(0.4, 2.0), rng.uniform(0.3, 1.0), rng.uniform(0.4, 2.0))
            colour = _tint(rng, _pick(rng, _PAINT))
            builder.box((x, side * (width / 2 - size[1] / 2)), 0.0, size, 0.0,
                        Material(colour, _tint(rng, colour, 0.4), Pattern.CHECKER, float(rng.uniform(0.1, 0.5))))
        if rng.random() < 0.5:
            duct = rng.uniform(0.2, 0.6)
            metal = Material(_shade(rng, (0.5, 0.5, 0.52)), _shade(rng, (0.35, 0.35, 0.37)), Pattern.NOISE, 0.3)
            builder.box((0.0, side * (width / 2 - 0.4)), height - 0.5, (length, duct, 0.4), 0.0, metal)
    return builder, path


_LAYOUTS = {"field": _field, "street": _street, "corridor": _corridor}
