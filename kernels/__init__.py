"""Triton kernels for sLSTM and mLSTM and the PyTorch reference math they must match."""
