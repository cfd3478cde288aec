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
    from xlstm_ros.graph.processes import fastdds_profile

    profile = fastdds_profile()
    if profile is not None:
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))


_use_the_package_fastdds_profile()


def _import_triton_before_any_gl_context() -> None:
    """Mesa's llvmpipe and Triton each load their own LLVM: importing Triton after a GL context exists in the
    process crashes it, so the session imports Triton first and the order of the tests does not matter."""
    import importlib.util

    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


_import_triton_before_any_gl_context()


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tests use small tensors: one intra-op thread is faster than two fighting over a busy 2-core machine
    (node processes started by tests keep their own defaults)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def ros_graph(tmp_path, request):
    """The test's node graph (xlstm_ros.graph.running): a reserved domain, a client node spun in the test
    process, and `ros_graph.start(...)` for node processes, stopped after the test. A node that ended by
    itself fails the test with its log, unless it was started with expect_exit=True (start-up errors)."""
    from xlstm_ros.graph.running import running

    with running(tmp_path / "ros_graph", client_name="test_" + request.node.name.split("[")[0][:40]) as graph:
        yield graph
