"""forecaster_node: probabilistic forecasts of any numeric field of any message type, with TiRex.

Each configured channel reads one numeric field (`voltage`, `linear_acceleration.z`, `data[0]`) of the
messages on a topic, puts the samples on the channel's period grid by header stamp and feeds them to a
StreamingForecaster, which keeps one persistent recurrent state per channel. At `forecast_rate_hz` the node
publishes `forecast/<channel>` (xlstm_ros_msgs/Forecast) for every channel with new data, and an
`anomalies` event (xlstm_ros_msgs/Anomaly) when `anomaly_consecutive` observations in a row fall outside the
band that an earlier forecast predicted for them (widened by `anomaly_margin`, or more when the channel's
recent observations show the band is too narrow: engines/anomalies.py). The channel bookkeeping lives in
xlstm_ros.engines.channels; this node is its parameters, subscriptions, timers and messages.

Intake. Channels that read the same topic with the same type share ONE subscription (200 channels from
the 200 entries of one Float64MultiArray cost one subscription). One thread runs all callbacks
(SingleThreadedExecutor), so model operations never wait for the GIL: while a forecast tick runs, messages
wait in the DDS queue (keep_all loses none) and the status service answers after it. The sample time is
the header stamp; a topic whose first message has no stamp (zero), or a type without a header, uses the
receive time for good; a zero stamp after stamped messages is dropped ("missing_stamp").

QoS. Default reliable + keep_all, so that DDS cannot drop samples: reliable makes DDS resend what the
network lost, keep_all never overwrites a queued message, so a busy node falls behind instead of losing
samples. The back-pressure: the queue grows while the node is behind, up to the DDS resource limits;
then the publisher's writes block (its own history decides what it keeps). A best-effort publisher
(sensor-data QoS) cannot match a reliable subscription: the node counts that (counts.incompatible_qos)
and logs a warning naming qos_reliability; with qos_reliability best_effort it matches, but DDS may lose
messages (a best-effort reader also discards what arrives before it has discovered the publisher).
Whatever the QoS, messages lost between a publisher and the node after the first one received from it
are counted as dds_lost (gaps in the publishers' sequence numbers); only a loss at the very end of a
publisher's life cannot be seen.

Accounting. For every channel at every report:
    received = in_state + waiting + sum(dropped by reason)
where a "sample" is one channel's value of one received message; in_state = samples merged into grid
slots that the engine absorbed, waiting = samples in slots not absorbed yet. Drop reasons (per sample):
nonfinite (NaN, inf), out_of_range (|value| > max_abs_value: 1e300 does not fit the float32 model),
late (slot already completed), missing_stamp, bad_field (for example data[5] of a 3-element array),
engine_error; per message: dds_lost. `samples.unexplained` is received - in_state - waiting - dropped.

Type mismatch. A publisher of another type on a channel's topic never reaches the callback (DDS does
not match it, and this RMW raises no incompatible-type event), so the node checks the topic's publishers
every diagnostics period and reports and logs foreign types (counted in counts.type_mismatch_publishers).

Faults. An unusable CUDA device falls back to the CPU with a warning when `fallback_to_cpu` (else the node
exits naming `device`); a CUDA out-of-memory error during a forecast moves the engine with its streams to
the CPU and retries (counts.cpu_fallbacks, errors.out_of_memory), or without fallback is counted and the
node keeps serving. With `state_file` the node completes every open slot on shutdown (SIGINT), saves the
streams and the grid positions, and resumes from them at start: forecasts continue without a warm-up and
the time between the runs becomes missing samples (or a stream restart after more than the model context).

Status. Every `diagnostics_period_s` the node publishes the same report on /diagnostics (flattened
keys, without the per-channel section) and as JSON in xlstm_ros_msgs/NodeStatus on `~/status`
(transient local); `~/get_status` (xlstm_ros_msgs/srv/GetStatus) returns a fresh one. Keys:
  node, model, device, backend, precision, device_fallback ("" or why the node runs on the CPU),
  period_s, horizon, qos, uptime_s, level (ok|warn|error), message
  counts.<name>        received.<ch>, forecasts.<ch>, anomalies.<ch>, missing_slots.<ch>, stream_resets,
                       messages.<topic>, cpu_fallbacks, type_mismatch_publishers, incompatible_qos
  rates_hz.<name>      those counters per second over 5 s (all but received.<ch>)
  drops.<reason>       all channels together (dds_lost in messages, the others in samples)
  errors.<kind>        forecast, out_of_memory, engine, state_restore, state_save
  latency_ms.forecast.{p50,p90,p99}   one forecast tick (absorb + model + publish)
  samples.{received,in_state,waiting,dropped,unexplained}   sums over the channels
  streams, state_bytes  engine streams and the bytes of their saved state (per stream it grows with the
                       first train_ctx_len + 32 samples, its ring, and then stays: O(1) per stream)
  topics.<topic>.{type,channels,clock,messages,dds_lost,duplicate_stamps,publishers,foreign_types}
  channels.<ch>.{topic,received,in_state,waiting,dropped.<reason>,state_bytes}   (JSON only)
"""
from __future__ import annotations

import math
import re
import sys

import numpy as np
import rclpy
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from xlstm_ros_msgs.msg import Anomaly, Forecast

from xlstm_ros.engines.anomalies import AnomalyEvent, AnomalyRule
from xlstm_ros.engines.channels import BankSettings, ChannelBank, ChannelForecast, ChannelSpec, Source, \
    canonical_type
from xlstm_ros.engines.device import BACKENDS, DEVICES_HELP, DeviceError
from xlstm_ros.engines.forecaster import STEP_PATHS, StreamingForecaster
from xlstm_ros.models.checkpoints import CheckpointError
from xlstm_ros.nodes.diagnostics import NodeHealth, PublicationGaps, StatusOutputs, ThrottledLog, \
    release_free_memory
from xlstm_ros.nodes.fields import FieldPathError, compile_field_path, has_header, import_message_type
from xlstm_ros.nodes.params import Param, ParameterError, at_least, declare_all, one_of, positive, \
    reject_unknown

CHANNEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

NODE_PARAMS = [
    Param("channels", [], "names of the channels to forecast; each needs channel.<name>.topic, .type, .field",
          lambda names: _check_channel_names(names), string_array=True),
    Param("period_s", 0.1, "sampling period of the forecast grid in seconds", positive),
    Param("horizon", 64, "forecast steps (periods) ahead", lambda h: None if 1 <= h <= 8192 else "must be 1..8192"),
    Param("forecast_rate_hz", 2.0, "how often forecasts are published for channels with new data", positive),
    Param("checkpoint", "", "TiRex checkpoint (official model.ckpt format); empty = the shipped default model"),
    Param("device", "auto", f"inference device: {DEVICES_HELP}"),
    Param("fallback_to_cpu", True, "run on the CPU with a warning when the requested CUDA device is unusable "
          "or runs out of memory"),
    Param("backend", "auto", "recurrent kernels: auto (Triton on CUDA), triton or torch", one_of(*BACKENDS)),
    Param("precision", "fp32", "fp32 or bf16-compatible (rounds like the official TiRex torch backend)",
          one_of("fp32", "bf16-compatible")),
    Param("reanchor_every", 16, "recompute a stream's state from its ring buffer every this many patches",
          at_least(1)),
    Param("defer_anchors", True, "publish a due stream's forecast from its step and run the re-anchoring pass "
          "after publishing (lower latency; the forecast uses the previous anchor's statistics for that patch)"),
    Param("step_path", "packed", "how streams step between anchors: packed (fused products, no row padding; "
          "float32 rounding away from a full pass), packed-bf16 (bfloat16 weights) or exact (bitwise a full "
          "pass, about 2x slower on a CPU)", one_of(*STEP_PATHS)),
    Param("lateness_s", -1.0, "how late a sample may arrive and still count for its slot; < 0 = one period"),
    Param("max_abs_value", 1e15, "samples of larger magnitude are dropped as out_of_range (the model computes "
          "in float32)", positive),
    Param("anomaly_margin", 0.5, "an observation is out of band beyond the outer quantile band widened by at least "
          "this fraction of the band's width on each side", at_least(0.0)),
    Param("anomaly_consecutive", 3, "out-of-band observations in a row that raise one anomaly event", at_least(1)),
    Param("anomaly_calibration_window", 600, "recent observations per channel whose 99th-percentile "
          "exceedance widens the band when the forecasts are over-confident (0: margin only)", at_least(0)),
    Param("monotone_quantiles", True, "sort each step's quantiles so that they never cross (TiRex does not "
          "guarantee monotone quantiles; sorting never increases the quantile loss)"),
    Param("qos_reliability", "reliable", "subscription reliability: reliable loses nothing between a reliable "
          "publisher and the node; best_effort also matches best-effort publishers (sensor-data QoS) but DDS "
          "may lose messages", one_of("reliable", "best_effort")),
    Param("qos_history", "keep_all", "subscription history: keep_all never overwrites a queued message (a busy "
          "node falls behind instead of losing samples), keep_last keeps the newest qos_depth",
          one_of("keep_all", "keep_last")),
    Param("qos_depth", 100, "subscription queue depth for keep_last", at_least(1)),
    Param("state_file", "", "save the streams' state here on shutdown and resume from it at start; empty = off"),
    Param("diagnostics_period_s", 1.0, "how often /diagnostics and ~/status are published", positive),
]


def _check_channel_names(names: list[str]) -> str | None:
    bad = [name for name in names if not CHANNEL_NAME.match(name)]
    if bad:
        return f"channel names must be letters, digits and _ starting with a letter: {bad}"
    if len(set(names)) != len(names):
        return "channel names must be unique"
    return None


class ForecasterNode(Node):
    def __init__(self, **kwargs):
        super().__init__("forecaster_node", **kwargs)
        self.health = NodeHealth()
        self.warn = ThrottledLog(self.get_logger().warning)
        self.config = c = declare_all(self, NODE_PARAMS)
        specs, self._subscribed_names = self._declare_channels(c["channels"])
        reject_unknown(self)
        engine, device_fallback = self._load_engine(c["device"])
        settings = BankSettings(
            period_s=c["period_s"], horizon=c["horizon"], lateness_s=c["lateness_s"] if c["lateness_s"] >= 0 else None,
            max_abs_value=c["max_abs_value"],
            anomalies=AnomalyRule(c["anomaly_margin"], c["anomaly_consecutive"], c["anomaly_calibration_window"]),
            monotone_quantiles=c["monotone_quantiles"], figures_period_s=c["diagnostics_period_s"])
        self.bank = ChannelBank(
            specs, engine, settings, health=self.health, log=self.get_logger(), warn=self.warn,
            receive_time_s=lambda: self.get_clock().now().nanoseconds * 1e-9,
            publish_forecast=self._publish_forecast, publish_anomaly=self._publish_anomaly,
            cpu_engine=self._load_cpu_engine if c["fallback_to_cpu"] else None, device_fallback=device_fallback)
        self.gaps = PublicationGaps()
        if c["state_file"]:
            self.bank.restore_state(c["state_file"])

        for source in self.bank.sources:
            self.create_subscription(
                import_message_type(source.type_name), self._subscribed_names[source.topic],
                lambda msg, info, s=source: self.bank.receive(s, msg, self.gaps.lost(info)), self._intake_qos(),
                event_callbacks=SubscriptionEventCallbacks(
                    incompatible_qos=lambda event, s=source: self._on_incompatible_qos(s, event)))
        self.forecast_publishers = {name: self.create_publisher(Forecast, f"forecast/{name}", 10)
                                    for name in self.bank.channels}
        self.anomaly_publisher = self.create_publisher(Anomaly, "anomalies", 10)
        self.outputs = StatusOutputs(self, "forecaster", self.report, lambda key: key != "channels")
        self.create_timer(1.0 / c["forecast_rate_hz"], self.bank.tick)
        self.create_timer(c["diagnostics_period_s"], self._publish_status)
        self.get_logger().info(
            f"forecasting {len(self.bank.channels)} channel(s) from {len(self.bank.sources)} subscription(s) "
            f"every {c['period_s']} s, horizon {c['horizon']}, model {engine.model_name} "
            f"on {engine.device} ({engine.backend})")

    @property
    def engine(self) -> StreamingForecaster:
        """The channel bank's forecaster (a new one after a move to the CPU)."""
        return self.bank.engine

    # --- start-up ----------------------------------------------------------------------------------
    def _declare_channels(self, names: list[str]) -> tuple[list[ChannelSpec], dict[str, str]]:
        """Declare and check channel.<name>.* for every channel: the channels, and for each resolved topic
        the name to subscribe with (as configured: remapping applies to it)."""
        specs, subscribed_names = [], {}
        for name in names:
            prefix = f"channel.{name}."
            values = declare_all(self, [
                Param(prefix + "topic", "", "topic to subscribe to", lambda t: None if t else "is required"),
                Param(prefix + "type", "", "message type, for example sensor_msgs/msg/BatteryState",
                      lambda t: None if t else "is required"),
                Param(prefix + "field", "", "numeric field path, for example voltage or linear_acceleration.z",
                      lambda f: None if f else "is required"),
                Param(prefix + "unit", "", "unit of the values, copied into the forecasts"),
            ])
            try:
                msg_type = import_message_type(values[prefix + "type"])
            except FieldPathError as error:
                raise ParameterError(prefix + "type", str(error)) from None
            try:
                path = compile_field_path(msg_type, values[prefix + "field"])
            except FieldPathError as error:
                raise ParameterError(prefix + "field", str(error)) from None
            try:
                topic = self.resolve_topic_name(values[prefix + "topic"])
            except Exception as error:  # rclpy raises its own invalid-name types
                raise ParameterError(prefix + "topic", f"invalid topic name: {error}") from None
            specs.append(ChannelSpec(name, topic, canonical_type(values[prefix + "type"]), path,
                                     values[prefix + "unit"], has_header(msg_type)))
            subscribed_names.setdefault(topic, values[prefix + "topic"])
        return specs, subscribed_names

    def _intake_qos(self) -> QoSProfile:
        return QoSProfile(
            depth=self.config["qos_depth"],
            history=HistoryPolicy.KEEP_ALL if self.config["qos_history"] == "keep_all" else HistoryPolicy.KEEP_LAST,
            reliability=(ReliabilityPolicy.RELIABLE if self.config["qos_reliability"] == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT))

    def _load_engine(self, device: str) -> tuple[StreamingForecaster, str]:
        """The forecaster on `device`, and why it runs on the CPU instead ("" when it does not)."""
        fallback = []

        def fell_back(message: str) -> None:
            fallback.append(message)
            self.get_logger().warning(message)

        try:
            engine = StreamingForecaster.from_checkpoint(
                self.config["checkpoint"] or None, device=device, backend=self.config["backend"],
                precision=self.config["precision"], fallback_to_cpu=self.config["fallback_to_cpu"],
                reanchor_every=self.config["reanchor_every"], step_path=self.config["step_path"],
                defer_anchors=self.config["defer_anchors"],
                on_fallback=fell_back)
        except DeviceError as error:
            raise ParameterError("device", str(error)) from None
        except CheckpointError as error:
            raise ParameterError("checkpoint", str(error)) from None
        return engine, fallback[-1] if fallback else ""

    def _load_cpu_engine(self) -> StreamingForecaster:
        return self._load_engine("cpu")[0]

    # --- ROS events and messages ---------------------------------------------------------------------
    def _on_incompatible_qos(self, source: Source, event) -> None:
        self.health.count("incompatible_qos", event.total_count_change)
        self.warn(f"incompatible_qos:{source.topic}",
                  f"{source.topic}: a publisher's QoS is incompatible with this node's "
                  f"({self.config['qos_reliability']}); its messages cannot arrive")

    def _publish_forecast(self, forecast: ChannelForecast) -> None:
        msg = Forecast()
        msg.header.stamp = _time_msg(forecast.stamp_s)
        msg.header.frame_id = forecast.frame_id
        msg.channel, msg.unit = forecast.channel, forecast.unit
        msg.period_s = forecast.period_s
        msg.horizon = int(forecast.quantiles.shape[0])
        msg.quantile_levels = [float(q) for q in forecast.quantile_levels]
        msg.quantiles = forecast.quantiles.astype(np.float32).ravel().tolist()
        msg.median = forecast.median.astype(np.float32).tolist()
        msg.context_samples = forecast.context_samples
        msg.missing_fraction = forecast.missing_fraction
        msg.last_value = forecast.last_value
        msg.model = forecast.model
        self.forecast_publishers[forecast.channel].publish(msg)

    def _publish_anomaly(self, event: AnomalyEvent) -> None:
        msg = Anomaly(channel=event.channel, value=event.value, lower=event.lower, upper=event.upper,
                      lower_level=event.lower_level, upper_level=event.upper_level, steps_ahead=event.steps_ahead,
                      score=event.score)
        msg.header.stamp = _time_msg(event.stamp_s)
        msg.header.frame_id = event.frame_id
        self.anomaly_publisher.publish(msg)

    # --- reporting -------------------------------------------------------------------------------------
    def _publish_status(self) -> None:
        for source in self.bank.sources:
            infos = self.get_publishers_info_by_topic(source.topic)
            self.bank.update_publishers(source, [(info.topic_type, bytes(info.endpoint_gid)) for info in infos])
        self.outputs.publish(self.report(periodic=True))
        release_free_memory()

    def report(self, periodic: bool = False) -> dict:
        """The status report (module docstring). `periodic`: the timer's report, which moves the mark that
        level ("warn": drops since then) compares with."""
        qos = f"{self.config['qos_reliability']}/{self.config['qos_history']}"
        return self.bank.report({"node": self.get_fully_qualified_name(), **self.bank.identity(), "qos": qos},
                                periodic=periodic)

    def save_state(self) -> None:
        """Absorb every sample (completing open slots) and save streams and grid positions to state_file."""
        if self.config["state_file"]:
            self.bank.save_state(self.config["state_file"])


def _time_msg(seconds: float):
    from builtin_interfaces.msg import Time

    whole = int(math.floor(seconds))
    return Time(sec=whole, nanosec=min(int(round((seconds - whole) * 1e9)), 999_999_999))


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = ForecasterNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except ParameterError as error:
        rclpy.logging.get_logger("forecaster_node").fatal(str(error))
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.save_state()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
