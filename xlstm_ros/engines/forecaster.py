"""Streaming TiRex forecaster: many named sensor streams, each with a persistent recurrent state.

Samples arrive already on each stream's fixed period grid (NaN = missing; +-inf is counted and treated
as missing). Every completed 32-sample patch advances the stream's state by one token; the streams that
completed a patch advance together in ONE batched token step (`slstm_step` with rows on per-block
buffers (4, capacity, NH, DH), grown by doubling). A forecast runs ceil(H / 32) - 1 masked tokens from a
copy of the states (the official single-pass rollout), batched across streams; when `forecast` absorbs a
stream's newest patch, it runs those masked tokens in the same pass as the patch token (one read of the
weights for both), as many as the forecasts until the next patch need, and keeps their outputs until then.
Per stream the engine keeps a constant amount of memory: its state rows, the outputs of its last pass and
a ring of the last train_ctx_len + 32 samples.

Anchored streaming. The official model standardises every 2048-sample window afresh and no existing state
can be re-scaled exactly (the network is non-linear), so the engine anchors: at an anchor it takes
(loc_a, scale_a) of the current window and recomputes the state with a full 64-token pass over the ring;
between anchors each new patch is standardised with (loc_a, scale_a) and stepped, and forecasts are
de-standardised with the same (loc_a, scale_a). A stream re-anchors
  * every `reanchor_every` patches,
  * when its window statistics drift: |loc - loc_a| / scale_a > loc_drift or |log(scale / scale_a)| >
    log_scale_drift,
  * on every patch while it is shorter than train_ctx_len: the official window is then left-padded with
    fully missing tokens whose number shrinks by one per patch, and those tokens pass through the
    recurrence without reaching a fixed point, so a stepped state would carry one padding token too many
    per patch; a full pass per patch costs little while the stream is young,
  * and when more than a window of patches arrived at once (their samples are no longer all in the ring).
At an anchor a forecast equals `TiRex.forecast(window, H, max_accelerated_rollout_steps=None)` of the
same window bitwise (rows of all matrix products are batch-invariant, models/slstm.py). Between anchors the
stepped state equals a (64 + k)-token pass standardised with (loc_a, scale_a): bitwise with
step_path="exact" (the TiRex module, its few-row products padded to 16 rows), to float32 rounding with the
default "packed" (models/tirex_packed.py: unpadded, fused products, about 2x faster per step on a CPU), and
to bfloat16 weight rounding with "packed-bf16". The difference
from the full-context forecast between anchors is therefore only the windowing: k patches of history beyond
the 2048-sample window and the statistics drift (measured in bench/results/forecast_stream.json, `agreement`).
reanchor_every=1 makes every forecast the exact official single-pass forecast of its window.

Deferred anchors (`defer_anchors=True`, the node's default): a stream that is due for a scheduled or drift
anchor but could step (it has an anchor, a full window, and fewer than 64 patches since) steps its new patch
instead, so its forecast costs a step, and is marked; `run_deferred_anchors()` then runs the full passes,
batched, in the idle part of the patch period. Forecasts made before that use the previous anchor's
statistics for one patch longer. Streams that cannot step (new, young or far behind) anchor at once.

Forecast timing: the state sits at the last patch boundary. `forecast(names, H)` returns the H samples
after the newest observed sample: it rolls out from the boundary and drops the first `pending` values
(the 0..31 samples already observed after the boundary), so `StreamForecast.first_sample` is the index
(in samples since the stream started) of the first forecast value.

Not thread-safe: call observe/update/forecast from one thread (the ROS node's executor does).
"""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

from xlstm_ros.engines.device import select_backend, select_device
from xlstm_ros.models.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from xlstm_ros.models.tirex import (ScalerState, TiRex, destandardize, is_count, load_tirex_checkpoint,
                                    standardize, tokenize, window_stats)
from xlstm_ros.models.slstm import SLSTMStackState
from xlstm_ros.models.tirex_packed import PackedTiRex

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "tirex_forecaster.ckpt"
"""The shipped default TiRex (official model.ckpt format, trained by xlstm_ros.train); used without a path."""
STATE_FORMAT = "xlstm_ros.StreamingForecaster/1"
INITIAL_CAPACITY = 8
STEP_PATHS = ("packed", "packed-bf16", "exact")
REQUIRED, REFRESH = "required", "refresh"   # why a stream anchors (see _anchor_reason)


@dataclass(frozen=True)
class StreamForecast:
    """Forecast of one stream: the H samples after the newest observed one, in the stream's units."""

    quantiles: np.ndarray  # (H, Q) float32, columns = quantile_levels
    median: np.ndarray  # (H,) float32
    quantile_levels: tuple[float, ...]
    first_sample: int  # sample index (0 = the stream's first sample) of quantiles[0]
    origin_sample: int  # patch boundary the state has reached; first_sample - origin_sample samples pending
    anchor_sample: int  # patch boundary of the last anchor
    anchored: bool  # made at an anchor: equals the official single-pass forecast of the window exactly
    loc: float  # the anchor's standardisation, used to de-standardise this forecast
    scale: float
    context_samples: int  # samples of the stream inside the model window (<= train_ctx_len)
    missing_fraction: float  # fraction of those that are missing


@dataclass(frozen=True)
class StreamStatus:
    """Counters of one stream (for diagnostics)."""

    samples: int  # observed so far (missing ones included)
    ingested: int  # samples absorbed into the state (a multiple of the patch size)
    nonfinite: int  # +-inf values turned into missing samples
    anchors: int  # full passes so far
    steps: int  # single-token updates so far
    patches_since_anchor: int


@dataclass
class EngineCounters:
    """Work done since the engine started: batched step calls, full anchor passes, separate rollouts."""

    step_calls: int = 0
    stepped_patches: int = 0
    anchor_calls: int = 0
    anchored_streams: int = 0
    rollout_calls: int = 0  # forecasts that needed a pass of their own (no rollout kept from the last patch)


@dataclass
class _Stream:
    """Book-keeping of one stream; its recurrent state is row `row` of the engine's buffers."""

    row: int
    ring: np.ndarray
    samples: int = 0
    ingested: int = 0
    anchor_sample: int = -1
    loc: torch.Tensor = field(default_factory=lambda: torch.zeros(1))
    scale: torch.Tensor = field(default_factory=lambda: torch.ones(1))
    nonfinite: int = 0
    anchors: int = 0
    steps: int = 0
    context_samples: int = 0
    observed: int = 0
    rollout: torch.Tensor | None = None  # masked-token outputs (k, Q, P) run with the newest absorbed patch
    anchor_due: bool = False  # a deferred anchor waits for run_deferred_anchors

    def append(self, values: np.ndarray) -> None:
        """Write values into the ring (only the newest len(ring) matter): O(len(values))."""
        capacity = self.ring.shape[0]
        kept = values[-capacity:]
        start = self.samples + values.shape[0] - kept.shape[0]
        self.ring[np.arange(start, start + kept.shape[0]) % capacity] = kept
        self.samples += values.shape[0]

    def window(self, end: int, length: int) -> np.ndarray:
        """Samples [end - length, end), NaN before the stream's start; they must still be in the ring."""
        first = max(end - length, 0)
        if first < self.samples - self.ring.shape[0]:
            raise RuntimeError("window reaches samples that left the ring")  # guarded by the callers
        out = np.full(length, np.nan, dtype=np.float32)
        out[length - (end - first):] = self.ring[np.arange(first, end) % self.ring.shape[0]]
        return out


class StreamingForecaster:
    """Forecast many named streams with persistent TiRex states (see the module docstring)."""

    def __init__(self, model: TiRex, *, reanchor_every: int = 16, loc_drift: float = 0.1,
                 log_scale_drift: float = 0.1, max_anchor_batch: int = 64, step_path: str = "packed",
                 defer_anchors: bool = False, model_name: str = "tirex") -> None:
        if not is_count(reanchor_every, minimum=1):
            raise ValueError(f"reanchor_every must be an integer >= 1 (patches), got {reanchor_every!r}")
        if not is_count(max_anchor_batch, minimum=1):
            raise ValueError(f"max_anchor_batch must be an integer >= 1 (streams), got {max_anchor_batch!r}")
        for name, value in (("loc_drift", loc_drift), ("log_scale_drift", log_scale_drift)):
            if isinstance(value, bool) or not (isinstance(value, numbers.Real) and 0 < value < math.inf):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if step_path not in STEP_PATHS:
            raise ValueError(f"step_path must be one of {', '.join(STEP_PATHS)}, got {step_path!r}")
        self.model = model.eval()
        self.step_path = step_path
        self.defer_anchors = bool(defer_anchors)
        self._stepper = model if step_path == "exact" else PackedTiRex(
            model, "bf16" if step_path == "packed-bf16" else "fp32")
        self.model_name = model_name
        self.config = model.config
        self.reanchor_every = int(reanchor_every)
        self.loc_drift = float(loc_drift)
        self.log_scale_drift = float(log_scale_drift)
        self.max_anchor_batch = int(max_anchor_batch)
        self.counters = EngineCounters()
        self._free_rows: list[int] = []  # rows of removed streams, reused before the buffers grow
        self._streams: dict[str, _Stream] = {}
        self._state_dtype = torch.bfloat16 if model.precision == "bf16-compatible" else torch.float32
        self._states = self._zero_states(INITIAL_CAPACITY)
        self._last_outputs = self._zero_outputs(INITIAL_CAPACITY)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None, *, device: str = "auto",
                        backend: str = "auto", precision: str = "bf16-compatible", fallback_to_cpu: bool = False,
                        on_fallback: Callable[[str], None] | None = None, **options: Any) -> StreamingForecaster:
        """Load an official-format TiRex `model.ckpt` (None: the shipped DEFAULT_CHECKPOINT) onto `device`.

        device, fallback_to_cpu, on_fallback and backend as in engines/device.py; precision
        "bf16-compatible" (official rounding) or "fp32"; `options` go to the constructor (reanchor_every,
        loc_drift, log_scale_drift, max_anchor_batch, step_path, defer_anchors); model_name defaults to the
        checkpoint's path."""
        if path is None:
            if not DEFAULT_CHECKPOINT.is_file():
                raise CheckpointError(f"{DEFAULT_CHECKPOINT}: no checkpoint given and the shipped default TiRex "
                                      "model is missing; train one with xlstm_ros.train or pass the path of a "
                                      "TiRex model.ckpt (e.g. NX-AI/TiRex)")
            path = DEFAULT_CHECKPOINT
        resolved = select_device(device, fallback_to_cpu=fallback_to_cpu, on_fallback=on_fallback)
        model = load_tirex_checkpoint(path, precision=precision, backend=select_backend(backend, resolved),
                                      device=resolved)
        return cls(model, **{"model_name": str(path), **options})

    # ------------------------------------------------------------------------------------------ streams

    def stream_names(self) -> list[str]:
        """Names of all streams that received samples (in order of appearance)."""
        return list(self._streams)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def backend(self) -> str:
        """The sLSTM kernel backend the model runs ("auto", "triton" or "torch")."""
        return self.model.backend

    @property
    def quantile_levels(self) -> tuple[float, ...]:
        return self.config.quantiles

    @property
    def capacity(self) -> int:
        """Rows of the state buffers (streams they hold before the next doubling)."""
        return self._states.batch_size

    def status(self, name: str) -> StreamStatus:
        """Counters of stream `name` (KeyError if it never received a sample)."""
        stream = self._streams[name]
        return StreamStatus(stream.samples, stream.ingested, stream.nonfinite, stream.anchors, stream.steps,
                            self._patches_since_anchor(stream))

    def observe(self, name: str, values: Any) -> None:
        """Append samples (scalar or 1-D sequence) on the stream's period grid; NaN = missing.

        +-inf values become missing and are counted in `status(name).nonfinite`. O(len(values)); the
        model work happens in `update` (or the next `forecast`)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"values for stream {name!r} must be numbers: {error}") from error
        if array.ndim > 1:
            raise ValueError(f"values for stream {name!r} must be a scalar or 1-D, got shape {array.shape}")
        array = array.reshape(-1)
        infinite = np.isinf(array)
        stream = self._streams.get(name) or self._add_stream(name)
        if infinite.any():
            stream.nonfinite += int(infinite.sum())
            array = np.where(infinite, np.nan, array)
        stream.append(array.astype(np.float32))

    def remove_stream(self, name: str) -> None:
        """Forget stream `name` entirely (KeyError if unknown); its state row is reused by the next new stream,
        so a node whose channels come and go keeps a bounded buffer."""
        stream = self._streams.pop(name)
        self._free_rows.append(stream.row)

    def reset_stream(self, name: str) -> None:
        """Forget stream `name`'s samples and state (e.g. after a long gap); it restarts from nothing.

        Its state rows are left as they are: a stream's first patch always anchors, which overwrites them."""
        stream = self._streams[name]
        self._streams[name] = _Stream(stream.row, self._new_ring(), nonfinite=stream.nonfinite)

    # ------------------------------------------------------------------------------------------- update

    @torch.no_grad()
    def update(self) -> int:
        """Absorb every completed patch of every stream; returns the number of streams that advanced.

        Streams due for an anchor get one batched full pass; the others advance one token per patch,
        all streams with a pending patch in ONE batched step per patch position."""
        return self._absorb(rollout_tokens=0)

    def _absorb(self, rollout_tokens: int) -> int:
        """`update`; with rollout_tokens > 0 the pass that absorbs a stream's newest patch also runs that many
        masked tokens after it (the rollout of the next forecast), reading the weights once for both."""
        patch = self.config.patch_size
        due = [stream for stream in self._streams.values() if stream.samples - stream.ingested >= patch]
        if not due:
            return 0
        boundaries = [stream.samples // patch * patch for stream in due]
        windows = torch.from_numpy(np.stack([stream.window(end, self.config.train_ctx_len)
                                             for stream, end in zip(due, boundaries)]))
        stats = window_stats(windows)
        observed = (~torch.isnan(windows)).sum(dim=1)
        anchor_rows, stepping = [], []
        for index, (stream, end) in enumerate(zip(due, boundaries)):
            stream.context_samples = min(end, self.config.train_ctx_len)
            stream.observed = int(observed[index])
            reason = self._anchor_reason(stream, end, stats.loc[index], stats.scale[index])
            if reason == REQUIRED or (reason == REFRESH and not self.defer_anchors):
                anchor_rows.append(index)
            else:
                stream.anchor_due = stream.anchor_due or reason == REFRESH
                stepping.append((stream, end))
        self._anchor_in_chunks([due[i] for i in anchor_rows], windows[anchor_rows],
                               ScalerState(stats.loc[anchor_rows], stats.scale[anchor_rows]),
                               [boundaries[i] for i in anchor_rows], rollout_tokens)
        self._step(stepping, rollout_tokens)
        return len(due)

    @torch.no_grad()
    def run_deferred_anchors(self, limit: int | None = None) -> int:
        """Run the anchors that `defer_anchors` postponed (at most `limit` streams, oldest first), batched;
        returns how many streams anchored. Each stream anchors at the boundary its state has reached, and
        the rollout kept for its forecasts is recomputed with it."""
        waiting = [stream for stream in self._streams.values() if stream.anchor_due]
        waiting = waiting if limit is None else waiting[:max(int(limit), 0)]
        if not waiting:
            return 0
        ends = [stream.ingested for stream in waiting]
        windows = torch.from_numpy(np.stack([stream.window(end, self.config.train_ctx_len)
                                             for stream, end in zip(waiting, ends)]))
        rollout_tokens = max(0 if stream.rollout is None else stream.rollout.shape[0] for stream in waiting)
        self._anchor_in_chunks(waiting, windows, window_stats(windows), ends, rollout_tokens)
        return len(waiting)

    def _anchor_reason(self, stream: _Stream, end: int, loc: torch.Tensor, scale: torch.Tensor) -> str | None:
        """REQUIRED when the stream cannot step to `end` (or a deferred anchor has waited a whole extra cycle),
        REFRESH when it could but is due (schedule or drift), else None."""
        patches = (end - stream.ingested) // self.config.patch_size
        since = self._patches_since_anchor(stream) + patches
        if (stream.anchor_sample < 0 or end < self.config.train_ctx_len or patches > self.config.context_tokens
                or (stream.anchor_due and since >= 2 * self.reanchor_every)):
            return REQUIRED
        loc_a, scale_a = float(stream.loc), float(stream.scale)
        if (since >= self.reanchor_every or abs(float(loc) - loc_a) / scale_a > self.loc_drift
                or abs(math.log(float(scale) / scale_a)) > self.log_scale_drift):
            return REFRESH
        return None

    def _anchor_in_chunks(self, streams: list[_Stream], windows: torch.Tensor, stats: ScalerState, ends: list[int],
                          rollout_tokens: int) -> None:
        """`_anchor` in batches of at most max_anchor_batch streams (bounds the peak activation memory)."""
        for first in range(0, len(streams), self.max_anchor_batch):
            chunk = slice(first, first + self.max_anchor_batch)
            self._anchor(streams[chunk], windows[chunk], ScalerState(stats.loc[chunk], stats.scale[chunk]),
                         ends[chunk], rollout_tokens)

    def _patches_since_anchor(self, stream: _Stream) -> int:
        return max(stream.ingested - stream.anchor_sample, 0) // self.config.patch_size

    def _anchor(self, streams: list[_Stream], windows: torch.Tensor, stats: ScalerState, ends: list[int],
                rollout_tokens: int) -> None:
        """Recompute the states of `streams` with one batched full pass over their windows (and the
        `rollout_tokens` masked tokens after them)."""
        tokens = tokenize(standardize(windows, stats), self.config.patch_size).to(self.device)
        count = tokens.shape[1]
        if rollout_tokens:
            tokens = torch.cat((tokens, self.model.masked_tokens(len(streams), rollout_tokens)), dim=1)
        outputs, states = self.model.forward_tokens(tokens, keep=count)
        rows = self._rows(streams)
        self._states.assign(rows, states)
        self._last_outputs[rows] = outputs[:, count - 1]
        for index, (stream, end) in enumerate(zip(streams, ends)):
            stream.rollout = outputs[index, count:] if rollout_tokens else None
            stream.loc, stream.scale = stats.loc[index].clone(), stats.scale[index].clone()
            stream.ingested = stream.anchor_sample = end
            stream.anchors += 1
            stream.anchor_due = False
        self.counters.anchor_calls += 1
        self.counters.anchored_streams += len(streams)

    def _step(self, stepping: list[tuple[_Stream, int]], rollout_tokens: int) -> None:
        """Advance each stream patch by patch to its boundary; one batched step per patch position. When
        every stream of a position reaches its boundary there, that step also rolls `rollout_tokens` out."""
        patch = self.config.patch_size
        while stepping:
            streams = [stream for stream, _ in stepping]
            values = torch.from_numpy(np.stack([stream.window(stream.ingested + patch, patch) for stream in streams]))
            tokens = tokenize(standardize(values, self._anchor_stats(streams, "cpu")), patch)[:, 0].to(self.device)
            rows = self._rows(streams)
            if rollout_tokens and all(stream.ingested + patch >= end for stream, end in stepping):
                self._step_and_roll_out(streams, rows, tokens, rollout_tokens)
            else:
                self._last_outputs[rows] = self._stepper.step_tokens(tokens, self._states, rows)
                for stream in streams:
                    stream.rollout = None
            for stream in streams:
                stream.ingested += patch
                stream.steps += 1
            self.counters.step_calls += 1
            self.counters.stepped_patches += len(streams)
            stepping = [(stream, end) for stream, end in stepping if stream.ingested < end]

    def _step_and_roll_out(self, streams: list[_Stream], rows: torch.Tensor, tokens: torch.Tensor,
                           rollout_tokens: int) -> None:
        """One pass of [newest patch, masked tokens] from the streams' states: the state after the patch
        goes back into the buffers, the masked outputs are kept for the forecasts until the next patch."""
        masked = self.model.masked_tokens(len(streams), rollout_tokens)
        outputs, states = self._stepper.forward_tokens(torch.cat((tokens[:, None], masked), dim=1),
                                                    self._states.select(rows), keep=1)
        self._states.assign(rows, states)
        self._last_outputs[rows] = outputs[:, 0]
        for index, stream in enumerate(streams):
            stream.rollout = outputs[index, 1:]

    # ----------------------------------------------------------------------------------------- forecast

    @torch.no_grad()
    def forecast(self, names: str | Iterable[str], horizon: int) -> dict[str, StreamForecast | None]:
        """Forecast the next `horizon` samples of each named stream (after absorbing pending patches).

        A stream gets None when it cannot be forecast honestly: unknown, no completed patch yet, or no
        observed value in its model window (all missing)."""
        if not is_count(horizon, minimum=1):
            raise ValueError(f"horizon must be a positive integer (samples), got {horizon!r}")
        horizon = int(horizon)
        names = [names] if isinstance(names, str) else list(names)
        self._absorb(self._rollout_tokens(self.config.patch_size - 1, horizon))  # enough until the next patch
        results: dict[str, StreamForecast | None] = {name: None for name in names}
        ready = [(name, self._streams[name]) for name in dict.fromkeys(names)
                 if name in self._streams and self._streams[name].ingested > 0 and self._streams[name].observed > 0]
        if not ready:
            return results
        streams = [stream for _, stream in ready]
        pending = [stream.samples - stream.ingested for stream in streams]
        extra = max(self._rollout_tokens(p, horizon) for p in pending)
        rows = self._rows(streams)
        last = self._last_outputs[rows]
        if extra and all(stream.rollout is not None and stream.rollout.shape[0] >= extra for stream in streams):
            normalised = torch.cat((last[:, None], torch.stack([stream.rollout[:extra] for stream in streams])), 1)
        else:
            normalised = self._stepper.rollout(last, self._states.select(rows), extra + 1)
            self.counters.rollout_calls += extra > 0
        values = destandardize(normalised.transpose(1, 2).flatten(2), self._anchor_stats(streams)).cpu().numpy()
        levels = self.config.quantiles
        for index, ((name, stream), skip) in enumerate(zip(ready, pending)):
            quantiles = np.ascontiguousarray(values[index, :, skip:skip + horizon].T)
            results[name] = StreamForecast(
                quantiles=quantiles, median=quantiles[:, self.config.median_index].copy(), quantile_levels=levels,
                first_sample=stream.samples, origin_sample=stream.ingested, anchor_sample=stream.anchor_sample,
                anchored=stream.ingested == stream.anchor_sample, loc=float(stream.loc), scale=float(stream.scale),
                context_samples=stream.context_samples,
                missing_fraction=1.0 - stream.observed / max(stream.context_samples, 1))
        return results

    def _rollout_tokens(self, pending: int, horizon: int) -> int:
        """Masked tokens after the state's boundary that cover `pending` observed samples + `horizon`."""
        return math.ceil((pending + horizon) / self.config.patch_size) - 1

    # ---------------------------------------------------------------------------------- save / restore

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: per stream its recent samples, counters, anchor and state rows."""
        streams = {}
        for name, stream in self._streams.items():
            recent = min(stream.samples, stream.ring.shape[0])
            row = torch.tensor([stream.row], device=self.device)
            streams[name] = {
                "samples": stream.samples, "ingested": stream.ingested, "anchor_sample": stream.anchor_sample,
                "nonfinite": stream.nonfinite, "anchors": stream.anchors, "steps": stream.steps,
                "context_samples": stream.context_samples, "observed": stream.observed,
                "recent": torch.from_numpy(stream.window(stream.samples, recent).copy()),
                "loc": stream.loc.clone(), "scale": stream.scale.clone(),
                "state": torch.stack(self._states.select(row).blocks)[:, :, 0].cpu(),
                "last_output": self._last_outputs[stream.row].cpu().clone(),
            }
        return {"format": STATE_FORMAT, "model": self.config.to_hyper_parameters(),
                "precision": self.model.precision, "streams": streams}

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace all streams by those of `state` (from `state_dict`); the model must be the same."""
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a StreamingForecaster state (expected format {STATE_FORMAT!r})")
        if state.get("model") != self.config.to_hyper_parameters():
            raise ValueError("the state was saved with a different model architecture")
        if state.get("precision") != self.model.precision:
            raise ValueError(f"the state was saved with precision {state.get('precision')!r}, "
                             f"the model runs {self.model.precision!r}")
        previous = self._streams, self._states, self._last_outputs, self._free_rows
        try:
            self._restore_streams(state["streams"])
        except Exception:
            # a bad file leaves the engine as it was
            self._streams, self._states, self._last_outputs, self._free_rows = previous
            raise

    def _restore_streams(self, saved: Mapping[str, Any]) -> None:
        self._streams, self._free_rows = {}, []
        self._states = self._zero_states(max(INITIAL_CAPACITY, len(saved)))
        self._last_outputs = self._zero_outputs(self._states.batch_size)
        for name, entry in saved.items():
            stream = self._add_stream(name)
            recent = entry["recent"].numpy().astype(np.float32)
            stream.samples = int(entry["samples"]) - recent.shape[0]
            stream.append(recent)
            for key in ("ingested", "anchor_sample", "nonfinite", "anchors", "steps", "context_samples", "observed"):
                setattr(stream, key, int(entry[key]))
            stream.loc, stream.scale = entry["loc"].float().clone(), entry["scale"].float().clone()
            row = torch.tensor([stream.row], device=self.device)
            self._states.assign(row, SLSTMStackState([block[:, None].to(self.device) for block in entry["state"]]))
            self._last_outputs[stream.row] = entry["last_output"].to(self.device)

    def save(self, path: str | os.PathLike) -> Path:
        """Write `state_dict()` to `path` atomically (torch pickle, readable weights-only)."""
        return save_checkpoint(self.state_dict(), path)

    def load(self, path: str | os.PathLike) -> None:
        """Resume from a file written by `save` (CheckpointError/ValueError name what is wrong)."""
        payload = load_checkpoint(path)
        try:
            self.load_state_dict(payload)
        except (KeyError, TypeError, AttributeError, IndexError, RuntimeError) as error:
            raise CheckpointError(f"{path}: corrupt StreamingForecaster state ({type(error).__name__}: {error})"
                                  ) from error
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}") from error

    # ---------------------------------------------------------------------------------------- buffers

    def _new_ring(self) -> np.ndarray:
        return np.full(self.config.train_ctx_len + self.config.patch_size, np.nan, dtype=np.float32)

    def _add_stream(self, name: str) -> _Stream:
        if self._free_rows:
            stream = self._streams[name] = _Stream(self._free_rows.pop(), self._new_ring())
            return stream
        row = len(self._streams)
        if row >= self._states.batch_size:
            capacity = 2 * self._states.batch_size
            self._states = self._states.resized(capacity)
            grown = self._zero_outputs(capacity)
            grown[:row] = self._last_outputs[:row]
            self._last_outputs = grown
        stream = self._streams[name] = _Stream(row, self._new_ring())
        return stream

    def _zero_states(self, capacity: int) -> SLSTMStackState:
        config = self.config
        return SLSTMStackState.zeros(config.num_blocks, capacity, config.num_heads, config.head_dim,
                                     device=self.device, dtype=self._state_dtype)

    def _zero_outputs(self, capacity: int) -> torch.Tensor:
        return torch.zeros(capacity, len(self.config.quantiles), self.config.patch_size, device=self.device)

    def _anchor_stats(self, streams: list[_Stream], device: torch.device | str | None = None) -> ScalerState:
        """The anchors' (loc, scale) of `streams`, each (N, 1), on `device` (default: the model's)."""
        device = self.device if device is None else device
        return ScalerState(torch.stack([s.loc for s in streams]).to(device),
                           torch.stack([s.scale for s in streams]).to(device))

    def _rows(self, streams: list[_Stream]) -> torch.Tensor:
        return torch.tensor([stream.row for stream in streams], device=self.device)
