"""Bounded soak: the demo graph at full rate for about ten minutes; memory must stay flat, nothing unexplained.

    python -m bench.soak [--duration-s 600] [--fps 15] [--out bench/results/soak.json]

drone_sim_node flies in real time (camera at --fps, battery 10 Hz, IMU 100 Hz, altitude 20 Hz, motor
temperature 5 Hz) into depth_node and forecaster_node started with config/drone.yaml, exactly as the demo
does, each in its own process on a reserved ROS_DOMAIN_ID with LOCALHOST discovery. The soak flies
consecutive flights of --flight-s (a new simulator process each, so publishers also disappear and come
back, with a few seconds of silence in between) until --duration-s is flown. Every --sample-s
seconds the soak reads each node's resident memory (/proc/<pid>/status VmRSS) and its report through
~/get_status (per-stream state bytes, sample and frame accounting). The models are the shipped defaults
(xlstm_ros/weights) when both exist, else small random-weight checkpoints written for the run; the JSON says
which. Written JSON (besides the command and the time series):
  duration_s, models, rss_start_mb / rss_end_mb / rss_max_mb (both nodes together, first and last sample),
  rss_growth_after_warmup_mb (mean of the last fifth minus the mean of the second fifth),
  state_bytes_per_stream_{start,end,max,second_half_min_max} (the largest stream's saved state: it grows
  until the stream's ring holds a full model window, about 208 s at 0.1 s, and then must not change),
  samples_sent (by the simulator), samples_received,
  samples_in_state, samples_waiting, samples_dropped_by_reason, unexplained_losses (samples sent but
  neither received nor counted lost, plus received samples the node cannot account for, plus frames the
  depth node cannot account for), frames_sent, frames_received, frames_processed, frames_dropped,
  frames_dropped_by_reason, frames_not_delivered (sent but never received: best-effort video),
  crashes (node processes that died or exited with an error).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from xlstm_ros.engines.depth import DEFAULT_CHECKPOINT as DEFAULT_DEPTH
from xlstm_ros.engines.forecaster import DEFAULT_CHECKPOINT as DEFAULT_TIREX
from xlstm_ros.graph.drone import default_config, drone_graph
from xlstm_ros.graph.processes import ros_arguments

SIM_TO_CHANNEL = {"battery_voltage": "battery_voltage", "accel_z": "accel_z", "altitude": "baro_altitude",
                  "motor_temperature": "motor_temperature"}
NODES = ("depth_node", "forecaster_node")


def random_checkpoints(directory: Path) -> dict[str, Path]:
    """Small seeded random-weight models (real architectures, real checkpoint files) for when no shipped
    defaults exist."""
    from xlstm_ros.models.depth import DepthConfig, DepthModel, save_depth_checkpoint
    from xlstm_ros.models.tirex import TiRex, TiRexConfig, save_tirex_checkpoint
    from xlstm_ros.models.vil import vil_config

    torch.manual_seed(0)
    depth = DepthModel(DepthConfig(backbone=vil_config("vil_micro"), neck_channels=(8, 16, 32, 64), features=16,
                                   input_short_side=64))
    tirex = TiRex(TiRexConfig(embedding_dim=128, num_blocks=2, num_heads=4, input_ff_dim=256))
    return {"depth_node": save_depth_checkpoint(depth, directory / "vil_micro_random.pt"),
            "forecaster_node": save_tirex_checkpoint(tirex, directory / "TiRex" / "model.ckpt")}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def read_reports(graph, timeout_s: float = 30.0) -> dict[str, dict]:
    """The nodes' ~/get_status reports; a node that does not answer in time is left out."""
    reports = {}
    for name in NODES:
        try:
            reports[name] = graph.status(name).get(timeout_s)
        except TimeoutError:
            pass
    return reports


def run_soak(duration_s: float, fps: float, sample_s: float, out: Path, work: Path, flight_s: float = 120.0,
             seed: int = 7) -> dict:
    from xlstm_ros.graph.running import running
    from xlstm_ros.sim.flight import scene_of_kind, simulate_flight

    work.mkdir(parents=True, exist_ok=True)
    shipped = DEFAULT_DEPTH.is_file() and DEFAULT_TIREX.is_file()
    checkpoints = ({"depth_node": DEFAULT_DEPTH, "forecaster_node": DEFAULT_TIREX} if shipped
                   else random_checkpoints(work / "checkpoints"))
    flights = [min(flight_s, duration_s - start) for start in np.arange(0.0, duration_s, flight_s)]
    samples_sent, frames_sent = {channel: 0 for channel in SIM_TO_CHANNEL.values()}, 0
    for index, length in enumerate(flights):
        flight = simulate_flight(seed + index, length, fps, scene_of_kind("street"))
        frames_sent += len(flight.cameras)
        for name, series_ in flight.sensors.items():
            samples_sent[SIM_TO_CHANNEL[name]] += len(series_.times_s)
    series, crashes = [], []
    nodes = drone_graph(default_config(), parameters={name: {"checkpoint": str(path)}
                                                      for name, path in checkpoints.items()})
    with running(work / "logs", nodes=nodes, client_name="soak_monitor") as graph:
        sim = None
        try:
            graph.wait_until_up(NODES, 180)
            started = time.monotonic()
            print(f"[soak] {len(flights)} flight(s), {duration_s:.0f} s at {fps:g} fps; sampling every {sample_s:g} s",
                  flush=True)
            for index, length in enumerate(flights):  # one simulator process per flight: publishers come and go
                sim = graph.start("drone_sim_node", ros_arguments(parameters={
                    "seed": seed + index, "duration_s": float(length), "fps": float(fps), "scene_kind": "street"}),
                    expect_exit=True)
                while sim.running and not graph.crashed():
                    series.append(_sample(graph, time.monotonic() - started))
                    _report_progress(series[-1])
                    time.sleep(max(sample_s - (time.monotonic() - started - series[-1]["t_s"]), 0.0))
                sim_code = sim.stop()
                if sim_code != 0:
                    crashes.append({"process": "drone_sim_node", "exit_code": sim_code,
                                    "log_tail": sim.output()[-1500:]})
            time.sleep(3.0)  # the last samples and frames on their way
            final = read_reports(graph)
            series.append(_sample(graph, time.monotonic() - started, final))
        finally:
            if sim is not None:
                sim.stop()
            for name, process in graph.nodes.items():  # stopped here, so that a crash is counted, not raised
                was_running = process.running
                code = process.stop(timeout_s=30)
                if not was_running or code != 0:
                    crashes.append({"process": name, "exit_code": code, "log_tail": process.output()[-1500:]})
    result = summarize(series, final, samples_sent, frames_sent, duration_s, crashes)
    result.update({"command": " ".join(["python -m bench.soak", *sys.argv[1:]]), "fps": fps, "flights": len(flights),
                   "models": "shipped defaults" if shipped else "small random-weight checkpoints (no shipped "
                             "defaults in xlstm_ros/weights)",
                   "checkpoints": {name: str(path) for name, path in checkpoints.items()}, "series": series})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def _sample(graph, t_s: float, reports: dict | None = None) -> dict:
    reports = read_reports(graph) if reports is None else reports
    rss = {name: round(rss_mb(process.process.pid), 1) for name, process in graph.nodes.items() if process.running}
    forecaster, depth = reports.get("forecaster_node", {}), reports.get("depth_node", {})
    per_stream = [entry["state_bytes"] for entry in forecaster.get("channels", {}).values()]
    return {"t_s": round(t_s, 1), "rss_mb": rss, "rss_total_mb": round(sum(rss.values()), 1),
            "state_bytes_per_stream": max(per_stream, default=0), "samples": forecaster.get("samples", {}),
            "frames": depth.get("frames", {})}


def _report_progress(sample: dict) -> None:
    print(f"[soak] t={sample['t_s']:6.0f} s  rss {sample['rss_mb']}  "
          f"state/stream {sample['state_bytes_per_stream']} B  samples {sample['samples']}  "
          f"frames {sample['frames']}", flush=True)


def summarize(series: list[dict], final: dict, samples_sent: dict[str, int], frames_sent: int, duration_s: float,
              crashes: list) -> dict:
    forecaster, depth = final.get("forecaster_node", {}), final.get("depth_node", {})
    channels = forecaster.get("channels", {})
    received = {name: entry["received"] for name, entry in channels.items()}
    dropped_by_reason: dict[str, int] = {}
    for entry in channels.values():
        for reason, count in entry["dropped"].items():
            dropped_by_reason[reason] = dropped_by_reason.get(reason, 0) + count
    dds_lost = sum(topic["dds_lost"] for topic in forecaster.get("topics", {}).values())
    never_received = sum(max(sent - received.get(name, 0), 0) for name, sent in samples_sent.items())
    samples = forecaster.get("samples", {})
    frames = depth.get("frames", {})
    frame_drops = {reason: count for reason, count in depth.get("drops", {}).items() if reason != "dds_lost"}
    frames_unexplained = frames.get("received", 0) - frames.get("processed", 0) - sum(frame_drops.values()) \
        - frames.get("pending", 0)
    rss = [sample["rss_total_mb"] for sample in series]
    fifth = max(len(rss) // 5, 1)
    state = [sample["state_bytes_per_stream"] for sample in series]
    return {
        "duration_s": duration_s,
        "samples_taken": len(series),
        "rss_start_mb": rss[0], "rss_end_mb": rss[-1], "rss_max_mb": max(rss),
        "rss_by_node_end_mb": series[-1]["rss_mb"],
        "rss_growth_after_warmup_mb": round(statistics.mean(rss[-fifth:]) - statistics.mean(rss[fifth:2 * fifth]), 1)
        if len(rss) >= 5 else None,
        "state_bytes_per_stream_start": state[0], "state_bytes_per_stream_end": state[-1],
        "state_bytes_per_stream_max": max(state),
        "state_bytes_per_stream_second_half_min_max": [min(state[len(state) // 2:]), max(state[len(state) // 2:])],
        "samples_sent": sum(samples_sent.values()),
        "samples_received": samples.get("received", 0),
        "samples_in_state": samples.get("in_state", 0),
        "samples_waiting": samples.get("waiting", 0),
        "samples_dropped_by_reason": {**dropped_by_reason, **({"dds_lost_messages": dds_lost} if dds_lost else {})},
        "unexplained_losses": max(never_received - dds_lost, 0) + samples.get("unexplained", 0) + frames_unexplained,
        "frames_sent": frames_sent,
        "frames_received": frames.get("received", 0),
        "frames_processed": frames.get("processed", 0),
        "frames_dropped": sum(frame_drops.values()),
        "frames_dropped_by_reason": frame_drops,
        "frames_not_delivered": frames_sent - frames.get("received", 0),
        "frames_dds_lost": depth.get("drops", {}).get("dds_lost", 0),
        "depth_latency_ms": depth.get("latency_ms", {}),
        "forecast_latency_ms": forecaster.get("latency_ms", {}),
        "crashes": len(crashes),
        "crash_details": crashes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--fps", type=float, default=15.0, help="camera frame rate of the simulated drone")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between memory/status samples")
    parser.add_argument("--flight-s", type=float, default=120.0,
                        help="the soak flies several flights of this length, one simulator process each")
    parser.add_argument("--out", type=Path, default=Path("bench/results/soak.json"))
    parser.add_argument("--work", type=Path, default=Path("out/soak"), help="logs and generated checkpoints")
    args = parser.parse_args(argv)
    result = run_soak(args.duration_s, args.fps, args.sample_s, args.out, args.work, args.flight_s)
    summary = {k: v for k, v in result.items() if k not in ("series", "crash_details")}
    print(json.dumps(summary, indent=1))
    flat = result["rss_growth_after_warmup_mb"] is None or result["rss_growth_after_warmup_mb"] < 20
    return 0 if result["crashes"] == 0 and result["unexplained_losses"] == 0 and flat else 1


if __name__ == "__main__":
    sys.exit(main())
