"""Anomalies: observations outside the band that an earlier forecast predicted for their grid slots.

A forecast made after grid slot `made_at` predicts quantiles for the slots made_at + 1 ... made_at + H. An
observation in one of those slots is anomalous when it lies outside the outer quantile band (lowest to
highest level) widened by `margin` times the band's width on each side; its score is how far beyond the
widened band it lies, in band widths. Missing observations (NaN) and slots outside the horizon are not
checked.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_WIDTH = 1e-12  # a collapsed band still has a width to widen and to score against


@dataclass(frozen=True)
class AnomalyEvent:
    """One anomalous observation in plain values (the node's xlstm_ros_msgs/Anomaly)."""

    channel: str
    stamp_s: float  # the observation's grid slot time
    frame_id: str
    value: float
    lower: float  # the outer band, before widening
    upper: float
    lower_level: float  # its quantile levels
    upper_level: float
    steps_ahead: int  # slots between the forecast and the observation
    score: float  # distance beyond the widened band, in band widths


@dataclass(frozen=True)
class ForecastBand:
    """The band of one forecast of `channel`: row k of `quantiles` (horizon, levels) is slot made_at + 1 + k."""

    channel: str
    period_s: float
    made_at: int
    quantiles: np.ndarray
    levels: tuple[float, ...]
    margin: float

    def anomalies(self, first_slot: int, values: np.ndarray, frame_id: str = "") -> list[AnomalyEvent]:
        """The anomalous ones among `values` (values[j] observed in slot first_slot + j)."""
        events = []
        for offset, value in enumerate(values):
            steps = first_slot + offset - self.made_at
            if not 1 <= steps <= len(self.quantiles) or not np.isfinite(value):
                continue
            lower, upper = float(self.quantiles[steps - 1, 0]), float(self.quantiles[steps - 1, -1])
            width = max(upper - lower, MIN_WIDTH)
            low, high = lower - self.margin * width, upper + self.margin * width
            if low <= value <= high:
                continue
            events.append(AnomalyEvent(
                channel=self.channel, stamp_s=(first_slot + offset) * self.period_s, frame_id=frame_id,
                value=float(value), lower=lower, upper=upper, lower_level=float(self.levels[0]),
                upper_level=float(self.levels[-1]), steps_ahead=steps,
                score=float((low - value if value < low else value - high) / width)))
        return events
