"""forecaster_node as its own process, talked to over DDS from the test process.

The node runs a real (small, random-weight) TiRex checkpoint written by the test; samples carry header
stamps on a 0.1 s grid, so the tests can publish faster than real time."""
import math

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import BatteryState, Image, Imu
from support_tirex import write_random_checkpoint
from xlstm_ros_msgs.msg import Forecast

from xlstm_ros.graph.processes import ros_arguments
from xlstm_ros.graph.spinning import wait_for
from xlstm_ros.nodes.image_conv import numpy_to_image

pytestmark = pytest.mark.ros
PERIOD_S = 0.1
T0 = 1_700_000_000.0  # seconds: stamps far from zero, like real clocks


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("tirex"))


def stamp_of(seconds: float):
    from builtin_interfaces.msg import Time

    return Time(sec=int(seconds), nanosec=int(round((seconds - int(seconds)) * 1e9)) % 1_000_000_000)


def channel_parameters(checkpoint, channels, **extra):
    params = {"checkpoint": str(checkpoint), "period_s": PERIOD_S, "horizon": 40, "forecast_rate_hz": 5.0,
              "device": "cpu", "channels": list(channels), **extra}
    for name, (topic, type_name, field) in channels.items():
        params.update({f"channel.{name}.topic": topic, f"channel.{name}.type": type_name,
                       f"channel.{name}.field": field, f"channel.{name}.unit": "u"})
    return params


def diagnostics_values(messages, node_name="forecaster_node"):
    """Key/value dict of the newest diagnostics status of the node."""
    for array in reversed(messages):
        for status in array.status:
            if status.name.startswith(node_name):
                return {kv.key: kv.value for kv in status.values}
    return {}


def publish_when_matched(publisher, messages, pause_every=20):
    import time

    assert wait_for(lambda: publisher.get_subscription_count() > 0, 30), "the node never subscribed"
    for index, msg in enumerate(messages):
        publisher.publish(msg)
        if index % pause_every == pause_every - 1:
            time.sleep(0.02)  # keep within the subscription queue


def check_forecast(msg, channel, horizon=40):
    assert msg.channel == channel and msg.unit == "u"
    assert msg.horizon == horizon and math.isclose(msg.period_s, PERIOD_S)
    levels = np.asarray(msg.quantile_levels)
    np.testing.assert_allclose(levels, np.arange(1, 10) / 10, atol=1e-6)
    quantiles = np.asarray(msg.quantiles).reshape(horizon, 9)
    assert np.isfinite(quantiles).all()
    assert (np.diff(quantiles, axis=1) >= 0).all(), "monotone_quantiles sorts the levels"
    np.testing.assert_array_equal(np.asarray(msg.median), quantiles[:, 4])
    assert msg.context_samples > 0 and 0.0 <= msg.missing_fraction <= 1.0
    return quantiles


def test_images_in_forecast_out(ros_graph, checkpoint):
    """The plumbing end to end: Images published from this process, Forecasts received from the node."""
    channels = {"frame_width": ("camera/image_raw", "sensor_msgs/msg/Image", "width")}
    ros_graph.start("forecaster_node", ros_arguments(parameters=channel_parameters(checkpoint, channels)))
    forecasts = ros_graph.client.collect(Forecast, "forecast/frame_width")
    publisher = ros_graph.client.node.create_publisher(Image, "camera/image_raw", 100)
    images = []
    for k in range(80):
        width = 40 + int(round(8 * math.sin(2 * math.pi * k / 16)))
        image = numpy_to_image(np.zeros((4, width, 3), np.uint8), "rgb8")
        image.header.stamp = stamp_of(T0 + k * PERIOD_S)
        images.append(image)
    publish_when_matched(publisher, images)
    assert wait_for(lambda: forecasts, 60), "no Forecast received"
    msg = forecasts[-1]
    check_forecast(msg, "frame_width")
    last = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
    assert T0 + 30 * PERIOD_S <= last + 1e-6 <= T0 + 79 * PERIOD_S  # conditioned on the published grid
    assert 30 <= msg.median[0] <= 50  # a forecast of widths between 32 and 48, in their units


def test_battery_and_imu_with_jitter_a_gap_and_bad_values(ros_graph, checkpoint):
    channels = {"battery_voltage": ("battery_state", "sensor_msgs/msg/BatteryState", "voltage"),
                "accel_z": ("imu", "sensor_msgs/msg/Imu", "linear_acceleration.z")}
    ros_graph.start("forecaster_node",
                    ros_arguments(parameters=channel_parameters(checkpoint, channels, diagnostics_period_s=0.2)))
    battery = ros_graph.client.collect(Forecast, "forecast/battery_voltage")
    accel = ros_graph.client.collect(Forecast, "forecast/accel_z")
    diagnostics = ros_graph.client.collect(DiagnosticArray, "/diagnostics")
    rng = np.random.default_rng(3)
    battery_msgs, imu_msgs = [], []
    gap = range(60, 80)  # 2 s without any message
    for k in range(140):
        if k in gap:
            continue
        t = T0 + k * PERIOD_S + rng.normal(0, 0.01)
        voltage = 16.4 - 0.004 * k + 0.01 * rng.normal()
        if k in (20, 21):
            voltage = float("nan") if k == 20 else float("inf")
        b = BatteryState(voltage=voltage)
        b.header.stamp = stamp_of(t)
        battery_msgs.append(b)
        i = Imu()
        i.linear_acceleration.z = 9.81 + 0.3 * math.sin(k / 3)
        i.header.stamp = stamp_of(t)
        imu_msgs.append(i)
    late = BatteryState(voltage=16.0)
    late.header.stamp = stamp_of(T0 + 10 * PERIOD_S)  # long after slot 10 was completed
    # the writers keep every message until acknowledged: with a history of 100 the first of these 121 were
    # overwritten whenever the node's reader had not discovered the writer yet
    publish_when_matched(ros_graph.client.node.create_publisher(BatteryState, "battery_state", 200),
                         battery_msgs + [late])
    publish_when_matched(ros_graph.client.node.create_publisher(Imu, "imu", 200), imu_msgs)

    assert wait_for(lambda: battery and accel, 60), "no forecasts"
    for msg, channel in ((battery[-1], "battery_voltage"), (accel[-1], "accel_z")):
        check_forecast(msg, channel)
    assert 15.0 < battery[-1].median[0] < 17.5
    assert battery[-1].missing_fraction > 0  # the gap and the bad values are missing samples

    def counted():
        values = diagnostics_values(diagnostics)
        return (int(values.get("counts.missing_slots.battery_voltage", 0)) >= 20
                and int(values.get("drops.nonfinite", 0)) == 2 and int(values.get("drops.late", 0)) == 1)
    assert wait_for(counted, 20), diagnostics_values(diagnostics)
    values = diagnostics_values(diagnostics)
    assert int(values["counts.received.battery_voltage"]) == len(battery_msgs) + 1
    assert values["device"] == "cpu" and values["model"].endswith("model.ckpt")


@pytest.mark.parametrize("override, message", [
    ({"channel.battery_voltage.field": "voltagee"}, "parameter 'channel.battery_voltage.field'.*no field 'voltagee'"),
    ({"channel.battery_voltage.type": "sensor_msgs/msg/Battery"}, "parameter 'channel.battery_voltage.type'"),
    ({"period_s": -1.0}, "parameter 'period_s': must be positive"),
    ({"horizonn": 5}, "parameter 'horizonn': unknown parameter"),
])
def test_bad_configuration_fails_at_start_naming_the_parameter(ros_graph, checkpoint, override, message):
    channels = {"battery_voltage": ("battery_state", "sensor_msgs/msg/BatteryState", "voltage")}
    process = ros_graph.start("forecaster_node", ros_arguments(
        parameters={**channel_parameters(checkpoint, channels), **override}), expect_exit=True)
    assert process.process.wait(60) == 2
    import re
    assert re.search(message, process.output()), process.output()


def test_checkpoint_with_a_missing_key_names_file_and_key(ros_graph, checkpoint, tmp_path):
    import torch

    payload = torch.load(checkpoint, weights_only=True)
    del payload["state_dict"]["blocks.1.norm_ffn.weight"]
    broken = tmp_path / "broken.ckpt"
    torch.save(payload, broken)
    channels = {"battery_voltage": ("battery_state", "sensor_msgs/msg/BatteryState", "voltage")}
    params = {**channel_parameters(checkpoint, channels), "checkpoint": str(broken)}
    process = ros_graph.start("forecaster_node", ros_arguments(parameters=params), expect_exit=True)
    assert process.process.wait(60) == 2
    output = process.output()
    assert "parameter 'checkpoint'" in output and str(broken) in output
    assert "blocks.1.norm_ffn.weight" in output
