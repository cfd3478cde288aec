"""Outdoor layouts: open fields, street canyons, and hilly countryside for oblique and top-down drone views.

Each layout returns its geometry and the collision-free `FlightPath` every camera stays in (paths.py).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .config import SceneConfig
from .geometry import Material, MeshBuilder, Pattern
from .materials import (FOLIAGE, GLASS, GROUND_COLOURS, PAINT, bark, facade, foliage, pick, print_surface, roof, shade,
                        tint, uniform, with_photo)
from .paths import FlightPath, Layout
from .terrain import Terrain, ribbon, surface_grid
from .textures import Role

_TERRAIN_CELLS = 96
_FOREST_TREES = 400            # at most per forest, to bound the triangles of a scene
_CANOPY_SMOOTHING_M = 30.0


def _tree(builder: MeshBuilder, rng: np.random.Generator, xy, trunk_m: float, crown_m: float,
         base_z: float = 0.0, coarse: bool = False) -> None:
    """A trunk with a round (ellipsoid) or conifer (cone) crown of horizontal radius crown_m; coarse trees
    (for forests) have fewer triangles."""
    x, y = float(xy[0]), float(xy[1])
    leaves = foliage(rng)
    builder.cylinder((x, y), base_z, float(rng.uniform(0.1, 0.3)), trunk_m + crown_m, bark(rng), coarse)
    if rng.random() < 0.65:
        height = crown_m * rng.uniform(0.8, 1.4)
        builder.ellipsoid((x, y, base_z + trunk_m + height), (crown_m, crown_m * rng.uniform(0.8, 1.0), height),
                          leaves, coarse)
    else:
        builder.cone((x, y), base_z + trunk_m * 0.5, crown_m, 2.0 * crown_m + trunk_m * 1.5, leaves, coarse)


def _tree_top(trunk_m, crown_m):
    """An upper bound on the top of `_tree(.., trunk_m, crown_m)` above its base (scalars or arrays)."""
    return trunk_m + 2.8 * crown_m + trunk_m


def _house(builder: MeshBuilder, rng: np.random.Generator, xy, base_z: float, size, yaw_rad: float) -> float:
    """Walls of size (length, width, wall height) from base_z with a gable or flat roof; returns the top."""
    length, width, walls = (float(s) for s in size)
    builder.box(tuple(xy), base_z, (length, width, walls), yaw_rad, facade(rng))
    if rng.random() < 0.75:
        rise = width * rng.uniform(0.25, 0.6)
        builder.prism(tuple(xy), base_z + walls, (length + 0.6, width + 0.6, rise), yaw_rad, roof(rng))
        return base_z + walls + rise
    builder.box(tuple(xy), base_z + walls, (length + 0.3, width + 0.3, 0.3), yaw_rad, roof(rng))
    return base_z + walls + 0.3


def _ground_material(rng: np.random.Generator) -> Material:
    """Meadow, dirt or paving for flat open ground."""
    if rng.random() < 0.2:
        paving = Material(shade(rng, (0.45, 0.42, 0.38)), shade(rng, (0.28, 0.27, 0.25)), Pattern.NOISE,
                          float(rng.uniform(0.5, 2.0)))
        return with_photo(rng, paving, Role.STONE, rng.uniform(2.0, 6.0), 0.7)
    a, b = pick(rng, GROUND_COLOURS)
    meadow = Material(tint(rng, a, 0.08), tint(rng, b, 0.08), Pattern.NOISE, float(rng.uniform(2.0, 10.0)))
    return with_photo(rng, meadow, Role.GRASS, rng.uniform(2.0, 8.0), 0.6)


def field(rng: np.random.Generator, config: SceneConfig) -> Layout:
    """Open ground: trees (also in rows along the path), poles, boxes, boulders and houses."""
    arc = np.arange(0.0, config.path_length_m + 1.0)
    heading = rng.uniform(-math.pi, math.pi) + sum(
        rng.uniform(0.0, 0.5) * np.sin(2 * math.pi * arc / rng.uniform(60.0, 200.0) + rng.uniform(0, 6.3))
        for _ in range(2))
    points = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], -1), axis=0)
    path = FlightPath(points - points.mean(axis=0), float(rng.uniform(2.0, 6.0)), config.altitude_m)
    density = uniform(rng, config.object_density)
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
    metal = Material(shade(rng, (0.35, 0.35, 0.36)), shade(rng, (0.2, 0.2, 0.2)), Pattern.NOISE, 0.5)
    for i in np.flatnonzero(path.clear_of(poles, arm, pole_height)):
        builder.cylinder(tuple(poles[i]), 0.0, float(rng.uniform(0.08, 0.2)), float(pole_height[i]), metal)
        builder.box(tuple(poles[i]), float(pole_height[i]) - 0.6, (2 * float(arm[i]), 0.12, 0.12),
                    float(rng.uniform(0, math.pi)), metal)

    boxes = spots(rng.uniform(10, 40))
    size = rng.uniform((0.5, 0.5, 0.3), (4.0, 4.0, 3.0), (len(boxes), 3))
    for i in np.flatnonzero(path.clear_of(boxes, np.hypot(size[:, 0], size[:, 1]) / 2, size[:, 2])):
        if rng.random() < 0.3:
            material = print_surface(rng, float(rng.uniform(0.5, 3.0)))
        else:
            pattern = Pattern.CHECKER if rng.random() < 0.4 else Pattern.NOISE
            material = Material(tint(rng, pick(rng, PAINT)), tint(rng, pick(rng, PAINT)), pattern,
                                float(rng.uniform(0.2, 1.0)))
        builder.box(tuple(boxes[i]), 0.0, tuple(size[i]), float(rng.uniform(0, math.pi)), material)

    rocks = spots(rng.uniform(0, 10))
    radius = rng.uniform(0.3, 1.5, len(rocks))
    for i in np.flatnonzero(path.clear_of(rocks, radius, 1.4 * radius)):
        grey = shade(rng, (0.3, 0.29, 0.27))
        builder.ellipsoid((*rocks[i], 0.4 * float(radius[i])), (float(radius[i]),) * 3,
                          with_photo(rng, Material(grey, tint(rng, grey, 0.5), Pattern.NOISE, 0.4), Role.STONE,
                                     rng.uniform(0.5, 2.0), 0.4))

    # low clutter (stones, shrubs) near the path; inside the corridor only when below the lowest altitude
    along = rng.uniform(0.0, path.length_m, int(density * rng.uniform(60, 150)))
    xy, theta = path.at(along)
    clutter = xy + rng.uniform(-10.0, 10.0, (len(along), 1)) * np.stack([-np.sin(theta), np.cos(theta)], -1)
    radius = rng.uniform(0.1, 0.25, len(clutter))
    for i in np.flatnonzero(path.clear_of(clutter, radius, 2 * radius)):
        colour = tint(rng, pick(rng, FOLIAGE + [(0.3, 0.29, 0.27)]))
        builder.ellipsoid((*clutter[i], 0.6 * float(radius[i])), (float(radius[i]),) * 3,
                          Material(colour, tint(rng, colour, 0.5), Pattern.NOISE, 0.2))

    houses = spots(rng.uniform(2, 10))
    size = rng.uniform((6.0, 6.0, 3.0), (16.0, 12.0, 10.0), (len(houses), 3))
    top = size[:, 2] + 0.6 * size[:, 1]
    for i in np.flatnonzero(path.clear_of(houses, np.hypot(size[:, 0], size[:, 1]) / 2, top)):
        _house(builder, rng, houses[i], 0.0, size[i], float(rng.uniform(0, math.pi)))
    builder.ground(0.5 * config.far_m, _ground_material(rng))
    return builder, path, None


def street(rng: np.random.Generator, config: SceneConfig) -> Layout:
    """A straight street along x: sidewalks, two rows of buildings, lamp posts, trees and parked cars."""
    half_road, sidewalk = rng.uniform(4.0, 9.0), rng.uniform(1.5, 4.0)
    length = config.path_length_m
    arc = np.arange(0.0, length + 1.0) - length / 2
    path = FlightPath(np.stack([arc, np.zeros_like(arc)], -1), half_road - 2.5, config.altitude_m)
    builder = MeshBuilder()
    reach = length / 2 + 80.0
    pavement = with_photo(rng, Material(shade(rng, (0.40, 0.39, 0.37)), shade(rng, (0.30, 0.29, 0.28)),
                                        Pattern.CHECKER, float(rng.uniform(0.4, 1.0))),
                          Role.STONE, rng.uniform(2.0, 5.0), 0.5)
    metal = Material(shade(rng, (0.25, 0.26, 0.27)), (0.1, 0.1, 0.1), Pattern.NOISE, 0.5)
    tallest = math.exp(rng.uniform(math.log(8.0), math.log(60.0)))
    for side in (-1.0, 1.0):
        builder.box((0.0, side * (half_road + sidewalk / 2)), 0.0, (2 * reach, sidewalk, 0.15), 0.0, pavement)
        x = -reach
        while x < reach:
            width = rng.uniform(8.0, 30.0)
            depth, height = rng.uniform(8.0, 25.0), rng.uniform(4.0, tallest)
            y = side * (half_road + sidewalk + rng.uniform(0.0, 2.0) + depth / 2)
            builder.box((x + width / 2, y), 0.0, (width, depth, height), 0.0, facade(rng))
            builder.box((x + width / 2, y), height, (width + 0.2, depth + 0.2, 0.4), 0.0, roof(rng))
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
            _car(builder, rng, (x, side * (half_road - 1.1)), 0.0, 0.0)
    asphalt = shade(rng, (0.07, 0.07, 0.075))
    builder.ground(0.5 * config.far_m, Material(asphalt, tint(rng, pick(rng, [(0.8, 0.8, 0.75), (0.8, 0.6, 0.1)])),
                                                Pattern.STRIPES, float(rng.uniform(0.5, 2.0))))
    return builder, path, None


def _car(builder: MeshBuilder, rng: np.random.Generator, xy, base_z: float, yaw_rad: float) -> None:
    """A body and a cabin of glass."""
    length, height = rng.uniform(3.8, 4.8), rng.uniform(0.7, 0.9)
    colour = tint(rng, pick(rng, PAINT))
    builder.box(tuple(xy), base_z + 0.15, (length, 1.8, height), yaw_rad,
                Material(colour, tint(rng, colour, 0.5), Pattern.NOISE, 0.3))
    builder.box(tuple(xy), base_z + 0.15 + height, (length * 0.55, 1.6, rng.uniform(0.4, 0.6)), yaw_rad,
                Material(pick(rng, GLASS), colour, Pattern.NOISE, 0.5))


def terrain(rng: np.random.Generator, config: SceneConfig) -> Layout:
    """Hilly countryside seen by a drone from above: aerial-photo or meadow ground, roads, field parcels with
    hedgerows, forests, lone trees and a village of gabled houses, and a corridor that rides above the tree
    and roof tops."""
    land = Terrain.random(rng, uniform(rng, config.relief_m))
    builder = MeshBuilder()
    a, b = pick(rng, GROUND_COLOURS[:3])
    ground = Material(tint(rng, a, 0.1), tint(rng, b, 0.1), Pattern.NOISE, float(rng.uniform(4.0, 15.0)))
    ground = with_photo(rng, ground, Role.AERIAL, rng.uniform(300.0, 800.0)) if rng.random() < 0.4 \
        else with_photo(rng, ground, Role.GRASS, rng.uniform(3.0, 10.0), 0.6)
    land.add_to(builder, _TERRAIN_CELLS, ground, 0.5 * config.far_m)
    arc = np.arange(0.0, config.path_length_m + 1.0)
    heading = rng.uniform(-math.pi, math.pi) + 0.4 * np.sin(2 * math.pi * arc / rng.uniform(150.0, 400.0))
    track = np.cumsum(_unit(heading), axis=0)
    countryside = _Countryside(rng, land, builder, track - track.mean(axis=0), uniform(rng, config.object_density))
    countryside.add_roads(heading)
    countryside.add_parcels()
    countryside.add_trees()
    if rng.random() < 0.7:
        countryside.add_village()
    halfwidth = float(rng.uniform(5.0, 20.0))
    floor = _corridor_floor(land, countryside.track, halfwidth, np.asarray(countryside.tops).reshape(-1, 4))
    return builder, FlightPath(countryside.track, halfwidth, config.aerial_altitude_m, floor_m=floor), None


@dataclasses.dataclass
class _Countryside:
    """What the terrain layout builds on: the land, the mesh, the flight track (n, 2), and the tops
    (x, y, radius, top z) of everything standing, which the flight corridor must clear."""

    rng: np.random.Generator
    land: Terrain
    builder: MeshBuilder
    track: np.ndarray
    density: float
    tops: list[tuple[float, float, float, float]] = dataclasses.field(default_factory=list)
    roads: list[np.ndarray] = dataclasses.field(default_factory=list)
    road_width_m: float = 6.0

    def near_track(self, spread_m: float) -> np.ndarray:
        """A point scattered around a random point of the track."""
        return self.track[self.rng.integers(len(self.track))] + self.rng.normal(0.0, spread_m, 2)

    def off_road(self, xy: np.ndarray, margin_m: float) -> np.ndarray:
        """Mask of the points (n, 2) at least margin_m from every road's edge."""
        return _distance_to(np.atleast_2d(xy), np.concatenate(self.roads)) > self.road_width_m / 2 + margin_m

    def plant_tree(self, xy: np.ndarray, trunk_m: float, crown_m: float) -> None:
        ground_z = float(self.land.height(xy))
        _tree(self.builder, self.rng, xy, trunk_m, crown_m, ground_z - 0.3, coarse=True)
        self.tops.append((float(xy[0]), float(xy[1]), crown_m, ground_z + _tree_top(trunk_m, crown_m)))

    def add_roads(self, heading: np.ndarray) -> None:
        """A road beside the track, continued beyond it, and sometimes a straight one crossing it."""
        rng = self.rng
        beside = self.track + rng.uniform(-25.0, 25.0) * _unit(heading + math.pi / 2)
        self.roads.append(_extend(beside, 200.0)[::4])
        if rng.random() < 0.5:
            self.roads.append(self.near_track(40.0) + np.outer(np.arange(-400.0, 400.0, 4.0),
                                                               _unit(rng.uniform(0.0, math.pi))))
        self.road_width_m = rng.uniform(4.0, 9.0)
        asphalt = Material(shade(rng, (0.09, 0.09, 0.095)), (0.75, 0.75, 0.7), Pattern.STRIPES,
                           float(rng.uniform(0.5, 2.0)))
        for polyline in self.roads:
            self.builder.triangles(*ribbon(self.land, polyline, self.road_width_m, 0.45), asphalt)

    def add_parcels(self) -> None:
        """Fields of crops in rows, meadow or bare soil, some with a hedgerow along one edge."""
        rng = self.rng
        for _ in range(int(self.density * rng.integers(8, 20))):
            centre, size, yaw = self.near_track(120.0), rng.uniform(30.0, 150.0, 2), rng.uniform(0.0, math.pi)
            crop = tint(rng, pick(rng, [(0.25, 0.30, 0.08), (0.45, 0.38, 0.18), (0.12, 0.22, 0.06),
                                        (0.55, 0.48, 0.25), (0.22, 0.16, 0.10)]))
            parcel = Material(crop, shade(rng, crop, 0.4), Pattern.PLANKS if rng.random() < 0.6 else Pattern.NOISE,
                              float(rng.uniform(0.8, 3.0)))
            parcel = with_photo(rng, parcel, Role.GRASS, rng.uniform(4.0, 12.0), 0.3)
            cells = (max(2, int(size[0] / 8)), max(2, int(size[1] / 8)))
            self.builder.triangles(*surface_grid(self.land, centre, yaw, size, cells, 0.3), parcel)
            if rng.random() < 0.4:
                steps = np.arange(-size[0] / 2, size[0] / 2, rng.uniform(4.0, 9.0))
                edge = centre + _unit(yaw + math.pi / 2) * size[1] / 2 + np.outer(steps, _unit(yaw))
                for xy in edge[self.off_road(edge, 3.0)]:
                    self.plant_tree(xy, rng.uniform(1.0, 4.0), rng.uniform(1.5, 3.5))

    def add_trees(self) -> None:
        """Forests (dense discs of trees) and lone trees around the track, off the roads."""
        rng = self.rng
        for _ in range(int(rng.integers(3, 9))):
            centre, radius = self.near_track(80.0), rng.uniform(25.0, 90.0)
            count = min(_FOREST_TREES, int(self.density * radius ** 2 * rng.uniform(0.02, 0.05)))
            spots = centre + radius * np.sqrt(rng.random(count))[:, None] * _unit(rng.uniform(0, 2 * math.pi, count))
            for xy in spots[self.off_road(spots, 2.0)]:
                self.plant_tree(xy, rng.uniform(1.0, 4.0), rng.uniform(2.5, 5.0))
        for xy in (self.near_track(150.0) for _ in range(int(self.density * rng.integers(10, 60)))):
            if self.off_road(xy, 2.0)[0]:
                self.plant_tree(xy, rng.uniform(1.5, 5.0), rng.uniform(2.0, 5.0))

    def add_village(self) -> None:
        """Houses on both sides of a stretch of the first road, facing it, with cars on the road."""
        rng, line = self.rng, self.roads[0]
        middle = rng.uniform(0.3, 0.7) * len(line)
        for index in np.clip(middle + rng.normal(0.0, 12.0, int(self.density * rng.integers(6, 25))), 1,
                             len(line) - 2).astype(int):
            direction = line[index + 1] - line[index - 1]
            yaw = math.atan2(direction[1], direction[0])
            size = rng.uniform((6.0, 6.0, 2.8), (14.0, 10.0, 7.0))
            side = _unit(yaw + math.pi / 2) * (1 if rng.random() < 0.5 else -1)
            xy = line[index] + (self.road_width_m / 2 + rng.uniform(3.0, 12.0) + size[1] / 2) * side
            corners = xy + np.array([sx * size[0] * _unit(yaw) + sy * size[1] * _unit(yaw + math.pi / 2)
                                     for sx in (-0.5, 0.5) for sy in (-0.5, 0.5)])
            top = _house(self.builder, rng, xy, float(self.land.height(corners).min()) - 0.3, size, yaw)
            self.tops.append((float(xy[0]), float(xy[1]), float(np.hypot(size[0], size[1]) / 2), top))
            if rng.random() < 0.4:
                car_xy = line[index] + rng.uniform(-0.3, 0.3) * self.road_width_m * side
                _car(self.builder, rng, car_xy, float(self.land.height(car_xy)) + 0.3, yaw)


def _extend(polyline: np.ndarray, length_m: float) -> np.ndarray:
    """The polyline continued straight for length_m beyond both ends, at its end spacing."""
    steps = int(length_m / np.linalg.norm(polyline[1] - polyline[0]))
    before = polyline[0] - np.outer(np.arange(steps, 0, -1), polyline[1] - polyline[0])
    after = polyline[-1] + np.outer(np.arange(1, steps + 1), polyline[-1] - polyline[-2])
    return np.concatenate([before, polyline, after])


def _unit(angles) -> np.ndarray:
    """Unit vectors (..., 2) in the directions `angles` (radians)."""
    return np.stack([np.cos(angles), np.sin(angles)], -1)


def _distance_to(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Distance from each point to the nearest vertex of a densely sampled polyline."""
    return np.linalg.norm(points[:, None] - polyline[None], axis=-1).min(axis=1)


def _corridor_floor(land: Terrain, track: np.ndarray, halfwidth_m: float, tops: np.ndarray) -> np.ndarray:
    """Per track point, a smooth height at or above the ground and every object top within the corridor."""
    heading = np.gradient(track, axis=0)
    heading /= np.linalg.norm(heading, axis=1, keepdims=True)
    across = np.stack([-heading[:, 1], heading[:, 0]], -1)
    offsets = np.linspace(-1.0, 1.0, 9) * (halfwidth_m + 2.0)
    floor = land.height(track[:, None] + offsets[None, :, None] * across[:, None]).max(axis=1)
    if len(tops):
        near = np.linalg.norm(track[:, None] - tops[None, :, :2], axis=-1) < halfwidth_m + 2.0 + tops[None, :, 2]
        floor = np.maximum(floor, np.where(near, tops[None, :, 3], -np.inf).max(axis=1))
    window = int(_CANOPY_SMOOTHING_M)
    padded = np.pad(floor, window, mode="edge")
    highest = np.lib.stride_tricks.sliding_window_view(padded, 2 * window + 1).max(axis=1)
    return np.convolve(np.pad(highest, window, mode="edge"), np.ones(2 * window + 1) / (2 * window + 1), "valid")
