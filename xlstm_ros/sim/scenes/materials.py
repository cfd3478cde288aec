"""Colour palettes and random draws of materials for the scene layouts, photo layers chosen by role."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .geometry import Material, Pattern
from .textures import Role, layers_with

RGB = tuple[float, float, float]

GROUND_COLOURS = [((0.10, 0.20, 0.05), (0.22, 0.18, 0.08)), ((0.28, 0.24, 0.10), (0.16, 0.14, 0.07)),
                  ((0.12, 0.10, 0.07), (0.25, 0.20, 0.14)), ((0.55, 0.55, 0.58), (0.35, 0.36, 0.40))]
FOLIAGE = [(0.06, 0.16, 0.04), (0.10, 0.22, 0.06), (0.05, 0.10, 0.05), (0.20, 0.22, 0.06), (0.30, 0.12, 0.04)]
BARK = (0.14, 0.09, 0.05)
WALLS = [(0.55, 0.50, 0.42), (0.40, 0.20, 0.13), (0.30, 0.30, 0.32), (0.60, 0.58, 0.55), (0.45, 0.38, 0.25),
         (0.20, 0.24, 0.30)]
GLASS = [(0.05, 0.07, 0.10), (0.10, 0.14, 0.18), (0.20, 0.22, 0.20)]
PAINT = [(0.50, 0.05, 0.04), (0.05, 0.15, 0.45), (0.60, 0.45, 0.05), (0.70, 0.70, 0.70), (0.04, 0.04, 0.04),
         (0.10, 0.30, 0.10), (0.45, 0.25, 0.10)]
PLASTER = [(0.80, 0.78, 0.72), (0.70, 0.72, 0.70), (0.75, 0.68, 0.55), (0.55, 0.62, 0.68), (0.72, 0.60, 0.55),
           (0.62, 0.66, 0.52), (0.85, 0.85, 0.85)]
WOOD = [(0.45, 0.28, 0.14), (0.60, 0.42, 0.24), (0.30, 0.18, 0.09), (0.72, 0.58, 0.40), (0.20, 0.12, 0.07)]
FABRIC = [(0.35, 0.10, 0.10), (0.15, 0.20, 0.35), (0.45, 0.42, 0.38), (0.20, 0.30, 0.18), (0.12, 0.12, 0.12),
          (0.60, 0.50, 0.35)]
ROOF = [(0.40, 0.12, 0.06), (0.25, 0.22, 0.22), (0.12, 0.12, 0.14), (0.45, 0.25, 0.12)]


def uniform(rng: np.random.Generator, bounds: tuple[float, float], size=None):
    return rng.uniform(bounds[0], bounds[1], size)


def tint(rng: np.random.Generator, colour: RGB, amount: float = 0.15) -> RGB:
    """`colour` with each channel scaled by a random factor in [1 - amount, 1 + amount]."""
    factors = rng.uniform(1 - amount, 1 + amount, 3).tolist()
    return tuple(min(1.0, max(0.0, c * f)) for c, f in zip(colour, factors))


def shade(rng: np.random.Generator, colour: RGB, amount: float = 0.3) -> RGB:
    """`colour` scaled by one random factor in [1 - amount, 1 + amount] (keeps greys grey)."""
    factor = rng.uniform(1 - amount, 1 + amount)
    return tuple(float(min(1.0, c * factor)) for c in colour)


def pick(rng: np.random.Generator, palette: list):
    return palette[int(rng.integers(len(palette)))]


def with_photo(rng: np.random.Generator, material: Material, role: Role, scale_m: float,
               probability: float = 1.0, gain: tuple[float, float] = (0.55, 0.85)) -> Material:
    """`material` showing a random photo of `role` tiled every scale_m metres, with the given probability
    (otherwise unchanged, so that procedural surfaces stay in the mix)."""
    if rng.random() >= probability:
        return material
    return replace(material, photo=int(pick(rng, list(layers_with(role)))), photo_scale_m=float(scale_m),
                   photo_gain=float(uniform(rng, gain)), photo_offset=float(rng.random()))


def mottled(rng: np.random.Generator, palette: list, amount: float = 0.3, scale_m: float = 0.5) -> Material:
    """Noise between two tints of one palette colour."""
    colour = tint(rng, pick(rng, palette))
    return Material(colour, tint(rng, colour, amount), Pattern.NOISE, float(scale_m))


def foliage(rng: np.random.Generator) -> Material:
    material = Material(tint(rng, pick(rng, FOLIAGE)), tint(rng, pick(rng, FOLIAGE)), Pattern.NOISE,
                        float(rng.uniform(0.3, 1.0)))
    return with_photo(rng, material, Role.FOLIAGE, rng.uniform(0.5, 2.5), 0.5, gain=(0.3, 0.6))


def bark(rng: np.random.Generator) -> Material:
    return Material(tint(rng, BARK), tint(rng, BARK, 0.4), Pattern.NOISE, 0.3)


def facade(rng: np.random.Generator) -> Material:
    """A building wall: procedural windows, or a facade photo tiled every few storeys."""
    material = Material(tint(rng, pick(rng, WALLS)), tint(rng, pick(rng, GLASS)), Pattern.WINDOWS,
                        float(rng.uniform(2.6, 4.0)))
    if rng.random() < 0.5:
        return replace(with_photo(rng, material, Role.FACADE, rng.uniform(6.0, 16.0)), pattern=Pattern.NOISE)
    return material


def roof(rng: np.random.Generator) -> Material:
    material = Material(tint(rng, pick(rng, ROOF)), tint(rng, pick(rng, ROOF)), Pattern.CHECKER,
                        float(rng.uniform(0.2, 0.4)))
    return with_photo(rng, material, Role.ROOF, rng.uniform(2.0, 5.0), 0.6)


def print_surface(rng: np.random.Generator, scale_m: float) -> Material:
    """A printed surface (book cover, packaging, poster): a photo, or paint when photos are missing."""
    colour = tint(rng, pick(rng, PAINT + PLASTER))
    return with_photo(rng, Material(colour, tint(rng, colour, 0.5), Pattern.NOISE, 0.2), Role.PRINT, scale_m,
                      gain=(0.6, 0.9))


def wood(rng: np.random.Generator, plank_m: float = 0.15) -> Material:
    colour = tint(rng, pick(rng, WOOD))
    return Material(colour, shade(rng, colour, 0.35), Pattern.PLANKS, float(plank_m))


def fabric(rng: np.random.Generator) -> Material:
    material = mottled(rng, FABRIC, 0.3, 0.1)
    return with_photo(rng, material, Role.FABRIC, rng.uniform(0.4, 1.5), 0.5)
