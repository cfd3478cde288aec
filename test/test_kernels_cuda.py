"""The compiled Triton kernels on a CUDA GPU (skipped without one): the same equivalences as the interpreter
tests at model-sized shapes, bf16 storage, and CUDA-graph capture of the streaming step.

Tolerances are those of GPU arithmetic: fp32 maths with approximate exp/log and a different summation order
(1e-4), bf16 rounding of states that flips differently where sums differ in their last bit (2e-2).
"""
import math

import pytest
import torch

from xlstm_ros.kernels import (
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_step,
    mlstm_zero_state,
    slstm_sequence,
    slstm_step,
)

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

CUDA = torch.device("cuda")


def rel_err(out, ref):
    assert out.shape == ref.shape
    assert torch.isfinite(out).all(), "NaN or inf in the output"
    return float((out.double() - ref.double()).norm() / ref.double().norm())


def slstm_inputs(batch, steps, heads, dim, seed):
    g = torch.Generator(device=CUDA).manual_seed(seed)
    wx = torch.randn(batch, steps, 4, heads, dim, generator=g, device=CUDA) * 1.5
    R = torch.randn(heads, 4, dim, dim, generator=g, device=CUDA) * (0.6 / math.sqrt(dim))
    bias = torch.randn(4, heads, dim, generator=g, device=CUDA) * 0.1
    bias[1] += 2.0
    return wx, R, bias


def as64(*tensors):
    return [t.double() for t in tensors]


@pytest.mark.parametrize("batch, steps, heads, dim", [(33, 16, 4, 128), (5, 7, 2, 64), (70, 9, 3, 48)])
def test_slstm_fp32_matches_float64(batch, steps, heads, dim):
    wx, R, bias = slstm_inputs(batch, steps, heads, dim, seed=batch)
    h, final = slstm_sequence(wx, R, bias, backend="triton")
    h_ref, final_ref = slstm_sequence(*as64(wx, R, bias), backend="torch")
    assert rel_err(h, h_ref) < 1e-4 and rel_err(final, final_ref.float()) < 1e-4


@pytest.mark.parametrize("batch", [16, 300])
def test_slstm_bf16_compatible_matches_reference(batch):
    wx, R, bias = slstm_inputs(batch, 24, 4, 128, seed=1)
    h, final = slstm_sequence(wx, R, bias, precision="bf16-compatible", backend="triton")
    h_ref, final_ref = slstm_sequence(wx, R, bias, precision="bf16-compatible", backend="torch")
    assert rel_err(h, h_ref) < 2e-2 and rel_err(final, final_ref) < 2e-2
    assert (h == h_ref).float().mean() > 0.5, "most values should round identically"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_slstm_half_storage(dtype):
    wx, R, bias = slstm_inputs(20, 12, 4, 64, seed=2)
    state = torch.zeros(4, 20, 4, 64, device=CUDA, dtype=dtype)
    h, final = slstm_sequence(wx.to(dtype), R.to(dtype), bias, state, backend="triton")
    h_ref, _ = slstm_sequence(*as64(wx.to(dtype), R.to(dtype), bias), backend="torch")
    assert h.dtype == dtype and final.dtype == dtype
    assert rel_err(h, h_ref) < 2e-2


def test_slstm_streaming_steps_and_cuda_graph_capture():
    """T1 steps in one call, then steps on a persistent buffer (rows) replayed from a CUDA graph = one call."""
    wx, R, bias = slstm_inputs(12, 10, 4, 128, seed=3)
    h_all, final_all = slstm_sequence(wx, R, bias, backend="triton")
    _, state = slstm_sequence(wx[:, :4], R, bias, backend="triton")
    buffer = torch.full((4, 20, 4, 128), math.nan, device=CUDA)
    rows = torch.randperm(20, device=CUDA)[:12]
    wx_t = wx[:, 4].clone()
    slstm_step(wx_t, R, bias, buffer, rows=rows, backend="triton")  # compiles, and checks rows eagerly
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):  # recorded, not run
        h_t = slstm_step(wx_t, R, bias, buffer, rows=rows, backend="triton")
    buffer[:, rows] = state
    outputs = []
    for t in range(4, 10):
        wx_t.copy_(wx[:, t])
        graph.replay()
        outputs.append(h_t.clone())
    assert rel_err(torch.stack(outputs, 1), h_all[:, 4:]) < 1e-4
    assert rel_err(buffer[:, rows], final_all) < 1e-4
    others = torch.ones(20, dtype=torch.bool, device=CUDA)
    others[rows] = False
    assert torch.isnan(buffer[:, others]).all(), "streams not in rows must be untouched"


@pytest.mark.parametrize("head_dims, seq, chunk", [((96, 96), 196, 64), ((64, 128), 300, 32),
                                                   ((192, 192), 70, 64)])
def test_mlstm_chunkwise_and_steps_match_float64(head_dims, seq, chunk):
    g = torch.Generator(device=CUDA).manual_seed(seq)
    q, k = (torch.randn(2, 4, seq, head_dims[0], generator=g, device=CUDA) for _ in range(2))
    v = torch.randn(2, 4, seq, head_dims[1], generator=g, device=CUDA)
    i = torch.randn(2, 4, seq, generator=g, device=CUDA)
    f = torch.randn(2, 4, seq, generator=g, device=CUDA) + 3.0
    ref = mlstm_parallel(*as64(q, k, v, i, f))
    h, final = mlstm_chunkwise(q, k, v, i, f, chunk_size=chunk, backend="triton")
    assert rel_err(h, ref) < 1e-4
    h16, _ = mlstm_chunkwise(q.bfloat16(), k.bfloat16(), v.bfloat16(), i, f, chunk_size=chunk, backend="triton")
    assert h16.dtype == torch.bfloat16 and rel_err(h16, ref) < 3e-2
    state = mlstm_zero_state(2, 4, *head_dims, CUDA)
    h_steps = torch.stack([mlstm_step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t], f[:, :, t], state,
                                      backend="triton") for t in range(seq)], 2)
    assert rel_err(h_steps, ref) < 1e-4
    for got, want in zip(state, final):
        assert rel_err(got, want) < 1e-4
