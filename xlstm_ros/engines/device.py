"""Device selection for the engines, and the kernel backend as engine parameters name it.

`device`: "auto" (first CUDA device, else CPU), "cpu", "cuda" or "cuda:N". A CUDA request on a machine
without a usable GPU either fails with a clear message or, when `fallback_to_cpu` is set, runs on the CPU
and says so through `on_fallback` (nodes log it as a warning and report it in diagnostics).
`backend`: "auto", "triton" or "torch", resolved by the kernels (`xlstm_ros.kernels.resolve_backend`).
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch

from xlstm_ros.kernels import BACKENDS, BackendError, resolve_backend

DEVICES_HELP = "auto, cpu, cuda or cuda:N"
__all__ = ["BACKENDS", "DEVICES_HELP", "DeviceError", "select_backend", "select_device"]


class DeviceError(RuntimeError):
    """The requested device or backend cannot be used here."""


def select_device(requested: str = "auto", *, fallback_to_cpu: bool = False,
                  on_fallback: Callable[[str], None] | None = None) -> torch.device:
    """Resolve a device string to a usable torch.device (see the module docstring)."""
    text = (requested or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise DeviceError(f"invalid device '{requested}' (expected {DEVICES_HELP})") from error
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DeviceError(f"unsupported device '{requested}' (expected {DEVICES_HELP})")
    index = device.index or 0
    if torch.cuda.is_available() and index < torch.cuda.device_count():
        return torch.device("cuda", index)
    reason = (f"device '{requested}' is not available "
              f"({torch.cuda.device_count()} CUDA device(s) visible)")
    if not fallback_to_cpu:
        raise DeviceError(reason)
    (on_fallback or (lambda message: warnings.warn(message, RuntimeWarning, stacklevel=3)))(
        f"{reason}; falling back to the CPU")
    return torch.device("cpu")


def select_backend(requested: str, device: torch.device) -> str:
    """Resolve a backend name (any case, None = "auto") for `device` to "triton" or "torch", or a DeviceError."""
    backend = (requested or "auto").strip().lower()
    if backend not in BACKENDS:
        raise DeviceError(f"invalid backend '{requested}' (expected one of {', '.join(BACKENDS)})")
    try:
        return resolve_backend(backend, device)
    except BackendError as error:
        raise DeviceError(str(error)) from error
