"""Real Middlebury views with ground-truth disparity, as packages this project installs ship them.

* Aloe (Middlebury 2006), from Debian's opencv-doc: `aloeGT.png` is 8-bit disparity of the left view
  (0 = unknown) in an unknown affine convention (possibly offset and scaled, as Middlebury 2005/06 ground
  truth often is), without calibration.
* Motorcycle (Middlebury 2014), from scikit-image's bundled data (`skimage.data.stereo_motorcycle`): the
  left view at 741x500 with float disparity (non-finite = unknown).
Both support affine-invariant evaluation in disparity space, which is exactly the relative-depth protocol.
Neither is ever a training texture (sim/scenes/textures.py reserves them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ALOE_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
INSTALL_COMMAND = "sudo apt-get install -y --no-install-recommends opencv-doc"


class PairMissingError(FileNotFoundError):
    """The package that ships a pair is not installed."""


@dataclass(frozen=True)
class RealPair:
    """rgb (H, W, 3) uint8 left view; disparity (H, W) float32 ground truth; valid (H, W) where it is known."""

    rgb: np.ndarray
    disparity: np.ndarray
    valid: np.ndarray


def load_aloe(data_dir: str | os.PathLike = ALOE_DIR) -> RealPair:
    """Read aloeL.jpg and aloeGT.png from `data_dir`; PairMissingError names the install command."""
    import cv2

    data_dir = Path(data_dir)
    left, truth = data_dir / "aloeL.jpg", data_dir / "aloeGT.png"
    for path in (left, truth):
        if not path.is_file():
            raise PairMissingError(f"{path}: not found; the Aloe pair comes with Debian's opencv-doc "
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
    return RealPair(np.ascontiguousarray(bgr[:, :, ::-1]), disparity.astype(np.float32), valid)


def load_motorcycle() -> RealPair:
    """The Motorcycle left view and its disparity from scikit-image; PairMissingError if it is not installed."""
    try:
        from skimage import data
    except ImportError as error:
        raise PairMissingError("the Motorcycle pair comes with scikit-image (pip install -r "
                               "requirements/eval.txt)") from error
    left, _, disparity = data.stereo_motorcycle()
    disparity = np.asarray(disparity, np.float32)
    valid = np.isfinite(disparity) & (disparity > 0)
    return RealPair(np.ascontiguousarray(left[:, :, :3]), np.where(valid, disparity, 0.0).astype(np.float32), valid)
