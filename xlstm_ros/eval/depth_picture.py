"""A side-by-side picture of depth models on real views: image | ground truth | each model, one row per view.

Every map is shown as disparity (near = bright) after the evaluation's per-image scale-and-shift fit to the
ground truth, so the colours of a model and of the ground truth mean the same depth; pixels without ground
truth are fitted over the known ones and drawn all the same. Each model's tile is labelled with its AbsRel
on that view.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np
import torch

from xlstm_ros.engines.depth import DepthEstimator
from xlstm_ros.eval.middlebury import RealPair
from xlstm_ros.metrics import relative_depth_metrics
from xlstm_ros.models.depth import METRIC, fit_scale_shift

TILE_WIDTH = 320


def _colour(disparity: np.ndarray, low: float, high: float) -> np.ndarray:
    """Disparity -> RGB uint8 with the inferno colour map over [low, high]."""
    scaled = np.clip((disparity - low) / max(high - low, 1e-12), 0.0, 1.0)
    return cv2.applyColorMap((255 * scaled).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]


def _aligned(prediction: np.ndarray, pair: RealPair) -> np.ndarray:
    """The prediction mapped by the least-squares scale and shift that fit it to the known disparity."""
    scale, shift = fit_scale_shift(torch.from_numpy(prediction).double(), torch.from_numpy(pair.disparity).double(),
                                   torch.from_numpy(pair.valid))
    return float(scale) * prediction + float(shift)


def _tile(rgb: np.ndarray, label: str) -> np.ndarray:
    height = round(rgb.shape[0] * TILE_WIDTH / rgb.shape[1])
    tile = cv2.resize(np.ascontiguousarray(rgb), (TILE_WIDTH, height), interpolation=cv2.INTER_AREA)
    cv2.rectangle(tile, (0, 0), (TILE_WIDTH, 22), (0, 0, 0), -1)
    cv2.putText(tile, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def depth_picture(estimators: Mapping[str, DepthEstimator], views: Mapping[str, RealPair],
                  path: str | os.PathLike) -> Path:
    """Write the picture (module docstring) of `estimators` ({label: estimator}) on `views` ({name: pair})."""
    rows = []
    for view, pair in views.items():
        known = pair.disparity[pair.valid]
        low, high = np.percentile(known, (1, 99))
        truth = np.where(pair.valid, pair.disparity, low)
        tiles = [_tile(pair.rgb, view), _tile(_colour(truth, low, high), "ground truth")]
        for label, estimator in estimators.items():
            (result,) = estimator.estimate([pair.rgb])
            prediction = result.depth if estimator.kind != METRIC else 1.0 / np.maximum(result.depth, 1e-6)
            score = relative_depth_metrics(prediction, pair.disparity, pair.valid, float(known.min()))
            tiles.append(_tile(_colour(_aligned(prediction, pair), low, high),
                               f"{label}: AbsRel {score['abs_rel']:.3f}"))
        rows.append(np.concatenate(tiles, axis=1))
    width = max(row.shape[1] for row in rows)
    picture = np.concatenate([np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), picture[..., ::-1]):
        raise OSError(f"{path}: could not write the picture")
    return path

