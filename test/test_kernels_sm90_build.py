"""Build the Triton kernels for the H200 (sm_90a) with triton's bundled ptxas: no GPU needed.

The interpreter tests prove the maths; these prove that the configurations the launchers choose on a GPU
compile to a cubin (tl.dot shapes and dtypes, API use) and fit the shared memory a Hopper block may use.
"""
import pytest
import torch

import triton
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

from xlstm_ros.kernels import mlstm, slstm  # noqa: E402

if not isinstance(slstm._slstm_kernel, JITFunction):
    pytest.skip("TRITON_INTERPRET=1 was set before triton was imported: nothing to compile",
                allow_module_level=True)

H200 = GPUTarget("cuda", 90, 32)
H200_SM_COUNT = 132
MAX_SHARED_BYTES = 227 * 1024  # per block on Hopper
TYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.int64: "i64"}


def build(kernel, pointer_dtypes: dict, meta: dict):
    """Compile `kernel` for sm_90 with constexprs and launch options from `meta`; pointers default to fp32."""
    options = {key: meta[key] for key in ("num_warps", "num_stages") if key in meta}
    constexprs = {key: value for key, value in meta.items() if key not in options}
    signature = {}
    for param in kernel.params:
        if param.is_constexpr:
            signature[param.name] = "constexpr"
        elif param.name.endswith("_ptr"):
            signature[param.name] = "*" + TYPE_NAMES[pointer_dtypes.get(param.name, torch.float32)]
        else:
            signature[param.name] = "fp32" if param.name in ("qk_scale", "eps") else "i32"
    compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs), target=H200,
                              options=options)
    assert compiled.asm["cubin"], "ptxas produced no cubin"
    assert compiled.metadata.shared <= MAX_SHARED_BYTES, f"{compiled.metadata.shared} bytes of shared memory"
    return compiled


def build_slstm(head_dim, R_dtype, precision, num_rows, has_rows):
    meta = slstm.kernel_config(head_dim, R_dtype, precision, num_rows, num_heads=4, sm_count=H200_SM_COUNT)
    return build(slstm._slstm_kernel, {"R_ptr": R_dtype, "rows_ptr": torch.int64}, {**meta, "HAS_ROWS": has_rows})


def build_mlstm(head_dim_qk, head_dim_v, chunk_size, dtype):
    inputs = {name: dtype for name in ("q_ptr", "k_ptr", "v_ptr", "i_ptr", "f_ptr", "h_ptr")}
    meta = mlstm.chunk_config(head_dim_qk, head_dim_v, chunk_size, dtype)
    build(mlstm._chunk_states_kernel, inputs, meta)
    build(mlstm._chunk_outputs_kernel, inputs, meta)
    build(mlstm._step_kernel, inputs, mlstm.step_config(head_dim_qk, head_dim_v))


def test_tirex_and_vil_configurations_build_for_h200():
    """TiRex (4 heads x 128, bf16-compatible, fp32 checkpoint weights) and ViL-S-like mLSTM in bf16."""
    for num_rows in (16, 1024):
        compiled = build_slstm(128, torch.float32, "bf16-compatible", num_rows, has_rows=num_rows == 16)
        assert "mma" in compiled.asm["ptx"], "h R must run on tensor cores"
    build_mlstm(64, 64, 64, torch.bfloat16)


@pytest.mark.slow
@pytest.mark.parametrize("head_dim", [16, 32, 48, 64, 128])
@pytest.mark.parametrize("R_dtype, precision", [(torch.float32, "fp32"), (torch.float16, "fp32"),
                                                (torch.bfloat16, "fp32"), (torch.bfloat16, "bf16-compatible")])
def test_slstm_configurations_build_for_h200(head_dim, R_dtype, precision):
    for num_rows in (1, 4096):
        build_slstm(head_dim, R_dtype, precision, num_rows, has_rows=True)


@pytest.mark.slow
@pytest.mark.parametrize("head_dims", [(16, 16), (96, 96), (128, 256), (192, 192), (384, 384)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("chunk_size", [16, 64])
def test_mlstm_configurations_build_for_h200(head_dims, dtype, chunk_size):
    build_mlstm(*head_dims, chunk_size, dtype)
