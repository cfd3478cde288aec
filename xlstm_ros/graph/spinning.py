"""An rclpy node spun by a background thread, and polling until something has arrived.

The client node of a running graph (xlstm_ros.graph.running): the caller's thread stays free to publish,
play a bag or measure while the executor thread delivers messages.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll `predicate` until it is true or `timeout_s` has passed; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


class SpinningNode:
    """An rclpy node on `context`, spun by a background executor thread until `close`."""

    def __init__(self, context: rclpy.context.Context, name: str):
        self.node = Node(name, context=context)
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self.node)
        self._running = True
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self._running and self.node.context.ok():
            self._executor.spin_once(timeout_sec=0.02)

    def collect(self, msg_type, topic: str, qos=10) -> list:
        """Subscribe to `topic` and return the list that received messages are appended to."""
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=5)
        self._executor.shutdown()
        self.node.destroy_node()
