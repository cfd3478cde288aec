"""Depth maps of image files (`xlstm-ros depth`): one image or every image in a folder.

For each input NAME.ext it writes, into the output folder:
  NAME_depth.npy   float32 (height, width) of the input: relative inverse depth (larger is nearer) or,
                   for a metric model, depth in metres
  NAME_depth.json  which of the two it is, the model and the network size
  NAME_depth.png   the map in colour (near = warm)
  NAME_side.png    input | coloured map side by side
Unreadable files are reported and skipped; the others are still processed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from xlstm_ros.engines.depth import DepthEstimator
from xlstm_ros.engines.depth_outputs import colorize

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def image_paths(source: str | Path) -> list[Path]:
    """The image itself, or the images directly inside a folder (sorted)."""
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise FileNotFoundError(f"{source}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return paths
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such image or folder")
    return [source]


def estimate_files(estimator: DepthEstimator, paths: list[Path], out_dir: str | Path, model_name: str,
                   report: Callable[[str], None] = print) -> list[Path]:
    """Write the four outputs of every readable image; returns the .npy paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None or bgr.size == 0:
            report(f"skipped {path}: not a readable image")
            continue
        result = estimator.estimate([np.ascontiguousarray(bgr[:, :, ::-1])])[0]
        stem = out_dir / path.stem
        np.save(f"{stem}_depth.npy", result.depth.astype(np.float32))
        Path(f"{stem}_depth.json").write_text(json.dumps(
            {"kind": result.kind, "units": "metres" if result.kind.startswith("metric") else
             "relative inverse depth (larger is nearer; unknown scale and shift)",
             "model": model_name, "network_size": list(result.network_size), "source": str(path)}, indent=2))
        picture = colorize(result.depth, result.kind)
        cv2.imwrite(f"{stem}_depth.png", picture)
        cv2.imwrite(f"{stem}_side.png", np.concatenate([bgr, picture], axis=1))
        written.append(Path(f"{stem}_depth.npy"))
        report(f"{path} -> {stem}_depth.npy ({result.kind}, network {result.network_size[0]}x{result.network_size[1]})")
    return written
