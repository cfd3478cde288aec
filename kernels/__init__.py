"""xLSTM kernels: sLSTM and mLSTM as Triton kernels with persistent state, and the PyTorch reference maths.

Models call the functions below; each picks Triton on CUDA tensors and the reference elsewhere
(`backend="auto"|"triton"|"torch"`, see dispatch.py). Importing this package does not import triton.
"""
from .dispatch import (
    BACKENDS,
    interpreter_enabled,
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_step,
    mlstm_zero_state,
    slstm_sequence,
    slstm_step,
    slstm_zero_state,
    use_triton,
)
from .reference import SLSTM_PRECISIONS, MLSTMState, SLSTMState, R_from_tirex, bias_from_tirex

__all__ = [
    "BACKENDS",
    "SLSTM_PRECISIONS",
    "MLSTMState",
    "SLSTMState",
    "R_from_tirex",
    "bias_from_tirex",
    "interpreter_enabled",
    "mlstm_chunkwise",
    "mlstm_parallel",
    "mlstm_step",
    "mlstm_zero_state",
    "slstm_sequence",
    "slstm_step",
    "slstm_zero_state",
    "use_triton",
]
