"""TiRex's network for the streaming step path: prepacked weights, fused projections, no row padding.

A stream's step runs the network on one or a few tokens per stream (the newest patch, then masked rollout
tokens), so every product has only a few rows and is bound by reading the weights. `TiRex` pads such
products to 16 rows so that they round exactly as a full pass does (`slstm.batch_invariant`); that costs
about 3x on the CPU. `PackedTiRex` computes the same network on the rows as they are, with the four gate
projections of a block in one batched product per head and the patch embeddings' hidden and residual layers
in one. The large FFN matrices are used in place (fp32: views of the model's parameters, no second copy of
most of the weights). Results equal `TiRex`'s to float32 rounding, not
bitwise; anchors (full passes, always >= 16 rows) stay on `TiRex`. With `weights="bf16"` the products read
bfloat16 copies of the weights (inputs rounded to bfloat16, float32 accumulation and outputs).

The packed weights are a snapshot taken at construction (also of the model's precision, which decides the
dtype R is kept in): build a new PackedTiRex after loading, training or changing the precision.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from xlstm_ros import kernels
from xlstm_ros.models.slstm import SLSTMStackState, R_from_tirex, bias_from_tirex
from xlstm_ros.models.tirex import TiRex

STEP_WEIGHTS = ("fp32", "bf16")


class _Linear:
    """y = x W^T (+ b) with W stored in the step path's weight format; x and y are float32."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, weights: str) -> None:
        self.dtype = torch.bfloat16 if weights == "bf16" else torch.float32
        self.weight = weight.detach().to(self.dtype).contiguous()
        self.bias = None if bias is None else bias.detach().float().contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x.to(self.dtype), self.weight).float()
        return y if self.bias is None else y + self.bias


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


class _ResidualMLP:
    """TiRex's patch embedding / head: hidden and residual layers read the input in one product."""

    def __init__(self, mlp, weights: str) -> None:
        self.hidden = mlp.hidden_layer.out_features
        self.first = _Linear(torch.cat((mlp.hidden_layer.weight, mlp.residual_layer.weight)),
                             torch.cat((mlp.hidden_layer.bias, mlp.residual_layer.bias)), weights)
        self.output = _Linear(mlp.output_layer.weight, mlp.output_layer.bias, weights)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        hidden, residual = self.first(x).split((self.hidden, self.first.weight.shape[0] - self.hidden), dim=-1)
        return self.output(F.relu(hidden)) + residual


class _Block:
    """One sLSTM block's packed weights and its computation on (rows, features)."""

    def __init__(self, block, weights: str, precision: str) -> None:
        layer = block.slstm_layer
        self.eps_slstm, self.eps_ffn = block.norm_slstm.eps, block.norm_ffn.eps
        self.norm_slstm = block.norm_slstm.weight.detach().float()
        self.norm_ffn = block.norm_ffn.weight.detach().float()
        self.num_heads = layer.slstm_cell.num_heads
        self.head_dim = layer.slstm_cell.head_dim
        # gate order (i, f, z, o) = (fgate, igate, zgate, ogate), as SLSTMLayer.gate_preactivations stacks them;
        # (heads, in, 4 * out) so that one batched product per head makes all four pre-activations
        gates = torch.cat([g.weight.detach().transpose(1, 2) for g in (layer.fgate, layer.igate, layer.zgate,
                                                                       layer.ogate)], dim=2)
        self.dtype = torch.bfloat16 if weights == "bf16" else torch.float32
        self.gates = gates.to(self.dtype).contiguous()
        # R prepacked in the dtype the recurrence multiplies it in (bf16 for the bf16-compatible precision), so
        # the kernel uses it as a view instead of casting 4 x heads x head_dim^2 weights on every call
        kernel = layer.slstm_cell._recurrent_kernel_.detach()
        self.R = R_from_tirex(kernel.to(torch.bfloat16) if precision == "bf16-compatible" else kernel.float())
        self.bias = bias_from_tirex(layer.slstm_cell._bias_.detach().float(), self.num_heads)
        self.group_norm = 1.0 + layer.group_norm.weight.detach().float()
        ffn = block.ffn
        self.up_gate = _Linear(ffn.proj_up_gate.weight, None, weights)
        self.up = _Linear(ffn.proj_up.weight, None, weights)
        self.down = _Linear(ffn.proj_down.weight, None, weights)

    def gate_preactivations(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, features) -> (rows, 4, heads, head_dim)."""
        heads = x.to(self.dtype).view(-1, self.num_heads, self.head_dim).transpose(0, 1)
        out = torch.bmm(heads, self.gates).float()                           # (heads, rows, 4 * head_dim)
        return out.view(self.num_heads, -1, 4, self.head_dim).permute(1, 2, 0, 3)

    def mix(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The rest of the block after the recurrence: x + GroupNorm(h), then x + SwiGLU(RMSNorm(x))."""
        x = x + F.group_norm(h.reshape(h.shape[0], -1), self.num_heads, weight=self.group_norm)
        normed = _rms_norm(x, self.norm_ffn, self.eps_ffn)
        return x + self.down(F.silu(self.up_gate(normed)) * self.up(normed))


class PackedTiRex:
    """`TiRex.forward_tokens` from a state and `TiRex.step_tokens` on few rows, fast (module docstring)."""

    def __init__(self, model: TiRex, weights: str = "fp32") -> None:
        if weights not in STEP_WEIGHTS:
            raise ValueError(f"step weights must be one of {', '.join(STEP_WEIGHTS)}, got {weights!r}")
        self.model = model
        self.weights = weights
        self.config = model.config
        with torch.no_grad():
            self.embedding = _ResidualMLP(model.input_patch_embedding, weights)
            self.blocks = [_Block(block, weights, model.precision) for block in model.blocks]
            self.out_norm = model.out_norm.weight.detach().float()
            self.out_eps = model.out_norm.eps
            self.head = _ResidualMLP(model.output_patch_embedding, weights)

    # the same token bookkeeping as TiRex, on this class's forward_tokens
    masked_tokens = TiRex.masked_tokens
    rollout = TiRex.rollout

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _outputs(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(_rms_norm(x, self.out_norm, self.out_eps))
        return out.unflatten(-1, (len(self.config.quantiles), self.config.patch_size))

    @torch.no_grad()
    def step_tokens(self, tokens: torch.Tensor, state: SLSTMStackState, rows: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """Advance rows `rows` of a persistent state by one token each (in place): tokens (N, 2P) -> (N, Q, P)."""
        x = self.embedding(tokens.float())
        precision, backend = self.model.precision, self.model.backend
        for block, block_state in zip(self.blocks, state.blocks):
            wx = block.gate_preactivations(_rms_norm(x, block.norm_slstm, block.eps_slstm))
            h = kernels.slstm_step(wx, block.R, block.bias, block_state, rows=rows, precision=precision,
                                   backend=backend)
            x = block.mix(x, h.float())
        return self._outputs(x)

    @torch.no_grad()
    def forward_tokens(self, tokens: torch.Tensor, state: SLSTMStackState, *, keep: int | None = None
                       ) -> tuple[torch.Tensor, SLSTMStackState]:
        """Tokens (B, T, 2P) from `state` -> (outputs (B, T, Q, P), the state after the first `keep` tokens
        (default all)); the input state is not modified."""
        batch, count = tokens.shape[:2]
        keep = count if keep is None else keep
        if not 1 <= keep <= count:
            raise ValueError(f"keep must be in 1..{count} (tokens), got {keep}")
        x = self.embedding(tokens.float().reshape(batch * count, -1))
        precision, backend = self.model.precision, self.model.backend
        new_states = []
        for block, block_state in zip(self.blocks, state.blocks):
            wx = block.gate_preactivations(_rms_norm(x, block.norm_slstm, block.eps_slstm))
            wx = wx.view(batch, count, *wx.shape[1:])
            R, bias = block.R, block.bias
            h, kept = kernels.slstm_sequence(wx[:, :keep], R, bias, block_state, precision=precision, backend=backend)
            if keep < count:
                rest, _ = kernels.slstm_sequence(wx[:, keep:], R, bias, kept, precision=precision, backend=backend)
                h = torch.cat((h, rest), dim=1)
            new_states.append(kept)
            x = block.mix(x, h.float().reshape(batch * count, *h.shape[2:]))
        return self._outputs(x).view(batch, count, len(self.config.quantiles), -1), SLSTMStackState(new_states)
