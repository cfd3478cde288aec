"""Faults: broken or unsafe checkpoints, an unavailable GPU, CUDA out of memory, a restart, a lost publisher.

Start-up faults and the out-of-memory fallback run the nodes inside the test process (the same classes the
entry points run). A real CUDA out-of-memory error cannot be produced on a machine without a GPU, so the
seam is the smallest one there is: the engine's forecast / estimate method is replaced by one that raises
torch.cuda.OutOfMemoryError (the exception PyTorch raises); everything after it is real: the node rebuilds
the engine on the CPU from the checkpoint file, carries the streams over, retries and publishes.
Restart and publisher loss use real node processes (SIGINT, as `ros2 run` and launch stop them)."""
import math
import pathlib
import re

import numpy as np
import pytest
import torch
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import BatteryState, Image
from status_support import node_in_process
from support_depth import write_random_depth_checkpoint
from support_tirex import write_random_checkpoint
from test_forecaster_node import channel_parameters, stamp_of
from xlstm_ros_msgs.msg import Forecast

from xlstm_ros.graph.processes import ros_arguments
from xlstm_ros.graph.spinning import wait_for
from xlstm_ros.nodes.image_conv import numpy_to_image
from xlstm_ros.nodes.params import ParameterError

pytestmark = pytest.mark.ros
PERIOD_S = 0.1
T0 = 1_700_000_000.0
BATTERY = {"battery_voltage": ("battery_state", "sensor_msgs/msg/BatteryState", "voltage")}
UNAVAILABLE_GPU = "cuda:99"  # no machine has 100 GPUs: unavailable here and on a GPU machine alike


@pytest.fixture(scope="module")
def tirex_checkpoint(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("tirex"))


@pytest.fixture(scope="module")
def depth_checkpoint(tmp_path_factory):
    return write_random_depth_checkpoint(tmp_path_factory.mktemp("depth"))


def forecaster(context, model_file, **parameters):
    from xlstm_ros.nodes.forecaster_node import ForecasterNode

    return node_in_process(ForecasterNode, context, {**channel_parameters(model_file, BATTERY), **parameters})


def depth(context, model_file, **parameters):
    from xlstm_ros.nodes.depth_node import DepthNode

    return node_in_process(DepthNode, context, {"checkpoint": str(model_file), "device": "cpu", **parameters})


def battery_messages(first: int, count: int) -> list[BatteryState]:
    messages = []
    for k in range(first, first + count):
        msg = BatteryState(voltage=16.0 + 0.2 * math.sin(k / 5))
        msg.header.stamp = stamp_of(T0 + k * PERIOD_S)
        messages.append(msg)
    return messages


def publish(publisher, messages) -> None:
    assert wait_for(lambda: publisher.get_subscription_count() > 0, 30), "the node never subscribed"
    for msg in messages:
        publisher.publish(msg)


def stamp_s(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


class Payload:
    """Unpickling this runs code (it touches a file): exactly what weights_only loading must refuse."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


# --- checkpoints ------------------------------------------------------------------------------------------

def test_truncated_checkpoints_are_refused_naming_parameter_and_file(ros_graph, tirex_checkpoint,
                                                                      depth_checkpoint, tmp_path):
    for node, original in ((forecaster, tirex_checkpoint), (depth, depth_checkpoint)):
        truncated = tmp_path / f"truncated_{original.name}"
        truncated.write_bytes(original.read_bytes()[: original.stat().st_size // 2])
        with pytest.raises(ParameterError, match=r"parameter 'checkpoint'.*" + re.escape(str(truncated))):
            with node(ros_graph.context, original, checkpoint=str(truncated)):
                pass


def test_a_pickle_that_is_not_weights_only_is_refused_without_running_it(ros_graph, tirex_checkpoint,
                                                                          depth_checkpoint, tmp_path):
    marker = tmp_path / "code_ran"
    for node, original in ((forecaster, tirex_checkpoint), (depth, depth_checkpoint)):
        payload = torch.load(original, weights_only=True)
        payload["extra"] = Payload(marker)
        unsafe = tmp_path / f"unsafe_{original.name}"
        torch.save(payload, unsafe)
        with pytest.raises(ParameterError, match=r"parameter 'checkpoint'.*not a weights-only checkpoint"):
            with node(ros_graph.context, original, checkpoint=str(unsafe)):
                pass
    assert not marker.exists(), "the checkpoint's code must never run"


# --- devices ------------------------------------------------------------------------------------------------

def test_unavailable_gpu_falls_back_to_cpu_with_a_warning_or_fails_naming_device(ros_graph, tirex_checkpoint,
                                                                                  depth_checkpoint):
    for node, checkpoint in ((forecaster, tirex_checkpoint), (depth, depth_checkpoint)):
        with node(ros_graph.context, checkpoint, device=UNAVAILABLE_GPU, fallback_to_cpu=True) as running:
            report = running.report()
            assert report["device"] == "cpu"
            assert f"device '{UNAVAILABLE_GPU}' is not available" in report["device_fallback"]
            assert "falling back to the CPU" in report["device_fallback"]
        with pytest.raises(ParameterError, match=rf"parameter 'device': device '{UNAVAILABLE_GPU}' is not available"):
            with node(ros_graph.context, checkpoint, device=UNAVAILABLE_GPU, fallback_to_cpu=False):
                pass


def out_of_memory(*args, **kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (raised by the test seam)")


def test_forecaster_out_of_memory_moves_the_streams_to_the_cpu(ros_graph, tirex_checkpoint):
    forecasts = ros_graph.client.collect(Forecast, "forecast/battery_voltage")
    publisher = ros_graph.client.node.create_publisher(BatteryState, "battery_state", 200)
    with forecaster(ros_graph.context, tirex_checkpoint, forecast_rate_hz=20.0) as node:
        failing_engine = node.engine
        failing_engine.forecast = out_of_memory
        publish(publisher, battery_messages(0, 60))
        assert wait_for(lambda: forecasts, 60), node.report()
        report = node.report()
        assert node.engine is not failing_engine and str(node.engine.device) == "cpu"
        assert report["counts"]["cpu_fallbacks"] == 1 and report["errors"]["out_of_memory"] == 1
        assert "out of memory" in report["device_fallback"] and "running on the CPU" in report["device_fallback"]
        assert node.engine.stream_names() == ["battery_voltage"]
        first = forecasts[0]
        assert first.context_samples >= 32 and np.isfinite(first.quantiles).all()
        assert report["samples"]["unexplained"] == 0


def test_forecaster_out_of_memory_without_fallback_is_counted_and_the_node_keeps_serving(
        ros_graph, tirex_checkpoint):
    forecasts = ros_graph.client.collect(Forecast, "forecast/battery_voltage")
    publisher = ros_graph.client.node.create_publisher(BatteryState, "battery_state", 200)
    with forecaster(ros_graph.context, tirex_checkpoint, forecast_rate_hz=20.0, fallback_to_cpu=False) as node:
        node.engine.forecast = out_of_memory
        publish(publisher, battery_messages(0, 60))
        assert wait_for(lambda: node.report()["errors"].get("out_of_memory", 0) >= 2, 30)
        assert not forecasts and "cpu_fallbacks" not in node.report()["counts"]
        del node.engine.forecast  # the memory is back: the class's method again
        publish(publisher, battery_messages(60, 5))
        assert wait_for(lambda: forecasts, 60), node.report()
        assert node.report()["device_fallback"] == ""


def test_depth_out_of_memory_falls_back_to_cpu_or_drops_the_frame(ros_graph, depth_checkpoint):
    depth_maps = ros_graph.client.collect(Image, "depth", qos_profile_sensor_data)
    publisher = ros_graph.client.node.create_publisher(Image, "image", qos_profile_sensor_data)
    frame = numpy_to_image(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8), "rgb8")

    def send_until(stamp: int, done) -> bool:
        """Publish the frame (again, should best-effort video lose it) until done() holds."""
        frame.header.stamp.sec = stamp
        for _ in range(15):
            publisher.publish(frame)
            if wait_for(done, 2):
                return True
        return False

    with depth(ros_graph.context, depth_checkpoint) as node:
        failing = node.estimator
        failing.estimate = out_of_memory
        assert wait_for(lambda: publisher.get_subscription_count() > 0, 30)
        assert send_until(1, lambda: depth_maps), node.report()
        assert wait_for(lambda: node.report()["frames"]["processed"] >= 1, 10)  # counted after publishing
        report = node.report()
        assert node.estimator is not failing and str(node.estimator.device) == "cpu"
        assert report["counts"]["cpu_fallbacks"] == 1 and report["errors"]["out_of_memory"] == 1
        assert report["frames"]["processed"] >= 1 and "out_of_memory" not in report["drops"]
        assert "out of memory" in report["device_fallback"]
    depth_maps.clear()
    with depth(ros_graph.context, depth_checkpoint, fallback_to_cpu=False) as node:
        node.estimator.estimate = out_of_memory
        assert wait_for(lambda: publisher.get_subscription_count() > 0, 30)
        assert send_until(2, lambda: node.report()["drops"].get("out_of_memory")), node.report()
        del node.estimator.estimate  # the memory is back: the class's method again
        assert send_until(3, lambda: depth_maps), node.report()
        assert wait_for(lambda: node.report()["frames"]["pending"] == 0, 10)
        report = node.report()
        frames = report["frames"]
        assert frames["received"] == frames["processed"] + frames["dropped"] and frames["pending"] == 0
        assert frames["dropped"] == report["drops"]["out_of_memory"] == report["errors"]["out_of_memory"] >= 1
        assert report["device_fallback"] == "" and "cpu_fallbacks" not in report["counts"]


# --- restart and publisher loss (real processes) ------------------------------------------------------------

def test_restart_resumes_streams_from_the_state_file(ros_graph, tirex_checkpoint, tmp_path):
    state_file = tmp_path / "streams.pt"
    arguments = ros_arguments(parameters=channel_parameters(tirex_checkpoint, BATTERY, state_file=str(state_file),
                                                            forecast_rate_hz=10.0))
    forecasts = ros_graph.client.collect(Forecast, "forecast/battery_voltage")
    publisher = ros_graph.client.node.create_publisher(BatteryState, "battery_state", 200)
    first = ros_graph.start("forecaster_node", arguments)
    publish(publisher, battery_messages(0, 100))
    assert wait_for(lambda: forecasts and stamp_s(forecasts[-1]) >= T0 + 90 * PERIOD_S, 60)
    first.expect_exit = True  # stopped by the test, like ros2 run on Ctrl-C
    assert first.stop() == 0 and state_file.is_file()
    assert "saved 1 stream state(s)" in first.output()
    assert wait_for(lambda: publisher.get_subscription_count() == 0, 30)

    forecasts.clear()
    second = ros_graph.start("forecaster_node", arguments)
    status = ros_graph.status("forecaster_node")
    assert status.wait(60)
    publish(publisher, battery_messages(130, 4))  # 3 s after the last sample: 30 slots missed meanwhile
    assert wait_for(lambda: forecasts, 60), status.get()
    resumed = forecasts[0]
    # A fresh stream needs a whole patch (32 samples) before its first forecast; this one had 4 new samples.
    assert resumed.context_samples >= 100 and resumed.missing_fraction > 0
    assert T0 + 130 * PERIOD_S - 1e-6 <= stamp_s(resumed) <= T0 + 133 * PERIOD_S + 1e-6
    report = status.get()
    assert report["counts"]["missing_slots.battery_voltage"] >= 29 and "stream_resets" not in report["counts"]
    assert "resumed 1 stream(s)" in second.output()


def test_a_publisher_that_disappears_and_comes_back(ros_graph, tirex_checkpoint):
    node = ros_graph.start("forecaster_node", ros_arguments(parameters=channel_parameters(
        tirex_checkpoint, BATTERY, forecast_rate_hz=10.0, diagnostics_period_s=0.2)))
    status = ros_graph.status("forecaster_node")
    forecasts = ros_graph.client.collect(Forecast, "forecast/battery_voltage")
    assert status.wait(60)
    publisher = ros_graph.client.node.create_publisher(BatteryState, "battery_state", 200)
    publish(publisher, battery_messages(0, 60))
    assert wait_for(lambda: forecasts, 60)
    seen = status.wait_until(lambda r: r["topics"]["/battery_state"]["publishers"] == 1, 30)  # the graph lags
    assert seen["topics"]["/battery_state"]["publishers"] == 1
    ros_graph.client.node.destroy_publisher(publisher)
    report = status.wait_until(lambda r: r["topics"]["/battery_state"]["publishers"] == 0, 30)
    assert report["topics"]["/battery_state"]["publishers"] == 0
    assert wait_for(lambda: "no publisher of sensor_msgs/msg/BatteryState left" in node.output(), 10)

    forecasts.clear()
    publisher = ros_graph.client.node.create_publisher(BatteryState, "battery_state", 200)
    publish(publisher, battery_messages(80, 40))  # 2 s of silence between the two publishers
    assert wait_for(lambda: forecasts and stamp_s(forecasts[-1]) >= T0 + 100 * PERIOD_S, 60)
    report = status.wait_until(lambda r: r["topics"]["/battery_state"]["publishers"] == 1, 30)
    assert report["topics"]["/battery_state"]["publishers"] == 1 and report["streams"] == 1
    assert report["counts"]["missing_slots.battery_voltage"] >= 19 and "stream_resets" not in report["counts"]
    assert report["samples"]["received"] == 100 and report["samples"]["unexplained"] == 0
    assert node.running
