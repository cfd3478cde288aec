"""sLSTM blocks as TiRex stacks them: sLSTM layer and block, RMSNorm, SwiGLU feed-forward, residual MLP,
the stack's recurrent state, and the conversion of the checkpoint's recurrent weights to the kernels' layout.

Module and parameter names follow the NX-AI xLSTM/TiRex checkpoints (`fgate`, `igate`, ...,
`slstm_cell._recurrent_kernel_`), so official state dicts load unchanged. The sLSTM cell maths lives in
`xlstm_ros.kernels` (Triton on CUDA, the PyTorch reference elsewhere); these modules only produce the gate
pre-activations, call the kernels and post-process their output.

Naming quirk inherited from NX-AI/xlstm (the trained weights depend on it): the layer stacks the gate
projections as (fgate, igate, zgate, ogate) and the cell reads them as (i, f, z, o), so the parameter
called `fgate` feeds the INPUT gate and `igate` the FORGET gate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from xlstm_ros import kernels

PRECISIONS = kernels.SLSTM_PRECISIONS
"""sLSTM recurrence precisions: "bf16-compatible" rounds exactly where the official TiRex torch backend
rounds (bf16 W·x, R, h·R and states; fp32 pointwise maths); "fp32" keeps everything in float32."""

NUM_GATES = 4
STATE_SIZE = 4  # (h, c, n, m)

MIN_GEMM_ROWS = 16
"""Row-wise matrix products run on at least this many rows (see `batch_invariant`)."""


def batch_invariant(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply the row-wise map `fn` (..., F_in) -> (..., F_out) so that each row's result is independent of
    how many rows are computed together.

    CPU BLAS multiplies a few rows on other paths (matrix-vector, small-M kernels) that can round each row
    differently from the large-M path, so inputs with fewer than MIN_GEMM_ROWS rows are zero-padded to it.
    A one-token step, a short rollout and a full pass then round identically: that is what lets a streaming
    forecast equal a full pass, and the official multi-patch rollout, bitwise.
    """
    rows = math.prod(x.shape[:-1])
    if rows >= MIN_GEMM_ROWS:
        return fn(x)
    flat = x.reshape(rows, x.shape[-1])
    out = fn(torch.cat((flat, flat.new_zeros(MIN_GEMM_ROWS - rows, flat.shape[-1]))))[:rows]
    return out.reshape(*x.shape[:-1], *out.shape[1:])


def check_precision(precision: str) -> str:
    """Return `precision` if it is one of PRECISIONS, else raise a ValueError naming the parameter."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


class RMSNorm(nn.Module):
    """y = x / rms(x) * weight, normalised in float32 (eps 1e-6, no bias)."""

    def __init__(self, num_features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normalised = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normalised.to(x.dtype) * self.weight


class SwiGLUFeedForward(nn.Module):
    """y = W_down(SiLU(W_gate x) * W_up x), no biases."""

    def __init__(self, embedding_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.proj_up_gate = nn.Linear(embedding_dim, hidden_dim, bias=False)
        self.proj_up = nn.Linear(embedding_dim, hidden_dim, bias=False)
        self.proj_down = nn.Linear(hidden_dim, embedding_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return batch_invariant(self._rows, x)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_down(F.silu(self.proj_up_gate(x)) * self.proj_up(x))


def swiglu_hidden_dim(embedding_dim: int, proj_factor: float, multiple_of: int = 64) -> int:
    """FFN width: embedding_dim * proj_factor rounded up to a multiple of 64 (512 * 2.6667 -> 1408).

    Computed exactly as tirex-ts does, ((x + 63) // 64) * 64 on the float product, so that every config
    loads with the same shapes there (192 * 2.6667 = 512.006 gives 512, not 576)."""
    return int(((embedding_dim * proj_factor + multiple_of - 1) // multiple_of) * multiple_of)


class ResidualMLP(nn.Module):
    """y = W_out ReLU(W_hid x + b_hid) + b_out + W_res x + b_res: TiRex's patch embedding and head."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.hidden_layer = nn.Linear(in_dim, hidden_dim)
        self.output_layer = nn.Linear(hidden_dim, out_dim)
        self.residual_layer = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return batch_invariant(self._rows, x)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(F.relu(self.hidden_layer(x))) + self.residual_layer(x)


class HeadwiseLinear(nn.Module):
    """Block-diagonal projection: each head maps its own slice, weight (heads, out, in), no bias."""

    def __init__(self, features: int, num_heads: int) -> None:
        super().__init__()
        if features % num_heads:
            raise ValueError(f"features ({features}) must be a multiple of num_heads ({num_heads})")
        head_dim = features // num_heads
        self.num_heads = num_heads
        self.weight = nn.Parameter(torch.empty(num_heads, head_dim, head_dim))
        nn.init.normal_(self.weight, std=head_dim ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., features) -> (..., heads, head_dim)."""
        return batch_invariant(self._rows, x).unflatten(-1, (self.num_heads, -1))

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        heads = x.view(*x.shape[:-1], self.num_heads, -1)
        return torch.einsum("...hd,hod->...ho", heads, self.weight).flatten(-2)


class MultiHeadGroupNorm(nn.Module):
    """Per-head normalisation of the sLSTM output (group norm, eps 1e-5, scale 1 + weight, no bias)."""

    def __init__(self, features: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.weight = nn.Parameter(torch.zeros(features))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(..., heads, head_dim) -> (..., features)."""
        flat = h.reshape(-1, h.shape[-2] * h.shape[-1])
        out = F.group_norm(flat, num_groups=self.num_heads, weight=1.0 + self.weight)
        return out.view(*h.shape[:-2], -1)


def R_from_tirex(kernel: torch.Tensor) -> torch.Tensor:
    """TiRex `_recurrent_kernel_` (NH, DH_in, 4*DH_out), gate-major columns, as the kernels' R
    (NH, 4, DH_in, DH_out): a view of it."""
    if kernel.dim() != 3 or kernel.shape[2] != NUM_GATES * kernel.shape[1]:
        raise ValueError(f"kernel: expected shape (NH, DH, 4*DH), got {tuple(kernel.shape)}")
    return kernel.unflatten(2, (NUM_GATES, kernel.shape[1])).transpose(1, 2)


def bias_from_tirex(bias: torch.Tensor, num_heads: int) -> torch.Tensor:
    """TiRex `_bias_` (NH*4*DH,), stored head-major [head][gate][dim], as the kernels' bias (4, NH, DH):
    a view of it."""
    if bias.dim() != 1 or bias.numel() % (NUM_GATES * num_heads):
        raise ValueError(f"bias: expected a flat tensor of NH*4*DH values with NH={num_heads}, "
                         f"got shape {tuple(bias.shape)}")
    return bias.unflatten(0, (num_heads, NUM_GATES, -1)).transpose(0, 1)


class SLSTMCell(nn.Module):
    """The sLSTM recurrence parameters in the official stored layouts; the maths is in xlstm_ros.kernels.

    `_recurrent_kernel_` is (heads, head_dim_in, 4 * head_dim_out) with gates (i, f, z, o);
    `_bias_` is flat, head-major [head][gate][dim].
    """

    def __init__(self, features: int, num_heads: int) -> None:
        super().__init__()
        head_dim = features // num_heads
        self.num_heads = num_heads
        self.head_dim = head_dim
        self._recurrent_kernel_ = nn.Parameter(torch.empty(num_heads, head_dim, NUM_GATES * head_dim))
        self._bias_ = nn.Parameter(torch.empty(num_heads * NUM_GATES * head_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small recurrent weights and a forget-gate bias spread over 3..6 (long memory at start)."""
        nn.init.normal_(self._recurrent_kernel_, std=0.5 * self.head_dim ** -0.5)
        with torch.no_grad():
            bias = self._bias_.view(self.num_heads, NUM_GATES, self.head_dim)
            bias.zero_()
            bias[:, 1] = torch.linspace(3.0, 6.0, self.head_dim)

    def kernel_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(R (heads, 4, head_dim, head_dim), bias (4, heads, head_dim)) in the kernels' layout.

        Views of the parameters, not copies: they always hold the current weights (after load_state_dict,
        an optimiser step or .to()), cost nothing per call, and autograd reaches the parameters through them."""
        return R_from_tirex(self._recurrent_kernel_), bias_from_tirex(self._bias_, self.num_heads)

    def sequence(self, wx: torch.Tensor, state: torch.Tensor | None, *, precision: str,
                 backend: str) -> tuple[torch.Tensor, torch.Tensor]:
        """wx (B, T, 4, heads, head_dim) -> (h (B, T, heads, head_dim), final state (4, B, heads, head_dim))."""
        R, bias = self.kernel_weights()
        return kernels.slstm_sequence(wx, R, bias, state, precision=precision, backend=backend)

    def step(self, wx: torch.Tensor, state: torch.Tensor, rows: torch.Tensor | None, *, precision: str,
             backend: str) -> torch.Tensor:
        """One step for rows `rows` of the persistent `state` (updated in place) -> h (N, heads, head_dim)."""
        R, bias = self.kernel_weights()
        return kernels.slstm_step(wx, R, bias, state, rows=rows, precision=precision, backend=backend)


class SLSTMLayer(nn.Module):
    """Headwise gate projections -> sLSTM recurrence -> per-head group norm (no conv, no up-projection)."""

    def __init__(self, features: int, num_heads: int) -> None:
        super().__init__()
        self.fgate = HeadwiseLinear(features, num_heads)
        self.igate = HeadwiseLinear(features, num_heads)
        self.zgate = HeadwiseLinear(features, num_heads)
        self.ogate = HeadwiseLinear(features, num_heads)
        self.slstm_cell = SLSTMCell(features, num_heads)
        self.group_norm = MultiHeadGroupNorm(features, num_heads)

    def gate_preactivations(self, x: torch.Tensor) -> torch.Tensor:
        """(..., features) -> (..., 4, heads, head_dim) in the cell's gate order (i, f, z, o).

        `fgate` produces the input-gate and `igate` the forget-gate pre-activation (module docstring)."""
        return torch.stack((self.fgate(x), self.igate(x), self.zgate(x), self.ogate(x)), dim=-3)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, *, keep: int | None = None,
                precision: str, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, features), state None (fresh) or (4, B, heads, head_dim) -> (y (B, T, features), the state
        after the first `keep` tokens (default: all T))."""
        wx = self.gate_preactivations(x)
        if keep is None or keep >= x.shape[1]:
            h, state = self.slstm_cell.sequence(wx, state, precision=precision, backend=backend)
        else:
            h, state = self.slstm_cell.sequence(wx[:, :keep], state, precision=precision, backend=backend)
            rest, _ = self.slstm_cell.sequence(wx[:, keep:], state, precision=precision, backend=backend)
            h = torch.cat((h, rest), dim=1)
        return self.group_norm(h.to(x.dtype)), state

    def step(self, x: torch.Tensor, state: torch.Tensor, rows: torch.Tensor | None = None, *,
             precision: str, backend: str) -> torch.Tensor:
        """x (N, features) for rows `rows` of the persistent `state` (updated in place) -> y (N, features)."""
        h = self.slstm_cell.step(self.gate_preactivations(x), state, rows, precision=precision,
                                 backend=backend)
        return self.group_norm(h.to(x.dtype))


class SLSTMBlock(nn.Module):
    """Pre-norm residual block: x + sLSTM(RMSNorm(x)), then x + SwiGLU(RMSNorm(x))."""

    def __init__(self, features: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.norm_slstm = RMSNorm(features)
        self.slstm_layer = SLSTMLayer(features, num_heads)
        self.norm_ffn = RMSNorm(features)
        self.ffn = SwiGLUFeedForward(features, ffn_dim)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, *, keep: int | None = None,
                precision: str, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, features) -> (x (B, T, features), sLSTM state (4, B, heads, head_dim) after the first `keep`
        tokens (default: all))."""
        y, state = self.slstm_layer(self.norm_slstm(x), state, keep=keep, precision=precision, backend=backend)
        x = x + y
        return x + self.ffn(self.norm_ffn(x)), state

    def step(self, x: torch.Tensor, state: torch.Tensor, rows: torch.Tensor | None = None, *,
             precision: str, backend: str) -> torch.Tensor:
        """One token x (N, features) for rows `rows` of the persistent `state` (updated in place)."""
        x = x + self.slstm_layer.step(self.norm_slstm(x), state, rows, precision=precision, backend=backend)
        return x + self.ffn(self.norm_ffn(x))


@dataclass
class SLSTMStackState:
    """Recurrent state of a stack of sLSTM blocks: one (4, B, heads, head_dim) tensor (h, c, n, m) per block.

    Zeros mean a fresh sequence. Used both as the state of a batch in one pass and as the persistent
    per-stream buffers of the streaming engine (rows = streams).
    """

    blocks: list[torch.Tensor]

    @classmethod
    def zeros(cls, num_blocks: int, batch: int, num_heads: int, head_dim: int, *,
              device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> SLSTMStackState:
        return cls([torch.zeros(STATE_SIZE, batch, num_heads, head_dim, device=device, dtype=dtype)
                    for _ in range(num_blocks)])

    @property
    def batch_size(self) -> int:
        return self.blocks[0].shape[1]

    def select(self, rows: torch.Tensor) -> SLSTMStackState:
        """A copy of the states of `rows` (LongTensor of batch indices)."""
        return SLSTMStackState([block.index_select(1, rows) for block in self.blocks])

    def assign(self, rows: torch.Tensor, source: SLSTMStackState) -> None:
        """Write `source` (batch = len(rows)) into `rows` of this state, in place."""
        for block, new in zip(self.blocks, source.blocks):
            block[:, rows] = new.to(block.dtype)

    def resized(self, batch: int) -> SLSTMStackState:
        """A new state with `batch` rows: the existing rows copied, new rows zero (grows or truncates)."""
        grown = [block.new_zeros(block.shape[0], batch, *block.shape[2:]) for block in self.blocks]
        keep = min(batch, self.batch_size)
        for new, old in zip(grown, self.blocks):
            new[:, :keep] = old[:, :keep]
        return SLSTMStackState(grown)
