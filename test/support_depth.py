"""Tiny ViL+DPT depth models with seeded random weights: real models in real checkpoint files for tests."""
from __future__ import annotations

from pathlib import Path

import torch

from xlstm_ros.models.depth import DepthConfig, DepthModel, save_depth_checkpoint
from xlstm_ros.models.vil import vil_config


def write_random_depth_checkpoint(directory: Path, input_short_side: int = 32, seed: int = 0) -> Path:
    """Save a seeded random micro ViL + DPT (neck 8..64, 16 features) as <directory>/tiny.pt."""
    torch.manual_seed(seed)
    config = DepthConfig(backbone=vil_config("vil_micro"), neck_channels=(8, 16, 32, 64), features=16,
                         input_short_side=input_short_side)
    return save_depth_checkpoint(DepthModel(config), Path(directory) / "tiny.pt")
