"""Monocular depth: a ViL encoder with a DPT-style neck and head, and its checkpoints.

The model maps RGB images in [0, 1] to a dense map at the input resolution. By default that map is relative
inverse depth (disparity-like: >= 0, larger is nearer, defined up to scale and shift), the quantity that
scale-and-shift-invariant training and the relative-depth protocol use. A checkpoint may declare metric
output instead, in one of two ways: a scale head whose last activation is sigmoid x `max_depth_m`, or a
per-camera calibration (scale, shift) that maps the relative output to inverse metres. The checkpoint
stores the config, so loading is self-describing.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from xlstm_ros.models.checkpoints import CheckpointError, load_checkpoint, load_into, save_checkpoint, state_dict_of
from xlstm_ros.models.vil import MLSTMOptions, ViLBackbone, ViLConfig, vil_config

RELATIVE = "relative_inverse_depth"
METRIC = "metric_depth_m"
OUTPUT_KINDS = (RELATIVE, METRIC)
# ImageNet statistics: the official ViL weights were trained with them, and so are ours.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DepthConfig:
    """Everything needed to rebuild a depth model; stored inside its checkpoints.

    output: RELATIVE, or METRIC (depth in metres). Metric output comes from the sigmoid scale head unless
    `calibration` = (scale, shift) is given, which maps relative inverse depth p to inverse metres
    scale * p + shift (clamped so that depth stays <= max_depth_m).
    input_short_side: the shorter image side (pixels) the model expects by default; engines resize to it.
    guide_channels: width of the head's image-guided refinement (features of the image itself at 1/2 and
    full resolution, so that depth edges follow image edges rather than the 16-pixel token grid); 0 gives
    the plain DPT head that upsamples bilinearly.
    """

    backbone: ViLConfig = field(default_factory=lambda: vil_config("vil_tiny"))
    neck_channels: tuple[int, int, int, int] = (48, 96, 192, 384)
    features: int = 64
    output: str = RELATIVE
    max_depth_m: float = 80.0
    calibration: tuple[float, float] | None = None
    input_short_side: int = 256
    guide_channels: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "neck_channels", tuple(int(c) for c in self.neck_channels))
        if self.calibration is not None:
            object.__setattr__(self, "calibration", tuple(float(c) for c in self.calibration))
        if len(self.backbone.feature_pairs) != 4:
            raise ValueError(f"DepthConfig.backbone.feature_pairs: the DPT neck needs 4 taps, "
                             f"got {self.backbone.feature_pairs}")
        if len(self.neck_channels) != 4 or min(self.neck_channels) < 1:
            raise ValueError(f"DepthConfig.neck_channels must be 4 positive widths, got {self.neck_channels}")
        if self.guide_channels < 0:
            raise ValueError(f"DepthConfig.guide_channels must be >= 0, got {self.guide_channels}")
        if self.features < 2:
            raise ValueError(f"DepthConfig.features must be >= 2, got {self.features}")
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"DepthConfig.output must be one of {', '.join(OUTPUT_KINDS)}, got '{self.output}'")
        if not self.max_depth_m > 0:
            raise ValueError(f"DepthConfig.max_depth_m must be > 0, got {self.max_depth_m}")
        if self.calibration is not None:
            if self.output != METRIC:
                raise ValueError("DepthConfig.calibration is only meaningful with output='metric_depth_m'")
            if len(self.calibration) != 2 or not self.calibration[0] > 0:
                raise ValueError(f"DepthConfig.calibration must be (scale > 0, shift), got {self.calibration}")
        patch = self.backbone.patch_size
        if self.input_short_side < patch or self.input_short_side % patch:
            raise ValueError(f"DepthConfig.input_short_side must be a positive multiple of {patch}, "
                             f"got {self.input_short_side}")

    @property
    def uses_scale_head(self) -> bool:
        """True when the head itself outputs metres (sigmoid x max_depth_m)."""
        return self.output == METRIC and self.calibration is None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for a weights-only checkpoint."""
        data = asdict(self)
        data["backbone"] = self.backbone.to_dict()
        data["neck_channels"] = list(self.neck_channels)
        data["calibration"] = None if self.calibration is None else list(self.calibration)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DepthConfig":
        """Inverse of `to_dict`; unknown keys and bad values raise ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"DepthConfig: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")
        values = dict(data)
        if "backbone" in values:
            if not isinstance(values["backbone"], Mapping):
                raise ValueError("DepthConfig.backbone must be a mapping of ViLConfig fields")
            values["backbone"] = ViLConfig.from_dict(values["backbone"])
        return cls(**values)


class ResidualConvUnit(nn.Module):
    """x + conv(relu(conv(relu(x)))), the RefineNet unit used by DPT."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """Adds a refined skip level (if any), refines, upsamples bilinearly to `size`, mixes with a 1x1 conv."""

    def __init__(self, features: int, with_skip: bool) -> None:
        super().__init__()
        self.skip_unit = ResidualConvUnit(features) if with_skip else None
        self.unit = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        if self.skip_unit is not None:
            x = x + self.skip_unit(skip)
        x = F.interpolate(self.unit(x), size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


def _reassemble(dim: int, channels: int, level: int) -> nn.Sequential:
    """1x1 projection, then resampling from stride 16 to stride 4, 8, 16 or 32 for level 0..3."""
    resize: nn.Module = (nn.ConvTranspose2d(channels, channels, 4, stride=4),
                         nn.ConvTranspose2d(channels, channels, 2, stride=2),
                         nn.Identity(),
                         nn.Conv2d(channels, channels, 3, stride=2, padding=1))[level]
    return nn.Sequential(nn.Conv2d(dim, channels, 1), resize)


class DPTNeck(nn.Module):
    """Four stride-16 token maps -> one fused map of `features` channels at stride 2 (of the input)."""

    def __init__(self, dim: int, channels: tuple[int, int, int, int], features: int) -> None:
        super().__init__()
        self.reassemble = nn.ModuleList(_reassemble(dim, c, level) for level, c in enumerate(channels))
        self.to_features = nn.ModuleList(nn.Conv2d(c, features, 3, padding=1, bias=False) for c in channels)
        self.fusion = nn.ModuleList(FusionBlock(features, with_skip=level < 3) for level in range(4))

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        levels = [to_feat(resample(tap)) for tap, resample, to_feat in zip(taps, self.reassemble, self.to_features)]
        finest = levels[0].shape[-2:]
        x = self.fusion[3](levels[3], None, levels[2].shape[-2:])
        x = self.fusion[2](x, levels[2], levels[1].shape[-2:])
        x = self.fusion[1](x, levels[1], finest)
        return self.fusion[0](x, levels[0], (2 * finest[0], 2 * finest[1]))


class DepthHead(nn.Module):
    """Stride-2 features -> the map at the input size: conv, upsampling, conv, ReLU, 1x1 conv, ReLU (or sigmoid x max).

    With guide_channels > 0 the head also sees the (normalised) image: a stride-2 image branch corrects the
    neck's features through a residual conv before upsampling (zero-initialised, so it starts as the plain
    head), and a full-resolution image branch joins the upsampled features before the last convs.
    """

    def __init__(self, features: int, max_depth_m: float | None, guide_channels: int = 0) -> None:
        super().__init__()
        half = features // 2
        self.conv1 = nn.Conv2d(features, half, 3, padding=1)
        self.guided = guide_channels > 0
        if self.guided:
            self.image_half = nn.Sequential(nn.Conv2d(3, guide_channels, 3, stride=2, padding=1), nn.ReLU(),
                                            nn.Conv2d(guide_channels, guide_channels, 3, padding=1), nn.ReLU())
            self.fuse_half = nn.Conv2d(half + guide_channels, half, 3, padding=1)
            nn.init.zeros_(self.fuse_half.weight)
            nn.init.zeros_(self.fuse_half.bias)
            self.image_full = nn.Sequential(nn.Conv2d(3, guide_channels, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Conv2d(half + guide_channels, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 1, 1)
        self.max_depth_m = max_depth_m
        if max_depth_m is None:  # start inside the final ReLU's active range, or a fresh model gets no gradient
            nn.init.constant_(self.conv3.bias, 1.0)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        size = (image.shape[2], image.shape[3])
        x = self.conv1(x)
        if self.guided:
            x = x + self.fuse_half(F.relu(torch.cat((x, self.image_half(image)), 1)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        if self.guided:
            x = torch.cat((x, self.image_full(image)), 1)
        x = self.conv3(F.relu(self.conv2(x)))
        if self.max_depth_m is None:
            return F.relu(x)
        return torch.sigmoid(x) * self.max_depth_m


class DepthModel(nn.Module):
    """ViL + DPT: images (B, 3, H, W), RGB in [0, 1], H and W multiples of 16 -> (B, H, W) map.

    The map is relative inverse depth or metres, as `config.output` says. Normalisation with the ImageNet
    statistics happens inside, so every caller feeds the same [0, 1] images.
    """

    def __init__(self, config: DepthConfig, mlstm: MLSTMOptions | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = ViLBackbone(config.backbone, mlstm)
        self.neck = DPTNeck(config.backbone.dim, config.neck_channels, config.features)
        self.head = DepthHead(config.features, config.max_depth_m if config.uses_scale_head else None,
                              config.guide_channels)
        self.register_buffer("image_mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def output_kind(self) -> str:
        """RELATIVE or METRIC."""
        return self.config.output

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) RGB in [0, 1], got {tuple(images.shape)}")
        normalised = (images - self.image_mean) / self.image_std
        out = self.head(self.neck(self.backbone(normalised)), normalised)[:, 0]
        if self.config.calibration is None:
            return out
        scale, shift = self.config.calibration
        return 1.0 / (scale * out + shift).clamp(min=1.0 / self.config.max_depth_m)


def fit_scale_shift(prediction: torch.Tensor, target: torch.Tensor,
                    mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares (s, b) minimising sum over mask of (s * prediction + b - target)^2, per leading index.

    prediction, target, mask: (..., H, W). Returns s, b of shape (...) in the prediction's dtype. A
    degenerate fit (prediction constant to within its own rounding, or fewer than two valid pixels) gives
    s = 0 and b = the mean target. Computed in float64 around the means (a fresh model's maps have a spread
    far below their mean, which the uncentred normal equations lose in float32).
    This is the alignment of the relative-depth protocol (MiDaS), in closed form.
    """
    dtype = prediction.dtype
    p, t = prediction.double().flatten(-2), target.double().flatten(-2)
    w = (torch.ones_like(p) if mask is None else mask.double().flatten(-2))
    count = w.sum(-1)
    safe_count = count.clamp(min=1.0)
    mean_p, mean_t = (w * p).sum(-1) / safe_count, (w * t).sum(-1) / safe_count
    dp, dt = p - mean_p[..., None], t - mean_t[..., None]
    variance, covariance = (w * dp * dp).sum(-1), (w * dp * dt).sum(-1)
    valid = (count >= 2) & (variance > 16 * torch.finfo(dtype).eps * (w * p * p).sum(-1))
    scale = torch.where(valid, covariance / torch.where(valid, variance, torch.ones_like(variance)),
                        torch.zeros_like(variance))
    shift = mean_t - scale * mean_p
    return scale.to(dtype), shift.to(dtype)


def save_depth_checkpoint(model: DepthModel, path: str | os.PathLike,
                          meta: Mapping[str, Any] | None = None) -> Path:
    """Write {"state_dict", "config", "meta"} atomically; `meta` is free-form plain data (training run, metrics)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return save_checkpoint({"state_dict": state, "config": model.config.to_dict(), "meta": dict(meta or {})}, path)


def load_depth_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                          mlstm: MLSTMOptions | None = None) -> tuple[DepthModel, dict[str, Any]]:
    """Rebuild a DepthModel from its checkpoint (strict) and return it with the checkpoint's meta dict."""
    payload = load_checkpoint(path, map_location)
    if not isinstance(payload.get("config"), Mapping):
        raise CheckpointError(f"{path}: no 'config' mapping; not a depth checkpoint written by save_depth_checkpoint")
    try:
        config = DepthConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid 'config': {error}") from error
    model = DepthModel(config, mlstm)
    load_into(model, state_dict_of(payload, path), path)
    meta = payload.get("meta", {})
    return model.eval(), dict(meta) if isinstance(meta, Mapping) else {}
