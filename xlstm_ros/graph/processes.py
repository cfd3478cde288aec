"""Start xlstm_ros nodes as their own processes, through their console entry points, on a private domain.

Every process gets discovery limited to this machine, a ROS_DOMAIN_ID reserved for this run (a file lock,
so concurrent runs on one machine never share a domain), logs in a folder we choose, an AMENT_PREFIX_PATH
that contains this interpreter's prefix (where pip installed the package and messages), and, for Fast DDS,
the package's participant profile with shared-memory segments big enough for whole camera frames
(config/fastdds_large_shm.xml). This module does not import rclpy, so the CLI and launch files can use it.
"""
from __future__ import annotations

import fcntl
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

FASTDDS_PROFILE = "fastdds_large_shm.xml"  # in share/xlstm_ros/config
MAX_DOMAIN_ID = 101  # FastDDS: domain ids 0..101 on Linux (ports derive from the id)
_LOCK_DIR = Path(tempfile.gettempdir()) / "xlstm_ros_domains"


class DomainReservation:
    """An exclusive ROS_DOMAIN_ID for as long as this object is open (a file lock per id)."""

    def __init__(self, domain_id: int, handle):
        self.domain_id = domain_id
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "DomainReservation":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def reserve_domain_id(candidates: Iterable[int] | None = None) -> DomainReservation:
    """Lock a free domain id (1..MAX_DOMAIN_ID, random order) against other runs on this machine."""
    _LOCK_DIR.mkdir(parents=True, exist_ok=True)
    ids = list(candidates) if candidates is not None else random.sample(range(1, MAX_DOMAIN_ID + 1),
                                                                        MAX_DOMAIN_ID)
    for domain_id in ids:
        handle = open(_LOCK_DIR / f"{domain_id}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        return DomainReservation(domain_id, handle)
    raise RuntimeError(f"no free ROS_DOMAIN_ID among {len(ids)} candidates (locks in {_LOCK_DIR})")


def ros_environment(domain_id: int, log_dir: str | os.PathLike | None = None,
                    base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a ROS process of ours: LOCALHOST discovery, the given domain, logs in log_dir, and
    the package's Fast DDS profile unless FASTDDS_DEFAULT_PROFILES_FILE already names one."""
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp" and not env.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        profile = fastdds_profile()
        if profile is not None:
            env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    prefixes = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if sys.prefix not in prefixes:
        env["AMENT_PREFIX_PATH"] = os.pathsep.join([sys.prefix, *prefixes])
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        env["ROS_LOG_DIR"] = str(log_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def share_directory(package: str) -> Path:
    """The installed share/<package> folder: from the ament index, else under this interpreter's prefix
    (where pip installs it), so that it is found even when AMENT_PREFIX_PATH is not set."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(package))
    except (ImportError, LookupError, OSError):  # not indexed, or AMENT_PREFIX_PATH unset
        fallback = Path(sys.prefix) / "share" / package
        if fallback.is_dir():
            return fallback
        raise FileNotFoundError(f"share directory of '{package}' not found (is the package installed?)") from None


def fastdds_profile() -> Path | None:
    """The installed config/fastdds_large_shm.xml (None when the package is not installed).

    Fast DDS's built-in 512 KiB shared-memory segment sends bigger messages as fragmented UDP, where
    best-effort sensor QoS loses many camera frames and depth maps even on one machine."""
    try:
        path = share_directory("xlstm_ros") / "config" / FASTDDS_PROFILE
    except FileNotFoundError:
        return None
    return path if path.is_file() else None


@contextmanager
def adopted_ros_environment(domain_id: int, log_dir: str | os.PathLike | None = None) -> Iterator[None]:
    """Apply ros_environment to this process (before rclpy.init), so that its own nodes follow the same
    rules; the previous environment comes back when the block ends."""
    previous = dict(os.environ)
    os.environ.update(ros_environment(domain_id, log_dir))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(previous)


def entry_point(name: str) -> str:
    """Path of an installed console script, next to this interpreter first (the venv's bin/)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"console entry point '{name}' is not installed (pip install . first)")
    return found


def ros_arguments(params_files: Iterable[str | os.PathLike] = (), parameters: Mapping[str, object] | None = None,
                  remappings: Mapping[str, str] | None = None, node_name: str | None = None) -> list[str]:
    """`--ros-args ...` for parameter files, single parameters (YAML literals), remappings and a node name."""
    args = ["--ros-args"]
    for path in params_files:
        args += ["--params-file", str(path)]
    for key, value in (parameters or {}).items():
        args += ["-p", f"{key}:={_yaml_literal(value)}"]
    for source, target in (remappings or {}).items():
        args += ["-r", f"{source}:={target}"]
    if node_name:
        args += ["-r", f"__node:={node_name}"]
    return args


def _yaml_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


@dataclass
class NodeProcess:
    """A running node process whose stdout/stderr go to `log_path`.

    `expect_exit` marks a process that may end by itself (a finite flight, a start-up error under test);
    any other that ends before someone calls `stop` has crashed."""

    executable: str
    args: list[str]
    log_path: Path
    process: subprocess.Popen = field(repr=False)
    expect_exit: bool = False
    stopped: bool = False

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def crashed(self) -> bool:
        return not (self.running or self.stopped or self.expect_exit)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGINT (clean rclpy shutdown), then SIGKILL after `timeout_s`; returns the exit code."""
        self.stopped = True
        if self.running:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_node(executable: str, *, domain_id: int, log_dir: str | os.PathLike, args: Iterable[str] = (),
               env: Mapping[str, str] | None = None, expect_exit: bool = False) -> NodeProcess:
    """Start an installed node entry point with `args` in its own process on `domain_id`; its output goes
    to log_dir/<executable>.log (<executable>.2.log and so on when it is started again)."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = _new_log_path(log_dir, executable)
    command = [entry_point(executable), *args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=ros_environment(domain_id, log_dir / "ros", base=env))
    return NodeProcess(executable, list(args), log_path, process, expect_exit)


def _new_log_path(log_dir: Path, executable: str) -> Path:
    path, start = log_dir / f"{executable}.log", 1
    while path.exists():
        start += 1
        path = log_dir / f"{executable}.{start}.log"
    return path
