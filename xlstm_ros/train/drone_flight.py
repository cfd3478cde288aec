"""A synthetic drone flight: camera poses through a procedural scene plus the sensors a drone carries.

The sensors follow the same trajectory the camera flies (sampled finely, so derivatives are smooth):
  altitude           barometric altitude (m): true height, slow baro drift and noise, 20 Hz
  accel_z            vertical specific force (m/s^2): g + vertical acceleration + rotor vibration, 100 Hz
  battery_voltage    4S LiPo (V): open-circuit voltage of the state of charge minus sag I * R under the
                     electrical load of hovering, climbing and speed, 10 Hz
  motor_temperature  (deg C): first-order heating by I^2 and cooling towards the ambient, 5 Hz
Two faults are injected at known times so the forecaster's anomaly events can be checked: a battery
voltage dip (a weak cell under load) and a motor temperature jump (a blocked propeller).
Everything is deterministic per seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xlstm_ros.train.scenes import Camera, Scene, SceneConfig, flight_cameras

GRAVITY = 9.80665
SENSOR_RATES_HZ = {"altitude": 20.0, "accel_z": 100.0, "battery_voltage": 10.0, "motor_temperature": 5.0}
_FINE_HZ = 100.0


@dataclass(frozen=True)
class SensorSeries:
    """Samples of one sensor: times in seconds from the start of the flight and values."""

    times_s: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Fault:
    channel: str
    start_s: float
    end_s: float


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
    """The default scene ranges restricted to one scene kind (street, field or corridor)."""
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
    rng = _rng(seed, "sensors")

    velocity = np.gradient(position, t, axis=0)
    vertical_acceleration = np.gradient(velocity[:, 2], t)
    speed = np.linalg.norm(velocity[:, :2], axis=1)
    current_a = 14.0 + 6.0 * np.clip(velocity[:, 2], 0, None) + 0.08 * speed ** 2 + rng.normal(0, 0.4, len(t))
    charge_used_ah = np.cumsum(current_a) / (fps * step) / 3600.0
    state_of_charge = 0.95 - charge_used_ah / 5.0           # a 5 Ah pack
    open_circuit_v = 4 * (3.3 + 0.9 * state_of_charge - 0.25 * np.exp(-12 * state_of_charge))
    voltage = open_circuit_v - 0.025 * current_a
    temperature = np.empty(len(t))
    temperature[0] = 24.0 + rng.uniform(-2, 2)
    dt = 1.0 / (fps * step)
    for k in range(1, len(t)):  # dT = (heating - cooling) dt, heating ~ I^2
        temperature[k] = temperature[k - 1] + dt * (0.0012 * current_a[k] ** 2 - 0.02 * (temperature[k - 1] - 24.0))

    faults = []
    if inject_faults and duration_s >= 20:
        dip = Fault("battery_voltage", 0.55 * duration_s, 0.55 * duration_s + 3.0)
        jump = Fault("motor_temperature", 0.8 * duration_s, duration_s)
        voltage -= 0.9 * _window(t, dip.start_s, dip.end_s)
        temperature += 9.0 * np.clip((t - jump.start_s) / 2.0, 0.0, 1.0)
        faults = [dip, jump]

    vibration = sum(a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
                    for a, f in ((0.35, 11.0), (0.2, 23.0), (0.1, 37.0)))
    truths = {
        "altitude": position[:, 2],
        "accel_z": GRAVITY + vertical_acceleration + vibration,
        "battery_voltage": voltage,
        "motor_temperature": temperature,
    }
    noise = {"altitude": 0.08, "accel_z": 0.25, "battery_voltage": 0.012, "motor_temperature": 0.15}
    sensors = {}
    for name, rate in SENSOR_RATES_HZ.items():
        times = np.arange(0.0, t[-1] + 1e-9, 1.0 / rate)
        values = np.interp(times, t, truths[name]) + rng.normal(0.0, noise[name], len(times))
        if name == "altitude":
            values += np.cumsum(rng.normal(0.0, 0.004, len(times)))  # baro drift
        sensors[name] = SensorSeries(times, values)
    return DroneFlight(scene, cameras, fps, sensors, faults)


def _window(t: np.ndarray, start: float, end: float, ramp_s: float = 0.3) -> np.ndarray:
    """1 inside [start, end], 0 outside, with short linear ramps."""
    return np.clip(np.minimum((t - start) / ramp_s + 1.0, (end - t) / ramp_s + 1.0), 0.0, 1.0)


def _rng(seed: int, purpose: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *purpose.encode()]))
