"""`colcon build` of the package in a fresh workspace gives nodes, messages and the share directory.

Marked `colcon`: it runs in the test command; skip it locally with -m "not colcon"."""
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.colcon
REPO = Path(__file__).resolve().parents[1]


def copy_sources(target: Path) -> None:
    """The package's own files (git-tracked and untracked-but-not-ignored) into target/."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    target.mkdir(parents=True)
    archive = target.parent / "sources.tar"
    with tarfile.open(archive, "w") as tar:
        for name in filter(None, listed):
            if (REPO / name).exists() or (REPO / name).is_symlink():
                tar.add(REPO / name, arcname=name, recursive=False)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="tar")


def test_colcon_build_installs_nodes_messages_and_share(tmp_path):
    if shutil.which("colcon", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]) is None:
        pytest.fail("colcon is not installed (requirements/test.txt installs colcon-common-extensions)")
    copy_sources(tmp_path / "src" / "xlstm_ros")
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env.setdefault("CMAKE_PREFIX_PATH", env["AMENT_PREFIX_PATH"])
    build = subprocess.run(["colcon", "build", "--event-handlers", "console_direct-"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]

    prefix = tmp_path / "install" / "xlstm_ros"
    for executable in ("forecaster_node", "depth_node", "xlstm-ros"):
        assert (prefix / "lib" / "xlstm_ros" / executable).is_file(), executable  # where `ros2 run` looks
    probe = (
        "import rclpy.serialization as s, xlstm_ros, xlstm_ros_msgs.msg as m\n"
        "from ament_index_python.packages import get_package_share_directory as share\n"
        "msg = m.Forecast(channel='x', horizon=2, median=[1.0, 2.0])\n"
        "assert s.deserialize_message(s.serialize_message(msg), m.Forecast) == msg\n"
        "print(share('xlstm_ros'), share('xlstm_ros_msgs'), m.__file__, xlstm_ros.__file__, sep='\\n')\n")
    run = subprocess.run(["bash", "-c", f"source install/setup.bash && {sys.executable} -c \"$PROBE\""],
                         cwd=tmp_path, env={**env, "PROBE": probe}, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.split()
    assert lines[0] == str(prefix / "share" / "xlstm_ros")
    assert lines[1] == str(prefix / "share" / "xlstm_ros_msgs")
    assert all(line.startswith(str(prefix)) for line in lines[2:]), lines
    assert (prefix / "share" / "xlstm_ros" / "package.xml").is_file()
