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

The output of token t forecasts patch t + 1, so every token that has seen the context has a target; targets
are the (augmented) real values in the same standardised units, missing ones and those beyond
`max_abs_target` scales are left out (counted). The loss is the pinball loss averaged over the quantile
levels, per window over its valid targets, then over windows (a short context weighs as much as a long one).

Optimisation: AdamW (weight decay on matrices only), linear warm-up then cosine decay, gradient-norm
clipping, fp32 (bf16 autocast on CUDA optional). The sLSTM runs through the differentiable PyTorch
reference (`backend="torch"`, `precision="fp32"`). A run starts from random weights or, with
`init_checkpoint`, from a TiRex checkpoint of the same architecture (fine-tuning, or a second schedule).

Files in `out_dir` (rank 0 writes, atomically, every `checkpoint_every` steps and at the end):
`model.ckpt` in the official TiRex format (tirex-ts and `load_tirex_checkpoint` read it; its extra
"xlstm_ros" entry records the step and the run's config), `training_state.pt` (optimizer, step, history:
what a resume needs besides the weights), `log.json` and `loss.png`. Each rank's batches are a pure function
of (seed, rank, step), so a resumed run draws exactly the batches the uninterrupted run would have drawn.
torchrun starts one process per device: with WORLD_SIZE > 1 they join a process group (DDP).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from xlstm_ros.models.checkpoints import CheckpointError, load_checkpoint, load_into, save_checkpoint, state_dict_of
from xlstm_ros.models.tirex import (DEFAULT_QUANTILES, TiRex, TiRexConfig, load_tirex_checkpoint,
                                    save_tirex_checkpoint, standardize, tokenize, window_stats)
from xlstm_ros.train.runtime import (Curve, Process, Progress, TrainSummary, add_run_arguments, check_resumable,
                                     config_from_args, learning_rate, parameter_groups, start_process, write_log)
from xlstm_ros.sim.series import DEFAULT_MIXTURE, Augmentations, Mixture, SeriesCache

MODEL_NAME = "model.ckpt"
STATE_NAME = "training_state.pt"
STATE_FORMAT = "xlstm_ros.forecast_train/1"
VALIDATION_SEED_OFFSET = 1_000_003
"""The validation windows are drawn from data_seed + this offset: fresh series, never in the cache."""
# Fields that may change between a run and its resumption without changing what it computes.
OPERATIONAL_FIELDS = ("out_dir", "data_dir", "checkpoint_every", "log_every", "eval_every", "threads",
                      "resume", "device", "compile")
# The loss picture: training loss, validation loss over all targets and over the forecast tokens only.
CURVES = (Curve("loss", "training"), Curve("val_loss", "validation", "."),
          Curve("val_forecast_loss", "validation, forecast tokens", "."))


@dataclass(frozen=True)
class ForecastTrainConfig:
    """Everything a forecaster training run depends on; stored in its checkpoints. Lengths are in samples
    unless the name says patches."""

    out_dir: str = "out/train_forecaster"
    data_dir: str | None = None           # series cache; default <out_dir>/series
    n_series: int = 40000
    series_length: int = 2080             # >= train_ctx_len + patch_size
    data_seed: int = 0
    init_checkpoint: str | None = None    # start from these weights (official format, same architecture)
    # architecture (TiRexConfig)
    embedding_dim: int = 192
    num_blocks: int = 4
    num_heads: int = 4
    input_ff_dim: int = 512
    ffn_proj_factor: float = 3.0          # FFN width 192 * 3 = 576
    patch_size: int = 32
    train_ctx_len: int = 512              # the shipped model's window (M/Tourism series are shorter)
    # windows
    min_context: int = 8                  # shortest observed context
    full_context_share: float = 0.2       # windows observed from their first sample
    max_future_patches: int = 4           # trailing fully masked tokens: uniform in 0..max
    interior_mask_share: float = 0.2      # windows with one interior run of fully masked patches
    max_interior_patches: int = 4
    augment: bool = True                  # TiRex-style augmentations (series.Augmentations defaults)
    max_abs_target: float = 100.0         # standardised targets beyond this are left out (counted)
    validation_windows: int = 256
    # optimisation
    steps: int = 7000
    batch_size: int = 128
    lr: float = 1.5e-3
    min_lr_ratio: float = 0.05            # the cosine schedule ends at lr x min_lr_ratio
    warmup_steps: int = 300
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    bf16_autocast: bool = False           # CUDA only: bf16 autocast of the matrix products
    compile: bool = True                  # torch.compile each block in place (see build_model)
    checkpoint_every: int = 500
    log_every: int = 50
    eval_every: int = 500                 # steps between validation losses (and at the end)
    device: str = "auto"
    threads: int | None = None            # torch intra-op threads (None: torch's default)
    resume: bool = True

    def __post_init__(self) -> None:
        positive = ("n_series", "series_length", "embedding_dim", "num_blocks", "num_heads", "input_ff_dim",
                    "patch_size", "train_ctx_len", "min_context", "validation_windows", "steps", "batch_size",
                    "checkpoint_every", "log_every", "eval_every")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"ForecastTrainConfig.{name} must be a positive integer, got {value!r}")
        for name in ("data_seed", "seed", "warmup_steps", "max_future_patches", "max_interior_patches"):
            if getattr(self, name) < 0:
                raise ValueError(f"ForecastTrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"ForecastTrainConfig.threads must be >= 1 or None, got {self.threads}")
        for name in ("lr", "grad_clip", "max_abs_target", "ffn_proj_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ForecastTrainConfig.{name} must be > 0, got {getattr(self, name)}")
        if not self.weight_decay >= 0:
            raise ValueError(f"ForecastTrainConfig.weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("min_lr_ratio", "full_context_share", "interior_mask_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ForecastTrainConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        model = self.model_config()  # validates the architecture fields
        if self.series_length < model.train_ctx_len + model.patch_size:
            raise ValueError(f"ForecastTrainConfig.series_length ({self.series_length}) must be >= train_ctx_len "
                             f"+ patch_size ({model.train_ctx_len + model.patch_size})")
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

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as stored in checkpoints and logs."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

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


def plan_windows(rng: np.random.Generator, batch: int, config: ForecastTrainConfig) -> WindowPlan:
    """Draw the masking plan of `batch` windows.

    future_patches ~ uniform 0..max_future_patches; the context length is the whole room before the origin
    with probability full_context_share, else log-uniform in [min_context, room]; with probability
    interior_mask_share an interior run of 1..max_interior_patches fully masked tokens lies strictly inside
    the context's whole tokens, never touching the origin's token (a forecast always sees its last patch).
    """
    patch, n_tokens = config.patch_size, config.train_ctx_len // config.patch_size
    future = rng.integers(0, config.max_future_patches + 1, batch)
    room = (n_tokens - future) * patch
    drawn = np.exp(rng.uniform(np.log(config.min_context), np.log(room)))
    context = np.where(rng.random(batch) < config.full_context_share, room,
                       np.clip(np.floor(drawn), config.min_context, room)).astype(np.int64)
    # whole context tokens strictly before the last observed token
    origin_token = n_tokens - future
    first_whole = origin_token - context // patch
    inner_tokens = np.maximum(origin_token - 1 - first_whole, 0)
    length = np.minimum(rng.integers(1, max(config.max_interior_patches, 1) + 1, batch), inner_tokens)
    has_run = (rng.random(batch) < config.interior_mask_share) & (length > 0) & (config.max_interior_patches > 0)
    length = np.where(has_run, length, 0)
    start = first_whole + np.floor(rng.random(batch) * (inner_tokens - length + 1)).astype(np.int64)
    return WindowPlan(context, future, np.where(has_run, start, 0), length)


def build_batch(crops: np.ndarray, plan: WindowPlan, config: ForecastTrainConfig) -> ForecastBatch:
    """Turn crops (B, (N + 1) * P) (NaN = missing) and their plan into model input and targets.

    The input is the first N patches with the left padding, the interior run and the future patches set to
    NaN; its observed samples give the official (loc, scale); the targets are the crop's patches 1..N,
    kept where the token has seen at least one context sample."""
    patch, n_tokens = config.patch_size, config.train_ctx_len // config.patch_size
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
    stats = window_stats(window)
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


def sample_batch(series: np.ndarray, config: ForecastTrainConfig, seed: Sequence[int]) -> ForecastBatch:
    """One training batch, a pure function of the series and `seed` (seed, rank, step in training)."""
    rng = np.random.default_rng(list(seed))
    length = config.train_ctx_len + config.patch_size
    crops = draw_crops(series, rng, config.batch_size, length, config.augmentations())
    return build_batch(crops, plan_windows(rng, config.batch_size, config), config)


def validation_batch(config: ForecastTrainConfig, mixture: Mixture = DEFAULT_MIXTURE) -> ForecastBatch:
    """Fixed validation windows: fresh mixture series (seed data_seed + VALIDATION_SEED_OFFSET), augmented
    and masked like training windows. The same config always gives the same batch."""
    seed = config.data_seed + VALIDATION_SEED_OFFSET
    length = config.train_ctx_len + config.patch_size
    series = mixture.sample(config.validation_windows, length, seed)
    rng = np.random.default_rng([seed, 1])
    crops = config.augmentations()(rng, series) if config.augment else series
    return build_batch(crops, plan_windows(rng, config.validation_windows, config), config)


@torch.no_grad()
def evaluate_batch(model: nn.Module, batch: ForecastBatch, levels: Sequence[float], patch_size: int,
                   device: torch.device, chunk: int = 64) -> dict[str, float]:
    """Loss of `model` on `batch` (in chunks of windows): over all targets, and over the forecast tokens only
    (the last observed token and the masked future ones: what inference uses)."""
    forecast = batch.forecast_tokens(patch_size)
    all_losses, forecast_losses = [], []
    for first in range(0, batch.tokens.shape[0], chunk):
        rows = slice(first, first + chunk)
        outputs = model(batch.tokens[rows].to(device)).float().cpu()
        all_losses.append(window_loss(outputs, batch.targets[rows], levels))
        forecast_losses.append(window_loss(outputs, batch.targets[rows], levels, forecast[rows]))
    return {"val_loss": float(torch.nanmean(torch.cat(all_losses))),
            "val_forecast_loss": float(torch.nanmean(torch.cat(forecast_losses)))}


# ---------------------------------------------------------------------------------------------------------
# Checkpoints


def save_training(out_dir: Path, model: TiRex, optimizer: torch.optim.Optimizer, config: ForecastTrainConfig,
                  step: int, history: list[dict[str, float]], wall_time_s: float) -> Path:
    """Write model.ckpt (official format, with a small "xlstm_ros" entry) and then training_state.pt."""
    meta = {"step": step, "finished": step == config.steps, "wall_time_s": round(wall_time_s, 1),
            "train_config": config.to_dict()}
    model_path = save_tirex_checkpoint(model, out_dir / MODEL_NAME, extra={"xlstm_ros": meta})
    save_checkpoint({"format": STATE_FORMAT, "step": step, "optimizer": optimizer.state_dict(),
                     "train_config": config.to_dict(), "history": history, "wall_time_s": wall_time_s},
                    out_dir / STATE_NAME)
    return model_path


def load_training(out_dir: Path, model: TiRex, optimizer: torch.optim.Optimizer,
                  config: ForecastTrainConfig) -> dict[str, Any]:
    """Restore weights and optimizer from out_dir in place; returns the training state (step, history)."""
    model_path, state_path = out_dir / MODEL_NAME, out_dir / STATE_NAME
    state = load_checkpoint(state_path)
    if state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{state_path}: not a forecaster training state (format {state.get('format')!r})")
    check_resumable(state["train_config"], config.to_dict(), OPERATIONAL_FIELDS, state_path)
    payload = load_checkpoint(model_path)
    model_step = payload.get("xlstm_ros", {}).get("step")
    if model_step != state["step"]:
        raise CheckpointError(f"{model_path} holds step {model_step} but {state_path} step {state['step']}: "
                              "the run was interrupted while saving; delete both to restart")
    load_into(model, state_dict_of(payload, model_path), model_path)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{state_path}: optimizer state does not fit the model ({error})") from error
    return state


# ---------------------------------------------------------------------------------------------------------
# The run


def prepare_series(config: ForecastTrainConfig, process: Process) -> np.ndarray:
    """Generate the training series into the cache (rank 0; a complete cache is reused) and memory-map it."""
    cache = SeriesCache(config.series_dir, config.n_series, config.series_length, config.data_seed)
    if process.is_main and not cache.exists():
        print(f"series: generating {config.n_series} x {config.series_length} into {cache.path}", flush=True)
        cache.generate(lambda done, total: print(f"series: {done}/{total}", flush=True)
                       if done % (16 * cache.chunk_size) == 0 or done == total else None)
    process.barrier()
    return cache.series()


def build_model(config: ForecastTrainConfig) -> TiRex:
    """A freshly initialised TiRex for training: fp32 recurrence through the differentiable reference.

    With `config.compile` every block is torch.compile'd in place (parameter names unchanged). The reference
    runs the recurrence token by token in Python; compiled, a training step of the 2 M-parameter model took
    0.9 instead of 6 s on one CPU thread here, after about two minutes of compilation (once per process and
    grad mode; an identical block graph is reused by all blocks)."""
    torch.manual_seed(config.seed)
    model = TiRex(config.model_config(), precision="fp32", backend="torch")
    if config.compile:
        for block in model.blocks:
            block.compile()
    return model


def load_initial_weights(model: TiRex, path: str | os.PathLike) -> None:
    """Copy the weights of the TiRex checkpoint `path` (ours or NX-AI's) into `model`, whose architecture
    must be the same (a CheckpointError names the first differing TiRexConfig field)."""
    source = load_tirex_checkpoint(path, precision="fp32", backend="torch")
    for field in fields(TiRexConfig):
        if getattr(source.config, field.name) != getattr(model.config, field.name):
            raise CheckpointError(f"{path}: init checkpoint has {field.name}={getattr(source.config, field.name)!r}, "
                                  f"the run trains {field.name}={getattr(model.config, field.name)!r}")
    model.load_state_dict(source.state_dict())


def train_forecaster(config: ForecastTrainConfig,
                     on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainSummary:
    """Train (or resume) the forecaster described by `config`; see the module docstring for data and files.

    on_step(step, entry) is called on rank 0 after every optimizer step with the step count so far and that
    step's numbers (progress displays; a test interrupts a run by raising from it).
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    process = start_process(config.device)
    out_dir = Path(config.out_dir)
    if process.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    series = prepare_series(config, process)
    validation = validation_batch(config) if process.is_main else None
    levels = DEFAULT_QUANTILES

    model = build_model(config)
    if config.init_checkpoint is not None:
        load_initial_weights(model, config.init_checkpoint)
    model.to(process.device)
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.95))
    start_step, history, wall_before = 0, [], 0.0
    if config.resume and (out_dir / STATE_NAME).is_file():
        state = load_training(out_dir, model, optimizer, config)
        start_step, history, wall_before = int(state["step"]), list(state["history"]), float(state["wall_time_s"])
        if process.is_main:
            print(f"resuming {out_dir / MODEL_NAME} at step {start_step}", flush=True)
    trained = model if process.world_size == 1 else nn.parallel.DistributedDataParallel(model)
    autocast = config.bf16_autocast and process.device.type == "cuda"

    progress = Progress(config.steps, start_step, process.is_main, rate_key="windows_per_s", rate_unit="windows",
                        terms=("val_loss", "val_forecast_loss"))
    window: list[tuple[float, float, float]] = []
    started = time.perf_counter()
    window_start = started
    wall_time_s = wall_before

    trained.train()
    try:
        for step in range(start_step, config.steps):
            rate = learning_rate(step, lr=config.lr, steps=config.steps, warmup_steps=config.warmup_steps,
                                 min_lr_ratio=config.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = rate
            batch = sample_batch(series, config, (config.seed, process.rank, step))
            with torch.autocast(process.device.type, dtype=torch.bfloat16, enabled=autocast):
                outputs = trained(batch.tokens.to(process.device))
            loss = batch_loss(outputs.float(), batch.targets.to(process.device), levels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip))
            optimizer.step()
            done = step + 1
            window.append((loss.item(), grad_norm, batch.dropped_targets))
            wall_time_s = wall_before + time.perf_counter() - started
            entry = None
            if done % config.log_every == 0 or done == config.steps:
                mean_loss, mean_norm, dropped = process.mean_over_ranks(np.mean(window, axis=0).tolist())
                now = time.perf_counter()
                entry = {"step": done, "loss": mean_loss, "grad_norm": mean_norm, "dropped_targets": dropped,
                         "lr": optimizer.param_groups[0]["lr"],
                         "windows_per_s": len(window) * config.batch_size * process.world_size
                         / max(now - window_start, 1e-9), "elapsed_s": round(wall_time_s, 1)}
                if process.is_main and (done % config.eval_every == 0 or done == config.steps):
                    model.eval()
                    entry.update(evaluate_batch(model, validation, levels, config.patch_size, process.device))
                    model.train()
                history.append(entry)
                window, window_start = [], time.perf_counter()
            if process.is_main:
                progress.update(done, entry)
                if on_step is not None:
                    on_step(done, {"loss": loss.item(), "grad_norm": grad_norm})
            if done % config.checkpoint_every == 0 or done == config.steps:
                if process.is_main:
                    save_training(out_dir, model, optimizer, config, done, history, wall_time_s)
                    write_log(out_dir, config.to_dict(), history, wall_time_s, finished=done == config.steps,
                              curves=CURVES, ylabel="pinball loss (standardised)")
                process.barrier()
    finally:
        progress.close()
    process.leave()
    final_loss = history[-1]["loss"] if history else float("nan")
    final_validation = {key: history[-1][key] for key in ("val_loss", "val_forecast_loss")
                        if history and key in history[-1]}
    return TrainSummary(model_path=out_dir / MODEL_NAME, checkpoint_path=out_dir / STATE_NAME, steps=config.steps,
                        final_loss=final_loss, wall_time_s=wall_time_s, final_validation=final_validation)


# ---------------------------------------------------------------------------------------------------------
# Command line (`python -m xlstm_ros.train.forecast_train`; `xlstm-ros train forecaster` uses the same options)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one option per ForecastTrainConfig field (--out-dir, --steps, ...) with the config's defaults."""
    d = ForecastTrainConfig()
    add = parser.add_argument
    add("--out-dir", default=d.out_dir, help="model.ckpt, training_state.pt, log.json and loss.png go here")
    add("--data-dir", default=d.data_dir, help="synthetic series cache folder (default OUT_DIR/series)")
    add("--n-series", type=int, default=d.n_series, help="synthetic series to generate (once) and train on")
    add("--series-length", type=int, default=d.series_length, help="samples per cached series")
    add("--data-seed", type=int, default=d.data_seed, help="seed of the cached series")
    add("--init-checkpoint", default=d.init_checkpoint,
        help="start from the weights of this TiRex model.ckpt (fine-tuning; the architecture options must match)")
    add("--embedding-dim", type=int, default=d.embedding_dim, help="model width")
    add("--num-blocks", type=int, default=d.num_blocks, help="sLSTM blocks")
    add("--num-heads", type=int, default=d.num_heads, help="sLSTM heads (divide the width)")
    add("--input-ff-dim", type=int, default=d.input_ff_dim, help="hidden width of the patch embedding and head")
    add("--ffn-proj-factor", type=float, default=d.ffn_proj_factor, help="SwiGLU width / model width")
    add("--patch-size", type=int, default=d.patch_size, help="samples per token")
    add("--train-ctx-len", type=int, default=d.train_ctx_len, help="model window in samples")
    add("--min-context", type=int, default=d.min_context, help="shortest observed context (samples)")
    add("--full-context-share", type=float, default=d.full_context_share,
        help="share of windows observed from their first sample")
    add("--max-future-patches", type=int, default=d.max_future_patches,
        help="most trailing masked patches (forecast by masked tokens)")
    add("--interior-mask-share", type=float, default=d.interior_mask_share,
        help="share of windows with an interior run of masked patches")
    add("--max-interior-patches", type=int, default=d.max_interior_patches, help="longest interior masked run")
    add("--no-augment", dest="augment", action="store_false", help="train without the TiRex augmentations")
    add("--max-abs-target", type=float, default=d.max_abs_target,
        help="standardised targets beyond this are left out of the loss")
    add("--validation-windows", type=int, default=d.validation_windows, help="fixed validation windows")
    add("--steps", type=int, default=d.steps, help="optimizer steps")
    add("--batch-size", type=int, default=d.batch_size, help="windows per step and process")
    add("--lr", type=float, default=d.lr, help="peak AdamW learning rate")
    add("--min-lr-ratio", type=float, default=d.min_lr_ratio, help="final learning rate / peak")
    add("--warmup-steps", type=int, default=d.warmup_steps, help="linear warm-up steps")
    add("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay (matrices only)")
    add("--grad-clip", type=float, default=d.grad_clip, help="gradient norm clip")
    add("--seed", type=int, default=d.seed, help="seed of initialisation and batch sampling")
    add("--bf16-autocast", action="store_true", help="bf16 autocast of the matrix products (CUDA only)")
    add("--no-compile", dest="compile", action="store_false",
        help="run the blocks eagerly (no minutes of torch.compile first; several times slower per step)")
    add("--eval-every", type=int, default=d.eval_every, help="steps between validation losses")
    add_run_arguments(parser, d)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description="Train the TiRex-architecture forecaster on synthetic "
                                                            "series (torchrun-ready; resumes from OUT_DIR).")
    add_arguments(parser)
    summary = train_forecaster(config_from_args(ForecastTrainConfig, parser.parse_args(argv)))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"done: {summary.steps} steps, final loss {summary.final_loss:.4f} {summary.final_validation}, "
              f"{summary.wall_time_s:.0f} s; model {summary.model_path}")


if __name__ == "__main__":
    main()
