"""The Triton kernels, run by Triton's interpreter on CPU tensors (fp32, small shapes), against reference.py.

backend="triton" on CPU tensors runs the very kernels that are compiled on CUDA (kernels/triton_support.py)
once TRITON_INTERPRET=1 is set, which a fixture does for each test here. Every tl.dot dimension is >= 16.
"""
import math

import pytest
import torch

from xlstm_ros.kernels import (
    BackendError,
    MLSTMState,
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_step,
    mlstm_zero_state,
    resolve_backend,
    slstm_sequence,
    slstm_step,
    slstm_zero_state,
)
from xlstm_ros.kernels import mlstm as mlstm_triton
from xlstm_ros.kernels import slstm as slstm_triton

TOL = 1e-5


@pytest.fixture(autouse=True)
def interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    torch.set_num_threads(1)


@pytest.fixture
def nan_buffers(monkeypatch):
    """Every torch.empty / empty_like buffer starts as NaN: outputs must be written in full."""
    empty, empty_like = torch.empty, torch.empty_like

    def nan_empty(*args, **kwargs):
        return empty(*args, **kwargs).fill_(math.nan)

    def nan_empty_like(*args, **kwargs):
        return empty_like(*args, **kwargs).fill_(math.nan)

    monkeypatch.setattr(torch, "empty", nan_empty)
    monkeypatch.setattr(torch, "empty_like", nan_empty_like)


def rel_err(out, ref):
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert torch.isfinite(out).all(), "NaN or inf in the output"
    return float((out.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30))


def slstm_inputs(batch, steps, heads, dim, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    wx = torch.randn(batch, steps, 4, heads, dim, generator=g) * 1.5
    R = torch.randn(heads, 4, dim, dim, generator=g) * (0.6 / math.sqrt(dim))
    bias = torch.randn(4, heads, dim, generator=g) * 0.1
    bias[1] += 2.0
    return wx.to(dtype), R.to(dtype), bias.to(dtype)


def warm_state(batch, heads, dim, seed, R, bias):
    """A state reached after 3 reference steps (n > 0, m != 0), not a fresh one."""
    wx, _, _ = slstm_inputs(batch, 3, heads, dim, seed)
    return slstm_sequence(wx, R.float(), bias.float(), backend="torch")[1]


# ----------------------------------------------------------------------------------------------- sLSTM

@pytest.mark.parametrize("batch, steps, heads, dim", [(9, 5, 2, 16), (17, 3, 1, 32), (3, 4, 2, 24)])
@pytest.mark.parametrize("precision", ["fp32", "bf16-compatible"])
def test_slstm_sequence_matches_reference(batch, steps, heads, dim, precision, nan_buffers):
    wx, R, bias = slstm_inputs(batch, steps, heads, dim, seed=batch + dim)
    state = warm_state(batch, heads, dim, 1, R, bias)
    h, final = slstm_sequence(wx, R, bias, state, precision=precision, backend="triton")
    h_ref, final_ref = slstm_sequence(wx, R, bias, state, precision=precision, backend="torch")
    assert rel_err(h, h_ref) < TOL
    assert rel_err(final, final_ref) < TOL


def test_slstm_fresh_state_strided_input_and_reloaded_R(monkeypatch):
    wx, R, bias = slstm_inputs(5, 4, 2, 16, seed=3)
    strided = wx.permute(1, 0, 2, 3, 4).contiguous().permute(1, 0, 2, 3, 4)  # a view, time-major in memory
    assert not strided.is_contiguous()
    h_ref, final_ref = slstm_sequence(wx, R, bias, backend="torch")
    h, final = slstm_sequence(strided, R, bias, backend="triton")
    assert rel_err(h, h_ref) < TOL and rel_err(final, final_ref) < TOL
    monkeypatch.setattr(slstm_triton, "R_ON_CHIP_MAX_BYTES", 0)  # the path for R too big to keep on chip
    h, final = slstm_sequence(wx, R, bias, backend="triton")
    assert rel_err(h, h_ref) < TOL and rel_err(final, final_ref) < TOL


@pytest.mark.parametrize("R_on_chip", [True, False])
def test_slstm_reads_weight_views_in_the_checkpoint_layout(R_on_chip, monkeypatch):
    """R and bias as views of TiRex's stored layouts ((NH, DH, 4*DH) and (NH*4*DH,)), as the model passes
    them, give exactly what contiguous copies give."""
    wx, R, bias = slstm_inputs(6, 3, 2, 16, seed=15)
    R_view = R.transpose(1, 2).contiguous().transpose(1, 2)  # (NH, 4, DH, DH) over (NH, DH, 4, DH) memory
    bias_view = bias.transpose(0, 1).contiguous().transpose(0, 1)  # (4, NH, DH) over (NH, 4, DH) memory
    assert not R_view.is_contiguous() and not bias_view.is_contiguous()
    if not R_on_chip:
        monkeypatch.setattr(slstm_triton, "R_ON_CHIP_MAX_BYTES", 0)
    state = warm_state(6, 2, 16, 16, R, bias)
    for precision in ("fp32", "bf16-compatible"):
        h, final = slstm_sequence(wx, R, bias, state, precision=precision, backend="triton")
        h_view, final_view = slstm_sequence(wx, R_view, bias_view, state, precision=precision, backend="triton")
        assert torch.equal(h_view, h) and torch.equal(final_view, final)
        buffer, buffer_view = state.clone(), state.clone()
        h_t = slstm_step(wx[:, 0], R, bias, buffer, precision=precision, backend="triton")
        h_t_view = slstm_step(wx[:, 0], R_view, bias_view, buffer_view, precision=precision, backend="triton")
        assert torch.equal(h_t_view, h_t) and torch.equal(buffer_view, buffer)


def test_slstm_streaming_steps_equal_one_sequence_call():
    """T1 steps in one sequence call, then single steps on a persistent buffer (rows) = one call over T."""
    batch, steps, first, heads, dim = 5, 7, 3, 2, 16
    wx, R, bias = slstm_inputs(batch, steps, heads, dim, seed=4)
    h_all, final_all = slstm_sequence(wx, R, bias, backend="torch")
    h_head, state = slstm_sequence(wx[:, :first], R, bias, backend="triton")
    buffer = torch.randn(4, 8, heads, dim)  # other streams live in rows 0, 3, 6
    rows = torch.tensor([7, 1, 4, 2, 5])
    buffer[:, rows] = state
    others = buffer[:, [0, 3, 6]].clone()
    tail = [slstm_step(wx[:, t], R, bias, buffer, rows=rows, backend="triton") for t in range(first, steps)]
    assert rel_err(torch.cat([h_head, torch.stack(tail, 1)], 1), h_all) < TOL
    assert rel_err(buffer[:, rows], final_all) < TOL
    assert torch.equal(buffer[:, [0, 3, 6]], others), "streams not in rows must be untouched"


def test_slstm_streams_of_different_ages_in_one_buffer():
    batch, heads, dim = 18, 1, 16
    wx, R, bias = slstm_inputs(batch, 3, heads, dim, seed=5)
    buffer = slstm_zero_state(batch, heads, dim)
    buffer[:, 9:] = math.nan  # streams never stepped stay exactly as they were
    schedule = [list(range(0, 9)), [8, 0, 5, 2], [2, 7, 5]]
    age = [0] * batch
    for rows in schedule:
        wx_t = torch.stack([wx[b, age[b]] for b in rows])
        h_t = slstm_step(wx_t, R, bias, buffer, rows=torch.tensor(rows, dtype=torch.int32), backend="triton")
        for j, b in enumerate(rows):
            h_own, state_own = slstm_sequence(wx[b:b + 1, :age[b] + 1], R, bias, backend="torch")
            assert rel_err(h_t[j], h_own[0, -1]) < TOL
            age[b] += 1
    for b in range(9):
        state_own = slstm_sequence(wx[b:b + 1, :age[b]], R, bias, backend="torch")[1]
        assert rel_err(buffer[:, b], state_own[:, 0]) < TOL
    assert torch.isnan(buffer[:, 9:]).all()


def test_slstm_step_without_rows_and_poisoned_outputs(nan_buffers):
    wx, R, bias = slstm_inputs(17, 1, 2, 16, seed=6)
    state = warm_state(17, 2, 16, 7, R, bias)
    state_ref = state.clone()
    h_t = slstm_step(wx[:, 0], R, bias, state, precision="bf16-compatible", backend="triton")
    h_ref = slstm_step(wx[:, 0], R, bias, state_ref, precision="bf16-compatible", backend="torch")
    assert rel_err(h_t, h_ref) < TOL and rel_err(state, state_ref) < TOL


@pytest.mark.parametrize("precision", ["fp32", "bf16-compatible"])
def test_slstm_extreme_gates(precision):
    wx, R, bias = slstm_inputs(3, 5, 2, 16, seed=8)
    wx[:, :, 0] = torch.tensor([80.0, -80.0, 0.0])[:, None, None, None]
    wx[:, :, 1] = torch.tensor([-60.0, 60.0, -60.0])[:, None, None, None]
    wx[:, :, 2] = -80.0
    h, final = slstm_sequence(wx, R, bias, precision=precision, backend="triton")
    h_ref, final_ref = slstm_sequence(wx, R, bias, precision=precision, backend="torch")
    assert rel_err(h, h_ref) < TOL and rel_err(final, final_ref) < TOL


def test_slstm_fp16_storage():
    wx, R, bias = slstm_inputs(9, 4, 2, 16, seed=9, dtype=torch.float16)
    state = slstm_zero_state(9, 2, 16, dtype=torch.float16)
    h, final = slstm_sequence(wx, R, bias, state, backend="triton")
    h_ref, final_ref = slstm_sequence(wx, R, bias, state, backend="torch")
    assert h.dtype == torch.float16 and final.dtype == torch.float16
    assert rel_err(h, h_ref) < 5e-3 and rel_err(final, final_ref) < 5e-3  # h is rounded to fp16 for h R


# ----------------------------------------------------------------------------------------------- mLSTM

def mlstm_inputs(batch, heads, steps, dqk, dv, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, steps, dqk, generator=g)
    k = torch.randn(batch, heads, steps, dqk, generator=g)
    v = torch.randn(batch, heads, steps, dv, generator=g)
    i = torch.randn(batch, heads, steps, generator=g)
    f = torch.randn(batch, heads, steps, generator=g) + 2.0
    return q, k, v, i, f


def warm_mlstm_state(batch, heads, dqk, dv, seed):
    return mlstm_chunkwise(*mlstm_inputs(batch, heads, 5, dqk, dv, seed), backend="torch")[1]


def assert_states_close(got, want):
    for name, x, y in zip("Cnm", got, want):
        assert rel_err(x, y) < TOL, name


@pytest.mark.parametrize("batch, heads, steps, dqk, dv, chunk", [
    (2, 2, 21, 16, 32, 16),  # partial last chunk
    (1, 1, 11, 32, 16, 32),  # a single partial chunk
    (1, 1, 17, 80, 80, 16),  # head dims tiled (64 + 16 of 64) and masked
])
def test_mlstm_chunkwise_matches_reference(batch, heads, steps, dqk, dv, chunk, nan_buffers):
    inputs = mlstm_inputs(batch, heads, steps, dqk, dv, seed=steps + dqk)
    state = warm_mlstm_state(batch, heads, dqk, dv, seed=1)
    h, final = mlstm_chunkwise(*inputs, state, chunk_size=chunk, backend="triton")
    h_ref, final_ref = mlstm_chunkwise(*inputs, state, chunk_size=chunk, backend="torch")
    assert rel_err(h, h_ref) < TOL
    assert_states_close(final, final_ref)


def test_mlstm_chunkwise_fresh_state_equals_parallel_and_carries_over():
    q, k, v, i, f = mlstm_inputs(1, 2, 24, 16, 16, seed=2)
    h_parallel = mlstm_parallel(q, k, v, i, f)
    h_all, final_all = mlstm_chunkwise(q, k, v, i, f, chunk_size=16, backend="triton")
    assert rel_err(h_all, h_parallel) < TOL
    h_a, state_a = mlstm_chunkwise(q[:, :, :9], k[:, :, :9], v[:, :, :9], i[:, :, :9], f[:, :, :9],
                                   chunk_size=16, backend="triton")
    h_b, state_b = mlstm_chunkwise(q[:, :, 9:], k[:, :, 9:], v[:, :, 9:], i[:, :, 9:], f[:, :, 9:], state_a,
                                   chunk_size=16, backend="triton")
    assert rel_err(torch.cat([h_a, h_b], 2), h_all) < TOL
    assert_states_close(state_b, final_all)


def test_mlstm_steps_continue_a_chunkwise_prefill_in_place():
    """Prefill T1 tokens chunkwise, then single steps on the persistent state = the whole sequence."""
    q, k, v, i, f = mlstm_inputs(2, 2, 10, 16, 80, seed=3)  # DHV 80: two DHV tiles share n and m
    h_ref, final_ref = mlstm_chunkwise(q, k, v, i, f, chunk_size=4, backend="torch")
    h_head, state = mlstm_chunkwise(q[:, :, :6], k[:, :, :6], v[:, :, :6], i[:, :, :6], f[:, :, :6],
                                    chunk_size=16, backend="triton")
    buffers = [x.data_ptr() for x in state]
    tail = [mlstm_step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t], f[:, :, t], state, backend="triton")
            for t in range(6, 10)]
    assert rel_err(torch.cat([h_head, torch.stack(tail, 2)], 2), h_ref) < TOL
    assert_states_close(state, final_ref)
    assert [x.data_ptr() for x in state] == buffers


def test_mlstm_step_from_fresh_state_with_strided_inputs(nan_buffers):
    q, k, v, i, f = mlstm_inputs(3, 2, 4, 32, 16, seed=4)
    state = mlstm_zero_state(3, 2, 32, 16)
    state_ref = mlstm_zero_state(3, 2, 32, 16)
    for t in range(4):  # q[:, :, t] etc. are strided views
        h = mlstm_step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t], f[:, :, t], state, backend="triton")
        h_ref = mlstm_step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t], f[:, :, t], state_ref, backend="torch")
        assert rel_err(h, h_ref) < TOL
    assert_states_close(state, state_ref)


def test_mlstm_extreme_gates():
    q, k, v, i, f = mlstm_inputs(1, 2, 20, 16, 16, seed=5)
    i[0, 0], f[0, 0] = 80.0, -60.0
    i[0, 1], f[0, 1] = -80.0, 60.0
    h, final = mlstm_chunkwise(q, k, v, i, f, chunk_size=16, backend="triton")
    h_ref, final_ref = mlstm_chunkwise(q, k, v, i, f, chunk_size=16, backend="torch")
    assert rel_err(h, h_ref) < TOL
    assert_states_close(final, final_ref)
    state = mlstm_zero_state(1, 2, 16, 16)
    h_steps = torch.stack([mlstm_step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t], f[:, :, t], state,
                                      backend="triton") for t in range(20)], 2)
    assert rel_err(h_steps, h_ref) < TOL


# ----------------------------------------------------------------------------------------------- dispatch

def test_auto_picks_torch_on_cpu_even_with_the_interpreter_enabled(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("auto must not run Triton on CPU tensors")

    monkeypatch.setattr(slstm_triton, "slstm_sequence", refuse)
    monkeypatch.setattr(mlstm_triton, "mlstm_chunkwise", refuse)
    wx, R, bias = slstm_inputs(2, 2, 1, 16, seed=10)
    slstm_sequence(wx, R, bias)
    mlstm_chunkwise(*mlstm_inputs(1, 1, 3, 16, 16, seed=11))
    with pytest.raises(AssertionError, match="auto must not"):
        slstm_sequence(wx, R, bias, backend="triton")


def test_backend_resolution(monkeypatch):
    """One place decides: auto is Triton only on CUDA and without autograd; triton on the CPU only in the
    interpreter and never under autograd; anything else is refused by name."""
    cpu = torch.device("cpu")
    assert resolve_backend("auto", cpu) == "torch" and resolve_backend("torch", cpu) == "torch"
    assert resolve_backend("triton", cpu) == "triton"  # TRITON_INTERPRET=1 (fixture)
    assert resolve_backend("auto", torch.device("cuda"), needs_grad=True) == "torch"
    with pytest.raises(BackendError, match="forward-only"):
        resolve_backend("triton", cpu, needs_grad=True)
    with pytest.raises(ValueError, match="backend must be one of auto, triton, torch"):
        resolve_backend("cuda", cpu)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendError, match="TRITON_INTERPRET=1"):
        resolve_backend("triton", cpu)


def test_triton_path_rejects_what_it_cannot_run():
    q, k, v, i, f = mlstm_inputs(1, 1, 4, 16, 16, seed=12)
    with pytest.raises(ValueError, match="chunk_size must be a power of two >= 16"):
        mlstm_chunkwise(q, k, v, i, f, chunk_size=24, backend="triton")
    with pytest.raises(TypeError, match="bfloat16"):
        mlstm_chunkwise(q.bfloat16(), k.bfloat16(), v.bfloat16(), i, f, backend="triton")
    wx, R, bias = slstm_inputs(2, 2, 1, 8, seed=13)
    with pytest.raises(ValueError, match="head dims 16..128"):
        slstm_sequence(wx, R, bias, backend="triton")
    with pytest.raises(RuntimeError, match="forward-only"):
        wx, R, bias = slstm_inputs(2, 2, 1, 16, seed=14)
        slstm_sequence(wx.requires_grad_(True), R, bias, backend="triton")
    state = MLSTMState(*(x.t() if x.dim() == 2 else x for x in mlstm_zero_state(2, 2, 16, 16)))
    with pytest.raises(ValueError, match="contiguous"):
        mlstm_step(q[:, :, 0].expand(2, 2, 16), k[:, :, 0].expand(2, 2, 16), v[:, :, 0].expand(2, 2, 16),
                   i[:, :, 0].expand(2, 2), f[:, :, 0].expand(2, 2), state, backend="triton")
