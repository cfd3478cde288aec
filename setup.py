"""Install xlstm_ros and build its interface package xlstm_ros_msgs in the same step.

`pip install .` (in a venv with the ROS 2 wheels) and `colcon build` (in a ROS workspace) both run
`build_msgs` below: it configures, builds and installs msg/ with CMake + rosidl into a staging prefix
and hands the result to setuptools, so nodes and messages land in the same prefix.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Command, Distribution, find_packages, setup
from setuptools.command.build import build

PACKAGE = "xlstm_ros"
MSG_PACKAGE = "xlstm_ros_msgs"
ROOT = Path(__file__).resolve().parent


class BuildMessages(Command):
    """Build msg/ with CMake and stage it: the Python package into build_lib, the rest as data_files."""

    description = "build the xlstm_ros_msgs interface package with CMake/rosidl"
    user_options = []

    def initialize_options(self):
        self.build_base = None
        self.build_lib = None

    def finalize_options(self):
        self.set_undefined_options("build", ("build_base", "build_base"), ("build_lib", "build_lib"))

    def run(self):
        work = (ROOT / self.build_base / "msgs").resolve()
        stage = work / "stage"
        env = dict(os.environ)
        env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
        env["CMAKE_PREFIX_PATH"] = os.pathsep.join(
            p for p in (env.get("CMAKE_PREFIX_PATH"), env["AMENT_PREFIX_PATH"], sys.prefix) if p)
        env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
        cmake = shutil.which("cmake")
        if cmake is None:
            raise RuntimeError("cmake is required to build the xlstm_ros_msgs messages (apt install cmake)")
        self.spawn_env([cmake, "-S", str(ROOT / "msg"), "-B", str(work / "cmake"),
                        f"-DCMAKE_INSTALL_PREFIX={stage}", f"-DPython3_EXECUTABLE={sys.executable}",
                        "-DBUILD_TESTING=OFF", "-DCMAKE_BUILD_TYPE=Release"], env)
        self.spawn_env([cmake, "--build", str(work / "cmake"), "--parallel", str(os.cpu_count() or 2)], env)
        if stage.exists():
            shutil.rmtree(stage)
        self.spawn_env([cmake, "--install", str(work / "cmake")], env)
        self.hand_over(stage)

    def spawn_env(self, cmd, env):
        self.announce(" ".join(cmd), level=2)
        subprocess.run(cmd, env=env, check=True)

    def hand_over(self, stage):
        """Python package -> build_lib (installed with the code); lib/ and share/ -> data_files."""
        site = stage / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
        target = Path(self.build_lib) / MSG_PACKAGE
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(site / MSG_PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.c"))
        data_files = self.distribution.data_files
        for top in ("lib", "share"):
            for path in sorted((stage / top).rglob("*")):
                if path.is_file() and site not in path.parents:
                    data_files.append((str(path.parent.relative_to(stage)), [str(path)]))


class BuildWithMessages(build):
    sub_commands = [("build_msgs", None)] + build.sub_commands


class BinaryDistribution(Distribution):
    """The wheel carries compiled message libraries, so it is platform specific."""

    def has_ext_modules(self):
        return True


def package_files(directory):
    return [(f"share/{PACKAGE}/{directory}", [str(p) for p in sorted(Path(directory).glob("*")) if p.is_file()])]


setup(
    name=PACKAGE,
    version="0.1.0",
    description="xLSTM for ROS 2: Vision-xLSTM depth and TiRex forecasting with persistent recurrent state",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"], exclude=[f"{PACKAGE}.kernels*"])
    + [f"{PACKAGE}.kernels"],
    package_dir={f"{PACKAGE}.kernels": "kernels"},
    package_data={f"{PACKAGE}.weights": ["*.pt", "*.ckpt", "*.safetensors", "*.md", "*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *package_files("launch"),
        *package_files("config"),
    ],
    install_requires=["numpy", "torch>=2.4", "opencv-python-headless", "pyyaml"],
    zip_safe=False,
    distclass=BinaryDistribution,
    cmdclass={"build": BuildWithMessages, "build_msgs": BuildMessages},
    entry_points={
        "console_scripts": [
            "xlstm-ros = xlstm_ros.cli:main",
            "forecaster_node = xlstm_ros.nodes.forecaster_node:main",
            "depth_node = xlstm_ros.nodes.depth_node:main",
            "drone_sim_node = xlstm_ros.nodes.drone_sim_node:main",
        ],
    },
)
