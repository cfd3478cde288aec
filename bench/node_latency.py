"""End-to-end latency through real node processes: camera -> depth and sensor -> forecast, over DDS.

    python -m bench.node_latency                          # 640x480 frames at 10 Hz, IMU at 100 Hz, ~3 min
    python -m bench.node_latency --smoke --out /tmp/n.json   # tiny models, a few seconds of traffic (CI)

Each node runs in its own process (xlstm_ros.graph.running: its console entry point, a reserved
ROS_DOMAIN_ID, LOCALHOST discovery, the pinned thread count) and this process publishes the inputs and
subscribes to the outputs, so both timestamps come from one clock (time.monotonic).

* depth: 640x480 rgb8 frames at `--camera-hz`; latency = depth map received - frame published, matched by
  header stamp. The node keeps only the newest frame (it drops superseded ones by design), so the frames
  published minus the maps received are reported as drops next to the node's own drop counters.
* forecast: one channel (sensor_msgs/Imu linear_acceleration.z) on a 100 Hz grid. The stream is first
  filled with a full context (2048 samples) as fast as the node takes them, then samples are published in
  real time; latency = forecast received - publication of the newest sample that forecast is conditioned
  on (its header stamp names that sample), so it includes waiting for the sample's grid slot to complete
  (lateness_s = 0: the next sample), for the node's forecast timer (`--forecast-hz`) and the model.
The models are the shipped default checkpoints of this source tree when they exist, else random-weight
models of the default architecture written to a temporary folder (the JSON says which). The node processes
run the INSTALLED package (their console entry points), as in deployment.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from bench.common import (RESULTS_DIR, Record, percentiles, pin_threads, print_child_result, run_child,
                          wait_until_quiet)
from xlstm_ros.graph.processes import ros_arguments

if TYPE_CHECKING:  # rclpy is imported once the session has set this process's Fast DDS profile
    from xlstm_ros.graph.running import RunningGraph

MODULE = "bench.node_latency"
FRAME_SIZE = (480, 640)
SENSOR_PERIOD_S = 0.01
FIRST_STAMP_S = 1_700_000_000  # stamps far from zero, like real clocks
BUILTIN_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <participant profile_name="fastdds_builtin" is_default_profile="true"><rtps/></participant>
</profiles>
"""  # a default participant profile that changes nothing: Fast DDS's built-in transports
TRANSPORTS_HELP = {
    "default": "Fast DDS's built-in transports: shared-memory segments of 512 KiB, so a 640x480 frame (0.9 MB "
               "rgb8, 1.2 MB 32FC1) travels as fragmented UDP, which best-effort sensor QoS loses",
    "large_shm": "the package's Fast DDS profile (config/fastdds_large_shm.xml, what the launch files, the demo "
                 "and play use): a 16 MiB shared-memory segment, so whole frames pass through shared memory"}


def newest_status(messages: list, node_name: str) -> dict[str, str]:
    """Key/values of the newest /diagnostics status whose name starts with `node_name`."""
    for array in reversed(messages):
        for status in array.status:
            if status.name.startswith(node_name):
                return {kv.key: kv.value for kv in status.values}
    return {}


def latency_summary(latencies_s: list[float]) -> dict[str, float]:
    values = [1e3 * value for value in latencies_s]
    out = {f"{key}_ms": round(value, 2) for key, value in percentiles(values, (50, 90, 99)).items()}
    if values:
        out.update(max_ms=round(max(values), 2), mean_ms=round(float(np.mean(values)), 2))
    return out


def stamp_msg(seconds: float):
    from builtin_interfaces.msg import Time

    whole = int(seconds)
    return Time(sec=whole, nanosec=int(round((seconds - whole) * 1e9)) % 1_000_000_000)


# ------------------------------------------------------------------------------------------------ models

def depth_checkpoint(directory: Path, smoke: bool) -> tuple[Path, str]:
    """The shipped default depth model of this source tree, else a random one written here.

    The path is always passed explicitly: the node processes run the installed package, whose copy of the
    weights folder may be older than this tree."""
    from xlstm_ros.engines.depth import DEFAULT_CHECKPOINT

    if DEFAULT_CHECKPOINT.is_file() and not smoke:
        return DEFAULT_CHECKPOINT, f"shipped default {DEFAULT_CHECKPOINT.name}"
    import torch

    from xlstm_ros.models.depth import DepthConfig, DepthModel, save_depth_checkpoint
    from xlstm_ros.models.vil import vil_config

    torch.manual_seed(0)
    config = (DepthConfig(backbone=vil_config("vil_micro"), neck_channels=(8, 16, 32, 64), features=16,
                          input_short_side=64) if smoke else DepthConfig())
    path = save_depth_checkpoint(DepthModel(config), directory / "depth.pt")
    return path, (f"random ViL ({config.backbone.dim} wide, {config.backbone.depth} pairs) + DPT, "
                  f"input short side {config.input_short_side}")


def forecast_checkpoint(directory: Path, smoke: bool) -> tuple[Path, str]:
    """The shipped default TiRex of this source tree (explicit path, as above), else a random TiRex."""
    from xlstm_ros.engines.forecaster import DEFAULT_CHECKPOINT

    if DEFAULT_CHECKPOINT.is_file() and not smoke:
        return DEFAULT_CHECKPOINT, f"shipped default {DEFAULT_CHECKPOINT.name}"
    import torch

    from xlstm_ros.models.tirex import TiRex, TiRexConfig, save_tirex_checkpoint

    torch.manual_seed(0)
    config = TiRexConfig(embedding_dim=64, num_blocks=2, num_heads=4, input_ff_dim=128) if smoke else TiRexConfig()
    model = TiRex(config)
    path = save_tirex_checkpoint(model, directory / "TiRex" / "model.ckpt")
    return path, f"random TiRex, {sum(p.numel() for p in model.parameters())} parameters"


# ------------------------------------------------------------------------------------------------ depth

def camera_frame(index: int) -> np.ndarray:
    """A 640x480 RGB frame with structure (gradients and a moving square) that changes every frame."""
    height, width = FRAME_SIZE
    rows, cols = np.mgrid[0:height, 0:width]
    frame = np.stack([(rows * 255 // height), (cols * 255 // width), np.full_like(rows, 128)], axis=-1)
    top, left = (index * 7) % (height - 80), (index * 11) % (width - 80)
    frame[top:top + 80, left:left + 80] = 255
    return frame.astype(np.uint8)


def measure_depth(graph: RunningGraph, checkpoint: Path, args: argparse.Namespace) -> dict[str, Any]:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from xlstm_ros.graph.spinning import wait_for
    from xlstm_ros.nodes.image_conv import numpy_to_image

    params = {"checkpoint": str(checkpoint), "device": "cpu", "diagnostics_period_s": 0.5, "publish_colored": True}
    process = graph.start("depth_node", ros_arguments(parameters=params, remappings={"image": "/bench/image"}))
    node = graph.client.node
    received: dict[int, float] = {}
    diagnostics: list = []
    node.create_subscription(Image, "depth", lambda m: received.setdefault(m.header.stamp.sec, time.monotonic()),
                             qos_profile_sensor_data)
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    publisher = node.create_publisher(Image, "/bench/image", qos_profile_sensor_data)
    if not wait_for(lambda: publisher.get_subscription_count() > 0 or not process.running, args.start_timeout_s) \
            or not process.running:
        raise RuntimeError(f"depth_node never subscribed:\n{process.output()[-3000:]}")
    frames = [camera_frame(i) for i in range(8)]
    deadline = time.monotonic() + args.start_timeout_s
    warm_stamp = 0
    def warmed_up() -> bool:  # a map came back, or the node processed a frame (maps may all be lost)
        return bool(received) or int(newest_status(diagnostics, "depth_node").get("frames.processed", 0)) > 0

    while not warmed_up():  # the first inference warms up
        if time.monotonic() > deadline:
            raise RuntimeError(f"depth_node processed no frame:\n{process.output()[-3000:]}")
        warm_stamp += 1
        message = numpy_to_image(frames[0], "rgb8")
        message.header.stamp.sec = warm_stamp
        publisher.publish(message)
        wait_for(warmed_up, 1.0)
    wait_for(lambda: False, 1.0)  # let a warm-up frame still in the worker finish
    published: dict[int, float] = {}
    period = 1.0 / args.camera_hz
    begin = time.monotonic()
    for index in range(args.frames):
        stamp = 1000 + index
        message = numpy_to_image(frames[index % len(frames)], "rgb8")
        message.header.stamp.sec = stamp
        message.header.frame_id = "camera"
        delay = begin + index * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        published[stamp] = time.monotonic()
        publisher.publish(message)
    wait_for(lambda: max(published) in received, args.drain_timeout_s)  # the whole timeout if maps are lost
    wait_for(lambda: False, 1.0)  # one more diagnostics period
    latencies = [received[s] - published[s] for s in published if s in received]
    status = newest_status(diagnostics, "depth_node")
    process.stop()
    return {"frames_published": len(published), "maps_received": len(latencies),
            "dropped": len(published) - len(latencies), "camera_hz": args.camera_hz,
            "frame": {"height": FRAME_SIZE[0], "width": FRAME_SIZE[1], "encoding": "rgb8"},
            "latency": latency_summary(latencies),
            "node_diagnostics": {k: v for k, v in status.items() if k.startswith(("drops", "frames", "latency",
                                                                                  "rate", "device", "model"))}}


# ------------------------------------------------------------------------------------------------ forecast

def measure_forecast(graph: RunningGraph, checkpoint: Path, args: argparse.Namespace) -> dict[str, Any]:
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Imu
    from xlstm_ros_msgs.msg import Forecast

    from xlstm_ros.graph.spinning import wait_for

    params = {"device": "cpu", "period_s": SENSOR_PERIOD_S, "horizon": 64, "forecast_rate_hz": args.forecast_hz,
              "lateness_s": 0.0, "channels": ["accel_z"], "diagnostics_period_s": 0.5,
              "channel.accel_z.topic": "/bench/imu", "channel.accel_z.type": "sensor_msgs/msg/Imu",
              "channel.accel_z.field": "linear_acceleration.z", "channel.accel_z.unit": "m/s^2",
              "checkpoint": str(checkpoint)}
    process = graph.start("forecaster_node", ros_arguments(parameters=params))
    node = graph.client.node
    received: list[tuple[int, float]] = []
    diagnostics: list = []

    def on_forecast(message) -> None:
        now = time.monotonic()
        stamp = message.header.stamp.sec + message.header.stamp.nanosec * 1e-9
        received.append((round(stamp / SENSOR_PERIOD_S), now))

    node.create_subscription(Forecast, "forecast/accel_z", on_forecast, 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    publisher = node.create_publisher(Imu, "/bench/imu", 100)
    if not wait_for(lambda: publisher.get_subscription_count() > 0 or not process.running, args.start_timeout_s) \
            or not process.running:
        raise RuntimeError(f"forecaster_node never subscribed:\n{process.output()[-3000:]}")
    first_slot = round(FIRST_STAMP_S / SENSOR_PERIOD_S)
    values = 9.81 + np.sin(np.arange(args.context + args.realtime_samples) * 2 * np.pi / 37.0)

    def publish(offset: int) -> float:
        message = Imu()
        message.header.stamp = stamp_msg((first_slot + offset) * SENSOR_PERIOD_S)
        message.linear_acceleration.z = float(values[offset])
        now = time.monotonic()
        publisher.publish(message)
        return now

    for offset in range(args.context):  # fill the context faster than real time, within the queue depth
        publish(offset)
        if offset % 50 == 49:
            time.sleep(0.05)
    filled = first_slot + args.context - 2
    if not wait_for(lambda: any(slot >= filled for slot, _ in received), args.start_timeout_s):
        raise RuntimeError(f"no forecast after the context fill:\n{process.output()[-3000:]}")
    published: dict[int, float] = {}
    begin = time.monotonic()
    for index in range(args.realtime_samples):
        offset = args.context + index
        delay = begin + index * SENSOR_PERIOD_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        published[first_slot + offset] = publish(offset)
    last = max(published) - 1  # the newest slot completes only when a later sample arrives
    wait_for(lambda: any(slot >= last for slot, _ in received), args.drain_timeout_s)
    wait_for(lambda: False, 1.0)
    latencies = [now - published[slot] for slot, now in received if slot in published]
    status = newest_status(diagnostics, "forecaster_node")
    process.stop()
    total = args.context + args.realtime_samples
    node_received = status.get("samples.received")
    return {"samples_published": total, "realtime_samples": args.realtime_samples,
            "samples_received_by_node": None if node_received is None else int(node_received),
            "samples_dropped_by_node": int(status.get("samples.dropped", 0)),
            "forecasts_received": len(latencies), "forecast_rate_hz": args.forecast_hz,
            "sensor_rate_hz": 1 / SENSOR_PERIOD_S, "latency": latency_summary(latencies),
            "node_diagnostics": {k: v for k, v in status.items()
                                 if k.startswith(("samples", "drops", "latency_ms", "counts.forecasts", "state_bytes"))}}


# ------------------------------------------------------------------------------------------------ main

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "node_latency.json")
    parser.add_argument("--smoke", action="store_true", help="tiny models, a few seconds of traffic (CI)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the node processes (pinned)")
    parser.add_argument("--frames", type=int, default=300, help="camera frames published")
    parser.add_argument("--camera-hz", type=float, default=10.0)
    parser.add_argument("--forecast-hz", type=float, default=20.0, help="the forecaster node's forecast_rate_hz")
    parser.add_argument("--context", type=int, default=2048, help="samples published before the timed part")
    parser.add_argument("--realtime-samples", type=int, default=3000, help="100 Hz samples published in real time")
    parser.add_argument("--transports", nargs="+", default=list(TRANSPORTS_HELP), choices=list(TRANSPORTS_HELP),
                        help="Fast DDS set-ups for the depth run; the forecast runs on the last one")
    parser.add_argument("--session", choices=list(TRANSPORTS_HELP), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--with-forecast", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start-timeout-s", type=float, default=120.0)
    parser.add_argument("--drain-timeout-s", type=float, default=30.0)
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="LOAD",
                        help="wait until the 1-minute load average is below LOAD before measuring")
    parser.add_argument("--max-wait-s", type=float, default=9000.0)
    args = parser.parse_args(argv)
    if args.smoke:
        args.frames, args.camera_hz, args.realtime_samples, args.context = 10, 5.0, 200, 256
        args.drain_timeout_s = min(args.drain_timeout_s, 5.0)
    return args


def session(transport: str, with_forecast: bool, args: argparse.Namespace) -> dict[str, Any]:
    """One Fast DDS set-up, in a process of its own (Fast DDS reads its XML profile once per process):
    reserve a domain, start the nodes one at a time, measure, stop them."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        if transport == "large_shm":
            os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)  # ros_environment sets the package's
        else:
            profile = directory / "builtin.xml"
            profile.write_text(BUILTIN_PROFILE)
            os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
        from xlstm_ros.graph.running import running

        with running(directory, client_name="bench_latency") as graph:
            depth_model, out["depth_model"] = depth_checkpoint(directory, args.smoke)
            out["depth"] = measure_depth(graph, depth_model, args)
            if with_forecast:
                forecast_model, out["forecast_model"] = forecast_checkpoint(directory, args.smoke)
                out["forecast"] = measure_forecast(graph, forecast_model, args)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pin_threads(args.threads)  # inherited by the node processes through OMP_NUM_THREADS
    if args.session:
        print_child_result(session(args.session, args.with_forecast, args))
        return 0
    quiet = wait_until_quiet(args.wait_quiet, args.max_wait_s) if args.wait_quiet is not None else None
    argv = list(argv) if argv is not None else sys.argv[1:]
    record = Record("node_latency", MODULE, argv, args.threads, "smoke" if args.smoke else "full", quiet)
    record["setup"] = {"rmw": os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"), "discovery": "LOCALHOST",
                       "node_threads": args.threads, "nodes": "one at a time",
                       "transports": {name: TRANSPORTS_HELP[name] for name in args.transports}}
    record["depth"] = {}
    for transport in args.transports:
        last = transport == args.transports[-1]
        result = run_child(MODULE, [*argv, "--session", transport] + (["--with-forecast"] if last else []))
        record["setup"]["depth_model"] = result["depth_model"]
        record["depth"][transport] = result["depth"]
        depth = result["depth"]
        print(f"depth ({transport}): {depth['maps_received']} of {depth['frames_published']} maps, "
              f"{depth['latency']}", flush=True)
        if last:
            record["setup"]["forecast_model"] = result["forecast_model"]
            record["forecast"] = {**result["forecast"], "transport": transport}
            print(f"forecast: {record['forecast']['latency']}", flush=True)
    path = record.write(args.out)
    print(f"wrote {path} ({record['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
