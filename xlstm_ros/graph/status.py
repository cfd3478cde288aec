"""A node's report through its `~/get_status` service (xlstm_ros_msgs/srv/GetStatus), as a dict."""
from __future__ import annotations

import json
import time
from typing import Callable

from xlstm_ros_msgs.srv import GetStatus

from xlstm_ros.graph.spinning import SpinningNode


class StatusClient:
    """Calls `/<node_name>/get_status` from a SpinningNode (whose thread delivers the answers)."""

    def __init__(self, client: SpinningNode, node_name: str):
        self.node_name = node_name
        self._client = client.node.create_client(GetStatus, f"/{node_name}/get_status")

    @property
    def ready(self) -> bool:
        """The service is there: the node has loaded its model and answers."""
        return self._client.service_is_ready()

    def wait(self, timeout_s: float = 60.0) -> bool:
        return self._client.wait_for_service(timeout_sec=timeout_s)

    def get(self, timeout_s: float = 30.0) -> dict:
        future = self._client.call_async(GetStatus.Request())
        deadline = time.monotonic() + timeout_s
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.node_name}/get_status did not answer")
            time.sleep(0.01)
        return json.loads(future.result().status.json)

    def wait_until(self, predicate: Callable[[dict], bool], timeout_s: float) -> dict:
        """Poll until predicate(report) holds; returns the last report (check the predicate again)."""
        deadline = time.monotonic() + timeout_s
        report = self.get()
        while not predicate(report) and time.monotonic() < deadline:
            time.sleep(0.1)
            report = self.get()
        return report
