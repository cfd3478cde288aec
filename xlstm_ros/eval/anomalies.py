"""Anomaly events on simulated drone flights with injected faults, without ROS: precision, recall, forecast error.

Each flight (sim/flight.py) carries four sensors and two faults at known times (a battery voltage dip, a
motor temperature jump). Every sensor goes through what the forecaster node does with it: the period grid
(GridResampler), one StreamingForecaster stream, a forecast every 1 / forecast_rate_hz seconds and an
AnomalyDetector that checks each new grid value against the channel's latest forecast. An event counts as
true when it lies in a fault window of its channel (from half a second before the fault's start, its onset
ramp, to `slack_s` after its end).
Reported per channel and overall: events, events in fault windows, precision, faults flagged (recall), and
the forecasts' median absolute error next to the last-value naive forecast's over the same steps.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from xlstm_ros.engines.anomalies import AnomalyDetector, AnomalyEvent, AnomalyRule, ForecastBand
from xlstm_ros.engines.forecaster import StreamingForecaster
from xlstm_ros.engines.resample import GridResampler
from xlstm_ros.models.tirex import TiRex
from xlstm_ros.sim.flight import DroneFlight, simulate_flight
from xlstm_ros.sim.sensors import Fault

FLIGHT_FPS = 5.0  # camera rate of the demo flight (the sensors do not depend on it)


def replay_flight(model: TiRex, flight: DroneFlight, *, period_s: float, horizon: int, forecast_rate_hz: float,
                  rule: AnomalyRule, reanchor_every: int = 16) -> tuple[list[AnomalyEvent], dict[str, list]]:
    """Run every sensor of `flight` through grid, engine and detector as the node does.

    Returns the events and, per channel, (median (H,), actual grid values (H,), last value) of every forecast."""
    engine = StreamingForecaster(model, reanchor_every=reanchor_every)
    channels = list(flight.sensors)
    grids = {name: GridResampler(period_s) for name in channels}
    detectors = {name: AnomalyDetector(name, period_s, rule) for name in channels}
    slots: dict[str, dict[int, float]] = defaultdict(dict)
    origin: dict[str, int] = {}
    last: dict[str, float] = {}
    pending: dict[str, list] = defaultdict(list)   # forecasts waiting for their actual values
    forecasts: dict[str, list] = defaultdict(list)
    events: list[AnomalyEvent] = []
    cursor = {name: 0 for name in channels}
    tick_s = 1.0 / forecast_rate_hz
    for now in np.arange(tick_s, flight.duration_s + tick_s, tick_s):
        for name in channels:
            series = flight.sensors[name]
            while cursor[name] < len(series.times_s) and series.times_s[cursor[name]] <= now:
                grids[name].push(float(series.times_s[cursor[name]]), float(series.values[cursor[name]]))
                cursor[name] += 1
            for segment in grids[name].drain():
                origin.setdefault(name, segment.first_slot)
                events += detectors[name].check(segment.first_slot, segment.values)
                engine.observe(name, segment.values)
                for offset, value in enumerate(segment.values):
                    slots[name][segment.first_slot + offset] = float(value)
                finite = segment.values[np.isfinite(segment.values)]
                if finite.size:
                    last[name] = float(finite[-1])
        ready = [name for name in channels if name in origin]
        for name, result in engine.forecast(ready, horizon).items():
            if result is None:
                continue
            made_at = origin[name] + result.first_sample - 1
            detectors[name].band = ForecastBand(made_at, np.sort(result.quantiles, axis=1), result.quantile_levels)
            pending[name].append((made_at, result.median.astype(np.float64), last.get(name, np.nan)))
    for name, made in pending.items():
        for made_at, median, last_value in made:
            actual = np.array([slots[name].get(made_at + 1 + k, np.nan) for k in range(horizon)])
            if np.isfinite(actual).any():
                forecasts[name].append((median, actual, last_value))
    return events, forecasts


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def score_events(events: Iterable[tuple[str, float]], faults: Iterable[Fault], *, start_s: float = 0.0,
                 slack_s: float = 2.0, lead_s: float = 0.5) -> dict:
    """Per channel and overall: events, events in a fault window of their channel, faults, faults flagged by
    at least one event, precision and recall. `events` are (channel, time in s); a fault's window runs from
    start_s + its start - lead_s (the fault's onset ramp and the grid slot's rounding) to start_s + its end +
    slack_s."""
    events, faults = list(events), list(faults)
    channels: dict[str, dict[str, int]] = defaultdict(lambda: dict(events=0, in_fault=0, faults=0, flagged=0))
    windows = defaultdict(list)
    for fault in faults:
        window = (start_s + fault.start_s - lead_s, start_s + fault.end_s + slack_s)
        windows[fault.channel].append(window)
        channels[fault.channel]["faults"] += 1
        channels[fault.channel]["flagged"] += any(c == fault.channel and window[0] <= t <= window[1]
                                                  for c, t in events)
    for channel, time_s in events:
        channels[channel]["events"] += 1
        channels[channel]["in_fault"] += any(lo <= time_s <= hi for lo, hi in windows[channel])
    total = {key: sum(c[key] for c in channels.values()) for key in ("events", "in_fault", "faults", "flagged")}
    return {"channels": {name: dict(counts) for name, counts in sorted(channels.items())},
            "precision": _ratio(total["in_fault"], total["events"]),
            "recall": _ratio(total["flagged"], total["faults"]), **total}


def flight_anomalies(model: TiRex, seeds: Sequence[int] = (7, 8, 9, 10), *, duration_s: float = 60.0,
                     period_s: float = 0.1, horizon: int = 64, forecast_rate_hz: float = 1.0,
                     rule: AnomalyRule = AnomalyRule(), reanchor_every: int = 16, slack_s: float = 2.0) -> dict:
    """Precision and recall of the anomaly events, and the forecast error, over the flights of `seeds`."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    errors: dict[str, list] = defaultdict(list)
    for seed in seeds:
        flight = simulate_flight(seed, duration_s, FLIGHT_FPS)
        events, forecasts = replay_flight(model, flight, period_s=period_s, horizon=horizon,
                                          forecast_rate_hz=forecast_rate_hz, rule=rule, reanchor_every=reanchor_every)
        scored = score_events(((e.channel, e.stamp_s) for e in events), flight.faults, slack_s=slack_s)
        for name, channel_counts in scored["channels"].items():
            for key, value in channel_counts.items():
                counts[name][key] += value
        for name, made in forecasts.items():
            for median, actual, last_value in made:
                seen = np.isfinite(actual)
                errors[name].append((np.abs(median[seen] - actual[seen]).mean(),
                                     np.abs(last_value - actual[seen]).mean()))
    channels = {}
    for name in sorted(set(counts) | set(errors)):
        model_error, naive_error = np.mean(errors[name], axis=0) if errors[name] else (np.nan, np.nan)
        channels[name] = {**{key: counts[name][key] for key in ("events", "in_fault", "faults", "flagged")},
                          "mae_median": round(float(model_error), 4), "mae_naive": round(float(naive_error), 4),
                          "relative_to_naive": _ratio(float(model_error), float(naive_error))}
    total = {key: sum(c[key] for c in channels.values()) for key in ("events", "in_fault", "faults", "flagged")}
    return {"seeds": list(seeds), "duration_s": duration_s, "rule": dataclasses.asdict(rule), "channels": channels,
            "precision": _ratio(total["in_fault"], total["events"]), "recall": _ratio(total["flagged"], total["faults"]),
            **total}
