"""Training of the ViL depth model on procedural scenes: scale-and-shift-invariant loss in disparity.

Data: `make_dataset` renders (RGB, metric depth) frames once into a cache folder; every run (and every
resume) reads the same frames back into memory (`FrameBank`). Each step draws a batch through a
`DistributedSampler` (one replica when not distributed), applies camera effects (`camera_effects`: exposure,
white balance, vignetting, blur, sensor noise, JPEG), takes random crops at random scale (the effective field
of view varies), flips horizontally (never vertically: the ground stays below) and jitters the colours.

Loss (MiDaS): the target is disparity 1/depth_m, and the sky counts as disparity 0,
so the model learns that the sky is the farthest thing in view. Each target is normalised per image to
median 0 and mean absolute deviation 1 so that every image weighs the same. Each prediction is aligned to
its target by least squares (scale and shift per image, centred sums, stable in float32). The aligned
residual gives the mean squared error plus `gradient_weight` x the multi-scale gradient-matching term (L1
of the residual's x/y differences at `gradient_scales` scales). One deviation from plain least squares:
the fitted scale is kept >= SCALE_FLOOR x (target spread / prediction spread). The least-squares loss is
blind to the sign of the prediction, and a fresh model could settle on "larger = farther"; the floor
pushes it to "larger = nearer" (relative inverse depth) and is inactive once the prediction correlates
with the target by more than SCALE_FLOOR.

Runs are resumable, in the layout of every training run (runtime.py): `model.pt` in the depth checkpoint
format (`load_depth_checkpoint`, the `checkpoint` parameter of the depth node) and `training_state.pt`
(optimizer, step, per-rank augmentation RNG, history), written every `checkpoint_every` steps and at the
end. torchrun starts one process per device: with WORLD_SIZE > 1 the processes join a process group, each
rank sees its own part of every epoch, and rank 0 alone writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from xlstm_ros.models.checkpoints import CheckpointError
from xlstm_ros.models.depth import DepthConfig, DepthModel, load_depth_checkpoint, save_depth_checkpoint
from xlstm_ros.models.vil import MLSTM_MODES, VIL_CONFIGS, MLSTMOptions, resize_position_table, vil_config
from xlstm_ros.options import option, parse_size
from xlstm_ros.sim.camera_effects import augment_batch
from xlstm_ros.sim.scenes import SceneDataset, render_dataset
from xlstm_ros.train.runtime import (Curve, LogSpec, ModelFile, Process, StepOutput, TrainConfig, TrainSummary,
                                     command_line, operational, parameter_groups, run_training, start_run)

SCALE_FLOOR = 0.1


@dataclass(frozen=True)
class DepthTrainConfig(TrainConfig):
    """Everything a depth training run depends on; stored in its checkpoints. Sizes are (height, width) pixels."""

    out_dir: str = operational("out/train_depth", "model.pt, training_state.pt, log.json and loss.png go here")
    data_dir: str | None = operational(None, "scene cache folder (default OUT_DIR/scenes)")
    frames: str | None = option(None, "train on this frame folder (rgb and depth_m shards, as `xlstm-ros train "
                                "depth --bag` writes them; NaN depth = no ground truth) instead of rendered scenes")
    n_frames: int = option(3072, "training frames to render (once) and train on")
    data_seed: int = option(0, "seed of the rendered training scenes")
    frame_size: tuple[int, int] = option((288, 384), "rendered frame HxW", parse=parse_size, metavar="HxW")
    backbone: str = option("vil_nano", "ViL preset", choices=sorted(VIL_CONFIGS))
    dim: int | None = option(192, "model width (overrides the preset's)")
    pairs: int | None = option(None, "override the preset's number of block pairs")
    feature_pairs: tuple[int, ...] | None = option(
        None, "block pairs tapped, e.g. 1,3,5,7 (default: the preset's, or spread evenly when --pairs is set)")
    features: int = option(64, "DPT fusion width")
    guide_channels: int = option(16, "width of the head's image-guided refinement (0: plain bilinear head)")
    init_checkpoint: str | None = option(None, "start from the weights of this depth checkpoint (fine-tuning; "
                                         "the architecture must match, except the crop size and a head that "
                                         "gains the image guide)")
    neck_channels: tuple[int, int, int, int] = option((48, 96, 192, 384), "DPT reassemble widths (4)")
    crop_size: tuple[int, int] = option((256, 320), "training crop HxW (multiples of 16); its shorter side "
                                        "becomes the model's input_short_side", parse=parse_size, metavar="HxW")
    min_crop_scale: float = option(0.7, "smallest crop, relative to the largest one of the crop's aspect")
    camera_effects: bool = option(True, "camera effects on the training frames before cropping: exposure, white "
                                  "balance, vignetting, blur, sensor noise, JPEG (sim/camera_effects.py)")
    steps: int = option(3000, "optimizer steps")
    batch_size: int = option(8, "frames per step and process")
    lr: float = option(5e-4, "peak AdamW learning rate")
    min_lr_ratio: float = option(0.02, "final learning rate / peak (the cosine schedule ends there)")
    warmup_steps: int = option(200, "linear warm-up steps")
    gradient_weight: float = option(0.5, "weight of the gradient-matching term")
    gradient_scales: int = option(4, "scales of the gradient-matching term")
    mlstm_mode: str = option("parallel", "how the mLSTM cell is evaluated (the quadratic form is the fastest at "
                             "training crops)", choices=MLSTM_MODES)
    chunk_size: int = option(64, "chunk length of the chunkwise mLSTM")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("frame_size", "crop_size", "neck_channels"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.feature_pairs is not None:
            object.__setattr__(self, "feature_pairs", tuple(int(v) for v in self.feature_pairs))
        if self.guide_channels < 0:
            raise ValueError(f"DepthTrainConfig.guide_channels must be >= 0, got {self.guide_channels}")
        for name in ("n_frames", "features", "gradient_scales", "chunk_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DepthTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("dim", "pairs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"DepthTrainConfig.{name} must be >= 1 or None, got {getattr(self, name)}")
        if self.data_seed < 0:
            raise ValueError(f"DepthTrainConfig.data_seed must be >= 0, got {self.data_seed}")
        if not self.gradient_weight >= 0:
            raise ValueError(f"DepthTrainConfig.gradient_weight must be >= 0, got {self.gradient_weight}")
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
                           features=self.features, input_short_side=min(self.crop_size),
                           guide_channels=self.guide_channels)


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
    """Every frame of a frame folder in memory: rgb uint8 (N, H, W, 3), disparity float16 (N, H, W).

    Disparity is 1 / depth_m with the sky (+inf depth) at 0, and NaN where depth_m is NaN (no ground truth:
    masked out of the loss). float16 keeps ~3 significant digits, far below the rendering and resampling
    error, at half the memory.
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
            if (depth_m <= 0).any():
                raise ValueError(f"{root}: shard {number} has non-positive depth_m values")
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


#: The depth checkpoint format (load_depth_checkpoint reads it) with the run's meta.
MODEL_FILE = ModelFile("model.pt", save=lambda model, path, meta: save_depth_checkpoint(model, path, meta=meta),
                       meta_of=lambda payload: payload.get("meta", {}))
#: The loss picture (the loss and its two terms) and the throughput in images per second.
LOG = LogSpec(curves=(Curve("loss", "loss"), Curve("ssi", "SSI MSE"), Curve("gradient", "gradient matching")),
              rate_key="images_per_s", rate_unit="img", progress_terms=("ssi", "gradient"))


# ---------------------------------------------------------------------------------------------------------
# The run


def load_initial_weights(model: DepthModel, path: str | os.PathLike) -> None:
    """Copy the weights of the depth checkpoint `path` into `model`.

    The architecture must be the same (a CheckpointError names the first differing field), with two
    exceptions: the position table's grid, which is resized bicubically as at inference, and a plain head
    (guide_channels 0) that the model extends with the image guide. The guide's inputs to the last convs
    start at zero and its stride-2 correction is zero-initialised, so the model starts out predicting
    exactly what the checkpoint predicts.
    """
    source, _ = load_depth_checkpoint(path)
    mine, theirs = model.config.to_dict(), source.config.to_dict()
    mine["backbone"].pop("pos_grid"), theirs["backbone"].pop("pos_grid")
    for key in sorted(set(mine) - {"input_short_side", "guide_channels"}):
        if mine[key] != theirs[key]:
            raise CheckpointError(f"{path}: init checkpoint has {key}={theirs[key]!r}, the run trains {key}={mine[key]!r}")
    if source.config.guide_channels not in (0, model.config.guide_channels):
        raise CheckpointError(f"{path}: init checkpoint has guide_channels={source.config.guide_channels}, "
                              f"the run trains guide_channels={model.config.guide_channels}")
    state = model.state_dict()
    for key, value in source.state_dict().items():
        if key == "backbone.pos_embed.embed":
            value = resize_position_table(value, model.config.backbone.pos_grid)
        elif key == "head.conv2.weight" and value.shape != state[key].shape:
            value = torch.cat((value, value.new_zeros(value.shape[0], state[key].shape[1] - value.shape[1],
                                                      *value.shape[2:])), 1)
        state[key] = value
    model.load_state_dict(state)


def prepare_scenes(config: DepthTrainConfig, process: Process) -> Path:
    """The training frames' folder: `frames` if given, else the scene cache, rendered by rank 0 unless complete."""
    if config.frames is not None:
        return Path(config.frames)
    if process.is_main:
        render_dataset(config.scenes_dir, config.n_frames, config.data_seed, config.frame_size)
    process.barrier()
    return config.scenes_dir


def train_depth(config: DepthTrainConfig,
                on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainSummary:
    """Train (or resume) the depth model described by `config`; see the module docstring for the files.

    on_step(step, numbers) is called on rank 0 after every optimizer step with the step count so far and that
    step's loss terms (progress displays; a test interrupts a run by raising from it).
    """
    process = start_run(config)
    bank = FrameBank(prepare_scenes(config, process))
    plan = BatchPlan(bank, config.batch_size, process.rank, process.world_size, config.seed)

    torch.manual_seed(config.seed)
    model = DepthModel(config.model_config(), MLSTMOptions(mode=config.mlstm_mode, chunk_size=config.chunk_size))
    if config.init_checkpoint is not None:
        load_initial_weights(model, config.init_checkpoint)
    model.to(process.device)
    groups = parameter_groups(model, config.weight_decay, no_decay_names=("pos_embed",))  # no decay on positions
    optimizer = torch.optim.AdamW(groups, lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed * 7919 + process.rank)

    def step(module: nn.Module, index: int) -> StepOutput:
        indices = plan.indices(index)
        frames = bank.rgb[indices]
        if config.camera_effects:   # draws from (seed, rank, step): a resumed run repeats them exactly
            frames = augment_batch(frames, np.random.default_rng([config.seed, process.rank, index]))
        images, disparity = random_crops(frames, bank.disparity[indices], config.crop_size,
                                         config.min_crop_scale, generator)
        valid = disparity.isfinite()
        parts = depth_loss(module(images.to(process.device)), disparity.nan_to_num(0.0).to(process.device),
                           valid.to(process.device), gradient_weight=config.gradient_weight,
                           gradient_scales=config.gradient_scales)
        return StepOutput(parts.loss, {"ssi": parts.ssi, "gradient": parts.gradient,
                                       "dropped_per_step": parts.dropped})

    return run_training(config, process, model, optimizer, step, MODEL_FILE, LOG, generator=generator,
                        on_step=on_step)


# ---------------------------------------------------------------------------------------------------------
# Command line (`python -m xlstm_ros.train.depth_train`; the `xlstm-ros train depth` CLI uses the same options)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    command_line(DepthTrainConfig, train_depth, "Train the ViL depth model on rendered scenes (torchrun-ready; "
                 "resumes from OUT_DIR).", argv, prog)


if __name__ == "__main__":
    main()
