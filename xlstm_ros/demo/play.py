"""`xlstm-ros play BAG`: replay a recorded (or your own) bag through the depth and forecaster nodes.

The nodes start as their own processes from the drone graph (xlstm_ros.graph.drone) with a parameter file;
their inputs are remapped to the bag's topics exactly as the launch arguments would do it
(`--camera /my/cam/image_raw` and so on). The bag's messages are republished unchanged with their recorded
timing (scaled by `rate`); the nodes' outputs can be recorded into a new bag.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from xlstm_ros.graph.bags import BagPlayer, BagRecorder
from xlstm_ros.graph.drone import default_config, drone_graph, forecast_topics
from xlstm_ros.graph.running import running

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
    with running(options.log_dir, nodes=drone_graph(config, values=options.inputs), client_name="bag_player") as graph:
        node = graph.client.node
        recorder = BagRecorder(node, options.record, {**OUTPUT_TOPICS, **forecast_topics(config)}) \
            if options.record else None
        player = BagPlayer(node, options.bag, rate=options.rate)
        inputs = [topic for topic in set(options.inputs.values()) if topic in player._publishers]
        graph.wait_for(lambda: all(player._publishers[topic].get_subscription_count() for topic in inputs),
                       options.startup_timeout_s, "while starting")
        print(f"[play] {options.bag}: {len(player.topics)} topics, rate {options.rate}x")
        published = player.play(should_stop=graph.crashed)
        time.sleep(3.0)  # the last outputs on their way
        player.close()
        recorded = 0
        if recorder:
            recorder.close()
            recorded = sum(recorder.counts.values())
    return {"published": published, "recorded": recorded}
