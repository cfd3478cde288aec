"""ChannelBank without DDS: accounting under every drop reason, shared sources, clocks, anomalies, the state
file, CPU fallback and the report, on a tiny random TiRex and plain message objects."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from support_tirex import random_tirex

from xlstm_ros.engines.anomalies import MIN_CALIBRATION, AnomalyDetector, AnomalyRule, ForecastBand
from xlstm_ros.engines.channels import BankSettings, ChannelBank, ChannelSpec, FieldPath
from xlstm_ros.engines.forecaster import StreamingForecaster
from xlstm_ros.models.tirex import TiRexConfig
from xlstm_ros.nodes.diagnostics import NodeHealth

TINY = TiRexConfig(embedding_dim=32, num_blocks=1, num_heads=2, input_ff_dim=64, train_ctx_len=256)
PERIOD_S = 0.1
T0 = 1000.0  # first stamp: grid slot 10000
BATTERY = "/battery_state"
BATTERY_TYPE = "sensor_msgs/msg/BatteryState"
VOLTAGE = FieldPath("voltage", (("voltage", None),))


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return random_tirex(TINY, precision="fp32", backend="torch")


def engine_of(model) -> StreamingForecaster:
    return StreamingForecaster(model, model_name="tiny")


class Node:
    """What the node gives the bank: health, logs, a settable receive clock, and the published outputs."""

    def __init__(self):
        self.health = NodeHealth()
        self.logs: list[tuple[str, str]] = []
        self.warnings: list[tuple[str, str]] = []  # (cause, message) of throttled warnings
        self.forecasts = []
        self.anomalies = []
        self.now_s = 5000.0

    def info(self, message):
        self.logs.append(("info", message))

    def warning(self, message):
        self.logs.append(("warning", message))

    def error(self, message):
        self.logs.append(("error", message))

    def bank(self, model, specs, engine=None, cpu_engine=None, **settings) -> ChannelBank:
        return ChannelBank(specs, engine or engine_of(model), BankSettings(**{"period_s": PERIOD_S, "horizon": 8,
                                                                              **settings}),
                           health=self.health, log=self, warn=lambda cause, message: self.warnings.append(
                               (cause, message)), receive_time_s=lambda: self.now_s,
                           publish_forecast=self.forecasts.append, publish_anomaly=self.anomalies.append,
                           cpu_engine=cpu_engine)


def voltage_channel(name="voltage", topic=BATTERY, **kwargs) -> ChannelSpec:
    return ChannelSpec(name, topic, BATTERY_TYPE, VOLTAGE, unit="V", **kwargs)


def stamped(t: float, frame_id="battery", **fields) -> SimpleNamespace:
    sec = math.floor(t)
    stamp = SimpleNamespace(sec=sec, nanosec=round((t - sec) * 1e9))
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp, frame_id=frame_id), **fields)


def sine(k: int) -> float:
    return 16.0 + 0.5 * math.sin(k / 4)


def feed(bank: ChannelBank, first: int, count: int, value=sine, source=None) -> None:
    """Battery messages for slots 10000 + first ... (one per period)."""
    for k in range(first, first + count):
        bank.receive(source or bank.sources[0], stamped(T0 + k * PERIOD_S, voltage=value(k)))


def assert_accounted(report: dict) -> None:
    """received = in_state + waiting + dropped, per channel and in the sums."""
    for name, channel in report["channels"].items():
        assert channel["received"] == channel["in_state"] + channel["waiting"] + sum(channel["dropped"].values()), name
    assert report["samples"]["unexplained"] == 0


# --- intake and accounting -------------------------------------------------------------------------------

def test_a_regular_stream_is_absorbed_forecast_and_accounted(model):
    node = Node()
    bank = node.bank(model, [voltage_channel()])
    feed(bank, 0, 80)
    bank.tick()

    report = bank.report({"node": "test"}, periodic=True)
    channel = report["channels"]["voltage"]
    assert (channel["received"], channel["in_state"], channel["waiting"], channel["dropped"]) == (80, 78, 2, {})
    assert_accounted(report)
    assert report["streams"] == 1 and channel["state_bytes"] > 0 and report["level"] == "ok"
    [forecast] = node.forecasts
    assert forecast.channel == "voltage" and forecast.unit == "V" and forecast.frame_id == "battery"
    assert forecast.stamp_s == pytest.approx(T0 + 77 * PERIOD_S)  # the last absorbed slot
    assert forecast.quantiles.shape == (8, 9) and forecast.model == "tiny" and forecast.context_samples == 64  # two whole patches
    assert (np.diff(forecast.quantiles, axis=1) >= 0).all()  # monotone_quantiles sorts every step
    np.testing.assert_array_equal(forecast.median, forecast.quantiles[:, 4])
    assert forecast.last_value == pytest.approx(sine(77), abs=1e-6)
    assert report["counts"]["forecasts.voltage"] == 1 and report["counts"]["received.voltage"] == 80

    bank.tick()  # nothing new: no second forecast
    assert len(node.forecasts) == 1


def test_deferred_anchors_run_after_the_forecasts_are_published(model):
    node = Node()
    engine = StreamingForecaster(model, reanchor_every=2, loc_drift=1e9, log_scale_drift=1e9, defer_anchors=True)
    bank = node.bank(model, [voltage_channel()], engine=engine)
    feed(bank, 0, 258)                      # a full window (256) + 2: anchors at once (the stream is new)
    bank.tick()
    for patch in range(2):                  # the 2nd patch after the anchor is due for the schedule
        feed(bank, 258 + 32 * patch, 32)
        bank.tick()
    status = engine.status("voltage")
    assert status.anchors == 2 and status.patches_since_anchor == 0   # the deferred anchor ran in the tick
    report = bank.report({"node": "test"}, periodic=True)
    assert report["latency_ms"]["deferred_anchors"]["p50"] > 0 and report["errors"] == {}

    def failing(limit=None):
        raise RuntimeError("no memory")
    engine.run_deferred_anchors = failing
    feed(bank, 322, 32)
    bank.tick()
    assert node.health.errors["deferred_anchors"] == 1 and node.warnings[-1][0] == "anchor_error"
    assert len(node.forecasts) == 4         # the forecasts went out all the same


def test_unsorted_quantiles_are_published_as_the_model_made_them(model):
    node = Node()
    bank = node.bank(model, [voltage_channel()], monotone_quantiles=False)
    feed(bank, 0, 80)
    bank.tick()
    expected = engine_of(model)
    expected.observe("voltage", [np.float32(sine(k)) for k in range(78)])
    np.testing.assert_array_equal(node.forecasts[0].quantiles, expected.forecast("voltage", 8)["voltage"].quantiles)


@pytest.mark.parametrize("reason, value", [("nonfinite", math.nan), ("nonfinite", -math.inf),
                                           ("out_of_range", 1e300), ("out_of_range", -2e15)])
def test_values_the_model_cannot_take_are_dropped_by_reason(model, reason, value):
    node = Node()
    bank = node.bank(model, [voltage_channel()])
    feed(bank, 0, 40, lambda k: value if k in (10, 20) else sine(k))
    bank.tick()

    report = bank.report({"node": "test"}, periodic=True)
    assert report["channels"]["voltage"]["dropped"] == {reason: 2} and report["drops"] == {reason: 2}
    assert report["samples"] == {"received": 40, "in_state": 36, "waiting": 2, "dropped": 2, "unexplained": 0}
    assert report["level"] == "warn" and report["message"] == "2 input(s) dropped since the last report"
    assert node.warnings[0][0] == f"{reason}:{BATTERY}" and "channel 'voltage': sample dropped" in node.warnings[0][1]
    assert report["counts"]["missing_slots.voltage"] == 2  # the two slots became gaps


def test_samples_for_completed_slots_are_late(model):
    node = Node()
    bank = node.bank(model, [voltage_channel()])
    feed(bank, 0, 40)
    feed(bank, 5, 3)  # slots 5..7 are long completed
    report = bank.report({"node": "test"})
    assert report["channels"]["voltage"]["dropped"] == {"late": 3}
    assert report["samples"]["received"] == 43
    assert_accounted(report)


def test_a_zero_stamp_after_stamped_messages_is_missing_stamp_for_every_channel(model):
    node = Node()
    bank = node.bank(model, [voltage_channel(), ChannelSpec("current", BATTERY, BATTERY_TYPE,
                                                              FieldPath("current", (("current", None),)))])
    bank.receive(bank.sources[0], stamped(T0, voltage=16.0, current=1.0))
    bank.receive(bank.sources[0], stamped(0.0, voltage=16.0, current=1.0))

    report = bank.report({"node": "test"})
    for name in ("voltage", "current"):
        assert report["channels"][name]["received"] == 2 and report["channels"][name]["dropped"] == {"missing_stamp": 1}
    assert report["drops"] == {"missing_stamp": 2} and report["topics"][BATTERY]["clock"] == "header"
    assert node.warnings == [(f"missing_stamp:{BATTERY}",
                              f"{BATTERY}: message dropped (missing_stamp): message without a header stamp")]
    assert_accounted(report)


def test_a_field_a_message_does_not_have_is_bad_field_and_other_channels_still_read(model):
    node = Node()
    spec = ChannelSpec("third", "/array", "std_msgs/msg/Float64MultiArray", FieldPath("data[2]", (("data", 2),)),
                       stamped=False)
    first = ChannelSpec("first", "/array", "std_msgs/msg/Float64MultiArray", FieldPath("data[0]", (("data", 0),)),
                        stamped=False)
    bank = node.bank(model, [first, spec])
    for k in range(4):
        node.now_s = T0 + k * PERIOD_S
        bank.receive(bank.sources[0], SimpleNamespace(data=[1.0, 2.0] if k == 2 else [1.0, 2.0, 3.0]))

    report = bank.report({"node": "test"})
    assert len(bank.sources) == 1 and report["topics"]["/array"]["clock"] == "receive"
    assert report["channels"]["third"]["dropped"] == {"bad_field": 1} and report["channels"]["first"]["dropped"] == {}
    assert report["channels"]["first"]["received"] == report["channels"]["third"]["received"] == 4
    assert "cannot read 'data[2]': list index out of range" in node.warnings[0][1]
    assert_accounted(report)


def test_a_segment_the_engine_refuses_is_engine_error(model, monkeypatch):
    node = Node()
    bank = node.bank(model, [voltage_channel()])
    feed(bank, 0, 20)

    def refuse(name, values):
        raise RuntimeError("engine refused")

    monkeypatch.setattr(bank.engine, "observe", refuse)
    bank.tick()
    report = bank.report({"node": "test"}, periodic=True)
    assert report["channels"]["voltage"]["dropped"] == {"engine_error": 18} and report["errors"] == {"engine": 1}
    assert report["level"] == "error" and report["channels"]["voltage"]["in_state"] == 0
    assert node.warnings[0][0] == "engine_error" and "engine refused" in node.warnings[0][1]
    assert_accounted(report)


def test_messages_lost_by_dds_are_counted_per_topic_not_as_samples(model):
    node = Node()
    bank = node.bank(model, [voltage_channel()])
    bank.receive(bank.sources[0], stamped(T0, voltage=16.0))
    bank.receive(bank.sources[0], stamped(T0 + PERIOD_S, voltage=16.0), lost=3)

    report = bank.report({"node": "test"})
    assert report["topics"][BATTERY]["dds_lost"] == 3 and report["drops"] == {"dds_lost": 3}
    assert report["samples"] == {"received": 2, "in_state": 0, "waiting": 2, "dropped": 0, "unexplained": 0}


def test_channels_of_one_topic_and_type_share_one_source(model):
    node = Node()
    current = ChannelSpec("current", BATTERY, BATTERY_TYPE, FieldPath("current", (("current", None),)))
    other_type = ChannelSpec("level", BATTERY, "std_msgs/msg/Float64", FieldPath("data", (("data", None),)))
    elsewhere = voltage_channel("backup", topic="/backup_battery")
    bank = node.bank(model, [voltage_channel(), current, other_type, elsewhere])

    assert [(s.topic, s.type_name, [c.name for c in s.channels]) for s in bank.sources] == [
        (BATTERY, BATTERY_TYPE, ["voltage", "current"]), (BATTERY, "std_msgs/msg/Float64", ["level"]),
        ("/backup_battery", BATTERY_TYPE, ["backup"])]
    bank.receive(bank.sources[0], stamped(T0, voltage=16.0, current=2.0))
    bank.receive(bank.sources[0], stamped(T0, voltage=16.1, current=2.1))  # the same stamp again

    report = bank.report({"node": "test"})
    assert {name: entry["received"] for name, entry in report["channels"].items()} == {
        "voltage": 2, "current": 2, "level": 0, "backup": 0}
    assert report["counts"]["messages./battery_state"] == 2  # one count per message, not per channel
    assert (bank.sources[0].messages, bank.sources[0].duplicate_stamps, bank.sources[1].messages) == (2, 1, 0)
    with pytest.raises(ValueError, match="'voltage' twice"):
        node.bank(model, [voltage_channel(), voltage_channel()])


def test_a_first_message_without_stamp_puts_the_topic_on_the_receive_clock(model):
    node = Node()
    bank = node.bank(model, [voltage_channel()])
    for k in range(40):
        node.now_s = 2000.0 + k * PERIOD_S
        bank.receive(bank.sources[0], stamped(0.0 if k == 0 else T0 + k * PERIOD_S, voltage=sine(k)))
    bank.tick()

    assert node.logs == [("warning", (f"{BATTERY}: the first message has no header stamp; "
                                      "using the receive time for this topic"))]
    assert bank.report({"node": "test"})["topics"][BATTERY]["clock"] == "receive"
    assert node.forecasts[0].stamp_s == pytest.approx(2000.0 + 37 * PERIOD_S)  # receive times, not the stamps


def test_publishers_of_another_type_are_counted_once_and_reported(model):
    node = Node()
    bank = node.bank(model, [voltage_channel()])
    source = bank.sources[0]
    bank.update_publishers(source, [("sensor_msgs/BatteryState", b"a"), ("std_msgs/msg/Float64", b"b")])
    bank.update_publishers(source, [("std_msgs/msg/Float64", b"b"), ("std_msgs/msg/String", b"c")])
    topic = bank.report({"node": "test"})["topics"][BATTERY]
    assert topic["publishers"] == 0 and topic["foreign_types"] == ["std_msgs/msg/Float64", "std_msgs/msg/String"]
    assert node.health.counts["type_mismatch_publishers"] == 2
    assert node.logs == [("warning", f"{BATTERY}: no publisher of {BATTERY_TYPE} left")]
    assert node.warnings[-1] == (f"type_mismatch:{BATTERY}", (
        f"{BATTERY}: publisher(s) of type std_msgs/msg/Float64, std_msgs/msg/String cannot reach channel(s) "
        f"['voltage'], which expect {BATTERY_TYPE} (DDS type mismatch)"))


# --- anomalies -------------------------------------------------------------------------------------------

SINGLE = AnomalyRule(margin=0.5, consecutive=1, calibration_window=0)  # every out-of-band observation


def detector(rule: AnomalyRule = SINGLE) -> AnomalyDetector:
    """A detector whose band covers slots 101 and 102 (widths 1 and 2)."""
    found = AnomalyDetector("voltage", PERIOD_S, rule)
    found.band = ForecastBand(made_at=100, quantiles=np.array([[0.0, 0.5, 1.0], [10.0, 11.0, 12.0]]),
                              levels=(0.1, 0.5, 0.9))
    return found


def test_observations_outside_the_widened_band_are_anomalies():
    events = detector().check(100, np.array([99.0, 1.4, 13.5, math.nan, 99.0]), frame_id="base")
    # slot 100 is the forecast's own slot and 104 is beyond its horizon; 1.4 is within the margin
    [event] = events
    assert (event.channel, event.frame_id, event.steps_ahead, event.value) == ("voltage", "base", 2, 13.5)
    assert (event.lower, event.upper, event.lower_level, event.upper_level) == (10.0, 12.0, 0.1, 0.9)
    assert event.stamp_s == pytest.approx(10.2) and event.score == pytest.approx(0.25)  # (13.5 - 13) / 2

    [low] = detector().check(101, np.array([-0.7]))
    [high] = detector().check(102, np.array([13.2, 13.0]))  # 13.0: beyond the horizon
    assert (low.value, low.score, low.steps_ahead) == (-0.7, pytest.approx(0.2), 1)
    assert (high.value, high.score, high.steps_ahead) == (13.2, pytest.approx(0.1), 2)
    no_margin = detector(AnomalyRule(margin=0.0, consecutive=1, calibration_window=0))
    assert [e.value for e in no_margin.check(101, np.array([1.4, 12.0]))] == [1.4]  # no margin: 1.4 is out


def test_a_run_of_consecutive_out_of_band_observations_raises_one_event():
    found = detector(AnomalyRule(margin=0.5, consecutive=3, calibration_window=0))
    found.band = ForecastBand(made_at=0, quantiles=np.tile([[0.0, 0.5, 1.0]], (20, 1)), levels=(0.1, 0.5, 0.9))
    values = np.array([3.0, 3.0, 0.5, 3.0, math.nan, 3.0, 3.0, 3.0, 3.0, 0.5, 3.0, 3.0])
    events = found.check(1, values)          # slots 1..12: runs of 2, then 5 (NaN leaves the run), then 2
    assert [round(e.stamp_s / PERIOD_S) for e in events] == [7]   # the third of 4, 6, 7 (slot 5 is NaN)
    assert found.run == 2 and found.check(13, np.array([3.0]))[0].stamp_s == pytest.approx(1.3)
    found.restart()
    assert found.band is None and found.run == 0 and found.check(14, np.array([3.0] * 5)) == []


def test_over_confident_forecasts_widen_the_threshold_to_their_recent_exceedances():
    rule = AnomalyRule(margin=0.5, consecutive=1, calibration_window=200)
    found = detector(rule)
    found.band = ForecastBand(made_at=0, quantiles=np.tile([[0.0, 0.5, 1.0]], (400, 1)), levels=(0.1, 0.5, 0.9))
    assert found.threshold() == math.inf                  # warming up: no events before MIN_CALIBRATION
    ordinary = 1.0 + np.random.default_rng(0).uniform(0.0, 0.8, 300)   # up to 0.8 widths above the band
    assert found.check(1, ordinary[:MIN_CALIBRATION - 1]) == [] and found.threshold() == math.inf
    events = found.check(MIN_CALIBRATION, ordinary[MIN_CALIBRATION - 1:])
    assert len(events) <= 3                                # the margin alone would flag most of them
    assert 0.75 < found.threshold() <= 0.8                 # the band is widened to what they miss by
    assert detector(AnomalyRule(margin=0.5, consecutive=1, calibration_window=0)).threshold() == 0.5
    assert found.check(301, np.array([1.75])) == []        # within what the recent forecasts missed by
    threshold = found.threshold()
    [fault] = found.check(302, np.array([3.0]))
    assert fault.score == pytest.approx(2.0 - threshold)
    with pytest.raises(ValueError, match="consecutive >= 1"):
        AnomalyRule(consecutive=0)


def test_the_bank_checks_new_observations_against_its_last_forecast(model):
    node = Node()
    bank = node.bank(model, [voltage_channel()], anomalies=SINGLE)
    feed(bank, 0, 80)
    bank.tick()
    [first] = node.forecasts  # made after slot 77: rows are slots 78..85
    median, lower, upper = first.median, first.quantiles[:, 0], first.quantiles[:, -1]
    spike = float(upper[6] + 3 * (upper[6] - lower[6]) + 1.0)
    values = {k: float(median[k - 78]) for k in range(80, 86)} | {84: spike, 86: 16.0}
    feed(bank, 80, 7, values.get)  # completes the slots up to 84
    bank.tick()

    anomalous = {round(event.stamp_s / PERIOD_S) - 10000: event for event in node.anomalies}
    assert 84 in anomalous and not set(anomalous) & {80, 81, 82, 83}  # the medians are inside the band
    assert set(anomalous) <= {78, 79, 84}  # the sine's last two samples may or may not be
    event = anomalous[84]
    assert (event.value, event.steps_ahead, event.frame_id) == (pytest.approx(spike), 7, "battery")
    assert (event.lower, event.upper) == (pytest.approx(lower[6]), pytest.approx(upper[6]))
    assert node.health.counts["anomalies.voltage"] == len(node.anomalies)
    assert len(node.forecasts) == 2  # the new forecast is the band for the next observations


# --- state file ------------------------------------------------------------------------------------------

def test_a_saved_bank_resumes_exactly_where_it_stopped(model, tmp_path):
    path = tmp_path / "streams.pt"
    first_node, second_node = Node(), Node()
    first = first_node.bank(model, [voltage_channel()])
    feed(first, 0, 80)
    first.tick()
    first.save_state(path)  # completes the two waiting slots
    assert first_node.logs[-1] == ("info", f"saved 1 stream state(s) to {path}")
    assert first.report({"node": "test"})["channels"]["voltage"]["in_state"] == 80

    second = second_node.bank(model, [voltage_channel()])
    second.restore_state(path)
    assert second_node.logs == [("info", f"resumed 1 stream(s) from {path}")]
    resumed, saved = second.channels["voltage"], first.channels["voltage"]
    assert (resumed.grid.next_slot, resumed.origin_slot, resumed.frame_id, resumed.last_value) == (
        10080, 10000, "battery", saved.last_value)
    assert resumed.source.clock == "header" and second.engine.status("voltage").samples == 80

    for bank in (first, second):
        feed(bank, 83, 30)  # three slots missed meanwhile; a new patch completes
        bank.tick()
    np.testing.assert_array_equal(second_node.forecasts[0].quantiles, first_node.forecasts[-1].quantiles)
    assert second_node.forecasts[0].context_samples == 96
    report = second.report({"node": "test"})
    assert report["counts"]["missing_slots.voltage"] == 3 and report["samples"]["received"] == 30
    assert_accounted(report)


def test_a_channel_that_reads_another_field_now_restarts(model, tmp_path):
    path = tmp_path / "streams.pt"
    first = Node().bank(model, [voltage_channel()])
    feed(first, 0, 40)
    first.save_state(path)
    node = Node()
    changed = node.bank(model, [ChannelSpec("voltage", BATTERY, BATTERY_TYPE, FieldPath("current", (("current", None),)))])
    changed.restore_state(path)
    assert node.logs == [("info", f"resumed 0 stream(s) from {path}")]
    assert changed.engine.status("voltage").samples == 0 and changed.channels["voltage"].grid.next_slot is None


@pytest.mark.parametrize("problem", ["corrupt", "period", "foreign"])
def test_an_unusable_state_file_is_reported_and_the_bank_starts_fresh(model, tmp_path, problem):
    path = tmp_path / "streams.pt"
    saver = Node().bank(model, [voltage_channel()])
    feed(saver, 0, 40)
    if problem == "corrupt":
        path.write_bytes(b"not a checkpoint")
        expected = "streams.pt"
    elif problem == "period":
        saver.save_state(path)
        expected = "saved with period_s 0.1, the node runs 0.2"
    else:
        saver.engine.save(path)
        expected = "not a forecaster_node state (expected format xlstm_ros.forecaster_node/1)"

    node = Node()
    bank = node.bank(model, [voltage_channel()], period_s=0.2 if problem == "period" else PERIOD_S)
    bank.restore_state(path)
    [(level, message)] = node.logs
    assert level == "error" and message.startswith(f"cannot resume from state_file '{path}', starting fresh: ")
    assert expected in message
    assert node.health.errors == {"state_restore": 1} and bank.engine.stream_names() == []
    assert bank.channels["voltage"].grid.next_slot is None


def test_a_missing_state_file_is_a_first_start_and_an_unwritable_one_is_counted(model, tmp_path):
    node = Node()
    bank = node.bank(model, [voltage_channel()])
    bank.restore_state(tmp_path / "none.pt")
    assert node.logs == [] and node.health.errors == {}

    blocker = tmp_path / "file"
    blocker.write_text("")
    feed(bank, 0, 40)
    bank.save_state(blocker / "streams.pt")
    assert node.health.errors == {"state_save": 1}
    assert node.logs[-1][0] == "error" and f"cannot save the streams to state_file '{blocker / 'streams.pt'}'" in \
        node.logs[-1][1]


# --- faults ----------------------------------------------------------------------------------------------

def out_of_memory(*args, **kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_moves_the_streams_to_a_cpu_engine(model):
    node = Node()
    cpu = engine_of(model)
    bank = node.bank(model, [voltage_channel()], cpu_engine=lambda: cpu)
    failing = bank.engine
    failing.forecast = out_of_memory
    feed(bank, 0, 80)
    bank.tick()

    assert bank.engine is cpu and cpu.status("voltage").samples == 78 and len(node.forecasts) == 1
    assert bank.device_fallback == ("out of memory on cpu (CUDA out of memory. Tried to allocate 2.00 GiB); "
                                    "running on the CPU")
    assert node.health.counts["cpu_fallbacks"] == 1 and node.health.errors == {"out_of_memory": 1}
    assert bank.identity()["device_fallback"] == bank.device_fallback


def test_out_of_memory_without_a_cpu_engine_is_counted_and_the_next_tick_retries(model):
    node = Node()
    bank = node.bank(model, [voltage_channel()])
    bank.engine.forecast = out_of_memory
    feed(bank, 0, 80)
    bank.tick()
    assert node.forecasts == [] and node.health.errors == {"out_of_memory": 1}
    assert node.warnings[0][0] == "out_of_memory"
    del bank.engine.forecast
    bank.tick()
    assert len(node.forecasts) == 1 and bank.device_fallback == ""


# --- report ----------------------------------------------------------------------------------------------

def test_the_report_has_every_documented_key(model):
    node = Node()
    bank = node.bank(model, [voltage_channel()])
    feed(bank, 0, 80)
    bank.tick()
    identity = {"node": "/forecaster_node", **bank.identity(), "qos": "reliable/keep_all"}
    report = bank.report(identity, periodic=True)

    assert list(report)[:9] == ["node", "model", "device", "backend", "precision", "device_fallback", "period_s",
                                "horizon", "qos"]
    assert set(report) == {*identity, "uptime_s", "counts", "rates_hz", "drops", "errors", "latency_ms", "level",
                           "message", "samples", "streams", "state_bytes", "topics", "channels"}
    assert (report["model"], report["device"], report["backend"], report["precision"]) == ("tiny", "cpu", "torch",
                                                                                            "fp32")
    assert (report["period_s"], report["horizon"], report["device_fallback"]) == (PERIOD_S, 8, "")
    assert set(report["counts"]) == {"messages./battery_state", "forecasts.voltage", "received.voltage"}
    assert set(report["rates_hz"]) == {"messages./battery_state", "forecasts.voltage"}
    assert set(report["latency_ms"]["forecast"]) == {"p50", "p90", "p99"}
    assert set(report["samples"]) == {"received", "in_state", "waiting", "dropped", "unexplained"}
    assert set(report["topics"][BATTERY]) == {"type", "channels", "clock", "messages", "dds_lost",
                                              "duplicate_stamps", "publishers", "foreign_types"}
    assert set(report["channels"]["voltage"]) == {"topic", "received", "in_state", "waiting", "dropped",
                                                  "state_bytes"}
    assert report["state_bytes"] == report["channels"]["voltage"]["state_bytes"] > 0
