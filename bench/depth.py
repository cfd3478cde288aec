"""ViL+DPT depth models against Depth Anything V2 (Transformer + DPT): latency and peak memory, batch 1.

    python -m bench.depth                              # ViL-T/S + DPT vs DA-V2-Small/Base, ~10-15 min
    python -m bench.depth --smoke --out /tmp/d.json    # tiny models and images, seconds (CI)

Every model has random weights (speed and memory do not depend on them). Depth Anything V2 is built from
`transformers` configs as the Depth Anything V2 release defines them (DINOv2 backbone, DPT neck and
head; Small: 384 wide, 6 heads, neck 48..384, fusion 64; Base: 768, 12 heads, 96..768, 128), with PyTorch's
fused scaled-dot-product attention in the backbone (the fastest attention transformers offers for it).

Sizes. DA-V2 cuts 14-pixel patches and ViL 16-pixel ones, so one image size gives them different token
counts. For each nominal size we run DA at that size (rounded down to a multiple of 14: 1024 -> 1022, the
pixels its patch embedding reads anyway) and ours twice: at the SAME TOKEN COUNT (16 x DA's patch grid,
e.g. 592^2 for 518^2: identical sequence length, more pixels for ours) and at the SAME PIXELS (the nearest
multiple of 16, e.g. 512^2). The headline ratios and goals use the same-token runs, the stricter choice
for ours. Latency: all variants of one size are timed round-robin in this process (a change of load hits
all alike), median over the repetitions. Peak memory: each (model, size) in a fresh process; model memory =
peak RSS during one forward minus the RSS before the model was built (weights + activations + workspace).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from bench.common import (RESULTS_DIR, Record, current_rss_bytes, log_log_slope, peak_rss_bytes, pin_threads,
                          print_child_result, reset_peak_rss, run_child, summarize_ms, wait_until_quiet)
from xlstm_ros.models.depth import DepthConfig, DepthModel
from xlstm_ros.models.vil import vil_config

MODULE = "bench.depth"
GOALS = {"518": 1 / 0.67, "1024": 1 / 0.4}
"""Latency ratio ours / DA-V2-Small allowed at each size: "no slower than 0.67x (0.4x) DA-V2-Small"."""
HEADLINE = ("vil_t_dpt", "da_v2_small")


@dataclass(frozen=True)
class SizeCase:
    """One nominal size: DA's input and our two inputs (same token count, same pixels), each (H, W)."""

    name: str
    da: tuple[int, int]
    same_tokens: tuple[int, int]
    same_pixels: tuple[int, int]


def size_case(name: str, height: int, width: int, da_patch: int = 14, vil_patch: int = 16) -> SizeCase:
    """DA at the size rounded down to its patch; ours at 16 x DA's grid and at the nearest 16-multiple."""
    grid = (height // da_patch, width // da_patch)
    nearest = tuple(max(vil_patch, vil_patch * round(side / vil_patch)) for side in (height, width))
    return SizeCase(name, (grid[0] * da_patch, grid[1] * da_patch), (grid[0] * vil_patch, grid[1] * vil_patch),
                    nearest)


FULL_SIZES = (size_case("252", 252, 252), size_case("518", 518, 518), size_case("1024", 1024, 1024),
              size_case("480x640", 480, 640))
SMOKE_SIZES = (size_case("28", 28, 28), size_case("56", 56, 56), size_case("28x42", 28, 42))


# ------------------------------------------------------------------------------------------------ models

def depth_anything(size: str, smoke: bool = False) -> nn.Module:
    """Depth Anything V2 (relative) with random weights, from transformers configs; no download."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    hidden, heads, layers, neck, fusion = {
        "small": (384, 6, 12, [48, 96, 192, 384], 64), "base": (768, 12, 12, [96, 192, 384, 768], 128),
        "smoke": (32, 2, 4, [8, 16, 32, 32], 16)}["smoke" if smoke else size]
    taps = [3, 6, 9, 12] if layers == 12 else [1, 2, 3, 4]
    backbone = Dinov2Config(hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=layers,
                            image_size=518, patch_size=14, out_indices=taps, reshape_hidden_states=False,
                            attn_implementation="sdpa")
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=hidden, neck_hidden_sizes=neck,
                                 fusion_hidden_size=fusion, patch_size=14, depth_estimation_type="relative")
    return DepthAnythingForDepthEstimation(config).eval()


def vil_dpt(size: str, smoke: bool = False) -> nn.Module:
    """Our ViL + DPT depth model with random weights (default chunkwise mLSTM, PyTorch kernels on CPU)."""
    if smoke:
        config = DepthConfig(backbone=vil_config("vil_micro"), neck_channels=(8, 16, 32, 64), features=16)
    else:
        config = DepthConfig(backbone=vil_config({"tiny": "vil_tiny", "small": "vil_small"}[size]))
    return DepthModel(config).eval()


MODELS: dict[str, tuple[str, Callable[[bool], nn.Module]]] = {
    "vil_t_dpt": ("ours", lambda smoke: vil_dpt("tiny", smoke)),
    "vil_s_dpt": ("ours", lambda smoke: vil_dpt("small", smoke)),
    "da_v2_small": ("da", lambda smoke: depth_anything("small", smoke)),
    "da_v2_base": ("da", lambda smoke: depth_anything("base", smoke)),
}


def forward(name: str, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Call the model on a (1, 3, H, W) batch and return its (1, H, W) map."""
    if MODELS[name][0] == "da":
        return lambda images: model(pixel_values=images).predicted_depth
    return model


def variants(case: SizeCase, models: Sequence[str]) -> list[tuple[str, str, tuple[int, int]]]:
    """(model, input kind, (H, W)) of one size case: DA at its size, ours at same tokens and same pixels."""
    out = []
    for name in models:
        if MODELS[name][0] == "da":
            out.append((name, "da", case.da))
        else:
            out += [(name, "same_tokens", case.same_tokens), (name, "same_pixels", case.same_pixels)]
    return out


# ----------------------------------------------------------------------------------------------- latency

def latency_section(built: dict[str, nn.Module], sizes: Sequence[SizeCase], reps: int, warmup: int) -> list[dict]:
    rows = []
    for case in sizes:
        cases = variants(case, list(built))
        inputs = {(h, w): torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
                  for _, _, (h, w) in cases}
        samples: dict[tuple[str, str], list[float]] = {(name, kind): [] for name, kind, _ in cases}
        for repetition in range(warmup + reps):
            for name, kind, size in cases:  # round-robin: every variant sees the same load
                call = forward(name, built[name])
                start = time.perf_counter()
                out = call(inputs[size])
                elapsed = (time.perf_counter() - start) * 1e3
                if repetition >= warmup:
                    samples[(name, kind)].append(elapsed)
                if tuple(out.shape[-2:]) != size:
                    raise RuntimeError(f"{name} returned {tuple(out.shape)} for a {size} input")
        for name, kind, (h, w) in cases:
            timing = summarize_ms(samples[(name, kind)])
            patch = 14 if MODELS[name][0] == "da" else 16
            rows.append({"size": case.name, "model": name, "input": kind, "height": h, "width": w,
                         "pixels": h * w, "tokens": (h // patch) * (w // patch), "latency_ms": timing.as_dict()})
            print(f"{case.name:8s} {name:12s} {kind:12s} {h:5d}x{w:<5d} {timing.median_ms:10.1f} ms", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------ memory

def memory_child(name: str, height: int, width: int, smoke: bool) -> dict[str, Any]:
    """In a fresh process: RSS before the model, after it, and the peak during one forward.

    The model's library is imported first, so that "before" includes it for either family."""
    if MODELS[name][0] == "da":
        import transformers.models.depth_anything.modeling_depth_anything  # noqa: F401
    before = current_rss_bytes()
    model = MODELS[name][1](smoke)
    images = torch.rand(1, 3, height, width)
    built = current_rss_bytes()
    reset_peak_rss()
    with torch.inference_mode():
        forward(name, model)(images)
    peak = peak_rss_bytes()
    return {"model": name, "height": height, "width": width, "rss_before_model_bytes": before,
            "rss_with_model_bytes": built, "peak_rss_bytes": peak, "model_memory_bytes": peak - before,
            "activation_peak_bytes": peak - built,
            "parameters": sum(p.numel() for p in model.parameters())}


def memory_section(models: Sequence[str], sizes: Sequence[SizeCase], smoke: bool) -> list[dict]:
    rows = []
    for case in sizes:
        for name, kind, (h, w) in variants(case, models):
            if smoke and (name not in HEADLINE or kind == "same_pixels" or case is not sizes[0]):
                continue  # CI: one process per family is enough to keep the plumbing honest
            argv = ["--memory-child", f"{name}:{h}:{w}", "--threads", str(torch.get_num_threads())]
            row = run_child(MODULE, argv + (["--smoke"] if smoke else []))
            row.update(size=case.name, input=kind, pixels=h * w)
            rows.append(row)
            print(f"memory {case.name:8s} {name:12s} {kind:12s} {row['model_memory_bytes'] / 2**20:9.1f} MiB",
                  flush=True)
    return rows


# ------------------------------------------------------------------------------------------------ summary

def find(rows: list[dict], size: str, model: str, kind: str) -> dict | None:
    return next((r for r in rows if r["size"] == size and r["model"] == model and r["input"] == kind), None)


def ratios(latency: list[dict], memory: list[dict], sizes: Sequence[SizeCase]) -> dict[str, Any]:
    """ours / DA-V2 latency and memory ratios per size and input kind, and the goals."""
    out: dict[str, Any] = {}
    for case in sizes:
        for ours in ("vil_t_dpt", "vil_s_dpt"):
            for da in ("da_v2_small", "da_v2_base"):
                for kind in ("same_tokens", "same_pixels"):
                    a, b = find(latency, case.name, ours, kind), find(latency, case.name, da, "da")
                    ma, mb = find(memory, case.name, ours, kind), find(memory, case.name, da, "da")
                    if a and b:
                        key = f"{case.name}.{ours}/{da}.{kind}"
                        out[key] = {"latency": round(a["latency_ms"]["median_ms"] / b["latency_ms"]["median_ms"], 3)}
                        if ma and mb:
                            out[key]["model_memory"] = round(ma["model_memory_bytes"] / mb["model_memory_bytes"], 3)
    return out


def goals(ratio_table: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals on the headline pair (ViL-T+DPT / DA-V2-Small, same token count)."""
    out = {}
    for size, limit in GOALS.items():
        entry = ratio_table.get(f"{size}.{HEADLINE[0]}/{HEADLINE[1]}.same_tokens")
        pixels = ratio_table.get(f"{size}.{HEADLINE[0]}/{HEADLINE[1]}.same_pixels")
        out[size] = {"max_latency_ratio": round(limit, 3),
                     "latency_ratio_same_tokens": entry["latency"] if entry else None,
                     "latency_ratio_same_pixels": pixels["latency"] if pixels else None,
                     "met": entry["latency"] <= limit if entry else None}  # None: size not measured
    return out


def growth(latency: list[dict], memory: list[dict], square: Sequence[str]) -> dict[str, Any]:
    """Exponent k of latency ~ pixels^k and memory ~ pixels^k over the square sizes, per model and input."""
    out = {}
    for model in MODELS:
        for kind in ("da", "same_tokens", "same_pixels"):
            lat = [r for r in latency if r["model"] == model and r["input"] == kind and r["size"] in square]
            mem = [r for r in memory if r["model"] == model and r["input"] == kind and r["size"] in square]
            if len(lat) >= 2:
                out[f"{model}.{kind}"] = {
                    "latency_exponent": _rounded(log_log_slope([r["pixels"] for r in lat],
                                                               [r["latency_ms"]["median_ms"] for r in lat])),
                    "activation_memory_exponent": _rounded(log_log_slope(
                        [r["pixels"] for r in mem], [r["activation_peak_bytes"] for r in mem]))}
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# ------------------------------------------------------------------------------------------------ main

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "depth.json")
    parser.add_argument("--smoke", action="store_true", help="tiny models and images (CI): plumbing only")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (pinned)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--sizes", nargs="+", default=None, help="size names (default: all)")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per variant (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true", help="skip the per-process memory runs")
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="LOAD",
                        help="wait until the 1-minute load average is below LOAD before measuring")
    parser.add_argument("--max-wait-s", type=float, default=9000.0)
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pin_threads(args.threads)
    if args.memory_child:
        name, height, width = args.memory_child.split(":")
        print_child_result(memory_child(name, int(height), int(width), args.smoke))
        return 0
    all_sizes = SMOKE_SIZES if args.smoke else FULL_SIZES
    sizes = [case for case in all_sizes if args.sizes is None or case.name in args.sizes]
    if not sizes:
        raise SystemExit(f"--sizes: none of {args.sizes} is known ({', '.join(c.name for c in all_sizes)})")
    quiet = wait_until_quiet(args.wait_quiet, args.max_wait_s) if args.wait_quiet is not None else None
    record = Record("depth", MODULE, list(argv) if argv is not None else sys.argv[1:], args.threads,
                    "smoke" if args.smoke else "full", quiet)
    torch.manual_seed(0)
    built = {name: MODELS[name][1](args.smoke) for name in args.models}
    from importlib.metadata import version
    record["models"] = {name: {"parameters": sum(p.numel() for p in model.parameters()),
                               "family": MODELS[name][0]} for name, model in built.items()}
    record["setup"] = {"batch": 1, "dtype": "float32", "transformers": version("transformers"),
                       "da_attention": "sdpa", "ours_mlstm": "chunkwise, chunk 64, PyTorch kernels (CPU)",
                       "sizes": [vars(case) for case in sizes], "reps": args.reps, "warmup": args.warmup}
    with torch.inference_mode():
        latency = latency_section(built, sizes, args.reps, args.warmup)
    del built
    memory = [] if args.no_memory else memory_section(args.models, sizes, args.smoke)
    ratio_table = ratios(latency, memory, sizes)
    square = [case.name for case in sizes if case.da[0] == case.da[1]]
    record["latency"] = latency
    record["memory"] = memory
    record["ratios"] = ratio_table
    record["growth_with_pixels"] = growth(latency, memory, square)
    record["goals"] = goals(ratio_table)
    path = record.write(args.out)
    print(f"goals: {record['goals']}\nwrote {path} ({record['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
