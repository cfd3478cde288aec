"""Anomaly evaluation on simulated flights: event scoring by hand, and the replay of a flight through grid,
engine and detector."""
from __future__ import annotations

import numpy as np
import pytest

from support_tirex import random_tirex, single_thread  # noqa: F401 (autouse fixture: one torch thread)
from xlstm_ros.engines.anomalies import AnomalyRule
from xlstm_ros.eval.anomalies import flight_anomalies, replay_flight, score_events
from xlstm_ros.models.tirex import TiRexConfig
from xlstm_ros.sim.flight import simulate_flight
from xlstm_ros.sim.sensors import Fault

TINY = TiRexConfig(embedding_dim=32, num_blocks=1, num_heads=4, input_ff_dim=32, train_ctx_len=256)


def test_events_are_scored_against_the_fault_windows_of_their_channel():
    faults = [Fault("battery", 10.0, 13.0), Fault("motor", 40.0, 60.0), Fault("battery", 50.0, 51.0)]
    events = [("battery", 100.0 + 12.0), ("battery", 100.0 + 14.5), ("battery", 100.0 + 16.0),   # in, in (slack), out
              ("motor", 100.0 + 12.0), ("imu", 100.0 + 41.0), ("motor", 100.0 + 39.6)]       # out, out, in (lead)
    scored = score_events(events, faults, start_s=100.0, slack_s=2.0)
    assert scored["channels"]["battery"] == {"events": 3, "in_fault": 2, "faults": 2, "flagged": 1}
    assert scored["channels"]["motor"] == {"events": 2, "in_fault": 1, "faults": 1, "flagged": 1}
    assert scored["channels"]["imu"] == {"events": 1, "in_fault": 0, "faults": 0, "flagged": 0}
    assert (scored["events"], scored["in_fault"], scored["faults"], scored["flagged"]) == (6, 3, 3, 2)
    assert scored["precision"] == 0.5 and scored["recall"] == pytest.approx(0.6667)
    assert score_events([], [])["precision"] is None


@pytest.fixture(scope="module")
def model():
    return random_tirex(TINY, seed=1, precision="fp32", backend="torch")


def test_a_replayed_flight_forecasts_every_channel_and_checks_each_new_value(model):
    flight = simulate_flight(3, 30.0, 5.0)
    every = AnomalyRule(margin=0.0, consecutive=1, calibration_window=0)
    events, forecasts = replay_flight(model, flight, period_s=0.1, horizon=20, forecast_rate_hz=1.0, rule=every)
    assert set(forecasts) == set(flight.sensors)
    for made in forecasts.values():
        assert 25 <= len(made) <= 30
        median, actual, last = made[0]
        assert median.shape == actual.shape == (20,) and np.isfinite(last)
    assert events and {e.channel for e in events} <= set(flight.sensors)
    assert all(e.steps_ahead >= 1 for e in events)
    never = AnomalyRule(margin=0.0, consecutive=10_000, calibration_window=0)
    assert replay_flight(model, flight, period_s=0.1, horizon=20, forecast_rate_hz=1.0, rule=never)[0] == []


def test_flight_anomalies_sums_the_flights(model):
    result = flight_anomalies(model, seeds=(3, 4), duration_s=30.0, horizon=20)
    assert result["faults"] == 4 and set(result["channels"]) == {"altitude", "accel_z", "battery_voltage",
                                                                   "motor_temperature"}
    assert result["events"] == sum(c["events"] for c in result["channels"].values())
    assert 0 <= result["flagged"] <= 4 and result["rule"] == {"margin": 0.5, "consecutive": 3,
                                                             "calibration_window": 600}
    assert all(c["mae_naive"] > 0 for c in result["channels"].values())
