"""Where cameras may go in a scene: the collision-free flight corridor and, indoors, the free room volume.

Every scene is laid out around a `FlightPath`: a ground track with a lateral half-width and an altitude
range above the path's floor inside which a camera never meets an object, so random views and flights
need no collision tests. Objects taller than the lowest flight altitude keep out of the corridor (plus
its clearance), or the floor is raised over them (terrain: the corridor rides above the tree tops).
Rooms also carry an `Interior`: the obstacles' boxes, so that single views may stand anywhere in the room.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import MeshBuilder

CLEARANCE_M = 1.0


@dataclass(frozen=True)
class FlightPath:
    """Collision-free corridor: a ground track (n, 2), a lateral half-width and altitudes above the floor.

    floor_m (n,): the height cameras fly above at each track point (None: the ground, z = 0).
    """

    points_xy: np.ndarray
    halfwidth_m: float
    altitude_m: tuple[float, float]
    clearance_m: float = CLEARANCE_M
    floor_m: np.ndarray | None = None

    @property
    def length_m(self) -> float:
        return float(self._arc_lengths()[-1])

    def _arc_lengths(self) -> np.ndarray:
        steps = np.linalg.norm(np.diff(self.points_xy, axis=0), axis=1)
        return np.concatenate([[0.0], np.cumsum(steps)])

    def at(self, arc_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground positions (..., 2) and headings (...) in radians at arc lengths `arc_m`."""
        arcs = self._arc_lengths()
        arc_m = np.clip(np.asarray(arc_m, np.float64), 0.0, arcs[-1])
        xy = np.stack([np.interp(arc_m, arcs, self.points_xy[:, i]) for i in range(2)], -1)
        delta = np.diff(self.points_xy, axis=0)
        segment = np.clip(np.searchsorted(arcs, arc_m, side="right") - 1, 0, len(delta) - 1)
        return xy, np.arctan2(delta[segment, 1], delta[segment, 0])

    def floor_at(self, arc_m: np.ndarray) -> np.ndarray:
        """The floor height (...) at arc lengths `arc_m`: altitudes count from it."""
        arc_m = np.asarray(arc_m, np.float64)
        if self.floor_m is None:
            return np.zeros_like(arc_m)
        return np.interp(arc_m, self._arc_lengths(), self.floor_m)

    def clear_of(self, xy: np.ndarray, radius_m: np.ndarray, top_m: np.ndarray) -> np.ndarray:
        """Mask of objects (centre xy, footprint radius, top height) a camera on this path cannot touch."""
        distance = np.linalg.norm(xy[:, None, :] - self.points_xy[None, ::2], axis=-1).min(axis=1)
        return (distance > self.halfwidth_m + self.clearance_m + radius_m) | \
               (top_m < self.altitude_m[0] - self.clearance_m)


@dataclass(frozen=True, eq=False)
class Interior:
    """The inside of a room: its free box (low xyz, high xyz), obstacle boxes (n, 6: low xyz, high xyz) that
    hold every object in it, and focus points (m, 3) worth a close look (things on tables and shelves)."""

    low_m: tuple[float, float, float]
    high_m: tuple[float, float, float]
    obstacles: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))
    focus_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    def clearance(self, points: np.ndarray) -> np.ndarray:
        """Distance (n,) from each point (n, 3) to the nearest obstacle or wall of the free box."""
        points = np.asarray(points, np.float64).reshape(-1, 3)
        to_walls = np.minimum(points - np.asarray(self.low_m), np.asarray(self.high_m) - points).min(axis=1)
        if not len(self.obstacles):
            return to_walls
        low, high = self.obstacles[None, :, :3], self.obstacles[None, :, 3:]
        outside = np.maximum(np.maximum(low - points[:, None], points[:, None] - high), 0.0)
        return np.minimum(to_walls, np.linalg.norm(outside, axis=-1).min(axis=1))


Layout = tuple[MeshBuilder, FlightPath, Interior | None]   # what a scene layout function returns
