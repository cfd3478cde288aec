"""depth_node as its own process: images in, depth, colour, camera info and points out; bad frames counted."""
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from support_depth import write_random_depth_checkpoint

from xlstm_ros.graph.processes import ros_arguments
from xlstm_ros.graph.spinning import wait_for
from xlstm_ros.nodes.image_conv import image_to_numpy, numpy_to_image

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_random_depth_checkpoint(tmp_path_factory.mktemp("depth"), input_short_side=64)


def start(graph, checkpoint, **parameters):
    params = {"checkpoint": str(checkpoint), "device": "cpu", "publish_points": True, "points_stride": 2,
              "diagnostics_period_s": 0.2, **parameters}
    return graph.start("depth_node", ros_arguments(parameters=params, remappings={"image": "/cam/image",
                                                                                 "camera_info": "/cam/info"}))


def outputs(client):
    collect = client.collect
    return {"depth": collect(Image, "depth", qos_profile_sensor_data),
            "colored": collect(Image, "depth/colored", qos_profile_sensor_data),
            "info": collect(CameraInfo, "depth/camera_info", qos_profile_sensor_data),
            "points": collect(PointCloud2, "points", qos_profile_sensor_data),
            "diagnostics": collect(DiagnosticArray, "/diagnostics")}


def latest_diagnostics(messages):
    for array in reversed(messages):
        for status in array.status:
            if status.name.startswith("depth_node"):
                return {kv.key: kv.value for kv in status.values}
    return {}


def camera_image(encoding: str, stamp_s: int, height=48, width=80) -> Image:
    rgb = np.random.default_rng(stamp_s).integers(0, 255, (height, width, 3), dtype=np.uint8)
    msg = numpy_to_image(rgb[:, :, ::-1].copy() if encoding == "bgr8" else rgb, encoding)
    msg.header.stamp.sec, msg.header.frame_id = stamp_s, "cam"
    return msg


def test_rgb8_and_bgr8_with_camera_info(ros_graph, checkpoint):
    start(ros_graph, checkpoint)
    out = outputs(ros_graph.client)
    image_pub = ros_graph.client.node.create_publisher(Image, "/cam/image", qos_profile_sensor_data)
    info_pub = ros_graph.client.node.create_publisher(CameraInfo, "/cam/info", qos_profile_sensor_data)
    assert wait_for(lambda: image_pub.get_subscription_count() and info_pub.get_subscription_count(), 60)
    K = [60.0, 0.0, 39.5, 0.0, 60.0, 23.5, 0.0, 0.0, 1.0]
    for stamp, encoding in ((100, "rgb8"), (101, "bgr8")):
        image = camera_image(encoding, stamp)
        for _ in range(3):  # like a camera driver: info with every frame (best effort may lose the first)
            info_pub.publish(CameraInfo(header=image.header, width=80, height=48, k=K))
            assert wait_for(lambda: False, 0.1) is False
        image_pub.publish(image)
        assert wait_for(lambda: any(m.header.stamp.sec == stamp for m in out["points"]), 60), encoding
    for stamp in (100, 101):
        depth = next(m for m in out["depth"] if m.header.stamp.sec == stamp)
        colored = next(m for m in out["colored"] if m.header.stamp.sec == stamp)
        info = next(m for m in out["info"] if m.header.stamp.sec == stamp)
        points = next(m for m in out["points"] if m.header.stamp.sec == stamp)
        for msg in (depth, colored, info, points):
            assert msg.header.frame_id == "cam"
        assert (depth.encoding, depth.height, depth.width) == ("32FC1", 48, 80)
        assert np.isfinite(image_to_numpy(depth)).all() and (image_to_numpy(depth) >= 0).all()
        assert (colored.encoding, colored.height, colored.width) == ("bgr8", 48, 80)
        assert list(info.k) == K, stamp
        assert points.point_step == 12 and [f.name for f in points.fields] == ["x", "y", "z"]
        assert 0 < points.width <= 24 * 40 and len(points.data) == 12 * points.width


def test_bad_frames_are_counted_and_the_node_keeps_running(ros_graph, checkpoint):
    process = start(ros_graph, checkpoint)
    out = outputs(ros_graph.client)
    pub = ros_graph.client.node.create_publisher(Image, "/cam/image", qos_profile_sensor_data)
    assert wait_for(lambda: pub.get_subscription_count(), 60)
    while not any(m.header.stamp.sec == 0 for m in out["depth"]):  # a good frame first: the link is up
        pub.publish(camera_image("rgb8", 0))
        wait_for(lambda: any(m.header.stamp.sec == 0 for m in out["depth"]), 2)
    unknown = camera_image("rgb8", 1)
    unknown.encoding = "rgb9"
    empty = numpy_to_image(np.zeros((0, 0, 3), np.uint8), "rgb8")
    short_step = camera_image("rgb8", 2)
    short_step.step = 10
    truncated = camera_image("rgb8", 3)
    truncated.data = bytes(truncated.data[:100])
    for bad in (unknown, empty, short_step, truncated):
        pub.publish(bad)
        assert wait_for(lambda: False, 0.3) is False  # one at a time: the newest frame wins otherwise

    def all_counted():
        values = latest_diagnostics(out["diagnostics"])
        return all(int(values.get(f"drops.{reason}", 0)) == 1
                   for reason in ("unsupported_encoding", "empty_image", "bad_step", "short_data"))
    assert wait_for(all_counted, 30), latest_diagnostics(out["diagnostics"])
    assert process.running
    pub.publish(camera_image("rgb8", 4))
    assert wait_for(lambda: any(m.header.stamp.sec == 4 for m in out["depth"]), 60)
    log = process.output()
    assert "Image.encoding 'rgb9' is not supported" in log and "Image.step 10 is smaller" in log
    assert "Image.data has 100 bytes" in log


def test_missing_checkpoint_fails_at_start(ros_graph, tmp_path):
    process = ros_graph.start("depth_node", ros_arguments(parameters={"checkpoint": str(tmp_path / "none.pt")}),
                              expect_exit=True)
    assert process.process.wait(60) == 2
    assert "parameter 'checkpoint'" in process.output() and "none.pt" in process.output()
