"""Run every benchmark, then write bench/results/summary.json and the results table of the README.

    python -m bench.run                        # everything (`make bench`), ~40 min on 2 cores
    python -m bench.run --wait-quiet 0.5       # first wait (up to 2.5 h) for a 1-minute load below 0.5
    python -m bench.run --only depth           # one benchmark, then summary and table from all JSONs
    python -m bench.run --summary-only         # summary and table from the JSONs already there
    python -m bench.run --smoke --results-dir /tmp/r --readme /tmp/README.md   # CI: tiny shapes, seconds

Each benchmark runs as `python -m bench.<name> --out <results-dir>/<name>.json` in its own process with
the same pinned thread count. bench/kernels.py needs a CUDA GPU: with one it writes kernels.json, without
one its --smoke mode runs as a check and kernels.json is left as it is. The table replaces whatever lies
between the markers <!-- bench:start --> and <!-- bench:end --> of the README (and of bench/README.md).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from bench.common import RESULTS_DIR, ROOT, wait_until_quiet, write_json

BENCHMARKS = ("forecast_stream", "depth", "node_latency")
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
SUMMARY_KEYS = ("forecast_stream_speedup_single_pass_ctx2048", "forecast_stream_speedup_single_pass_b64",
                "forecast_stream_speedup_ctx2048", "forecast_stream_max_rel_diff", "forecast_realtime_channels_100hz",
                "state_bytes_per_stream_ctx512", "state_bytes_per_stream_ctx65536", "depth_latency_ratio_252",
                "depth_latency_ratio_518", "depth_latency_ratio_1024", "depth_peak_mem_ratio_1024",
                "node_latency_ms_p50", "node_latency_ms_p99")
GOAL_SPEEDUP = 20.0
GOAL_SPEEDUP_B64 = 50.0
GOAL_REL_DIFF = 0.02
HEADLINE_DEPTH = "vil_t_dpt/da_v2_small.same_tokens"
HEADLINE_TRANSPORT = "large_shm"
SMOKE_OPTIONS = {"node_latency": ("--transports", HEADLINE_TRANSPORT)}
"""CI keeps to the one Fast DDS set-up the headline uses (each set-up starts its own node processes)."""


def run_benchmark(name: str, out: Path, threads: int, smoke: bool, extra: Sequence[str] = ()) -> None:
    command = [sys.executable, "-m", f"bench.{name}", "--out", str(out), *extra]
    if name != "kernels":
        command += ["--threads", str(threads)]
    if smoke:
        command += ["--smoke", *SMOKE_OPTIONS.get(name, ())]
    print(f"\n=== {' '.join(command[1:])}", flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def run_kernels(results_dir: Path, smoke: bool) -> str:
    """The GPU kernel benchmark where CUDA exists; otherwise its CPU smoke mode, as a check."""
    import torch

    if torch.cuda.is_available() and not smoke:
        run_benchmark("kernels", results_dir / "kernels.json", 1, False)
        return "ran on the GPU: kernels.json regenerated"
    with tempfile.TemporaryDirectory() as directory:
        run_benchmark("kernels", Path(directory) / "kernels.json", 1, True)
    return "no CUDA GPU: bench.kernels --smoke ran as a check; kernels.json kept as it was"


# ------------------------------------------------------------------------------------------------ summary

def load(results_dir: Path, name: str) -> dict[str, Any] | None:
    path = results_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def dig(data: dict | None, *keys: str) -> Any:
    """data[k1][k2]... or None when anything on the way is missing."""
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def agreement_headline(forecast: dict | None) -> tuple[float | None, str]:
    """Streaming vs full-context difference: with the shipped trained TiRex when it was measured (random
    weights make a chaotic network whose forecasts say nothing about agreement), else the random one."""
    trained = dig(forecast, "shipped_model", "agreement", "max_rel_to_scale_all_series")
    if trained is not None:
        return trained, "shipped trained TiRex"
    return dig(forecast, "agreement", "max_rel_to_scale_all_series"), "random-weight TiRex-35M"


def summarize(results_dir: Path) -> dict[str, Any]:
    """The headline figures with exactly SUMMARY_KEYS plus `commit` (None where a result is missing)."""
    forecast, depth, node = (load(results_dir, name) for name in BENCHMARKS)
    ratios = dig(depth, "ratios") or {}
    summary = {
        "forecast_stream_speedup_single_pass_ctx2048": dig(forecast, "per_forecast", "all_series",
                                                           "speedup_vs_tirex_ts_single_pass"),
        "forecast_stream_speedup_single_pass_b64": next(
            (row["speedup_vs_tirex_ts_best_batch"] for row in dig(forecast, "batch_scaling", "streaming") or []
             if row["streams"] == 64), None),
        "forecast_stream_speedup_ctx2048": dig(forecast, "per_forecast", "extra_imu_vs_default_rollout", "speedup"),
        "forecast_stream_max_rel_diff": agreement_headline(forecast)[0],
        "forecast_realtime_channels_100hz": dig(forecast, "realtime", "max_channels"),
        "state_bytes_per_stream_ctx512": dig(forecast, "memory", "state_bytes_per_stream", "512"),
        "state_bytes_per_stream_ctx65536": dig(forecast, "memory", "state_bytes_per_stream", "65536"),
        "depth_latency_ratio_252": dig(ratios, f"252.{HEADLINE_DEPTH}", "latency"),
        "depth_latency_ratio_518": dig(ratios, f"518.{HEADLINE_DEPTH}", "latency"),
        "depth_latency_ratio_1024": dig(ratios, f"1024.{HEADLINE_DEPTH}", "latency"),
        "depth_peak_mem_ratio_1024": dig(ratios, f"1024.{HEADLINE_DEPTH}", "model_memory"),
        "node_latency_ms_p50": dig(node, "depth", HEADLINE_TRANSPORT, "latency", "p50_ms"),
        "node_latency_ms_p99": dig(node, "depth", HEADLINE_TRANSPORT, "latency", "p99_ms"),
    }
    commits = sorted({data["commit"] for data in (forecast, depth, node) if data})
    summary["commit"] = commits[0] if len(commits) == 1 else (", ".join(commits) or None)
    return summary


def verdict(value: Any, ok: bool | None) -> str:
    if value is None or ok is None:
        return "not measured"
    return "**met**" if ok else "**missed**"


def fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def table(results_dir: Path, summary: dict[str, Any]) -> str:
    """The README block: goals with their measured values, then the other headline figures."""
    forecast, depth, node = (load(results_dir, name) for name in BENCHMARKS)
    s = summary
    speed, diff = s["forecast_stream_speedup_single_pass_ctx2048"], s["forecast_stream_max_rel_diff"]
    speed_b64 = s["forecast_stream_speedup_single_pass_b64"]
    diff_model = agreement_headline(forecast)[1]
    state_512, state_64k = s["state_bytes_per_stream_ctx512"], s["state_bytes_per_stream_ctx65536"]
    goals = dig(depth, "goals") or {}
    rows = [
        ("Streaming forecast >= 20x faster than the tirex-ts single pass (context 2048, horizon 64, per new "
         "forecast, batch 1, mean over 4 sensor series with their anchors)", fmt(speed, ".1f", "x"),
         verdict(speed, speed is not None and speed >= GOAL_SPEEDUP)),
        ("... and >= 50x per stream at 64 streams (against tirex-ts at its best batch size)",
         fmt(speed_b64, ".1f", "x"), verdict(speed_b64, speed_b64 is not None and speed_b64 >= GOAL_SPEEDUP_B64)),
        (f"... with forecasts within 2 % of the full-context ones ({diff_model}; max over 4 sensor series, at "
         "and between anchors, relative to the series' scale)", fmt(diff, ".1%"),
         verdict(diff, diff is not None and diff <= GOAL_REL_DIFF)),
        ("ViL-T+DPT at 518^2 no slower than 0.67x DA-V2-Small (latency ratio <= 1.49)",
         fmt(s["depth_latency_ratio_518"], ".2f"), verdict(s["depth_latency_ratio_518"], dig(goals, "518", "met"))),
        ("ViL-T+DPT at 1024^2 no slower than 0.4x DA-V2-Small (latency ratio <= 2.5)",
         fmt(s["depth_latency_ratio_1024"], ".2f"),
         verdict(s["depth_latency_ratio_1024"], dig(goals, "1024", "met"))),
        ("State memory per stream constant in context length (512 vs 65536 samples)",
         f"{fmt(state_512, ',d')} B vs {fmt(state_64k, ',d')} B",
         verdict(state_64k, None if state_512 is None or state_64k is None else state_512 == state_64k)),
    ]
    lines = ["| goal | measured | |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", "| other figures | |", "|---|---|",
              f"| 100 Hz channels one streaming engine keeps up with (TiRex size) | "
              f"{fmt(s['forecast_realtime_channels_100hz'], 'd')} |",
              f"| depth latency ratio ViL-T+DPT / DA-V2-S at 252^2 | {fmt(s['depth_latency_ratio_252'], '.2f')} |",
              f"| depth model memory ratio at 1024^2 | {fmt(s['depth_peak_mem_ratio_1024'], '.2f')} |",
              f"| camera -> depth through the nodes, 640x480, p50 / p99 | {fmt(s['node_latency_ms_p50'], '.0f')} / "
              f"{fmt(s['node_latency_ms_p99'], '.0f')} ms |"]
    for row in dig(forecast, "batch_scaling", "streaming") or []:
        if row["streams"] > 1:
            lines.append(f"| streaming vs tirex-ts single pass (best batch) per stream, {row['streams']} streams "
                         f"batched | {row['speedup_vs_tirex_ts_best_batch']:.1f}x |")
    lines.append(f"| old figure: stationary IMU series only, vs tirex-ts's two-pass rollout | "
                 f"{fmt(s['forecast_stream_speedup_ctx2048'], '.1f', 'x')} |")
    shipped = dig(forecast, "shipped_model", "realtime", "max_channels")
    if shipped is not None:
        lines.append(f"| 100 Hz channels with the shipped small TiRex | {shipped} |")
    machine = dig(forecast, "machine") or dig(depth, "machine") or {}
    loads = [dig(d, "load_average_before") for d in (forecast, depth, node) if d]
    lines += ["", f"Measured on {machine.get('cpu', '?')} ({machine.get('logical_cpus', '?')} cores), "
              f"{dig(forecast, 'threads') or dig(depth, 'threads') or '?'} pinned torch thread(s), random "
              f"weights except the rows that name the shipped TiRex, batch 1, median of several runs; 1-minute load before the runs: "
              f"{', '.join(str(load[0]) for load in loads if load) or '?'}; commit {s['commit']}. "
              "Ratios are measured side by side in one process. Depth ratios compare the same token count "
              "(ours at 16x the DA patch grid); `bench/results/*.json` have every number, the command and the "
              "machine; `bench/README.md` explains them. Regenerate with `make bench`."]
    return "\n".join(lines)


def replace_block(path: Path, block: str) -> bool:
    """Put `block` between the markers of the file at `path`; False (file untouched) without markers."""
    if not path.is_file():
        return False
    text = path.read_text()
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        return False
    path.write_text(text[:start + len(START)] + "\n" + block + "\n" + text[end:])
    return True


def write_summary(results_dir: Path, readmes: Sequence[Path]) -> dict[str, Any]:
    summary = summarize(results_dir)
    write_json(results_dir / "summary.json", summary)
    block = table(results_dir, summary)
    for readme in readmes:
        if replace_block(readme, block):
            print(f"updated the results table in {readme}")
        else:
            print(f"note: {readme} has no {START} ... {END} markers: table not written there")
    print(json.dumps(summary, indent=1))
    return summary


# ------------------------------------------------------------------------------------------------ main

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--readme", type=Path, nargs="*", default=[ROOT / "README.md", ROOT / "bench" / "README.md"],
                        help="files whose marked block gets the results table")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (CI); use another --results-dir")
    parser.add_argument("--threads", type=int, default=1, help="pinned torch threads of every benchmark")
    parser.add_argument("--only", nargs="+", choices=("kernels", *BENCHMARKS), default=None)
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--trained-checkpoint", type=Path, default=None,
                        help="trained TiRex for forecast_stream's trained-model figures (default: the shipped one)")
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="LOAD",
                        help="before starting, wait until the 1-minute load average is below LOAD")
    parser.add_argument("--max-wait-s", type=float, default=9000.0)
    args = parser.parse_args(argv)
    if args.smoke and args.results_dir.resolve() == RESULTS_DIR.resolve():
        parser.error("--smoke writes tiny-shape results: give another --results-dir")
    if not args.summary_only:
        if args.wait_quiet is not None:
            print(f"waited for quiet: {wait_until_quiet(args.wait_quiet, args.max_wait_s)}", flush=True)
        selected = args.only or ("kernels", *BENCHMARKS)
        for name in selected:
            if name == "kernels":
                print(run_kernels(args.results_dir, args.smoke), flush=True)
            else:
                extra = (["--trained-checkpoint", str(args.trained_checkpoint)]
                         if name == "forecast_stream" and args.trained_checkpoint else [])
                run_benchmark(name, args.results_dir / f"{name}.json", args.threads, args.smoke, extra)
    write_summary(args.results_dir, args.readme)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
