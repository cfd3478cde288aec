"""Photo textures: crops of real photographs that ship with a package the project installs.

Debian's `opencv-doc` installs OpenCV's sample images (tools/setup_venv.sh installs it with the evaluation
requirements). `PHOTO_CROPS` is the explicit allow-list of the files and regions the renderer may read, each
with the role it plays in a scene (aerial ground, foliage, facades, prints, ...); nothing else in that folder
is ever opened. `RESERVED_FILES` are the real images the depth evaluation uses or may use (the Middlebury
Aloe pair and the other stereo and optical-flow pairs): they never become training textures. Scenes pick
layers by role from the static catalogue, so a scene is the same with or without the photos; without them
the renderer falls back to the procedural patterns and `load_photo_textures` warns once.
"""
from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

OPENCV_SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")
LAYER_SIZE = 512

RESERVED_FILES = frozenset({
    "aloeL.jpg", "aloeR.jpg", "aloeGT.png",                           # Middlebury Aloe: the depth evaluation
    "rubberwhale1.png", "rubberwhale2.png", "basketball1.png", "basketball2.png",   # Middlebury flow pairs
    "left.jpg", "right.jpg",                                           # a stereo pair
    "motorcycle_left.png", "motorcycle_right.png", "motorcycle_disp.npz",   # Middlebury Motorcycle (scikit-image)
})


class Role(Enum):
    """What a photo crop looks like, so that a scene puts it where such a surface belongs."""

    AERIAL = "aerial"        # land seen from far above: towns, forests, water, fields
    FOLIAGE = "foliage"      # leaves and forest canopy
    GRASS = "grass"
    STONE = "stone"          # cobbles and paving
    ROOF = "roof"
    FACADE = "facade"        # building walls with windows
    PRINT = "print"          # pictures, packaging, boards: posters, books, boxes, screens
    FABRIC = "fabric"        # fur, cloth and leather: sofas, beds, rugs
    SURFACE = "surface"      # plain worn surfaces: table tops, desks


@dataclass(frozen=True)
class PhotoCrop:
    """A region (left, top, right, bottom as fractions of the image) of an allow-listed file."""

    file: str
    box: tuple[float, float, float, float]
    role: Role


PHOTO_CROPS: tuple[PhotoCrop, ...] = (
    PhotoCrop("aero1.jpg", (0.0, 0.4, 0.7, 1.0), Role.AERIAL),
    PhotoCrop("aero1.jpg", (0.3, 0.15, 1.0, 0.6), Role.AERIAL),
    PhotoCrop("aero3.jpg", (0.0, 0.4, 0.75, 1.0), Role.AERIAL),
    PhotoCrop("aero3.jpg", (0.35, 0.35, 1.0, 0.95), Role.AERIAL),
    PhotoCrop("aero1.jpg", (0.68, 0.65, 0.98, 0.85), Role.FOLIAGE),
    PhotoCrop("aero3.jpg", (0.0, 0.72, 0.38, 1.0), Role.FOLIAGE),
    PhotoCrop("squirrel_cls.jpg", (0.0, 0.0, 0.45, 0.28), Role.FOLIAGE),
    PhotoCrop("squirrel_cls.jpg", (0.6, 0.0, 1.0, 0.25), Role.FOLIAGE),
    PhotoCrop("messi5.jpg", (0.0, 0.78, 0.32, 1.0), Role.GRASS),
    PhotoCrop("building.jpg", (0.05, 0.93, 1.0, 1.0), Role.GRASS),
    PhotoCrop("leuvenA.jpg", (0.0, 0.82, 0.55, 1.0), Role.STONE),
    PhotoCrop("leuvenB.jpg", (0.0, 0.78, 1.0, 1.0), Role.STONE),
    PhotoCrop("leuvenA.jpg", (0.72, 0.2, 0.95, 0.34), Role.ROOF),
    PhotoCrop("leuvenA.jpg", (0.66, 0.42, 0.99, 0.82), Role.FACADE),
    PhotoCrop("leuvenB.jpg", (0.0, 0.05, 0.1, 0.65), Role.FACADE),
    PhotoCrop("building.jpg", (0.3, 0.05, 1.0, 0.6), Role.FACADE),
    PhotoCrop("graf1.png", (0.0, 0.0, 1.0, 1.0), Role.FACADE),
    PhotoCrop("graf3.png", (0.0, 0.0, 1.0, 1.0), Role.PRINT),
    PhotoCrop("starry_night.jpg", (0.0, 0.0, 1.0, 1.0), Role.PRINT),
    PhotoCrop("baboon.jpg", (0.0, 0.0, 1.0, 1.0), Role.PRINT),
    PhotoCrop("fruits.jpg", (0.0, 0.0, 1.0, 1.0), Role.PRINT),
    PhotoCrop("HappyFish.jpg", (0.0, 0.0, 1.0, 1.0), Role.PRINT),
    PhotoCrop("butterfly.jpg", (0.0, 0.0, 1.0, 1.0), Role.PRINT),
    PhotoCrop("box.png", (0.0, 0.0, 1.0, 1.0), Role.PRINT),
    PhotoCrop("box_in_scene.png", (0.0, 0.0, 1.0, 1.0), Role.PRINT),
    PhotoCrop("board.jpg", (0.0, 0.0, 1.0, 1.0), Role.PRINT),
    PhotoCrop("smarties.png", (0.0, 0.0, 1.0, 1.0), Role.PRINT),
    PhotoCrop("messi5.jpg", (0.0, 0.0, 1.0, 1.0), Role.PRINT),
    PhotoCrop("squirrel_cls.jpg", (0.0, 0.0, 1.0, 1.0), Role.PRINT),
    PhotoCrop("sudoku.png", (0.0, 0.0, 1.0, 1.0), Role.PRINT),
    PhotoCrop("notes.png", (0.0, 0.0, 1.0, 1.0), Role.PRINT),
    PhotoCrop("baboon.jpg", (0.05, 0.6, 0.3, 0.95), Role.FABRIC),
    PhotoCrop("chicky_512.png", (0.0, 0.3, 0.3, 0.9), Role.FABRIC),
    PhotoCrop("chicky_512.png", (0.65, 0.0, 1.0, 0.25), Role.FABRIC),
    PhotoCrop("messi5.jpg", (0.0, 0.0, 1.0, 0.3), Role.FABRIC),
    PhotoCrop("ela_original.jpg", (0.0, 0.05, 0.55, 0.65), Role.FABRIC),
    PhotoCrop("stuff.jpg", (0.0, 0.55, 0.45, 1.0), Role.SURFACE),
    PhotoCrop("stuff.jpg", (0.55, 0.0, 1.0, 0.3), Role.SURFACE),
    PhotoCrop("orange.jpg", (0.35, 0.3, 0.75, 0.65), Role.SURFACE),
)

ALLOWED_FILES = frozenset(crop.file for crop in PHOTO_CROPS)


def layers_with(role: Role) -> tuple[int, ...]:
    """Indices (texture layers) of the crops that play `role`."""
    return tuple(i for i, crop in enumerate(PHOTO_CROPS) if crop.role is role)


@dataclass(frozen=True)
class PhotoTextures:
    """One square RGB uint8 layer per PHOTO_CROPS entry, (n, size, size, 3), and the folder they came from."""

    layers: np.ndarray
    source: Path


def load_photo_textures(directory: str | os.PathLike | None = None,
                        size: int = LAYER_SIZE) -> PhotoTextures | None:
    """The photo layers read from `directory` (default OPENCV_SAMPLES), or None with one warning when an
    allow-listed file is missing; results are cached per (directory, size)."""
    return _load(Path(OPENCV_SAMPLES if directory is None else directory), int(size))


@functools.lru_cache(maxsize=2)
def _load(directory: Path, size: int) -> PhotoTextures | None:
    missing = sorted(name for name in ALLOWED_FILES if not (directory / name).is_file())
    if missing:
        warnings.warn(f"photo textures unavailable ({directory / missing[0]} missing; install Debian's opencv-doc): "
                      "scenes use procedural textures only", RuntimeWarning, stacklevel=3)
        return None
    images = {name: _read(directory / name) for name in sorted(ALLOWED_FILES)}
    layers = np.stack([_square_tile(_crop(images[crop.file], crop.box), size) for crop in PHOTO_CROPS])
    return PhotoTextures(layers, directory)


def _read(path: Path) -> np.ndarray:
    """RGB uint8 pixels of an allow-listed file; any other name is refused before the file is opened."""
    import cv2

    if path.name not in ALLOWED_FILES or path.name in RESERVED_FILES:
        raise ValueError(f"{path}: not an allow-listed photo texture")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"{path}: unreadable image")
    return np.ascontiguousarray(bgr[..., ::-1])


def _crop(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    height, width = image.shape[:2]
    left, top, right, bottom = box
    return image[int(top * height):round(bottom * height), int(left * width):round(right * width)]


def _square_tile(image: np.ndarray, size: int) -> np.ndarray:
    """A size x size layer: the crop scaled (aspect kept) until its long side is `size`, then mirror-tiled
    along its short side, so no region is stretched and the tiles meet without seams."""
    import cv2

    height, width = image.shape[:2]
    scale = size / max(height, width)
    scaled = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                        interpolation=cv2.INTER_AREA)
    mirrored = np.concatenate([scaled, scaled[::-1]], 0) if scaled.shape[0] < size else scaled
    mirrored = np.concatenate([mirrored, mirrored[:, ::-1]], 1) if mirrored.shape[1] < size else mirrored
    reps = (-(-size // mirrored.shape[0]), -(-size // mirrored.shape[1]), 1)
    return np.ascontiguousarray(np.tile(mirrored, reps)[:size, :size])
