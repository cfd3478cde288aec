"""Whole 640x480 frames cross between processes over real DDS with best-effort sensor QoS.

With Fast DDS's built-in 512 KiB shared-memory segment such messages travel as fragmented UDP and most of
them are lost; the package's profile (config/fastdds_large_shm.xml, set by ros_environment for node
processes and by conftest.py for this one) passes them whole through shared memory."""
import subprocess
import sys

import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from xlstm_ros.graph.processes import ros_environment
from xlstm_ros.graph.spinning import wait_for

pytestmark = pytest.mark.ros
FRAMES = 30

PUBLISHER = f"""
import array, time
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node("frame_source")
publisher = node.create_publisher(Image, "frames", qos_profile_sensor_data)
deadline = time.monotonic() + 60
while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(1.0)  # both sides have matched each other
frame = Image(height=480, width=640, encoding="32FC1", step=640 * 4)
frame.data = array.array("B", bytes(480 * 640 * 4))
for index in range({FRAMES}):
    frame.header.frame_id = str(index)
    publisher.publish(frame)
    time.sleep(0.1)
time.sleep(1.0)
"""


def test_depth_map_sized_frames_arrive_whole(ros_graph, tmp_path):
    received = ros_graph.client.collect(Image, "frames", qos_profile_sensor_data)
    env = ros_environment(ros_graph.domain_id, tmp_path / "ros_log")
    source = subprocess.Popen([sys.executable, "-c", PUBLISHER], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        source.wait(timeout=120)
    finally:
        source.kill()
    assert source.returncode == 0, source.stdout.read()
    wait_for(lambda: len(received) >= FRAMES, timeout_s=5)
    assert len(received) >= FRAMES - 1, f"{len(received)} of {FRAMES} frames arrived"
    assert all(len(frame.data) == 480 * 640 * 4 for frame in received)
