"""Fuzzing a running depth_node: broken images of every kind never stop it; every frame is accounted for.

Hypothesis draws frames (every encoding and unknown ones, sizes up to 4096 x 1, odd steps, short and long
data, big-endian, garbage bytes) and the test sends them over DDS in small batches, waiting until the node
has received each batch (its ~/get_status), so that no frame is lost in the best-effort camera queue.
The frames the node must reject on arrival are predicted with image_conv itself (its own properties are
fuzzed in test_fuzz_image_conv.py): their counts by cause must match exactly, every received frame must be
processed or dropped with a reason, and each cause must be logged at most once per second."""
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from status_support import assert_throttled, log_times_by_cause
from support_depth import write_random_depth_checkpoint
from test_fuzz_image_conv import images

from xlstm_ros.graph.processes import ros_arguments
from xlstm_ros.graph.spinning import wait_for
from xlstm_ros.nodes.image_conv import RGB_CONVERTIBLE, ImageConversionError, image_to_numpy, numpy_to_image

pytestmark = pytest.mark.ros
EARLY_CAUSES = ("unsupported_encoding", "bad_step", "short_data", "empty_image")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_random_depth_checkpoint(tmp_path_factory.mktemp("depth"))


def rejected_on_arrival(msg: Image) -> str | None:
    """The cause the node's image callback gives this frame, None when the frame is queued for the model."""
    try:
        pixels = image_to_numpy(msg)
    except ImageConversionError as error:
        return error.cause
    if msg.encoding not in RGB_CONVERTIBLE:
        return "not_convertible"
    return "empty_image" if min(pixels.shape[:2]) < 2 else None


def good_frame(seed: int) -> Image:
    rng = np.random.default_rng(seed)
    return numpy_to_image(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), "rgb8")


frames = st.lists(st.one_of(images(), st.integers(0, 1000).map(good_frame)), min_size=20, max_size=40)


@pytest.fixture
def running_node(ros_graph, checkpoint):
    process = ros_graph.start("depth_node", ros_arguments(parameters={
        "checkpoint": str(checkpoint), "device": "cpu", "diagnostics_period_s": 0.5}))
    status = ros_graph.status("depth_node")
    publisher = ros_graph.client.node.create_publisher(Image, "image", qos_profile_sensor_data)
    assert status.wait(90) and wait_for(lambda: publisher.get_subscription_count() > 0, 30)
    return process, status, publisher


def test_broken_images_are_counted_by_cause_and_never_stop_the_node(running_node):
    process, status, publisher = running_node
    sent, expected = [0], Counter()

    @settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(batch=frames)
    def send(batch):
        for start in range(0, len(batch), 4):  # the camera queue keeps 5 frames
            for msg in batch[start:start + 4]:
                expected[rejected_on_arrival(msg)] += 1
                publisher.publish(msg)
                sent[0] += 1
            report = status.wait_until(lambda r: r["frames"]["received"] >= sent[0], 30)
            assert report["frames"]["received"] == sent[0], report["frames"]

    send()
    report = status.wait_until(lambda r: r["frames"]["pending"] == 0, 60)
    frames_ = report["frames"]
    assert process.running
    assert frames_["received"] == sent[0] and frames_["pending"] == 0
    assert frames_["received"] == frames_["processed"] + frames_["dropped"]
    for cause in EARLY_CAUSES:
        assert report["drops"].get(cause, 0) == expected[cause], (cause, report["drops"], expected)
    assert report["drops"].get("not_convertible", 0) >= expected["not_convertible"]
    assert frames_["processed"] >= 1 and "dds_lost" not in report["drops"]

    causes = log_times_by_cause(process.output(), r"^frame dropped \((\w+)\)")
    assert {cause for cause in EARLY_CAUSES if expected[cause]} <= set(causes)
    assert_throttled(causes)
