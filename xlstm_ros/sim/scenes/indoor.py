"""Indoor layouts: hallways, and furnished rooms (with a dense-clutter variant for close-ups).

A room is a closed box (floor, walls, ceiling) with furniture along its walls, a table or rug in the
middle, plants, pictures and clutter on every surface. Every object is recorded in the room's `Interior`
(its bounding box, and focus points on table tops and shelves) so that views can stand anywhere in the free
space. The room's shell casts no shadows: the scene's light shines in through it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .config import SceneConfig
from .geometry import Material, MeshBuilder, Pattern
from .materials import (FOLIAGE, GLASS, PAINT, PLASTER, WALLS, fabric, foliage, mottled, pick, print_surface, shade,
                        tint, uniform, with_photo, wood)
from .paths import FlightPath, Interior, Layout
from .textures import Role

_ROOM_CLEARANCE_M = 0.25
_WALL_DEPTH_M = 0.6            # furniture along the walls stays this close to them
_LOOP_STEP_M = 0.25


def corridor(rng: np.random.Generator, config: SceneConfig) -> Layout:
    """An indoor hallway along x: walls, ceiling, end walls, pillars, cabinets and ducts near the walls."""
    width, height = rng.uniform(3.5, 8.0), rng.uniform(2.6, 5.0)
    length = config.path_length_m + 30.0
    arc = np.arange(0.0, config.path_length_m + 1.0) - config.path_length_m / 2
    path = FlightPath(np.stack([arc, np.zeros_like(arc)], -1), max(0.1, width / 2 - 1.6), (0.6, height - 0.5))
    builder = MeshBuilder()
    pattern = pick(rng, [Pattern.NOISE, Pattern.CHECKER, Pattern.WINDOWS])
    wall = Material(tint(rng, pick(rng, WALLS), 0.3), tint(rng, pick(rng, WALLS + GLASS), 0.3), pattern,
                    float(rng.uniform(0.3, 0.8) if pattern == Pattern.CHECKER else rng.uniform(2.0, 3.0)),
                    casts_shadow=False)
    ceiling = Material(shade(rng, (0.6, 0.6, 0.58)), shade(rng, (0.45, 0.45, 0.44)), Pattern.CHECKER,
                       float(rng.uniform(0.5, 1.2)), casts_shadow=False)
    builder.box((0.0, 0.0), height, (length + 0.6, width + 0.6, 0.3), 0.0, ceiling)
    for side in (-1.0, 1.0):
        builder.box((0.0, side * (width / 2 + 0.15)), 0.0, (length, 0.3, height), 0.0, wall)
        builder.box((side * (length / 2 + 0.15), 0.0), 0.0, (0.3, width + 0.6, height + 0.3), 0.0, wall)
        pillar = Material(tint(rng, pick(rng, WALLS)), tint(rng, pick(rng, WALLS)), Pattern.NOISE, 0.5)
        depth = rng.uniform(0.3, 0.8)
        for x in np.arange(-length / 2 + rng.uniform(0, 5), length / 2, rng.uniform(4.0, 10.0)):
            builder.box((float(x), side * (width / 2 - depth / 2)), 0.0, (depth, depth, height), 0.0, pillar)
        x = -length / 2
        while x < length / 2 - 3.0:
            x += rng.uniform(1.0, 8.0)
            size = (rng.uniform(0.4, 2.0), rng.uniform(0.3, 1.0), rng.uniform(0.4, 2.0))
            if rng.random() < 0.3:
                material = print_surface(rng, float(rng.uniform(0.3, 1.5)))
            else:
                colour = tint(rng, pick(rng, PAINT))
                material = Material(colour, tint(rng, colour, 0.4), Pattern.CHECKER, float(rng.uniform(0.1, 0.5)))
            builder.box((x, side * (width / 2 - size[1] / 2)), 0.0, size, 0.0, material)
            if rng.random() < 0.3:
                _picture(builder, rng, np.array([x + rng.uniform(-2.0, 2.0), side * width / 2]), 1, -side, height,
                         0.9)
        if rng.random() < 0.5:
            duct = rng.uniform(0.2, 0.6)
            metal = Material(shade(rng, (0.5, 0.5, 0.52)), shade(rng, (0.35, 0.35, 0.37)), Pattern.NOISE, 0.3)
            builder.box((0.0, side * (width / 2 - 0.4)), height - 0.5, (length, duct, 0.4), 0.0, metal)
    builder.ground(0.5 * config.far_m, _floor(rng))
    return builder, path, None


def _floor(rng: np.random.Generator) -> Material:
    """Boards, tiles or a fitted carpet."""
    choice = rng.random()
    if choice < 0.45:
        return wood(rng, float(rng.uniform(0.08, 0.25)))
    if choice < 0.8:
        tile = Material(tint(rng, (0.50, 0.48, 0.45), 0.4), tint(rng, (0.25, 0.24, 0.22), 0.4), Pattern.CHECKER,
                        float(rng.uniform(0.3, 1.0)))
        return with_photo(rng, tile, Role.STONE, rng.uniform(1.0, 3.0), 0.3)
    return fabric(rng)


def _axes(yaw_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors along and across (to the left of) the direction yaw_rad."""
    return np.array([math.cos(yaw_rad), math.sin(yaw_rad)]), np.array([-math.sin(yaw_rad), math.cos(yaw_rad)])


@dataclass
class _Room:
    """What a room layout collects: the mesh, obstacle boxes and focus points."""

    builder: MeshBuilder = field(default_factory=MeshBuilder)
    obstacles: list[tuple[float, ...]] = field(default_factory=list)
    focus: list[tuple[float, float, float]] = field(default_factory=list)

    def box(self, centre_xy, base_z: float, size, yaw_rad: float, material: Material) -> None:
        """A box that is also an obstacle."""
        self.builder.box(tuple(float(c) for c in centre_xy), float(base_z), tuple(float(s) for s in size),
                         float(yaw_rad), material)
        self.obstacle(centre_xy, base_z, size, yaw_rad)

    def obstacle(self, centre_xy, base_z: float, size, yaw_rad: float = 0.0) -> None:
        """Record the bounding box of a (length, width, height) volume turned by yaw_rad about z."""
        cos, sin = abs(math.cos(yaw_rad)), abs(math.sin(yaw_rad))
        half_x, half_y = 0.5 * (cos * size[0] + sin * size[1]), 0.5 * (sin * size[0] + cos * size[1])
        self.obstacles.append((centre_xy[0] - half_x, centre_xy[1] - half_y, base_z,
                               centre_xy[0] + half_x, centre_xy[1] + half_y, base_z + size[2]))


def room(rng: np.random.Generator, config: SceneConfig, clutter: float = 1.0) -> Layout:
    """A furnished room; `clutter` scales how many small objects cover its surfaces."""
    width, depth, height = uniform(rng, config.room_size_m), uniform(rng, config.room_size_m), rng.uniform(2.4, 3.4)
    half = np.array([width / 2, depth / 2])
    scene = _Room()
    wall = Material(tint(rng, pick(rng, PLASTER), 0.08), tint(rng, pick(rng, PLASTER), 0.08), Pattern.NOISE,
                    float(rng.uniform(0.5, 3.0)), casts_shadow=False)
    wall = with_photo(rng, wall, Role.PRINT, rng.uniform(1.0, 3.0), 0.15, gain=(0.35, 0.6))   # wallpaper
    ceiling = Material(shade(rng, (0.75, 0.75, 0.72), 0.15), shade(rng, (0.65, 0.65, 0.63), 0.15), Pattern.NOISE,
                       2.0, casts_shadow=False)
    builder = scene.builder
    builder.box((0.0, 0.0), height, (width + 0.4, depth + 0.4, 0.2), 0.0, ceiling)
    builder.box((0.0, 0.0), -0.2, (width + 0.4, depth + 0.4, 0.2), 0.0, replace(_floor(rng), casts_shadow=False))
    skirting = replace(wood(rng), casts_shadow=False)
    for axis in range(2):
        for side in (-1.0, 1.0):
            centre = np.zeros(2)
            centre[axis] = side * (half[axis] + 0.1)
            span = 2 * half[1 - axis] + 0.4
            size = (0.2, span, height) if axis == 0 else (span, 0.2, height)
            builder.box(tuple(centre), 0.0, size, 0.0, wall)
            inner = centre - side * 0.11 * np.eye(2)[axis]
            builder.box(tuple(inner), 0.0, (0.02, span - 0.4, 0.08) if axis == 0 else (span - 0.4, 0.02, 0.08),
                        0.0, skirting)

    # the flight loop: an ellipse around the middle, clear of the furniture along the walls
    margin = _WALL_DEPTH_M + _ROOM_CLEARANCE_M + 0.2
    semi = np.maximum(half - margin, 0.3)
    perimeter = 2 * math.pi * math.sqrt(0.5 * (semi[0] ** 2 + semi[1] ** 2))
    angles = np.arange(0.0, config.path_length_m + _LOOP_STEP_M, _LOOP_STEP_M) / perimeter * 2 * math.pi
    loop = np.stack([semi[0] * np.cos(angles), semi[1] * np.sin(angles)], -1)
    path = FlightPath(loop, 0.2, (0.8, height - 0.5), clearance_m=_ROOM_CLEARANCE_M)

    lamp = rng.uniform(0.15, 0.4)
    scene.box((0.0, 0.0), height - 0.08, (2 * lamp, 2 * lamp, 0.08), 0.0,
              Material((0.95, 0.93, 0.88), (0.85, 0.85, 0.85), Pattern.NOISE, 0.2, casts_shadow=False))
    for axis in range(2):
        for side in (-1.0, 1.0):
            _furnish_wall(scene, rng, half, height, axis, side, path, clutter)
    _furnish_middle(scene, rng, semi, path, clutter)
    obstacles = np.asarray(scene.obstacles, np.float64).reshape(-1, 6)
    interior = Interior((-half[0], -half[1], 0.0), (half[0], half[1], height), obstacles,
                        np.asarray(scene.focus, np.float64).reshape(-1, 3))
    return builder, path, interior


def _furnish_wall(scene: _Room, rng: np.random.Generator, half: np.ndarray, height: float, axis: int,
                  side: float, path: FlightPath, clutter: float) -> None:
    """Pieces of furniture side by side along one wall, at most _WALL_DEPTH_M deep, with pictures above."""
    along_axis = 1 - axis
    facing = np.zeros(2)
    facing[axis] = -side                            # from the wall into the room
    yaw = 0.0 if axis == 1 else math.pi / 2         # a piece's length runs along the wall
    span = half[along_axis] - 0.05
    position = -span + rng.uniform(0.0, 0.8)
    while position < span - 0.4:
        length = min(rng.uniform(0.5, 2.2), span - position)
        kind = pick(rng, ["shelf", "cabinet", "sofa", "desk", "plant", "door", "shelf", "cabinet"])
        depth = {"shelf": (0.25, 0.45), "sofa": (0.55, 0.6), "desk": (0.5, 0.6)}.get(kind, (0.35, _WALL_DEPTH_M))
        depth = uniform(rng, depth)
        centre = np.zeros(2)
        centre[along_axis] = position + length / 2
        centre[axis] = side * (half[axis] - depth / 2 - 0.01)
        if kind == "shelf":
            _shelf(scene, rng, centre, (length, depth, rng.uniform(0.8, min(2.2, height - 0.3))), yaw, facing,
                   clutter)
        elif kind == "cabinet":
            top = rng.uniform(0.45, 1.1)
            scene.box(centre, 0.0, (length, depth, top), yaw, wood(rng, float(rng.uniform(0.1, 0.4))))
            _clutter_on(scene, rng, centre, (length, depth), top, yaw, path, clutter)
        elif kind == "sofa":
            _sofa(scene, rng, centre, (length, depth), yaw, facing)
        elif kind == "desk":
            _table(scene, rng, centre, (length, depth), rng.uniform(0.7, 0.78), yaw, path, clutter)
        elif kind == "plant":
            _plant(scene, rng, centre, min(length, depth) / 2)
        if kind == "door":
            centre[axis] = side * (half[axis] - 0.02)
            door = wood(rng, float(rng.uniform(0.1, 0.3)))
            scene.builder.box(tuple(centre), 0.0, (0.9, 0.04, 2.05) if axis == 1 else (0.04, 0.9, 2.05), 0.0, door)
        elif rng.random() < 0.5:
            wall_point = centre.copy()
            wall_point[axis] = side * half[axis]
            _picture(scene.builder, rng, wall_point, axis, -side, height, 1.3)
        position += length + rng.uniform(0.05, 0.6)


def _picture(builder: MeshBuilder, rng: np.random.Generator, wall_point: np.ndarray, axis: int, inward: float,
             height: float, lowest_m: float) -> None:
    """A thin framed print flat on the wall through wall_point whose normal is world axis `axis` (its front
    towards inward = +1 or -1 along it), at least lowest_m above the floor."""
    width, tall = rng.uniform(0.3, 1.2), rng.uniform(0.3, 0.9)
    bottom = rng.uniform(lowest_m, max(lowest_m + 0.05, height - tall - 0.2))
    centre = wall_point.copy()
    centre[axis] += inward * 0.025
    size = (width, 0.03, tall) if axis == 1 else (0.03, width, tall)
    builder.box(tuple(centre), bottom, size, 0.0, print_surface(rng, float(max(width, tall))))


def _shelf(scene: _Room, rng: np.random.Generator, centre: np.ndarray, size, yaw: float, facing: np.ndarray,
           clutter: float) -> None:
    """A bookcase: back, sides, boards and rows of books on each board."""
    length, depth, tall = size
    board = wood(rng, float(rng.uniform(0.1, 0.3)))
    along, _ = _axes(yaw)
    builder = scene.builder
    builder.box(tuple(centre - facing * (depth / 2 - 0.01)), 0.0, (length, 0.02, tall), yaw, board)
    for end in (-1, 1):
        builder.box(tuple(centre + end * along * (length / 2 - 0.01)), 0.0, (0.02, depth, tall), yaw, board)
    levels = np.arange(0.0, tall - 0.15, rng.uniform(0.3, 0.45))
    for level in [*levels, tall - 0.02]:
        builder.box(tuple(centre), float(level), (length, depth, 0.02), yaw, board)
    scene.obstacle(centre, 0.0, (length, depth, tall), yaw)
    for level in levels:
        x = -length / 2 + 0.03
        while x < length / 2 - 0.1:
            if rng.random() < 0.7 * min(1.0, clutter):
                thickness = rng.uniform(0.02, 0.06)
                book = (thickness, depth * rng.uniform(0.6, 0.9), rng.uniform(0.15, 0.28))
                builder.box(tuple(centre + along * (x + thickness / 2)), float(level) + 0.02, book, yaw,
                            print_surface(rng, float(rng.uniform(0.1, 0.4))))
                x += thickness + 0.002
            else:
                x += rng.uniform(0.05, 0.3)
        scene.focus.append((*(centre + along * rng.uniform(-0.3, 0.3) * length), float(level) + 0.14))


def _table(scene: _Room, rng: np.random.Generator, centre: np.ndarray, size, top: float, yaw: float,
           path: FlightPath, clutter: float) -> None:
    """A table top on four legs, with things on it."""
    length, depth = size
    material = wood(rng, float(rng.uniform(0.08, 0.3)))
    if rng.random() < 0.3:
        material = with_photo(rng, material, Role.SURFACE, rng.uniform(0.5, 1.5))
    scene.box(centre, top - 0.04, (length, depth, 0.04), yaw, material)
    along, across = _axes(yaw)
    leg = rng.uniform(0.04, 0.08)
    for sx in (-1, 1):
        for sy in (-1, 1):
            foot = centre + sx * along * (length / 2 - leg) + sy * across * (depth / 2 - leg)
            scene.box(foot, 0.0, (leg, leg, top - 0.04), yaw, material)
    _clutter_on(scene, rng, centre, size, top, yaw, path, clutter)


def _clutter_on(scene: _Room, rng: np.random.Generator, centre: np.ndarray, size, top: float, yaw: float,
                path: FlightPath, clutter: float) -> None:
    """Small objects (boxes, books, cups, bottles, balls, fruit, lamps) standing on a surface at `top`; those
    that would reach into the flight corridor are left out."""
    along, across = _axes(yaw)
    for _ in range(int(rng.poisson(clutter * size[0] * size[1] * 10.0))):
        xy = centre + along * rng.uniform(-0.42, 0.42) * size[0] + across * rng.uniform(-0.38, 0.38) * size[1]
        kind = pick(rng, ["box", "book", "cup", "bottle", "ball", "fruit", "lamp", "screen"])
        radius = {"cup": rng.uniform(0.03, 0.06), "bottle": rng.uniform(0.03, 0.05), "lamp": rng.uniform(0.1, 0.2),
                  "ball": rng.uniform(0.05, 0.12), "fruit": rng.uniform(0.03, 0.06)}.get(kind, 0.0)
        tall = {"box": rng.uniform(0.05, 0.3), "book": rng.uniform(0.02, 0.06), "cup": rng.uniform(0.07, 0.12),
                "bottle": rng.uniform(0.18, 0.35), "lamp": rng.uniform(0.3, 0.55),
                "screen": rng.uniform(0.3, 0.5)}.get(kind, 2.0 * radius)
        extent = (rng.uniform(0.35, 0.7), 0.03) if kind == "screen" else \
            (rng.uniform(0.08, 0.35), rng.uniform(0.06, 0.25))
        footprint = radius or 0.5 * math.hypot(*extent)
        if not path.clear_of(xy[None], np.array([footprint]), np.array([top + tall]))[0]:
            continue
        if kind in ("box", "book"):
            scene.box(xy, top, (*extent, tall), yaw + rng.normal(0.0, 0.4),
                      print_surface(rng, float(rng.uniform(0.1, 0.4))))
        elif kind == "screen":
            turn = yaw + rng.normal(0.0, 0.3)
            frame = Material(shade(rng, (0.04, 0.04, 0.045)), (0.02, 0.02, 0.02), Pattern.NOISE, 0.1)
            scene.box(xy, top, (0.2, 0.15, 0.02), turn, frame)
            scene.box(xy, top, (0.04, 0.02, 0.12), turn, frame)
            scene.box(xy, top + 0.1, (extent[0], 0.03, tall - 0.1), turn, print_surface(rng, float(extent[0])))
        elif kind in ("cup", "bottle"):
            colour = tint(rng, pick(rng, PAINT + GLASS + PLASTER))
            scene.builder.cylinder(tuple(xy), top, radius, tall,
                                   Material(colour, tint(rng, colour, 0.3), Pattern.NOISE, 0.05))
        elif kind in ("ball", "fruit"):
            material = print_surface(rng, float(rng.uniform(0.1, 0.3))) if kind == "fruit" else \
                mottled(rng, PAINT, 0.3, 0.05)
            scene.builder.ellipsoid((xy[0], xy[1], top + radius), (radius,) * 3, material)
        else:
            metal = mottled(rng, PAINT + GLASS, 0.2, 0.1)
            scene.builder.cylinder(tuple(xy), top, 0.07, 0.03, metal)
            scene.builder.cylinder(tuple(xy), top, 0.012, tall - 0.1, metal)
            scene.builder.cylinder(tuple(xy), top + tall - 0.2, radius, 0.2, mottled(rng, PLASTER + PAINT, 0.1, 0.1))
        if radius:
            scene.obstacle(xy, top, (2 * radius, 2 * radius, tall))
        scene.focus.append((float(xy[0]), float(xy[1]), float(top + 0.5 * tall)))


def _sofa(scene: _Room, rng: np.random.Generator, centre: np.ndarray, size, yaw: float,
          facing: np.ndarray) -> None:
    """Seat, back rest against the wall and two arms, in one fabric; cushions on the seat."""
    length, depth = size
    cover = fabric(rng)
    seat = rng.uniform(0.38, 0.48)
    along, _ = _axes(yaw)
    scene.box(centre, 0.0, (length, depth, seat), yaw, cover)
    scene.box(centre - facing * (depth / 2 - 0.1), 0.0, (length, 0.2, seat + rng.uniform(0.3, 0.45)), yaw, cover)
    for end in (-1, 1):
        scene.box(centre + end * along * (length / 2 - 0.08), 0.0, (0.16, depth, seat + 0.2), yaw, cover)
    for _ in range(int(rng.integers(0, 3))):
        cushion = centre + along * rng.uniform(-0.3, 0.3) * length
        scene.box(cushion, seat, (0.4, 0.15, 0.35), yaw + rng.normal(0.0, 0.2), fabric(rng))
        scene.focus.append((float(cushion[0]), float(cushion[1]), seat + 0.2))


def _plant(scene: _Room, rng: np.random.Generator, centre: np.ndarray, radius: float) -> None:
    """A pot with a stem and clusters of leaves, all within `radius` of its centre."""
    pot_radius, pot_height = min(0.8 * radius, rng.uniform(0.12, 0.25)), rng.uniform(0.2, 0.45)
    scene.builder.cylinder(tuple(centre), 0.0, pot_radius, pot_height, mottled(rng, PAINT + PLASTER, 0.2, 0.1))
    tall = rng.uniform(0.3, 1.4)
    scene.builder.cylinder(tuple(centre), pot_height, 0.015, tall * 0.8, mottled(rng, FOLIAGE, 0.3, 0.1))
    for _ in range(int(rng.integers(5, 14))):
        leaf = rng.uniform(0.06, 0.2)
        offset = np.clip(rng.normal(0.0, 0.4, 2) * radius, -(radius - leaf), radius - leaf)
        z = pot_height + rng.uniform(0.2, 1.0) * tall
        scene.builder.ellipsoid((centre[0] + offset[0], centre[1] + offset[1], z), (leaf, leaf * 0.6, leaf * 0.4),
                                foliage(rng))
    scene.obstacle(centre, 0.0, (2 * radius, 2 * radius, pot_height + tall + 0.1))
    scene.focus.append((float(centre[0]), float(centre[1]), pot_height + 0.5 * tall))


def _furnish_middle(scene: _Room, rng: np.random.Generator, semi: np.ndarray, path: FlightPath,
                    clutter: float) -> None:
    """A rug, a dining table with chairs inside the flight loop (a low coffee table where it does not fit),
    and things on the floor."""
    rug = replace(fabric(rng), casts_shadow=False)
    scene.builder.box((0.0, 0.0), 0.0, (semi[0] * rng.uniform(1.0, 2.2), semi[1] * rng.uniform(1.0, 2.2), 0.01),
                      0.0, rug)
    yaw = float(rng.uniform(-0.3, 0.3))
    inside = float(min(semi)) - path.halfwidth_m - path.clearance_m      # radius of the circle inside the loop
    length, depth = rng.uniform(0.8, 2.0), rng.uniform(0.6, 1.1)
    fit = min(1.0, 2.0 * (inside - 0.05) / math.hypot(length, depth))
    if fit * depth > 0.5:
        _table(scene, rng, np.zeros(2), (fit * length, fit * depth), rng.uniform(0.72, 0.78), yaw, path, clutter)
        for side in (-1, 1):
            seat = _axes(yaw)[1] * side * (fit * depth / 2 + 0.25)
            if np.linalg.norm(seat) + 0.35 < inside:
                _chair(scene, rng, seat, yaw + (math.pi if side > 0 else 0.0))
    else:
        top = min(0.45, path.altitude_m[0] - path.clearance_m - 0.05)
        _table(scene, rng, np.zeros(2), (rng.uniform(0.6, 1.2), rng.uniform(0.4, 0.7)), top, yaw, path, clutter)
    for _ in range(int(rng.poisson(2.0 * clutter))):
        xy = rng.uniform(-1.0, 1.0, 2) * (semi + 0.3)
        extent = rng.uniform(0.1, 0.4, 3)
        if path.clear_of(xy[None], np.array([0.5 * math.hypot(*extent[:2])]), np.array([extent[2]]))[0]:
            scene.box(xy, 0.0, extent, rng.uniform(0, math.pi), print_surface(rng, float(rng.uniform(0.2, 0.6))))
            scene.focus.append((float(xy[0]), float(xy[1]), float(extent[2] / 2)))


def _chair(scene: _Room, rng: np.random.Generator, centre: np.ndarray, yaw: float) -> None:
    """Four legs, a seat and a back rest on the side facing away from the table."""
    material = wood(rng, 0.1) if rng.random() < 0.6 else mottled(rng, PAINT, 0.2, 0.1)
    seat, size = rng.uniform(0.42, 0.48), rng.uniform(0.38, 0.46)
    along, across = _axes(yaw)
    for sx in (-1, 1):
        for sy in (-1, 1):
            scene.box(centre + (sx * along + sy * across) * (size / 2 - 0.03), 0.0, (0.04, 0.04, seat), yaw, material)
    scene.box(centre, seat, (size, size, 0.04), yaw, material)
    scene.box(centre - across * (size / 2 - 0.02), seat, (size, 0.04, rng.uniform(0.35, 0.5)), yaw, material)
