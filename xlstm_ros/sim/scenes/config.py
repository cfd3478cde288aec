"""`SceneConfig`: the ranges every random scene, light and camera is drawn from."""
from __future__ import annotations

from dataclasses import dataclass, fields

KINDS = ("field", "street", "corridor", "room", "closeup", "terrain")
INDOOR_KINDS = ("corridor", "room", "closeup")

Range = tuple[float, float]


@dataclass(frozen=True)
class SceneConfig:
    """Ranges (low, high) for the procedural scenes; every field is validated on construction.

    kinds / kind_weights: which layouts to draw and how often. "field": open ground with trees, poles,
    boxes and houses; "street": a street canyon between rows of buildings; "corridor": an indoor hallway;
    "room": a furnished room (furniture, plants, pictures, clutter); "closeup": a room crowded with clutter,
    seen from closeup_distance_m; "terrain": hilly countryside with fields, forests, a road and a village,
    seen from a drone (oblique to straight down).
    Field and street views use `altitude_m` above the ground; terrain uses `aerial_altitude_m` above the
    tree and roof tops, room views `indoor_height_m` above the floor (room flights circle the room at
    `room_speed_m_s`), the corridor its own floor-to-ceiling range.
    """

    kinds: tuple[str, ...] = KINDS
    kind_weights: tuple[float, ...] = (0.15, 0.15, 0.1, 0.25, 0.15, 0.2)
    fov_deg: Range = (40.0, 100.0)          # horizontal field of view
    pitch_deg: Range = (-5.0, 60.0)         # downward tilt is positive (field, street, corridor)
    roll_deg: Range = (-12.0, 12.0)         # single views; flights lean into their turns instead
    altitude_m: Range = (1.5, 30.0)         # camera height above the ground (field, street)
    aerial_altitude_m: Range = (5.0, 150.0)  # terrain: camera height above the tree and roof tops
    aerial_pitch_deg: Range = (20.0, 90.0)  # terrain: 90 looks straight down
    relief_m: Range = (0.0, 60.0)           # terrain: height of the hills from valley to crest
    room_size_m: Range = (3.0, 8.0)         # room width and depth
    indoor_height_m: Range = (0.3, 2.2)     # room views: camera height above the floor
    indoor_pitch_deg: Range = (-30.0, 50.0)  # room views that do not look at a particular object
    closeup_distance_m: Range = (0.3, 1.2)  # closeup views: distance to the object looked at
    speed_m_s: Range = (2.0, 8.0)           # flight speed along the scene's path
    room_speed_m_s: Range = (0.3, 1.5)      # flight speed around a room
    sun_elevation_deg: Range = (15.0, 75.0)
    ambient: Range = (0.15, 0.45)           # ambient light relative to a sun of intensity ~3
    object_density: Range = (0.5, 1.5)      # multiplier on the number of objects per scene
    path_length_m: float = 240.0            # length of the collision-free flight path
    near_m: float = 0.1                     # clip planes; depth precision is about 6e-8 * depth_m**2 / near_m
    far_m: float = 4000.0
    shadows: bool = True

    def __post_init__(self) -> None:
        if not self.kinds or any(kind not in KINDS for kind in self.kinds):
            raise ValueError(f"SceneConfig.kinds={self.kinds!r}: each must be one of {KINDS}")
        if len(self.kind_weights) != len(self.kinds) or any(w < 0 for w in self.kind_weights) \
                or sum(self.kind_weights) <= 0:
            raise ValueError(f"SceneConfig.kind_weights={self.kind_weights!r}: need one non-negative weight "
                             f"per kind ({len(self.kinds)}), not all zero")
        limits = {"fov_deg": (1.0, 170.0), "pitch_deg": (-89.0, 89.0), "roll_deg": (-90.0, 90.0),
                  "altitude_m": (0.2, 500.0), "aerial_altitude_m": (0.5, 1000.0), "aerial_pitch_deg": (-89.0, 90.0),
                  "relief_m": (0.0, 200.0), "room_size_m": (3.0, 20.0), "indoor_height_m": (0.2, 2.5),
                  "indoor_pitch_deg": (-89.0, 89.0), "closeup_distance_m": (0.2, 5.0), "speed_m_s": (0.0, 100.0),
                  "room_speed_m_s": (0.0, 10.0),
                  "sun_elevation_deg": (1.0, 90.0), "ambient": (0.0, 2.0), "object_density": (0.0, 10.0)}
        for field in fields(self):
            if field.name in limits:
                _check_range(field.name, getattr(self, field.name), *limits[field.name])
        if not 20.0 <= self.path_length_m <= 2000.0:
            raise ValueError(f"SceneConfig.path_length_m={self.path_length_m}: must be in [20, 2000]")
        if not 0.0 < self.near_m < self.far_m:
            raise ValueError(f"SceneConfig.near_m={self.near_m}, far_m={self.far_m}: need 0 < near_m < far_m")
        if self.far_m < 4.0 * self.path_length_m:
            raise ValueError(f"SceneConfig.far_m={self.far_m}: must be at least 4 x path_length_m "
                             f"({4.0 * self.path_length_m}) so the whole scene is inside the view volume")


def _check_range(name: str, value: Range, lowest: float, highest: float) -> None:
    """Raise a ValueError naming `name` unless value is a pair lowest <= low <= high <= highest."""
    if len(value) != 2 or not lowest <= value[0] <= value[1] <= highest:
        raise ValueError(f"SceneConfig.{name}={value!r}: need (low, high) with "
                         f"{lowest} <= low <= high <= {highest}")
