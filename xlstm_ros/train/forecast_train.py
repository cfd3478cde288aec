"""Training of the TiRex-architecture forecaster on synthetic series with the quantile (pinball) loss.

Data: `SeriesCache` generates the synthetic mixture of `xlstm_ros.sim.series` once into a cache folder
and memory-maps it. Every step draws, per window, a random crop of (N + 1) patches (N = train_ctx_len /
patch_size tokens, plus the patch the last token forecasts), applies TiRex-style augmentations (amplitude
modulation, censoring, spikes, NaN gaps) and builds the model input the way inference sees it
(`build_batch`):

* random context length: only the last `context_samples` samples before the forecast origin are
  observed, everything earlier is NaN (the official window's left padding);
* contiguous patch masking (CPM): the last `future_patches` tokens of the window are fully masked, so the
  model forecasts them from masked tokens exactly as the official multi-patch rollout does, and some
  windows get an interior run of fully masked patches (a sensor gap);
* the official scaler: (loc, scale) from the observed input samples only, NaN -> 0 with mask bit 0.

Streaming windows (a `stream_share` of the steps): the node anchors a stream's state on a window and then
steps it over each new patch with the anchor's statistics until the next anchor. A streaming window is the
anchor window of N tokens followed by `stream_patches` more tokens that are scaled with the anchor window's
(loc, scale), so the loss covers the forecasts made from stepped states too; its trailing masked tokens
are forecasts from a state stepped over the patches before them.

The output of token t forecasts patch t + 1, so every token that has seen the context has a target; targets
are the (augmented) real values in the same standardised units, missing ones and those beyond
`max_abs_target` scales are left out (counted). The loss is the pinball loss averaged over the quantile
levels, per window over its valid targets, then over windows (a short context weighs as much as a long one).

Optimisation: AdamW (weight decay on matrices only), linear warm-up then cosine decay, gradient-norm
clipping, fp32 (bf16 autocast on CUDA optional). The sLSTM runs through the differentiable PyTorch
reference (`backend="torch"`, `precision="fp32"`). A run starts from random weights or, with
`init_checkpoint`, from a TiRex checkpoint of the same architecture (fine-tuning, or a second schedule).

Runs are resumable, in the layout of every training run (runtime.py): `model.ckpt` in the official TiRex
format (tirex-ts and `load_tirex_checkpoint` read it; its extra "xlstm_ros" entry records the step and the
run's config) and `training_state.pt` (optimizer, step, history). Each rank's batches are a pure function
of (seed, rank, step), so a resumed run draws exactly the batches the uninterrupted run would have drawn.
torchrun starts one process per device: with WORLD_SIZE > 1 they join a process group (DDP).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from xlstm_ros.models.checkpoints import CheckpointError
from xlstm_ros.models.tirex import (DEFAULT_QUANTILES, TiRex, TiRexConfig, load_tirex_checkpoint,
                                    save_tirex_checkpoint, standardize, tokenize, window_stats)
from xlstm_ros.options import option
from xlstm_ros.train.runtime import (Curve, LogSpec, ModelFile, Process, StepOutput, TrainConfig, TrainSummary,
                                     command_line, operational, parameter_groups, run_training, start_run)
from xlstm_ros.sim.series import MIXTURES, Augmentations, SeriesCache

VALIDATION_SEED_OFFSET = 1_000_003
"""The validation windows are drawn from data_seed + this offset: fresh series, never in the cache."""
#: The official TiRex model.ckpt format (tirex-ts and load_tirex_checkpoint read it); the run's meta goes
#: into an extra "xlstm_ros" entry that both ignore.
MODEL_FILE = ModelFile("model.ckpt", save=lambda model, path, meta: save_tirex_checkpoint(
    model, path, extra={"xlstm_ros": meta}), meta_of=lambda payload: payload.get("xlstm_ros", {}))
#: The loss picture: training loss, validation loss over all targets and over the forecast tokens only (of
#: plain windows, and of streaming windows when the run trains on them).
LOG = LogSpec(curves=(Curve("loss", "training"), Curve("val_loss", "validation", "."),
                      Curve("val_forecast_loss", "validation, forecast tokens", "."),
                      Curve("val_stream_forecast_loss", "validation, streamed forecast tokens", ".")),
              rate_key="windows_per_s", rate_unit="windows", progress_terms=("val_loss", "val_forecast_loss"),
              ylabel="pinball loss (standardised)")


@dataclass(frozen=True)
class ForecastTrainConfig(TrainConfig):
    """Everything a forecaster training run depends on; stored in its checkpoints. Lengths are in samples
    unless the name says patches."""

    out_dir: str = operational("out/train_forecaster", "model.ckpt, training_state.pt, log.json and loss.png "
                               "go here")
    data_dir: str | None = operational(None, "synthetic series cache folder (default OUT_DIR/series)")
    n_series: int = option(40000, "synthetic series to generate (once) and train on")
    series_length: int = option(2080, "samples per cached series (>= train_ctx_len + patch_size)")
    data_seed: int = option(0, "seed of the cached series")
    mixture: str = option("seasonal-v2", "synthetic series recipe", choices=sorted(MIXTURES))
    init_checkpoint: str | None = option(None, "start from the weights of this TiRex model.ckpt (fine-tuning; "
                                         "the architecture options must match)")
    embedding_dim: int = option(192, "model width")
    num_blocks: int = option(4, "sLSTM blocks")
    num_heads: int = option(4, "sLSTM heads (divide the width)")
    input_ff_dim: int = option(512, "hidden width of the patch embedding and head")
    ffn_proj_factor: float = option(3.0, "SwiGLU width / model width")
    patch_size: int = option(32, "samples per token")
    train_ctx_len: int = option(512, "model window in samples")
    min_context: int = option(8, "shortest observed context (samples)")
    full_context_share: float = option(0.2, "share of windows observed from their first sample")
    max_future_patches: int = option(4, "most trailing masked patches (forecast by masked tokens)")
    interior_mask_share: float = option(0.2, "share of windows with an interior run of masked patches")
    max_interior_patches: int = option(4, "longest interior masked run")
    stream_patches: int = option(0, "streaming windows: patches absorbed after the anchor window by stepping "
                                 "the recurrent state, scaled with the anchor window's statistics (as the node "
                                 "streams between re-anchors)")
    stream_share: float = option(0.0, "share of steps that train on streaming windows (the others on plain "
                                 "windows)")
    augment: bool = option(True, "TiRex-style augmentations of the training series")
    max_abs_target: float = option(100.0, "standardised targets beyond this are left out of the loss (counted)")
    validation_windows: int = option(256, "fixed validation windows")
    steps: int = option(7000, "optimizer steps")
    batch_size: int = option(128, "windows per step and process")
    lr: float = option(1.5e-3, "peak AdamW learning rate")
    warmup_steps: int = option(300, "linear warm-up steps")
    bf16_autocast: bool = option(False, "bf16 autocast of the matrix products (CUDA only)")
    compile: bool = operational(True, "torch.compile each block (minutes of compilation first, several times "
                                "faster steps)")
    checkpoint_every: int = operational(500, "steps between checkpoints")
    log_every: int = operational(50, "steps between log entries")
    eval_every: int = operational(500, "steps between validation losses (and at the end)")

    def __post_init__(self) -> None:
        super().__post_init__()
        positive = ("n_series", "series_length", "embedding_dim", "num_blocks", "num_heads", "input_ff_dim",
                    "patch_size", "train_ctx_len", "min_context", "validation_windows", "eval_every")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"ForecastTrainConfig.{name} must be a positive integer, got {value!r}")
        for name in ("data_seed", "max_future_patches", "max_interior_patches", "stream_patches"):
            if getattr(self, name) < 0:
                raise ValueError(f"ForecastTrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_abs_target", "ffn_proj_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ForecastTrainConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("full_context_share", "interior_mask_share", "stream_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ForecastTrainConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        model = self.model_config()  # validates the architecture fields
        if self.series_length < self.crop_length(self.stream_patches):
            raise ValueError(f"ForecastTrainConfig.series_length ({self.series_length}) must be >= train_ctx_len "
                             f"+ (1 + stream_patches) x patch_size ({self.crop_length(self.stream_patches)})")
        if self.stream_share > 0 and self.stream_patches <= self.max_future_patches:
            raise ValueError(f"ForecastTrainConfig.stream_patches ({self.stream_patches}) must exceed "
                             f"max_future_patches ({self.max_future_patches}) when stream_share > 0")
        if self.max_future_patches >= model.context_tokens:
            raise ValueError(f"ForecastTrainConfig.max_future_patches ({self.max_future_patches}) must be < the "
                             f"window's {model.context_tokens} tokens")
        if self.min_context > model.train_ctx_len - self.max_future_patches * model.patch_size:
            raise ValueError(f"ForecastTrainConfig.min_context ({self.min_context}) does not fit the window "
                             f"before {self.max_future_patches} masked future patches")

    def model_config(self) -> TiRexConfig:
        return TiRexConfig(patch_size=self.patch_size, embedding_dim=self.embedding_dim,
                           num_blocks=self.num_blocks, num_heads=self.num_heads,
                           ffn_proj_factor=self.ffn_proj_factor, input_ff_dim=self.input_ff_dim,
                           quantiles=DEFAULT_QUANTILES, train_ctx_len=self.train_ctx_len)

    def crop_length(self, stream_patches: int) -> int:
        """Samples of one training crop: the window, the streamed patches and the last token's target patch."""
        return self.train_ctx_len + (1 + stream_patches) * self.patch_size

    @property
    def series_dir(self) -> Path:
        """Where the synthetic training series are cached."""
        return Path(self.data_dir) if self.data_dir else Path(self.out_dir) / "series"

    def augmentations(self) -> Augmentations | None:
        return Augmentations() if self.augment else None


# ---------------------------------------------------------------------------------------------------------
# Loss


def pinball_loss(predictions: torch.Tensor, targets: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
    """Pinball loss averaged over the quantile levels: predictions (..., Q, P), targets (..., P) -> (..., P).

    For level q and error u = y - y_hat the loss is max(q * u, (q - 1) * u): under-forecasts cost q per
    unit, over-forecasts 1 - q, so its minimiser is the q-quantile. Targets must be finite.
    """
    q = torch.as_tensor(levels, dtype=predictions.dtype, device=predictions.device)[:, None]
    error = targets.unsqueeze(-2) - predictions
    return torch.maximum(q * error, (q - 1.0) * error).mean(dim=-2)


def window_loss(predictions: torch.Tensor, targets: torch.Tensor, levels: Sequence[float],
                valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean pinball loss of each window over its valid targets: predictions (B, T, Q, P), targets (B, T, P)
    with NaN = no target -> (B,), NaN for a window without any target. `valid` (B, T) further restricts
    which tokens count."""
    present = torch.isfinite(targets)
    if valid is not None:
        present = present & valid[..., None]
    per_sample = pinball_loss(predictions, torch.where(present, targets, 0.0), levels)
    count = present.sum(dim=(1, 2))
    total = torch.where(present, per_sample, 0.0).sum(dim=(1, 2))
    return torch.where(count > 0, total / count.clamp(min=1), torch.nan)


def batch_loss(predictions: torch.Tensor, targets: torch.Tensor, levels: Sequence[float],
               valid: torch.Tensor | None = None) -> torch.Tensor:
    """Training objective: `window_loss` averaged over the windows that have targets (0 if none)."""
    per_window = window_loss(predictions, targets, levels, valid)
    has_targets = torch.isfinite(per_window)
    return torch.where(has_targets, per_window, 0.0).sum() / has_targets.sum().clamp(min=1)


# ---------------------------------------------------------------------------------------------------------
# Windows


@dataclass
class ForecastBatch:
    """Model input and targets of B windows of N tokens, with the plan that made them (for checks).

    tokens (B, N, 2P): official tokens; targets (B, N, P): patch t + 1 of the crop for token t, standardised,
    NaN where there is no target; observed_from (B,): first observed sample of the window (left padding
    before it); origin (B,): sample index of the forecast origin, N * P - future_patches * P; masked (B, N):
    tokens fully masked by CPM (interior run or future); loc, scale (B, 1); dropped_targets: finite targets
    left out for exceeding max_abs_target.
    """

    tokens: torch.Tensor
    targets: torch.Tensor
    observed_from: np.ndarray
    origin: np.ndarray
    masked: np.ndarray
    loc: torch.Tensor
    scale: torch.Tensor
    dropped_targets: int

    def forecast_tokens(self, patch_size: int) -> torch.Tensor:
        """(B, N) bool: the tokens whose outputs are forecasts from the origin (the last observed token and
        the masked future tokens): the outputs inference uses."""
        n_tokens = self.tokens.shape[1]
        first = torch.as_tensor(self.origin // patch_size - 1)
        return torch.arange(n_tokens)[None, :] >= first[:, None]


@dataclass(frozen=True)
class WindowPlan:
    """Random window parameters of B crops (samples unless patches): see `plan_windows`."""

    context_samples: np.ndarray   # observed samples before the origin
    future_patches: np.ndarray    # trailing fully masked tokens
    interior_start: np.ndarray    # first token of the interior masked run (0 with no run)
    interior_patches: np.ndarray  # its length in tokens (0: no run)


def plan_windows(rng: np.random.Generator, batch: int, config: ForecastTrainConfig,
                 stream_patches: int = 0) -> WindowPlan:
    """Draw the masking plan of `batch` windows of N + `stream_patches` tokens (N = train_ctx_len / patch).

    future_patches ~ uniform 0..max_future_patches; the context length is the whole room before the origin
    with probability full_context_share, else log-uniform in [shortest, room], where the shortest context
    leaves min_context samples in the anchor window (the first N tokens); with probability
    interior_mask_share an interior run of 1..max_interior_patches fully masked tokens lies strictly inside
    the context's whole tokens, never touching the origin's token (a forecast always sees its last patch).
    """
    patch = config.patch_size
    n_tokens = config.train_ctx_len // patch + stream_patches
    future = rng.integers(0, config.max_future_patches + 1, batch)
    room = (n_tokens - future) * patch
    shortest = config.min_context + np.maximum(stream_patches - future, 0) * patch
    drawn = np.exp(rng.uniform(np.log(shortest), np.log(room)))
    context = np.where(rng.random(batch) < config.full_context_share, room,
                       np.clip(np.floor(drawn), shortest, room)).astype(np.int64)
    # whole context tokens strictly before the last observed token
    origin_token = n_tokens - future
    first_whole = origin_token - context // patch
    inner_tokens = np.maximum(origin_token - 1 - first_whole, 0)
    length = np.minimum(rng.integers(1, max(config.max_interior_patches, 1) + 1, batch), inner_tokens)
    has_run = (rng.random(batch) < config.interior_mask_share) & (length > 0) & (config.max_interior_patches > 0)
    length = np.where(has_run, length, 0)
    start = first_whole + np.floor(rng.random(batch) * (inner_tokens - length + 1)).astype(np.int64)
    return WindowPlan(context, future, np.where(has_run, start, 0), length)


def build_batch(crops: np.ndarray, plan: WindowPlan, config: ForecastTrainConfig,
                stream_patches: int = 0) -> ForecastBatch:
    """Turn crops (B, (N + S + 1) * P) (NaN = missing; S = stream_patches) and their plan into model input and
    targets.

    The input is the first N + S patches with the left padding, the interior run and the future patches set
    to NaN. The observed samples of the anchor window (the first N patches) give the official (loc, scale)
    for the whole input, so the S patches after it are scaled as the node's streaming engine scales the
    patches it steps its state over until the next anchor. The targets are the crop's patches 1..N + S, kept
    where the token has seen at least one context sample."""
    patch, anchor_tokens = config.patch_size, config.train_ctx_len // config.patch_size
    n_tokens = anchor_tokens + stream_patches
    crops = np.asarray(crops, dtype=np.float32)
    if crops.ndim != 2 or crops.shape[1] != (n_tokens + 1) * patch:
        raise ValueError(f"crops: expected shape (B, {(n_tokens + 1) * patch}), got {crops.shape}")
    batch = crops.shape[0]
    token = np.arange(n_tokens)[None, :]
    origin = (n_tokens - plan.future_patches) * patch
    observed_from = origin - plan.context_samples
    interior = ((token >= plan.interior_start[:, None])
                & (token < (plan.interior_start + plan.interior_patches)[:, None]))
    masked = interior | (token >= (n_tokens - plan.future_patches)[:, None])
    time_index = np.arange(n_tokens * patch)[None, :]
    hidden = ((time_index < observed_from[:, None]) | (time_index >= origin[:, None])
              | np.repeat(interior, patch, axis=1))
    window = torch.from_numpy(np.where(hidden, np.nan, crops[:, :n_tokens * patch]))
    stats = window_stats(window[:, :anchor_tokens * patch])
    targets = standardize(torch.from_numpy(crops[:, patch:]), stats).view(batch, n_tokens, patch)
    # token t has seen context once it contains a sample at or after observed_from
    seen = torch.from_numpy((token + 1) * patch > observed_from[:, None])
    too_far = torch.isfinite(targets) & (targets.abs() > config.max_abs_target)
    targets = torch.where(seen[..., None] & ~too_far, targets, torch.nan)
    return ForecastBatch(tokens=tokenize(standardize(window, stats), patch), targets=targets,
                         observed_from=observed_from, origin=origin, masked=masked, loc=stats.loc,
                         scale=stats.scale, dropped_targets=int((too_far & seen[..., None]).sum()))


def draw_crops(series: np.ndarray, rng: np.random.Generator, batch: int, length: int,
               augment: Augmentations | None) -> np.ndarray:
    """`batch` random crops of `length` samples from random rows of `series` (N, L), augmented."""
    rows = np.sort(rng.integers(0, series.shape[0], batch))  # sorted: sequential reads of the memmap
    starts = rng.integers(0, series.shape[1] - length + 1, batch)
    crops = np.stack([series[row, start:start + length] for row, start in zip(rows, starts)]).astype(np.float64)
    return augment(rng, crops) if augment is not None else crops


def sample_batch(series: np.ndarray, config: ForecastTrainConfig, seed: Sequence[int],
                 stream_patches: int = 0) -> ForecastBatch:
    """One training batch, a pure function of the series and `seed` (seed, rank, step in training); with
    `stream_patches`, of streaming windows (build_batch)."""
    rng = np.random.default_rng(list(seed))
    crops = draw_crops(series, rng, config.batch_size, config.crop_length(stream_patches), config.augmentations())
    return build_batch(crops, plan_windows(rng, config.batch_size, config, stream_patches), config, stream_patches)


def validation_batch(config: ForecastTrainConfig, stream_patches: int = 0) -> ForecastBatch:
    """Fixed validation windows: fresh series of the run's mixture (seed data_seed + VALIDATION_SEED_OFFSET),
    augmented and masked like training windows. The same config always gives the same batch."""
    seed = config.data_seed + VALIDATION_SEED_OFFSET
    series = MIXTURES[config.mixture].sample(config.validation_windows, config.crop_length(stream_patches), seed)
    rng = np.random.default_rng([seed, 1])
    crops = config.augmentations()(rng, series) if config.augment else series
    plan = plan_windows(rng, config.validation_windows, config, stream_patches)
    return build_batch(crops, plan, config, stream_patches)


@torch.no_grad()
def evaluate_batch(model: nn.Module, batch: ForecastBatch, levels: Sequence[float], patch_size: int,
                   device: torch.device, chunk: int = 64, prefix: str = "val") -> dict[str, float]:
    """Loss of `model` on `batch` (in chunks of windows): over all targets (`<prefix>_loss`), and over the
    forecast tokens only (the last observed token and the masked future ones: what inference uses;
    `<prefix>_forecast_loss`)."""
    forecast = batch.forecast_tokens(patch_size)
    all_losses, forecast_losses = [], []
    for first in range(0, batch.tokens.shape[0], chunk):
        rows = slice(first, first + chunk)
        outputs = model(batch.tokens[rows].to(device)).float().cpu()
        all_losses.append(window_loss(outputs, batch.targets[rows], levels))
        forecast_losses.append(window_loss(outputs, batch.targets[rows], levels, forecast[rows]))
    return {f"{prefix}_loss": float(torch.nanmean(torch.cat(all_losses))),
            f"{prefix}_forecast_loss": float(torch.nanmean(torch.cat(forecast_losses)))}


# ---------------------------------------------------------------------------------------------------------
# The run


def prepare_series(config: ForecastTrainConfig, process: Process) -> np.ndarray:
    """Generate the training series into the cache (rank 0; a complete cache is reused) and memory-map it."""
    cache = SeriesCache(config.series_dir, config.n_series, config.series_length, config.data_seed,
                        mixture=MIXTURES[config.mixture])
    if process.is_main and not cache.exists():
        print(f"series: generating {config.n_series} x {config.series_length} into {cache.path}", flush=True)
        cache.generate(lambda done, total: print(f"series: {done}/{total}", flush=True)
                       if done % (16 * cache.chunk_size) == 0 or done == total else None)
    process.barrier()
    return cache.series()


def build_model(config: ForecastTrainConfig) -> TiRex:
    """A freshly initialised TiRex for training: fp32 recurrence through the differentiable reference.

    With `config.compile` every block is torch.compile'd in place (parameter names unchanged): the reference
    runs the recurrence token by token in Python, and a compiled block fuses it. Compilation happens once
    per process and grad mode; an identical block graph is reused by all blocks."""
    torch.manual_seed(config.seed)
    model = TiRex(config.model_config(), precision="fp32", backend="torch")
    if config.compile:
        for block in model.blocks:
            block.compile()
    return model


def load_initial_weights(model: TiRex, path: str | os.PathLike) -> None:
    """Copy the weights of the TiRex checkpoint `path` (ours or NX-AI's) into `model`.

    The architecture must be the same (a CheckpointError names the first differing TiRexConfig field), with
    two exceptions: the window (train_ctx_len), on which no weight depends, and the number of blocks, which
    may grow. Blocks beyond the checkpoint's start as identities (sLSTM group-norm scale and FFN down
    projection zero: both residual branches add nothing), so the grown model forecasts exactly as the
    checkpoint does before it trains."""
    source = load_tirex_checkpoint(path, precision="fp32", backend="torch")
    for field in fields(TiRexConfig):
        if field.name in ("train_ctx_len", "num_blocks"):
            continue
        if getattr(source.config, field.name) != getattr(model.config, field.name):
            raise CheckpointError(f"{path}: init checkpoint has {field.name}={getattr(source.config, field.name)!r}, "
                                  f"the run trains {field.name}={getattr(model.config, field.name)!r}")
    if source.config.num_blocks > model.config.num_blocks:
        raise CheckpointError(f"{path}: init checkpoint has num_blocks={source.config.num_blocks}, more than the "
                              f"run's {model.config.num_blocks}")
    state = model.state_dict()
    state.update(source.state_dict())
    for index in range(source.config.num_blocks, model.config.num_blocks):
        state[f"blocks.{index}.slstm_layer.group_norm.weight"] = torch.full_like(   # scale 1 + weight = 0
            state[f"blocks.{index}.slstm_layer.group_norm.weight"], -1.0)
        state[f"blocks.{index}.ffn.proj_down.weight"] = torch.zeros_like(state[f"blocks.{index}.ffn.proj_down.weight"])
    model.load_state_dict(state)


def train_forecaster(config: ForecastTrainConfig,
                     on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainSummary:
    """Train (or resume) the forecaster described by `config`; see the module docstring for data and files.

    on_step(step, numbers) is called on rank 0 after every optimizer step with the step count so far and that
    step's numbers (progress displays; a test interrupts a run by raising from it).
    """
    process = start_run(config)
    series = prepare_series(config, process)
    streaming = config.stream_share > 0
    validation = {"val": validation_batch(config)} if process.is_main else {}
    if process.is_main and streaming:
        validation["val_stream"] = validation_batch(config, config.stream_patches)
    levels = DEFAULT_QUANTILES

    model = build_model(config)
    if config.init_checkpoint is not None:
        load_initial_weights(model, config.init_checkpoint)
    model.to(process.device)
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.95))
    autocast = config.bf16_autocast and process.device.type == "cuda"

    def step(module: nn.Module, index: int) -> StepOutput:
        stream = streaming and np.random.default_rng([config.seed, index]).random() < config.stream_share
        batch = sample_batch(series, config, (config.seed, process.rank, index),
                             config.stream_patches if stream else 0)
        with torch.autocast(process.device.type, dtype=torch.bfloat16, enabled=autocast):
            outputs = module(batch.tokens.to(process.device))
        loss = batch_loss(outputs.float(), batch.targets.to(process.device), levels)
        return StepOutput(loss, {"dropped_targets": batch.dropped_targets})

    def evaluate() -> dict[str, float]:
        return {key: value for prefix, batch in validation.items()
                for key, value in evaluate_batch(model, batch, levels, config.patch_size, process.device,
                                                 prefix=prefix).items()}

    return run_training(config, process, model, optimizer, step, MODEL_FILE, LOG, evaluate=evaluate,
                        eval_every=config.eval_every, on_step=on_step)


# ---------------------------------------------------------------------------------------------------------
# Command line (`python -m xlstm_ros.train.forecast_train`; `xlstm-ros train forecaster` uses the same options)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    command_line(ForecastTrainConfig, train_forecaster, "Train the TiRex-architecture forecaster on synthetic "
                 "series (torchrun-ready; resumes from OUT_DIR).", argv, prog)


if __name__ == "__main__":
    main()
