"""Which implementation runs a kernel: `backend` "auto" | "triton" | "torch" resolved for a device.

"torch" is the PyTorch reference (`reference.py`), "triton" the Triton kernels (`slstm.py`, `mlstm.py`).
"auto" picks Triton on CUDA devices when triton is installed, the reference otherwise. "triton" on the CPU
runs the same kernels in Triton's interpreter, and only when TRITON_INTERPRET=1 is set: that is how the
tests check the kernels without a GPU, and it keeps anyone from reaching the slow interpreter by accident.
The Triton kernels are forward-only: when autograd needs gradients, "auto" picks the (differentiable)
reference and "triton" is refused.
"""
from __future__ import annotations

import importlib.util
import os

import torch

BACKENDS = ("auto", "triton", "torch")


class BackendError(RuntimeError):
    """The requested backend cannot run here."""


def interpreter_enabled() -> bool:
    """True when TRITON_INTERPRET asks for Triton's CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def triton_installed() -> bool:
    """True when the triton package is importable (importing this package does not import it)."""
    return importlib.util.find_spec("triton") is not None


def resolve_backend(backend: str, device: torch.device, *, needs_grad: bool = False) -> str:
    """"triton" or "torch": what runs `backend` on `device` (see the module docstring).

    A ValueError for a name outside BACKENDS; a BackendError when "triton" cannot run here."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_installed() and not needs_grad else "torch"
    if needs_grad:
        raise BackendError("backend 'triton' is forward-only, but autograd needs gradients here: use "
                           "backend 'auto' or 'torch' for training, or torch.no_grad() for inference")
    if not triton_installed():
        raise BackendError("backend 'triton' needs the triton package (pip install triton)")
    if device.type != "cuda" and not interpreter_enabled():
        raise BackendError(f"backend 'triton' needs a CUDA device (device is {device}); on the CPU only with "
                           "TRITON_INTERPRET=1 (Triton's interpreter)")
    return "triton"
