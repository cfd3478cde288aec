"""xLSTM kernels: sLSTM and mLSTM as Triton kernels with persistent state, and the PyTorch reference maths.

Models call the functions below with a `backend` ("auto" | "triton" | "torch", resolved by backend.py):
Triton on CUDA tensors and the reference elsewhere by default. Importing this package does not import triton.
"""
from .backend import BACKENDS, BackendError, resolve_backend
from .dispatch import (
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_step,
    mlstm_zero_state,
    slstm_sequence,
    slstm_step,
    slstm_zero_state,
)
from .reference import SLSTM_PRECISIONS, MLSTMState, SLSTMState

__all__ = [
    "BACKENDS",
    "SLSTM_PRECISIONS",
    "BackendError",
    "MLSTMState",
    "SLSTMState",
    "mlstm_chunkwise",
    "mlstm_parallel",
    "mlstm_step",
    "mlstm_zero_state",
    "resolve_backend",
    "slstm_sequence",
    "slstm_step",
    "slstm_zero_state",
]
