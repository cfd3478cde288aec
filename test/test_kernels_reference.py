"""The PyTorch reference maths (through the public dispatch API, backend="torch").

Oracles: straight-line float64 equations written here in their UNSTABILISED form (no m), which the
stabilised reference must reproduce to 1e-10; tirex-ts 1.4.2's own sLSTM cell for the bf16-compatible
precision (bitwise); and the forms against each other (parallel / chunkwise / step, sequence / steps).
"""
import math

import pytest
import torch

from xlstm_ros.kernels import (
    MLSTMState,
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_step,
    mlstm_zero_state,
    slstm_sequence,
    slstm_step,
    slstm_zero_state,
)
from xlstm_ros.models.slstm import R_from_tirex, bias_from_tirex

F64 = torch.float64


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert out.shape == ref.shape
    assert torch.isfinite(out).all()
    return float((out.double() - ref.double()).norm() / ref.double().norm())


def slstm_inputs(batch, steps, heads, dim, seed, dtype=F64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    wx = torch.randn(batch, steps, 4, heads, dim, generator=g, dtype=dtype) * scale
    R = torch.randn(heads, 4, dim, dim, generator=g, dtype=dtype) * (0.5 / math.sqrt(dim))
    bias = torch.randn(4, heads, dim, generator=g, dtype=dtype) * 0.1
    bias[1] += 2.0  # forget gate mostly open, so the recurrence carries over many steps
    return wx, R, bias


def slstm_equations(wx, R, bias):
    """sLSTM without the stabiliser: c~ = s(f) c~ + e^i tanh(z), n~ = s(f) n~ + e^i, h = s(o) c~/n~.

    Returns h (B, T, NH, DH) and the stabilised final state that the reference must hold:
    (h, c~ e^-m, n~ e^-m, m) with m_1 = i_1, m_t = max(i_t, log s(f_t) + m_{t-1}).
    """
    batch, steps, _, heads, dim = wx.shape
    h = torch.zeros(batch, heads, dim, dtype=F64)
    c_bar, n_bar, m = torch.zeros_like(h), torch.zeros_like(h), torch.zeros_like(h)
    out = torch.zeros(batch, steps, heads, dim, dtype=F64)
    for t in range(steps):
        for b in range(batch):
            for k in range(heads):
                i_, f_, z_, o_ = (wx[b, t, g, k] + h[b, k] @ R[k, g] + bias[g, k] for g in range(4))
                f_ = torch.clamp(f_, max=15.0)
                forget = 1.0 / (1.0 + torch.exp(-f_))
                m[b, k] = i_ if t == 0 else torch.maximum(i_, torch.log(forget) + m[b, k])
                c_bar[b, k] = forget * c_bar[b, k] + torch.exp(i_) * torch.tanh(z_)
                n_bar[b, k] = forget * n_bar[b, k] + torch.exp(i_)
                h[b, k] = c_bar[b, k] / n_bar[b, k] / (1.0 + torch.exp(-o_))
                out[b, t, k] = h[b, k]
    scale = torch.exp(-m)
    return out, torch.stack((h, c_bar * scale, n_bar * scale, m))


def test_slstm_sequence_matches_float64_equations():
    wx, R, bias = slstm_inputs(batch=3, steps=6, heads=2, dim=5, seed=0)
    wx[0, 2, 1] += 20.0  # forget pre-activations above the clamp at 15
    h, state = slstm_sequence(wx, R, bias, backend="torch")
    h_ref, state_ref = slstm_equations(wx, R, bias)
    assert h.dtype == F64 and state.dtype == torch.float32  # a fresh state is float32 ...
    assert rel_err(h, h_ref) < 1e-10
    state64 = slstm_zero_state(3, 2, 5, dtype=F64)  # ... unless given in float64
    _, state = slstm_sequence(wx, R, bias, state64, backend="torch")
    for got, want in zip(state, state_ref):
        assert rel_err(got, want) < 1e-10
    assert torch.count_nonzero(state64) == 0, "slstm_sequence must not modify the state it is given"


def test_slstm_steps_equal_sequence_and_continue_it():
    wx, R, bias = slstm_inputs(batch=4, steps=7, heads=2, dim=6, seed=1)
    h_all, state_all = slstm_sequence(wx, R, bias, slstm_zero_state(4, 2, 6, dtype=F64), backend="torch")
    h_head, state = slstm_sequence(wx[:, :3], R, bias, slstm_zero_state(4, 2, 6, dtype=F64), backend="torch")
    tail = [slstm_step(wx[:, t], R, bias, state, backend="torch") for t in range(3, 7)]
    assert rel_err(torch.cat([h_head, torch.stack(tail, 1)], 1), h_all) < 1e-13
    assert rel_err(state, state_all) < 1e-13


def test_slstm_streams_of_different_ages_in_one_buffer():
    wx, R, bias = slstm_inputs(batch=5, steps=4, heads=2, dim=4, seed=2)
    buffer = slstm_zero_state(5, 2, 4, dtype=F64)
    schedule = [[0, 2], [4, 2, 1], [2], [0, 1, 2, 3]]
    age = [0] * 5
    outputs = {b: [] for b in range(5)}
    for rows in schedule:
        index = torch.tensor(rows)
        wx_t = torch.stack([wx[b, age[b]] for b in rows])
        h_t = slstm_step(wx_t, R, bias, buffer, rows=index, backend="torch")
        for j, b in enumerate(rows):
            outputs[b].append(h_t[j])
            age[b] += 1
    for b in range(5):
        h_own, state_own = slstm_sequence(wx[b:b + 1, :age[b]], R, bias,
                                          slstm_zero_state(1, 2, 4, dtype=F64), backend="torch")
        if age[b]:
            assert rel_err(torch.stack(outputs[b]), h_own[0]) < 1e-13
        assert rel_err(buffer[:, b], state_own[:, 0]) < 1e-13 if age[b] else torch.count_nonzero(buffer[:, b]) == 0


def test_slstm_empty_sequence_returns_the_state():
    wx, R, bias = slstm_inputs(batch=2, steps=0, heads=1, dim=4, seed=3)
    state = torch.randn(4, 2, 1, 4, dtype=F64)
    h, final = slstm_sequence(wx, R, bias, state, backend="torch")
    assert h.shape == (2, 0, 1, 4) and torch.equal(final, state)


@pytest.mark.parametrize("precision", ["fp32", "bf16-compatible"])
def test_slstm_extreme_gates_stay_finite(precision):
    wx, R, bias = slstm_inputs(batch=3, steps=5, heads=2, dim=8, seed=4, dtype=torch.float32)
    wx[:, :, 0] = torch.tensor([80.0, -80.0, 0.0])[:, None, None, None]  # input gate
    wx[:, :, 1] = torch.tensor([-60.0, 60.0, -60.0])[:, None, None, None]  # forget gate
    wx[:, :, 2] = -80.0  # cell input
    h, state = slstm_sequence(wx, R, bias, precision=precision, backend="torch")
    assert torch.isfinite(h).all() and torch.isfinite(state).all()
    assert (state[2] >= 1.0).all(), "the normaliser is >= 1 after any step"


def tirex_cell(heads, dim, seed):
    cell_module = pytest.importorskip("tirex.models.slstm.cell")
    cell = cell_module.sLSTMCell(cell_module.sLSTMBlockConfig(embedding_dim=heads * dim, num_heads=heads),
                                 backend="torch")
    g = torch.Generator().manual_seed(seed)
    bias = torch.randn(heads, 4, dim, generator=g) * 0.1
    bias[:, 1] += 3.0
    with torch.no_grad():
        cell._recurrent_kernel_.copy_(torch.randn(heads, dim, 4 * dim, generator=g) * (0.5 / math.sqrt(dim)))
        cell._bias_.copy_(bias.reshape(-1))
    return cell, R_from_tirex(cell._recurrent_kernel_.detach()), bias_from_tirex(cell._bias_.detach(), heads)


def test_slstm_bf16_compatible_is_bitwise_tirex():
    heads, dim, batch, steps = 2, 16, 3, 9
    cell, R, bias = tirex_cell(heads, dim, seed=6)
    x = torch.randn(batch, steps, 4 * heads * dim, generator=torch.Generator().manual_seed(7)) * 2.0
    with torch.no_grad():
        h_tirex, state_tirex = cell(x, None)  # h (B, NH, T, DH); state (4, B, NH*DH)
        steps_tirex, state = [], None
        for t in range(steps):
            h_t, state = cell(x[:, t:t + 1], state)
            steps_tirex.append(h_t[:, :, 0])
    wx = x.view(batch, steps, 4, heads, dim)
    h, final = slstm_sequence(wx, R, bias, precision="bf16-compatible", backend="torch")
    assert torch.equal(h, h_tirex.transpose(1, 2))
    assert torch.equal(final, state_tirex.view(4, batch, heads, dim))
    buffer = slstm_zero_state(batch, heads, dim)
    for t in range(steps):
        h_t = slstm_step(wx[:, t], R, bias, buffer, precision="bf16-compatible", backend="torch")
        assert torch.equal(h_t, steps_tirex[t])
    assert torch.equal(buffer, state.view(4, batch, heads, dim))
    assert not torch.equal(slstm_sequence(wx, R, bias, backend="torch")[0], h), "fp32 must differ from bf16"


def test_slstm_bf16_compatible_rows_are_bitwise_tirex():
    heads, dim = 2, 16
    cell, R, bias = tirex_cell(heads, dim, seed=8)
    x = torch.randn(4, 3, 4 * heads * dim, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        _, state_tirex = cell(x[[1, 3], :2], None)
        h_tirex, _ = cell(x[[1, 3], 2:3], state_tirex)
    buffer = slstm_zero_state(4, heads, dim)
    rows = torch.tensor([3, 1])
    wx = x.view(4, 3, 4, heads, dim)
    for t in range(3):
        h_t = slstm_step(wx[[3, 1], t], R, bias, buffer, rows=rows, precision="bf16-compatible", backend="torch")
    assert torch.equal(h_t, h_tirex[[1, 0], :, 0])
    assert torch.count_nonzero(buffer[:, [0, 2]]) == 0


# ----------------------------------------------------------------------------------------------- mLSTM

def mlstm_inputs(batch, heads, steps, dqk, dv, seed, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, steps, dqk, generator=g, dtype=dtype)
    k = torch.randn(batch, heads, steps, dqk, generator=g, dtype=dtype)
    v = torch.randn(batch, heads, steps, dv, generator=g, dtype=dtype)
    i = torch.randn(batch, heads, steps, generator=g, dtype=dtype)
    f = torch.randn(batch, heads, steps, generator=g, dtype=dtype) + 2.0
    return q, k, v, i, f


def mlstm_equations(q, k, v, i, f, eps=1e-6):
    """mLSTM without the stabiliser, one token at a time.

    C~ = s(f) C~ + e^i k v^T, n~ = s(f) n~ + e^i k (k / sqrt(DHQK)), and the stabilised output rewritten
    in these terms: h = C~^T q / (max(|n~.q|, 1) + eps e^m), m_t = max_{j<=t}(sum_{r=j+1..t} log s(f_r) + i_j).
    Returns h and the stabilised final state (C~ e^-m, n~ e^-m, m).
    """
    batch, heads, steps, dqk = q.shape
    k = k / math.sqrt(dqk)
    h = torch.zeros(batch, heads, steps, v.shape[-1], dtype=F64)
    C = torch.zeros(batch, heads, dqk, v.shape[-1], dtype=F64)
    n = torch.zeros(batch, heads, dqk, dtype=F64)
    m = torch.zeros(batch, heads, dtype=F64)
    log_f = torch.log(torch.sigmoid(f))
    for b in range(batch):
        for a in range(heads):
            for t in range(steps):
                kv = torch.outer(k[b, a, t], v[b, a, t])
                C[b, a] = torch.sigmoid(f[b, a, t]) * C[b, a] + torch.exp(i[b, a, t]) * kv
                n[b, a] = torch.sigmoid(f[b, a, t]) * n[b, a] + torch.exp(i[b, a, t]) * k[b, a, t]
                m[b, a] = max(log_f[b, a, j + 1:t + 1].sum() + i[b, a, j] for j in range(t + 1))
                denominator = torch.clamp((n[b, a] @ q[b, a, t]).abs(), min=1.0) + eps * torch.exp(m[b, a])
                h[b, a, t] = C[b, a].T @ q[b, a, t] / denominator
    scale = torch.exp(-m)
    return h, MLSTMState(C * scale[..., None, None], n * scale[..., None], m)


def assert_states_close(got, want, tol):
    for name, x, y in zip("Cnm", got, want):
        assert rel_err(x, y) < tol, name


def test_mlstm_parallel_matches_float64_equations():
    q, k, v, i, f = mlstm_inputs(2, 2, 11, 4, 3, seed=10)
    h_ref, _ = mlstm_equations(q, k, v, i, f)
    assert rel_err(mlstm_parallel(q, k, v, i, f), h_ref) < 1e-10


@pytest.mark.parametrize("chunk_size", [1, 4, 5, 16])
def test_mlstm_chunkwise_matches_float64_equations(chunk_size):
    q, k, v, i, f = mlstm_inputs(2, 2, 13, 4, 3, seed=11)
    h_ref, state_ref = mlstm_equations(q, k, v, i, f)
    h, state = mlstm_chunkwise(q, k, v, i, f, mlstm_zero_state(2, 2, 4, 3, dtype=F64), chunk_size=chunk_size,
                               backend="torch")
    assert rel_err(h, h_ref) < 1e-10
    assert_states_close(state, state_ref, 1e-10)


def test_mlstm_steps_match_float64_equations_and_update_in_place():
    q, k, v, i, f = mlstm_inputs(2, 3, 9, 4, 5, seed=12)
    h_ref, state_ref = mlstm_equations(q, k, v, i, f)
    state = mlstm_zero_state(2, 3, 4, 5, dtype=F64)
    buffers = [x.data_ptr() for x in state]
    h = torch.stack([mlstm_step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t], f[:, :, t], state, backend="torch")
                     for t in range(9)], 2)
    assert rel_err(h, h_ref) < 1e-10
    assert_states_close(state, state_ref, 1e-10)
    assert [x.data_ptr() for x in state] == buffers


def test_mlstm_chunkwise_carried_state_equals_one_call():
    q, k, v, i, f = mlstm_inputs(1, 2, 20, 8, 4, seed=13)
    fresh = mlstm_zero_state(1, 2, 8, 4, dtype=F64)
    h_all, state_all = mlstm_chunkwise(q, k, v, i, f, fresh, chunk_size=4, backend="torch")
    h_a, state_a = mlstm_chunkwise(q[:, :, :7], k[:, :, :7], v[:, :, :7], i[:, :, :7], f[:, :, :7], fresh,
                                   chunk_size=4, backend="torch")
    h_b, state_b = mlstm_chunkwise(q[:, :, 7:], k[:, :, 7:], v[:, :, 7:], i[:, :, 7:], f[:, :, 7:], state_a,
                                   chunk_size=4, backend="torch")
    assert rel_err(torch.cat([h_a, h_b], 2), h_all) < 1e-13
    assert_states_close(state_b, state_all, 1e-13)
    assert torch.count_nonzero(fresh.C) == 0, "mlstm_chunkwise must not modify the state it is given"
    h_none, _ = mlstm_chunkwise(q, k, v, i, f, chunk_size=4, backend="torch")
    assert h_none.dtype == F64 and rel_err(h_none, h_all) < 1e-13


def test_mlstm_zero_stabiliser_state_differs_only_by_eps():
    q, k, v, i, f = mlstm_inputs(1, 1, 6, 4, 4, seed=14)
    zeros = MLSTMState(torch.zeros(1, 1, 4, 4, dtype=F64), torch.zeros(1, 1, 4, dtype=F64),
                       torch.zeros(1, 1, dtype=F64))
    h_zero, _ = mlstm_chunkwise(q, k, v, i, f, zeros, backend="torch")
    h_exact, _ = mlstm_equations(q, k, v, i, f, eps=0.0)
    assert rel_err(h_zero, h_exact) < 1e-5


def test_mlstm_empty_sequence_returns_the_state():
    q, k, v, i, f = mlstm_inputs(1, 2, 0, 4, 4, seed=15)
    state = mlstm_zero_state(1, 2, 4, 4, dtype=F64)
    h, final = mlstm_chunkwise(q, k, v, i, f, state, backend="torch")
    assert h.shape == (1, 2, 0, 4)
    assert all(torch.equal(x, y) for x, y in zip(final, state))


def test_mlstm_extreme_gates_stay_finite():
    q, k, v, i, f = mlstm_inputs(1, 2, 12, 16, 16, seed=16, dtype=torch.float32)
    i[0, 0], f[0, 0] = 80.0, -60.0
    i[0, 1], f[0, 1] = -80.0, 60.0
    h_parallel = mlstm_parallel(q, k, v, i, f)
    h_chunk, state = mlstm_chunkwise(q, k, v, i, f, chunk_size=4, backend="torch")
    state_steps = mlstm_zero_state(1, 2, 16, 16)
    h_steps = torch.stack([mlstm_step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t], f[:, :, t], state_steps,
                                      backend="torch") for t in range(12)], 2)
    for h in (h_parallel, h_chunk, h_steps):
        assert torch.isfinite(h).all()
    assert all(torch.isfinite(x).all() for x in state)
    assert rel_err(h_chunk, h_parallel) < 1e-5 and rel_err(h_steps, h_parallel) < 1e-5


def test_reference_is_differentiable_for_training():
    wx, R, bias = slstm_inputs(batch=2, steps=3, heads=1, dim=3, seed=19)
    state = slstm_zero_state(2, 1, 3, dtype=F64)
    for x in (wx, R, bias):
        x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda *a: slstm_sequence(*a, state, backend="auto")[0], (wx, R, bias),
                                    fast_mode=True)
    inputs = [x.requires_grad_(True) for x in mlstm_inputs(1, 1, 5, 3, 2, seed=20)]
    assert torch.autograd.gradcheck(lambda *a: mlstm_chunkwise(*a, chunk_size=2, backend="auto")[0], inputs,
                                    fast_mode=True)


# ----------------------------------------------------------------------------------------------- inputs

def test_bad_inputs_name_the_parameter(monkeypatch):
    wx, R, bias = slstm_inputs(batch=2, steps=3, heads=2, dim=4, seed=17, dtype=torch.float32)
    with pytest.raises(ValueError, match="R: expected shape"):
        slstm_sequence(wx, R[:, :3], bias)
    with pytest.raises(ValueError, match="bias"):
        slstm_sequence(wx, R, bias[:, :1])
    with pytest.raises(ValueError, match="state"):
        slstm_sequence(wx, R, bias, torch.zeros(4, 3, 2, 4))
    with pytest.raises(ValueError, match="precision"):
        slstm_sequence(wx, R, bias, precision="bf16")
    with pytest.raises(ValueError, match="backend"):
        slstm_sequence(wx, R, bias, backend="cuda")
    with pytest.raises(TypeError, match="wx"):
        slstm_sequence(wx.long(), R, bias)
    state = slstm_zero_state(4, 2, 4)
    with pytest.raises(ValueError, match="pass rows"):
        slstm_step(wx[:, 0], R, bias, state)
    with pytest.raises(ValueError, match="rows: indices must lie"):
        slstm_step(wx[:, 0], R, bias, state, rows=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="rows: indices must be unique"):
        slstm_step(wx[:, 0], R, bias, state, rows=torch.tensor([1, 1]))
    with pytest.raises(TypeError, match="rows"):
        slstm_step(wx[:, 0], R, bias, state, rows=torch.tensor([0.0, 1.0]))
    q, k, v, i, f = mlstm_inputs(1, 2, 5, 4, 4, seed=18, dtype=torch.float32)
    with pytest.raises(ValueError, match="f: expected shape"):
        mlstm_parallel(q, k, v, i, f[..., :4])
    with pytest.raises(ValueError, match="chunk_size"):
        mlstm_chunkwise(q, k, v, i, f, chunk_size=0)
    with pytest.raises(ValueError, match="state.m"):
        mlstm_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], i[:, :, 0], f[:, :, 0],
                   MLSTMState(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4), torch.zeros(1, 3)))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        slstm_sequence(wx, R, bias, backend="triton")


@pytest.mark.parametrize("form", ["parallel", "chunkwise", "step"])
def test_mlstm_output_keeps_the_input_dtype(form):
    """Low-precision inputs give outputs of that dtype (the maths runs in float32 inside)."""
    from xlstm_ros.kernels import mlstm_chunkwise, mlstm_parallel, mlstm_step, mlstm_zero_state

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 16, generator=g).to(torch.bfloat16) for _ in range(3))
    i, f = (torch.randn(1, 2, 5, generator=g).to(torch.bfloat16) for _ in range(2))
    if form == "parallel":
        h = mlstm_parallel(q, k, v, i, f)
    elif form == "chunkwise":
        h, _ = mlstm_chunkwise(q, k, v, i, f, chunk_size=4, backend="torch")
    else:
        state = mlstm_zero_state(1, 2, 16, 16)
        h = mlstm_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], i[:, :, 0], f[:, :, 0], state, backend="torch")
    assert h.dtype == torch.bfloat16
