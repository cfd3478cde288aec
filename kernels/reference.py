"""The sLSTM and mLSTM cell maths in plain PyTorch: the CPU path and the oracle for the Triton kernels.

Inputs are assumed valid here; `dispatch.py` checks them. Maths runs in float32, or in float64 when the
inputs are float64 (the tests compare against float64 equations), whatever the storage dtype.

sLSTM (block-diagonal recurrent weights per head, gates i, f, z, o; states h, c, n, m) follows TiRex's
torch cell operation for operation, so that `precision="bf16-compatible"` reproduces tirex-ts bitwise.
mLSTM (matrix memory, scalar gates per head) follows Vision-xLSTM's stabilised parallel form; the chunkwise
and step forms carry the same stabiliser m, so all three forms agree to rounding.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

SLSTM_PRECISIONS = ("fp32", "bf16-compatible")
SLSTM_NUM_GATES = 4
SLSTM_NUM_STATES = 4
SLSTM_FORGET_CLAMP = 15.0
"""TiRex clamps the forget pre-activation at this value before logsigmoid (avoids subnormals)."""

SLSTMState = torch.Tensor
"""sLSTM state: one tensor (4, B, NH, DH) holding (h, c, n, m); all zeros is a fresh stream."""


class MLSTMState(NamedTuple):
    """mLSTM state of B streams: memory C, normaliser n and stabiliser m (states scaled by exp(-m))."""

    C: torch.Tensor  # (B, NH, DHQK, DHV)
    n: torch.Tensor  # (B, NH, DHQK)
    m: torch.Tensor  # (B, NH)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the maths runs in for inputs stored as `dtype`: float64 stays, all else is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def slstm_zero_state(batch: int, num_heads: int, head_dim: int, device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> SLSTMState:
    """A fresh sLSTM state (4, batch, num_heads, head_dim) of zeros."""
    return torch.zeros(SLSTM_NUM_STATES, batch, num_heads, head_dim, device=device, dtype=dtype)


def mlstm_zero_state(batch: int, num_heads: int, head_dim_qk: int, head_dim_v: int,
                     device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> MLSTMState:
    """A fresh mLSTM state: C = 0, n = 0 and m = -inf.

    m = -inf says "nothing absorbed yet": the first step then sets m to its input-gate pre-activation,
    exactly the stabiliser of the parallel form, so step, chunkwise and parallel results agree to rounding.
    A state with m = 0 is also valid (the maths is invariant to m up to the eps term of the normaliser).
    """
    return MLSTMState(
        torch.zeros(batch, num_heads, head_dim_qk, head_dim_v, device=device, dtype=dtype),
        torch.zeros(batch, num_heads, head_dim_qk, device=device, dtype=dtype),
        torch.full((batch, num_heads), -math.inf, device=device, dtype=dtype),
    )


# ----------------------------------------------------------------------------------------------- sLSTM

def _bf16_round(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest bfloat16 value, keeping x's dtype."""
    return x.to(torch.bfloat16).to(x.dtype)


def _state_rounding(precision: str):
    """What happens to values where TiRex holds bf16: rounding (bf16-compatible) or nothing (fp32)."""
    return _bf16_round if precision == "bf16-compatible" else (lambda x: x)


def _slstm_recurrent_operand(R: torch.Tensor, precision: str, dtype: torch.dtype) -> torch.Tensor:
    """R as TiRex multiplies it: (NH, DH_in, 4*DH_out), in bf16 for the bf16-compatible precision.

    A view, not a copy, when R is itself a view of that layout (as the models pass it) in that dtype."""
    num_heads, gates, head_dim, _ = R.shape
    operand_dtype = torch.bfloat16 if precision == "bf16-compatible" else dtype
    return R.transpose(1, 2).reshape(num_heads, head_dim, gates * head_dim).to(operand_dtype)


def _slstm_cell(wx_t: torch.Tensor, R_op: torch.Tensor, bias: torch.Tensor, state: torch.Tensor,
                precision: str) -> torch.Tensor:
    """One sLSTM step for N streams: wx_t (N, 4, NH, DH), state (4, N, NH, DH) -> new state, same shape.

    `state` and `bias` are in the compute dtype. The ops and their order are TiRex's (tirex-ts 1.4.2,
    `sLSTMCellTorch`); in the bf16-compatible precision the same values are rounded to bf16 as there.

    First step: TiRex sets m = i~ when n == 0 over the WHOLE state tensor. We decide per element by
    n == 0. That is the same decision: n >= 1 after any step (whichever of i, f attains the stabiliser
    equals exactly 1), so n == 0 holds for all elements of a stream that has never stepped and for none of
    a stream that has. Per element, streams of different ages can share one state buffer.
    """
    num, _, num_heads, head_dim = wx_t.shape
    round_ = _state_rounding(precision)
    dtype = state.dtype
    h, c, n, m = state.unbind(0)
    wx_t = round_(wx_t.to(dtype))
    Ry = (h.to(R_op.dtype).reshape(num, num_heads, 1, head_dim).matmul(R_op.unsqueeze(0))
          .reshape(num, num_heads, SLSTM_NUM_GATES, head_dim).transpose(1, 2).to(dtype))
    raw = wx_t + Ry + bias
    iraw, fraw, zraw, oraw = raw.unbind(1)
    logfplusm = m + F.logsigmoid(torch.clamp(fraw, max=SLSTM_FORGET_CLAMP))
    mnew = torch.where(n == 0.0, iraw, torch.max(iraw, logfplusm))
    ogate = torch.sigmoid(oraw)
    igate = torch.clamp(torch.exp(iraw - mnew), max=1.0)
    fgate = torch.clamp(torch.exp(logfplusm - mnew), max=1.0)
    zgate = torch.tanh(zraw)
    cnew = fgate * c + igate * zgate
    nnew = fgate * n + igate
    hnew = ogate * cnew / nnew
    return round_(torch.stack((hnew, cnew, nnew, mnew)))


def slstm_sequence(wx: torch.Tensor, R: torch.Tensor, bias: torch.Tensor, state: torch.Tensor,
                   precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Run T sLSTM steps: wx (B, T, 4, NH, DH) -> (h_seq (B, T, NH, DH) in wx.dtype, final state).

    `state` (4, B, NH, DH) is read, not modified; the final state is a new tensor of state.dtype.
    """
    dtype = compute_dtype(wx.dtype)
    round_ = _state_rounding(precision)
    R_op = _slstm_recurrent_operand(R, precision, dtype)
    bias = bias.to(dtype)
    current = round_(state.to(dtype))
    outputs = []
    for t in range(wx.shape[1]):
        current = _slstm_cell(wx[:, t], R_op, bias, current, precision)
        outputs.append(current[0])
    batch, _, _, num_heads, head_dim = wx.shape
    h_seq = torch.stack(outputs, 1) if outputs else wx.new_zeros(batch, 0, num_heads, head_dim)
    return h_seq.to(wx.dtype), current.to(state.dtype)


def slstm_step(wx_t: torch.Tensor, R: torch.Tensor, bias: torch.Tensor, state: torch.Tensor,
               rows: torch.Tensor | None, precision: str) -> torch.Tensor:
    """One sLSTM step on the streams `rows` of `state` (all when None), updated in place; returns h_t."""
    dtype = compute_dtype(wx_t.dtype)
    round_ = _state_rounding(precision)
    index = slice(None) if rows is None else rows
    current = round_(state[:, index].to(dtype))
    new = _slstm_cell(wx_t, _slstm_recurrent_operand(R, precision, dtype), bias.to(dtype), current, precision)
    state[:, index] = new.to(state.dtype)
    return new[0].to(wx_t.dtype)


# ----------------------------------------------------------------------------------------------- mLSTM

def mlstm_parallel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, f: torch.Tensor,
                   eps: float) -> torch.Tensor:
    """Quadratic stabilised mLSTM over a whole sequence from a fresh state (ViL's parallel form).

    q, k (B, NH, S, DHQK), v (B, NH, S, DHV), i, f (B, NH, S) -> h (B, NH, S, DHV) in v.dtype.
    """
    dtype, out_dtype = compute_dtype(q.dtype), v.dtype
    q, k, v, i, f = (x.to(dtype) for x in (q, k, v, i, f))
    seq_len = q.shape[2]
    log_f_cum = F.logsigmoid(f).cumsum(-1)
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=q.device).tril()
    log_d = torch.where(causal, log_f_cum[..., :, None] - log_f_cum[..., None, :] + i[..., None, :], -math.inf)
    m = log_d.amax(-1, keepdim=True)
    weights = (q @ (k / math.sqrt(q.shape[-1])).transpose(-2, -1)) * torch.exp(log_d - m)
    normaliser = torch.maximum(weights.sum(-1, keepdim=True).abs(), torch.exp(-m)) + eps
    return ((weights / normaliser) @ v).to(out_dtype)


def mlstm_chunkwise(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, f: torch.Tensor,
                    state: MLSTMState, chunk_size: int, eps: float) -> tuple[torch.Tensor, MLSTMState]:
    """Chunkwise mLSTM from `state`: parallel form inside chunks, (C, n, m) carried between them.

    Within a chunk, b_t is the cumulative log forget gate up to position t; the carried state enters
    position t with log weight b_t + m_prev, token s <= t with b_t - b_s + i_s; m_t is their maximum.
    The last chunk may be shorter. Returns h (B, NH, S, DHV) in v.dtype and a new final state.
    """
    dtype, out_dtype = compute_dtype(q.dtype), v.dtype
    C, n, m = (x.to(dtype) for x in state)
    q, k, v, i, f = (x.to(dtype) for x in (q, k, v, i, f))
    k = k / math.sqrt(q.shape[-1])
    log_f = F.logsigmoid(f)
    outputs = []
    for start in range(0, q.shape[2], chunk_size):
        chunk = slice(start, start + chunk_size)
        qc, kc, vc, ic = q[:, :, chunk], k[:, :, chunk], v[:, :, chunk], i[:, :, chunk]
        b = log_f[:, :, chunk].cumsum(-1)
        length = b.shape[-1]
        causal = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
        log_d = torch.where(causal, b[..., :, None] - b[..., None, :] + ic[..., None, :], -math.inf)
        log_inter = b + m[..., None]
        m_t = torch.maximum(log_inter, log_d.amax(-1))
        inter = torch.exp(log_inter - m_t)
        weights = (qc @ kc.transpose(-2, -1)) * torch.exp(log_d - m_t[..., None])
        numerator = inter[..., None] * (qc @ C) + weights @ vc
        denominator = torch.maximum((inter * (qc @ n[..., None])[..., 0] + weights.sum(-1)).abs(),
                                    torch.exp(-m_t)) + eps
        outputs.append(numerator / denominator[..., None])
        b_end = b[..., -1:]
        log_w = b_end - b + ic
        m_new = torch.maximum(b_end[..., 0] + m, log_w.amax(-1))
        decay = torch.exp(b_end[..., 0] + m - m_new)
        kw = kc * torch.exp(log_w - m_new[..., None])[..., None]
        C = decay[..., None, None] * C + kw.transpose(-2, -1) @ vc
        n = decay[..., None] * n + kw.sum(-2)
        m = m_new
    h = torch.cat(outputs, 2) if outputs else v.new_zeros(v.shape)
    final = MLSTMState(C.to(state.C.dtype), n.to(state.n.dtype), m.to(state.m.dtype))
    return h.to(out_dtype), final


def mlstm_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, f: torch.Tensor,
               state: MLSTMState, eps: float) -> torch.Tensor:
    """One mLSTM step, `state` updated in place. q, k (B, NH, DHQK), v (B, NH, DHV), i, f (B, NH)."""
    dtype, out_dtype = compute_dtype(q.dtype), v.dtype
    C, n, m = (x.to(dtype) for x in state)
    q, k, v, i, f = (x.to(dtype) for x in (q, k, v, i, f))
    k = k / math.sqrt(q.shape[-1])
    log_f_plus_m = F.logsigmoid(f) + m
    m_new = torch.maximum(log_f_plus_m, i)
    f_gate = torch.exp(log_f_plus_m - m_new)
    i_gate = torch.exp(i - m_new)
    C = f_gate[..., None, None] * C + i_gate[..., None, None] * (k[..., :, None] * v[..., None, :])
    n = f_gate[..., None] * n + i_gate[..., None] * k
    denominator = torch.maximum((n * q).sum(-1).abs(), torch.exp(-m_new)) + eps
    h = (C * q[..., :, None]).sum(-2) / denominator[..., None]
    for target, value in zip(state, (C, n, m_new)):
        target.copy_(value)
    return h.to(out_dtype)
