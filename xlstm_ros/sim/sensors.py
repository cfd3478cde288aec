"""Sensor physics of a drone or robot in physical units, for the forecaster's training mix and the demo flight.

* Series regimes `Battery`, `Temperature`, `Imu`, `BaroAltitude`: generators `gen(rng, n, length)` of many
  varied series, sample-indexed, for pre-training.
* `flight_sensors`: the four sensors of one simulated flight (flight.py), time-indexed, with the two faults
  the demo's anomaly events are checked against.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xlstm_ros.sim.signals import integers_between, log_uniform, lowpass, piecewise_constant, seasonal_waves, \
    smooth_curve, uniform


def battery_open_circuit_voltage(state_of_charge: np.ndarray) -> np.ndarray:
    """LiPo cell open-circuit voltage [V] for a state of charge in [0, 1] (4.2 V full, knee near empty)."""
    s = np.clip(state_of_charge, 0.0, 1.0)
    return 3.5 + 0.55 * s + 0.15 * s ** 4 - 0.25 * np.exp(-s / 0.06)


@dataclass(frozen=True)
class Battery:
    """Pack voltage [V] of a 3-6 cell LiPo discharging under a varying load.

    The load is piecewise constant in C-rate (idle, hover, climb); the state of charge falls with the charge
    drawn (`discharge` of the capacity over the series); the terminal voltage is the open-circuit voltage
    minus an ohmic sag and a first-order RC polarisation that recovers slowly after load drops.
    """

    cells: tuple[int, ...] = (3, 4, 6)
    load_c_rate: tuple[float, float] = (0.05, 4.0)
    load_segments: tuple[int, int] = (1, 12)
    discharge: tuple[float, float] = (0.1, 0.7)
    ohmic_v_per_c: tuple[float, float] = (0.005, 0.03)
    polarisation_v_per_c: tuple[float, float] = (0.005, 0.03)
    polarisation_samples: tuple[float, float] = (5.0, 100.0)
    noise_v: tuple[float, float] = (0.002, 0.02)

    def __call__(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        segment, most = piecewise_constant(rng, n, length, self.load_segments)
        levels = log_uniform(rng, self.load_c_rate, (n, most))
        c_rate = np.take_along_axis(levels, segment, axis=1)
        c_rate = c_rate * np.exp(0.05 * rng.standard_normal((n, length)))  # throttle jitter
        drawn = np.cumsum(c_rate, axis=1) / c_rate.sum(axis=1, keepdims=True)
        discharge = uniform(rng, self.discharge, n)
        start = rng.uniform(discharge + 0.02, 1.0)
        soc = start[:, None] - discharge[:, None] * drawn
        alpha = np.exp(-1.0 / uniform(rng, self.polarisation_samples, n))
        polarisation = lowpass(c_rate * uniform(rng, self.polarisation_v_per_c, n)[:, None], alpha)
        cell = battery_open_circuit_voltage(soc) - c_rate * uniform(rng, self.ohmic_v_per_c, n)[:, None]
        cell -= polarisation
        cells = rng.choice(np.asarray(self.cells, dtype=np.float64), n)
        noise = uniform(rng, self.noise_v, n)[:, None] * rng.standard_normal((n, length))
        return cells[:, None] * cell + noise


@dataclass(frozen=True)
class Temperature:
    """Temperature [deg C] of a component: ambient drift plus heating episodes through a first-order thermal
    response (time constant in samples), with sensor noise and optional quantisation."""

    ambient_c: tuple[float, float] = (-10.0, 35.0)
    drift_c: tuple[float, float] = (0.0, 4.0)
    heating_episodes: tuple[int, int] = (0, 4)
    episode_share: tuple[float, float] = (0.05, 0.3)
    heater_gain_c: tuple[float, float] = (3.0, 40.0)
    time_constant_samples: tuple[float, float] = (20.0, 400.0)
    noise_c: tuple[float, float] = (0.01, 0.2)
    quantisation_c: tuple[float, ...] = (0.0, 0.0625, 0.1)

    def __call__(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        t = np.arange(length)
        ambient = uniform(rng, self.ambient_c, n)[:, None] + uniform(rng, self.drift_c, n)[:, None] * (
            0.5 * smooth_curve(rng, n, length, 6) + rng.uniform(-1, 1, n)[:, None] * t / length)
        power = np.zeros((n, length))
        count = integers_between(rng, self.heating_episodes, n)
        for episode in range(self.heating_episodes[1]):
            duration = uniform(rng, self.episode_share, n) * length
            start = rng.uniform(0, length, n)
            on = (t[None, :] >= start[:, None]) & (t[None, :] < (start + duration)[:, None])
            power += on * (episode < count)[:, None] * rng.uniform(0.5, 1.0, n)[:, None]
        power = np.minimum(power, 1.0)
        target = ambient + uniform(rng, self.heater_gain_c, n)[:, None] * power
        alpha = np.exp(-1.0 / uniform(rng, self.time_constant_samples, n))
        temperature = lowpass(target, alpha, initial=ambient[:, 0])
        temperature += uniform(rng, self.noise_c, n)[:, None] * rng.standard_normal((n, length))
        step = rng.choice(np.asarray(self.quantisation_c), n)[:, None]
        return np.where(step > 0, np.round(temperature / np.where(step > 0, step, 1.0)) * step, temperature)


@dataclass(frozen=True)
class Imu:
    """One accelerometer axis [m/s^2]: gravity offset, slow body motion, rotor vibration at a period of a
    few samples (fundamental plus harmonics, rpm wandering by `rpm_jitter`), bias random walk, white noise."""

    gravity_share: float = 0.5
    motion_amplitude: tuple[float, float] = (0.05, 2.0)
    motion_period: tuple[float, float] = (50.0, 600.0)
    vibration_amplitude: tuple[float, float] = (0.1, 3.0)
    vibration_period: tuple[float, float] = (2.2, 12.0)
    vibration_harmonics: int = 3
    rpm_jitter: tuple[float, float] = (0.0, 0.05)
    bias_walk: tuple[float, float] = (0.0, 0.005)
    noise: tuple[float, float] = (0.01, 0.3)

    def __call__(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        offset = np.where(rng.random(n) < self.gravity_share, 9.81, 0.0)[:, None]
        motion_period = log_uniform(rng, self.motion_period, (n, 2))
        motion = seasonal_waves(rng, motion_period, uniform(rng, self.motion_amplitude, (n, 2)), length, 1,
                                (1.0, 1.0))
        frequency = 1.0 / log_uniform(rng, self.vibration_period, n)
        wander = 1.0 + uniform(rng, self.rpm_jitter, n)[:, None] * smooth_curve(rng, n, length, 8)
        phase = 2 * np.pi * np.cumsum(frequency[:, None] * wander, axis=1)
        amplitude = uniform(rng, self.vibration_amplitude, n)[:, None]
        vibration = np.zeros((n, length))
        for h in range(1, self.vibration_harmonics + 1):
            weight = amplitude * rng.uniform(0.1, 0.6, n)[:, None] ** (h - 1)
            vibration += weight * np.sin(h * phase + rng.uniform(0, 2 * np.pi, n)[:, None])
        bias = np.cumsum(uniform(rng, self.bias_walk, n)[:, None] * rng.standard_normal((n, length)), axis=1)
        noise = uniform(rng, self.noise, n)[:, None] * rng.standard_normal((n, length))
        return offset + motion + vibration + bias + noise


@dataclass(frozen=True)
class BaroAltitude:
    """Barometric altitude [m] of a flight: segments of hover, climb and descent (vertical speed per sample),
    landing stops at the ground, a first-order vehicle/sensor lag, weather drift and baro noise."""

    segments: tuple[int, int] = (2, 12)
    hover_share: float = 0.4
    climb_m_per_sample: tuple[float, float] = (0.005, 0.2)
    descent_m_per_sample: tuple[float, float] = (0.005, 0.2)
    lag_samples: tuple[float, float] = (1.0, 20.0)
    drift_m: tuple[float, float] = (0.0, 2.0)
    noise_m: tuple[float, float] = (0.05, 0.5)

    def __call__(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        segment, most = piecewise_constant(rng, n, length, self.segments)
        mode = rng.random((n, most))
        climb = log_uniform(rng, self.climb_m_per_sample, (n, most))
        descent = -log_uniform(rng, self.descent_m_per_sample, (n, most))
        moving_share = (1.0 - self.hover_share) / 2
        speed = np.where(mode < self.hover_share, 0.0, np.where(mode < self.hover_share + moving_share,
                                                                climb, descent))
        climb_rate = np.take_along_axis(speed, segment, axis=1)
        start = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.0, 100.0, n))
        path = start[:, None] + np.cumsum(climb_rate, axis=1)
        altitude = path - np.minimum(0.0, np.minimum.accumulate(path, axis=1))  # landed: stays on the ground
        alpha = np.exp(-1.0 / uniform(rng, self.lag_samples, n))
        altitude = lowpass(altitude, alpha)
        drift = uniform(rng, self.drift_m, n)[:, None] * smooth_curve(rng, n, length, 5)
        return altitude + drift + uniform(rng, self.noise_m, n)[:, None] * rng.standard_normal((n, length))


# ---------------------------------------------------------------------------------------------------------
# The sensors of one flight (time in seconds)

GRAVITY = 9.80665
SENSOR_RATES_HZ = {"altitude": 20.0, "accel_z": 100.0, "battery_voltage": 10.0, "motor_temperature": 5.0}


@dataclass(frozen=True)
class SensorSeries:
    """Samples of one sensor: times in seconds from the start of the flight and values."""

    times_s: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Fault:
    """An injected sensor fault: its channel and when it is active (s from the start of the flight)."""

    channel: str
    start_s: float
    end_s: float


def flight_sensors(t: np.ndarray, position: np.ndarray, duration_s: float, rng: np.random.Generator,
                   inject_faults: bool = True) -> tuple[dict[str, SensorSeries], list[Fault]]:
    """The sensor samples of a trajectory `position` [len(t), 3] (m) sampled finely at times `t` (s).

      altitude           barometric altitude (m): true height, slow baro drift and noise, 20 Hz
      accel_z            vertical specific force (m/s^2): g + vertical acceleration + rotor vibration, 100 Hz
      battery_voltage    4S LiPo (V): open-circuit voltage of the state of charge minus sag I * R under the
                         electrical load of hovering, climbing and speed, 10 Hz
      motor_temperature  (deg C): first-order heating by I^2 and cooling towards the ambient, 5 Hz
    With `inject_faults` (and a flight of at least 20 s), two faults at known times: a battery voltage dip
    (a weak cell under load) and a motor temperature jump (a blocked propeller).
    """
    dt = t[1] - t[0]
    velocity = np.gradient(position, t, axis=0)
    vertical_acceleration = np.gradient(velocity[:, 2], t)
    speed = np.linalg.norm(velocity[:, :2], axis=1)
    current_a = 14.0 + 6.0 * np.clip(velocity[:, 2], 0, None) + 0.08 * speed ** 2 + rng.normal(0, 0.4, len(t))
    charge_used_ah = np.cumsum(current_a) * dt / 3600.0
    state_of_charge = 0.95 - charge_used_ah / 5.0           # a 5 Ah pack
    open_circuit_v = 4 * (3.3 + 0.9 * state_of_charge - 0.25 * np.exp(-12 * state_of_charge))
    voltage = open_circuit_v - 0.025 * current_a
    temperature = np.empty(len(t))
    temperature[0] = 24.0 + rng.uniform(-2, 2)
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
    return sensors, faults


def _window(t: np.ndarray, start: float, end: float, ramp_s: float = 0.3) -> np.ndarray:
    """1 inside [start, end], 0 outside, with short linear ramps."""
    return np.clip(np.minimum((t - start) / ramp_s + 1.0, (end - t) / ramp_s + 1.0), 0.0, 1.0)
