"""The demo: a synthetic drone flight through the real depth and forecaster nodes over real DDS.

Starts depth_node and forecaster_node as their own processes with config/drone.yaml (the launch files'
graph, xlstm_ros.graph.drone), records every topic of interest into a rosbag2 from this process, then
starts drone_sim_node, which flies a procedural scene in real time (camera frames with ground-truth depth,
battery, IMU, altitude and motor temperature, two injected faults). When the flight is over the nodes are
stopped and the report turns the bag into a summary, pictures and an animation.
Every process runs with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST on a ROS_DOMAIN_ID reserved for the run.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from xlstm_ros.graph.drone import default_config, drone_graph, forecast_topics
from xlstm_ros.graph.processes import ros_arguments

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


def run_demo(options: DemoOptions) -> dict:
    """Fly, record, report; returns the summary (also written to out_dir/summary.json)."""
    # here, not at module level: rclpy is only needed once the demo runs, so `xlstm-ros --help` stays quick
    from xlstm_ros.demo.report import format_summary, write_report
    from xlstm_ros.graph.bags import BagRecorder
    from xlstm_ros.graph.running import running
    from xlstm_ros.sim.flight import scene_of_kind, simulate_flight

    out = options.out_dir
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    config = options.config or default_config()
    checkpoints = {"depth_node": options.depth_checkpoint, "forecaster_node": options.forecaster_checkpoint}
    node_parameters = {name: {"checkpoint": str(path)} if path else {} for name, path in checkpoints.items()}
    topics = {**RECORDED_TOPICS, **forecast_topics(config)}
    with running(out / "logs", nodes=drone_graph(config, parameters=node_parameters),
                 client_name="demo_recorder") as graph:
        print(f"[demo] ROS_DOMAIN_ID {graph.domain_id}, discovery LOCALHOST, outputs in {out}")
        recorder = BagRecorder(graph.client.node, out / "flight_bag", topics, storage=options.storage)
        graph.wait_until_up(graph.nodes, options.startup_timeout_s)
        print(f"[demo] nodes up; flying {options.duration_s:.0f} s over a {options.scene_kind} scene")
        sim = graph.start("drone_sim_node", ros_arguments(parameters={
            "seed": options.seed, "duration_s": float(options.duration_s), "fps": float(options.fps),
            "width": options.width, "height": options.height, "rate": float(options.rate),
            "scene_kind": options.scene_kind, "subscribers_per_topic": 2}), expect_exit=True)  # node + recorder
        graph.wait_for(lambda: not sim.running, options.duration_s / options.rate + options.startup_timeout_s,
                       "during the flight")
        time.sleep(3.0)  # the last frame and forecast on their way
        graph.check("during the flight")
        if sim.stop() != 0:
            raise RuntimeError(f"drone_sim_node failed:\n{sim.output()[-3000:]}")
        recorder.close()
        print(f"[demo] recorded {sum(recorder.counts.values())} messages")
    flight = simulate_flight(options.seed, options.duration_s, options.fps,
                             scene_of_kind(options.scene_kind))
    summary = write_report(out / "flight_bag", flight, _flight_start(out / "flight_bag"), out)
    print(format_summary(summary))
    return summary


def _flight_start(bag: Path) -> float:
    """Stamp (s) of the flight's first camera frame, the time origin of the report. The first frame and the
    first IMU sample are both stamped at flight time 0; when they differ the recording missed the start."""
    from xlstm_ros.demo.report import stamp_ns
    from xlstm_ros.graph.bags import read_messages

    first: dict[str, float] = {}
    for topic, _, msg in read_messages(bag, topics=["/camera/image_raw", "/imu"]):
        first.setdefault(topic, stamp_ns(msg) * 1e-9)
        if len(first) == 2:
            break
    frame, imu = first.get("/camera/image_raw"), first.get("/imu")
    if frame is None or imu is None or abs(frame - imu) > 1e-3:
        print(f"[demo] warning: the recording missed the start of the flight (first frame at {frame}, first IMU "
              f"sample at {imu}); flight times in the report are shifted")
    return frame
