"""Fuzzing a running forecaster_node with hostile sensor streams; nothing is lost silently, nothing crashes.

Hypothesis draws message sequences: values NaN, +-inf, float32 max, 1e300 (float64 fields), tiny numbers;
stamps stepping with jitter, duplicated, zero (a missing header), slightly late, jumping back or forward by
hours; arrays too short for the configured index. Three channels read one BatteryState topic (one shared
subscription), two read a header-less Float64MultiArray (receive time). A GridResampler fed the same
samples is the oracle for the stamped channels: the node's drops by reason and its accepted samples must
equal it exactly. For every channel received = in_state + waiting + dropped. A publisher of another type
on a channel's topic (a DDS type mismatch, which never reaches a callback) is detected and reported.
Each drop cause is logged at most once per second per topic."""
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import BatteryState
from status_support import assert_throttled, log_times_by_cause
from std_msgs.msg import Float64, Float64MultiArray
from support_tirex import write_random_checkpoint
from test_forecaster_node import channel_parameters, stamp_of
from xlstm_ros_msgs.msg import Forecast

from xlstm_ros.engines.resample import GridResampler
from xlstm_ros.graph.processes import ros_arguments
from xlstm_ros.graph.spinning import wait_for
from xlstm_ros.models.tirex import TiRexConfig

pytestmark = pytest.mark.ros
PERIOD_S = 0.1
CONTEXT_S = TiRexConfig().train_ctx_len * PERIOD_S  # the node restarts a stream after a longer jump
MAX_ABS = 1e15
BATTERY = {"volt": "voltage", "cell1": "cell_voltage[1]", "temp": "temperature"}
ARRAY = {"arr0": "data[0]", "arr2": "data[2]"}

float32_values = st.one_of(st.floats(10.0, 20.0), st.sampled_from([math.nan, math.inf, -math.inf, 3.4e38, -3.4e38,
                                                                   1e-30, 0.0]))
float64_values = st.one_of(st.floats(-5.0, 5.0), st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300,
                                                                  1e16, 5e-324]))
stamp_moves = st.sampled_from(["step"] * 6 + ["duplicate", "zero", "late", "back_hours", "forward_hours"])
battery_events = st.tuples(stamp_moves, st.floats(-0.03, 0.03), float32_values,
                           st.lists(float32_values, max_size=3), float32_values)
array_events = st.lists(float64_values, max_size=4)


class Oracle:
    """What the node must do with the stamped channels: the same grids, plus missing_stamp and bad_field."""

    def __init__(self, names):
        self.grids = {name: GridResampler(PERIOD_S, lateness_s=PERIOD_S, max_gap_s=CONTEXT_S,
                                          max_jump_back_s=CONTEXT_S, max_abs=MAX_ABS) for name in names}
        self.other = {name: Counter() for name in names}
        self.received = Counter()
        self.duplicate_stamps = 0
        self._last_stamp = None

    def push(self, stamp_s: float, values: dict) -> None:
        if stamp_s > 0:
            self.duplicate_stamps += stamp_s == self._last_stamp
            self._last_stamp = stamp_s
        for name, value in values.items():
            self.received[name] += 1
            if stamp_s <= 0:
                self.other[name]["missing_stamp"] += 1
            elif value is None:
                self.other[name]["bad_field"] += 1
            else:
                self.grids[name].push(stamp_s, value)

    def dropped(self, name: str) -> dict:
        return {k: v for k, v in (self.grids[name].dropped + self.other[name]).items() if v}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("tirex"))


def test_hostile_streams_are_accounted_for_exactly(ros_graph, checkpoint):
    import rclpy

    channels = {**{name: ("/fuzz/battery", "sensor_msgs/msg/BatteryState", path) for name, path in BATTERY.items()},
                **{name: ("/fuzz/array", "std_msgs/msg/Float64MultiArray", path) for name, path in ARRAY.items()},
                "accel": ("/fuzz/imu", "sensor_msgs/msg/Imu", "linear_acceleration.z")}
    process = ros_graph.start("forecaster_node", ros_arguments(parameters=channel_parameters(
        checkpoint, channels, horizon=8, diagnostics_period_s=0.5)))
    status = ros_graph.status("forecaster_node")
    forecasts = ros_graph.client.collect(Forecast, "forecast/volt")
    battery_pub = ros_graph.client.node.create_publisher(BatteryState, "/fuzz/battery", 1000)
    array_pub = ros_graph.client.node.create_publisher(Float64MultiArray, "/fuzz/array", 1000)
    assert status.wait(90)
    assert wait_for(lambda: battery_pub.get_subscription_count() and array_pub.get_subscription_count(), 30)

    oracle = Oracle(BATTERY)
    array_expected = {name: Counter() for name in ARRAY}
    clock = {"now": 1_700_000_000.0, "sent_array": 0}

    def next_stamp(move: str, jitter: float) -> float:
        if oracle.received["volt"] == 0 or move == "step":
            clock["now"] += PERIOD_S
            return clock["now"] + jitter
        if move == "duplicate":
            return clock["now"]
        if move == "zero":
            return 0.0
        if move == "late":
            return clock["now"] - 1.0
        clock["now"] += 3 * 3600.0 * (1 if move == "forward_hours" else -1)
        return clock["now"]

    @settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(battery=st.lists(battery_events, min_size=10, max_size=60),
           arrays=st.lists(array_events, min_size=5, max_size=30))
    def send(battery, arrays):
        for move, jitter, voltage, cells, temperature in battery:
            stamp = next_stamp(move, jitter)
            msg = BatteryState(voltage=voltage, temperature=temperature, cell_voltage=cells)
            msg.header.stamp = stamp_of(stamp) if stamp > 0 else stamp_of(0.0)
            oracle.push(stamp_of_seconds(msg), {"volt": msg.voltage, "temp": msg.temperature,
                                                "cell1": msg.cell_voltage[1] if len(msg.cell_voltage) > 1 else None})
            battery_pub.publish(msg)
        for data in arrays:
            msg = Float64MultiArray(data=data)
            for name, index in (("arr0", 0), ("arr2", 2)):
                value = msg.data[index] if len(msg.data) > index else None
                reason = ("bad_field" if value is None else "nonfinite" if not math.isfinite(value)
                          else "out_of_range" if abs(value) > MAX_ABS else None)
                if reason:
                    array_expected[name][reason] += 1
            array_pub.publish(msg)
            clock["sent_array"] += 1
        report = status.wait_until(lambda r: r["channels"]["volt"]["received"] == oracle.received["volt"]
                                   and r["channels"]["arr0"]["received"] == clock["sent_array"], 60)
        check(report)

    def check(report):
        for name, entry in report["channels"].items():
            assert entry["received"] == entry["in_state"] + entry["waiting"] + sum(entry["dropped"].values()), name
        for name in BATTERY:
            entry = report["channels"][name]
            assert entry["received"] == oracle.received[name]
            assert entry["dropped"] == oracle.dropped(name), (name, entry, oracle.dropped(name))
            assert entry["in_state"] + entry["waiting"] == oracle.grids[name].accepted
        assert report["topics"]["/fuzz/battery"]["duplicate_stamps"] == oracle.duplicate_stamps
        for name in ARRAY:
            entry = report["channels"][name]
            assert entry["received"] == clock["sent_array"]
            assert entry["dropped"] == {k: v for k, v in array_expected[name].items() if v}, (name, entry)
        assert report["samples"]["unexplained"] == 0
        assert process.running

    send()

    # a publisher of another type on a channel's topic: DDS never delivers it, the node reports it
    other = rclpy.context.Context()
    rclpy.init(context=other, domain_id=ros_graph.domain_id)
    try:
        stranger = rclpy.create_node("stranger", context=other)
        stranger.create_publisher(Float64, "/fuzz/imu", 10).publish(Float64(data=1.0))
        report = status.wait_until(lambda r: r["counts"].get("type_mismatch_publishers", 0) >= 1, 30)
        assert report["topics"]["/fuzz/imu"]["foreign_types"] == ["std_msgs/msg/Float64"]
        assert report["counts"]["type_mismatch_publishers"] == 1
        assert report["channels"]["accel"]["received"] == 0
    finally:
        other.try_shutdown()
    assert wait_for(lambda: "DDS type mismatch" in process.output(), 10)

    assert all(np.isfinite(msg.quantiles).all() and np.isfinite(msg.median).all() for msg in forecasts)
    causes = log_times_by_cause(process.output(), r"^(\S+): (?:channel '\w+': sample|message) dropped \((\w+)\)")
    assert causes, "drops are logged"
    assert_throttled(causes)
    assert process.running


def stamp_of_seconds(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
