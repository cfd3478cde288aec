"""forecaster_node: probabilistic forecasts of any numeric field of any message type, with TiRex.

Each configured channel subscribes to a topic, reads one numeric field (`voltage`, `linear_acceleration.z`,
`data[0]`), puts the samples on the channel's period grid by header stamp (receive time for types without a
header) and feeds them to a StreamingForecaster, which keeps one persistent recurrent state per channel.
At `forecast_rate_hz` the node publishes `forecast/<channel>` (xlstm_ros_msgs/Forecast) for every channel
with new data, and an `anomalies` event (xlstm_ros_msgs/Anomaly) whenever an observation falls outside the
band an earlier forecast predicted for it. `/diagnostics` reports rates, latency, drops by reason, device.

Subscription callbacks only resample under a lock; the model runs in the timer's own callback group, so a
slow forecast never blocks message intake (a MultiThreadedExecutor spins both).
"""
from __future__ import annotations

import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from diagnostic_msgs.msg import DiagnosticArray
from xlstm_ros_msgs.msg import Anomaly, Forecast

from xlstm_ros.engines.device import BACKENDS, DEVICES_HELP, DeviceError
from xlstm_ros.engines.forecaster import StreamingForecaster
from xlstm_ros.engines.resample import GridResampler
from xlstm_ros.models.checkpoints import CheckpointError
from xlstm_ros.nodes.diagnostics import NodeHealth, ThrottledLog, diagnostic_array
from xlstm_ros.nodes.fields import FieldPath, FieldPathError, compile_field_path, has_header, \
    import_message_type, stamp_seconds
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
    Param("fallback_to_cpu", True, "run on the CPU with a warning when the requested CUDA device is unusable"),
    Param("backend", "auto", "recurrent kernels: auto (Triton on CUDA), triton or torch", one_of(*BACKENDS)),
    Param("precision", "fp32", "fp32 or bf16-compatible (rounds like the official TiRex torch backend)",
          one_of("fp32", "bf16-compatible")),
    Param("reanchor_every", 16, "recompute a stream's state from its ring buffer every this many patches",
          at_least(1)),
    Param("lateness_s", -1.0, "how late a sample may arrive and still count for its slot; < 0 = one period"),
    Param("anomaly_margin", 0.5, "an observation is anomalous beyond the outer quantile band widened by this "
          "fraction of the band's width on each side", at_least(0.0)),
    Param("monotone_quantiles", True, "sort each step's quantiles so that they never cross (TiRex does not "
          "guarantee monotone quantiles; sorting never increases the quantile loss)"),
    Param("qos_depth", 100, "subscription queue depth", at_least(1)),
    Param("qos_reliability", "best_effort", "subscription reliability (best_effort matches every publisher)",
          one_of("best_effort", "reliable")),
    Param("state_file", "", "save the streams' state here on shutdown and resume from it at start; empty = off"),
    Param("diagnostics_period_s", 1.0, "how often /diagnostics is published", positive),
]


def _check_channel_names(names: list[str]) -> str | None:
    bad = [name for name in names if not CHANNEL_NAME.match(name)]
    if bad:
        return f"channel names must be letters, digits and _ starting with a letter: {bad}"
    if len(set(names)) != len(names):
        return "channel names must be unique"
    return None


@dataclass
class Channel:
    """One forecast channel: where its samples come from and its resampling and anomaly state."""

    name: str
    topic: str
    type_name: str
    field: FieldPath
    unit: str
    stamped: bool
    grid: GridResampler
    frame_id: str = ""
    last_value: float = float("nan")
    origin_slot: int | None = None  # grid slot of the engine stream's first sample
    last_forecast: tuple[int, np.ndarray] | None = None  # (last slot it was conditioned on, quantiles [H, L])
    new_slots: int = 0
    subscription: object = field(default=None, repr=False)


class ForecasterNode(Node):
    def __init__(self, **kwargs):
        super().__init__("forecaster_node", **kwargs)
        self.health = NodeHealth()
        self.warn = ThrottledLog(self.get_logger().warning)
        self.config = declare_all(self, NODE_PARAMS)
        channel_sources = self._declare_channels(self.config["channels"])
        reject_unknown(self)
        self.engine = self._load_engine()
        self.channels = self._make_channels(channel_sources)
        self._lock = threading.Lock()
        self._restore_state()

        depth = self.config["qos_depth"]
        reliability = (ReliabilityPolicy.RELIABLE if self.config["qos_reliability"] == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        qos = QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=reliability)
        intake = MutuallyExclusiveCallbackGroup()
        self.forecast_publishers = {}
        for channel in self.channels.values():
            channel.subscription = self.create_subscription(
                import_message_type(channel.type_name), channel.topic,
                lambda msg, ch=channel: self._on_sample(ch, msg), qos, callback_group=intake)
            self.forecast_publishers[channel.name] = self.create_publisher(Forecast, f"forecast/{channel.name}", 10)
        self.anomaly_publisher = self.create_publisher(Anomaly, "anomalies", 10)
        self.diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0 / self.config["forecast_rate_hz"], self._forecast_tick,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(self.config["diagnostics_period_s"], self._publish_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(
            f"forecasting {len(self.channels)} channel(s) {list(self.channels)} every "
            f"{self.config['period_s']} s, horizon {self.config['horizon']}, model {self.engine.model_name} "
            f"on {self.engine.device} ({self.engine.backend})")

    # --- start-up ----------------------------------------------------------------------------------
    def _declare_channels(self, names: list[str]) -> dict[str, tuple[str, str, FieldPath, str, bool]]:
        """Declare and check channel.<name>.* for every channel: (topic, type, field, unit, stamped)."""
        sources = {}
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
            sources[name] = (values[prefix + "topic"], values[prefix + "type"], path, values[prefix + "unit"],
                             has_header(msg_type))
        return sources

    def _make_channels(self, sources) -> dict[str, Channel]:
        """Channels with grids that restart a stream after a gap or jump longer than the model's context."""
        period_s = self.config["period_s"]
        lateness_s = self.config["lateness_s"] if self.config["lateness_s"] >= 0 else period_s
        context_s = self.engine.config.train_ctx_len * period_s
        return {name: Channel(name=name, topic=topic, type_name=type_name, field=path, unit=unit, stamped=stamped,
                              grid=GridResampler(period_s, lateness_s=lateness_s, max_gap_s=context_s,
                                                 max_jump_back_s=context_s))
                for name, (topic, type_name, path, unit, stamped) in sources.items()}

    def _load_engine(self) -> StreamingForecaster:
        try:
            return StreamingForecaster.from_checkpoint(
                self.config["checkpoint"] or None, device=self.config["device"], backend=self.config["backend"],
                precision=self.config["precision"], fallback_to_cpu=self.config["fallback_to_cpu"],
                reanchor_every=self.config["reanchor_every"],
                on_fallback=lambda message: self.get_logger().warning(message))
        except DeviceError as error:
            raise ParameterError("device", str(error)) from None
        except CheckpointError as error:
            raise ParameterError("checkpoint", str(error)) from None

    def _restore_state(self) -> None:
        path = self.config["state_file"]
        if not path or not Path(path).exists():
            return
        try:
            self.engine.load(path)
        except Exception as error:  # a corrupt or foreign state file must not stop the node
            self.health.error("state_restore")
            self.get_logger().error(f"cannot resume from state_file '{path}', starting fresh: {error}")
            return
        self.get_logger().info(f"resumed {len(self.engine.stream_names())} stream(s) from {path}")

    # --- intake (subscription callbacks) -----------------------------------------------------------
    def _on_sample(self, channel: Channel, msg) -> None:
        self.health.count(f"received.{channel.name}")
        stamp = stamp_seconds(msg.header.stamp) if channel.stamped else 0.0
        if stamp <= 0.0:
            if channel.stamped:
                self.health.count("missing_stamp")
            stamp = self.get_clock().now().nanoseconds * 1e-9
        try:
            value = channel.field.value(msg)
        except (IndexError, TypeError, ValueError) as error:
            self.health.drop("bad_field")
            self.warn(f"bad_field.{channel.name}",
                      f"channel '{channel.name}': cannot read '{channel.field.text}' from a message: {error}")
            return
        with self._lock:
            reason = channel.grid.push(stamp, value)
            if channel.stamped:
                channel.frame_id = msg.header.frame_id
        if reason is not None:
            self.health.drop(reason)
            self.warn(f"{reason}.{channel.name}", f"channel '{channel.name}': sample dropped ({reason})")

    # --- model (timer) ---------------------------------------------------------------------------------
    def _forecast_tick(self) -> None:
        started = time.perf_counter()
        with self._lock:
            segments = {name: ch.grid.drain() for name, ch in self.channels.items()}
        for name, channel_segments in segments.items():
            for segment in channel_segments:
                self._absorb(self.channels[name], segment)
        due = [name for name, ch in self.channels.items() if ch.new_slots]
        if not due:
            return
        try:
            forecasts = self.engine.forecast(due, self.config["horizon"])
        except Exception as error:  # keep the node alive; the error is counted and reported
            self.health.error("forecast")
            self.warn("forecast_error", f"forecast failed: {error!r}")
            return
        self.health.observe_latency("forecast", time.perf_counter() - started)
        for name, result in forecasts.items():
            if result is not None:  # None: no completed patch or nothing observed yet
                self._publish_forecast(self.channels[name], result)

    def _absorb(self, channel: Channel, segment) -> None:
        """Feed one grid segment to the engine (restarting the stream after a clock jump)."""
        if segment.reset_before and channel.origin_slot is not None:
            self.engine.reset_stream(channel.name)
            channel.origin_slot, channel.last_forecast = None, None
            self.health.count("stream_resets")
        if channel.origin_slot is None:
            channel.origin_slot = segment.first_slot
        self._check_anomalies(channel, segment.first_slot, segment.values)
        self.engine.observe(channel.name, segment.values)
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

    # --- reporting and shutdown -----------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        with self._lock:
            grids = {name: (ch.grid.accepted, ch.grid.resets) for name, ch in self.channels.items()}
        extra = {"device": self.engine.device, "backend": self.engine.backend, "model": self.engine.model_name,
                 "channels": len(self.channels), "streams": len(self.engine.stream_names())}
        extra.update({f"accepted.{name}": accepted for name, (accepted, _) in grids.items()})
        status = self.health.status(f"{self.get_name()}: forecaster", self.engine.model_name, extra)
        self.diagnostics_publisher.publish(diagnostic_array(self.get_clock().now().to_msg(), [status]))

    def save_state(self) -> None:
        path = self.config["state_file"]
        if path:
            self.engine.save(path)
            self.get_logger().info(f"saved {len(self.engine.stream_names())} stream state(s) to {path}")


def _time_msg(seconds: float):
    from builtin_interfaces.msg import Time

    whole = int(np.floor(seconds))
    return Time(sec=whole, nanosec=min(int(round((seconds - whole) * 1e9)), 999_999_999))


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = ForecasterNode()
        executor = MultiThreadedExecutor(num_threads=2)
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
