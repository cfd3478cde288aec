"""Test helpers: RSS of a process, log throttling checks, a node of this package spun in the test process."""
from __future__ import annotations

import re
import threading
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

LOG_LINE = re.compile(r"^\[(?P<level>[A-Z]+)\] \[(?P<stamp>\d+\.\d+)\] \[[^\]]+\]: (?P<text>.*)$")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for process {pid}")


def log_times_by_cause(log: str, cause_pattern: str) -> dict[str, list[float]]:
    """Stamps (s) of WARN lines whose text matches `cause_pattern` (its groups together = the cause), by cause."""
    pattern = re.compile(cause_pattern)
    times = defaultdict(list)
    for line in log.splitlines():
        match = LOG_LINE.match(line)
        if match and match["level"] == "WARN":
            cause = pattern.search(match["text"])
            if cause:
                times[" ".join(cause.groups())].append(float(match["stamp"]))
    return dict(times)


def assert_throttled(times_by_cause: dict[str, list[float]], period_s: float = 1.0) -> None:
    """Each cause is logged at most once per period_s (1 ms slack: the log stamps use another clock)."""
    for cause, stamps in times_by_cause.items():
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        assert all(gap >= period_s - 1e-3 for gap in gaps), (cause, gaps)


@contextmanager
def node_in_process(node_class, context, parameters: dict):
    """Construct a node of this package in the test process (so a test can reach into it: the seams of
    the fault tests) and spin it on its own executor thread until the block ends."""
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    node = node_class(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()])
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        executor.shutdown()
        thread.join(timeout=10)
        if hasattr(node, "stop"):
            node.stop()
        node.destroy_node()
