"""forecaster_node: probabilistic forecasts of any numeric field of any message type, with TiRex.

Each configured channel reads one numeric field (`voltage`, `linear_acceleration.z`, `data[0]`) of the
messages on a topic, puts the samples on the channel's period grid by header stamp and feeds them to a
StreamingForecaster, which keeps one persistent recurrent state per channel. At `forecast_rate_hz` the node
publishes `forecast/<channel>` (xlstm_ros_msgs/Forecast) for every channel with new data, and an
`anomalies` event (xlstm_ros_msgs/Anomaly) whenever an observation falls outside the band an earlier
forecast predicted for it.

Intake. Channels that read the same topic with the same type share ONE subscription (200 channels from
the 200 entries of one Float64MultiArray cost one subscription); its callback reads every channel's field
and only resamples; the forecast timer runs the model. One SingleThreadedExecutor runs all callbacks in
turn: while a forecast tick runs, messages wait in the DDS queue (keep_all loses none) and the status
service answers after it. rclpy's MultiThreadedExecutor was tried and dropped: its spinning thread kept
the GIL busy and a forecast made of many small torch operations waited for the GIL between them (forecast
latency 19 s instead of 16 ms at 100 Hz in bench/node_latency.py). The report reads the engine's figures
as of the last forecast tick. The sample time is the header stamp; a topic whose first message has no stamp
(zero), or a type without a header, uses the receive time for good (mixing two clocks in one grid would
restart streams); a zero stamp after stamped messages is dropped ("missing_stamp").

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
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
import torch
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from xlstm_ros_msgs.msg import Anomaly, Forecast

from xlstm_ros.engines.device import BACKENDS, DEVICES_HELP, DeviceError
from xlstm_ros.engines.forecaster import StreamingForecaster
from xlstm_ros.engines.resample import GridResampler
from xlstm_ros.models.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from xlstm_ros.nodes.diagnostics import NodeHealth, PublicationGaps, StatusOutputs, ThrottledLog, \
    release_free_memory
from xlstm_ros.nodes.fields import FieldPath, FieldPathError, compile_field_path, has_header, \
    import_message_type, stamp_seconds
from xlstm_ros.nodes.params import Param, ParameterError, at_least, declare_all, one_of, positive, \
    reject_unknown

CHANNEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
NODE_STATE_FORMAT = "xlstm_ros.forecaster_node/1"

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
    Param("lateness_s", -1.0, "how late a sample may arrive and still count for its slot; < 0 = one period"),
    Param("max_abs_value", 1e15, "samples of larger magnitude are dropped as out_of_range (the model computes "
          "in float32)", positive),
    Param("anomaly_margin", 0.5, "an observation is anomalous beyond the outer quantile band widened by this "
          "fraction of the band's width on each side", at_least(0.0)),
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


def canonical_type(name: str) -> str:
    """"pkg/Type" or "pkg/msg/Type" -> "pkg/msg/Type" (how the ROS graph names types)."""
    parts = name.strip().split("/")
    return "/".join([parts[0], "msg", parts[1]]) if len(parts) == 2 else name.strip()


@dataclass
class Channel:
    """One forecast channel: its field, grid, accounting and forecast/anomaly state."""

    name: str
    field: FieldPath
    unit: str
    grid: GridResampler
    source: "Source" = field(default=None, repr=False)
    frame_id: str = ""
    last_value: float = float("nan")
    origin_slot: int | None = None  # grid slot of the engine stream's first sample
    last_forecast: tuple[int, np.ndarray] | None = None  # (last slot it was conditioned on, quantiles [H, L])
    new_slots: int = 0
    received: int = 0  # samples (this channel's values of received messages)
    in_state: int = 0  # samples the engine absorbed
    dropped: Counter = field(default_factory=Counter)  # samples by reason


@dataclass
class Source:
    """One subscription: a topic and type, and the channels that read it."""

    topic: str  # fully qualified, after remapping (how the graph and the report name it)
    requested: str  # as configured (remapping applies to it when subscribing)
    type_name: str  # pkg/msg/Type
    stamped: bool
    channels: list[Channel] = field(default_factory=list)
    clock: str | None = None  # "header" or "receive", decided by the first message
    messages: int = 0
    dds_lost: int = 0
    duplicate_stamps: int = 0
    last_stamp: float | None = None
    publishers: int = 0
    foreign_types: tuple[str, ...] = ()
    foreign_publishers: set = field(default_factory=set)


class ForecasterNode(Node):
    def __init__(self, **kwargs):
        super().__init__("forecaster_node", **kwargs)
        self.health = NodeHealth()
        self.warn = ThrottledLog(self.get_logger().warning)
        self.config = declare_all(self, NODE_PARAMS)
        channel_specs = self._declare_channels(self.config["channels"])
        reject_unknown(self)
        self.device_fallback = ""
        self.engine = self._load_engine(self.config["device"])
        self.channels, self.sources = self._make_channels(channel_specs)
        self.gaps = PublicationGaps()
        self._restore_state()

        self._engine_figures = (0, {})  # (streams, state bytes per stream) as of the last forecast tick
        self._figures_due = 0.0
        for source in self.sources:
            self.create_subscription(
                import_message_type(source.type_name), source.requested,
                lambda msg, info, s=source: self._on_message(s, msg, info), self._intake_qos(),
                event_callbacks=SubscriptionEventCallbacks(
                    incompatible_qos=lambda event, s=source: self._on_incompatible_qos(s, event)))
        self.forecast_publishers = {name: self.create_publisher(Forecast, f"forecast/{name}", 10)
                                    for name in self.channels}
        self.anomaly_publisher = self.create_publisher(Anomaly, "anomalies", 10)
        self.outputs = StatusOutputs(self, "forecaster", self.report, lambda key: key != "channels")
        self.create_timer(1.0 / self.config["forecast_rate_hz"], self._forecast_tick)
        self.create_timer(self.config["diagnostics_period_s"], self._publish_status)
        self.get_logger().info(
            f"forecasting {len(self.channels)} channel(s) from {len(self.sources)} subscription(s) every "
            f"{self.config['period_s']} s, horizon {self.config['horizon']}, model {self.engine.model_name} "
            f"on {self.engine.device} ({self.engine.backend})")

    # --- start-up ----------------------------------------------------------------------------------
    def _declare_channels(self, names: list[str]) -> dict[str, tuple[str, str, str, FieldPath, str, bool]]:
        """Declare and check channel.<name>.* for every channel: (resolved topic, configured topic, type,
        field, unit, stamped)."""
        specs = {}
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
            specs[name] = (topic, values[prefix + "topic"], canonical_type(values[prefix + "type"]), path,
                           values[prefix + "unit"], has_header(msg_type))
        return specs

    def _make_channels(self, specs) -> tuple[dict[str, Channel], list[Source]]:
        """Channels (grids restart a stream after a gap or jump longer than the model's context) grouped
        into one Source per (topic, type)."""
        period_s = self.config["period_s"]
        lateness_s = self.config["lateness_s"] if self.config["lateness_s"] >= 0 else period_s
        context_s = self.engine.config.train_ctx_len * period_s
        channels, sources = {}, {}
        for name, (topic, requested, type_name, path, unit, stamped) in specs.items():
            source = sources.setdefault((topic, type_name), Source(topic, requested, type_name, stamped))
            grid = GridResampler(period_s, lateness_s=lateness_s, max_gap_s=context_s, max_jump_back_s=context_s,
                                 max_abs=self.config["max_abs_value"])
            channels[name] = Channel(name=name, field=path, unit=unit, grid=grid, source=source)
            source.channels.append(channels[name])
        return channels, list(sources.values())

    def _intake_qos(self) -> QoSProfile:
        return QoSProfile(
            depth=self.config["qos_depth"],
            history=HistoryPolicy.KEEP_ALL if self.config["qos_history"] == "keep_all" else HistoryPolicy.KEEP_LAST,
            reliability=(ReliabilityPolicy.RELIABLE if self.config["qos_reliability"] == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT))

    def _load_engine(self, device: str) -> StreamingForecaster:
        def fell_back(message: str) -> None:
            self.device_fallback = message
            self.get_logger().warning(message)

        try:
            return StreamingForecaster.from_checkpoint(
                self.config["checkpoint"] or None, device=device, backend=self.config["backend"],
                precision=self.config["precision"], fallback_to_cpu=self.config["fallback_to_cpu"],
                reanchor_every=self.config["reanchor_every"], on_fallback=fell_back)
        except DeviceError as error:
            raise ParameterError("device", str(error)) from None
        except CheckpointError as error:
            raise ParameterError("checkpoint", str(error)) from None

    # --- intake (subscription callbacks) -----------------------------------------------------------
    def _on_message(self, source: Source, msg, info) -> None:
        lost = self.gaps.lost(info)
        stamp = stamp_seconds(msg.header.stamp) if source.stamped else 0.0
        self.health.count(f"messages.{source.topic}")
        source.messages += 1
        source.dds_lost += lost
        if source.clock is None:
            source.clock = "header" if stamp > 0.0 else "receive"
            if source.stamped and source.clock == "receive":
                self.get_logger().warning(f"{source.topic}: the first message has no header stamp; "
                                          "using the receive time for this topic")
        if source.clock == "receive":
            stamp = self.get_clock().now().nanoseconds * 1e-9
        elif stamp <= 0.0:
            self._drop_message(source, "missing_stamp", "message without a header stamp")
            return
        if stamp == source.last_stamp:
            source.duplicate_stamps += 1
        source.last_stamp = stamp
        for channel in source.channels:
            self._push(channel, msg, stamp)

    def _push(self, channel: Channel, msg, stamp: float) -> None:
        channel.received += 1
        try:
            value = channel.field.value(msg)
        except (IndexError, TypeError, ValueError, OverflowError) as error:
            self._drop_sample(channel, "bad_field", f"cannot read '{channel.field.text}': {error}")
            return
        reason = channel.grid.push(stamp, value)
        if reason is not None:
            self._drop_sample(channel, reason, f"value {value!r} at {stamp:.3f} s")
        elif channel.source.stamped:
            channel.frame_id = msg.header.frame_id

    def _drop_message(self, source: Source, reason: str, detail: str) -> None:
        for channel in source.channels:
            channel.received += 1
            channel.dropped[reason] += 1
        self.warn(f"{reason}:{source.topic}", f"{source.topic}: message dropped ({reason}): {detail}")

    def _drop_sample(self, channel: Channel, reason: str, detail: str) -> None:
        channel.dropped[reason] += 1
        self.warn(f"{reason}:{channel.source.topic}",
                  f"{channel.source.topic}: channel '{channel.name}': sample dropped ({reason}): {detail}")

    def _on_incompatible_qos(self, source: Source, event) -> None:
        self.health.count("incompatible_qos", event.total_count_change)
        self.warn(f"incompatible_qos:{source.topic}",
                  f"{source.topic}: a publisher's QoS is incompatible with this node's "
                  f"({self.config['qos_reliability']}); its messages cannot arrive")

    # --- model (timer) -------------------------------------------------------------------------------
    def _forecast_tick(self) -> None:
        started = time.perf_counter()
        self._absorb_completed()
        due = [name for name, ch in self.channels.items() if ch.new_slots]
        forecasts = self._forecast(due) if due else None
        for name, result in (forecasts or {}).items():
            if result is not None:  # None: no completed patch or nothing observed yet
                self._publish_forecast(self.channels[name], result)
        if forecasts is not None:
            self.health.observe_latency("forecast", time.perf_counter() - started)
        if time.monotonic() >= self._figures_due:
            self._figures_due = time.monotonic() + self.config["diagnostics_period_s"]
            self._engine_figures = (len(self.engine.stream_names()), self._state_bytes())

    def _forecast(self, names: list[str]):
        """engine.forecast, moving to the CPU once on a CUDA out-of-memory error when fallback_to_cpu."""
        for attempt in range(2):
            try:
                return self.engine.forecast(names, self.config["horizon"])
            except torch.cuda.OutOfMemoryError as error:
                self.health.error("out_of_memory")
                if attempt or not self.config["fallback_to_cpu"]:
                    self.warn("out_of_memory", f"forecast failed, out of memory on {self.engine.device}: {error}")
                    return None
                self._move_engine_to_cpu(f"out of memory on {self.engine.device} ({str(error).splitlines()[0]})")
            except Exception as error:  # keep the node alive; the error is counted and reported
                self.health.error("forecast")
                self.warn("forecast_error", f"forecast failed: {error!r}")
                return None
        return None

    def _move_engine_to_cpu(self, reason: str) -> None:
        """Rebuild the engine on the CPU and carry every stream over (they restart if that fails too)."""
        try:
            state = self.engine.state_dict()
        except Exception as error:  # the device may be too full even for the copy
            state = None
            self.get_logger().error(f"cannot copy the streams off {self.engine.device} ({error!r}); they restart")
        self.engine = self._load_engine("cpu")
        if state is not None:
            self.engine.load_state_dict(state)
        else:
            for channel in self.channels.values():
                channel.origin_slot, channel.last_forecast = None, None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.device_fallback = f"{reason}; running on the CPU"
        self.health.count("cpu_fallbacks")
        self.get_logger().warning(f"{self.device_fallback} with {len(self.engine.stream_names())} stream(s)")

    def _absorb_completed(self) -> None:
        for channel in self.channels.values():
            for segment in channel.grid.drain():
                self._absorb(channel, segment)

    def _absorb(self, channel: Channel, segment) -> None:
        """Feed one grid segment to the engine (restarting the stream after a clock jump)."""
        try:
            if segment.reset_before and channel.origin_slot is not None:
                self.engine.reset_stream(channel.name)
                channel.origin_slot, channel.last_forecast = None, None
                self.health.count("stream_resets")
            if channel.origin_slot is None:
                channel.origin_slot = segment.first_slot
            self._check_anomalies(channel, segment.first_slot, segment.values)
            self.engine.observe(channel.name, segment.values)
        except Exception as error:  # never lose samples silently, never stop the node
            channel.dropped["engine_error"] += segment.samples
            self.health.error("engine")
            self.warn("engine_error", f"channel '{channel.name}': samples not absorbed: {error!r}")
            return
        channel.in_state += segment.samples
        missing = int(np.isnan(segment.values).sum())
        if missing:
            self.health.count(f"missing_slots.{channel.name}", missing)
        channel.new_slots += len(segment.values)
        finite = segment.values[np.isfinite(segment.values)]
        if finite.size:
            channel.last_value = float(finite[-1])

    def _publish_forecast(self, channel: Channel, result) -> None:
        last_slot = channel.origin_slot + result.first_sample - 1
        msg = Forecast()
        msg.header.stamp = _time_msg(last_slot * self.config["period_s"])
        msg.header.frame_id = channel.frame_id
        msg.channel, msg.unit = channel.name, channel.unit
        msg.period_s = self.config["period_s"]
        msg.horizon = int(result.quantiles.shape[0])
        msg.quantile_levels = [float(q) for q in result.quantile_levels]
        quantiles = np.sort(result.quantiles, axis=1) if self.config["monotone_quantiles"] else result.quantiles
        msg.quantiles = quantiles.astype(np.float32).ravel().tolist()
        levels = list(result.quantile_levels)
        median = quantiles[:, levels.index(0.5)] if 0.5 in levels else result.median
        msg.median = median.astype(np.float32).tolist()
        msg.context_samples = int(result.context_samples)
        msg.missing_fraction = float(result.missing_fraction)
        msg.last_value = channel.last_value
        msg.model = self.engine.model_name
        self.forecast_publishers[channel.name].publish(msg)
        channel.last_forecast = (last_slot, quantiles)
        channel.new_slots = 0
        self.health.count(f"forecasts.{channel.name}")

    def _check_anomalies(self, channel: Channel, first_slot: int, values: np.ndarray) -> None:
        """Compare new observations with the outer band the last forecast predicted for their slots."""
        if channel.last_forecast is None:
            return
        made_at, quantiles = channel.last_forecast
        levels = self.engine.quantile_levels
        margin = self.config["anomaly_margin"]
        for offset, value in enumerate(values):
            steps = first_slot + offset - made_at
            if not 1 <= steps <= len(quantiles) or not np.isfinite(value):
                continue
            lower, upper = float(quantiles[steps - 1, 0]), float(quantiles[steps - 1, -1])
            width = max(upper - lower, 1e-12)
            low, high = lower - margin * width, upper + margin * width
            if low <= value <= high:
                continue
            event = Anomaly(channel=channel.name, value=float(value), lower=lower, upper=upper,
                            lower_level=float(levels[0]), upper_level=float(levels[-1]), steps_ahead=steps,
                            score=float((low - value if value < low else value - high) / width))
            event.header.stamp = _time_msg((first_slot + offset) * self.config["period_s"])
            event.header.frame_id = channel.frame_id
            self.anomaly_publisher.publish(event)
            self.health.count(f"anomalies.{channel.name}")

    # --- reporting -------------------------------------------------------------------------------------
    def _publish_status(self) -> None:
        self._check_publishers()
        self.outputs.publish(self.report(periodic=True))
        release_free_memory()

    def _check_publishers(self) -> None:
        """Count each topic's publishers of the right type, report and log publishers of another type."""
        for source in self.sources:
            infos = self.get_publishers_info_by_topic(source.topic)
            matching = sum(canonical_type(info.topic_type) == source.type_name for info in infos)
            foreign = [info for info in infos if canonical_type(info.topic_type) != source.type_name]
            if source.publishers and not matching:
                self.get_logger().warning(f"{source.topic}: no publisher of {source.type_name} left")
            source.publishers = matching
            source.foreign_types = tuple(sorted({info.topic_type for info in foreign}))
            new = {bytes(info.endpoint_gid) for info in foreign} - source.foreign_publishers
            if new:
                source.foreign_publishers |= new
                self.health.count("type_mismatch_publishers", len(new))
            if foreign:
                names = [channel.name for channel in source.channels]
                self.warn(f"type_mismatch:{source.topic}",
                          f"{source.topic}: publisher(s) of type {', '.join(source.foreign_types)} cannot reach "
                          f"channel(s) {names}, which expect {source.type_name} (DDS type mismatch)")

    def report(self, periodic: bool = False) -> dict:
        """The status report (module docstring); engine figures as of the last forecast tick. `periodic`:
        the timer's report, which moves the mark that level ("warn": drops since then) compares with."""
        streams, state_bytes = self._engine_figures
        channels = {name: {"topic": ch.source.topic, "received": ch.received, "in_state": ch.in_state,
                           "waiting": ch.grid.waiting, "dropped": dict(ch.dropped),
                           "state_bytes": state_bytes.get(name, 0)}
                    for name, ch in self.channels.items()}
        topics = {s.topic: {"type": s.type_name, "channels": [ch.name for ch in s.channels], "clock": s.clock or "",
                            "messages": s.messages, "dds_lost": s.dds_lost, "duplicate_stamps": s.duplicate_stamps,
                            "publishers": s.publishers, "foreign_types": list(s.foreign_types)}
                  for s in self.sources}
        drops = sum((Counter(entry["dropped"]) for entry in channels.values()), Counter())
        drops["dds_lost"] = sum(entry["dds_lost"] for entry in topics.values())
        samples = {key: sum(entry[key] for entry in channels.values()) for key in ("received", "in_state", "waiting")}
        samples["dropped"] = sum(sum(entry["dropped"].values()) for entry in channels.values())
        samples["unexplained"] = samples["received"] - samples["in_state"] - samples["waiting"] - samples["dropped"]
        identity = {"node": self.get_fully_qualified_name(), "model": self.engine.model_name,
                    "device": str(self.engine.device), "backend": self.engine.backend,
                    "precision": self.config["precision"], "device_fallback": self.device_fallback,
                    "period_s": self.config["period_s"], "horizon": self.config["horizon"],
                    "qos": f"{self.config['qos_reliability']}/{self.config['qos_history']}"}
        report = self.health.report(identity, {
            "samples": samples, "streams": streams, "state_bytes": sum(state_bytes.values()),
            "topics": topics, "channels": channels}, drops={k: v for k, v in drops.items() if v}, periodic=periodic)
        report["counts"].update({f"received.{name}": entry["received"] for name, entry in channels.items()})
        return report

    def _state_bytes(self) -> dict[str, int]:
        """Bytes of each stream's saved state (its recurrent state, recent samples and anchor)."""
        streams = self.engine.state_dict()["streams"]
        return {name: sum(value.numel() * value.element_size() for value in entry.values()
                          if isinstance(value, torch.Tensor)) for name, entry in streams.items()}

    # --- state file ------------------------------------------------------------------------------------
    def save_state(self) -> None:
        """Absorb every sample (completing open slots) and save streams and grid positions to state_file."""
        path = self.config["state_file"]
        if not path:
            return
        for channel in self.channels.values():
            channel.grid.complete_all()
        self._absorb_completed()
        channels = {name: {"topic": ch.source.topic, "type": ch.source.type_name, "field": ch.field.text,
                           "next_slot": ch.grid.next_slot, "origin_slot": ch.origin_slot, "clock": ch.source.clock,
                           "frame_id": ch.frame_id, "last_value": ch.last_value}
                    for name, ch in self.channels.items() if ch.origin_slot is not None}
        try:
            save_checkpoint({"format": NODE_STATE_FORMAT, "period_s": self.config["period_s"],
                             "engine": self.engine.state_dict(), "channels": channels}, path)
        except Exception as error:
            self.health.error("state_save")
            self.get_logger().error(f"cannot save the streams to state_file '{path}': {error}")
            return
        self.get_logger().info(f"saved {len(channels)} stream state(s) to {path}")

    def _restore_state(self) -> None:
        path = self.config["state_file"]
        if not path or not Path(path).exists():
            return
        try:
            saved = load_checkpoint(path)
            if saved.get("format") != NODE_STATE_FORMAT:
                raise CheckpointError(f"{path}: not a forecaster_node state (expected format {NODE_STATE_FORMAT})")
            if saved.get("period_s") != self.config["period_s"]:
                raise CheckpointError(f"{path}: saved with period_s {saved.get('period_s')}, "
                                      f"the node runs {self.config['period_s']}")
            positions = self._saved_positions(saved["channels"])
            self.engine.load_state_dict(saved["engine"])  # leaves the engine as it was when it fails
        except Exception as error:  # a corrupt or foreign state file must not stop the node
            self.health.error("state_restore")
            self.get_logger().error(f"cannot resume from state_file '{path}', starting fresh: {error}")
            return
        for name in set(self.engine.stream_names()) - set(positions):
            self.engine.reset_stream(name)  # its channel is gone or reads another field now
        for name, (next_slot, origin_slot, clock, frame_id, last_value) in positions.items():
            channel = self.channels[name]
            channel.grid.resume(next_slot)
            channel.origin_slot, channel.frame_id, channel.last_value = origin_slot, frame_id, last_value
            channel.source.clock = channel.source.clock or clock
        self.get_logger().info(f"resumed {len(positions)} stream(s) from {path}")

    def _saved_positions(self, saved: dict) -> dict[str, tuple]:
        """(next_slot, origin_slot, clock, frame_id, last_value) of each saved channel whose topic, type and
        field are unchanged."""
        positions = {}
        for name, channel in self.channels.items():
            entry = saved.get(name)
            if entry is not None and (entry["topic"], entry["type"], entry["field"]) == (
                    channel.source.topic, channel.source.type_name, channel.field.text):
                positions[name] = (int(entry["next_slot"]), int(entry["origin_slot"]), str(entry["clock"]),
                                   str(entry["frame_id"]), float(entry["last_value"]))
        return positions


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
