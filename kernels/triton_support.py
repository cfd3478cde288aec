"""Triton plumbing shared by the sLSTM and mLSTM kernels.

`launcher` runs a @triton.jit kernel compiled for CUDA tensors and the very same source in Triton's
interpreter for CPU tensors, whatever TRITON_INTERPRET was when triton was imported, so that CPU tests
exercise the kernels that run on the GPU. The math helpers avoid what the interpreter lacks (libdevice tanh,
correct bf16 arithmetic): bf16 rounding is done on the fp32 bit pattern, identically on both.
"""
from __future__ import annotations

import contextlib
import functools

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction


def launcher(kernel: JITFunction, grid: tuple[int, ...], device: torch.device):
    """`kernel[grid]` for CUDA tensors; for CPU tensors, the same source run by Triton's interpreter."""
    if device.type == "cuda":
        return kernel[grid]
    interpreted = _interpreted_twin(kernel.fn)

    def interpret(*args, **kwargs):
        with _library_interpreted():
            interpreted[grid](*args, **kwargs)

    return interpret


@functools.lru_cache(maxsize=None)
def _interpreted_twin(fn) -> InterpretedFunction:
    return InterpretedFunction(fn)


@contextlib.contextmanager
def _library_interpreted():
    """Let @triton.jit functions called from an interpreted kernel (ours, and triton.language's own such as
    tl.sum or tl.sigmoid) run as interpreted twins: for the duration of an interpreted launch, calling a
    compiled JIT function runs its twin instead of raising.
    """
    compiled_call = JITFunction.__call__
    JITFunction.__call__ = _call_interpreted
    try:
        yield
    finally:
        JITFunction.__call__ = compiled_call


def _call_interpreted(jit_fn: JITFunction, *args, **kwargs):
    """Run jit_fn's interpreted twin, then undo its patches of triton.language (the interpreter's own
    device-function call leaves them in place, which would break compiling kernels later in the process)."""
    from triton.runtime.interpreter import _patch_lang

    twin = _interpreted_twin(jit_fn.fn)
    scope = _patch_lang(twin.fn)
    try:
        return twin.rewrite()(*args, **kwargs)
    finally:
        scope.restore()


@triton.jit
def tanh(x):
    """Overflow-safe, sign-symmetric tanh (exp of a non-positive argument only)."""
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def logsigmoid(x):
    """log(sigmoid(x)) without overflow: min(x, 0) - log(1 + exp(-|x|))."""
    return tl.minimum(x, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(x)))


@triton.jit
def round_bf16(x):
    """Round fp32 values to the nearest bfloat16 (ties to even), returned as fp32."""
    bits = x.to(tl.uint32, bitcast=True)
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return bits.to(tl.float32, bitcast=True)


def dot_dtype(dtype: torch.dtype):
    """The tl.dot operand dtype for operands stored as `dtype` (fp32 products stay exact: input_precision ieee)."""
    return {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}.get(dtype, tl.float32)


def check_interpretable(device: torch.device, *tensors: torch.Tensor) -> None:
    """The interpreter computes bf16 on raw bits (wrong): refuse bf16 tensors on the CPU path."""
    if device.type != "cuda" and any(t is not None and t.dtype == torch.bfloat16 for t in tensors):
        raise TypeError("bfloat16 tensors need CUDA for the Triton kernels (Triton's interpreter computes bf16 "
                        "wrongly); use float32/float16 on the CPU, or backend='torch'")


def block_size(dim: int, limit: int | None = None) -> int:
    """A power-of-two tile >= 16 covering `dim` (masked beyond it), capped at `limit`."""
    size = max(16, triton.next_power_of_2(dim))
    return min(size, limit) if limit else size
