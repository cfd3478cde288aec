"""What every benchmark shares: thread pinning, timing, memory probes, machine facts and the JSON record.

Each result file says how it was made: the exact command line, the git commit (HEAD, "+dirty" when tracked
files differ from it), the machine, the pinned thread count and the load average before and after the run,
because this 2-core machine is shared and the load changes absolute times (ratios are measured side by side
in one process, which cancels most of it).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmark this source tree, never an installed copy
RESULTS_DIR = ROOT / "bench" / "results"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def pin_threads(threads: int) -> int:
    """Use exactly `threads` intra-op threads here and in every child process started afterwards."""
    import torch

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    torch.set_num_threads(threads)
    return threads


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages of this machine."""
    return [round(value, 2) for value in os.getloadavg()]


def wait_until_quiet(max_load: float, max_wait_s: float, poll_s: float = 60.0,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """Poll the 1-minute load average until it is below `max_load` or `max_wait_s` has passed.

    Returns what happened (for the JSON): whether it got quiet, how long it waited, the load at the end."""
    started = time.monotonic()
    while True:
        load = os.getloadavg()[0]
        waited = time.monotonic() - started
        if load < max_load or waited >= max_wait_s:
            return {"max_load": max_load, "quiet": load < max_load, "waited_s": round(waited),
                    "load_at_start": load_average()}
        log(f"load average {load:.2f} >= {max_load}: waiting ({waited / 60:.0f} of {max_wait_s / 60:.0f} min)")
        time.sleep(min(poll_s, max(max_wait_s - waited, 1.0)))


def git_commit() -> str:
    """HEAD of this checkout, with "+dirty" when tracked files differ from it ("unknown" outside git)."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (commit + ("+dirty" if dirty else "")) if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        match = None
    return match.group(1).strip() if match else (platform.processor() or platform.machine())


def cpu_flags(wanted: Sequence[str] = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")) -> list[str]:
    """Which of the vector extensions that decide CPU GEMM speed (fp32 and bf16) this CPU has."""
    try:
        match = re.search(r"^flags\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        return []
    present = set(match.group(1).split()) if match else set()
    return [flag for flag in wanted if flag in present]


def machine_info() -> dict[str, Any]:
    """Software versions and CPU facts of this machine."""
    import numpy
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "cpu": cpu_model(), "cpu_flags": cpu_flags(), "logical_cpus": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "kernel": platform.release()}
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        pass
    return info


def command_line(module: str, argv: Sequence[str]) -> str:
    """How to reproduce a run: `python -m bench.<name> <arguments>` (from the repository root)."""
    return " ".join(["python", "-m", module, *argv])


# ------------------------------------------------------------------------------------------------ timing

@dataclass(frozen=True)
class Timing:
    """Milliseconds per call over `reps` timed calls (after warm-up): the median is the headline."""

    median_ms: float
    min_ms: float
    max_ms: float
    reps: int

    def as_dict(self) -> dict[str, float]:
        return {key: round(value, 3) if isinstance(value, float) else value for key, value in asdict(self).items()}


def summarize_ms(samples_ms: Sequence[float]) -> Timing:
    """Median, min and max of per-call times in milliseconds."""
    if not samples_ms:
        raise ValueError("no timing samples")
    return Timing(statistics.median(samples_ms), min(samples_ms), max(samples_ms), len(samples_ms))


def time_calls(fn: Callable[[], object], reps: int, warmup: int = 1) -> Timing:
    """Time `reps` calls of fn with the host clock after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return summarize_ms(samples)


def percentiles(values: Sequence[float], levels: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    """Linear-interpolated percentiles {"p50": ..., ...} of `values` (empty input gives {})."""
    ordered = sorted(values)
    if not ordered:
        return {}
    out = {}
    for level in levels:
        position = (len(ordered) - 1) * level / 100
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        out[f"p{level:g}"] = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
    return out


def log_log_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of log(y) over log(x): the exponent k of y ~ x^k (None for < 2 points)."""
    import math

    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(points) < 2:
        return None
    mean_x = sum(p[0] for p in points) / len(points)
    mean_y = sum(p[1] for p in points) / len(points)
    spread = sum((p[0] - mean_x) ** 2 for p in points)
    return sum((p[0] - mean_x) * (p[1] - mean_y) for p in points) / spread if spread else None


# ------------------------------------------------------------------------------------------------ memory

def current_rss_bytes() -> int:
    """Resident set size of this process now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter (VmHWM) at the current RSS; False where Linux does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident set size since the last `reset_peak_rss` (since process start without one)."""
    try:
        match = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
        if match:
            return int(match.group(1)) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_child(module: str, argv: Sequence[str], timeout_s: float = 1800.0) -> dict[str, Any]:
    """Run `python -m module argv` in a fresh process (a clean peak-RSS counter) and return the JSON object
    it prints as its last line of stdout; its error output is raised when it fails."""
    result = subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout_s)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{module} {' '.join(argv)} failed (exit {result.returncode}):\n"
                           f"{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def print_child_result(data: dict[str, Any]) -> None:
    """The counterpart of `run_child`: the child's result as the last stdout line."""
    print(json.dumps(data), flush=True)


# ------------------------------------------------------------------------------------------------ record

class Record:
    """One benchmark's result file: run metadata plus the sections the script adds; written atomically."""

    def __init__(self, name: str, module: str, argv: Sequence[str], threads: int, mode: str,
                 quiet: dict[str, Any] | None = None) -> None:
        self.started = time.monotonic()
        self.data: dict[str, Any] = {
            "benchmark": name, "command": command_line(module, argv), "mode": mode,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(), "machine": machine_info(), "threads": threads,
            "load_average_before": load_average(), "notes": []}
        if quiet is not None:
            self.data["waited_for_quiet"] = quiet

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def note(self, text: str) -> None:
        print(f"note: {text}", flush=True)
        self.data["notes"].append(text)

    def write(self, path: Path) -> Path:
        """Add the finishing metadata and write the JSON (temporary file, then rename)."""
        self.data["load_average_after"] = load_average()
        self.data["elapsed_s"] = round(time.monotonic() - self.started, 1)
        return write_json(path, self.data)


def write_json(path: Path, data: Any) -> Path:
    """Write `data` as indented JSON to `path` atomically (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=1) + "\n")
    temporary.replace(path)
    return path
