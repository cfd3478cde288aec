"""The demo: a synthetic drone flight through the real depth and forecaster nodes over real DDS.

Starts depth_node and forecaster_node as their own processes with config/drone.yaml (the launch files'
graph, xlstm_ros.nodes.graph), records every topic of interest into a rosbag2 from this process, then
starts drone_sim_node, which flies a procedural scene in real time (camera frames with ground-truth depth,
battery, IMU, altitude and motor temperature, two injected faults). When the flight is over the nodes are
stopped and demo_report turns the bag into a summary, pictures and an animation.
Every process runs with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST on a ROS_DOMAIN_ID reserved for the run.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from xlstm_ros.nodes.graph import DRONE_NODES, default_config, node_arguments
from xlstm_ros.nodes.processes import adopt_ros_environment, reserve_domain_id, ros_arguments, start_node

RECORDED_TOPICS = {
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/camera/depth_gt": "sensor_msgs/msg/Image",
    "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
    "/depth": "sensor_msgs/msg/Image",
    "/depth/camera_info": "sensor_msgs/msg/CameraInfo",
    "/points": "sensor_msgs/msg/PointCloud2",
    "/battery_state": "sensor_msgs/msg/BatteryState",
    "/imu": "sensor_msgs/msg/Imu",
    "/altitude": "geometry_msgs/msg/PointStamped",
    "/motor_temperature": "sensor_msgs/msg/Temperature",
    "/anomalies": "xlstm_ros_msgs/msg/Anomaly",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}


@dataclass
class DemoOptions:
    out_dir: Path = Path("out/demo")
    duration_s: float = 90.0
    fps: float = 4.0
    width: int = 320
    height: int = 240
    seed: int = 7
    scene_kind: str = "street"
    rate: float = 1.0
    depth_checkpoint: Path | None = None
    forecaster_checkpoint: Path | None = None
    config: Path | None = None
    storage: str = "mcap"
    startup_timeout_s: float = 120.0


def _forecast_topics(config: Path) -> dict[str, str]:
    import yaml

    params = yaml.safe_load(config.read_text())
    for key, value in params.items():
        if key.endswith("forecaster_node"):
            return {f"/forecast/{name}": "xlstm_ros_msgs/msg/Forecast" for name in value["ros__parameters"]["channels"]}
    return {}


def run_demo(options: DemoOptions) -> dict:
    """Fly, record, report; returns the summary (also written to out_dir/summary.json)."""
    import rclpy  # here, not at module level: `xlstm-ros --help` stays quick
    from diagnostic_msgs.msg import DiagnosticArray

    from xlstm_ros.nodes.bags import BagRecorder
    from xlstm_ros.nodes.demo_report import format_summary, write_report
    from xlstm_ros.sim.flight import scene_of_kind, simulate_flight

    out = options.out_dir
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    config = options.config or default_config()
    checkpoints = {"depth_node": options.depth_checkpoint, "forecaster_node": options.forecaster_checkpoint}
    node_parameters = {name: {"checkpoint": str(path)} if path else {} for name, path in checkpoints.items()}
    topics = {**RECORDED_TOPICS, **_forecast_topics(config)}
    with reserve_domain_id() as domain:
        adopt_ros_environment(domain.domain_id, out / "logs" / "ros")
        print(f"[demo] ROS_DOMAIN_ID {domain.domain_id}, discovery LOCALHOST, outputs in {out}")
        nodes = [start_node(spec.executable, domain_id=domain.domain_id, log_dir=out / "logs",
                            args=node_arguments(spec, config, parameters=node_parameters[spec.executable]))
                 for spec in DRONE_NODES]
        context = rclpy.context.Context()
        rclpy.init(context=context, domain_id=domain.domain_id)
        try:
            node = rclpy.create_node("demo_recorder", context=context)
            executor = rclpy.executors.SingleThreadedExecutor(context=context)
            executor.add_node(node)
            recorder = BagRecorder(node, out / "flight_bag", topics, storage=options.storage)
            ready = set()
            node.create_subscription(DiagnosticArray, "/diagnostics",
                                     lambda m: ready.update(s.name.split(":")[0] for s in m.status), 10)
            _spin_until(executor, lambda: {"depth_node", "forecaster_node"} <= ready or _dead(nodes),
                        options.startup_timeout_s)
            _fail_if_dead(nodes, "while starting")
            print(f"[demo] nodes up; flying {options.duration_s:.0f} s over a {options.scene_kind} scene")
            sim = start_node("drone_sim_node", domain_id=domain.domain_id, log_dir=out / "logs", args=ros_arguments(
                parameters={"seed": options.seed, "duration_s": float(options.duration_s), "fps": float(options.fps),
                            "width": options.width, "height": options.height, "rate": float(options.rate),
                            "scene_kind": options.scene_kind}))
            _spin_until(executor, lambda: not sim.running or _dead(nodes),
                        options.duration_s / options.rate + options.startup_timeout_s)
            _spin_until(executor, lambda: False, 3.0)  # the last frame and forecast on their way
            _fail_if_dead(nodes, "during the flight")
            if sim.stop() != 0:
                raise RuntimeError(f"drone_sim_node failed:\n{sim.output()[-3000:]}")
            recorder.close()
            print(f"[demo] recorded {sum(recorder.counts.values())} messages")
        finally:
            for process in nodes:
                process.stop()
            context.try_shutdown()
    flight = simulate_flight(options.seed, options.duration_s, options.fps,
                             scene_of_kind(options.scene_kind))
    summary = write_report(out / "flight_bag", flight, _flight_start(out / "flight_bag"), out)
    print(format_summary(summary))
    return summary


def _flight_start(bag: Path) -> float:
    """Stamp (s) of the first camera frame: the flight's time origin."""
    from xlstm_ros.nodes.bags import read_messages
    from xlstm_ros.nodes.demo_report import stamp_ns

    for _, _, msg in read_messages(bag, topics=["/camera/image_raw"]):
        return stamp_ns(msg) * 1e-9
    return 0.0


def _dead(processes) -> bool:
    return any(not p.running for p in processes)


def _fail_if_dead(processes, when: str) -> None:
    for process in processes:
        if not process.running:
            raise RuntimeError(f"{process.executable} exited {when} (code {process.process.returncode}):\n"
                               f"{process.output()[-3000:]}")


def _spin_until(executor, done, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
