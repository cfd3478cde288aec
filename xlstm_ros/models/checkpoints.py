"""Checkpoint I/O shared by every model: safe loading, strict matching, atomic saving.

Files are read with `torch.load(weights_only=True)` (pickles that need arbitrary code are refused) or as
safetensors. Every failure is a `CheckpointError` whose message names the file and, for a state-dict
mismatch, the first offending key, so that a corrupt download or a wrong `checkpoint` parameter is
diagnosed from the message alone.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe, or does not fit the model."""


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file (torch pickle, weights only, or safetensors) into a dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    if path.suffix == ".safetensors":
        return _load_safetensors(path, map_location)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            reason = f"not a weights-only checkpoint, refused for safety ({reason})"
        raise CheckpointError(f"{path}: cannot read checkpoint: {reason}") from error
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict at the top level, found {type(payload).__name__}")
    return payload


def _load_safetensors(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    try:
        from safetensors.torch import load_file
    except ImportError as error:
        raise CheckpointError(f"{path}: reading .safetensors needs the 'safetensors' package") from error
    try:
        return {"state_dict": load_file(str(path), device=str(map_location))}
    except Exception as error:
        raise CheckpointError(f"{path}: cannot read safetensors file: {error}") from error


def state_dict_of(payload: Mapping[str, Any], path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint payload (under "state_dict", or the payload itself)."""
    state = payload.get("state_dict", payload)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no state_dict of tensors found (top-level keys: {sorted(payload)[:8]})")
    return dict(state)


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Strictly load `state` into `module`; the error names the first missing, unexpected or mis-shaped key."""
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise CheckpointError(f"{path}: missing key '{key}' (expected shape {tuple(tensor.shape)})")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{path}: key '{key}' has shape {tuple(state[key].shape)}, "
                                  f"the model expects {tuple(tensor.shape)}")
    for key in state:
        if key not in expected:
            raise CheckpointError(f"{path}: unexpected key '{key}' (not a parameter of {type(module).__name__})")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: key '{key}' contains NaN or infinite values")
    module.load_state_dict(state, strict=True)


def save_checkpoint(payload: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write `payload` with torch.save atomically (temporary file + rename): a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        torch.save(dict(payload), tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
