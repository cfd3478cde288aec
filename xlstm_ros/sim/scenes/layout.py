"""Procedural scenes drawn from a seed: a layout of the chosen kind (outdoor.py, indoor.py) and its lighting."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np

from .config import INDOOR_KINDS, SceneConfig
from .indoor import corridor, room
from .materials import RGB, tint, uniform
from .outdoor import field, street, terrain
from .paths import FlightPath, Interior

_INDOOR_SHADOW_HALF_EXTENT_M = 8.0
_GROUND_FOG_M = (250.0, 3000.0)     # range of the fog distance (log-uniform) near the ground
_AERIAL_FOG_M = (1000.0, 8000.0)
_CLOSEUP_CLUTTER = 2.5


@dataclass(frozen=True)
class Lighting:
    """Sun, ambient, sky and fog of a scene; colours are linear RGB (tone-mapped in the shader).

    shadow_half_extent_m: half the side of the square the shadow map covers (None: grows with the
    camera's height, for outdoor scenes).
    """

    sun_direction: RGB            # unit vector towards the sun (or the main indoor light)
    sun_rgb: RGB
    ambient_rgb: RGB
    sky_zenith_rgb: RGB
    sky_horizon_rgb: RGB
    fog_rgb: RGB
    fog_distance_m: float         # 63 % of a surface's colour is replaced by fog at this distance
    cloud_cover: float            # 0 = clear sky, 1 = overcast
    exposure: float
    shadows: bool
    shadow_half_extent_m: float | None = None


@dataclass(frozen=True, eq=False)
class Scene:
    """One procedural scene: triangles (geometry.VERTEX_FLOATS per row), lighting, its flight path and, for
    rooms, the free interior that single views may stand anywhere in."""

    kind: str
    seed: int
    vertices: np.ndarray
    lighting: Lighting
    path: FlightPath
    near_m: float
    far_m: float
    interior: Interior | None = None

    @classmethod
    def random(cls, seed: int, config: SceneConfig = SceneConfig()) -> Scene:
        """Draw a scene of a random kind from `config`; the same seed gives the same scene."""
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"Scene.random seed={seed!r}: must be a non-negative integer")
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5CE4E]))
        weights = np.asarray(config.kind_weights, np.float64)
        kind = config.kinds[int(rng.choice(len(config.kinds), p=weights / weights.sum()))]
        builder, path, interior = _LAYOUTS[kind](rng, config)
        if kind in INDOOR_KINDS:
            lighting = _indoor_lighting(rng, config)
        else:   # seen from high above, the countryside needs a clearer air to show more than haze
            lighting = _outdoor_lighting(rng, config, _AERIAL_FOG_M if kind == "terrain" else _GROUND_FOG_M)
        return cls(kind, int(seed), builder.build(), lighting, path, config.near_m, config.far_m, interior)


def _outdoor_lighting(rng: np.random.Generator, config: SceneConfig, fog_m: tuple[float, float]) -> Lighting:
    elevation = math.radians(uniform(rng, config.sun_elevation_deg))
    azimuth = rng.uniform(0.0, 2.0 * math.pi)
    sun = (math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation))
    overcast = rng.random() < 0.25
    warmth = math.sin(elevation)
    intensity = rng.uniform(0.5, 1.2) if overcast else rng.uniform(2.2, 3.2)
    sun_rgb = tuple(intensity * c for c in (1.0, 0.82 + 0.18 * warmth, 0.65 + 0.35 * warmth))
    if overcast:
        zenith = tint(rng, (0.55, 0.57, 0.60), 0.1)
        horizon = tint(rng, (0.70, 0.71, 0.72), 0.05)
    else:
        zenith = tint(rng, (0.15, 0.32, 0.70), 0.2)
        horizon = tint(rng, (0.62, 0.72, 0.85), 0.1)
    ambient = uniform(rng, config.ambient) * (1.5 if overcast else 1.0)
    ambient_rgb = tuple(ambient * (0.5 * z + 0.5 * h) / 0.6 for z, h in zip(zenith, horizon))
    return Lighting(sun, sun_rgb, ambient_rgb, zenith, horizon, horizon,
                    float(math.exp(rng.uniform(math.log(fog_m[0]), math.log(fog_m[1])))),
                    float(rng.uniform(0.6, 1.0) if overcast else rng.uniform(0.0, 0.6)),
                    float(rng.uniform(0.8, 1.3)), config.shadows)


def _indoor_lighting(rng: np.random.Generator, config: SceneConfig) -> Lighting:
    """A main light from above, tilted as if through a window or from a lamp, warm or cool, plus ambient."""
    tilt, azimuth = rng.uniform(0.0, 0.9), rng.uniform(0.0, 2.0 * math.pi)
    light = (math.sin(tilt) * math.cos(azimuth), math.sin(tilt) * math.sin(azimuth), math.cos(tilt))
    colour = tint(rng, (1.0, 0.92, 0.80) if rng.random() < 0.6 else (0.92, 0.95, 1.0), 0.1)
    intensity, ambient = rng.uniform(1.0, 2.2), rng.uniform(0.3, 0.7)
    dark = float(rng.uniform(0.01, 0.06))
    return Lighting(light, tuple(intensity * c for c in colour), tuple(ambient * c for c in colour),
                    (dark,) * 3, (dark,) * 3, (dark,) * 3, float(rng.uniform(40.0, 200.0)), 0.0,
                    float(rng.uniform(0.9, 1.4)), config.shadows, _INDOOR_SHADOW_HALF_EXTENT_M)


_LAYOUTS = {"field": field, "street": street, "corridor": corridor, "room": room,
            "closeup": partial(room, clutter=_CLOSEUP_CLUTTER), "terrain": terrain}
