"""Camera placement: single random views (per scene kind) and smooth flights along the scene's flight path."""
from __future__ import annotations

import math

import numpy as np

from .camera import Camera
from .config import SceneConfig
from .layout import Scene

_END_MARGIN_M = 5.0
_ROOM_CLEARANCE_M = 0.35       # no surface nearer a room camera than this
_TRIES = 64
_AIMED_ROOM_VIEWS = 0.8        # the share of room views that look roughly at an object


def random_camera(scene: Scene, rng: np.random.Generator, config: SceneConfig = SceneConfig()) -> Camera:
    """A random view of `scene`: drone views in the flight corridor outdoors (oblique to straight down over
    terrain), handheld-like views anywhere in a room, and close looks at the objects of a closeup scene."""
    roll = math.radians(rng.uniform(*config.roll_deg))
    fov = float(rng.uniform(*config.fov_deg))
    if scene.interior is not None:
        closeup = scene.kind == "closeup" or rng.random() < 0.3
        view = _closeup_view(scene, rng, config) if closeup else None
        position, yaw, pitch = view or _room_view(scene, rng, config)
        return Camera(position, yaw, pitch, roll, fov)
    path = scene.path
    arc = rng.uniform(_END_MARGIN_M, path.length_m - _END_MARGIN_M)
    xy, heading = path.at(arc)
    lateral = rng.uniform(-path.halfwidth_m, path.halfwidth_m)
    x, y = xy + lateral * np.array([-math.sin(heading), math.cos(heading)])
    low, high = path.altitude_m
    altitude = math.exp(rng.uniform(math.log(low), math.log(high)))
    if scene.kind in ("field", "terrain"):
        yaw = rng.uniform(-math.pi, math.pi)
    else:  # along the street or hallway, either way, with a look to the sides
        yaw = heading + (math.pi if rng.random() < 0.5 else 0.0) + rng.normal(0.0, math.radians(30.0))
    pitch_deg = config.aerial_pitch_deg if scene.kind == "terrain" else config.pitch_deg
    return Camera((float(x), float(y), float(path.floor_at(arc)) + altitude), float(yaw),
                  math.radians(rng.uniform(*pitch_deg)), roll, fov)


def _room_view(scene: Scene, rng: np.random.Generator, config: SceneConfig) -> tuple[tuple, float, float]:
    """A free spot in the room at a random height, looking roughly at some object (or, now and then, in any
    direction); when no spot is free, a view from the flight loop."""
    interior = scene.interior
    low, high = np.asarray(interior.low_m), np.asarray(interior.high_m)
    targets = np.concatenate([interior.focus_points, 0.5 * (interior.obstacles[:, :3] + interior.obstacles[:, 3:])])
    aimed = len(targets) > 0 and rng.random() < _AIMED_ROOM_VIEWS
    target = targets[rng.integers(len(targets))] if aimed else None
    yaw, pitch = rng.uniform(-math.pi, math.pi), math.radians(rng.uniform(*config.indoor_pitch_deg))
    for _ in range(_TRIES):
        height = rng.uniform(*config.indoor_height_m)
        spot = np.array([*rng.uniform(low[:2], high[:2]), min(height, high[2] - _ROOM_CLEARANCE_M)])
        if interior.clearance(spot)[0] > _ROOM_CLEARANCE_M:
            if target is not None:
                offset = target - spot
                yaw = math.atan2(offset[1], offset[0]) + rng.normal(0.0, math.radians(20.0))
                pitch = math.atan2(-offset[2], math.hypot(offset[0], offset[1])) + rng.normal(0.0, math.radians(10.0))
            return tuple(float(c) for c in spot), float(yaw), float(pitch)
    xy, heading = scene.path.at(rng.uniform(0.0, scene.path.length_m))
    return (float(xy[0]), float(xy[1]), float(np.mean(scene.path.altitude_m))), float(heading), pitch


def _closeup_view(scene: Scene, rng: np.random.Generator, config: SceneConfig) -> tuple[tuple, float, float] | None:
    """A look at a random focus point from closeup_distance_m away and above, or None when no free spot
    is found."""
    interior = scene.interior
    if not len(interior.focus_points):
        return None
    for _ in range(_TRIES):
        target = interior.focus_points[rng.integers(len(interior.focus_points))]
        yaw = rng.uniform(-math.pi, math.pi)
        pitch = math.radians(rng.uniform(-10.0, 70.0))
        forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), -math.sin(pitch)])
        spot = target - rng.uniform(*config.closeup_distance_m) * forward
        if interior.clearance(spot)[0] > _ROOM_CLEARANCE_M:
            return tuple(float(c) for c in spot), float(yaw), float(pitch)
    return None


def flight_cameras(scene: Scene, rng: np.random.Generator, n_frames: int, fps: float,
                   config: SceneConfig = SceneConfig()) -> list[Camera]:
    """Cameras at t = i / fps along a smooth flight: constant speed along the path (slowed down when the
    path is too short for the flight), slow weaving, altitude and pitch changes, yaw that follows the path
    and roll that leans into the weaving. Altitudes count from the path's floor."""
    if n_frames < 1 or not fps > 0:
        raise ValueError(f"flight needs n_frames >= 1 and fps > 0, got n_frames={n_frames}, fps={fps}")
    path = scene.path
    duration_s = (n_frames - 1) / fps
    usable_m = path.length_m - 2 * _END_MARGIN_M
    speed_range = config.room_speed_m_s if scene.interior is not None else config.speed_m_s
    speed = min(rng.uniform(*speed_range), usable_m / max(duration_s, 1e-9))
    slack = max(usable_m - speed * duration_s, 0.0)  # speed may fill the path exactly (up to rounding)
    start = rng.uniform(_END_MARGIN_M, _END_MARGIN_M + slack)
    direction = 1.0 if rng.random() < 0.5 else -1.0
    t = np.arange(n_frames) / fps
    arc = start + speed * t if direction > 0 else path.length_m - start - speed * t
    xy, heading = path.at(arc)
    heading = heading + (0.0 if direction > 0 else math.pi)

    def wave(amplitude: float, period_range_s: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """amplitude * sin(w t + phase) and its second derivative."""
        omega = 2 * math.pi / rng.uniform(*period_range_s)
        phase = rng.uniform(0.0, 2 * math.pi)
        return amplitude * np.sin(omega * t + phase), -amplitude * omega ** 2 * np.sin(omega * t + phase)

    weave, weave_acceleration = wave(rng.uniform(0.0, 0.9) * path.halfwidth_m, (6.0, 15.0))
    low, high = path.altitude_m
    base = math.exp(rng.uniform(math.log(low), math.log(high)))
    climb, _ = wave(0.5 * min(base - low, high - base), (8.0, 20.0))
    positions = xy + weave[:, None] * np.stack([-np.sin(heading), np.cos(heading)], -1)
    altitude = path.floor_at(arc) + base + climb
    yaw = heading + wave(math.radians(rng.uniform(0.0, 20.0)), (5.0, 12.0))[0]
    pitch_range = config.aerial_pitch_deg if scene.kind == "terrain" else config.pitch_deg
    pitch = np.radians(np.clip(rng.uniform(*pitch_range) + wave(5.0, (4.0, 10.0))[0], -89.0, 89.0))
    roll = np.clip(np.arctan(-weave_acceleration / 9.81), -0.5, 0.5)
    fov = float(rng.uniform(*config.fov_deg))
    return [Camera((float(p[0]), float(p[1]), float(h)), float(a), float(b), float(c), fov)
            for p, h, a, b, c in zip(positions, altitude, yaw, pitch, roll)]
