"""What an operator reads: /diagnostics, the latched ~/status topic and the ~/get_status service.

The bookkeeping pieces are tested alone (bounded rate meter, publication gaps, report levels, flattening);
then a forecaster and a depth node (in the test process) must report rates, latency percentiles, drops by
reason, anomalies, device, backend and model through all three outputs, to a subscriber that comes late."""
import json
import math
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import BatteryState, Image
from status_support import node_in_process
from support_depth import write_random_depth_checkpoint
from support_tirex import write_random_checkpoint
from test_forecaster_node import channel_parameters, stamp_of
from xlstm_ros_msgs.msg import Anomaly, NodeStatus

from xlstm_ros.graph.spinning import wait_for
from xlstm_ros.models.depth import RELATIVE
from xlstm_ros.nodes.diagnostics import NodeHealth, PublicationGaps, RateMeter, flatten
from xlstm_ros.nodes.image_conv import numpy_to_image

T0 = 1_700_000_000.0
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def test_rate_meter_counts_a_sliding_window_in_constant_memory():
    meter = RateMeter(window_s=5.0, buckets=10)
    for k in range(100_000):
        meter.tick(now=100.0 + k * 1e-4)  # 10 s at 10 kHz
    assert len(meter._counts) <= 11
    assert meter.rate_hz(now=110.0) == pytest.approx(10_000, rel=0.02)
    assert meter.rate_hz(now=200.0) == 0.0


def test_publication_gaps_count_lost_messages_per_publisher():
    gaps = PublicationGaps(max_publishers=2)

    def info(publisher: int, sequence: int):
        return {"publication_sequence_number": sequence, "publisher_gid": {"data": bytes([publisher] * 16)}}

    assert gaps.lost(info(1, 7)) == 0  # the first message of a publisher: earlier ones may predate us
    assert gaps.lost(info(1, 8)) == 0
    assert gaps.lost(info(1, 12)) == 3
    assert gaps.lost(info(2, 1)) == 0 and gaps.lost(info(2, 3)) == 1
    assert gaps.lost(info(1, 11)) == 0  # out of order: nothing lost, nothing counted twice
    assert gaps.lost(info(3, 5)) == 0  # a third publisher evicts the oldest (constant memory)
    assert gaps.lost({"publication_sequence_number": None, "publisher_gid": None}) == 0


def test_report_levels_follow_new_drops_and_errors():
    health = NodeHealth()
    assert health.report({"model": "m"})["level"] == "ok"
    health.drop("late", 3)
    report = health.report({"model": "m"}, drops={"dds_lost": 2})
    assert (report["level"], report["drops"]) == ("warn", {"dds_lost": 2, "late": 3})
    assert report["message"] == "5 input(s) dropped since the last report"
    assert health.report({"model": "m"}, drops={"dds_lost": 2})["level"] == "ok"
    health.error("forecast")
    assert health.report({"model": "m"})["level"] == "error"


def test_flatten_nests_keys_with_dots():
    assert flatten({"a": 1, "b": {"c": 2.5, "d": {"e": "x"}}, "f": [1, 2]}) == {
        "a": "1", "b.c": "2.5", "b.d.e": "x", "f": "1, 2"}


@pytest.fixture(scope="module")
def tirex_checkpoint(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("tirex"))


@pytest.fixture(scope="module")
def depth_checkpoint(tmp_path_factory):
    return write_random_depth_checkpoint(tmp_path_factory.mktemp("depth"))


@pytest.mark.ros
def test_forecaster_status_topic_service_and_diagnostics(ros_graph, tirex_checkpoint):
    from xlstm_ros.nodes.forecaster_node import ForecasterNode

    channels = {"battery_voltage": ("battery_state", "sensor_msgs/msg/BatteryState", "voltage")}
    # every out-of-band observation is an event here: the spike at k = 100 must reach the status counters
    params = channel_parameters(tirex_checkpoint, channels, forecast_rate_hz=10.0, diagnostics_period_s=0.2,
                                anomaly_consecutive=1, anomaly_calibration_window=0)
    anomalies = ros_graph.client.collect(Anomaly, "anomalies")
    diagnostics = ros_graph.client.collect(DiagnosticArray, "/diagnostics")
    with node_in_process(ForecasterNode, ros_graph.context, params):
        publisher = ros_graph.client.node.create_publisher(BatteryState, "battery_state", 200)
        assert wait_for(lambda: publisher.get_subscription_count() > 0, 30)
        for k in range(120):
            voltage = 1e6 if k == 100 else (math.nan if k == 50 else 16.0 + 0.1 * math.sin(k / 4))
            msg = BatteryState(voltage=voltage)
            msg.header.stamp = stamp_of(T0 + 0.1 * k)
            publisher.publish(msg)
            if k in (95, 99):  # let forecasts for the slots ahead of the spike be made
                time.sleep(0.5)
        status = ros_graph.status("forecaster_node")
        assert status.wait(30)
        report = status.wait_until(lambda r: r["counts"].get("anomalies.battery_voltage", 0) >= 1, 30)

        assert report["counts"]["anomalies.battery_voltage"] >= 1 and anomalies
        assert anomalies[0].channel == "battery_voltage" and anomalies[0].value == pytest.approx(1e6)
        assert (report["device"], report["backend"], report["model"]) == ("cpu", "torch", str(tirex_checkpoint))
        assert report["drops"] == {"nonfinite": 1} and report["errors"] == {}
        assert set(report["latency_ms"]["forecast"]) == {"p50", "p90", "p99"}
        assert report["rates_hz"]["messages./battery_state"] > 0
        assert report["counts"]["received.battery_voltage"] == 120
        assert report["samples"]["unexplained"] == 0 and report["streams"] == 1 and report["state_bytes"] > 0
        assert report["channels"]["battery_voltage"]["dropped"] == {"nonfinite": 1}
        assert report["topics"]["/battery_state"]["publishers"] == 1
        assert report["level"] in ("ok", "warn", "error") and report["uptime_s"] > 0

        late = []  # a subscriber that comes after the node published: transient local hands it the latest
        ros_graph.client.node.create_subscription(NodeStatus, "/forecaster_node/status", late.append, LATCHED)
        assert wait_for(lambda: late, 10)
        assert late[0].node == "/forecaster_node" and late[0].device == "cpu" and late[0].backend == "torch"
        assert json.loads(late[0].json)["samples"]["received"] <= 120

        def diagnostic_values():
            for array in reversed(diagnostics):
                for entry in array.status:
                    if entry.name == "forecaster_node: forecaster":
                        return {kv.key: kv.value for kv in entry.values}
            return {}
        assert wait_for(lambda: diagnostic_values().get("counts.received.battery_voltage") == "120", 10)
        values = diagnostic_values()
        assert values["drops.nonfinite"] == "1" and values["device"] == "cpu" and values["backend"] == "torch"
        assert values["counts.received.battery_voltage"] == "120" and values["samples.unexplained"] == "0"
        assert not any(key.startswith("channels.") for key in values), "per-channel detail is JSON only"


@pytest.mark.ros
def test_depth_status_reports_frames_latency_and_drops(ros_graph, depth_checkpoint):
    from xlstm_ros.nodes.depth_node import DepthNode

    depth_maps = ros_graph.client.collect(Image, "depth", qos_profile_sensor_data)
    with node_in_process(DepthNode, ros_graph.context, {"checkpoint": str(depth_checkpoint), "device": "cpu"}):
        publisher = ros_graph.client.node.create_publisher(Image, "image", qos_profile_sensor_data)
        assert wait_for(lambda: publisher.get_subscription_count() > 0, 30)
        frame = numpy_to_image(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8), "rgb8")
        broken = numpy_to_image(np.zeros((24, 32, 3), np.uint8), "rgb8")
        broken.step = 5
        while not depth_maps:
            publisher.publish(frame)
            wait_for(lambda: depth_maps, 2)
        publisher.publish(broken)
        status = ros_graph.status("depth_node")
        assert status.wait(30)
        report = status.wait_until(lambda r: r["drops"].get("bad_step") == 1 and r["frames"]["processed"] >= 1
                                   and r["frames"]["pending"] == 0, 30)
        assert report["drops"]["bad_step"] == 1
        assert (report["device"], report["backend"], report["dtype"], report["output"]) == (
            "cpu", "torch", "float32", RELATIVE)
        assert report["model"] == str(depth_checkpoint) and report["device_fallback"] == ""
        assert set(report["latency_ms"]["inference"]) == set(report["latency_ms"]["end_to_end"]) == {
            "p50", "p90", "p99"}
        frames = report["frames"]
        assert frames["received"] == frames["processed"] + frames["dropped"]
        assert frames["processed"] >= 1 and report["rates_hz"]["frames_received"] > 0
