"""The forecaster node's ROS-free core: channels and their sources, accounting, forecasts, anomalies, state.

A channel reads one numeric field (`voltage`, `linear_acceleration.z`, `data[0]`) of the messages of one
type on one topic. Channels that read the same topic with the same type share one `Source`, whose
bookkeeping (clock, messages, dds_lost, publishers) is per topic. Messages are any objects with the
channel's attributes: ROS messages in the node, plain objects in tests.

`ChannelBank.receive` (the subscription callback's work) reads every channel's value of a message and only
puts it on the channel's period grid (GridResampler); `ChannelBank.tick` (the forecast timer's) feeds the
completed slots to the StreamingForecaster, forecasts the channels with new data and checks the new
observations against the band of each channel's previous forecast (anomalies.py). The report reads the
engine's stream count and state sizes as of the last tick, at most once per `figures_period_s`.

Clock: the sample time is the header stamp; a source whose first message has no stamp (zero), or a type
without a header, uses the receive time for good (mixing two clocks in one grid would restart streams);
a zero stamp after stamped messages is dropped ("missing_stamp").

Accounting, per channel at all times: received = in_state + waiting + sum(dropped by reason). A sample is
one channel's value of one received message; in_state counts samples merged into slots the engine absorbed,
waiting those in slots not absorbed yet (`GridResampler.waiting`). Drop reasons: the grid's (nonfinite,
out_of_range, late), missing_stamp, bad_field (the path fails on this message, e.g. data[5] of a 3-element
array) and engine_error (the engine refused a segment). dds_lost counts whole messages, per source.

Faults: a CUDA out-of-memory error during a forecast moves the engine with its streams to the CPU and retries
once, when the bank was given a `cpu_engine` loader; otherwise the failure is counted and the next tick tries
again. The state file holds the engine's streams and each channel's grid position, so a restart continues
the streams; the time between the runs becomes missing samples (or a stream restart after more than the
model's context).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol

import numpy as np
import torch

from xlstm_ros.engines.anomalies import AnomalyDetector, AnomalyEvent, AnomalyRule, ForecastBand
from xlstm_ros.engines.forecaster import StreamForecast, StreamingForecaster
from xlstm_ros.engines.resample import GridResampler, GridSegment
from xlstm_ros.models.checkpoints import CheckpointError, load_checkpoint, save_checkpoint

STATE_FORMAT = "xlstm_ros.forecaster_node/1"


@dataclass(frozen=True)
class FieldPath:
    """A path from a message to one numeric value: attribute names, each with an optional sequence index."""

    text: str
    steps: tuple[tuple[str, int | None], ...]

    def value(self, msg: Any) -> float:
        """The number at this path (bool -> 0/1). IndexError when a sequence is too short."""
        current = msg
        for name, index in self.steps:
            current = getattr(current, name)
            if index is not None:
                current = current[index]
        if isinstance(current, (bytes, bytearray)):
            current = current[0]
        return float(current)


def stamp_seconds(stamp: Any) -> float:
    """A builtin_interfaces/Time (anything with sec and nanosec) as float seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def canonical_type(name: str) -> str:
    """"pkg/Type" or "pkg/msg/Type" -> "pkg/msg/Type" (how the ROS graph names types)."""
    parts = name.strip().split("/")
    return "/".join([parts[0], "msg", parts[1]]) if len(parts) == 2 else name.strip()


@dataclass(frozen=True)
class ChannelSpec:
    """What one channel reads: `field` of the `type_name` messages on `topic`."""

    name: str
    topic: str  # fully qualified, after remapping (how the graph and the report name it)
    type_name: str  # pkg/msg/Type
    field: FieldPath
    unit: str = ""  # copied into the forecasts
    stamped: bool = True  # the type has a std_msgs/Header whose stamp is the sample time


@dataclass(frozen=True)
class BankSettings:
    """The grid, forecast and anomaly settings shared by all channels."""

    period_s: float  # grid period
    horizon: int  # forecast steps
    lateness_s: float | None = None  # how late a sample may arrive for its slot; None = one period
    max_abs_value: float = 1e15  # larger magnitudes are dropped as out_of_range (the model computes in float32)
    anomalies: AnomalyRule = AnomalyRule()  # when observations outside the forecast band make an event
    monotone_quantiles: bool = True  # sort each step's quantiles so that they never cross
    figures_period_s: float = 1.0  # how often a tick refreshes the engine figures of the report


@dataclass
class Channel:
    """One forecast channel: its field, grid, accounting and forecast state."""

    name: str
    field: FieldPath
    unit: str
    grid: GridResampler
    source: Source = field(repr=False)
    anomalies: AnomalyDetector = field(repr=False)  # checks observations against the last published forecast
    frame_id: str = ""
    last_value: float = float("nan")
    origin_slot: int | None = None  # grid slot of the engine stream's first sample
    new_slots: int = 0  # slots absorbed since the last forecast
    received: int = 0  # samples (this channel's values of received messages)
    in_state: int = 0  # samples the engine absorbed
    dropped: Counter = field(default_factory=Counter)  # samples by reason

    def restart(self) -> None:
        """Forget the stream's origin and last forecast (the engine stream restarts)."""
        self.origin_slot = None
        self.anomalies.restart()


@dataclass
class Source:
    """One topic and type, and the channels that read it (one subscription in the node)."""

    topic: str
    type_name: str
    stamped: bool
    channels: list[Channel] = field(default_factory=list)
    clock: str | None = None  # "header" or "receive", decided by the first message
    messages: int = 0
    dds_lost: int = 0
    duplicate_stamps: int = 0
    last_stamp: float | None = None
    publishers: int = 0  # publishers of the right type, as of the last update_publishers
    foreign_types: tuple[str, ...] = ()
    foreign_publishers: set = field(default_factory=set)  # gids of publishers of another type seen so far


@dataclass(frozen=True)
class ChannelForecast:
    """One forecast of one channel in plain values (the node's xlstm_ros_msgs/Forecast)."""

    channel: str
    unit: str
    frame_id: str
    stamp_s: float  # time of the last grid slot the forecast is conditioned on
    period_s: float
    quantile_levels: tuple[float, ...]
    quantiles: np.ndarray  # (horizon, levels); row k is the slot k + 1 periods after stamp_s
    median: np.ndarray  # (horizon,)
    context_samples: int
    missing_fraction: float
    last_value: float  # the newest finite observation
    model: str


class Health(Protocol):
    """Counters, errors and latencies of the node (xlstm_ros.nodes.diagnostics.NodeHealth)."""

    def count(self, name: str, amount: int = 1) -> None: ...

    def error(self, kind: str) -> None: ...

    def observe_latency(self, name: str, seconds: float) -> None: ...

    def report(self, identity: Mapping[str, Any], sections: Mapping[str, Any] | None = None,
               drops: Mapping[str, int] | None = None, periodic: bool = True) -> dict[str, Any]: ...


class Log(Protocol):
    """A logger (rclpy's or Python's)."""

    def info(self, message: str) -> Any: ...

    def warning(self, message: str) -> Any: ...

    def error(self, message: str) -> Any: ...


class ChannelBank:
    """All channels of a forecaster node over one StreamingForecaster (see the module docstring).

    The node supplies its outputs and services: `health` counts, `log` logs, `warn(cause, message)` logs at
    most once per cause and period, `receive_time_s()` is the receive clock, `publish_forecast` and
    `publish_anomaly` send results, `cpu_engine()` loads the model on the CPU (None: no fallback on a
    CUDA out-of-memory error). `device_fallback` says why the engine already runs on the CPU ("" if not)."""

    def __init__(self, specs: Iterable[ChannelSpec], engine: StreamingForecaster, settings: BankSettings, *,
                 health: Health, log: Log, warn: Callable[[str, str], None], receive_time_s: Callable[[], float],
                 publish_forecast: Callable[[ChannelForecast], None],
                 publish_anomaly: Callable[[AnomalyEvent], None],
                 cpu_engine: Callable[[], StreamingForecaster] | None = None, device_fallback: str = ""):
        self.engine = engine
        self.settings = settings
        self.device_fallback = device_fallback
        self.health, self.log, self.warn = health, log, warn
        self._receive_time_s = receive_time_s
        self._publish_forecast, self._publish_anomaly = publish_forecast, publish_anomaly
        self._cpu_engine = cpu_engine
        self.channels: dict[str, Channel] = {}
        sources: dict[tuple[str, str], Source] = {}
        for spec in specs:
            if spec.name in self.channels:
                raise ValueError(f"channel names must be unique: '{spec.name}' twice")
            source = sources.setdefault((spec.topic, spec.type_name), Source(spec.topic, spec.type_name, spec.stamped))
            channel = Channel(spec.name, spec.field, spec.unit, self._new_grid(), source,
                              AnomalyDetector(spec.name, settings.period_s, settings.anomalies))
            self.channels[spec.name] = channel
            source.channels.append(channel)
        self.sources = list(sources.values())
        self._figures: tuple[int, dict[str, int]] = (0, {})  # (streams, state bytes per stream) as of a tick
        self._figures_due = 0.0

    def _new_grid(self) -> GridResampler:
        """A channel's grid; a gap or a backward jump longer than the model's context restarts its stream."""
        context_s = self.engine.config.train_ctx_len * self.settings.period_s
        return GridResampler(self.settings.period_s, lateness_s=self.settings.lateness_s, max_gap_s=context_s,
                             max_jump_back_s=context_s, max_abs=self.settings.max_abs_value)

    def identity(self) -> dict[str, Any]:
        """The report's model and grid keys."""
        return {"model": self.engine.model_name, "device": str(self.engine.device), "backend": self.engine.backend,
                "precision": self.engine.model.precision, "device_fallback": self.device_fallback,
                "period_s": self.settings.period_s, "horizon": self.settings.horizon}

    # --- intake ------------------------------------------------------------------------------------------
    def receive(self, source: Source, msg: Any, lost: int = 0) -> None:
        """Put every channel's value of `msg` on its grid; `lost`: messages DDS lost before this one."""
        stamp = stamp_seconds(msg.header.stamp) if source.stamped else 0.0
        self.health.count(f"messages.{source.topic}")
        source.messages += 1
        source.dds_lost += lost
        if source.clock is None:
            source.clock = "header" if stamp > 0.0 else "receive"
            if source.stamped and source.clock == "receive":
                self.log.warning(f"{source.topic}: the first message has no header stamp; "
                                 "using the receive time for this topic")
        if source.clock == "receive":
            stamp = self._receive_time_s()
        elif stamp <= 0.0:
            self._drop_message(source, "missing_stamp", "message without a header stamp")
            return
        if stamp == source.last_stamp:
            source.duplicate_stamps += 1
        source.last_stamp = stamp
        for channel in source.channels:
            self._push(channel, msg, stamp)

    def _push(self, channel: Channel, msg: Any, stamp: float) -> None:
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

    def update_publishers(self, source: Source, publishers: Iterable[tuple[str, bytes]]) -> None:
        """Take the topic's current publishers, (type name, gid) each: count those of the right type, report
        and log those of another type (DDS never delivers their messages, and raises no event for them)."""
        publishers = list(publishers)
        matching = sum(canonical_type(type_name) == source.type_name for type_name, _ in publishers)
        foreign = [(type_name, gid) for type_name, gid in publishers if canonical_type(type_name) != source.type_name]
        if source.publishers and not matching:
            self.log.warning(f"{source.topic}: no publisher of {source.type_name} left")
        source.publishers = matching
        source.foreign_types = tuple(sorted({type_name for type_name, _ in foreign}))
        new = {gid for _, gid in foreign} - source.foreign_publishers
        if new:
            source.foreign_publishers |= new
            self.health.count("type_mismatch_publishers", len(new))
        if foreign:
            names = [channel.name for channel in source.channels]
            self.warn(f"type_mismatch:{source.topic}",
                      f"{source.topic}: publisher(s) of type {', '.join(source.foreign_types)} cannot reach "
                      f"channel(s) {names}, which expect {source.type_name} (DDS type mismatch)")

    # --- model -------------------------------------------------------------------------------------------
    def tick(self) -> None:
        """Absorb the completed slots, then forecast and publish every channel with new data."""
        started = time.perf_counter()
        self._absorb_completed()
        due = [name for name, channel in self.channels.items() if channel.new_slots]
        forecasts = self._forecast(due) if due else None
        for name, result in (forecasts or {}).items():
            if result is not None:  # None: no completed patch or nothing observed yet
                self._publish(self.channels[name], result)
        if forecasts is not None:
            self.health.observe_latency("forecast", time.perf_counter() - started)
        self._run_deferred_anchors()
        if time.monotonic() >= self._figures_due:
            self._figures_due = time.monotonic() + self.settings.figures_period_s
            self._figures = (len(self.engine.stream_names()), self._state_bytes())

    def _forecast(self, names: list[str]) -> dict[str, StreamForecast | None] | None:
        """engine.forecast, moving to the CPU once on a CUDA out-of-memory error when a CPU loader is given;
        None when the forecast failed (counted and logged)."""
        for attempt in range(2):
            try:
                return self.engine.forecast(names, self.settings.horizon)
            except torch.cuda.OutOfMemoryError as error:
                self.health.error("out_of_memory")
                if attempt or self._cpu_engine is None:
                    self.warn("out_of_memory", f"forecast failed, out of memory on {self.engine.device}: {error}")
                    return None
                self._move_engine_to_cpu(f"out of memory on {self.engine.device} ({str(error).splitlines()[0]})")
            except Exception as error:  # keep the node alive; the error is counted and reported
                self.health.error("forecast")
                self.warn("forecast_error", f"forecast failed: {error!r}")
                return None
        return None

    def _run_deferred_anchors(self) -> None:
        """The anchors the engine postponed (defer_anchors) so that this tick's forecasts went out first; a
        failure is counted and logged, and the engine retries (or anchors on its own) later."""
        started = time.perf_counter()
        try:
            if self.engine.run_deferred_anchors():
                self.health.observe_latency("deferred_anchors", time.perf_counter() - started)
        except Exception as error:  # keep the node alive; out of memory included (the forecast path moves)
            self.health.error("deferred_anchors")
            self.warn("anchor_error", f"deferred anchors failed: {error!r}")

    def _move_engine_to_cpu(self, reason: str) -> None:
        """Load the model on the CPU and carry every stream over (they restart if that fails too)."""
        try:
            state = self.engine.state_dict()
        except Exception as error:  # the device may be too full even for the copy
            state = None
            self.log.error(f"cannot copy the streams off {self.engine.device} ({error!r}); they restart")
        self.engine = self._cpu_engine()
        if state is not None:
            self.engine.load_state_dict(state)
        else:
            for channel in self.channels.values():
                channel.restart()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.device_fallback = f"{reason}; running on the CPU"
        self.health.count("cpu_fallbacks")
        self.log.warning(f"{self.device_fallback} with {len(self.engine.stream_names())} stream(s)")

    def _absorb_completed(self) -> None:
        for channel in self.channels.values():
            for segment in channel.grid.drain():
                self._absorb(channel, segment)

    def _absorb(self, channel: Channel, segment: GridSegment) -> None:
        """Check one grid segment for anomalies and feed it to the engine (restarting the stream after a
        clock jump); a segment the engine refuses is dropped as engine_error."""
        try:
            if segment.reset_before and channel.origin_slot is not None:
                self.engine.reset_stream(channel.name)
                channel.restart()
                self.health.count("stream_resets")
            if channel.origin_slot is None:
                channel.origin_slot = segment.first_slot
            self._check_anomalies(channel, segment)
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

    def _check_anomalies(self, channel: Channel, segment: GridSegment) -> None:
        for event in channel.anomalies.check(segment.first_slot, segment.values, channel.frame_id):
            self._publish_anomaly(event)
            self.health.count(f"anomalies.{channel.name}")

    def _publish(self, channel: Channel, result: StreamForecast) -> None:
        last_slot = channel.origin_slot + result.first_sample - 1
        quantiles = np.sort(result.quantiles, axis=1) if self.settings.monotone_quantiles else result.quantiles
        levels = tuple(result.quantile_levels)
        median = quantiles[:, levels.index(0.5)] if 0.5 in levels else result.median
        period_s = self.settings.period_s
        self._publish_forecast(ChannelForecast(
            channel=channel.name, unit=channel.unit, frame_id=channel.frame_id, stamp_s=last_slot * period_s,
            period_s=period_s, quantile_levels=levels, quantiles=quantiles, median=median,
            context_samples=int(result.context_samples), missing_fraction=float(result.missing_fraction),
            last_value=channel.last_value, model=self.engine.model_name))
        channel.anomalies.band = ForecastBand(last_slot, quantiles, levels)
        channel.new_slots = 0
        self.health.count(f"forecasts.{channel.name}")

    # --- report ------------------------------------------------------------------------------------------
    def report(self, identity: Mapping[str, Any], periodic: bool = False) -> dict[str, Any]:
        """The node's status report: `identity` first, then the health's counters, drops, errors and
        latencies, then samples, streams, state_bytes, topics and channels (engine figures as of the last
        tick). `periodic`: the timer's report, which moves the mark that level ("warn": drops since then)
        compares with."""
        streams, state_bytes = self._figures
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

    # --- state file --------------------------------------------------------------------------------------
    def save_state(self, path: str | Path) -> None:
        """Absorb every sample (completing open slots) and save the streams and grid positions to `path`;
        a failure is counted (errors.state_save) and logged."""
        for channel in self.channels.values():
            channel.grid.complete_all()
        self._absorb_completed()
        channels = {name: {"topic": ch.source.topic, "type": ch.source.type_name, "field": ch.field.text,
                           "next_slot": ch.grid.next_slot, "origin_slot": ch.origin_slot, "clock": ch.source.clock,
                           "frame_id": ch.frame_id, "last_value": ch.last_value}
                    for name, ch in self.channels.items() if ch.origin_slot is not None}
        try:
            save_checkpoint({"format": STATE_FORMAT, "period_s": self.settings.period_s,
                             "engine": self.engine.state_dict(), "channels": channels}, path)
        except Exception as error:
            self.health.error("state_save")
            self.log.error(f"cannot save the streams to state_file '{path}': {error}")
            return
        self.log.info(f"saved {len(channels)} stream state(s) to {path}")

    def restore_state(self, path: str | Path) -> None:
        """Resume the streams saved in `path` (if it exists) before the first message. Channels whose topic,
        type and field are unchanged continue; a corrupt or foreign file is counted (errors.state_restore)
        and logged, and the bank starts fresh."""
        if not Path(path).exists():
            return
        try:
            saved = load_checkpoint(path)
            if saved.get("format") != STATE_FORMAT:
                raise CheckpointError(f"{path}: not a forecaster_node state (expected format {STATE_FORMAT})")
            if saved.get("period_s") != self.settings.period_s:
                raise CheckpointError(f"{path}: saved with period_s {saved.get('period_s')}, "
                                      f"the node runs {self.settings.period_s}")
            positions = self._saved_positions(saved["channels"])
            self.engine.load_state_dict(saved["engine"])  # leaves the engine as it was when it fails
        except Exception as error:  # a corrupt or foreign state file must not stop the node
            self.health.error("state_restore")
            self.log.error(f"cannot resume from state_file '{path}', starting fresh: {error}")
            return
        for name in set(self.engine.stream_names()) - set(positions):
            self.engine.reset_stream(name)  # its channel is gone or reads another field now
        for name, (next_slot, origin_slot, clock, frame_id, last_value) in positions.items():
            channel = self.channels[name]
            channel.grid.resume(next_slot)
            channel.origin_slot, channel.frame_id, channel.last_value = origin_slot, frame_id, last_value
            channel.source.clock = channel.source.clock or clock
        self.log.info(f"resumed {len(positions)} stream(s) from {path}")

    def _saved_positions(self, saved: Mapping[str, Any]) -> dict[str, tuple[int, int, str, str, float]]:
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
