"""Fused sLSTM in Triton: a whole sequence in one launch, and one step on a persistent state buffer.

One kernel serves both. Grid (NH, cdiv(N, BLOCK_B)): a program owns one head and a tile of BLOCK_B
streams. It loads that head's four DH x DH recurrent blocks and biases once and keeps them on chip with
the fp32 states (h, c, n, m) for all T steps (T and N are runtime arguments: no recompiling per length
or batch size), streams W x in and h out, and writes the final state back. Only fp32 R at DH 128
(256 KiB, more than a block's shared memory) is re-read from L2 every step, one gate block at a time.
W x, R and bias are read through their strides, so views of other layouts need no copy.

In-place use (the step path, state_in is state_out) is race-free: a program reads and writes only the
state slice [:, its streams, its head, :], and slices of different programs are disjoint because the
row indices are unique (checked by the dispatcher). No program ever reads what another one writes.

Maths as reference.py (TiRex's operation order). "bf16-compatible" rounds to bf16 where TiRex does, with
a bit-exact rounding helper; h R then uses bf16 tensor cores on CUDA (exact products, fp32 sums like
TiRex's bf16 matmul), so results equal the reference up to the order of the fp32 sums.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .reference import SLSTM_FORGET_CLAMP
from .triton_support import (block_size, check_interpretable, dot_dtype, launcher, logsigmoid, round_bf16,
                             tanh)


@triton.jit
def _gate_block(R_ptr, mask, BF16_COMPATIBLE: tl.constexpr, DOT_DTYPE: tl.constexpr):
    """One DH x DH gate block of R as a dot operand (bf16-rounded in the compatible precision)."""
    r = tl.load(R_ptr, mask=mask, other=0.0).to(tl.float32)
    if BF16_COMPATIBLE:
        r = round_bf16(r)
    return r.to(DOT_DTYPE)


@triton.jit
def _slstm_kernel(
    wx_ptr, R_ptr, bias_ptr, state_in_ptr, state_out_ptr, h_ptr, rows_ptr,
    num_rows, num_steps, num_heads, state_in_batch, state_out_batch,
    wx_stride_b, wx_stride_t, wx_stride_g, wx_stride_k, wx_stride_d,
    R_stride_k, R_stride_g, R_stride_i, R_stride_o, bias_stride_g, bias_stride_k, bias_stride_d,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_B: tl.constexpr, HAS_ROWS: tl.constexpr,
    R_ON_CHIP: tl.constexpr, BF16_COMPATIBLE: tl.constexpr, DOT_DTYPE: tl.constexpr, FORGET_CLAMP: tl.constexpr,
):
    head = tl.program_id(0)
    offs_b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_d = tl.arange(0, BLOCK_D)
    mask_b = offs_b < num_rows
    mask_d = offs_d < HEAD_DIM
    mask = mask_b[:, None] & mask_d[None, :]
    if HAS_ROWS:
        rows = tl.load(rows_ptr + offs_b, mask=mask_b, other=0).to(tl.int64)
    else:
        rows = offs_b.to(tl.int64)

    # Recurrent blocks R[head, g] (DH_in x DH_out): loaded once for all steps when they fit on chip.
    r_offs = head.to(tl.int64) * R_stride_k + offs_d[:, None] * R_stride_i + offs_d[None, :] * R_stride_o
    r_mask = mask_d[:, None] & mask_d[None, :]
    r_gate = R_stride_g
    if R_ON_CHIP:
        r_i = _gate_block(R_ptr + r_offs, r_mask, BF16_COMPATIBLE, DOT_DTYPE)
        r_f = _gate_block(R_ptr + r_offs + r_gate, r_mask, BF16_COMPATIBLE, DOT_DTYPE)
        r_z = _gate_block(R_ptr + r_offs + 2 * r_gate, r_mask, BF16_COMPATIBLE, DOT_DTYPE)
        r_o = _gate_block(R_ptr + r_offs + 3 * r_gate, r_mask, BF16_COMPATIBLE, DOT_DTYPE)
    b_offs = head * bias_stride_k + offs_d * bias_stride_d
    b_i = tl.load(bias_ptr + b_offs, mask=mask_d, other=0.0).to(tl.float32)[None, :]
    b_f = tl.load(bias_ptr + b_offs + bias_stride_g, mask=mask_d, other=0.0).to(tl.float32)[None, :]
    b_z = tl.load(bias_ptr + b_offs + 2 * bias_stride_g, mask=mask_d, other=0.0).to(tl.float32)[None, :]
    b_o = tl.load(bias_ptr + b_offs + 3 * bias_stride_g, mask=mask_d, other=0.0).to(tl.float32)[None, :]

    # States (4, batch, NH, DH), contiguous; this program's slice.
    row_stride = num_heads * HEAD_DIM
    s_offs = rows[:, None] * row_stride + head * HEAD_DIM + offs_d[None, :]
    plane_in = state_in_batch.to(tl.int64) * row_stride
    h = tl.load(state_in_ptr + s_offs, mask=mask, other=0.0).to(tl.float32)
    c = tl.load(state_in_ptr + plane_in + s_offs, mask=mask, other=0.0).to(tl.float32)
    n = tl.load(state_in_ptr + 2 * plane_in + s_offs, mask=mask, other=0.0).to(tl.float32)
    m = tl.load(state_in_ptr + 3 * plane_in + s_offs, mask=mask, other=0.0).to(tl.float32)
    if BF16_COMPATIBLE:
        h, c, n, m = round_bf16(h), round_bf16(c), round_bf16(n), round_bf16(m)

    wx_offs = offs_b.to(tl.int64)[:, None] * wx_stride_b + head * wx_stride_k + offs_d[None, :] * wx_stride_d
    h_offs = offs_b.to(tl.int64)[:, None] * num_steps * row_stride + head * HEAD_DIM + offs_d[None, :]
    for t in range(num_steps):
        wx_t = wx_ptr + wx_offs + t * wx_stride_t
        w_i = tl.load(wx_t, mask=mask, other=0.0).to(tl.float32)
        w_f = tl.load(wx_t + wx_stride_g, mask=mask, other=0.0).to(tl.float32)
        w_z = tl.load(wx_t + 2 * wx_stride_g, mask=mask, other=0.0).to(tl.float32)
        w_o = tl.load(wx_t + 3 * wx_stride_g, mask=mask, other=0.0).to(tl.float32)
        h_dot = h.to(DOT_DTYPE)
        if R_ON_CHIP:
            y_i = tl.dot(h_dot, r_i, input_precision="ieee")
            y_f = tl.dot(h_dot, r_f, input_precision="ieee")
            y_z = tl.dot(h_dot, r_z, input_precision="ieee")
            y_o = tl.dot(h_dot, r_o, input_precision="ieee")
        else:  # too big to keep (fp32 at DH 128): re-read from L2, one gate block at a time (a loop,
            # so that only one block occupies shared memory)
            y_i = tl.zeros((BLOCK_B, BLOCK_D), tl.float32)
            y_f, y_z, y_o = y_i, y_i, y_i
            for gate in range(4):
                y = tl.dot(h_dot, _gate_block(R_ptr + r_offs + gate * r_gate, r_mask, BF16_COMPATIBLE, DOT_DTYPE),
                           input_precision="ieee")
                y_i = tl.where(gate == 0, y, y_i)
                y_f = tl.where(gate == 1, y, y_f)
                y_z = tl.where(gate == 2, y, y_z)
                y_o = tl.where(gate == 3, y, y_o)
        if BF16_COMPATIBLE:
            w_i, w_f, w_z, w_o = round_bf16(w_i), round_bf16(w_f), round_bf16(w_z), round_bf16(w_o)
            y_i, y_f, y_z, y_o = round_bf16(y_i), round_bf16(y_f), round_bf16(y_z), round_bf16(y_o)
        i_raw = w_i + y_i + b_i
        f_raw = w_f + y_f + b_f
        z_raw = w_z + y_z + b_z
        o_raw = w_o + y_o + b_o
        log_f_plus_m = m + logsigmoid(tl.minimum(f_raw, FORGET_CLAMP))
        # First step of a stream <=> n == 0 (n >= 1 after any step); see reference._slstm_cell.
        m_new = tl.where(n == 0.0, i_raw, tl.maximum(i_raw, log_f_plus_m))
        o_gate = tl.sigmoid(o_raw)
        i_gate = tl.minimum(tl.exp(i_raw - m_new), 1.0)
        f_gate = tl.minimum(tl.exp(log_f_plus_m - m_new), 1.0)
        c = f_gate * c + i_gate * tanh(z_raw)
        n = f_gate * n + i_gate
        h = o_gate * c / n
        m = m_new
        if BF16_COMPATIBLE:
            h, c, n, m = round_bf16(h), round_bf16(c), round_bf16(n), round_bf16(m)
        tl.store(h_ptr + h_offs + t * row_stride, h.to(h_ptr.dtype.element_ty), mask=mask)

    plane_out = state_out_batch.to(tl.int64) * row_stride
    out_type = state_out_ptr.dtype.element_ty
    tl.store(state_out_ptr + s_offs, h.to(out_type), mask=mask)
    tl.store(state_out_ptr + plane_out + s_offs, c.to(out_type), mask=mask)
    tl.store(state_out_ptr + 2 * plane_out + s_offs, n.to(out_type), mask=mask)
    tl.store(state_out_ptr + 3 * plane_out + s_offs, m.to(out_type), mask=mask)


R_ON_CHIP_MAX_BYTES = 160 * 1024
"""Largest R (4 gate blocks of one head, as dot operands) kept on chip; beyond it R is re-read per step."""


def kernel_config(head_dim: int, R_dtype: torch.dtype, precision: str, num_rows: int, num_heads: int,
                  sm_count: int | None) -> dict:
    """Compile-time parameters of `_slstm_kernel` for a call (sm_count None: the CPU interpreter).

    Streams per program: 16 (the smallest tensor-core M), more once the grid would exceed one wave of SMs,
    capped so that the state tiles stay in registers.
    """
    bf16_compatible = precision == "bf16-compatible"
    block_d = block_size(head_dim)
    operand_dtype = tl.bfloat16 if bf16_compatible and sm_count is not None else dot_dtype(R_dtype)
    r_on_chip = 4 * block_d * block_d * operand_dtype.primitive_bitwidth // 8 <= R_ON_CHIP_MAX_BYTES
    cap = 16 if operand_dtype == tl.float32 else (32 if block_d >= 128 else 64)
    block_b = 16
    while sm_count is not None and block_b < cap and num_heads * triton.cdiv(num_rows, block_b) > sm_count:
        block_b *= 2
    return dict(HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK_B=block_b, R_ON_CHIP=r_on_chip,
                BF16_COMPATIBLE=bf16_compatible, DOT_DTYPE=operand_dtype, FORGET_CLAMP=SLSTM_FORGET_CLAMP,
                num_warps=8, num_stages=3 if r_on_chip else 1)


def _launch(wx: torch.Tensor, R: torch.Tensor, bias: torch.Tensor, state_in: torch.Tensor,
            state_out: torch.Tensor, h: torch.Tensor, rows: torch.Tensor | None, precision: str) -> None:
    """Run the kernel over wx (N, T, 4, NH, DH), R and bias (any strides) for the N streams `rows` of the states."""
    num_rows, num_steps, _, num_heads, head_dim = wx.shape
    check_interpretable(wx.device, wx, R, bias, state_in, state_out)
    if not 16 <= head_dim <= 128:
        raise ValueError(f"the Triton sLSTM supports head dims 16..128 (tensor-core tiles, R kept on chip); "
                         f"got {head_dim}: use backend='torch'")
    if num_rows == 0:
        return
    sm_count = torch.cuda.get_device_properties(wx.device).multi_processor_count if wx.is_cuda else None
    meta = kernel_config(head_dim, R.dtype, precision, num_rows, num_heads, sm_count)
    grid = (num_heads, triton.cdiv(num_rows, meta["BLOCK_B"]))
    launcher(_slstm_kernel, grid, wx.device)(
        wx, R, bias, state_in, state_out, h, rows if rows is not None else state_in,
        num_rows, num_steps, num_heads, state_in.shape[1], state_out.shape[1], *wx.stride(), *R.stride(),
        *bias.stride(),
        HAS_ROWS=rows is not None, **meta)


def slstm_sequence(wx: torch.Tensor, R: torch.Tensor, bias: torch.Tensor, state: torch.Tensor,
                   precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton version of reference.slstm_sequence (inputs checked by dispatch.py)."""
    batch, num_steps, _, num_heads, head_dim = wx.shape
    state_in = state.contiguous()
    final = torch.empty_like(state_in)
    h_seq = torch.empty(batch, num_steps, num_heads, head_dim, device=wx.device, dtype=wx.dtype)
    if num_steps == 0:
        final.copy_(state_in)
        return h_seq, final
    _launch(wx, R, bias, state_in, final, h_seq, None, precision)
    return h_seq, final


def slstm_step(wx_t: torch.Tensor, R: torch.Tensor, bias: torch.Tensor, state: torch.Tensor,
               rows: torch.Tensor | None, precision: str) -> torch.Tensor:
    """Triton version of reference.slstm_step: updates the contiguous persistent `state` in place."""
    if not state.is_contiguous():
        raise ValueError("state: the persistent state buffer must be contiguous for the Triton step")
    count, _, num_heads, head_dim = wx_t.shape
    h_t = torch.empty(count, 1, num_heads, head_dim, device=wx_t.device, dtype=wx_t.dtype)
    _launch(wx_t.unsqueeze(1), R, bias, state, state, h_t,
            None if rows is None else rows.contiguous(), precision)
    return h_t[:, 0]
