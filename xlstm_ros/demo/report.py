"""What the demo flight produced, read back from its bag: numbers, pictures and an animation.

  depth       frames published / processed / dropped, camera-to-depth latency percentiles (receive time in
              the bag minus the frame's stamp), AbsRel and delta1 against the rendered ground truth after the
              relative-depth alignment (eval/depth.py)
  forecasts   per channel: forecasts published, mean absolute error of the median against the values that
              arrived later, the same for the naive last-value forecast, and how often the actual value
              fell inside the 10-90 % band
  anomalies   events per channel, how many fell into the injected fault windows (precision) and how many
              faults were flagged (recall)
  pictures    depth.png (frame | predicted | true depth), forecasts.png (fan charts with the actual values),
              flight.gif (frame | predicted depth over the flight)
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from xlstm_ros.engines.depth_outputs import colorize
from xlstm_ros.engines.plots import fan_chart_grid
from xlstm_ros.engines.resample import GridResampler
from xlstm_ros.eval.anomalies import score_events
from xlstm_ros.graph.bags import read_messages
from xlstm_ros.metrics import relative_depth_metrics
from xlstm_ros.models.depth import METRIC, RELATIVE
from xlstm_ros.nodes.image_conv import image_to_numpy
from xlstm_ros.sim.flight import DroneFlight

SENSOR_TOPICS = {"battery_voltage": ("/battery_state", lambda m: m.voltage),
                 "accel_z": ("/imu", lambda m: m.linear_acceleration.z),
                 "baro_altitude": ("/altitude", lambda m: m.point.z),
                 "motor_temperature": ("/motor_temperature", lambda m: m.temperature)}
DEPTH_CAP_M = 80.0


def stamp_ns(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _percentiles(values) -> dict[str, float]:
    if not len(values):
        return {}
    return {f"p{p}": round(float(v), 1) for p, v in zip((50, 90, 99), np.percentile(values, [50, 90, 99]))}


class FlightRecord:
    """The messages of one demo bag, sorted by topic."""

    def __init__(self, bag: str | Path):
        self.frames, self.truth, self.depth = {}, {}, {}
        self.depth_received_ns: dict[int, int] = {}
        self.forecasts: dict[str, list] = defaultdict(list)
        self.anomalies: list = []
        self.sensors: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.diagnostics: dict[str, dict[str, str]] = {}  # node name -> its last status values
        by_topic = {topic: channel for channel, (topic, _) in SENSOR_TOPICS.items()}
        for topic, received_ns, msg in read_messages(bag):
            if topic == "/camera/image_raw":
                self.frames[stamp_ns(msg)] = msg
            elif topic == "/camera/depth_gt":
                self.truth[stamp_ns(msg)] = msg
            elif topic == "/depth":
                self.depth[stamp_ns(msg)] = msg
                self.depth_received_ns[stamp_ns(msg)] = received_ns
            elif topic.startswith("/forecast/"):
                self.forecasts[msg.channel].append(msg)
            elif topic == "/anomalies":
                self.anomalies.append(msg)
            elif topic == "/diagnostics":
                for status in msg.status:
                    self.diagnostics[status.name.split(":")[0]] = {kv.key: kv.value for kv in status.values}
            elif topic in by_topic:
                channel = by_topic[topic]
                self.sensors[channel].append((stamp_ns(msg) * 1e-9, float(SENSOR_TOPICS[channel][1](msg))))


def depth_summary(record: FlightRecord, frames_published: int, kind: str = RELATIVE) -> dict:
    """Frame counts from the depth node's own diagnostics (the bag may miss best-effort messages),
    latency and accuracy from the depth maps in the bag."""
    counts = record.diagnostics.get("depth_node", {})
    latencies = [(record.depth_received_ns[s] - s) * 1e-6 for s in record.depth]
    scores = []
    for stamp, msg in sorted(record.depth.items()):
        if stamp not in record.truth:
            continue
        truth = image_to_numpy(record.truth[stamp]).astype(np.float64)
        mask = np.isfinite(truth) & (truth > 0) & (truth <= DEPTH_CAP_M)
        prediction = image_to_numpy(msg).astype(np.float64)
        if kind == METRIC:
            prediction = 1.0 / np.maximum(prediction, 1e-6)
        if mask.sum() >= 2 and np.isfinite(prediction).all():
            scores.append(relative_depth_metrics(prediction, np.where(mask, 1.0 / np.where(mask, truth, 1), 0),
                                                 mask, 1.0 / DEPTH_CAP_M))
    return {"frames_published": frames_published,
            "frames_received": int(counts.get("counts.frames_received", 0)),
            "frames_processed": int(counts.get("counts.frames_processed", 0)),
            "frames_superseded": int(counts.get("drops.superseded", 0)),
            "depth_maps_recorded": len(record.depth), "latency_ms": _percentiles(latencies),
            "abs_rel": round(float(np.mean([s["abs_rel"] for s in scores])), 4) if scores else None,
            "delta1": round(float(np.mean([s["delta1"] for s in scores])), 4) if scores else None,
            "frames_scored": len(scores)}


def grid_series(samples: list[tuple[float, float]], period_s: float) -> dict[int, float]:
    """{slot: value} of a channel's samples on the forecast grid (the node's own resampling rule)."""
    grid = GridResampler(period_s, lateness_s=0.0)
    for stamp, value in sorted(samples):
        grid.push(stamp, value)
    if samples:
        grid.push(samples[-1][0] + 10 * period_s, np.nan)  # a stamp past the end completes the last slots
    return {segment.first_slot + j: v for segment in grid.drain() for j, v in enumerate(segment.values)
            if np.isfinite(v)}


def forecast_scores(forecasts: list, actual: dict[int, float]) -> dict:
    """Median error, naive error and 10-90 % band coverage of forecasts against later actual values."""
    errors, naive_errors, inside, lead_errors = [], [], [], defaultdict(list)
    for msg in forecasts:
        period = msg.period_s
        last_slot = int(round(stamp_ns(msg) * 1e-9 / period))
        quantiles = np.asarray(msg.quantiles, dtype=np.float64).reshape(msg.horizon, -1)
        levels = list(np.round(msg.quantile_levels, 3))
        low, high = levels.index(0.1) if 0.1 in levels else 0, levels.index(0.9) if 0.9 in levels else -1
        for step in range(1, msg.horizon + 1):
            slot = last_slot + step
            if slot not in actual or not np.isfinite(msg.last_value):
                continue
            value = actual[slot]
            errors.append(abs(msg.median[step - 1] - value))
            naive_errors.append(abs(msg.last_value - value))
            inside.append(quantiles[step - 1, low] <= value <= quantiles[step - 1, high])
            lead_errors[step].append(errors[-1])
    if not errors:
        return {"forecasts": len(forecasts), "scored_steps": 0}
    mae, naive = float(np.mean(errors)), float(np.mean(naive_errors))
    return {"forecasts": len(forecasts), "scored_steps": len(errors), "mae_median": round(mae, 4),
            "mae_naive_last_value": round(naive, 4), "relative_to_naive": round(mae / naive, 3) if naive else None,
            "coverage_10_90": round(float(np.mean(inside)), 3)}


def anomaly_summary(record: FlightRecord, flight: DroneFlight, start_s: float) -> dict:
    """Anomaly events against the injected faults (eval/anomalies.py): per channel events, events in a fault
    window (fault start - 0.5 s to end + 2 s), faults flagged; precision and recall.

    The flight's fault channels carry the forecaster channel names of config/drone.yaml."""
    return score_events(((a.channel, stamp_ns(a) * 1e-9) for a in record.anomalies), flight.faults, start_s=start_s)


def depth_picture(record: FlightRecord, path: Path, kind: str, rows: int = 3) -> Path | None:
    stamps = [s for s in sorted(record.depth) if s in record.truth and s in record.frames]
    if not stamps:
        return None
    panels = []
    for stamp in [stamps[int(i)] for i in np.linspace(0, len(stamps) - 1, min(rows, len(stamps)))]:
        frame = image_to_numpy(record.frames[stamp])[:, :, ::-1]
        predicted = colorize(image_to_numpy(record.depth[stamp]), kind)
        truth = colorize(image_to_numpy(record.truth[stamp]), METRIC)
        panels.append(np.concatenate([frame, predicted, truth], axis=1))
    picture = np.concatenate(panels, axis=0)
    cv2.imwrite(str(path), picture)
    return path


def flight_animation(record: FlightRecord, path: Path, kind: str, max_frames: int = 80) -> Path | None:
    from PIL import Image

    stamps = [s for s in sorted(record.depth) if s in record.frames]
    if not stamps:
        return None
    chosen = [stamps[int(i)] for i in np.linspace(0, len(stamps) - 1, min(max_frames, len(stamps)))]
    frames = [Image.fromarray(np.concatenate([image_to_numpy(record.frames[s]),
                                              colorize(image_to_numpy(record.depth[s]), kind)[:, :, ::-1]], axis=1))
              for s in chosen]
    spacing_s = max((chosen[-1] - chosen[0]) * 1e-9 / max(len(chosen) - 1, 1), 0.05)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(spacing_s * 1000), loop=0)
    return path


def forecast_picture(record: FlightRecord, path: Path, units: dict[str, str]) -> Path | None:
    panels = []
    for channel, forecasts in sorted(record.forecasts.items()):
        samples = sorted(record.sensors.get(channel, []))
        if not samples:
            continue
        msg = forecasts[int(len(forecasts) * 0.6)]  # a forecast well into the flight, with actuals after it
        t0 = samples[0][0]
        origin = stamp_ns(msg) * 1e-9
        times = np.array([t for t, _ in samples]) - t0
        values = np.array([v for _, v in samples])
        quantiles = np.asarray(msg.quantiles).reshape(msg.horizon, -1)
        horizon_x = origin - t0 + msg.period_s * np.arange(1, msg.horizon + 1)
        before, after = times <= origin - t0, (times > origin - t0) & (times <= horizon_x[-1])
        panels.append(dict(history_x=times[before], history=values[before], forecast_x=horizon_x,
                           quantiles=quantiles, levels=list(np.round(msg.quantile_levels, 3)),
                           actual_x=times[after], actual=values[after], title=f"{channel} (t in s)",
                           unit=units.get(channel, "")))
    return fan_chart_grid(path, panels) if panels else None


def write_report(bag: str | Path, flight: DroneFlight, start_s: float, out_dir: str | Path,
                 kind: str = RELATIVE, period_s: float = 0.1) -> dict:
    """Analyse the bag, write summary.json and the pictures into out_dir; returns the summary."""
    out_dir = Path(out_dir)
    record = FlightRecord(bag)
    units = {name: msgs[0].unit for name, msgs in record.forecasts.items() if msgs}
    summary = {
        "depth": depth_summary(record, len(flight.cameras), kind),
        "forecasts": {channel: forecast_scores(msgs, grid_series(record.sensors.get(channel, []), period_s))
                      for channel, msgs in sorted(record.forecasts.items())},
        "anomalies": anomaly_summary(record, flight, start_s),
        "faults": [{"channel": f.channel, "start_s": round(f.start_s, 1), "end_s": round(f.end_s, 1)}
                   for f in flight.faults],
        "outputs": {},
    }
    for name, made in (("depth_picture", depth_picture(record, out_dir / "depth.png", kind)),
                       ("forecast_picture", forecast_picture(record, out_dir / "forecasts.png", units)),
                       ("animation", flight_animation(record, out_dir / "flight.gif", kind))):
        if made is not None:
            summary["outputs"][name] = str(made)
    summary["outputs"]["bag"] = str(bag)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def format_summary(summary: dict) -> str:
    """A short human-readable table of the summary."""
    depth = summary["depth"]
    lines = [f"depth: {depth['frames_processed']} of {depth['frames_published']} frames processed "
             f"({depth['frames_received']} received, {depth['frames_superseded']} superseded by newer ones), "
             f"latency ms {depth['latency_ms']}",
             f"depth vs ground truth (scale/shift aligned, {depth['frames_scored']} frames): "
             f"AbsRel {depth['abs_rel']}, delta1 {depth['delta1']}"]
    for channel, score in summary["forecasts"].items():
        if score.get("scored_steps"):
            lines.append(f"forecast {channel:18s} {score['forecasts']:3d} forecasts, MAE {score['mae_median']} "
                         f"(naive {score['mae_naive_last_value']}, ratio {score['relative_to_naive']}), "
                         f"10-90% coverage {score['coverage_10_90']}")
        else:
            lines.append(f"forecast {channel:18s} {score['forecasts']:3d} forecasts (none scored yet)")
    faults = ", ".join(f"{f['channel']} at {f['start_s']} s" for f in summary["faults"]) or "none"
    scored = summary["anomalies"]
    anomalies = ", ".join(f"{c}: {a['events']} ({a['in_fault']} in fault windows)"
                          for c, a in scored["channels"].items() if a["events"]) or "none"
    lines += [f"injected faults: {faults}", f"anomaly events: {anomalies}",
              f"anomalies: precision {scored['precision']} (events in fault windows), recall {scored['recall']} "
              f"({scored['flagged']} of {scored['faults']} faults flagged)"]
    lines += [f"{name}: {path}" for name, path in summary["outputs"].items()]
    return "\n".join(lines)
