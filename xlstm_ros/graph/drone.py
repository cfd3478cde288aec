"""The drone graph: which nodes run, with which parameter file, and which inputs are launch arguments.

launch/drone.launch.py builds its nodes from this description, launch/drone.launch.xml spells the same
graph out in XML (a test checks they agree), and the demo, `xlstm-ros play` and the soak start the same
executables with the same parameter file through `drone_graph`. This module does not import rclpy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from xlstm_ros.graph.processes import ros_arguments, share_directory


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


@dataclass(frozen=True)
class NodeSpec:
    """A node of the graph: executable (= node name) and its input topics remapped from launch arguments."""

    executable: str
    inputs: Mapping[str, str] = field(default_factory=dict)  # topic inside the node -> launch argument


SHIPPED_CONFIG = "$(find-pkg-share xlstm_ros)/config/drone.yaml"
LAUNCH_ARGUMENTS = (
    LaunchArgument("config", SHIPPED_CONFIG, "parameter file of both nodes"),
    LaunchArgument("namespace", "", "namespace of both nodes (their outputs are relative names)"),
    LaunchArgument("use_sim_time", "false", "use /clock (true when replaying a bag with simulated time)"),
    LaunchArgument("camera", "/camera/image_raw", "camera image topic (sensor_msgs/Image)"),
    LaunchArgument("camera_info", "/camera/camera_info", "camera info topic (sensor_msgs/CameraInfo)"),
    LaunchArgument("battery", "/battery_state", "battery topic (sensor_msgs/BatteryState)"),
    LaunchArgument("imu", "/imu", "IMU topic (sensor_msgs/Imu)"),
    LaunchArgument("altitude", "/altitude", "barometric altitude topic (geometry_msgs/PointStamped, z in m)"),
    LaunchArgument("motor_temperature", "/motor_temperature", "motor temperature (sensor_msgs/Temperature)"),
)
DRONE_NODES = (
    NodeSpec("depth_node", {"image": "camera", "camera_info": "camera_info"}),
    NodeSpec("forecaster_node", {"battery_state": "battery", "imu": "imu", "altitude": "altitude",
                                 "motor_temperature": "motor_temperature"}),
)


def default_config() -> Path:
    """config/drone.yaml: installed (share directory), else from the source tree."""
    try:
        root = share_directory("xlstm_ros")
    except FileNotFoundError:
        root = Path(__file__).resolve().parents[2]
    return root / "config" / "drone.yaml"


def launch_defaults() -> dict[str, str]:
    return {argument.name: argument.default for argument in LAUNCH_ARGUMENTS}


def node_arguments(spec: NodeSpec, config: str | Path, values: Mapping[str, str] | None = None,
                   parameters: Mapping[str, object] | None = None) -> list[str]:
    """The --ros-args of `spec` for a process start: parameter file, remapped inputs, extra parameters."""
    chosen = {**launch_defaults(), **(values or {})}
    remappings = {topic: chosen[argument] for topic, argument in spec.inputs.items()}
    if chosen["namespace"]:
        remappings["__ns"] = "/" + chosen["namespace"].strip("/")
    extra = dict(parameters or {})
    extra.setdefault("use_sim_time", chosen["use_sim_time"].lower() == "true")
    return ros_arguments([config], extra, remappings)


def drone_graph(config: str | Path, values: Mapping[str, str] | None = None,
                parameters: Mapping[str, Mapping[str, object]] | None = None) -> dict[str, list[str]]:
    """{executable: --ros-args} of every node of the drone graph, for `running(nodes=...)`: launch argument
    `values` and extra `parameters` per executable on top of the parameter file `config`."""
    return {spec.executable: node_arguments(spec, config, values, (parameters or {}).get(spec.executable))
            for spec in DRONE_NODES}


def forecast_topics(config: str | Path) -> dict[str, str]:
    """{topic: type} of the forecasts that the forecaster_node of the parameter file `config` publishes."""
    import yaml  # here: `xlstm-ros --help` reads LAUNCH_ARGUMENTS from this module

    for key, value in yaml.safe_load(Path(config).read_text()).items():
        if key.endswith("forecaster_node"):
            return {f"/forecast/{name}": "xlstm_ros_msgs/msg/Forecast"
                    for name in value["ros__parameters"].get("channels", [])}
    return {}
