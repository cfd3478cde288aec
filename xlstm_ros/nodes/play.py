"""`xlstm-ros play BAG`: replay a recorded (or your own) bag through the depth and forecaster nodes.

The nodes start as their own processes from the drone graph (xlstm_ros.nodes.graph) with a parameter file;
their inputs are remapped to the bag's topics exactly as the launch arguments would do it
(`--camera /my/cam/image_raw` and so on). The bag's messages are republished unchanged with their recorded
timing (scaled by `rate`); the nodes' outputs can be recorded into a new bag.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import rclpy

from xlstm_ros.nodes.bags import BagPlayer, BagRecorder
from xlstm_ros.nodes.graph import DRONE_NODES, default_config, node_arguments
from xlstm_ros.nodes.processes import adopt_ros_environment, reserve_domain_id, start_node

OUTPUT_TOPICS = {"/depth": "sensor_msgs/msg/Image", "/depth/colored": "sensor_msgs/msg/Image",
                 "/anomalies": "xlstm_ros_msgs/msg/Anomaly", "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"}


@dataclass
class PlayOptions:
    bag: Path
    config: Path | None = None
    rate: float = 1.0
    inputs: dict[str, str] = field(default_factory=dict)  # launch argument -> topic in the bag
    record: Path | None = None
    log_dir: Path = Path("out/play")
    startup_timeout_s: float = 120.0


def run_play(options: PlayOptions) -> dict[str, int]:
    """Play the bag through the nodes; returns {"published": n, "recorded": m}."""
    config = options.config or default_config()
    with reserve_domain_id() as domain:
        adopt_ros_environment(domain.domain_id, options.log_dir / "ros")
        nodes = [start_node(spec.executable, domain_id=domain.domain_id, log_dir=options.log_dir,
                            args=node_arguments(spec, config, values=options.inputs)) for spec in DRONE_NODES]
        context = rclpy.context.Context()
        rclpy.init(context=context, domain_id=domain.domain_id)
        try:
            node = rclpy.create_node("bag_player", context=context)
            executor = rclpy.executors.SingleThreadedExecutor(context=context)
            executor.add_node(node)
            recorder = None
            if options.record:
                topics = {**OUTPUT_TOPICS, **{f"/forecast/{name}": "xlstm_ros_msgs/msg/Forecast"
                                              for name in _channels(config)}}
                recorder = BagRecorder(node, options.record, topics)
            player = BagPlayer(node, options.bag, rate=options.rate)
            inputs = set(options.inputs.values())
            deadline = time.monotonic() + options.startup_timeout_s
            while time.monotonic() < deadline and not all(
                    player._publishers[t].get_subscription_count() for t in inputs if t in player._publishers):
                executor.spin_once(timeout_sec=0.1)
                if any(not p.running for p in nodes):
                    raise RuntimeError(f"a node exited while starting; logs in {options.log_dir}")
            print(f"[play] {options.bag}: {len(player.topics)} topics, rate {options.rate}x")
            published = player.play(should_stop=lambda: any(not p.running for p in nodes))
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.1)
            player.close()
            recorded = 0
            if recorder:
                recorder.close()
                recorded = sum(recorder.counts.values())
        finally:
            for process in nodes:
                process.stop()
            context.try_shutdown()
    return {"published": published, "recorded": recorded}


def _channels(config: Path) -> list[str]:
    import yaml

    for key, value in yaml.safe_load(Path(config).read_text()).items():
        if key.endswith("forecaster_node"):
            return list(value["ros__parameters"].get("channels", []))
    return []
