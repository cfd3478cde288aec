"""rosbag2 recording and playback without the ros2 CLI, through the pure-Python `rosbags` library.

`BagRecorder` subscribes to topics with raw (serialized CDR) subscriptions and writes the bytes unchanged
into an mcap or sqlite3 rosbag2, so what is stored is exactly what travelled over DDS. `BagPlayer` reads a
bag and republishes its messages with their original timing (scaled by `rate`). Message definitions come
from the rosbags type store of ROS 2 Kilted plus this package's own `xlstm_ros_msgs` definitions, read
from the installed share directory.
"""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Iterable, Mapping

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from xlstm_ros.graph.processes import share_directory
from xlstm_ros.nodes.fields import import_message_type

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def typestore_with_our_messages():
    """The ROS 2 Kilted type store plus xlstm_ros_msgs, registered from their installed .msg files."""
    store = get_typestore(Stores.ROS2_KILTED)
    msg_dir = share_directory("xlstm_ros_msgs") / "msg"
    types = {}
    for path in sorted(msg_dir.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"xlstm_ros_msgs/msg/{path.stem}"))
    store.register(types)
    return store


class BagRecorder:
    """Record `topics` ({topic: "pkg/msg/Type"}) from `node` into a new bag at `path`.

    Callbacks only queue the serialized bytes; one writer thread owns the bag (sqlite3 objects must stay
    in the thread that made them, and disk time never stalls the executor)."""

    def __init__(self, node: Node, path: str | Path, topics: Mapping[str, str], storage: str = "mcap",
                 depth: int = 100):
        self.path = Path(path)
        self.counts: dict[str, int] = {topic: 0 for topic in topics}
        self._queue: queue.Queue = queue.Queue()
        self._clock = node.get_clock()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(dict(topics), STORAGES[storage]),
                                        name="bag_writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        for topic, type_name in topics.items():
            qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT)
            node.create_subscription(import_message_type(type_name), topic,
                                     lambda data, t=topic: self._queue.put((t, self._clock.now().nanoseconds,
                                                                            data)), qos, raw=True)

    def _run(self, topics: dict[str, str], storage: StoragePlugin) -> None:
        try:
            store = typestore_with_our_messages()
            writer = Writer(self.path, version=9, storage_plugin=storage)
            writer.open()
            connections = {topic: writer.add_connection(topic, type_name, typestore=store)
                           for topic, type_name in topics.items()}
        except BaseException as error:  # reported to the constructor's caller
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        try:
            while (item := self._queue.get()) is not None:
                topic, stamp_ns, data = item
                writer.write(connections[topic], stamp_ns, data)
                self.counts[topic] += 1
        finally:
            writer.close()

    def close(self) -> None:
        """Write what is queued and close the bag."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def read_messages(path: str | Path, topics: Iterable[str] | None = None):
    """Yield (topic, receive time ns, message) from a bag, deserialised with our type store."""
    store = typestore_with_our_messages()
    with Reader(path) as reader:
        wanted = set(topics) if topics is not None else None
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        for connection, timestamp, data in reader.messages(connections=connections):
            yield connection.topic, timestamp, store.deserialize_cdr(data, connection.msgtype)


class BagPlayer:
    """Republish a bag's messages (serialized, unchanged) with their recorded timing scaled by `rate`."""

    def __init__(self, node: Node, path: str | Path, rate: float = 1.0,
                 remap: Mapping[str, str] | None = None, topics: Iterable[str] | None = None):
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.path, self.rate, self.published = Path(path), rate, 0
        remap = dict(remap or {})
        self._reader = Reader(self.path)
        self._reader.open()
        wanted = set(topics) if topics is not None else None
        self._connections = [c for c in self._reader.connections if wanted is None or c.topic in wanted]
        self._publishers = {}
        for connection in self._connections:
            if connection.topic not in self._publishers:
                msg_type = import_message_type(connection.msgtype)
                self._publishers[connection.topic] = node.create_publisher(
                    msg_type, remap.get(connection.topic, connection.topic), 10)

    @property
    def topics(self) -> dict[str, str]:
        return {c.topic: c.msgtype for c in self._connections}

    def play(self, should_stop=lambda: False) -> int:
        """Publish every message in order, sleeping to keep the recorded spacing; returns the count."""
        start_wall, start_bag = time.monotonic(), None
        for connection, timestamp, data in self._reader.messages(connections=self._connections):
            if should_stop():
                break
            start_bag = timestamp if start_bag is None else start_bag
            delay = (timestamp - start_bag) * 1e-9 / self.rate - (time.monotonic() - start_wall)
            if delay > 0:
                time.sleep(delay)
            self._publishers[connection.topic].publish(data)
            self.published += 1
        return self.published

    def close(self) -> None:
        self._reader.close()
