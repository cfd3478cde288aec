"""Health bookkeeping and operator reporting shared by the nodes: counts, drops, rates, latencies, status.

`NodeHealth` is updated from callbacks (thread-safe). A node turns it, plus its own sections, into one
report dict (`NodeHealth.report`) and `StatusOutputs` publishes that report three ways: flattened into a
diagnostic_msgs/DiagnosticStatus on /diagnostics, as JSON in an xlstm_ros_msgs/NodeStatus on the latched
`~/status` topic, and on request through the `~/get_status` service (xlstm_ros_msgs/srv/GetStatus).
`ThrottledLog` logs each cause at most once per `period_s`, so a flood of bad input is visible in the log
without drowning it; every occurrence is still counted. `PublicationGaps` counts messages that DDS lost
between a publisher and the node (gaps in the publishers' sequence numbers), so that no loss is silent.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import threading
import time
from collections import Counter, OrderedDict, deque
from typing import Any, Callable, Mapping

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from xlstm_ros_msgs.msg import NodeStatus
from xlstm_ros_msgs.srv import GetStatus

LEVEL_NAMES = {NodeStatus.OK: "ok", NodeStatus.WARN: "warn", NodeStatus.ERROR: "error"}


class LatencyWindow:
    """The most recent latencies (seconds) and their percentiles in milliseconds."""

    def __init__(self, size: int = 512):
        self._values: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._values.append(seconds)

    def percentiles_ms(self, levels=(50, 90, 99)) -> dict[str, float]:
        if not self._values:
            return {}
        values = np.percentile(np.fromiter(self._values, float), levels) * 1e3
        return {f"p{level}": round(float(v), 3) for level, v in zip(levels, values)}


class RateMeter:
    """Events per second over a sliding window, in fixed-size memory (counts per time bucket)."""

    def __init__(self, window_s: float = 5.0, buckets: int = 10):
        self.window_s = window_s
        self._bucket_s = window_s / buckets
        self._counts: deque[list[int]] = deque()  # [bucket index, events], oldest first

    def tick(self, now: float | None = None, amount: int = 1) -> None:
        bucket = math.floor((time.monotonic() if now is None else now) / self._bucket_s)
        if self._counts and self._counts[-1][0] == bucket:
            self._counts[-1][1] += amount
        else:
            self._counts.append([bucket, amount])
            self._expire(bucket)

    def rate_hz(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        bucket = math.floor(now / self._bucket_s)
        self._expire(bucket)
        covered_s = self.window_s - self._bucket_s + (now - bucket * self._bucket_s)  # the newest bucket is partial
        return sum(count for _, count in self._counts) / covered_s

    def _expire(self, bucket: int) -> None:
        oldest = bucket - round(self.window_s / self._bucket_s) + 1
        while self._counts and self._counts[0][0] < oldest:
            self._counts.popleft()


class NodeHealth:
    """Counters, drops by reason, errors, rates and latencies of one node (safe to update from any thread)."""

    def __init__(self):
        self.started = time.monotonic()
        self.counts: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.latency: dict[str, LatencyWindow] = {}
        self.rates: dict[str, RateMeter] = {}
        self._lock = threading.Lock()
        self._reported = (0, 0)  # drops and errors at the last report()

    def count(self, name: str, amount: int = 1) -> None:
        """Add to counter `name`; its rate is reported as rates_hz.<name>."""
        with self._lock:
            self.counts[name] += amount
            self.rates.setdefault(name, RateMeter()).tick(amount=amount)

    def drop(self, reason: str, amount: int = 1) -> None:
        with self._lock:
            self.drops[reason] += amount

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def observe_latency(self, name: str, seconds: float) -> None:
        with self._lock:
            self.latency.setdefault(name, LatencyWindow()).add(seconds)

    def report(self, identity: Mapping[str, Any], sections: Mapping[str, Any] | None = None,
               drops: Mapping[str, int] | None = None, periodic: bool = True) -> dict[str, Any]:
        """The node's report: `identity` (model, device, ...), level and message, this health's counts,
        rates, drops (plus `drops` counted elsewhere), errors and latency percentiles, then `sections`.

        level is "error" when errors happened since the previous periodic report, "warn" when inputs were
        dropped since then, else "ok"; a report on request (periodic=False) does not move that mark."""
        with self._lock:
            all_drops = self.drops + Counter(drops or {})
            report = {
                **identity,
                "uptime_s": round(time.monotonic() - self.started, 3),
                "counts": dict(sorted(self.counts.items())),
                "rates_hz": {name: round(meter.rate_hz(), 3) for name, meter in sorted(self.rates.items())},
                "drops": dict(sorted(all_drops.items())),
                "errors": dict(sorted(self.errors.items())),
                "latency_ms": {name: window.percentiles_ms() for name, window in sorted(self.latency.items())},
            }
            dropped, errors = sum(all_drops.values()), sum(self.errors.values())
            new_drops, new_errors = dropped - self._reported[0], errors - self._reported[1]
            if periodic:
                self._reported = (dropped, errors)
        level, message = NodeStatus.OK, "ok"
        if new_errors:
            level, message = NodeStatus.ERROR, f"{new_errors} error(s) since the last report"
        elif new_drops:
            level, message = NodeStatus.WARN, f"{new_drops} input(s) dropped since the last report"
        report["level"], report["message"] = LEVEL_NAMES[level], message
        report.update(sections or {})
        return report


def flatten(report: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested report -> {"drops.late": "3", "latency_ms.forecast.p50": "12.5", ...} for /diagnostics."""
    flat = {}
    for key, value in report.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            flat[name] = ", ".join(str(v) for v in value)
        else:
            flat[name] = str(value)
    return flat


class StatusOutputs:
    """/diagnostics, the latched `~/status` topic and the `~/get_status` service of one node.

    `publish(report)` sends the report (from NodeHealth.report) on /diagnostics and ~/status; the service
    answers with a fresh report from `make_report(periodic=False)`. `diagnostic_keys` selects the report's
    sections that go to /diagnostics (the full report is always in the NodeStatus JSON)."""

    def __init__(self, node: Node, title: str, make_report: Callable[..., dict[str, Any]],
                 diagnostic_keys: Callable[[str], bool] = lambda key: True):
        self._node = node
        self._title = title
        self._make_report = make_report
        self._diagnostic_keys = diagnostic_keys
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._status = node.create_publisher(NodeStatus, "~/status", latched)
        node.create_service(GetStatus, "~/get_status", self._on_get_status)

    def publish(self, report: Mapping[str, Any]) -> None:
        stamp = self._node.get_clock().now().to_msg()
        level = _level_of(report)
        values = flatten({k: v for k, v in report.items() if k not in ("level", "message")
                          and self._diagnostic_keys(k)})
        status = DiagnosticStatus(level=bytes([level]), name=f"{self._node.get_name()}: {self._title}",
                                  message=report["message"], hardware_id=str(report.get("model", "")),
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = stamp
        self._diagnostics.publish(array)
        self._status.publish(self.node_status(report, stamp))

    def node_status(self, report: Mapping[str, Any], stamp=None) -> NodeStatus:
        msg = NodeStatus(node=self._node.get_fully_qualified_name(), level=_level_of(report),
                         message=report["message"], model=str(report.get("model", "")),
                         device=str(report.get("device", "")), backend=str(report.get("backend", "")),
                         uptime_s=float(report.get("uptime_s", 0.0)), json=json.dumps(report, default=str))
        msg.header.stamp = stamp if stamp is not None else self._node.get_clock().now().to_msg()
        return msg

    def _on_get_status(self, request, response):
        response.status = self.node_status(self._make_report(periodic=False))
        return response


def release_free_memory() -> None:
    """Give memory that the C heap holds but no longer uses back to the OS (glibc malloc_trim; elsewhere a
    no-op). Big transient tensors freed by one thread stay in that thread's malloc arena otherwise, so a
    node's resident memory would creep up to (threads x peak) and no longer show what it really uses."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None
if _LIBC is not None and not hasattr(_LIBC, "malloc_trim"):
    _LIBC = None


def _level_of(report: Mapping[str, Any]) -> int:
    return {name: level for level, name in LEVEL_NAMES.items()}[report["level"]]


class ThrottledLog:
    """Log a message per cause at most once every `period_s` seconds (all occurrences counted)."""

    def __init__(self, log: Callable[[str], None], period_s: float = 1.0):
        self._log = log
        self._period_s = period_s
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, cause: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(cause, -1e18) < self._period_s:
                self._suppressed[cause] += 1
                return
            self._last[cause] = now
            suppressed = self._suppressed.pop(cause, 0)
        self._log(message + (f" ({suppressed} more like this since the last report)" if suppressed else ""))


class PublicationGaps:
    """Messages lost between publishers and a subscription: gaps in each publisher's sequence numbers.

    Feed it the MessageInfo of every received message (subscription callbacks that take two arguments get
    it). DDS numbers each publisher's messages 1, 2, 3, ...; a jump from n to n + k + 1 means k messages
    were published after the first one this node received but never reached its callback (lost on the
    network, or overwritten in a keep-last queue while the node was busy). Messages published before the
    first received one are not counted: they may predate the connection. Remembers the newest
    `max_publishers` publishers (constant memory when publishers come and go)."""

    def __init__(self, max_publishers: int = 256):
        self._last: OrderedDict[bytes, int] = OrderedDict()
        self._max = max_publishers

    def lost(self, info: Mapping[str, Any]) -> int:
        """Messages lost since the previous message of the same publisher (0 when unknown)."""
        sequence, gid = info.get("publication_sequence_number"), info.get("publisher_gid")
        if sequence is None or gid is None:
            return 0
        key = bytes(gid["data"])
        previous = self._last.get(key)
        self._last[key] = max(sequence, previous or 0)
        self._last.move_to_end(key)
        if len(self._last) > self._max:
            self._last.popitem(last=False)
        return max(sequence - previous - 1, 0) if previous is not None else 0
