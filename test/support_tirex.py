"""Test support for TiRex: seeded random weights (official parameter names) and small official-format files."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from xlstm_ros.models.tirex import TiRex, TiRexConfig, save_tirex_checkpoint

@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Run a module's tests on one torch thread (restored afterwards): on this shared 2-core host the
    default 2 threads made tirex-ts up to 30x slower, and results are bitwise the same."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


SMALL_CONFIG = TiRexConfig(embedding_dim=128, num_blocks=2, num_heads=4, input_ff_dim=256)
"""Reduced config for the default tests: same window (2048 = 64 tokens), 4 heads x 32, 2 blocks."""


def randomize_tirex_parameters(model: nn.Module, seed: int) -> None:
    """Fill every parameter of a TiRex-named model (ours or tirex-ts) from a seeded generator.

    Linear weights ~ N(0, 1/fan_in), biases ~ N(0, 0.01); headwise gate weights ~ N(0, 1/head_dim);
    R ~ N(0, 0.25/head_dim); cell bias ~ N(0, 0.01) plus 3..6 on the forget-gate slice so the recurrence is
    not trivial; norm weights near their neutral values (RMSNorm 1, group norm 0) but not exactly, so a
    swapped or ignored norm weight changes the result. The official model allocates R, the cell bias and
    the gate weights with torch.empty, so every tensor must be written.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            shape = param.shape
            if name.endswith("_recurrent_kernel_"):
                value = torch.randn(shape, generator=generator) * math.sqrt(0.25 / shape[1])
            elif name.endswith("_bias_"):
                value = torch.randn(shape, generator=generator) * 0.1
                heads = model_heads(name, model)
                forget = value.view(heads, 4, -1)[:, 1]
                forget += torch.linspace(3.0, 6.0, forget.shape[-1])
            elif name.endswith("gate.weight") and param.ndim == 3:
                value = torch.randn(shape, generator=generator) / math.sqrt(shape[-1])
            elif "norm" in name:
                neutral = 0.0 if "group_norm" in name else 1.0
                value = neutral + 0.1 * torch.randn(shape, generator=generator)
            elif name.endswith("bias"):
                value = torch.randn(shape, generator=generator) * 0.1
            else:
                value = torch.randn(shape, generator=generator) / math.sqrt(shape[-1])
            param.copy_(value)


def model_heads(name: str, model: nn.Module) -> int:
    """Number of heads of the sLSTM cell that owns parameter `name`."""
    return model.get_submodule(name.rsplit(".", 1)[0]).get_parameter("_recurrent_kernel_").shape[0]


def random_tirex(config: TiRexConfig = SMALL_CONFIG, seed: int = 0, **kwargs) -> TiRex:
    """Our TiRex with seeded random weights, in eval mode."""
    model = TiRex(config, **kwargs)
    randomize_tirex_parameters(model, seed)
    return model.eval()


def write_random_checkpoint(directory: Path, config: TiRexConfig = SMALL_CONFIG, seed: int = 0) -> Path:
    """Save a seeded random model in the official format as <directory>/TiRex/model.ckpt."""
    return save_tirex_checkpoint(random_tirex(config, seed), Path(directory) / "TiRex" / "model.ckpt")
