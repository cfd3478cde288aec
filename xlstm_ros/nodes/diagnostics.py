"""Health bookkeeping of a node and its /diagnostics status: counts, drops by reason, rates, latencies.

`NodeHealth` is updated from callbacks (thread-safe) and turned into a diagnostic_msgs/DiagnosticStatus
once per second. `ThrottledLog` logs each cause at most once per `period_s`, so a flood of bad input is
visible in the log without drowning it; every occurrence is still counted in `NodeHealth.drops`.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Callable, Mapping

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


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
        return {f"p{level}": float(v) for level, v in zip(levels, values)}


class RateMeter:
    """Events per second over a sliding window."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float | None = None) -> None:
        self._times.append(time.monotonic() if now is None else now)

    def rate_hz(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()
        return len(self._times) / self.window_s


class NodeHealth:
    """Counters, drops by reason, rates and latencies of one node (safe to update from any thread)."""

    def __init__(self):
        self.counts: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self.latency: dict[str, LatencyWindow] = {}
        self.rates: dict[str, RateMeter] = {}
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._reported = (0, 0)  # drops and errors at the last status()

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[name] += amount
            self.rates.setdefault(name, RateMeter()).tick()

    def drop(self, reason: str, amount: int = 1) -> None:
        with self._lock:
            self.drops[reason] += amount

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def observe_latency(self, name: str, seconds: float) -> None:
        with self._lock:
            self.latency.setdefault(name, LatencyWindow()).add(seconds)

    def snapshot(self) -> dict[str, object]:
        """Everything as plain values (also what the status topic publishes)."""
        with self._lock:
            return {
                "counts": dict(self.counts),
                "rates_hz": {name: round(meter.rate_hz(), 3) for name, meter in self.rates.items()},
                "drops": dict(self.drops),
                "errors": dict(self.errors),
                "latency_ms": {name: window.percentiles_ms() for name, window in self.latency.items()},
            }

    def status(self, name: str, hardware_id: str, extra: Mapping[str, object]) -> DiagnosticStatus:
        """A DiagnosticStatus: ERROR on errors, WARN on drops since the previous call, else OK."""
        snap = self.snapshot()
        values = [KeyValue(key=str(k), value=str(v)) for k, v in extra.items()]
        for section in ("counts", "rates_hz", "drops", "errors"):
            values += [KeyValue(key=f"{section}.{k}", value=str(v)) for k, v in sorted(snap[section].items())]
        for stage, percentiles in sorted(snap["latency_ms"].items()):
            values += [KeyValue(key=f"latency_ms.{stage}.{p}", value=f"{v:.2f}") for p, v in percentiles.items()]
        drops, errors = sum(snap["drops"].values()), sum(snap["errors"].values())
        new_drops, new_errors = drops - self._reported[0], errors - self._reported[1]
        self._reported = (drops, errors)
        level, message = DiagnosticStatus.OK, "ok"
        if new_errors:
            level, message = DiagnosticStatus.ERROR, f"{new_errors} error(s) since the last report"
        elif new_drops:
            level, message = DiagnosticStatus.WARN, f"{new_drops} input(s) dropped since the last report"
        return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id, values=values)


def diagnostic_array(stamp, statuses) -> DiagnosticArray:
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = list(statuses)
    return array


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
