"""Put irregular timestamped samples on the fixed period grid a forecaster consumes.

Grid slot k is centred at k * period_s (absolute time, so channels with the same period share slots) and
its value is the mean of the finite samples stamped in [(k - 1/2) * period_s, (k + 1/2) * period_s).
A slot that received nothing is NaN: a gap. Slots are completed in order, once a sample newer than the
slot's end plus `lateness_s` arrives; jitter up to `lateness_s` is absorbed, older samples are "late".

Every pushed sample is either in a slot (open, completed and waiting for `drain`, or drained: each
GridSegment says how many samples its slots merged) or counted in `dropped` with its reason:
  nonfinite     the value was NaN or +-inf (the slot stays missing unless other samples fill it)
  out_of_range  |value| > max_abs (for example 1e300, which a float32 model state cannot hold)
  late          stamped in a slot that was already completed
so that `accepted == drained + waiting` and `pushed == accepted + sum(dropped.values())` at all times.
A stamp that jumps backwards by more than `max_jump_back_s`, or forwards by more than `max_gap_s`
(a gap longer than the model's whole context, so nothing of the old context would survive), restarts the
grid at the new stamp; the next `drain` marks that segment `reset_before`, so the engine restarts the
stream instead of filling hours of NaN. `resume(next_slot)` continues a grid saved before a restart.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GridSegment:
    """Completed consecutive grid slots: values[j] belongs to slot first_slot + j (time = slot * period)."""

    first_slot: int
    values: np.ndarray
    reset_before: bool = False
    samples: int = 0  # accepted samples merged into these slots

    @property
    def end_slot(self) -> int:
        return self.first_slot + len(self.values)


class GridResampler:
    """Resample one channel's samples onto its period grid (see the module docstring)."""

    def __init__(self, period_s: float, *, lateness_s: float | None = None, max_gap_s: float = math.inf,
                 max_jump_back_s: float = math.inf, max_abs: float = math.inf):
        if not period_s > 0:
            raise ValueError(f"period_s must be positive, got {period_s}")
        if not max_abs > 0:
            raise ValueError(f"max_abs must be positive, got {max_abs}")
        self.period_s = float(period_s)
        self.lateness_s = self.period_s if lateness_s is None else float(lateness_s)
        self.max_gap_s = float(max_gap_s)
        self.max_jump_back_s = float(max_jump_back_s)
        self.max_abs = float(max_abs)
        self.dropped: Counter[str] = Counter()
        self.accepted = 0
        self.drained = 0  # accepted samples handed out by drain()
        self.resets = 0
        self._next_slot: int | None = None   # first slot not yet completed
        self._open: dict[int, list[float]] = {}  # slot -> [sum, count] of finite samples
        self._completed: list[GridSegment] = []
        self._pending_values: list[float] = []
        self._pending_samples = 0
        self._pending_first: int | None = None
        self._pending_reset = False

    def slot_of(self, stamp_s: float) -> int:
        return math.floor(stamp_s / self.period_s + 0.5)

    def push(self, stamp_s: float, value: float) -> str | None:
        """Add one sample; returns the drop reason, or None when the sample was accepted."""
        slot = self.slot_of(stamp_s)
        if self._next_slot is None:
            self._start(slot, reset=False)
        elif slot < self._next_slot:
            if (self._next_slot - slot) * self.period_s <= self.max_jump_back_s:
                return self._drop("late")
            self._restart(slot)
        elif (slot - self._next_slot) * self.period_s > self.max_gap_s:
            self._restart(slot)
        if not math.isfinite(value):
            reason = self._drop("nonfinite")
        elif abs(value) > self.max_abs:
            reason = self._drop("out_of_range")
        else:
            cell = self._open.setdefault(slot, [0.0, 0])
            cell[0] += value
            cell[1] += 1
            self.accepted += 1
            reason = None
        self._complete_before(self.slot_of(stamp_s - self.lateness_s))
        return reason

    def drain(self) -> list[GridSegment]:
        """The segments completed since the last drain, oldest first."""
        self._flush_pending()
        segments, self._completed = self._completed, []
        self.drained += sum(segment.samples for segment in segments)
        return segments

    def complete_all(self) -> None:
        """Complete every open slot now (before a shutdown: nothing is left waiting for late samples)."""
        if self._open:
            self._complete_before(max(self._open) + 1)

    def resume(self, next_slot: int) -> None:
        """Continue a grid whose slots before `next_slot` were completed in an earlier run (before any push):
        a later sample fills the slots in between with NaN (or restarts the grid after more than max_gap_s),
        an earlier one is late."""
        if self._next_slot is not None:
            raise RuntimeError("resume() must come before the first push()")
        self._start(int(next_slot), reset=False)

    @property
    def next_slot(self) -> int | None:
        """The first slot that is not completed yet (None before the first sample)."""
        return self._next_slot

    @property
    def waiting(self) -> int:
        """Accepted samples not drained yet (in open slots or in completed slots awaiting drain)."""
        return self.accepted - self.drained

    def _drop(self, reason: str) -> str:
        self.dropped[reason] += 1
        return reason

    def _start(self, slot: int, reset: bool) -> None:
        self._next_slot = slot
        self._pending_reset = reset

    def _restart(self, slot: int) -> None:
        """Complete what is open, then start a new grid at `slot`."""
        self.complete_all()
        self._flush_pending()
        self.resets += 1
        self._start(slot, reset=True)

    def _complete_before(self, end_slot: int) -> None:
        """Complete every slot < end_slot (empty ones become NaN)."""
        if self._next_slot is None or end_slot <= self._next_slot:
            return
        if self._pending_first is None:
            self._pending_first = self._next_slot
        for slot in range(self._next_slot, end_slot):
            cell = self._open.pop(slot, None)
            self._pending_values.append(cell[0] / cell[1] if cell and cell[1] else math.nan)
            self._pending_samples += cell[1] if cell else 0
        self._next_slot = end_slot

    def _flush_pending(self) -> None:
        if self._pending_first is None:
            return
        self._completed.append(GridSegment(self._pending_first, np.asarray(self._pending_values, np.float64),
                                           self._pending_reset, self._pending_samples))
        self._pending_values, self._pending_first, self._pending_reset = [], None, False
        self._pending_samples = 0
