"""TiRex: the NX-AI zero-shot forecaster (12 sLSTM blocks over 32-sample patches), our implementation.

It loads the official `model.ckpt` unchanged (same key names, layouts and `hyper_parameters`) and
reproduces tirex-ts 1.4.2 forecasts: bitwise with precision="bf16-compatible" (the official torch
backend's rounding), within about 1 % with precision="fp32". The pieces are separate so the streaming
engine can reuse them: the NaN-aware scaler (`window_stats`, `standardize`, `destandardize`), the
tokenizer (`tokenize`), the token-level network (`TiRex.forward_tokens` for a pass, `TiRex.step_tokens`
for one token on a persistent state) and the official rollout (`TiRex.forecast`).

Data flow of one official pass: window of exactly `train_ctx_len` samples (older ones cut, missing
ones left-padded with NaN) -> per-series (loc, scale) over the window -> 64 tokens [32 scaled values with
NaN -> 0, 32 observed-mask bits] -> residual MLP embedding -> sLSTM blocks -> RMSNorm -> residual MLP
head -> (9 quantiles x 32 samples) per token; the output of token t forecasts patch t + 1.
"""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from xlstm_ros.kernels import BACKENDS
from xlstm_ros.models.checkpoints import (CheckpointError, load_checkpoint, load_into, save_checkpoint,
                                          state_dict_of)
from xlstm_ros.models.slstm import (PRECISIONS, ResidualMLP, RMSNorm, SLSTMBlock, SLSTMStackState,
                                    check_precision, swiglu_hidden_dim)

DEFAULT_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SCALE_EPS = 1e-5
LEGACY_KEY_PREFIX = "block_stack."  # v1.0 checkpoints kept the blocks under this sub-module


def is_count(value: Any, minimum: int = 0) -> bool:
    """True for an integer (Python or numpy, not bool) >= minimum."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


@dataclass(frozen=True)
class TiRexConfig:
    """Architecture of a TiRex model; the defaults are the released NX-AI/TiRex (35.3 M parameters)."""

    patch_size: int = 32
    embedding_dim: int = 512
    num_blocks: int = 12
    num_heads: int = 4
    ffn_proj_factor: float = 2.6667
    input_ff_dim: int = 2048
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    train_ctx_len: int = 2048

    def __post_init__(self) -> None:
        for name in ("patch_size", "embedding_dim", "num_blocks", "num_heads", "input_ff_dim", "train_ctx_len"):
            value = getattr(self, name)
            if not is_count(value, minimum=1):
                raise ValueError(f"TiRexConfig.{name} must be a positive integer, got {value!r}")
        if self.embedding_dim % self.num_heads:
            raise ValueError(f"TiRexConfig.embedding_dim ({self.embedding_dim}) must be a multiple of "
                             f"num_heads ({self.num_heads})")
        if self.train_ctx_len % self.patch_size:
            raise ValueError(f"TiRexConfig.train_ctx_len ({self.train_ctx_len}) must be a multiple of "
                             f"patch_size ({self.patch_size})")
        if not self.ffn_proj_factor > 0:
            raise ValueError(f"TiRexConfig.ffn_proj_factor must be > 0, got {self.ffn_proj_factor!r}")
        levels = tuple(float(q) for q in self.quantiles)
        if list(levels) != sorted(set(levels)) or not all(0.0 < q < 1.0 for q in levels) or 0.5 not in levels:
            raise ValueError(f"TiRexConfig.quantiles must be increasing levels in (0, 1) including 0.5, "
                             f"got {self.quantiles!r}")
        object.__setattr__(self, "quantiles", levels)

    @property
    def head_dim(self) -> int:
        return self.embedding_dim // self.num_heads

    @property
    def ffn_dim(self) -> int:
        return swiglu_hidden_dim(self.embedding_dim, self.ffn_proj_factor)

    @property
    def context_tokens(self) -> int:
        """Tokens per official pass (2048 / 32 = 64)."""
        return self.train_ctx_len // self.patch_size

    @property
    def median_index(self) -> int:
        return self.quantiles.index(0.5)

    def to_hyper_parameters(self) -> dict[str, Any]:
        """The official checkpoint's `hyper_parameters` entry (tirex-ts builds TiRexZero(**it))."""
        return {
            "model_config": {
                "input_patch_size": self.patch_size,
                "output_patch_size": self.patch_size,
                "quantiles": list(self.quantiles),
                "input_ff_dim": self.input_ff_dim,
                "block_kwargs": {
                    "embedding_dim": self.embedding_dim,
                    "num_blocks": self.num_blocks,
                    "num_heads": self.num_heads,
                    "ffn_proj_factor": self.ffn_proj_factor,
                    "all_slstm": True,
                    "return_last_states": True,
                    "vocab_size": 0,
                },
            },
            "train_ctx_len": self.train_ctx_len,
        }

    @classmethod
    def from_hyper_parameters(cls, hyper_parameters: Mapping[str, Any], source: str | os.PathLike = "checkpoint"
                              ) -> TiRexConfig:
        """Parse an official `hyper_parameters` dict; a CheckpointError names `source` and the bad key."""
        def require(mapping: Any, key: str, where: str) -> Any:
            if not isinstance(mapping, Mapping) or key not in mapping:
                raise CheckpointError(f"{source}: hyper_parameters lack '{where}{key}'")
            return mapping[key]

        model_config = require(hyper_parameters, "model_config", "")
        blocks = require(model_config, "block_kwargs", "model_config.")
        input_patch = require(model_config, "input_patch_size", "model_config.")
        output_patch = require(model_config, "output_patch_size", "model_config.")
        if input_patch != output_patch:
            raise CheckpointError(f"{source}: model_config.input_patch_size ({input_patch}) differs from "
                                  f"output_patch_size ({output_patch}); TiRex needs them equal")
        if not blocks.get("all_slstm", True):
            raise CheckpointError(f"{source}: model_config.block_kwargs.all_slstm is false; only all-sLSTM "
                                  f"TiRex models are supported")
        for key in ("num_gates", "num_states"):
            if blocks.get(key, 4) != 4:
                raise CheckpointError(f"{source}: model_config.block_kwargs.{key} must be 4, got {blocks[key]}")
        try:
            return cls(patch_size=input_patch,
                       embedding_dim=require(blocks, "embedding_dim", "model_config.block_kwargs."),
                       num_blocks=require(blocks, "num_blocks", "model_config.block_kwargs."),
                       num_heads=require(blocks, "num_heads", "model_config.block_kwargs."),
                       ffn_proj_factor=blocks.get("ffn_proj_factor", cls.ffn_proj_factor),
                       input_ff_dim=require(model_config, "input_ff_dim", "model_config."),
                       quantiles=tuple(require(model_config, "quantiles", "model_config.")),
                       train_ctx_len=require(hyper_parameters, "train_ctx_len", ""))
        except ValueError as error:
            raise CheckpointError(f"{source}: invalid hyper_parameters: {error}") from error


class ScalerState(NamedTuple):
    """Per-series standardisation of one window: loc and scale, each (B, 1)."""

    loc: torch.Tensor
    scale: torch.Tensor


def window_stats(window: torch.Tensor) -> ScalerState:
    """NaN-aware (loc, scale) over the last axis, exactly as the official scaler.

    loc = mean of the observed values (0 if none); scale = population std of the observed values
    (1 if none; |loc| + 1e-5 if it is 0, e.g. a constant series).
    """
    loc = torch.nan_to_num(torch.nanmean(window, dim=-1, keepdim=True), nan=0.0)
    scale = torch.nan_to_num(torch.nanmean((window - loc).square(), dim=-1, keepdim=True).sqrt(), nan=1.0)
    scale = torch.where(scale == 0, torch.abs(loc) + SCALE_EPS, scale)
    return ScalerState(loc, scale)


def standardize(values: torch.Tensor, stats: ScalerState) -> torch.Tensor:
    """(values - loc) / scale for values (B, ...) with loc, scale (B, 1); NaN stays NaN."""
    return (values - stats.loc) / stats.scale


def destandardize(values: torch.Tensor, stats: ScalerState) -> torch.Tensor:
    """values * scale + loc for values (B, ...) in normalised units (any trailing shape)."""
    flat = values.reshape(values.shape[0], -1)
    return (flat * stats.scale + stats.loc).view(values.shape)


def tokenize(scaled: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Standardised samples (B, L), L a multiple of patch_size, NaN = missing -> tokens (B, L / P, 2P).

    Each token is [P values with NaN -> 0, P observed-mask bits (1 observed, 0 missing)]."""
    if scaled.shape[-1] % patch_size:
        raise ValueError(f"tokenize: length {scaled.shape[-1]} is not a multiple of patch_size {patch_size}")
    patches = scaled.unfold(dimension=-1, size=patch_size, step=patch_size)
    mask = torch.isnan(patches).logical_not().to(patches.dtype)
    return torch.cat((torch.nan_to_num(patches, nan=0.0), mask), dim=-1)


def fit_window(context: torch.Tensor, length: int) -> torch.Tensor:
    """Keep the last `length` samples of (B, T), left-padding shorter contexts with NaN."""
    if context.shape[-1] >= length:
        return context[..., context.shape[-1] - length:]
    pad = context.new_full((context.shape[0], length - context.shape[-1]), float("nan"))
    return torch.cat((pad, context), dim=-1)


def context_batch(context: Any) -> torch.Tensor:
    """Turn a forecast context into a float32 (B, T) CPU tensor with NaN for missing samples.

    Accepts a 1-D or 2-D tensor/array/list of numbers, or a list of 1-D series of different lengths
    (each left-padded with NaN to the longest; the result equals forecasting each series alone).
    Infinite values are refused: they would poison the window statistics.
    """
    if isinstance(context, (torch.Tensor, np.ndarray)) or (
            isinstance(context, Sequence) and all(isinstance(item, numbers.Real) for item in context)):
        batch = torch.as_tensor(np.asarray(context, dtype=np.float32) if not isinstance(context, torch.Tensor)
                                else context.detach()).to("cpu", torch.float32)
        batch = batch[None] if batch.ndim == 1 else batch
    elif isinstance(context, Sequence) and not isinstance(context, (str, bytes)):
        series = [context_batch(item) for item in context]
        if any(item.shape[0] != 1 for item in series):
            raise ValueError("context: every series in a list must be 1-D")
        longest = max(item.shape[1] for item in series)
        batch = torch.cat([fit_window(item, longest) for item in series])
    else:
        raise ValueError(f"context must be a tensor, an array or a list of series, got {type(context).__name__}")
    if batch.ndim != 2 or batch.shape[0] == 0:
        raise ValueError(f"context must be 1-D (T,) or 2-D (B, T) with B >= 1, got shape {tuple(batch.shape)}")
    if torch.isinf(batch).any():
        row = int(torch.isinf(batch).any(dim=1).nonzero()[0])
        raise ValueError(f"context: series {row} contains infinite values (use NaN for missing samples)")
    return batch


@dataclass
class TiRexForecast:
    """Quantile forecast of a batch: quantiles (B, H, Q) for `levels`, median (B, H)."""

    quantiles: torch.Tensor
    median: torch.Tensor
    levels: tuple[float, ...]


class TiRex(nn.Module):
    """TiRex network with the official parameter names (see the module docstring for the data flow).

    `precision` ("bf16-compatible" = official rounding, or "fp32") and `backend` ("auto", "triton",
    "torch") select how the sLSTM kernels run; both are plain attributes that may be changed later.
    """

    def __init__(self, config: TiRexConfig = TiRexConfig(), *, precision: str = "bf16-compatible",
                 backend: str = "auto") -> None:
        super().__init__()
        self.config = config
        self.precision = check_precision(precision)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.backend = backend
        self.input_patch_embedding = ResidualMLP(2 * config.patch_size, config.input_ff_dim, config.embedding_dim)
        self.blocks = nn.ModuleList(SLSTMBlock(config.embedding_dim, config.num_heads, config.ffn_dim)
                                    for _ in range(config.num_blocks))
        self.out_norm = RMSNorm(config.embedding_dim)
        self.output_patch_embedding = ResidualMLP(config.embedding_dim, config.input_ff_dim,
                                                  len(config.quantiles) * config.patch_size)

    @property
    def device(self) -> torch.device:
        return self.out_norm.weight.device

    def zero_state(self, batch: int) -> SLSTMStackState:
        """Fresh recurrent state (all zeros) for `batch` sequences on the model's device."""
        return SLSTMStackState.zeros(self.config.num_blocks, batch, self.config.num_heads, self.config.head_dim,
                                     device=self.device)

    def masked_tokens(self, batch: int, count: int) -> torch.Tensor:
        """`count` fully missing tokens (values 0, mask 0) per sequence: the future patches of a rollout."""
        return torch.zeros(batch, count, 2 * self.config.patch_size, device=self.device)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Block-stack output (..., D) -> normalised quantile forecasts of the next patch (..., Q, P)."""
        out = self.output_patch_embedding(self.out_norm(hidden))
        return out.unflatten(-1, (len(self.config.quantiles), self.config.patch_size))

    def forward_tokens(self, tokens: torch.Tensor, state: SLSTMStackState | None = None, *,
                       keep: int | None = None) -> tuple[torch.Tensor, SLSTMStackState]:
        """Run tokens (B, T, 2P) from `state` (None = fresh) -> (outputs (B, T, Q, P) normalised, the state
        after the first `keep` tokens (default: all T)).

        The output at token t is the quantile forecast of patch t + 1. The input state is not modified.
        `keep` lets one pass absorb real tokens and roll masked ones out after them: the products then read
        the weights once for both (a single stream's token step is bound by reading them)."""
        if keep is not None and not 1 <= keep <= tokens.shape[1]:
            raise ValueError(f"keep must be in 1..{tokens.shape[1]} (tokens), got {keep}")
        hidden = self.input_patch_embedding(tokens)
        new_states = []
        for index, block in enumerate(self.blocks):
            hidden, block_state = block(hidden, None if state is None else state.blocks[index], keep=keep,
                                        precision=self.precision, backend=self.backend)
            new_states.append(block_state)
        return self.head(hidden), SLSTMStackState(new_states)

    def step_tokens(self, tokens: torch.Tensor, state: SLSTMStackState, rows: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """Advance rows `rows` of a persistent state by one token each (in place): tokens (N, 2P) -> (N, Q, P)."""
        hidden = self.input_patch_embedding(tokens)
        for block, block_state in zip(self.blocks, state.blocks):
            hidden = block.step(hidden, block_state, rows, precision=self.precision, backend=self.backend)
        return self.head(hidden)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Training/teacher-forced pass from a fresh state: tokens (B, T, 2P) -> outputs (B, T, Q, P)."""
        return self.forward_tokens(tokens)[0]

    def rollout(self, last_outputs: torch.Tensor, state: SLSTMStackState, count: int) -> torch.Tensor:
        """Normalised forecasts of the next `count` patches -> (B, count, Q, P) (the official rollout).

        Patch 1 is `last_outputs` (B, Q, P), the output of the last context token; patches 2..count come
        from `count - 1` fully masked tokens run from `state`, the context's final state (not modified)."""
        predictions = last_outputs[:, None]
        if count > 1:
            masked, _ = self.forward_tokens(self.masked_tokens(last_outputs.shape[0], count - 1), state)
            predictions = torch.cat((predictions, masked), dim=1)
        return predictions

    @torch.inference_mode()
    def forecast(self, context: Any, horizon: int | None = None, *,
                 max_accelerated_rollout_steps: int | None = 1) -> TiRexForecast:
        """Official TiRex forecast of the next `horizon` samples (default one patch) of each series.

        `context`: (T,) or (B, T) tensor/array or a list of series (NaN = missing, see `context_batch`).
        Each pass sees exactly train_ctx_len samples and yields up to `max_accelerated_rollout_steps`
        patches; later passes append NaN (never the predictions) and re-standardise the shifted window.
        The official default is 1 (one full pass per patch); None means a single pass for any horizon.
        """
        patch = self.config.patch_size
        if horizon is None:
            horizon = patch
        if not is_count(horizon, minimum=1):
            raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
        steps = max_accelerated_rollout_steps
        if steps is not None and not is_count(steps, minimum=1):
            raise ValueError(f"max_accelerated_rollout_steps must be an integer >= 1 or None, got {steps!r}")
        horizon = int(horizon)
        batch = context_batch(context).to(self.device)
        remaining = math.ceil(horizon / patch)
        pieces = []
        while remaining > 0:
            count = remaining if steps is None else min(remaining, steps)
            window = fit_window(batch, self.config.train_ctx_len)
            stats = window_stats(window)
            outputs, state = self.forward_tokens(tokenize(standardize(window, stats), patch))
            normalised = self.rollout(outputs[:, -1], state, count)
            pieces.append(destandardize(normalised.transpose(1, 2).flatten(2), stats))
            remaining -= count
            if remaining:
                batch = torch.cat((batch, batch.new_full((batch.shape[0], count * patch), float("nan"))), dim=1)
        quantiles = torch.cat(pieces, dim=-1)[..., :horizon].transpose(1, 2).float().cpu()
        return TiRexForecast(quantiles, quantiles[..., self.config.median_index], self.config.quantiles)


def load_tirex_checkpoint(path: str | os.PathLike, *, precision: str = "bf16-compatible", backend: str = "auto",
                          device: torch.device | str = "cpu") -> TiRex:
    """Build a TiRex from an official-format `model.ckpt` (ours or NX-AI's), in eval mode on `device`.

    The file is read weights-only; `hyper_parameters` give the config; a legacy `block_stack.` key prefix is
    stripped; every key must match (CheckpointError names the file and the first mismatching key)."""
    payload = load_checkpoint(path, map_location="cpu")
    if "hyper_parameters" not in payload:
        raise CheckpointError(f"{path}: no 'hyper_parameters' entry (not a TiRex model.ckpt; top-level keys: "
                              f"{sorted(payload)[:8]})")
    config = TiRexConfig.from_hyper_parameters(payload["hyper_parameters"], path)
    state = {key.replace(LEGACY_KEY_PREFIX, ""): tensor for key, tensor in state_dict_of(payload, path).items()}
    model = TiRex(config, precision=precision, backend=backend)
    load_into(model, {key: tensor.float() for key, tensor in state.items()}, path)
    return model.to(device).eval()


def save_tirex_checkpoint(model: TiRex, path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
    """Write `model` in the official `model.ckpt` format (float32 state_dict + hyper_parameters), atomically.

    `extra` adds top-level entries (e.g. training metadata); tirex-ts and our loader ignore them."""
    reserved = {"state_dict", "hyper_parameters"} & set(extra or {})
    if reserved:
        raise ValueError(f"extra must not override {sorted(reserved)}")
    state = {key: tensor.detach().to("cpu", torch.float32).clone() for key, tensor in model.state_dict().items()}
    return save_checkpoint({**(extra or {}), "state_dict": state,
                            "hyper_parameters": model.config.to_hyper_parameters()}, path)


__all__ = ["DEFAULT_QUANTILES", "PRECISIONS", "ScalerState", "TiRex", "TiRexConfig", "TiRexForecast",
           "context_batch", "destandardize", "fit_window", "is_count", "load_tirex_checkpoint",
           "save_tirex_checkpoint", "standardize", "tokenize", "window_stats"]
