"""mLSTM in Triton: chunkwise prefill that returns the final (C, n, m), and one step on persistent state.

Chunkwise prefill, two launches (the maths of reference.mlstm_chunkwise):
1. `_chunk_states_kernel`, grid (B*NH, DHQK tiles, DHV tiles): walks the chunks in order with its tile of
   C (and n, m) on chip, records the state at the start of every chunk, and writes the final state.
   The last chunk is masked (forget gate 1, input gate 0 past the end), so any S works and the final
   state is exact.
2. `_chunk_outputs_kernel`, grid (B*NH, chunks, DHV tiles): all chunks in parallel; each combines the
   parallel form inside its chunk with the recorded state it starts from.
Head dims are tiled in powers of two (<= 64) and masked, so 96 or 384 work without copies.

Step: `_step_kernel`, grid (B*NH, DHV tiles). A program owns the C tile (its stream and head, all DHQK
rows, its DHV columns) and updates it in place; no other program touches it. n and m are shared by the
DHV tiles of a head, so every program reads the OLD n, m from the state and the new ones go to a second
buffer, copied back after the launch: no program can read a value another one has already overwritten.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .reference import MLSTMState
from .triton_support import block_size, check_interpretable, dot_dtype, launcher, logsigmoid

HEAD_TILE = 64
"""Largest DHQK/DHV tile a program holds."""


@triton.jit
def _chunk_gates(i_ptr, f_ptr, chunk, seq_len, stride_s, CHUNK: tl.constexpr):
    """Positions, validity, input-gate pre-activations and cumulative log forget gates of one chunk.

    Past the end of the sequence: log forget gate 0 and input gate -inf (the state passes unchanged).
    """
    pos = chunk * CHUNK + tl.arange(0, CHUNK)
    valid = pos < seq_len
    i_gate = tl.load(i_ptr + pos * stride_s, mask=valid, other=0.0).to(tl.float32)
    f_gate = tl.load(f_ptr + pos * stride_s, mask=valid, other=0.0).to(tl.float32)
    i_gate = tl.where(valid, i_gate, -float("inf"))
    log_f = tl.where(valid, logsigmoid(f_gate), 0.0)
    return pos, valid, i_gate, tl.cumsum(log_f, 0)


@triton.jit
def _chunk_states_kernel(
    k_ptr, v_ptr, i_ptr, f_ptr, c0_ptr, n0_ptr, m0_ptr, chunk_c_ptr, chunk_n_ptr, chunk_m_ptr,
    c_out_ptr, n_out_ptr, m_out_ptr,
    seq_len, num_chunks, num_heads, qk_scale,
    k_sb, k_sh, k_ss, k_sd, v_sb, v_sh, v_ss, v_sd, g_sb, g_sh, g_ss,
    DQK: tl.constexpr, DV: tl.constexpr, BLOCK_QK: tl.constexpr, BLOCK_V: tl.constexpr,
    CHUNK: tl.constexpr, DOT_DTYPE: tl.constexpr,
):
    bh = tl.program_id(0)
    b = bh // num_heads
    h = bh % num_heads
    offs_qk = tl.program_id(1) * BLOCK_QK + tl.arange(0, BLOCK_QK)
    offs_v = tl.program_id(2) * BLOCK_V + tl.arange(0, BLOCK_V)
    mask_qk = offs_qk < DQK
    mask_v = offs_v < DV
    mask_c = mask_qk[:, None] & mask_v[None, :]
    c_offs = offs_qk[:, None] * DV + offs_v[None, :]
    first_v = tl.program_id(2) == 0  # one program per (stream, head, DHQK tile) writes n
    first = first_v & (tl.program_id(1) == 0)  # and one per (stream, head) writes m
    bh64 = bh.to(tl.int64)
    C = tl.load(c0_ptr + bh64 * DQK * DV + c_offs, mask=mask_c, other=0.0).to(tl.float32)
    n = tl.load(n0_ptr + bh64 * DQK + offs_qk, mask=mask_qk, other=0.0).to(tl.float32)
    m = tl.load(m0_ptr + bh).to(tl.float32)
    i_base = i_ptr + b * g_sb + h * g_sh
    f_base = f_ptr + b * g_sb + h * g_sh
    k_base = k_ptr + b.to(tl.int64) * k_sb + h * k_sh
    v_base = v_ptr + b.to(tl.int64) * v_sb + h * v_sh
    for chunk in range(num_chunks):
        slot = bh64 * num_chunks + chunk
        tl.store(chunk_c_ptr + slot * DQK * DV + c_offs, C, mask=mask_c)
        tl.store(chunk_n_ptr + slot * DQK + offs_qk, n, mask=mask_qk & first_v)
        tl.store(chunk_m_ptr + slot, m, mask=first)
        pos, valid, i_gate, b_cum = _chunk_gates(i_base, f_base, chunk, seq_len, g_ss, CHUNK)
        b_end = tl.sum(tl.where(tl.arange(0, CHUNK) == CHUNK - 1, b_cum, 0.0), 0)  # b at the chunk's end
        log_w = b_end - b_cum + i_gate
        m_new = tl.maximum(b_end + m, tl.max(log_w, 0))
        decay = tl.exp(b_end + m - m_new)
        pos64 = pos.to(tl.int64)
        k = tl.load(k_base + pos64[:, None] * k_ss + offs_qk[None, :] * k_sd,
                    mask=valid[:, None] & mask_qk[None, :], other=0.0).to(tl.float32)
        v = tl.load(v_base + pos64[:, None] * v_ss + offs_v[None, :] * v_sd,
                    mask=valid[:, None] & mask_v[None, :], other=0.0)
        kw = k * (qk_scale * tl.exp(log_w - m_new))[:, None]
        C = decay * C + tl.dot(tl.trans(kw.to(DOT_DTYPE)), v.to(DOT_DTYPE), input_precision="ieee")
        n = decay * n + tl.sum(kw, 0)
        m = m_new
    tl.store(c_out_ptr + bh64 * DQK * DV + c_offs, C.to(c_out_ptr.dtype.element_ty), mask=mask_c)
    tl.store(n_out_ptr + bh64 * DQK + offs_qk, n.to(n_out_ptr.dtype.element_ty), mask=mask_qk & first_v)
    tl.store(m_out_ptr + bh, m.to(m_out_ptr.dtype.element_ty), mask=first)


@triton.jit
def _chunk_outputs_kernel(
    q_ptr, k_ptr, v_ptr, i_ptr, f_ptr, chunk_c_ptr, chunk_n_ptr, chunk_m_ptr, h_ptr,
    seq_len, num_chunks, num_heads, qk_scale, eps,
    q_sb, q_sh, q_ss, q_sd, k_sb, k_sh, k_ss, k_sd, v_sb, v_sh, v_ss, v_sd, g_sb, g_sh, g_ss,
    DQK: tl.constexpr, DV: tl.constexpr, BLOCK_QK: tl.constexpr, BLOCK_V: tl.constexpr,
    CHUNK: tl.constexpr, DOT_DTYPE: tl.constexpr,
):
    bh = tl.program_id(0)
    chunk = tl.program_id(1)
    b = bh // num_heads
    h = bh % num_heads
    offs_v = tl.program_id(2) * BLOCK_V + tl.arange(0, BLOCK_V)
    mask_v = offs_v < DV
    offs_l = tl.arange(0, CHUNK)
    pos, valid, i_gate, b_cum = _chunk_gates(i_ptr + b * g_sb + h * g_sh, f_ptr + b * g_sb + h * g_sh, chunk,
                                              seq_len, g_ss, CHUNK)
    slot = bh.to(tl.int64) * num_chunks + chunk
    m_prev = tl.load(chunk_m_ptr + slot)
    # log weights: the carried state at position t, and token s <= t at position t
    log_inter = b_cum + m_prev
    log_d = tl.where(offs_l[:, None] >= offs_l[None, :], b_cum[:, None] - b_cum[None, :] + i_gate[None, :],
                     -float("inf"))
    m_t = tl.maximum(log_inter, tl.max(log_d, 1))
    inter = tl.exp(log_inter - m_t)
    pos64 = pos.to(tl.int64)
    q_base = q_ptr + b.to(tl.int64) * q_sb + h * q_sh + pos64[:, None] * q_ss
    k_base = k_ptr + b.to(tl.int64) * k_sb + h * k_sh + pos64[:, None] * k_ss
    qk = tl.zeros((CHUNK, CHUNK), tl.float32)
    q_c = tl.zeros((CHUNK, BLOCK_V), tl.float32)
    q_n = tl.zeros((CHUNK,), tl.float32)
    for start in range(0, DQK, BLOCK_QK):
        offs_qk = start + tl.arange(0, BLOCK_QK)
        mask_qk = offs_qk < DQK
        mask_lq = valid[:, None] & mask_qk[None, :]
        q = tl.load(q_base + offs_qk[None, :] * q_sd, mask=mask_lq, other=0.0)
        k = tl.load(k_base + offs_qk[None, :] * k_sd, mask=mask_lq, other=0.0)
        qk += tl.dot(q.to(DOT_DTYPE), tl.trans(k.to(DOT_DTYPE)), input_precision="ieee")
        C = tl.load(chunk_c_ptr + slot * DQK * DV + offs_qk[:, None] * DV + offs_v[None, :],
                    mask=mask_qk[:, None] & mask_v[None, :], other=0.0)
        q_c += tl.dot(q.to(DOT_DTYPE), C.to(DOT_DTYPE), input_precision="ieee")
        n = tl.load(chunk_n_ptr + slot * DQK + offs_qk, mask=mask_qk, other=0.0)
        q_n += tl.sum(q.to(tl.float32) * n[None, :], 1)
    weights = qk * qk_scale * tl.exp(log_d - m_t[:, None])
    v = tl.load(v_ptr + b.to(tl.int64) * v_sb + h * v_sh + pos64[:, None] * v_ss + offs_v[None, :] * v_sd,
                mask=valid[:, None] & mask_v[None, :], other=0.0)
    numerator = inter[:, None] * q_c + tl.dot(weights.to(DOT_DTYPE), v.to(DOT_DTYPE), input_precision="ieee")
    denominator = tl.maximum(tl.abs(inter * q_n + tl.sum(weights, 1)), tl.exp(-m_t)) + eps
    h_offs = bh.to(tl.int64) * seq_len * DV + pos64[:, None] * DV + offs_v[None, :]
    tl.store(h_ptr + h_offs, (numerator / denominator[:, None]).to(h_ptr.dtype.element_ty),
             mask=valid[:, None] & mask_v[None, :])


@triton.jit
def _step_kernel(
    q_ptr, k_ptr, v_ptr, i_ptr, f_ptr, c_ptr, n_ptr, m_ptr, n_new_ptr, m_new_ptr, h_ptr,
    num_heads, qk_scale, eps,
    q_sb, q_sh, q_sd, k_sb, k_sh, k_sd, v_sb, v_sh, v_sd, g_sb, g_sh,
    DQK: tl.constexpr, DV: tl.constexpr, BLOCK_QK: tl.constexpr, BLOCK_V: tl.constexpr,
):
    bh = tl.program_id(0)
    b = bh // num_heads
    h = bh % num_heads
    offs_v = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    mask_v = offs_v < DV
    first_v = tl.program_id(1) == 0  # the program that writes the new n and m
    bh64 = bh.to(tl.int64)
    log_f_plus_m = logsigmoid(tl.load(f_ptr + b * g_sb + h * g_sh).to(tl.float32)) + tl.load(m_ptr + bh).to(
        tl.float32)
    i_pre = tl.load(i_ptr + b * g_sb + h * g_sh).to(tl.float32)
    m_new = tl.maximum(log_f_plus_m, i_pre)
    f_gate = tl.exp(log_f_plus_m - m_new)
    i_gate = tl.exp(i_pre - m_new)
    q_base = q_ptr + b.to(tl.int64) * q_sb + h * q_sh
    k_base = k_ptr + b.to(tl.int64) * k_sb + h * k_sh
    # pass 1: the new normaliser n and n.q
    q_n = 0.0
    for start in range(0, DQK, BLOCK_QK):
        offs_qk = start + tl.arange(0, BLOCK_QK)
        mask_qk = offs_qk < DQK
        q = tl.load(q_base + offs_qk * q_sd, mask=mask_qk, other=0.0).to(tl.float32)
        k = tl.load(k_base + offs_qk * k_sd, mask=mask_qk, other=0.0).to(tl.float32) * qk_scale
        n = f_gate * tl.load(n_ptr + bh64 * DQK + offs_qk, mask=mask_qk, other=0.0).to(tl.float32) + i_gate * k
        tl.store(n_new_ptr + bh64 * DQK + offs_qk, n, mask=mask_qk & first_v)
        q_n += tl.sum(q * n, 0)
    denominator = tl.maximum(tl.abs(q_n), tl.exp(-m_new)) + eps
    # pass 2: this program's C columns, in place, and h = C^T q / denominator
    v = tl.load(v_ptr + b.to(tl.int64) * v_sb + h * v_sh + offs_v * v_sd, mask=mask_v, other=0.0).to(tl.float32)
    out = tl.zeros((BLOCK_V,), tl.float32)
    for start in range(0, DQK, BLOCK_QK):
        offs_qk = start + tl.arange(0, BLOCK_QK)
        mask_qk = offs_qk < DQK
        mask_c = mask_qk[:, None] & mask_v[None, :]
        q = tl.load(q_base + offs_qk * q_sd, mask=mask_qk, other=0.0).to(tl.float32)
        k = tl.load(k_base + offs_qk * k_sd, mask=mask_qk, other=0.0).to(tl.float32) * qk_scale
        c_tile = c_ptr + bh64 * DQK * DV + offs_qk[:, None] * DV + offs_v[None, :]
        C = f_gate * tl.load(c_tile, mask=mask_c, other=0.0).to(tl.float32) + i_gate * (k[:, None] * v[None, :])
        tl.store(c_tile, C.to(c_ptr.dtype.element_ty), mask=mask_c)
        out += tl.sum(C * q[:, None], 0)
    tl.store(m_new_ptr + bh, m_new, mask=first_v)
    tl.store(h_ptr + bh64 * DV + offs_v, (out / denominator).to(h_ptr.dtype.element_ty), mask=mask_v)


def chunk_config(head_dim_qk: int, head_dim_v: int, chunk_size: int, dtype: torch.dtype) -> dict:
    """Compile-time parameters of both chunkwise kernels for inputs of `dtype`."""
    return dict(DQK=head_dim_qk, DV=head_dim_v, BLOCK_QK=block_size(head_dim_qk, HEAD_TILE),
                BLOCK_V=block_size(head_dim_v, HEAD_TILE), CHUNK=chunk_size, DOT_DTYPE=dot_dtype(dtype),
                num_warps=4 if chunk_size <= 32 else 8)


def step_config(head_dim_qk: int, head_dim_v: int) -> dict:
    """Compile-time parameters of the step kernel."""
    return dict(DQK=head_dim_qk, DV=head_dim_v, BLOCK_QK=block_size(head_dim_qk, HEAD_TILE),
                BLOCK_V=block_size(head_dim_v, HEAD_TILE), num_warps=4)


def mlstm_chunkwise(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, f: torch.Tensor,
                    state: MLSTMState, chunk_size: int, eps: float) -> tuple[torch.Tensor, MLSTMState]:
    """Triton version of reference.mlstm_chunkwise (inputs checked by dispatch.py)."""
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two >= 16 for the Triton mLSTM, got {chunk_size}")
    check_interpretable(q.device, q, k, v, i, f, *state)
    batch, num_heads, seq_len, head_dim_qk = q.shape
    head_dim_v = v.shape[-1]
    if i.stride() != f.stride():
        i, f = i.contiguous(), f.contiguous()
    C0, n0, m0 = (x.contiguous() for x in state)
    final = MLSTMState(torch.empty_like(C0), torch.empty_like(n0), torch.empty_like(m0))
    h = torch.empty(batch, num_heads, seq_len, head_dim_v, device=q.device, dtype=v.dtype)
    if seq_len == 0:
        for target, source in zip(final, (C0, n0, m0)):
            target.copy_(source)
        return h, final
    num_chunks = triton.cdiv(seq_len, chunk_size)
    chunk_c = torch.empty(batch * num_heads, num_chunks, head_dim_qk, head_dim_v, device=q.device,
                          dtype=torch.float32)
    chunk_n = torch.empty(batch * num_heads, num_chunks, head_dim_qk, device=q.device, dtype=torch.float32)
    chunk_m = torch.empty(batch * num_heads, num_chunks, device=q.device, dtype=torch.float32)
    meta = chunk_config(head_dim_qk, head_dim_v, chunk_size, v.dtype)
    qk_scale = 1.0 / math.sqrt(head_dim_qk)
    tiles_v = triton.cdiv(head_dim_v, meta["BLOCK_V"])
    grid = (batch * num_heads, triton.cdiv(head_dim_qk, meta["BLOCK_QK"]), tiles_v)
    launcher(_chunk_states_kernel, grid, q.device)(
        k, v, i, f, C0, n0, m0, chunk_c, chunk_n, chunk_m, *final,
        seq_len, num_chunks, num_heads, qk_scale, *k.stride(), *v.stride(), *i.stride(), **meta)
    grid = (batch * num_heads, num_chunks, tiles_v)
    launcher(_chunk_outputs_kernel, grid, q.device)(
        q, k, v, i, f, chunk_c, chunk_n, chunk_m, h,
        seq_len, num_chunks, num_heads, qk_scale, eps, *q.stride(), *k.stride(), *v.stride(), *i.stride(), **meta)
    return h, final


def mlstm_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, f: torch.Tensor,
               state: MLSTMState, eps: float) -> torch.Tensor:
    """Triton version of reference.mlstm_step: C in place, n and m through a second buffer."""
    check_interpretable(q.device, q, k, v, i, f, *state)
    if not all(x.is_contiguous() for x in state):
        raise ValueError("state: the persistent C, n, m buffers must be contiguous for the Triton step")
    batch, num_heads, head_dim_qk = q.shape
    head_dim_v = v.shape[-1]
    if i.stride() != f.stride():
        i, f = i.contiguous(), f.contiguous()
    n_new = torch.empty(state.n.shape, device=q.device, dtype=torch.float32)
    m_new = torch.empty(state.m.shape, device=q.device, dtype=torch.float32)
    h = torch.empty(batch, num_heads, head_dim_v, device=q.device, dtype=v.dtype)
    meta = step_config(head_dim_qk, head_dim_v)
    grid = (batch * num_heads, triton.cdiv(head_dim_v, meta["BLOCK_V"]))
    launcher(_step_kernel, grid, q.device)(
        q, k, v, i, f, *state, n_new, m_new, h, num_heads, 1.0 / math.sqrt(head_dim_qk), eps,
        *q.stride(), *k.stride(), *v.stride(), *i.stride(), **meta)
    state.n.copy_(n_new)
    state.m.copy_(m_new)
    return h
