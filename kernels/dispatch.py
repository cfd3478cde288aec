"""The public sLSTM/mLSTM functions: check the inputs, then run the Triton kernels or the PyTorch reference.

`backend` ("auto" | "triton" | "torch") picks which, as `backend.resolve_backend` decides for the inputs'
device and for whether autograd records them.
"""
from __future__ import annotations

import torch

from . import reference
from .backend import resolve_backend
from .reference import SLSTM_NUM_GATES, SLSTM_PRECISIONS, MLSTMState, SLSTMState

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _runs_triton(backend: str, device: torch.device, *tensors: torch.Tensor) -> bool:
    """True when `backend` resolves to the Triton kernels for `tensors` on `device`."""
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    return resolve_backend(backend, device, needs_grad=needs_grad) == "triton"


def _check_tensor(name: str, tensor: torch.Tensor, shape: tuple[int | None, ...], device: torch.device) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a floating-point tensor, got {tensor.dtype}")
    mismatch = any(want is not None and got != want for got, want in zip(tensor.shape, shape))
    if tensor.dim() != len(shape) or mismatch:
        expected = "(" + ", ".join("*" if want is None else str(want) for want in shape) + ")"
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(tensor.shape)}")
    if tensor.device != device:
        raise ValueError(f"{name}: on {tensor.device}, but the inputs are on {device}")


def _check_precision(precision: str) -> None:
    if precision not in SLSTM_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(SLSTM_PRECISIONS)}; got {precision!r}")


def _check_rows(rows: torch.Tensor, count: int, batch: int, device: torch.device) -> None:
    if not isinstance(rows, torch.Tensor) or rows.dtype not in (torch.int32, torch.int64) or rows.dim() != 1:
        raise TypeError("rows: expected a 1-D int64 or int32 tensor of state indices")
    if rows.numel() != count:
        raise ValueError(f"rows: has {rows.numel()} indices but wx_t has {count} streams")
    if rows.device != device:
        raise ValueError(f"rows: on {rows.device}, but the inputs are on {device}")
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return  # checking would synchronise, which graph capture forbids; the captured rows were checked eagerly
    if count and (int(rows.min()) < 0 or int(rows.max()) >= batch):
        raise ValueError(f"rows: indices must lie in [0, {batch}) (the state's batch size)")
    if torch.unique(rows).numel() != count:
        raise ValueError("rows: indices must be unique (each stream steps once per call)")


# ----------------------------------------------------------------------------------------------- sLSTM

def slstm_zero_state(batch: int, num_heads: int, head_dim: int, device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> SLSTMState:
    """A fresh sLSTM state (4, batch, num_heads, head_dim) of zeros: (h, c, n, m) of `batch` new streams."""
    return reference.slstm_zero_state(batch, num_heads, head_dim, device, dtype)


def slstm_sequence(wx: torch.Tensor, R: torch.Tensor, bias: torch.Tensor, state: SLSTMState | None = None, *,
                   precision: str = "fp32", backend: str = "auto") -> tuple[torch.Tensor, SLSTMState]:
    """Run the sLSTM over T steps from `state` (fresh when None).

    wx: (B, T, 4, NH, DH) gate pre-activations W x in gate order i, f, z, o; R: (NH, 4, DH_in, DH_out),
    recurrent pre-activation r[b, k, o] = sum_d h[b, k, d] * R[k, g, d, o]; bias: (4, NH, DH). R and bias
    may have any strides, so that a model can pass views of the layout it stores instead of copies.
    precision: "fp32" (all maths in fp32; fp64 for fp64 inputs) or "bf16-compatible" (rounds exactly where
    tirex-ts 1.4.2 does: W x, R, h R and the states to bf16; bitwise equal to it on the torch backend).
    Returns h_seq (B, T, NH, DH) in wx.dtype and the final state, a new (4, B, NH, DH) tensor of the
    state's dtype (float32 when state is None); `state` itself is not modified. T may be 0.
    """
    if not isinstance(wx, torch.Tensor) or wx.dim() != 5:
        raise ValueError(f"wx: expected shape (B, T, 4, NH, DH), got {getattr(wx, 'shape', type(wx).__name__)}")
    batch, _, _, num_heads, head_dim = wx.shape
    device = wx.device
    _check_tensor("wx", wx, (batch, None, SLSTM_NUM_GATES, num_heads, head_dim), device)
    _check_tensor("R", R, (num_heads, SLSTM_NUM_GATES, head_dim, head_dim), device)
    _check_tensor("bias", bias, (SLSTM_NUM_GATES, num_heads, head_dim), device)
    if state is None:
        state = slstm_zero_state(batch, num_heads, head_dim, device)
    _check_tensor("state", state, (reference.SLSTM_NUM_STATES, batch, num_heads, head_dim), device)
    _check_precision(precision)
    if _runs_triton(backend, device, wx, R, bias, state):
        from . import slstm
        return slstm.slstm_sequence(wx, R, bias, state, precision)
    return reference.slstm_sequence(wx, R, bias, state, precision)


def slstm_step(wx_t: torch.Tensor, R: torch.Tensor, bias: torch.Tensor, state: SLSTMState, *,
               rows: torch.Tensor | None = None, precision: str = "fp32", backend: str = "auto") -> torch.Tensor:
    """Advance N streams of the persistent buffer `state` (4, B, NH, DH) by one step, IN PLACE.

    wx_t: (N, 4, NH, DH); rows: N unique indices into the state's batch dim (only those streams step,
    the others are untouched); without rows N == B. R, bias and precision as in `slstm_sequence`.
    Returns h_t (N, NH, DH) in wx_t.dtype.
    """
    if not isinstance(wx_t, torch.Tensor) or wx_t.dim() != 4:
        raise ValueError(f"wx_t: expected shape (N, 4, NH, DH), got {getattr(wx_t, 'shape', type(wx_t).__name__)}")
    count, _, num_heads, head_dim = wx_t.shape
    device = wx_t.device
    _check_tensor("wx_t", wx_t, (count, SLSTM_NUM_GATES, num_heads, head_dim), device)
    _check_tensor("R", R, (num_heads, SLSTM_NUM_GATES, head_dim, head_dim), device)
    _check_tensor("bias", bias, (SLSTM_NUM_GATES, num_heads, head_dim), device)
    _check_tensor("state", state, (reference.SLSTM_NUM_STATES, None, num_heads, head_dim), device)
    batch = state.shape[1]
    if rows is None:
        if count != batch:
            raise ValueError(f"wx_t: has {count} streams but the state holds {batch}; pass rows to step a subset")
    else:
        _check_rows(rows, count, batch, device)
    _check_precision(precision)
    if _runs_triton(backend, device, wx_t, R, bias, state):
        from . import slstm
        return slstm.slstm_step(wx_t, R, bias, state, rows, precision)
    return reference.slstm_step(wx_t, R, bias, state, rows, precision)


# ----------------------------------------------------------------------------------------------- mLSTM

def mlstm_zero_state(batch: int, num_heads: int, head_dim_qk: int, head_dim_v: int,
                     device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> MLSTMState:
    """A fresh mLSTM state: C = 0, n = 0, m = -inf (see reference.mlstm_zero_state for why -inf)."""
    return reference.mlstm_zero_state(batch, num_heads, head_dim_qk, head_dim_v, device, dtype)


def _check_mlstm_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, f: torch.Tensor,
                        sequence: bool) -> tuple[int, int, int, int]:
    """Check q, k, v, i, f (with the S dim when `sequence`); return (B, NH, DHQK, DHV)."""
    rank = 4 if sequence else 3
    layout = "(B, NH, S, DHQK)" if sequence else "(B, NH, DHQK)"
    if not isinstance(q, torch.Tensor) or q.dim() != rank:
        raise ValueError(f"q: expected shape {layout}, got {getattr(q, 'shape', type(q).__name__)}")
    if not isinstance(v, torch.Tensor) or v.dim() != rank:
        raise ValueError(f"v: expected {rank} dims, got {getattr(v, 'shape', type(v).__name__)}")
    lead = tuple(q.shape[:-1])
    device = q.device
    _check_tensor("q", q, (*lead, q.shape[-1]), device)
    _check_tensor("k", k, (*lead, q.shape[-1]), device)
    _check_tensor("v", v, (*lead, v.shape[-1]), device)
    _check_tensor("i", i, lead, device)
    _check_tensor("f", f, lead, device)
    if q.shape[-1] == 0 or v.shape[-1] == 0:
        raise ValueError("q, v: head dims must be positive")
    return q.shape[0], q.shape[1], q.shape[-1], v.shape[-1]


def _check_mlstm_state(state: MLSTMState, batch: int, num_heads: int, head_dim_qk: int, head_dim_v: int,
                       device: torch.device) -> None:
    if not isinstance(state, tuple) or len(state) != 3:
        raise TypeError("state: expected an MLSTMState (C, n, m)")
    _check_tensor("state.C", state[0], (batch, num_heads, head_dim_qk, head_dim_v), device)
    _check_tensor("state.n", state[1], (batch, num_heads, head_dim_qk), device)
    _check_tensor("state.m", state[2], (batch, num_heads), device)


def mlstm_parallel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, f: torch.Tensor, *,
                   eps: float = 1e-6) -> torch.Tensor:
    """Quadratic stabilised mLSTM from a fresh state (PyTorch; test oracle and the small-S path).

    q, k: (B, NH, S, DHQK); v: (B, NH, S, DHV); i, f: (B, NH, S) input/forget pre-activations.
    Input gate exp(i), forget gate sigmoid(f) in log space, k scaled by 1/sqrt(DHQK) here, and
    h = (C^T q) / (max(|n.q|, exp(-m)) + eps) as in Vision-xLSTM. Returns h (B, NH, S, DHV) in v.dtype.
    """
    _check_mlstm_inputs(q, k, v, i, f, sequence=True)
    return reference.mlstm_parallel(q, k, v, i, f, eps)


def mlstm_chunkwise(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, f: torch.Tensor,
                    state: MLSTMState | None = None, *, chunk_size: int = 64, eps: float = 1e-6,
                    backend: str = "auto") -> tuple[torch.Tensor, MLSTMState]:
    """Chunkwise mLSTM over any S from `state` (fresh when None); the same maths as `mlstm_parallel`.

    Returns h (B, NH, S, DHV) in v.dtype and the final state as a new MLSTMState (`state` is not
    modified), so a sequence split over several calls gives the same result as one call.
    chunk_size: >= 1 for the torch backend; a power of two >= 16 for Triton.
    """
    batch, num_heads, head_dim_qk, head_dim_v = _check_mlstm_inputs(q, k, v, i, f, sequence=True)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if state is None:
        state = mlstm_zero_state(batch, num_heads, head_dim_qk, head_dim_v, q.device)
    _check_mlstm_state(state, batch, num_heads, head_dim_qk, head_dim_v, q.device)
    if _runs_triton(backend, q.device, q, k, v, i, f, *state):
        from . import mlstm
        return mlstm.mlstm_chunkwise(q, k, v, i, f, MLSTMState(*state), chunk_size, eps)
    return reference.mlstm_chunkwise(q, k, v, i, f, MLSTMState(*state), chunk_size, eps)


def mlstm_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, f: torch.Tensor,
               state: MLSTMState, *, eps: float = 1e-6, backend: str = "auto") -> torch.Tensor:
    """One mLSTM step of B streams, `state` updated IN PLACE.

    q, k: (B, NH, DHQK); v: (B, NH, DHV); i, f: (B, NH). Returns h (B, NH, DHV) in v.dtype.
    """
    batch, num_heads, head_dim_qk, head_dim_v = _check_mlstm_inputs(q, k, v, i, f, sequence=False)
    _check_mlstm_state(state, batch, num_heads, head_dim_qk, head_dim_v, q.device)
    if _runs_triton(backend, q.device, q, k, v, i, f, *state):
        from . import mlstm
        return mlstm.mlstm_step(q, k, v, i, f, MLSTMState(*state), eps)
    return reference.mlstm_step(q, k, v, i, f, MLSTMState(*state), eps)
