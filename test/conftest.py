"""Shared fixtures: every ROS test runs on its own reserved ROS_DOMAIN_ID with LOCALHOST discovery."""
import os
import sys

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
if sys.prefix not in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
    os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join(
        p for p in (sys.prefix, os.environ.get("AMENT_PREFIX_PATH")) if p)
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
sys.path.insert(0, os.path.dirname(__file__))


def _use_the_package_fastdds_profile() -> None:
    """This process's participants use the same Fast DDS profile as the node processes (Fast DDS reads it
    once per process, so it must be set before the first rclpy.init)."""
    from xlstm_ros.nodes.processes import fastdds_profile

    profile = fastdds_profile()
    if profile is not None:
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))


_use_the_package_fastdds_profile()


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tests use small tensors: one intra-op thread is faster than two fighting over a busy 2-core machine
    (node processes started by tests keep their own defaults)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def ros_domain():
    """A ROS_DOMAIN_ID that no other test or run on this machine uses while the test runs."""
    from xlstm_ros.nodes.processes import reserve_domain_id

    with reserve_domain_id() as reservation:
        yield reservation.domain_id


@pytest.fixture
def ros_context(ros_domain, tmp_path, monkeypatch):
    """An initialised rclpy context on the test's domain (logs in the test's temporary folder)."""
    import rclpy

    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "ros_log"))
    monkeypatch.setenv("ROS_DOMAIN_ID", str(ros_domain))
    context = rclpy.context.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    yield context
    context.try_shutdown()


@pytest.fixture
def test_node(ros_context, request):
    """A spinning rclpy node in the test process."""
    from xlstm_ros.nodes.spinning import SpinningNode

    node = SpinningNode(ros_context, "test_" + request.node.name.split("[")[0][:40])
    yield node
    node.close()


@pytest.fixture
def node_process(ros_domain, tmp_path):
    """Factory: start an installed node entry point on the test's domain; stopped after the test.

    A node that exited by itself before the test ended makes the test fail with its log, unless it was
    started with expect_exit=True (tests of start-up errors)."""
    from xlstm_ros.nodes.processes import start_node

    started = []

    def start(executable, args=(), expect_exit=False, **kwargs):
        process = start_node(executable, domain_id=ros_domain, log_dir=tmp_path / f"node{len(started)}",
                             args=args, **kwargs)
        process.expect_exit = expect_exit
        started.append(process)
        return process

    yield start
    crashed = [p for p in started if not p.running and not p.expect_exit]
    for process in started:
        process.stop()
    for process in crashed:
        pytest.fail(f"{process.executable} exited early with code {process.process.returncode}:\n"
                    f"{process.output()[-4000:]}")
