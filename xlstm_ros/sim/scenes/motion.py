"""Camera placement inside a scene's collision-free flight corridor: single random views and smooth flights."""
from __future__ import annotations

import math

import numpy as np

from .camera import Camera
from .config import SceneConfig
from .layout import Scene

_END_MARGIN_M = 5.0


def random_camera(scene: Scene, rng: np.random.Generator, config: SceneConfig = SceneConfig()) -> Camera:
    """A random drone view: anywhere in the corridor, low altitudes favoured, looking around and down."""
    path = scene.path
    xy, heading = path.at(rng.uniform(_END_MARGIN_M, path.length_m - _END_MARGIN_M))
    lateral = rng.uniform(-path.halfwidth_m, path.halfwidth_m)
    x, y = xy + lateral * np.array([-math.sin(heading), math.cos(heading)])
    low, high = path.altitude_m
    altitude = math.exp(rng.uniform(math.log(low), math.log(high)))
    if scene.kind == "field":
        yaw = rng.uniform(-math.pi, math.pi)
    else:  # along the street or hallway, either way, with a look to the sides
        yaw = heading + (math.pi if rng.random() < 0.5 else 0.0) + rng.normal(0.0, math.radians(30.0))
    return Camera((float(x), float(y), altitude), float(yaw),
                  math.radians(rng.uniform(*config.pitch_deg)), float(rng.normal(0.0, math.radians(3.0))),
                  float(rng.uniform(*config.fov_deg)))


def flight_cameras(scene: Scene, rng: np.random.Generator, n_frames: int, fps: float,
                   config: SceneConfig = SceneConfig()) -> list[Camera]:
    """Cameras at t = i / fps along a smooth flight: constant speed along the path (slowed down when the
    path is too short for the flight), slow weaving, altitude and pitch changes, yaw that follows the path
    and roll that leans into the weaving."""
    if n_frames < 1 or not fps > 0:
        raise ValueError(f"flight needs n_frames >= 1 and fps > 0, got n_frames={n_frames}, fps={fps}")
    path = scene.path
    duration_s = (n_frames - 1) / fps
    usable_m = path.length_m - 2 * _END_MARGIN_M
    speed = min(rng.uniform(*config.speed_m_s), usable_m / max(duration_s, 1e-9))
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
    yaw = heading + wave(math.radians(rng.uniform(0.0, 20.0)), (5.0, 12.0))[0]
    pitch = np.radians(np.clip(rng.uniform(*config.pitch_deg) + wave(5.0, (4.0, 10.0))[0], -89.0, 89.0))
    roll = np.clip(np.arctan(-weave_acceleration / 9.81), -0.5, 0.5)
    fov = float(rng.uniform(*config.fov_deg))
    return [Camera((float(p[0]), float(p[1]), float(base + h)), float(a), float(b), float(c), fov)
            for p, h, a, b, c in zip(positions, climb, yaw, pitch, roll)]
