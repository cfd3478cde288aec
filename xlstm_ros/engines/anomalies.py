"""Anomalies: runs of observations outside the band that an earlier forecast predicted for their grid slots.

A forecast made after grid slot `made_at` predicts quantiles for the slots made_at + 1 ... made_at + H. An
observation's exceedance is how far it lies outside the outer quantile band (lowest to highest level), in
band widths (0 inside). It is out of band when its exceedance is above the threshold: `margin`, or more
when the channel's recent observations say the forecasts are over-confident (the CALIBRATION_QUANTILE of
the last `calibration_window` exceedances: a fault is rare within the window, so it is flagged before it
shifts the threshold). One event is raised when `consecutive` checked observations in a row are out of band, so a single noisy
sample raises nothing and a lasting fault raises one event, not one per sample. With calibration, a
channel raises no event before MIN_CALIBRATION observations were checked: the first forecasts of a young
stream have little context and an uncalibrated band. Its score is the triggering observation's exceedance beyond the threshold, in band widths.
Missing observations (NaN) and slots outside the horizon are not checked and leave a run as it is.
"""
from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

import numpy as np

MIN_WIDTH = 1e-12  # a collapsed band still has a width to widen and to score against
CALIBRATION_QUANTILE = 0.99  # the threshold keeps 1 % of recent ordinary observations out of band
MIN_CALIBRATION = 100  # checked observations before a calibrated channel raises events


@dataclass(frozen=True)
class AnomalyRule:
    """When out-of-band observations make an event (see the module docstring)."""

    margin: float = 0.5  # the threshold is at least this, in band widths beyond the outer band
    consecutive: int = 3  # out-of-band observations in a row that make one event
    calibration_window: int = 600  # recent ordinary observations that calibrate the threshold (0: off)

    def __post_init__(self) -> None:
        if not self.margin >= 0 or self.consecutive < 1 or self.calibration_window < 0:
            raise ValueError(f"AnomalyRule needs margin >= 0, consecutive >= 1 and calibration_window >= 0, "
                             f"got {self}")


@dataclass(frozen=True)
class AnomalyEvent:
    """One anomaly in plain values (the node's xlstm_ros_msgs/Anomaly): the observation that completed a run."""

    channel: str
    stamp_s: float  # the observation's grid slot time
    frame_id: str
    value: float
    lower: float  # the outer band, before widening
    upper: float
    lower_level: float  # its quantile levels
    upper_level: float
    steps_ahead: int  # slots between the forecast and the observation
    score: float  # exceedance beyond the threshold, in band widths


@dataclass(frozen=True)
class ForecastBand:
    """The band of one forecast: row k of `quantiles` (horizon, levels) is slot made_at + 1 + k."""

    made_at: int
    quantiles: np.ndarray
    levels: tuple[float, ...]

    def bounds(self, slot: int) -> tuple[float, float] | None:
        """(lower, upper) of the outer band at `slot`, None outside the horizon."""
        steps = slot - self.made_at
        if not 1 <= steps <= len(self.quantiles):
            return None
        return float(self.quantiles[steps - 1, 0]), float(self.quantiles[steps - 1, -1])


class AnomalyDetector:
    """The anomaly state of one channel: its latest forecast band, the current run and the calibration."""

    def __init__(self, channel: str, period_s: float, rule: AnomalyRule = AnomalyRule()) -> None:
        self.channel, self.period_s, self.rule = channel, period_s, rule
        self.band: ForecastBand | None = None
        self.run = 0
        self._recent: deque[float] = deque()  # the last calibration_window exceedances, oldest first
        self._ranked: list[float] = []  # the same values sorted: the quantile is a lookup per observation

    def threshold(self) -> float:
        """The exceedance above which an observation is out of band now (inf while a calibrated channel is
        still warming up)."""
        if self.rule.calibration_window == 0:
            return self.rule.margin
        count = len(self._ranked)
        if count < min(MIN_CALIBRATION, self.rule.calibration_window):
            return float("inf")
        position = (count - 1) * CALIBRATION_QUANTILE  # linear interpolation, as np.quantile's default
        below = int(position)
        above = min(below + 1, count - 1)
        quantile = self._ranked[below] + (self._ranked[above] - self._ranked[below]) * (position - below)
        return max(self.rule.margin, quantile)

    def _remember(self, exceedance: float) -> None:
        """Add one exceedance to the calibration window, dropping the oldest beyond calibration_window."""
        if self.rule.calibration_window == 0:
            return
        if len(self._recent) == self.rule.calibration_window:
            del self._ranked[bisect.bisect_left(self._ranked, self._recent.popleft())]
        self._recent.append(exceedance)
        bisect.insort(self._ranked, exceedance)

    def restart(self) -> None:
        """Forget the band and the run (the stream restarts); the calibration stays: it describes the model."""
        self.band, self.run = None, 0

    def check(self, first_slot: int, values: np.ndarray, frame_id: str = "") -> list[AnomalyEvent]:
        """Check values[j], observed in slot first_slot + j, against the band; returns the events raised."""
        events = []
        if self.band is None:
            return events
        for offset, value in enumerate(np.asarray(values, dtype=np.float64)):
            slot = first_slot + offset
            bounds = self.band.bounds(slot)
            if bounds is None or not np.isfinite(value):
                continue
            lower, upper = bounds
            width = max(upper - lower, MIN_WIDTH)
            exceedance = max(lower - value, value - upper, 0.0) / width
            threshold = self.threshold()
            self._remember(exceedance)
            if exceedance <= threshold:
                self.run = 0
                continue
            self.run += 1
            if self.run == self.rule.consecutive:
                events.append(AnomalyEvent(
                    channel=self.channel, stamp_s=slot * self.period_s, frame_id=frame_id, value=float(value),
                    lower=lower, upper=upper, lower_level=float(self.band.levels[0]),
                    upper_level=float(self.band.levels[-1]), steps_ahead=slot - self.band.made_at,
                    score=float(exceedance - threshold)))
        return events
