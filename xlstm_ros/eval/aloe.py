"""The Middlebury 2006 "Aloe" pair as Debian's opencv-doc package ships it: real RGB with disparity ground truth.

`aloeGT.png` is 8-bit disparity of the left view (0 = unknown) in an unknown affine convention (possibly
offset and scaled, as Middlebury 2005/06 ground truth often is) and no calibration comes with it, so it
supports only affine-invariant evaluation in disparity space, which is exactly
the relative-depth protocol.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ALOE_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
INSTALL_COMMAND = "sudo apt-get install -y --no-install-recommends opencv-doc"


class AloeMissingError(FileNotFoundError):
    """The Aloe files are not installed."""


@dataclass(frozen=True)
class AloePair:
    """rgb (H, W, 3) uint8 left view; disparity (H, W) float32 ground truth; valid (H, W) where it is known."""

    rgb: np.ndarray
    disparity: np.ndarray
    valid: np.ndarray


def load_aloe(data_dir: str | os.PathLike = ALOE_DIR) -> AloePair:
    """Read aloeL.jpg and aloeGT.png from `data_dir`; AloeMissingError names the install command."""
    import cv2

    data_dir = Path(data_dir)
    left, truth = data_dir / "aloeL.jpg", data_dir / "aloeGT.png"
    for path in (left, truth):
        if not path.is_file():
            raise AloeMissingError(f"{path}: not found; the Aloe pair comes with Debian's opencv-doc "
                                   f"({INSTALL_COMMAND})")
    bgr = cv2.imread(str(left), cv2.IMREAD_COLOR)
    disparity = cv2.imread(str(truth), cv2.IMREAD_UNCHANGED)
    if bgr is None or disparity is None:
        raise ValueError(f"{left if bgr is None else truth}: unreadable image")
    if disparity.ndim != 2 or disparity.shape != bgr.shape[:2]:
        raise ValueError(f"{truth}: expected single-channel disparity of the left view's size {bgr.shape[:2]}, "
                         f"got shape {disparity.shape}")
    valid = disparity > 0
    if valid.sum() < 2:
        raise ValueError(f"{truth}: fewer than two pixels with known disparity")
    return AloePair(np.ascontiguousarray(bgr[:, :, ::-1]), disparity.astype(np.float32), valid)
