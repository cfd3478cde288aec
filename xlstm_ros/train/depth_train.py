"""Training of the ViL depth model on procedural scenes: scale-and-shift-invariant loss in disparity.

Data: `make_dataset` renders (RGB, metric depth) frames once into a cache folder; every run (and every
resume) reads the same frames back into memory (`FrameBank`). Each step draws a batch through a
`DistributedSampler` (one replica when not distributed), takes random crops at random scale (the effective
field of view varies), flips horizontally (never vertically: the ground stays below) and jitters the colours.

Loss (MiDaS, research/vil-depth.md 6): the target is disparity 1/depth_m, and the sky counts as disparity 0,
so the model learns that the sky is the farthest thing in view. Each target is normalised per image to
median 0 and mean absolute deviation 1 so that every image weighs the same. Each prediction is aligned to
its target by least squares (scale and shift per image, centred sums, stable in float32). The aligned
residual gives the mean squared error plus `gradient_weight` x the multi-scale gradient-matching term (L1
of the residual's x/y differences at `gradient_scales` scales). One deviation from plain least squares:
the fitted scale is kept >= SCALE_FLOOR x (target spread / prediction spread). The least-squares loss is
blind to the sign of the prediction, and a fresh model could settle on "larger = farther"; the floor
pushes it to "larger = nearer" (relative inverse depth) and is inactive once the prediction correlates
with the target by more than SCALE_FLOOR.

Runs are resumable. `checkpoint.pt` in `out_dir` holds the model in the depth checkpoint format (readable
by `load_depth_checkpoint`) plus a "training" entry (optimizer, step, per-rank augmentation RNG, history).
It is written atomically every `checkpoint_every` steps and at the end, and the end also writes `model.pt`
(weights and run summary only). `log.json` and `loss.png` follow each checkpoint. torchrun starts one
process per device: with WORLD_SIZE > 1 the processes join a process group, each rank sees its own part of
every epoch, and rank 0 alone writes files; a process group that train_depth joined it also leaves.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from xlstm_ros.models.checkpoints import CheckpointError, load_checkpoint, load_into, save_checkpoint, state_dict_of
from xlstm_ros.models.depth import DepthConfig, DepthModel, save_depth_checkpoint
from xlstm_ros.models.vil import MLSTM_MODES, VIL_CONFIGS, MLSTMOptions, vil_config
from xlstm_ros.train.runtime import (Curve, Process, Progress, TrainSummary, add_run_arguments, check_resumable,
                                     config_from_args, learning_rate, parameter_groups, start_process, write_log)
from xlstm_ros.sim.scenes import SceneDataset, render_dataset

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
SCALE_FLOOR = 0.1
# Fields that may change between a run and its resumption without changing what it computes.
OPERATIONAL_FIELDS = ("out_dir", "data_dir", "checkpoint_every", "log_every", "threads", "resume")
# The loss picture: the loss and its two terms.
CURVES = (Curve("loss", "loss"), Curve("ssi", "SSI MSE"), Curve("gradient", "gradient matching"))


@dataclass(frozen=True)
class DepthTrainConfig:
    """Everything a training run depends on; stored in its checkpoints. Sizes are (height, width) pixels."""

    out_dir: str = "out/train_depth"
    data_dir: str | None = None              # scene cache; default <out_dir>/scenes
    n_frames: int = 4000
    data_seed: int = 0
    frame_size: tuple[int, int] = (192, 256)
    backbone: str = "vil_nano"               # a name in models.vil.VIL_CONFIGS
    dim: int | None = None                   # overrides of the named backbone
    pairs: int | None = None
    feature_pairs: tuple[int, ...] | None = None   # default: the preset's, or evenly spread if `pairs` is set
    features: int = 64
    neck_channels: tuple[int, int, int, int] = (48, 96, 192, 384)
    crop_size: tuple[int, int] = (128, 160)  # training input; its shorter side becomes input_short_side
    min_crop_scale: float = 0.6              # smallest crop, relative to the largest one of the crop's aspect
    steps: int = 3000
    batch_size: int = 8
    lr: float = 5e-4
    min_lr_ratio: float = 0.02               # the cosine schedule ends at lr x min_lr_ratio
    warmup_steps: int = 200
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    gradient_weight: float = 0.5
    gradient_scales: int = 4
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 10
    device: str = "auto"
    threads: int | None = None               # torch intra-op threads of each process (None: torch's default)
    mlstm_mode: str = "parallel"             # the quadratic form is the fastest at training crops (<= 100 tokens)
    chunk_size: int = 64
    resume: bool = True

    def __post_init__(self) -> None:
        for name in ("frame_size", "crop_size", "neck_channels"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.feature_pairs is not None:
            object.__setattr__(self, "feature_pairs", tuple(int(v) for v in self.feature_pairs))
        positive = ("n_frames", "features", "steps", "batch_size", "gradient_scales", "checkpoint_every",
                    "log_every", "chunk_size")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DepthTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("dim", "pairs", "threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"DepthTrainConfig.{name} must be >= 1 or None, got {getattr(self, name)}")
        for name in ("data_seed", "seed", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"DepthTrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "grad_clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"DepthTrainConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "gradient_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"DepthTrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"DepthTrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0.0 < self.min_crop_scale <= 1.0:
            raise ValueError(f"DepthTrainConfig.min_crop_scale must be in (0, 1], got {self.min_crop_scale}")
        if self.backbone not in VIL_CONFIGS:
            raise ValueError(f"DepthTrainConfig.backbone '{self.backbone}' is not one of {', '.join(VIL_CONFIGS)}")
        if self.mlstm_mode not in MLSTM_MODES:
            raise ValueError(f"DepthTrainConfig.mlstm_mode must be one of {', '.join(MLSTM_MODES)}, "
                             f"got '{self.mlstm_mode}'")
        for name in ("frame_size", "crop_size"):
            size = getattr(self, name)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"DepthTrainConfig.{name} must be (height, width) > 0, got {size}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists for tuples), as stored in checkpoints and logs."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @property
    def scenes_dir(self) -> Path:
        """Where the rendered training frames are cached."""
        return Path(self.data_dir) if self.data_dir else Path(self.out_dir) / "scenes"

    def model_config(self) -> DepthConfig:
        """The DepthConfig this run trains: the named backbone with its overrides, sized for the crops."""
        patch = VIL_CONFIGS[self.backbone].patch_size
        if self.crop_size[0] % patch or self.crop_size[1] % patch:
            raise ValueError(f"DepthTrainConfig.crop_size must be multiples of the patch size {patch}, "
                             f"got {self.crop_size}")
        overrides: dict[str, Any] = {"pos_grid": (self.crop_size[0] // patch, self.crop_size[1] // patch)}
        if self.dim is not None:
            overrides["dim"] = self.dim
        if self.pairs is not None:
            overrides["depth"] = self.pairs
            overrides["feature_pairs"] = spread_taps(self.pairs)
        if self.feature_pairs is not None:
            overrides["feature_pairs"] = self.feature_pairs
        return DepthConfig(backbone=vil_config(self.backbone, **overrides), neck_channels=self.neck_channels,
                           features=self.features, input_short_side=min(self.crop_size))


def spread_taps(pairs: int) -> tuple[int, ...]:
    """Four feature taps spread evenly over `pairs` block pairs, the last one at the end: 12 -> (2, 5, 8, 11)."""
    if pairs < 4:
        raise ValueError(f"pairs must be >= 4 for four distinct feature taps, got {pairs}")
    return tuple(round((i + 1) * pairs / 4) - 1 for i in range(4))


# ---------------------------------------------------------------------------------------------------------
# Loss


def normalize_disparity(disparity: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (B, H, W): (t - median) / mean |t - median| over the mask, and which images are usable.

    An image is unusable when it has fewer than two valid pixels or no spread (an all-sky view); its
    normalised map is zeros.
    """
    flat = torch.where(mask, disparity, torch.nan).flatten(1)
    median = flat.nanmedian(dim=1).values.nan_to_num(0.0)[:, None, None]
    count = mask.flatten(1).sum(1)
    spread = ((disparity - median).abs() * mask).flatten(1).sum(1) / count.clamp(min=1)
    usable = (count >= 2) & (spread > 0)
    scale = torch.where(usable, spread, torch.ones_like(spread))[:, None, None]
    return torch.where(mask & usable[:, None, None], (disparity - median) / scale, 0.0), usable


def align_prediction(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                     scale_floor: float = SCALE_FLOOR) -> torch.Tensor:
    """s * prediction + b with (s, b) the per-image least-squares fit to target over mask, s >= the floor.

    The floor is scale_floor x std(target) / std(prediction) (see the module docstring); it does not carry
    gradients. Centred sums keep the fit accurate when the prediction's spread is tiny against its mean.
    """
    weight = mask.to(prediction.dtype)
    count = weight.sum((1, 2), keepdim=True).clamp(min=1.0)
    mean_p = (weight * prediction).sum((1, 2), keepdim=True) / count
    mean_t = (weight * target).sum((1, 2), keepdim=True) / count
    centred_p, centred_t = (prediction - mean_p) * weight, (target - mean_t) * weight
    var_p = centred_p.square().sum((1, 2), keepdim=True) / count
    var_t = centred_t.square().sum((1, 2), keepdim=True) / count
    tiny = torch.finfo(prediction.dtype).tiny
    scale = (centred_p * centred_t).sum((1, 2), keepdim=True) / count / var_p.clamp(min=tiny)
    floor = scale_floor * (var_t / var_p.clamp(min=tiny)).sqrt()
    return torch.maximum(scale, floor.detach()) * (prediction - mean_p) + mean_t


def gradient_matching(residual: torch.Tensor, mask: torch.Tensor, scales: int) -> torch.Tensor:
    """Per image: sum over `scales` (stride 1, 2, 4, ...) of mean |d residual/dx| + |d residual/dy| (MiDaS)."""
    total = residual.new_zeros(residual.shape[0])
    for level in range(scales):
        step = 2 ** level
        r, m = residual[:, ::step, ::step], mask[:, ::step, ::step].to(residual.dtype)
        mx, my = m[:, :, 1:] * m[:, :, :-1], m[:, 1:, :] * m[:, :-1, :]
        dx = ((r[:, :, 1:] - r[:, :, :-1]).abs() * mx).sum((1, 2))
        dy = ((r[:, 1:, :] - r[:, :-1, :]).abs() * my).sum((1, 2))
        total = total + (dx + dy) / m.sum((1, 2)).clamp(min=1.0)
    return total


@dataclass(frozen=True)
class LossParts:
    """The training loss and its terms (batch means over usable images) and the count of unusable images."""

    loss: torch.Tensor
    ssi: float
    gradient: float
    dropped: int


def depth_loss(prediction: torch.Tensor, disparity: torch.Tensor, mask: torch.Tensor | None = None, *,
               gradient_weight: float = 0.5, gradient_scales: int = 4) -> LossParts:
    """Scale-and-shift-invariant MSE in disparity + gradient_weight x gradient matching (module docstring).

    prediction, disparity: (B, H, W); mask: bool (B, H, W) of pixels with a target (default: all).
    Images without a usable target are left out of the mean and counted in `dropped`.
    """
    if prediction.shape != disparity.shape or prediction.ndim != 3:
        raise ValueError(f"prediction {tuple(prediction.shape)} and disparity {tuple(disparity.shape)} "
                         "must both be (B, H, W)")
    mask = torch.ones_like(disparity, dtype=torch.bool) if mask is None else mask.bool()
    target, usable = normalize_disparity(disparity, mask)
    valid = mask & usable[:, None, None]
    residual = (align_prediction(prediction, target, valid) - target) * valid
    count = valid.sum((1, 2)).clamp(min=1)
    ssi = residual.square().sum((1, 2)) / count
    gradient = gradient_matching(residual, valid, gradient_scales)
    kept = usable.to(prediction.dtype)
    n_kept = kept.sum().clamp(min=1.0)
    ssi_mean, gradient_mean = (ssi * kept).sum() / n_kept, (gradient * kept).sum() / n_kept
    return LossParts(ssi_mean + gradient_weight * gradient_mean, float(ssi_mean.detach()),
                     float(gradient_mean.detach()), int((~usable).sum()))


# ---------------------------------------------------------------------------------------------------------
# Data


class FrameBank:
    """Every frame of a make_dataset folder in memory: rgb uint8 (N, H, W, 3), disparity float16 (N, H, W).

    Disparity is 1 / depth_m with the sky (+inf depth) at 0. float16 keeps ~3 significant digits, far
    below the rendering and resampling error, at half the memory.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        dataset = SceneDataset(root)
        n, shard_size = len(dataset), dataset.manifest["shard_size"]
        height, width = dataset.manifest["height"], dataset.manifest["width"]
        self.rgb = np.empty((n, height, width, 3), np.uint8)
        self.disparity = np.empty((n, height, width), np.float16)
        for number in range(-(-n // shard_size)):
            arrays = dataset.shard(number)
            depth_m = arrays["depth_m"]
            if np.isnan(depth_m).any() or (depth_m <= 0).any():
                raise ValueError(f"{root}: shard {number} has NaN or non-positive depth_m values")
            start = number * shard_size
            self.rgb[start:start + len(depth_m)] = arrays["rgb"]
            self.disparity[start:start + len(depth_m)] = 1.0 / depth_m   # 1 / inf = 0 for the sky

    def __len__(self) -> int:
        return len(self.rgb)


def random_crops(rgb: np.ndarray, disparity: np.ndarray, crop_size: tuple[int, int], min_scale: float,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented training pairs from uint8 frames (B, H, W, 3) and disparity (B, H, W).

    Per frame: a crop of crop_size's aspect ratio covering a random fraction in [min_scale, 1] of the
    largest such crop, at a random place, resized to crop_size (RGB bilinear with antialiasing, disparity
    nearest, so no pixel mixes the sky with an object); a horizontal flip with probability 1/2; brightness,
    contrast and saturation factors in [0.7, 1.3]. Returns images (B, 3, h, w) in [0, 1] and disparity (B, h, w).
    """
    out_h, out_w = crop_size
    frame_h, frame_w = disparity.shape[1:]
    largest = min(frame_h / out_h, frame_w / out_w)
    images, targets = [], []
    for index in range(len(rgb)):
        scale, top, left, flip, *jitter = torch.rand(7, generator=generator, dtype=torch.float64).tolist()
        factor = largest * (min_scale + (1 - min_scale) * scale)
        crop_h, crop_w = max(1, round(out_h * factor)), max(1, round(out_w * factor))
        y, x = round(top * (frame_h - crop_h)), round(left * (frame_w - crop_w))
        image = torch.from_numpy(rgb[index, y:y + crop_h, x:x + crop_w]).permute(2, 0, 1)[None].float() / 255
        target = torch.from_numpy(disparity[index, y:y + crop_h, x:x + crop_w].astype(np.float32))[None, None]
        image = F.interpolate(image, size=crop_size, mode="bilinear", align_corners=False, antialias=True)[0]
        target = F.interpolate(target, size=crop_size, mode="nearest-exact")[0, 0]
        if flip < 0.5:
            image, target = image.flip(-1), target.flip(-1)
        images.append(jitter_colours(image, *(0.7 + 0.6 * j for j in jitter)))
        targets.append(target)
    return torch.stack(images), torch.stack(targets)


def jitter_colours(image: torch.Tensor, brightness: float, contrast: float, saturation: float) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] with brightness, contrast (about the mean grey) and saturation scaled."""
    image = image * brightness
    grey = image.mean(0, keepdim=True)
    image = (image - grey.mean()) * contrast + grey.mean()
    grey = image.mean(0, keepdim=True)
    return ((image - grey) * saturation + grey).clamp(0.0, 1.0)


class BatchPlan:
    """Which frames make up step s of this rank: epoch = s // steps_per_epoch, reshuffled each epoch."""

    def __init__(self, bank: FrameBank, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.sampler = DistributedSampler(bank, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                          drop_last=True)
        self.batch_size = batch_size
        self.steps_per_epoch = len(self.sampler) // batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"n_frames={len(bank)} gives each of {world_size} process(es) fewer frames than "
                             f"batch_size={batch_size}")
        self._epoch: int | None = None
        self._order: list[int] = []

    def indices(self, step: int) -> list[int]:
        epoch, position = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._epoch, self._order = epoch, list(self.sampler)
        return self._order[position * self.batch_size:(position + 1) * self.batch_size]


# ---------------------------------------------------------------------------------------------------------
# Checkpoints


def save_training_checkpoint(path: Path, model: DepthModel, optimizer: torch.optim.Optimizer,
                             config: DepthTrainConfig, step: int, rng_states: list[torch.Tensor],
                             history: list[dict[str, float]], wall_time_s: float) -> Path:
    """The resumable checkpoint: the depth checkpoint format plus a "training" entry."""
    training = {"step": step, "optimizer": optimizer.state_dict(), "rng": rng_states, "history": history,
                "wall_time_s": wall_time_s}
    return save_checkpoint({"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                            "config": model.config.to_dict(),
                            "meta": {"train_config": config.to_dict(), "step": step, "wall_time_s": wall_time_s},
                            "training": training}, path)


def load_training_checkpoint(path: Path, model: DepthModel, optimizer: torch.optim.Optimizer,
                             config: DepthTrainConfig) -> dict[str, Any]:
    """Restore model and optimizer from `path` in place; returns the "training" entry (step, rng, history)."""
    payload = load_checkpoint(path)
    training, meta = payload.get("training"), payload.get("meta")
    if not isinstance(training, dict) or not isinstance(meta, dict) or "train_config" not in meta:
        raise CheckpointError(f"{path}: not a resumable training checkpoint (no 'training' state)")
    check_resumable(meta["train_config"], config.to_dict(), OPERATIONAL_FIELDS, path)
    load_into(model, state_dict_of(payload, path), path)
    try:
        optimizer.load_state_dict(training["optimizer"])
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{path}: optimizer state does not fit the model ({error})") from error
    return training


# ---------------------------------------------------------------------------------------------------------
# The run


def prepare_scenes(config: DepthTrainConfig, process: Process) -> Path:
    """Render the training frames into the cache (rank 0; a complete cache is reused) and return its folder."""
    if process.is_main:
        render_dataset(config.scenes_dir, config.n_frames, config.data_seed, config.frame_size)
    process.barrier()
    return config.scenes_dir


def train_depth(config: DepthTrainConfig,
                on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainSummary:
    """Train (or resume) the depth model described by `config`; see the module docstring for the files.

    on_step(step, terms) is called on rank 0 after every optimizer step with the step count so far and that
    step's loss terms (progress displays; a test interrupts a run by raising from it).
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    process = start_process(config.device)
    out_dir = Path(config.out_dir)
    if process.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    bank = FrameBank(prepare_scenes(config, process))
    plan = BatchPlan(bank, config.batch_size, process.rank, process.world_size, config.seed)

    torch.manual_seed(config.seed)
    model = DepthModel(config.model_config(), MLSTMOptions(mode=config.mlstm_mode, chunk_size=config.chunk_size))
    model.to(process.device)
    groups = parameter_groups(model, config.weight_decay, no_decay_names=("pos_embed",))  # no decay on positions
    optimizer = torch.optim.AdamW(groups, lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed * 7919 + process.rank)
    start_step, history, wall_before = 0, [], 0.0
    checkpoint_path = out_dir / CHECKPOINT_NAME
    if config.resume and checkpoint_path.is_file():
        training = load_training_checkpoint(checkpoint_path, model, optimizer, config)
        start_step, history = int(training["step"]), list(training["history"])
        wall_before = float(training["wall_time_s"])
        if len(training["rng"]) == process.world_size:
            generator.set_state(training["rng"][process.rank])
        if process.is_main:
            print(f"resuming {checkpoint_path} at step {start_step}", flush=True)
    trained = model if process.world_size == 1 else nn.parallel.DistributedDataParallel(model)

    progress = Progress(config.steps, start_step, process.is_main, rate_key="images_per_s", rate_unit="img",
                        terms=("ssi", "gradient"))
    window: list[tuple[float, float, float, int]] = []
    started = time.perf_counter()
    window_start = started
    wall_time_s = wall_before

    def checkpoint(step: int) -> None:
        rng_states = process.gather(generator.get_state())
        if process.is_main:
            save_training_checkpoint(checkpoint_path, model, optimizer, config, step, rng_states, history,
                                     wall_time_s)
            write_log(out_dir, config.to_dict(), history, wall_time_s, finished=step == config.steps, curves=CURVES)

    trained.train()
    try:
        for step in range(start_step, config.steps):
            rate = learning_rate(step, lr=config.lr, steps=config.steps, warmup_steps=config.warmup_steps,
                                 min_lr_ratio=config.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = rate
            indices = plan.indices(step)
            images, disparity = random_crops(bank.rgb[indices], bank.disparity[indices], config.crop_size,
                                             config.min_crop_scale, generator)
            parts = depth_loss(trained(images.to(process.device)), disparity.to(process.device),
                               gradient_weight=config.gradient_weight, gradient_scales=config.gradient_scales)
            optimizer.zero_grad(set_to_none=True)
            parts.loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            done = step + 1
            window.append((parts.loss.item(), parts.ssi, parts.gradient, parts.dropped))
            wall_time_s = wall_before + time.perf_counter() - started
            entry = None
            if done % config.log_every == 0 or done == config.steps:
                loss, ssi, gradient, dropped = process.mean_over_ranks(np.mean(window, axis=0).tolist())
                now = time.perf_counter()
                entry = {"step": done, "loss": loss, "ssi": ssi, "gradient": gradient,
                         "dropped_per_step": dropped, "lr": optimizer.param_groups[0]["lr"],
                         "images_per_s": len(window) * config.batch_size * process.world_size
                         / max(now - window_start, 1e-9),
                         "elapsed_s": wall_time_s}
                history.append(entry)
                window, window_start = [], now
            if process.is_main:
                progress.update(done, entry)
                if on_step is not None:
                    on_step(done, {"loss": parts.loss.item(), "ssi": parts.ssi, "gradient": parts.gradient})
            if done % config.checkpoint_every == 0 or done == config.steps:
                checkpoint(done)
    finally:
        progress.close()
    model_path = out_dir / MODEL_NAME
    final_loss = history[-1]["loss"] if history else float("nan")
    if process.is_main:
        save_depth_checkpoint(model, model_path, meta={"train_config": config.to_dict(), "steps": config.steps,
                                                       "wall_time_s": round(wall_time_s, 1),
                                                       "final_loss": final_loss})
    process.barrier()
    process.leave()
    return TrainSummary(model_path=model_path, checkpoint_path=checkpoint_path, steps=config.steps,
                        final_loss=final_loss, wall_time_s=wall_time_s)


# ---------------------------------------------------------------------------------------------------------
# Command line (`python -m xlstm_ros.train.depth_train`; the `xlstm-ros train depth` CLI uses the same options)


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 192x256, got '{text}'") from error
    return height, width


def parse_ints(text: str) -> tuple[int, ...]:
    """'1,3,5' -> (1, 3, 5)."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one option per DepthTrainConfig field (--out-dir, --n-frames, ...) with the config's defaults."""
    d = DepthTrainConfig()
    add = parser.add_argument
    add("--out-dir", default=d.out_dir, help="checkpoints, log.json and loss.png go here")
    add("--data-dir", default=d.data_dir, help="scene cache folder (default OUT_DIR/scenes)")
    add("--n-frames", type=int, default=d.n_frames, help="training frames to render (once) and train on")
    add("--data-seed", type=int, default=d.data_seed, help="seed of the rendered training scenes")
    add("--frame-size", type=parse_size, default=d.frame_size, help="rendered frame HxW")
    add("--backbone", default=d.backbone, choices=sorted(VIL_CONFIGS), help="ViL preset")
    add("--dim", type=int, default=d.dim, help="override the preset's width")
    add("--pairs", type=int, default=d.pairs, help="override the preset's number of block pairs")
    add("--feature-pairs", type=parse_ints, default=d.feature_pairs, help="block pairs tapped, e.g. 1,3,5,7")
    add("--features", type=int, default=d.features, help="DPT fusion width")
    add("--neck-channels", type=parse_ints, default=d.neck_channels, help="DPT reassemble widths (4)")
    add("--crop-size", type=parse_size, default=d.crop_size, help="training crop HxW (multiples of 16)")
    add("--min-crop-scale", type=float, default=d.min_crop_scale, help="smallest crop relative to the largest")
    add("--steps", type=int, default=d.steps, help="optimizer steps")
    add("--batch-size", type=int, default=d.batch_size, help="frames per step and process")
    add("--lr", type=float, default=d.lr, help="peak AdamW learning rate")
    add("--min-lr-ratio", type=float, default=d.min_lr_ratio, help="final learning rate / peak")
    add("--warmup-steps", type=int, default=d.warmup_steps, help="linear warm-up steps")
    add("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay (matrices only)")
    add("--grad-clip", type=float, default=d.grad_clip, help="gradient norm clip")
    add("--gradient-weight", type=float, default=d.gradient_weight, help="weight of the gradient-matching term")
    add("--gradient-scales", type=int, default=d.gradient_scales, help="scales of the gradient-matching term")
    add("--seed", type=int, default=d.seed, help="seed of initialisation, sampling and augmentation")
    add("--mlstm-mode", default=d.mlstm_mode, choices=MLSTM_MODES, help="how the mLSTM cell is evaluated")
    add("--chunk-size", type=int, default=d.chunk_size, help="chunk length of the chunkwise mLSTM")
    add_run_arguments(parser, d)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description="Train the ViL depth model on rendered scenes "
                                                            "(torchrun-ready; resumes from OUT_DIR/checkpoint.pt).")
    add_arguments(parser)
    summary = train_depth(config_from_args(DepthTrainConfig, parser.parse_args(argv)))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"done: {summary.steps} steps, final loss {summary.final_loss:.4f}, "
              f"{summary.wall_time_s:.0f} s; model {summary.model_path}")


if __name__ == "__main__":
    main()
