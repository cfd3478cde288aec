"""A synthetic drone flight: camera poses through a procedural scene plus the sensors a drone carries.

The sensors (sensors.py, `flight_sensors`) follow the same trajectory the camera flies, sampled finely so
that derivatives are smooth. Everything is deterministic per seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xlstm_ros.sim.scenes import Camera, Scene, SceneConfig, flight_cameras
from xlstm_ros.sim.sensors import Fault, SensorSeries, flight_sensors

_FINE_HZ = 100.0


@dataclass
class DroneFlight:
    scene: Scene
    cameras: list[Camera]          # one per camera frame, at i / fps
    fps: float
    sensors: dict[str, SensorSeries] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return (len(self.cameras) - 1) / self.fps


def scene_of_kind(kind: str) -> SceneConfig:
    """The default scene ranges restricted to one scene kind (one of scenes.KINDS)."""
    return SceneConfig(kinds=(kind,), kind_weights=(1.0,))


def simulate_flight(seed: int, duration_s: float, fps: float, config: SceneConfig = SceneConfig(),
                    inject_faults: bool = True) -> DroneFlight:
    """The flight of `seed`: the scene, camera poses at `fps` and sensor samples (see the module docstring)."""
    if not duration_s > 0 or not fps > 0:
        raise ValueError(f"duration_s and fps must be positive, got {duration_s} and {fps}")
    scene = Scene.random(seed, config)
    n_frames = int(round(duration_s * fps)) + 1
    cameras = flight_cameras(scene, _rng(seed, "flight"), n_frames, fps, config)
    # The same trajectory sampled at _FINE_HZ: same random draws, same duration, finer steps.
    step = int(round(_FINE_HZ / fps))
    fine = flight_cameras(scene, _rng(seed, "flight"), (n_frames - 1) * step + 1, fps * step, config)
    t = np.arange(len(fine)) / (fps * step)
    position = np.array([c.position_m for c in fine])
    sensors, faults = flight_sensors(t, position, duration_s, _rng(seed, "sensors"), inject_faults)
    return DroneFlight(scene, cameras, fps, sensors, faults)


def _rng(seed: int, purpose: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *purpose.encode()]))
