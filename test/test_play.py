"""`xlstm-ros play`: a bag with its own topic names replayed through both nodes, their outputs recorded."""
import numpy as np
import pytest
import torch
import yaml
from geometry_msgs.msg import PointStamped
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from sensor_msgs.msg import BatteryState, Image, Imu, Temperature
from support_tirex import write_random_checkpoint

from xlstm_ros.demo.play import PlayOptions, run_play
from xlstm_ros.graph.bags import read_messages, typestore_with_our_messages
from xlstm_ros.graph.drone import default_config
from xlstm_ros.models.depth import DepthConfig, DepthModel, save_depth_checkpoint
from xlstm_ros.models.vil import vil_config
from xlstm_ros.nodes.image_conv import numpy_to_image

pytestmark = pytest.mark.ros
T0 = 1_750_000_000


def user_bag(path, seconds=6.0):
    """A bag as a user's drone might record it: other topic names, 10 Hz sensors, 2 fps camera."""
    topics = {"/drone1/cam/image": Image, "/drone1/battery": BatteryState, "/drone1/imu": Imu,
              "/drone1/baro": PointStamped, "/drone1/esc_temp": Temperature}
    store = typestore_with_our_messages()
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    connections = {t: writer.add_connection(t, f"{c.__module__.split('.')[0]}/msg/{c.__name__}", typestore=store)
                   for t, c in topics.items()}
    rng = np.random.default_rng(0)
    for k in range(int(seconds * 10)):
        t = T0 + k / 10
        stamp_ns = int(t * 1e9)
        msgs = {"/drone1/battery": BatteryState(voltage=16.0 - 0.01 * k), "/drone1/imu": Imu(),
                "/drone1/baro": PointStamped(), "/drone1/esc_temp": Temperature(temperature=30 + 0.05 * k)}
        msgs["/drone1/imu"].linear_acceleration.z = 9.8 + 0.1 * np.sin(k)
        msgs["/drone1/baro"].point.z = 10.0 + 0.02 * k
        if k % 5 == 0:
            msgs["/drone1/cam/image"] = numpy_to_image(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "rgb8")
        for topic, msg in msgs.items():
            msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_ns // 10**9, stamp_ns % 10**9
            writer.write(connections[topic], stamp_ns, serialize_message(msg))
    writer.close()


def test_play_a_user_bag_through_the_nodes(tmp_path):
    user_bag(tmp_path / "user_bag")
    torch.manual_seed(0)
    depth = save_depth_checkpoint(DepthModel(DepthConfig(backbone=vil_config("vil_micro"), neck_channels=(8, 16, 32, 64),
                                                         features=16, input_short_side=64)), tmp_path / "depth.pt")
    config = yaml.safe_load(default_config().read_text())
    config["/**/depth_node"]["ros__parameters"]["checkpoint"] = str(depth)
    config["/**/forecaster_node"]["ros__parameters"]["checkpoint"] = str(write_random_checkpoint(tmp_path))
    config["/**/forecaster_node"]["ros__parameters"]["forecast_rate_hz"] = 4.0
    config_path = tmp_path / "drone.yaml"
    config_path.write_text(yaml.safe_dump(config))

    counts = run_play(PlayOptions(
        bag=tmp_path / "user_bag", config=config_path, rate=2.0, record=tmp_path / "outputs",
        log_dir=tmp_path / "logs", inputs={"camera": "/drone1/cam/image", "battery": "/drone1/battery",
                                           "imu": "/drone1/imu", "altitude": "/drone1/baro",
                                           "motor_temperature": "/drone1/esc_temp"}))
    assert counts["published"] == 60 * 4 + 12
    outputs = list(read_messages(tmp_path / "outputs"))
    depth_maps = [m for t, _, m in outputs if t == "/depth"]
    assert depth_maps and all(m.height == 48 and m.width == 64 for m in depth_maps)
    channels = {m.channel for t, _, m in outputs if t.startswith("/forecast/")}
    assert channels == {"battery_voltage", "accel_z", "baro_altitude", "motor_temperature"}
