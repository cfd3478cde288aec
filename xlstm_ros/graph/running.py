"""A running node graph: node processes on a reserved domain and a client node spun in this process.

The demo, `xlstm-ros play`, the benchmarks and the ROS tests start, watch and stop nodes through `running`:

    with running("out/logs", nodes=drone_graph(config)) as graph:
        graph.wait_until_up(graph.nodes, timeout_s=120)
        maps = graph.client.collect(Image, "/depth")
        report = graph.status("forecaster_node").get()

Inside the block this process has the nodes' ROS environment (LOCALHOST discovery, the reserved
ROS_DOMAIN_ID), so its own participants follow the same rules. On exit every process still running is
stopped, and a node that ended by itself (crashed) raises NodeCrashed with its log.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import rclpy
from rclpy.context import Context
from rclpy.signals import SignalHandlerOptions

from xlstm_ros.graph.processes import NodeProcess, adopted_ros_environment, reserve_domain_id, start_node
from xlstm_ros.graph.spinning import SpinningNode, wait_for
from xlstm_ros.graph.status import StatusClient

LOG_TAIL_CHARS = 3000


class NodeCrashed(RuntimeError):
    """Node processes ended by themselves; the message holds each one's exit code and the end of its log."""

    def __init__(self, processes: Sequence[NodeProcess], when: str):
        self.processes = list(processes)
        super().__init__("\n".join(f"{process.executable} exited {when} (code {process.process.returncode}):\n"
                                   f"{process.output()[-LOG_TAIL_CHARS:]}" for process in self.processes))


class RunningGraph:
    """What `running` yields: the domain, this process's rclpy context and client node, the node processes."""

    def __init__(self, domain_id: int, log_dir: Path, context: Context, client_name: str):
        self.domain_id = domain_id
        self.log_dir = log_dir
        self.context = context
        self.client = SpinningNode(context, client_name)
        self.nodes: dict[str, NodeProcess] = {}  # the nodes `running` was asked to start, by executable
        self.processes: list[NodeProcess] = []  # every process started, those included
        self._status: dict[str, StatusClient] = {}

    def start(self, executable: str, args: Iterable[str] = (), *, expect_exit: bool = False) -> NodeProcess:
        """Start an installed node entry point on the graph's domain (logs in log_dir); stopped on exit.
        `expect_exit`: it may end by itself (a finite flight, a start-up error under test)."""
        process = start_node(executable, domain_id=self.domain_id, log_dir=self.log_dir, args=args,
                             expect_exit=expect_exit)
        self.processes.append(process)
        return process

    def status(self, node_name: str) -> StatusClient:
        """The `~/get_status` client of a node, called from the client node."""
        if node_name not in self._status:
            self._status[node_name] = StatusClient(self.client, node_name)
        return self._status[node_name]

    def crashed(self) -> list[NodeProcess]:
        """Processes that ended by themselves although nobody stopped them or expected it."""
        return [process for process in self.processes if process.crashed]

    def check(self, when: str) -> None:
        """Raise NodeCrashed if a process crashed; `when` completes its message ("during the flight")."""
        crashed = self.crashed()
        if crashed:
            raise NodeCrashed(crashed, when)

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, when: str) -> bool:
        """Poll `predicate` like spinning.wait_for, but raise NodeCrashed as soon as a process crashed."""
        met = wait_for(lambda: predicate() or bool(self.crashed()), timeout_s)
        self.check(when)
        return met

    def wait_until_up(self, node_names: Iterable[str], timeout_s: float) -> None:
        """Wait until each node answers `~/get_status` (it offers the service once its model is loaded)."""
        clients = [self.status(name) for name in node_names]
        if not self.wait_for(lambda: all(client.ready for client in clients), timeout_s, "while starting"):
            late = ", ".join(client.node_name for client in clients if not client.ready)
            raise RuntimeError(f"{late} did not come up within {timeout_s:g} s (logs in {self.log_dir})")


@contextmanager
def running(log_dir: str | Path, *, nodes: Mapping[str, Sequence[str]] | None = None,
            client_name: str = "graph_client") -> Iterator[RunningGraph]:
    """Reserve a domain, adopt its ROS environment, spin `client_name` in this process and start `nodes`
    ({executable: --ros-args}, e.g. drone_graph(config)); stop everything when the block ends."""
    log_dir = Path(log_dir)
    with reserve_domain_id() as domain, adopted_ros_environment(domain.domain_id, log_dir / "ros"):
        context = Context()
        # no rclpy signal handlers: Ctrl-C raises KeyboardInterrupt in the caller, whose block then stops the nodes
        rclpy.init(context=context, domain_id=domain.domain_id, signal_handler_options=SignalHandlerOptions.NO)
        graph, body_failed = None, True
        try:
            graph = RunningGraph(domain.domain_id, log_dir, context, client_name)
            for executable, args in (nodes or {}).items():
                graph.nodes[executable] = graph.start(executable, args)
            yield graph
            body_failed = False
        finally:
            crashed = graph.crashed() if graph is not None else []
            if graph is not None:
                for process in graph.processes:
                    process.stop()
                graph.client.close()
            context.try_shutdown()
        if crashed and not body_failed:  # an error already on its way says more than a crash it caused
            raise NodeCrashed(crashed, "before the graph was stopped")
