"""Benchmark the xLSTM kernels against their anchors; write JSON with the command that produced it.

    python -m bench.kernels [--full] [--out bench/results/kernels.json] [--budget-s 420]   # on a CUDA GPU
    python -m bench.kernels --smoke --out /tmp/kernels.json                               # CPU, seconds

Sections (GPU): ceilings (empty-kernel launch eager and in a CUDA graph, device copy, bf16 GEMM);
correctness of our kernels on the GPU against the reference; sLSTM sequences (TiRex-like: 4 heads x 128)
against the eager reference (also replayed as one CUDA graph) and cuDNN nn.LSTM (hidden 512 fp16/bf16, and
hidden 128 with 4x the batch: the same recurrent FLOPs as 4 block-diagonal heads); one sLSTM decode step on
a persistent state (eager and CUDA graph); mLSTM prefill (ViL-like, N = 196..4096) against the reference,
mlstm_kernels (TFLA), flash-linear-attention and causal SDPA; one mLSTM step. Anchors that are not
importable are skipped with a note. Ratios are time / the section's baseline time (below 1 = faster).
The --budget-s guard stops starting new cases once it is spent; results are written after every section.
--smoke runs tiny shapes on CPU tensors, the Triton kernels in Triton's interpreter: plumbing only.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmark this source tree, never an installed copy

from bench.common import git_commit, machine_info as common_machine_info  # noqa: E402


class Budget:
    """Wall-clock guard: cases start only while time is left."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()


class Timer:
    """Median milliseconds per call: CUDA events (or the host clock on CPU), eager or replayed in a graph."""

    def __init__(self, device: torch.device, warmup: int, reps: int):
        self.device, self.warmup, self.reps = device, warmup, reps

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _median(self, run: Callable[[], None], calls: int, reps: int | None = None) -> float:
        samples = []
        for _ in range(reps or self.reps):
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                run()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end) / calls)
            else:
                begin = time.perf_counter()
                run()
                samples.append((time.perf_counter() - begin) * 1e3 / calls)
        return statistics.median(samples)

    def eager(self, fn: Callable[[], object], reps: int | None = None) -> float:
        """Launch-inclusive time of fn (`reps` overrides the repetitions, for slow providers)."""
        for _ in range(min(self.warmup, reps or self.warmup)):
            fn()
        self._sync()
        return self._median(fn, 1, reps)

    def graph(self, fn: Callable[[], object], calls: int) -> float:
        """`calls` calls of fn captured in one CUDA graph; the median replay time divided by `calls`."""
        if self.device.type != "cuda":
            raise RuntimeError("CUDA graphs need a CUDA device")
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(max(self.warmup, 2)):
                fn()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls):
                fn()
        graph.replay()
        self._sync()
        return self._median(graph.replay, calls)


class Report:
    """Rows of results plus run metadata, written to JSON after every section."""

    def __init__(self, out: Path, args: argparse.Namespace, device: torch.device):
        self.out, self.device = out, device
        self.data = {
            "command": " ".join([Path(sys.executable).name, "-m", "bench.kernels", *sys.argv[1:]]),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(), "machine": machine_info(device), "mode": mode_name(args),
            "budget_s": args.budget_s, "ceilings": {}, "correctness": [], "rows": [], "notes": [],
        }

    def note(self, text: str) -> None:
        print(f"note: {text}", flush=True)
        self.data["notes"].append(text)

    def row(self, section: str, provider: str, shape: dict, median_ms: float | None, steps: int = 1,
            error: str | None = None) -> None:
        row = {"section": section, "provider": provider, **shape, "median_ms": median_ms,
               "us_per_step": None if median_ms is None else median_ms * 1e3 / steps}
        if error:
            row["error"] = error
        self.data["rows"].append(row)
        shown = "error: " + error if error else f"{median_ms:.4f} ms"
        print(f"{section:16s} {provider:28s} {json.dumps(shape):44s} {shown}", flush=True)

    def add_ratios(self, baselines: dict[str, str]) -> None:
        """ratio = median / the median of the section's baseline provider at the same shape."""
        def shape_keys(row: dict) -> tuple:
            return tuple(sorted((k, v) for k, v in row.items() if k not in RESULT_KEYS))

        base = {(r["section"], shape_keys(r)): r["median_ms"] for r in self.data["rows"]
                if r["provider"] == baselines.get(r["section"]) and r["median_ms"]}
        for r in self.data["rows"]:
            reference = base.get((r["section"], shape_keys(r)))
            r["ratio"] = r["median_ms"] / reference if reference and r["median_ms"] else None
            r["baseline"] = baselines.get(r["section"])

    def write(self, budget: Budget) -> None:
        self.data["elapsed_s"] = round(budget.elapsed(), 1)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.data, indent=1) + "\n")


DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
RESULT_KEYS = {"section", "provider", "median_ms", "us_per_step", "error", "ratio", "baseline"}
BASELINES = {"slstm_sequence": "cudnn_lstm_h512_fp16", "slstm_step": "cudnn_lstm_step_graph",
             "mlstm_prefill": "tfla_xl_chunk_cs128", "mlstm_step": "ours_step_graph"}


def mode_name(args: argparse.Namespace) -> str:
    return "smoke" if args.smoke else ("full" if args.full else "quick")


def machine_info(device: torch.device) -> dict:
    """bench.common's machine facts plus the device and, on CUDA, the GPU's."""
    info = {**common_machine_info(), "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, sm_count=props.multi_processor_count,
                    capability=f"{props.major}.{props.minor}", gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return info


def attempt(report: Report, budget: Budget, section: str, provider: str, shape: dict, steps: int,
            measure: Callable[[], float], min_left_s: float = 5.0) -> None:
    """Run one measurement, recording its time or its error; skip it when the budget is spent."""
    if budget.left() < min_left_s:
        report.row(section, provider, shape, None, steps, error="skipped: time budget spent")
        return
    try:
        report.row(section, provider, shape, measure(), steps)
    except Exception as error:  # one provider failing (OOM, missing feature) must not end the run
        report.row(section, provider, shape, None, steps, error=f"{type(error).__name__}: {str(error)[:300]}")
    if report.device.type == "cuda":
        torch.cuda.empty_cache()


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    if not torch.isfinite(out).all():
        return math.inf
    return float((out.double() - ref.double()).norm() / ref.double().norm())


# ----------------------------------------------------------------------------------------------- inputs

def slstm_weights(heads: int, dim: int, device: torch.device, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    R = torch.randn(heads, 4, dim, dim, generator=g) * (0.5 / math.sqrt(dim))
    bias = torch.randn(4, heads, dim, generator=g) * 0.1
    bias[1] += 3.0
    return R.to(device), bias.to(device)


def slstm_wx(batch: int, steps: int, heads: int, dim: int, dtype: torch.dtype, device: torch.device):
    return torch.randn(batch, steps, 4, heads, dim, device=device, dtype=dtype)


def mlstm_qkvif(batch: int, heads: int, steps: int, dqk: int, dv: int, dtype: torch.dtype,
                device: torch.device):
    q, k = (torch.randn(batch, heads, steps, dqk, device=device, dtype=dtype) for _ in range(2))
    v = torch.randn(batch, heads, steps, dv, device=device, dtype=dtype)
    i = torch.randn(batch, heads, steps, device=device, dtype=dtype)
    f = torch.randn(batch, heads, steps, device=device, dtype=dtype) + 3.0
    return q, k, v, i, f


# ----------------------------------------------------------------------------------------------- sections

@triton.jit
def _empty_kernel(x_ptr):
    tl.store(x_ptr + tl.program_id(0), 1.0)


def ceilings(report: Report, timer: Timer, device: torch.device) -> None:
    """Launch cost of an empty Triton kernel (eager and in a graph), device copy rate, bf16 GEMM rate."""
    from xlstm_ros.kernels.triton_support import launcher

    x = torch.zeros(1, device=device)
    empty = partial(launcher(_empty_kernel, (1,), device), x)
    out = report.data["ceilings"]
    out["empty_triton_kernel_eager_us"] = timer.eager(empty) * 1e3
    if device.type != "cuda":
        return
    out["empty_triton_kernel_graph_us"] = timer.graph(empty, 100) * 1e3
    out["empty_torch_op_eager_us"] = timer.eager(lambda: x.add_(0)) * 1e3
    src = torch.empty(2**28, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    out["device_copy_GBps"] = 2 * src.numel() / (timer.eager(lambda: dst.copy_(src)) * 1e-3) / 1e9
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    out["bf16_gemm_TFLOPs"] = 2 * 8192**3 / (timer.eager(lambda: a @ a) * 1e-3) / 1e12


def correctness(report: Report, device: torch.device, smoke: bool) -> None:
    """Our Triton kernels on this device against the reference (float64, or the same bf16 rounding)."""
    from xlstm_ros import kernels

    def record(name: str, error: float, limit: float, **extra) -> None:
        report.data["correctness"].append({"check": name, "rel_err": error, "limit": limit,
                                           "ok": error < limit, **extra})
        print(f"correctness {name:40s} rel_err {error:.2e} (limit {limit:.0e})", flush=True)

    batch, steps, heads, dim = (5, 3, 2, 16) if smoke else (33, 16, 4, 128)
    R, bias = slstm_weights(heads, dim, device)
    wx = slstm_wx(batch, steps, heads, dim, torch.float32, device)
    ref64 = kernels.slstm_sequence(wx.double(), R.double(), bias.double(), backend="torch")
    ours = kernels.slstm_sequence(wx, R, bias, backend="triton")
    record("slstm_sequence fp32 vs fp64", max(rel_err(ours[0], ref64[0]), rel_err(ours[1], ref64[1])), 1e-4)
    ref_bf16 = kernels.slstm_sequence(wx, R, bias, precision="bf16-compatible", backend="torch")
    ours_bf16 = kernels.slstm_sequence(wx, R, bias, precision="bf16-compatible", backend="triton")
    record("slstm_sequence bf16-compatible vs reference", rel_err(ours_bf16[0], ref_bf16[0]), 2e-2,
           bitwise_equal_fraction=float((ours_bf16[0] == ref_bf16[0]).float().mean()))
    state, state_ref = ours[1].clone(), ref64[1].clone()
    rows = torch.randperm(batch, device=device)[: batch // 2 + 1]
    h_t = kernels.slstm_step(wx[rows, 0], R, bias, state, rows=rows, backend="triton")
    h_ref = kernels.slstm_step(wx[rows, 0].double(), R.double(), bias.double(), state_ref, rows=rows,
                               backend="torch")
    record("slstm_step rows fp32 vs fp64", max(rel_err(h_t, h_ref), rel_err(state, state_ref)), 1e-4)

    batch, heads, seq, dqk, dv = (1, 2, 20, 16, 16) if smoke else (2, 4, 196, 96, 192)
    inputs = mlstm_qkvif(batch, heads, seq, dqk, dv, torch.float32, device)
    ref = kernels.mlstm_parallel(*(x.double() for x in inputs))
    h, final = kernels.mlstm_chunkwise(*inputs, chunk_size=16 if smoke else 64, backend="triton")
    record("mlstm_chunkwise fp32 vs fp64 parallel", rel_err(h, ref), 1e-4)
    if not smoke:
        h16, _ = kernels.mlstm_chunkwise(*(x.bfloat16() for x in inputs[:3]), *inputs[3:], backend="triton")
        record("mlstm_chunkwise bf16 vs fp64 parallel", rel_err(h16, ref), 3e-2)
    state = kernels.mlstm_zero_state(batch, heads, dqk, dv, device)
    h_steps = torch.stack([kernels.mlstm_step(*(x[:, :, t] for x in inputs), state, backend="triton")
                           for t in range(seq)], 2)
    record("mlstm_step sequence fp32 vs fp64 parallel", rel_err(h_steps, ref), 1e-4)
    record("mlstm final state: chunkwise vs steps", max(rel_err(a, b) for a, b in zip(final, state)), 1e-4)


def slstm_sequence_section(report: Report, timer: Timer, budget: Budget, device: torch.device,
                           shapes: list[tuple[int, int]], heads: int, dim: int, smoke: bool) -> None:
    section = "slstm_sequence"
    hidden = heads * dim
    R, bias = slstm_weights(heads, dim, device)
    lstm = "cudnn_lstm" if device.type == "cuda" else "cpu_lstm"
    lstm_dtypes = [torch.float16, torch.bfloat16] if device.type == "cuda" else [torch.float32]
    for batch, steps in shapes:
        shape = {"B": batch, "T": steps, "NH": heads, "DH": dim}
        slstm_sequence_cases(report, timer, budget, device, R, bias, shape, smoke)
        lstm_cases = [(f"{lstm}_h{hidden}", hidden, batch, dtype) for dtype in lstm_dtypes]
        lstm_cases.append((f"{lstm}_h128_x4B", 128, 4 * batch, lstm_dtypes[0]))  # same recurrent FLOPs
        for name, lstm_hidden, lstm_batch, dtype in lstm_cases:
            attempt(report, budget, section, f"{name}_{DTYPE_NAMES[dtype]}", shape, steps,
                    lambda: time_lstm(timer, lstm_hidden, lstm_batch, steps, dtype, device))
    report.write(budget)


def slstm_sequence_cases(report: Report, timer: Timer, budget: Budget, device: torch.device, R: torch.Tensor,
                         bias: torch.Tensor, shape: dict, smoke: bool) -> None:
    """Our kernel (bf16-compatible, fp32, with TiRex's input projection) and the eager reference."""
    from xlstm_ros import kernels
    section = "slstm_sequence"
    batch, steps, heads, dim = shape["B"], shape["T"], shape["NH"], shape["DH"]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    wx = slstm_wx(batch, steps, heads, dim, dtype, device)
    state = kernels.slstm_zero_state(batch, heads, dim, device)
    ours = partial(kernels.slstm_sequence, wx, R, bias, state, precision="bf16-compatible", backend="triton")
    attempt(report, budget, section, "ours_triton_bf16", shape, steps, lambda: timer.eager(ours))
    if batch <= 256:
        ours32 = partial(kernels.slstm_sequence, wx.float(), R, bias, state, backend="triton")
        attempt(report, budget, section, "ours_triton_fp32", shape, steps, lambda: timer.eager(ours32))
    x = torch.randn(batch * steps, heads, dim, device=device, dtype=dtype)
    W = torch.randn(heads, dim, 4 * dim, device=device, dtype=dtype) / math.sqrt(dim)

    def projected():  # TiRex's headwise W x (block-diagonal, no bias), read by the kernel as a strided view
        gates = torch.bmm(x.transpose(0, 1), W)  # (NH, B*T, 4*DH)
        view = gates.view(heads, batch, steps, 4, dim).permute(1, 2, 3, 0, 4)
        return kernels.slstm_sequence(view, R, bias, state, precision="bf16-compatible", backend="triton")

    attempt(report, budget, section, "ours_triton+proj_bf16", shape, steps, lambda: timer.eager(projected))
    if steps <= 1024 or smoke:
        eager_ref = partial(kernels.slstm_sequence, wx, R, bias, state, precision="bf16-compatible",
                            backend="torch")
        attempt(report, budget, section, "eager_ref_bf16", shape, steps,
                lambda: timer.eager(eager_ref, reps=3 if steps >= 1024 else None))
        if device.type == "cuda" and steps <= 256:
            attempt(report, budget, section, "eager_ref_graph_bf16", shape, steps,
                    lambda: timer.graph(eager_ref, 1))


def time_lstm(timer: Timer, hidden: int, batch: int, steps: int, dtype: torch.dtype,
              device: torch.device) -> float:
    """nn.LSTM forward over (batch, steps, hidden): cuDNN on CUDA."""
    lstm = torch.nn.LSTM(hidden, hidden, batch_first=True).to(device=device, dtype=dtype)
    x = torch.randn(batch, steps, hidden, device=device, dtype=dtype)
    with torch.no_grad():
        return timer.eager(lambda: lstm(x))


def slstm_step_section(report: Report, timer: Timer, budget: Budget, device: torch.device,
                       batches: list[int], heads: int, dim: int) -> None:
    from xlstm_ros import kernels
    section = "slstm_step"
    R, bias = slstm_weights(heads, dim, device)
    hidden = heads * dim
    steps_per_graph = 20
    for batch in batches:
        shape = {"B": batch, "NH": heads, "DH": dim}
        wx_t = slstm_wx(batch, 1, heads, dim, torch.float32, device)[:, 0]
        state = kernels.slstm_sequence(slstm_wx(batch, 2, heads, dim, torch.float32, device), R, bias,
                                       backend="torch")[1]
        rows = torch.randperm(batch, device=device)
        step = partial(kernels.slstm_step, wx_t, R, bias, state, precision="bf16-compatible")
        ours, ref = partial(step, backend="triton"), partial(step, backend="torch")
        ours_rows = partial(step, rows=rows, backend="triton")
        attempt(report, budget, section, "ours_step_eager", shape, 1, lambda: timer.eager(ours))
        attempt(report, budget, section, "ours_step_rows_eager", shape, 1, lambda: timer.eager(ours_rows))
        attempt(report, budget, section, "ref_step_eager", shape, 1, lambda: timer.eager(ref))
        if device.type == "cuda":
            attempt(report, budget, section, "ours_step_graph", shape, 1,
                    lambda: timer.graph(ours, steps_per_graph))
            attempt(report, budget, section, "ours_step_rows_graph", shape, 1,
                    lambda: timer.graph(ours_rows, steps_per_graph))
            attempt(report, budget, section, "ref_step_graph", shape, 1, lambda: timer.graph(ref, steps_per_graph))
        lstm_dtype = torch.float16 if device.type == "cuda" else torch.float32
        lstm = torch.nn.LSTM(hidden, hidden, batch_first=True).to(device=device, dtype=lstm_dtype)
        x = torch.randn(batch, 1, hidden, device=device, dtype=lstm_dtype)
        hc = tuple(torch.randn(1, batch, hidden, device=device, dtype=lstm_dtype) for _ in range(2))

        def lstm_step():
            with torch.no_grad():
                return lstm(x, hc)

        lstm_name = "cudnn_lstm_step" if device.type == "cuda" else "cpu_lstm_step"
        attempt(report, budget, section, f"{lstm_name}_eager", shape, 1, lambda: timer.eager(lstm_step))
        if device.type == "cuda":
            attempt(report, budget, section, "cudnn_lstm_step_graph", shape, 1,
                    lambda: timer.graph(lstm_step, steps_per_graph))
    report.write(budget)


def optional_mlstm_anchors(report: Report) -> dict[str, Callable]:
    """mlstm_kernels and flash-linear-attention entry points, when importable."""
    anchors = {}
    try:
        from mlstm_kernels.torch.chunkwise.triton_limit_chunk import mlstm_chunkwise__limit_chunk
        from mlstm_kernels.torch.chunkwise.triton_xl_chunk import mlstm_chunkwise__xl_chunk
        from mlstm_kernels.torch.recurrent.triton_step import mlstm_recurrent_step__triton
        anchors.update(xl_chunk=mlstm_chunkwise__xl_chunk, limit_chunk=mlstm_chunkwise__limit_chunk,
                       mk_step=mlstm_recurrent_step__triton)
    except Exception as error:  # absent or incompatible with this torch/triton
        report.note(f"mlstm_kernels not importable, its anchors are skipped ({type(error).__name__}: {error})")
    try:
        from fla.ops.simple_gla import chunk_simple_gla
        anchors["simple_gla"] = chunk_simple_gla
    except Exception as error:
        report.note(f"flash-linear-attention (fla) not importable, its anchor is skipped ({type(error).__name__})")
    return anchors


def pad_to(x: torch.Tensor, multiple: int, dim: int = 2) -> torch.Tensor:
    """Pad the sequence dim at the end (exact for causal models: real tokens never see the padding)."""
    pad = -x.shape[dim] % multiple
    if not pad:
        return x
    widths = [0, 0] * (x.dim() - 1 - dim) + [0, pad]
    return F.pad(x, widths)


def mlstm_prefill_section(report: Report, timer: Timer, budget: Budget, device: torch.device,
                          shapes: list[tuple[int, int, int]], heads: int, anchors: dict, smoke: bool) -> None:
    from xlstm_ros import kernels
    section = "mlstm_prefill"
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    chunk = 16 if smoke else 64
    for dim, batch, seq in shapes:
        shape = {"B": batch, "N": seq, "NH": heads, "D": dim}
        q, k, v, i, f = mlstm_qkvif(batch, heads, seq, dim, dim, dtype, device)
        ours = partial(kernels.mlstm_chunkwise, q, k, v, i, f, chunk_size=chunk, backend="triton")
        attempt(report, budget, section, f"ours_chunkwise_cs{chunk}", shape, seq, lambda: timer.eager(ours))
        if seq <= 1024:
            ref = partial(kernels.mlstm_parallel, q, k, v, i, f)
            attempt(report, budget, section, "ref_parallel", shape, seq, lambda: timer.eager(ref))
        for name, size in (("xl_chunk", 128), ("limit_chunk", 64)):
            if name in anchors:
                padded = [pad_to(x, size) for x in (q, k, v, i, f)]
                provider = f"tfla_xl_chunk_cs{size}" if name == "xl_chunk" else f"limit_chunk_cs{size}"
                anchor = partial(anchors[name], *padded, chunk_size=size, autocast_kernel_dtype=dtype)
                attempt(report, budget, section, provider, shape, seq, lambda: timer.eager(anchor))
        if "simple_gla" in anchors:
            bthd = [x.transpose(1, 2).contiguous() for x in (q, k, v)]
            g = F.logsigmoid(f.float()).transpose(1, 2).contiguous()
            anchor = partial(anchors["simple_gla"], *bthd, g=g)
            attempt(report, budget, section, "fla_chunk_simple_gla", shape, seq, lambda: timer.eager(anchor))
        if device.type == "cuda":
            sdpa = partial(F.scaled_dot_product_attention, q, k, v, is_causal=True)
            attempt(report, budget, section, "sdpa_causal", shape, seq, lambda: timer.eager(sdpa))
    report.write(budget)


def mlstm_step_section(report: Report, timer: Timer, budget: Budget, device: torch.device,
                       batches: list[int], heads: int, dqk: int, dv: int, anchors: dict) -> None:
    from xlstm_ros import kernels
    section = "mlstm_step"
    for batch in batches:
        shape = {"B": batch, "NH": heads, "DQK": dqk, "DV": dv}
        q, k, v, i, f = (x[:, :, 0] for x in mlstm_qkvif(batch, heads, 1, dqk, dv, torch.float32, device))
        state = kernels.mlstm_zero_state(batch, heads, dqk, dv, device)
        state.m.zero_()
        ours = partial(kernels.mlstm_step, q, k, v, i, f, state, backend="triton")
        ref = partial(kernels.mlstm_step, q, k, v, i, f, state, backend="torch")
        attempt(report, budget, section, "ours_step_eager", shape, 1, lambda: timer.eager(ours))
        attempt(report, budget, section, "ref_step_eager", shape, 1, lambda: timer.eager(ref))
        if device.type == "cuda":
            attempt(report, budget, section, "ours_step_graph", shape, 1, lambda: timer.graph(ours, 20))
            attempt(report, budget, section, "ref_step_graph", shape, 1, lambda: timer.graph(ref, 20))
        if "mk_step" in anchors:
            m = state.m[..., None].clone()
            mk = partial(anchors["mk_step"], q, k, v, i[..., None], f[..., None], state.C, state.n, m)
            attempt(report, budget, section, "mlstm_kernels_step_eager", shape, 1, lambda: timer.eager(mk))
            if device.type == "cuda":
                attempt(report, budget, section, "mlstm_kernels_step_graph", shape, 1, lambda: timer.graph(mk, 20))
    report.write(budget)


# ----------------------------------------------------------------------------------------------- main

def grids(args: argparse.Namespace) -> dict:
    if args.smoke:
        return dict(heads=2, dim=16, seq=[(3, 4)], step=[3], prefill=[(16, 1, 20)], mstep=[2], mdims=(16, 16))
    seq = [(b, t) for b in (1, 16, 256, 1024) for t in (64, 1024)] + [(16, 4096), (256, 4096)]
    prefill = [(192, 1, 196), (192, 64, 196), (192, 1, 1024), (192, 1, 4096),
               (384, 1, 196), (384, 64, 196), (384, 1, 4096)]
    if args.full:
        seq += [(1, 1), (1, 4096), (1024, 4096)]
        prefill += [(64, 1, 196), (64, 64, 1024), (384, 16, 1024)]
    return dict(heads=4, dim=128, seq=seq, step=[1, 16, 256, 1024], prefill=prefill, mstep=[1, 64, 512],
                mdims=(192, 192))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "kernels.json")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting new cases after this")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU (Triton interpreter)")
    parser.add_argument("--full", action="store_true", help="add the largest shapes")
    parser.add_argument("--reps", type=int, default=15, help="timed repetitions per case (median)")
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # backend="triton" on CPU tensors runs the interpreter
        device = torch.device("cpu")
        torch.set_num_threads(1)
        timer = Timer(device, warmup=1, reps=2)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
        timer = Timer(device, warmup=3, reps=args.reps)
    else:
        parser.error("no CUDA device: run with --smoke on a CPU-only machine")
    budget = Budget(args.budget_s)
    report = Report(args.out, args, device)
    grid = grids(args)
    torch.manual_seed(0)
    with torch.inference_mode():
        ceilings(report, timer, device)
        correctness(report, device, args.smoke)
        report.write(budget)
        slstm_sequence_section(report, timer, budget, device, grid["seq"], grid["heads"], grid["dim"], args.smoke)
        slstm_step_section(report, timer, budget, device, grid["step"], grid["heads"], grid["dim"])
        anchors = optional_mlstm_anchors(report)
        mlstm_prefill_section(report, timer, budget, device, grid["prefill"], grid["heads"], anchors, args.smoke)
        mlstm_step_section(report, timer, budget, device, grid["mstep"], grid["heads"], *grid["mdims"], anchors)
    report.add_ratios(BASELINES)
    report.write(budget)
    print_summary(report)
    return 0 if all(check["ok"] for check in report.data["correctness"]) else 1


def print_summary(report: Report) -> None:
    print("\nsection          provider                     shape                                       "
          "median_ms  us/step    ratio")
    for r in report.data["rows"]:
        shape = ",".join(f"{k}={v}" for k, v in r.items() if k not in RESULT_KEYS)
        if r["median_ms"] is None:
            print(f"{r['section']:16s} {r['provider']:28s} {shape:43s} {r.get('error', '')[:60]}")
            continue
        ratio = f"{r['ratio']:.3f}" if r.get("ratio") else "-"
        print(f"{r['section']:16s} {r['provider']:28s} {shape:43s} {r['median_ms']:9.4f} {r['us_per_step']:8.2f} "
              f"{ratio:>8s}")
    print(f"ceilings: {json.dumps(report.data['ceilings'])}")
    print(f"wrote {report.out} ({report.data['elapsed_s']} s)")


if __name__ == "__main__":
    sys.exit(main())
