"""ViL (Vision-LSTM, VisionLSTM2 layout): image patches through bidirectional mLSTM block pairs.

The layout, parameter names and shapes are those of the official VisionLSTM2 module, so that its ImageNet
checkpoints load strictly after the official v2 rename list. Two
departures leave the weights untouched: the 3x3 depthwise conv runs on the token grid of the actual input
(any size that is a multiple of the patch size, non-square included) rather than on a grid fixed at
construction, and the mLSTM cell runs through `xlstm_ros.kernels` (chunkwise by default) rather than the
quadratic parallel form, which costs O(S^2) per head and dominates the runtime at high resolution.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xlstm_ros import kernels
from xlstm_ros.models.checkpoints import CheckpointError, load_checkpoint, load_into, state_dict_of

MLSTM_MODES = ("chunkwise", "parallel", "recurrent")


@dataclass(frozen=True)
class ViLConfig:
    """Architecture of a ViL backbone; `depth` counts block pairs (one forward, one reversed sub-block each)."""

    dim: int = 192
    depth: int = 12
    feature_pairs: tuple[int, ...] = (2, 5, 8, 11)
    patch_size: int = 16
    in_channels: int = 3
    pos_grid: tuple[int, int] = (14, 14)
    expansion: int = 2
    qkv_block_size: int = 4
    num_heads: int = 4
    conv_kernel_size: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_pairs", tuple(int(p) for p in self.feature_pairs))
        object.__setattr__(self, "pos_grid", tuple(int(g) for g in self.pos_grid))
        for name in ("dim", "depth", "patch_size", "in_channels", "expansion", "qkv_block_size", "num_heads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ViLConfig.{name} must be >= 1, got {getattr(self, name)}")
        if len(self.pos_grid) != 2 or min(self.pos_grid) < 1:
            raise ValueError(f"ViLConfig.pos_grid must be two positive sizes, got {self.pos_grid}")
        if not self.feature_pairs or any(not 0 <= p < self.depth for p in self.feature_pairs):
            raise ValueError(f"ViLConfig.feature_pairs must be non-empty indices in [0, {self.depth}), "
                             f"got {self.feature_pairs}")
        if list(self.feature_pairs) != sorted(set(self.feature_pairs)):
            raise ValueError(f"ViLConfig.feature_pairs must be strictly increasing, got {self.feature_pairs}")
        if self.inner_dim % self.qkv_block_size or self.inner_dim % self.num_heads:
            raise ValueError(f"ViLConfig: inner dim {self.inner_dim} (= expansion x dim) must be divisible by "
                             f"qkv_block_size {self.qkv_block_size} and num_heads {self.num_heads}")
        if self.conv_kernel_size < 1 or self.conv_kernel_size % 2 == 0:
            raise ValueError(f"ViLConfig.conv_kernel_size must be odd and positive, got {self.conv_kernel_size}")

    @property
    def inner_dim(self) -> int:
        """Width of the mLSTM branch (the official `expansion * dim`)."""
        return self.expansion * self.dim

    @property
    def head_dim(self) -> int:
        """Per-head size of q, k and v in the mLSTM cell."""
        return self.inner_dim // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (lists, ints) that a weights-only checkpoint can store."""
        data = asdict(self)
        data["feature_pairs"] = list(self.feature_pairs)
        data["pos_grid"] = list(self.pos_grid)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ViLConfig":
        """Inverse of `to_dict`; an unknown key is an error naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"ViLConfig: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")
        return cls(**dict(data))


VIL_CONFIGS: dict[str, ViLConfig] = {
    # The official ImageNet models: 12 pairs, head dim D/2.
    "vil_tiny": ViLConfig(dim=192),
    "vil_small": ViLConfig(dim=384),
    "vil_base": ViLConfig(dim=768),
    # Our own CPU-trainable sizes; head dims 64 and 32 are powers of two, the fast case for the Triton kernels.
    "vil_nano": ViLConfig(dim=128, depth=8, feature_pairs=(1, 3, 5, 7)),
    "vil_micro": ViLConfig(dim=64, depth=4, feature_pairs=(0, 1, 2, 3)),
}


def vil_config(name: str, **overrides: Any) -> ViLConfig:
    """A named configuration from VIL_CONFIGS, optionally with fields replaced."""
    if name not in VIL_CONFIGS:
        raise ValueError(f"unknown ViL config '{name}' (known: {', '.join(VIL_CONFIGS)})")
    return replace(VIL_CONFIGS[name], **overrides)


@dataclass(frozen=True)
class MLSTMOptions:
    """How the mLSTM cell is evaluated; all modes compute the same function.

    chunkwise: O(S * chunk) memory, the default. parallel: the quadratic form (an export-friendly graph at
    small S). recurrent: one token at a time on a persistent state (the reference for tests).
    """

    mode: str = "chunkwise"
    chunk_size: int = 64
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in MLSTM_MODES:
            raise ValueError(f"mlstm_mode must be one of {', '.join(MLSTM_MODES)}, got '{self.mode}'")
        if self.backend not in kernels.BACKENDS:
            raise ValueError(f"mlstm backend must be one of {', '.join(kernels.BACKENDS)}, got '{self.backend}'")
        if self.chunk_size < 1:
            raise ValueError(f"mlstm chunk_size must be >= 1, got {self.chunk_size}")


def run_mlstm(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, igate: torch.Tensor, fgate: torch.Tensor,
              options: MLSTMOptions) -> torch.Tensor:
    """mLSTM over a whole sequence from a zero state: q, k, v (B, NH, S, DH), gates (B, NH, S) -> h like v."""
    if options.mode == "chunkwise":
        h, _ = kernels.mlstm_chunkwise(q, k, v, igate, fgate, chunk_size=options.chunk_size,
                                       backend=options.backend)
        return h
    if options.mode == "parallel":
        return kernels.mlstm_parallel(q, k, v, igate, fgate)
    batch, heads, length, dim_qk = q.shape
    state_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32  # the kernels compute in these
    state = kernels.mlstm_zero_state(batch, heads, dim_qk, v.shape[-1], device=q.device, dtype=state_dtype)
    steps = [kernels.mlstm_step(q[:, :, t], k[:, :, t], v[:, :, t], igate[:, :, t], fgate[:, :, t], state,
                                backend=options.backend) for t in range(length)]
    return torch.stack(steps, dim=2)


class ResidualLayerNorm(nn.Module):
    """LayerNorm whose stored weight is gamma - 1 (the official 'residual weight'; zeros = identity scale)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], 1.0 + self.weight, self.bias, self.eps)


class ResidualGroupNorm(nn.Module):
    """Per-head normalisation of the mLSTM output over the last dim of (..., NH * DH); weight is gamma - 1."""

    def __init__(self, dim: int, num_groups: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.num_groups = num_groups
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        return F.group_norm(flat, self.num_groups, 1.0 + self.weight, self.bias, self.eps).view_as(x)


class HeadwiseLinear(nn.Module):
    """Block-diagonal linear map: blocks of `block_size` features each get their own square matrix.

    weight (dim / block_size, out, in), as the official LinearHeadwiseExpand stores it, plus a bias (dim,).
    """

    def __init__(self, dim: int, block_size: int, init_dim: int) -> None:
        super().__init__()
        self.block_size = block_size
        self.weight = nn.Parameter(torch.empty(dim // block_size, block_size, block_size))
        self.bias = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.weight, std=math.sqrt(2 / (5 * init_dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = x.unflatten(-1, (-1, self.block_size))
        return torch.einsum("...hi,hoi->...ho", blocks, self.weight).flatten(-2) + self.bias


class MatrixLSTMCell(nn.Module):
    """Gates from concat(q, k, v), the mLSTM recurrence through kernels, and the per-head output norm."""

    def __init__(self, inner_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.igate = nn.Linear(3 * inner_dim, num_heads)
        self.fgate = nn.Linear(3 * inner_dim, num_heads)
        self.outnorm = ResidualGroupNorm(inner_dim, num_heads)
        nn.init.zeros_(self.igate.weight)
        nn.init.normal_(self.igate.bias, std=0.1)
        nn.init.zeros_(self.fgate.weight)
        with torch.no_grad():  # forget gates start open (sigmoid(3..6) ~ 0.95..0.998), one value per head
            self.fgate.bias.copy_(torch.linspace(3.0, 6.0, num_heads))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, options: MLSTMOptions) -> torch.Tensor:
        """(B, S, E) each -> normalised hidden states (B, S, E)."""
        # Both gate layers applied to concat(q, k, v) as three products with column blocks of their
        # stacked weights: the same function without materialising the (B, S, 3E) concatenation.
        w_q, w_k, w_v = torch.cat([self.igate.weight, self.fgate.weight]).chunk(3, dim=1)
        bias = torch.cat([self.igate.bias, self.fgate.bias])
        gates = F.linear(q, w_q) + F.linear(k, w_k) + F.linear(v, w_v, bias)
        igate, fgate = gates.transpose(1, 2).chunk(2, dim=1)  # (B, NH, S) each
        heads = [t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for t in (q, k, v)]  # (B, NH, S, DH)
        h = run_mlstm(*heads, igate, fgate, options).to(v.dtype)  # the kernels compute half types in float32
        return self.outnorm(h.transpose(1, 2).flatten(2))


class ViLLayer(nn.Module):
    """The ViL mLSTM layer on tokens in row-major order of a (h, w) grid."""

    def __init__(self, config: ViLConfig) -> None:
        super().__init__()
        dim, inner = config.dim, config.inner_dim
        self.proj_up = nn.Linear(dim, 2 * inner)
        self.q_proj = HeadwiseLinear(inner, config.qkv_block_size, init_dim=dim)
        self.k_proj = HeadwiseLinear(inner, config.qkv_block_size, init_dim=dim)
        self.v_proj = HeadwiseLinear(inner, config.qkv_block_size, init_dim=dim)
        self.conv = nn.Conv2d(inner, inner, config.conv_kernel_size, padding=config.conv_kernel_size // 2,
                              groups=inner)
        self.mlstm_cell = MatrixLSTMCell(inner, config.num_heads)
        self.learnable_skip = nn.Parameter(torch.ones(inner))
        self.proj_down = nn.Linear(inner, dim)
        # Official initialisation: "small init" for the up and q/k/v projections, "wang init" (1 block) down.
        nn.init.normal_(self.proj_up.weight, std=math.sqrt(2 / (5 * dim)))
        nn.init.zeros_(self.proj_up.bias)
        nn.init.normal_(self.proj_down.weight, std=2 / math.sqrt(dim))
        nn.init.zeros_(self.proj_down.bias)

    def forward(self, x: torch.Tensor, grid: tuple[int, int], options: MLSTMOptions) -> torch.Tensor:
        x_mlstm, z = self.proj_up(x).chunk(2, dim=-1)
        image = x_mlstm.unflatten(1, grid).permute(0, 3, 1, 2)  # (B, E, h, w) channels-last: 2-D neighbours
        x_conv = F.silu(self.conv(image).permute(0, 2, 3, 1).flatten(1, 2))
        h = self.mlstm_cell(self.q_proj(x_conv), self.k_proj(x_conv), self.v_proj(x_mlstm), options)
        return self.proj_down((h + self.learnable_skip * x_conv) * F.silu(z))


class ViLBlock(nn.Module):
    """Pre-norm residual around one ViL layer; `reverse` runs it on the token order rotated by 180 degrees."""

    def __init__(self, config: ViLConfig, reverse: bool) -> None:
        super().__init__()
        self.reverse = reverse
        self.norm = ResidualLayerNorm(config.dim)
        self.layer = ViLLayer(config)

    def forward(self, x: torch.Tensor, grid: tuple[int, int], options: MLSTMOptions) -> torch.Tensor:
        if not self.reverse:
            return x + self.layer(self.norm(x), grid, options)
        return x + self.layer(self.norm(x.flip(1)), grid, options).flip(1)


class ViLBlockPair(nn.Module):
    """Forward then reversed sub-block; official key names `rowwise_from_top_left` / `rowwise_from_bot_right`."""

    def __init__(self, config: ViLConfig) -> None:
        super().__init__()
        self.rowwise_from_top_left = ViLBlock(config, reverse=False)
        self.rowwise_from_bot_right = ViLBlock(config, reverse=True)

    def forward(self, x: torch.Tensor, grid: tuple[int, int], options: MLSTMOptions) -> torch.Tensor:
        return self.rowwise_from_bot_right(self.rowwise_from_top_left(x, grid, options), grid, options)


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection (official key `patch_embed.proj`)."""

    def __init__(self, config: ViLConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(config.in_channels, config.dim, config.patch_size, stride=config.patch_size)
        nn.init.xavier_uniform_(self.proj.weight.view(config.dim, -1))
        nn.init.zeros_(self.proj.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).permute(0, 2, 3, 1)  # (B, h, w, D)


def resize_position_table(table: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Bicubic resize of a (1, gh, gw, D) position table to `grid`, as the official loader does."""
    if tuple(table.shape[1:3]) == tuple(grid):
        return table
    resized = F.interpolate(table.permute(0, 3, 1, 2), size=tuple(grid), mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1)


class PositionTable(nn.Module):
    """Learned 2-D position embedding (official key `pos_embed.embed`), resized to the runtime grid."""

    def __init__(self, config: ViLConfig) -> None:
        super().__init__()
        self.embed = nn.Parameter(torch.zeros(1, *config.pos_grid, config.dim))
        nn.init.trunc_normal_(self.embed, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens + resize_position_table(self.embed, tokens.shape[1:3])


class ViLBackbone(nn.Module):
    """VisionLSTM2 in feature mode: images (B, C, H, W) -> list of (B, D, H/16, W/16) maps, one per tapped pair.

    Each tap is the output of block pair `config.feature_pairs[i]`, normalised with the final `norm` (the
    official post-blocks norm, eps 1e-6); pairs after the last tap are not run. `mlstm` selects how the
    cell is evaluated (`MLSTMOptions`) and may be replaced at any time; it is not part of the weights.
    """

    def __init__(self, config: ViLConfig, mlstm: MLSTMOptions | None = None) -> None:
        super().__init__()
        self.config = config
        self.mlstm = mlstm or MLSTMOptions()
        self.patch_embed = PatchEmbed(config)
        self.pos_embed = PositionTable(config)
        self.blocks = nn.ModuleList(ViLBlockPair(config) for _ in range(config.depth))
        self.norm = ResidualLayerNorm(config.dim, eps=1e-6)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        patch = self.config.patch_size
        if images.ndim != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(f"images must be (B, {self.config.in_channels}, H, W), got {tuple(images.shape)}")
        if images.shape[2] % patch or images.shape[3] % patch or min(images.shape[2:]) == 0:
            raise ValueError(f"images: height and width must be positive multiples of the patch size {patch}, "
                             f"got {tuple(images.shape[2:])}")
        tokens = self.pos_embed(self.patch_embed(images))
        grid = (tokens.shape[1], tokens.shape[2])
        x = tokens.flatten(1, 2)  # row-major token order (B, S, D)
        taps = []
        for index, block in enumerate(self.blocks[: self.config.feature_pairs[-1] + 1]):
            x = block(x, grid, self.mlstm)
            if index in self.config.feature_pairs:
                taps.append(self.norm(x).transpose(1, 2).unflatten(2, grid))
        return taps


# Raw training-codebase keys -> VisionLSTM2 module keys: the official hubconf `preprocess="v2"` list.
_RAW_KEY_RENAMES = ((".xlstm.", ".layer."), ("xlstm.", ""), (".xlstm_norm.", ".norm."), (".conv1d.", ".conv."))
_RAW_TOP_LEVEL_RENAMES = {"post_blocks_norm.weight": "norm.weight", "post_blocks_norm.bias": "norm.bias",
                          "head.0.weight": "legacy_norm.weight", "head.0.bias": "legacy_norm.bias",
                          "head.1.weight": "head.weight", "head.1.bias": "head.bias"}
_RAW_BLOCK = re.compile(r"(^|\.)blocks\.(\d+)\.")
# Classifier parameters of the official model; a feature backbone has no use for them.
CLASSIFIER_KEY_PREFIXES = ("head.", "legacy_norm.")


def _paired_block_key(match: re.Match) -> str:
    index = int(match.group(2))
    side = "rowwise_from_top_left" if index % 2 == 0 else "rowwise_from_bot_right"
    return f"{match.group(1)}blocks.{index // 2}.{side}."


def is_raw_official_state(state: Mapping[str, torch.Tensor]) -> bool:
    """True for keys in the training-codebase naming (before the official rename list)."""
    return any(key.startswith("xlstm.") or ".xlstm." in key or key.startswith("post_blocks_norm.")
               for key in state)


def rename_official_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Apply the official v2 rename list to raw checkpoint keys.

    In order: `.xlstm.` -> `.layer.`, `xlstm.` -> ``, `.xlstm_norm.` -> `.norm.`, `.conv1d.` -> `.conv.`,
    flat sub-block `blocks.{i}.` -> `blocks.{i // 2}.rowwise_from_top_left.` (even i) or
    `.rowwise_from_bot_right.` (odd i), `post_blocks_norm` -> `norm`, `head.0` -> `legacy_norm`, `head.1` -> `head`.
    """
    renamed = {}
    for key, tensor in state.items():
        for old, new in _RAW_KEY_RENAMES:
            key = key.replace(old, new)
        key = _RAW_BLOCK.sub(_paired_block_key, key, count=1)
        renamed[_RAW_TOP_LEVEL_RENAMES.get(key, key)] = tensor
    return renamed


def infer_vil_config(state: Mapping[str, torch.Tensor], path: str | os.PathLike = "<state_dict>") -> ViLConfig:
    """The ViLConfig that a VisionLSTM2 state dict (module keys) was built with, read from its shapes."""
    try:
        dim, in_channels, patch, _ = state["patch_embed.proj.weight"].shape
        pos_grid = tuple(state["pos_embed.embed"].shape[1:3])
        inner = state["blocks.0.rowwise_from_top_left.layer.learnable_skip"].shape[0]
        block_size = state["blocks.0.rowwise_from_top_left.layer.q_proj.weight"].shape[-1]
        num_heads = state["blocks.0.rowwise_from_top_left.layer.mlstm_cell.igate.weight"].shape[0]
        kernel = state["blocks.0.rowwise_from_top_left.layer.conv.weight"].shape[-1]
    except KeyError as error:
        raise CheckpointError(f"{path}: missing key {error} needed to infer the ViL architecture") from error
    except ValueError as error:
        raise CheckpointError(f"{path}: unexpected tensor rank in 'patch_embed.proj.weight' ({error})") from error
    pairs = {int(m.group(2)) for key in state if (m := _RAW_BLOCK.match(key))}
    depth = max(pairs) + 1
    taps = sorted({max(0, (depth * (k + 1)) // 4 - 1) for k in range(4)})
    try:
        return ViLConfig(dim=dim, depth=depth, feature_pairs=tuple(taps), patch_size=patch,
                         in_channels=in_channels, pos_grid=pos_grid, expansion=inner // dim,
                         qkv_block_size=block_size, num_heads=num_heads, conv_kernel_size=kernel)
    except ValueError as error:
        raise CheckpointError(f"{path}: not a ViL state dict ({error})") from error


def load_vil_checkpoint(path: str | os.PathLike, backbone: ViLBackbone | None = None,
                        map_location: str | torch.device = "cpu") -> ViLBackbone:
    """Load official VisionLSTM2 weights (raw training-codebase or module keys) strictly into a backbone.

    Without `backbone`, one is built with the architecture read from the checkpoint's shapes (taps spread
    evenly, [2, 5, 8, 11] for 12 pairs). Classifier keys (`head.*`, `legacy_norm.*`) are dropped; every other
    key must match in name and shape, else CheckpointError names the file and the key. A position table
    for another grid is resized bicubically to the backbone's `pos_grid`.
    """
    state = state_dict_of(load_checkpoint(path, map_location), path)
    if is_raw_official_state(state):
        state = rename_official_keys(state)
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_KEY_PREFIXES)}
    if backbone is None:
        backbone = ViLBackbone(infer_vil_config(state, path))
    table = state.get("pos_embed.embed")
    if table is not None and table.ndim == 4 and table.shape[0] == 1 and table.shape[-1] == backbone.config.dim:
        state["pos_embed.embed"] = resize_position_table(table.float(), backbone.config.pos_grid).to(table.dtype)
    load_into(backbone, state, path)
    return backbone
