"""DepthEstimator: RGB frames in, depth maps at the frames' own resolution out (ROS-free).

Each frame is resized to a network size (16-multiples; by default keeping the aspect ratio with the shorter
side at the model's `input_short_side`), normalised inside the model, run in batches of equal network size,
and the map is resized back to the frame. Optional temporal smoothing keeps one state per camera:

Relative inverse depth is defined only up to a scale and a shift per frame, and most frame-to-frame flicker
of a monocular model lives in exactly those two numbers. With `smoothing` = a > 0 the engine therefore
fits (s, b) so that s * p_t + b matches the camera's running map R_{t-1} (least squares over all pixels),
then updates R_t = a * R_{t-1} + (1 - a) * (s * p_t + b) and returns R_t. The output keeps one consistent
scale over time (what colour maps, SLAM and scale fitting downstream want) and per-pixel noise is low-passed
with a time constant of about 1 / (1 - a) frames. Metric maps are blended in inverse depth without the fit.
There is no motion compensation, so a fast-moving camera wants a small `a`; when the aligned frame differs
from the running map by more than `reset_threshold` times the map's spread (a scene cut), the state
restarts from the new frame.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from xlstm_ros.engines.device import DeviceError, select_backend, select_device
from xlstm_ros.models.checkpoints import CheckpointError
from xlstm_ros.models.depth import RELATIVE, DepthModel, fit_scale_shift, load_depth_checkpoint
from xlstm_ros.models.vil import MLSTMOptions

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
# The shipped default model (trained by `xlstm_ros.train`); used when no checkpoint is given.
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "vil_depth.pt"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEFAULT_CAMERA = "default"
MAX_ASPECT_RATIO = 8.0


@dataclass(frozen=True)
class DepthResult:
    """One frame's map: float32 (H, W) at the frame's resolution; `kind` is RELATIVE or METRIC (metres)."""

    depth: np.ndarray
    kind: str
    network_size: tuple[int, int]


def parse_dtype(dtype: torch.dtype | str, device: torch.device) -> torch.dtype:
    """"float32" | "float16" | "bfloat16" (or the torch dtype) -> torch dtype usable on `device`."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise DeviceError(f"invalid dtype '{dtype}' (expected one of {', '.join(DTYPES)})")
        dtype = DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise DeviceError(f"invalid dtype {dtype} (expected one of {', '.join(DTYPES)})")
    if dtype == torch.float16 and device.type == "cpu":
        raise DeviceError("dtype float16 needs a CUDA device; use float32 or bfloat16 on the CPU")
    return dtype


def as_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """uint8 (H, W, 3) RGB view of an RGB or single-channel (mono, replicated) uint8 image."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name}: expected (H, W, 3) RGB or (H, W) mono, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name}: image is empty (shape {image.shape})")
    return image


class DepthEstimator:
    """Batched depth inference with optional per-camera temporal smoothing (see the module docstring).

    input_size: fixed network (height, width), multiples of 16; None keeps each frame's aspect ratio with
    the shorter side near `short_side` (default: the model's `input_short_side`).
    """

    def __init__(self, model: DepthModel, *, device: str = "auto", dtype: torch.dtype | str = "float32",
                 input_size: tuple[int, int] | None = None, short_side: int | None = None,
                 smoothing: float = 0.0, reset_threshold: float = 0.5, max_batch: int = 8,
                 mlstm_mode: str = "chunkwise", chunk_size: int = 64, backend: str = "auto",
                 fallback_to_cpu: bool = False, on_fallback: Callable[[str], None] | None = None) -> None:
        patch = model.config.backbone.patch_size
        if input_size is not None:
            input_size = (int(input_size[0]), int(input_size[1]))
            if min(input_size) < patch or input_size[0] % patch or input_size[1] % patch:
                raise ValueError(f"input_size must be (height, width), positive multiples of {patch}, "
                                 f"got {input_size}")
        self.short_side = int(short_side if short_side is not None else model.config.input_short_side)
        if self.short_side < patch:
            raise ValueError(f"short_side must be >= {patch}, got {self.short_side}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        if not reset_threshold > 0:
            raise ValueError(f"reset_threshold must be > 0, got {reset_threshold}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.device = select_device(device, fallback_to_cpu=fallback_to_cpu, on_fallback=on_fallback)
        self.dtype = parse_dtype(dtype, self.device)
        self.input_size = input_size
        self.smoothing = float(smoothing)
        self.reset_threshold = float(reset_threshold)
        self.max_batch = int(max_batch)
        self.patch = patch
        model.backbone.mlstm = MLSTMOptions(mode=mlstm_mode, chunk_size=chunk_size,
                                            backend=select_backend(backend, self.device))
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self._states: dict[str, torch.Tensor] = {}

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None, **options) -> "DepthEstimator":
        """Load a depth checkpoint (None: the shipped DEFAULT_CHECKPOINT); `options` as for the constructor."""
        if path is None:
            if not DEFAULT_CHECKPOINT.is_file():
                raise CheckpointError(f"{DEFAULT_CHECKPOINT}: no checkpoint given and the shipped default model "
                                      "is missing; train one with `xlstm-ros train depth` or pass a checkpoint path")
            path = DEFAULT_CHECKPOINT
        model, _ = load_depth_checkpoint(path)
        return cls(model, **options)

    @property
    def kind(self) -> str:
        """RELATIVE (inverse depth, larger is nearer) or METRIC (metres)."""
        return self.model.output_kind

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) a frame of this size is resized to before inference."""
        if self.input_size is not None:
            return self.input_size
        if max(height, width) > MAX_ASPECT_RATIO * min(height, width):
            raise ValueError(f"image of {height}x{width} has an aspect ratio above {MAX_ASPECT_RATIO:g}; "
                             "set a fixed input_size to run it")
        scale = self.short_side / min(height, width)
        return tuple(max(self.patch, self.patch * round(side * scale / self.patch)) for side in (height, width))

    def preprocess(self, image: np.ndarray, name: str = "image") -> torch.Tensor:
        """uint8 RGB or mono frame -> (1, 3, h, w) RGB in [0, 1] at the network size, on the engine's device."""
        rgb = as_rgb(image, name)
        tensor = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(2, 0, 1)[None].float() / 255
        size = self.network_size(rgb.shape[0], rgb.shape[1])
        if tuple(tensor.shape[2:]) != size:
            tensor = F.interpolate(tensor, size=size, mode="bicubic", align_corners=False, antialias=True)
        return tensor.clamp_(0.0, 1.0).to(self.dtype)

    def reset(self, camera: str | None = None) -> None:
        """Forget the smoothing state of one camera (None: of all cameras)."""
        if camera is None:
            self._states.clear()
        else:
            self._states.pop(camera, None)

    def estimate(self, images: Sequence[np.ndarray], cameras: Sequence[str] | None = None) -> list[DepthResult]:
        """Depth maps for `images` (uint8 RGB or mono), in order; frames of one camera are taken in list order.

        cameras: one id per image for the smoothing state (default: all DEFAULT_CAMERA); unused without
        smoothing. Frames of equal network size run as one batch (at most `max_batch` at a time).
        """
        cameras = [DEFAULT_CAMERA] * len(images) if cameras is None else list(cameras)
        if len(cameras) != len(images):
            raise ValueError(f"cameras: got {len(cameras)} ids for {len(images)} images")
        inputs = [self.preprocess(image, f"images[{i}]") for i, image in enumerate(images)]
        outputs: list[torch.Tensor | None] = [None] * len(inputs)
        groups: dict[tuple[int, int], list[int]] = {}
        for index, tensor in enumerate(inputs):
            groups.setdefault(tuple(tensor.shape[2:]), []).append(index)
        with torch.inference_mode():
            for indices in groups.values():
                for start in range(0, len(indices), self.max_batch):
                    chunk = indices[start:start + self.max_batch]
                    maps = self.model(torch.cat([inputs[i] for i in chunk])).float()
                    for i, depth_map in zip(chunk, maps):
                        outputs[i] = depth_map
            results = []
            for image, camera, depth_map in zip(images, cameras, outputs):
                if self.smoothing > 0:
                    depth_map = self._smooth(camera, depth_map)
                height, width = image.shape[:2]
                full = F.interpolate(depth_map[None, None], size=(height, width), mode="bilinear",
                                     align_corners=False)[0, 0]
                results.append(DepthResult(full.cpu().numpy().astype(np.float32, copy=False), self.kind,
                                           tuple(depth_map.shape)))
        return results

    def _smooth(self, camera: str, depth_map: torch.Tensor) -> torch.Tensor:
        """One smoothing update of `camera`'s state with a new (h, w) map; returns the smoothed map."""
        relative = self.kind == RELATIVE
        inverse = depth_map if relative else 1.0 / depth_map.clamp(min=1e-6)
        previous = self._states.get(camera)
        state = inverse
        if previous is not None and previous.shape == inverse.shape:
            scale, shift = fit_scale_shift(inverse, previous) if relative else (1.0, 0.0)
            aligned = scale * inverse + shift
            residual = (aligned - previous).square().mean().sqrt()
            if scale > 0 and residual <= self.reset_threshold * previous.std():
                state = self.smoothing * previous + (1.0 - self.smoothing) * aligned
                state = state.clamp(min=0.0) if relative else state.clamp(min=1.0 / self.model.config.max_depth_m)
        self._states[camera] = state
        return state if relative else 1.0 / state
