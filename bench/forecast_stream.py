"""Streaming TiRex against full passes: time per new forecast, agreement, batch scaling, real time, memory.

    python -m bench.forecast_stream                       # TiRex size (35.3 M, random weights), ~10-20 min
    python -m bench.forecast_stream --smoke --out /tmp/f.json   # tiny model and shapes, seconds (CI)

All models share one set of weights: our TiRex (seeded default initialisation) is saved in the official
`model.ckpt` format and loaded by tirex-ts 1.4.2 (its torch backend) and by us, on the same pinned threads.
Context 2048, horizon 64; every series is a synthetic drone sensor (xlstm_ros.sim.series).

Sections
* per_forecast: each sensor family (IMU, battery, temperature, barometric altitude) as its own stream; after
  each completed 32-sample patch, the time until a new 64-step forecast exists for (a) our StreamingForecaster
  as the node runs it (observe the patch, forecast; packed step path, default reanchor_every, deferred
  anchors whose passes run after the forecast and are timed apart, so each mean counts them at their real
  rate), (b) the engine with the exact step path and anchors on the latency path, (c) tirex-ts's
  single pass over the 2048-sample window (the headline reference: the rollout an anchor reproduces), and as
  labelled extras (d) tirex-ts's default two-pass rollout and (e) our full pass. Per series and the mean over
  all series. Boundaries are interleaved (one of each per patch) so a change of machine load hits all alike.
* agreement: streaming vs full-context quantiles at every boundary (at anchors and between them), against
  tirex-ts's default rollout and against the single-pass rollout that an anchor reproduces exactly;
  differences relative to the window's scale (population std) and to the reference forecast's magnitude.
* batch_scaling: B streams (the four families in turn) with staggered anchors, one patch for each per cycle
  step: time per patch for all B (observe + forecast of all + the deferred anchors), per stream; tirex-ts
  single passes at some
  batch sizes, and the speedup per stream against its best one.
* realtime: the largest number of 100 Hz channels (IMU axes) whose per-patch work fits, on average over a
  re-anchor cycle, in one patch period (32 samples = 0.32 s).
* shipped: real time and agreement again with a trained TiRex (the shipped default when it exists): random
  weights make a chaotic network whose forecasts say little about how close streaming stays.
* memory: each context length in a fresh process; peak RSS growth while streaming the whole series patch by
  patch vs one full pass over the whole context (a model that re-reads its context), and the bytes the
  engine keeps per stream.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tirex-ts must never reach the hub

import numpy as np
import torch

from bench.common import (RESULTS_DIR, Record, current_rss_bytes, peak_rss_bytes, pin_threads,
                          print_child_result, reset_peak_rss, run_child, summarize_ms, wait_until_quiet)
from xlstm_ros.engines.forecaster import DEFAULT_CHECKPOINT, StreamingForecaster
from xlstm_ros.models.tirex import (TiRex, TiRexConfig, load_tirex_checkpoint, save_tirex_checkpoint,
                                    standardize, tokenize, window_stats)
from xlstm_ros.sim.series import Battery, BaroAltitude, Imu, Temperature

MODULE = "bench.forecast_stream"
HORIZON = 64
SENSORS = {"imu": Imu(), "battery": Battery(), "temperature": Temperature(), "baro_altitude": BaroAltitude()}
SECTIONS = ("per_forecast", "agreement", "batch_scaling", "realtime", "shipped", "memory")
SMOKE_CONFIG = TiRexConfig(embedding_dim=64, num_blocks=2, num_heads=4, input_ff_dim=128)


@dataclass(frozen=True)
class Settings:
    """What to measure: the command line's sizes at TiRex size, or the tiny smoke set."""

    config: TiRexConfig
    precision: str
    boundaries: int
    agreement_boundaries: int
    runs: int
    batches: tuple[int, ...]
    tirex_batches: tuple[int, ...]
    cycles: int
    contexts: tuple[int, ...]
    rate_hz: float
    realtime_probes: int


def settings_from(args: argparse.Namespace) -> Settings:
    if args.smoke:
        # 17 boundaries: one scheduled re-anchor (reanchor_every 16) falls inside, so both kinds are seen
        return Settings(SMOKE_CONFIG, args.precision, boundaries=17, agreement_boundaries=4, runs=2, batches=(1, 3), tirex_batches=(1,),
                        cycles=1, contexts=(512, 1024), rate_hz=args.rate_hz, realtime_probes=2)
    return Settings(TiRexConfig(), args.precision, args.boundaries, args.boundaries, args.runs, tuple(args.batches),
                    tuple(args.tirex_batches), args.cycles, tuple(args.contexts), args.rate_hz,
                    args.realtime_probes)


# ------------------------------------------------------------------------------------------------ inputs

def sensor_series(count: int, length: int, seed: int, families: Sequence[str] = tuple(SENSORS)) -> np.ndarray:
    """(count, length) float32 series cycling through the given drone sensor families."""
    kinds = [SENSORS[name] for name in families]
    rows = [kinds[i % len(kinds)](np.random.default_rng(seed + i), 1, length)[0] for i in range(count)]
    return np.stack(rows).astype(np.float32)


def write_shared_checkpoint(config: TiRexConfig, directory: Path, seed: int = 0) -> Path:
    """Our TiRex with seeded default initialisation, saved as <directory>/TiRex/model.ckpt (official format)."""
    torch.manual_seed(seed)
    return save_tirex_checkpoint(TiRex(config), directory / "TiRex" / "model.ckpt")


Reference = Callable[..., np.ndarray]
"""Full-context forecast of context windows (B, T) -> quantiles (B, HORIZON, Q): the official default rollout
(one pass per 32-step patch), or with single_pass=True all HORIZON steps from one pass (the rollout a
streaming state uses; tirex-ts max_accelerated_rollout_steps >= 2)."""


def tirex_ts_reference(path: Path) -> Reference:
    """tirex-ts 1.4.2's TiRexZero loaded from `path` (torch backend, CPU)."""
    from tirex.models.tirex import TiRexZero

    official = TiRexZero.from_pretrained(str(path), backend="torch", device="cpu").eval()
    steps = math.ceil(HORIZON / official.config.output_patch_size)

    def forecast(windows: np.ndarray, single_pass: bool = False) -> np.ndarray:
        return official.forecast(torch.from_numpy(windows), prediction_length=HORIZON,
                                 max_accelerated_rollout_steps=steps if single_pass else 1)[0].numpy()
    return forecast


def ours_reference(model: TiRex) -> Reference:
    """Our TiRex.forecast with the official rollouts (bitwise tirex-ts in bf16-compatible precision)."""
    def forecast(windows: np.ndarray, single_pass: bool = False) -> np.ndarray:
        steps = None if single_pass else 1
        return model.forecast(windows, HORIZON, max_accelerated_rollout_steps=steps).quantiles.numpy()
    return forecast


# ------------------------------------------------------------------------------------------ per forecast

def relative_differences(streamed: np.ndarray, reference: np.ndarray, scale: np.ndarray) -> dict[str, np.ndarray]:
    """Per forecast: max |streamed - reference| over horizon and quantiles, relative to the window's scale
    (population std) and to the reference's largest magnitude."""
    worst = np.abs(streamed - reference).reshape(len(streamed), -1).max(axis=1)
    return {"scale": worst / scale, "magnitude": worst / np.abs(reference).reshape(len(reference), -1).max(axis=1)}


def new_forecast(engine: StreamingForecaster, name: str, patch_values: np.ndarray) -> tuple[float, Any]:
    """Milliseconds from a completed patch to its forecast: observe, forecast (which absorbs the patch and
    rolls out in one pass, as the node does)."""
    start = time.perf_counter()
    engine.observe(name, patch_values)
    result = engine.forecast(name, HORIZON)[name]
    return (time.perf_counter() - start) * 1e3, result


def per_forecast_section(model: TiRex, official: Reference, settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every sensor family as its own stream, boundary by boundary: the time to a new forecast of our
    streaming engine as the node runs it (packed step path, deferred anchors: their passes run after the
    forecast and are timed apart; its runs' median) and of the engine with the exact step path and anchors on
    the latency path, against tirex-ts's single pass over the window (the rollout an anchor reproduces), with
    the default two-pass rollout and our full pass as labelled extras. Anchors happen where the engine decides
    (schedule and drift), so each series' means count them at their real rate.
    -> (timings, agreement of the first series)."""
    ctx, patch = model.config.train_ctx_len, model.config.patch_size
    series_rows, agreement = {}, None
    for position, (family, values) in enumerate(zip(SENSORS, sensor_series(len(SENSORS), ctx + settings.boundaries
                                                                           * patch, seed=100))):
        engines = [StreamingForecaster(model, defer_anchors=True) for _ in range(settings.runs)]
        exact = StreamingForecaster(model, step_path="exact")
        for engine in engines + [exact]:
            engine.observe(family, values[:ctx])
            engine.update()  # the first anchor: a stream's warm-up, not a per-patch cost
        times: dict[str, list] = {"streaming": [[] for _ in engines], "deferred_anchors": [], "streaming_exact": [],
                                  "tirex_ts_single_pass": [], "tirex_ts": [], "ours_full": []}
        deferred_flags, anchored, streamed, official_q, single_q, scales = [], [], [], [], [], []
        for index in range(settings.boundaries):
            end = ctx + (index + 1) * patch
            window = values[end - ctx:end][None]
            for run, engine in enumerate(engines):
                elapsed, result = new_forecast(engine, family, values[end - patch:end])
                times["streaming"][run].append(elapsed)
                start = time.perf_counter()
                deferred = engine.run_deferred_anchors()
                if run == 0:
                    times["deferred_anchors"].append((time.perf_counter() - start) * 1e3)
                    deferred_flags.append(bool(deferred))
            exact_elapsed, exact_result = new_forecast(exact, family, values[end - patch:end])
            times["streaming_exact"].append(exact_elapsed)
            anchored.append(exact_result.anchored)   # agreement: the exact engine, bitwise at its anchors
            streamed.append(exact_result.quantiles)
            for key, run_reference in (("tirex_ts_single_pass", lambda: official(window, single_pass=True)),
                                       ("tirex_ts", lambda: official(window)),
                                       ("ours_full", lambda: model.forecast(window, HORIZON).quantiles.numpy())):
                start = time.perf_counter()
                forecast = run_reference()
                times[key].append((time.perf_counter() - start) * 1e3)
                (single_q if key == "tirex_ts_single_pass" else official_q if key == "tirex_ts" else []).append(
                    forecast[0])
            scales.append(float(window_stats(torch.from_numpy(window)).scale))
        run_means = [float(np.mean(samples)) for samples in times["streaming"]]
        streaming_ms = float(np.median(run_means))
        flags = np.asarray(deferred_flags)
        single_ms, tirex_ms, ours_ms = (summarize_ms(times[key]) for key in ("tirex_ts_single_pass", "tirex_ts",
                                                                            "ours_full"))
        exact_ms = float(np.mean(times["streaming_exact"]))
        series_rows[family] = {
            "seed": 100 + position, "anchored_share": round(float(np.mean(deferred_flags)), 3),
            "streaming_ms": {"mean_per_forecast": round(streaming_ms, 3), "run_means": [round(m, 3) for m in run_means],
                             "step_path": engines[0].step_path, "anchors": "deferred",
                             "deferred_anchor_work_mean_per_patch": round(float(np.mean(times["deferred_anchors"])), 3),
                             "deferred_anchor_work_at_anchor_mean": _mean_or_none(
                                 np.asarray(times["deferred_anchors"])[flags])},
            "streaming_exact_step_path_ms": round(exact_ms, 3),
            "note_exact": "exact step path with anchors on the latency path (the engine before the fast path)",
            "tirex_ts_single_pass_ms": single_ms.as_dict(),
            "speedup_vs_tirex_ts_single_pass": round(single_ms.median_ms / streaming_ms, 2),
            "extra": {"tirex_ts_default_rollout_ms": tirex_ms.as_dict(), "ours_full_pass_ms": ours_ms.as_dict(),
                      "speedup_vs_tirex_ts_default_rollout": round(tirex_ms.median_ms / streaming_ms, 2),
                      "speedup_exact_step_path_vs_single_pass": round(single_ms.median_ms / exact_ms, 2)},
        }
        print(f"per forecast {family:14s}: streaming {streaming_ms:7.1f} ms (anchored {np.mean(deferred_flags):.0%}), "
              f"exact step path {exact_ms:7.1f} ms, tirex-ts single pass {single_ms.median_ms:7.1f} ms", flush=True)
        if agreement is None:
            agreement = agreement_summary(np.stack(streamed), np.stack(official_q), np.stack(single_q),
                                          np.asarray(scales), np.asarray(anchored))
    streaming_mean = float(np.mean([row["streaming_ms"]["mean_per_forecast"] for row in series_rows.values()]))
    single_mean = float(np.mean([row["tirex_ts_single_pass_ms"]["median_ms"] for row in series_rows.values()]))
    exact_mean = float(np.mean([row["streaming_exact_step_path_ms"] for row in series_rows.values()]))
    timings = {
        "context": ctx, "horizon": HORIZON, "boundaries": settings.boundaries,
        "reanchor_every": StreamingForecaster(model).reanchor_every, "series": series_rows,
        "all_series": {"streaming_mean_ms": round(streaming_mean, 3),
                       "tirex_ts_single_pass_mean_ms": round(single_mean, 3),
                       "speedup_vs_tirex_ts_single_pass": round(single_mean / streaming_mean, 2),
                       "exact_step_path_mean_ms": round(exact_mean, 3),
                       "speedup_exact_step_path_vs_tirex_ts_single_pass": round(single_mean / exact_mean, 2)},
        "extra_imu_vs_default_rollout": {
            "speedup": series_rows["imu"]["extra"]["speedup_vs_tirex_ts_default_rollout"],
            "note": "the old headline: the stationary IMU series only, against tirex-ts's two-pass rollout"},
    }
    return timings, agreement


def _mean_or_none(values: np.ndarray) -> float | None:
    return round(float(values.mean()), 3) if values.size else None


def agreement_summary(streamed: np.ndarray, official: np.ndarray, single: np.ndarray, scales: np.ndarray,
                      anchored: np.ndarray) -> dict[str, Any]:
    """Largest and mean relative differences, split into forecasts made at anchors and between them."""
    out: dict[str, Any] = {"forecasts": int(len(streamed)), "at_anchor": int(anchored.sum())}
    for name, reference in (("vs_full_pass_default_rollout", official), ("vs_single_pass", single)):
        diffs = relative_differences(streamed, reference, scales)
        entry = {}
        for kind, values in diffs.items():
            entry[f"max_rel_to_{kind}"] = float(values.max())
            entry[f"mean_rel_to_{kind}"] = float(values.mean())
            for label, mask in (("at_anchor", anchored), ("between_anchors", ~anchored)):
                entry[f"max_rel_to_{kind}_{label}"] = float(values[mask].max()) if mask.any() else None
        out[name] = entry
    return out


def agreement_section(model: TiRex, official: Reference, settings: Settings) -> dict[str, Any]:
    """The four sensor families as four streams of one engine, against batched tirex-ts references; the
    headline is the largest difference relative to the scale, over all series and boundaries."""
    ctx, patch = model.config.train_ctx_len, model.config.patch_size
    names = list(SENSORS)
    series = sensor_series(len(names), ctx + settings.agreement_boundaries * patch, seed=200)
    engine = StreamingForecaster(model)
    for name, values in zip(names, series):
        engine.observe(name, values[:ctx])
    streamed, official_q, single_q, scales, anchored = [], [], [], [], []
    for index in range(settings.agreement_boundaries):
        end = ctx + (index + 1) * patch
        for name, values in zip(names, series):
            engine.observe(name, values[end - patch:end])
        results = engine.forecast(names, HORIZON)
        windows = series[:, end - ctx:end]
        streamed.append(np.stack([results[name].quantiles for name in names]))
        anchored.append([results[name].anchored for name in names])
        official_q.append(official(windows))
        single_q.append(official(windows, single_pass=True))
        scales.append(window_stats(torch.from_numpy(windows)).scale[:, 0].numpy())
    out: dict[str, Any] = {name: agreement_summary(
        np.stack([s[column] for s in streamed]), np.stack([o[column] for o in official_q]),
        np.stack([s[column] for s in single_q]), np.asarray([s[column] for s in scales]),
        np.asarray([a[column] for a in anchored])) for column, name in enumerate(names)}
    out["max_rel_to_scale_all_series"] = max(out[name]["vs_full_pass_default_rollout"]["max_rel_to_scale"]
                                             for name in names)
    return out


# ----------------------------------------------------------------------------------------- batch scaling

class StaggeredStreams:
    """`count` streams in one engine, warmed up so that their anchors fall on different patches.

    IMU axes (the default family) are the 100 Hz channels of a drone; they are stationary, so streams
    re-anchor on the schedule (every reanchor_every patches). Trending sensors also re-anchor when their
    statistics drift, which costs a full pass each time."""

    def __init__(self, model: TiRex, count: int, cycles: int, seed: int = 300,
                 families: Sequence[str] = ("imu",)) -> None:
        self.engine = StreamingForecaster(model, defer_anchors=True)   # as the node runs it
        self.patch = model.config.patch_size
        self.names = [f"s{i}" for i in range(count)]
        every = self.engine.reanchor_every
        self.measured_patches = cycles * every
        length = model.config.train_ctx_len + (every + self.measured_patches) * self.patch
        bank = sensor_series(min(count, 64), length, seed, families=families)
        self.series = [bank[i % len(bank)] for i in range(count)]
        self.position = [model.config.train_ctx_len] * count
        for name, values in zip(self.names, self.series):
            self.engine.observe(name, values[:model.config.train_ctx_len])
        self.engine.update()
        for extra in range(every - 1):  # stream i steps i % every patches: anchors spread over the cycle
            self._feed([i for i in range(count) if i % every > extra])
            self.engine.update()
            self.engine.run_deferred_anchors()

    def _feed(self, indices: Sequence[int]) -> None:
        for i in indices:
            start = self.position[i]
            self.engine.observe(self.names[i], self.series[i][start:start + self.patch])
            self.position[i] = start + self.patch

    def measure(self) -> dict[str, Any]:
        """Per patch for all streams: observe, forecast of every stream (absorbing the patch), then the deferred
        anchors (the work must fit the patch period too); over whole cycles."""
        anchored_before = self.engine.counters.anchored_streams
        samples = []
        everyone = range(len(self.names))
        for _ in range(self.measured_patches):
            start = time.perf_counter()
            self._feed(everyone)
            self.engine.forecast(self.names, HORIZON)
            self.engine.run_deferred_anchors()
            samples.append((time.perf_counter() - start) * 1e3)
        mean = float(np.mean(samples))
        return {"streams": len(self.names), "patches": len(samples), "per_patch_mean_ms": round(mean, 3),
                "per_patch_max_ms": round(max(samples), 3),
                "per_stream_ms": round(mean / len(self.names), 4),
                "anchored_streams": self.engine.counters.anchored_streams - anchored_before}


def batch_scaling_section(model: TiRex, official: Reference, settings: Settings, record: Record) -> None:
    """Per stream at each batch size, the four sensor families mixed (anchors at their real rates), against
    tirex-ts single passes at each of its batch sizes; speedups against its best per-stream time."""
    rows = []
    for count in settings.batches:
        row = StaggeredStreams(model, count, settings.cycles, families=tuple(SENSORS)).measure()
        print(f"batch {count:5d}: {row['per_patch_mean_ms']:10.2f} ms per patch, {row['per_stream_ms']:8.3f} ms "
              f"per stream (all families)", flush=True)
        rows.append(row)
    ctx = model.config.train_ctx_len
    official_rows = []
    for count in settings.tirex_batches:
        windows = sensor_series(count, ctx, seed=400)
        timing = _time_official(official, windows, reps=2 if count > 16 else 3)
        official_rows.append({"streams": count, "per_call": timing,
                              "per_stream_ms": round(timing["median_ms"] / count, 3)})
        print(f"tirex-ts single pass batch {count:4d}: {timing['median_ms']:10.1f} ms per call", flush=True)
    best = min(official_rows, key=lambda row: row["per_stream_ms"])
    for row in rows:
        row["speedup_vs_tirex_ts_best_batch"] = round(best["per_stream_ms"] / row["per_stream_ms"], 2)
    record["batch_scaling"] = {"streaming": rows, "tirex_ts_single_pass": official_rows,
                               "tirex_ts_best_batch": best["streams"],
                               "series": "the four sensor families in turn (seed 300); tirex-ts: seed 400"}


def _time_official(official: Reference, windows: np.ndarray, reps: int) -> dict[str, float]:
    samples = []
    official(windows, single_pass=True)
    for _ in range(reps):
        start = time.perf_counter()
        official(windows, single_pass=True)
        samples.append((time.perf_counter() - start) * 1e3)
    return summarize_ms(samples).as_dict()


# ------------------------------------------------------------------------------------------- real time

def realtime_channels(model: TiRex, known: list[dict], settings: Settings) -> dict[str, Any]:
    """Largest channel count whose mean per-patch work fits in one patch period at `rate_hz` (bisection
    between measured counts; doubling first when even the largest known count keeps up)."""
    period_ms = model.config.patch_size / settings.rate_hz * 1e3
    probes = {row["streams"]: row for row in known}

    def fits(count: int) -> bool:
        if count not in probes:
            probes[count] = StaggeredStreams(model, count, 1).measure()
            print(f"realtime probe {count:6d} channels: {probes[count]['per_patch_mean_ms']:.1f} ms per patch "
                  f"(period {period_ms:.0f} ms)", flush=True)
        return probes[count]["per_patch_mean_ms"] <= period_ms

    passing = [c for c, row in probes.items() if row["per_patch_mean_ms"] <= period_ms]
    failing = [c for c, row in probes.items() if row["per_patch_mean_ms"] > period_ms]
    low, high = max(passing, default=0), min((c for c in failing if c > max(passing, default=0)), default=None)
    budget = settings.realtime_probes
    while high is None and budget > 0:
        candidate = max(2 * low, 1)
        budget -= 1
        if fits(candidate):
            low = candidate
        else:
            high = candidate
    while high is not None and high - low > max(1, low // 16) and budget > 0:
        middle = (low + high) // 2
        budget -= 1
        if fits(middle):
            low = middle
        else:
            high = middle
    return {"rate_hz": settings.rate_hz, "patch_period_ms": period_ms, "max_channels": low,
            "first_failing": high, "resolution": "bisection to 1/16 of the count or the probe budget",
            "probes": sorted(probes.values(), key=lambda row: row["streams"])}


def shipped_model_section(checkpoint: Path, settings: Settings, record: Record) -> None:
    """Real-time channels and agreement for a trained checkpoint (default: the shipped one), if it exists.

    The full-context reference is tirex-ts when it can load the file; tirex-ts rebuilds the FFN width from
    its own default projection factor, so a model trained with another factor falls back to our
    TiRex.forecast (the same computation, bitwise, wherever tirex-ts loads the file)."""
    if not checkpoint.is_file():
        record["shipped_model"] = None
        record.note(f"{checkpoint} is not there: no trained-model figures")
        return
    model = load_tirex_checkpoint(checkpoint, precision=settings.precision)
    first = StaggeredStreams(model, settings.batches[-1], 1).measure()
    section = {"checkpoint": str(checkpoint), "parameters": sum(p.numel() for p in model.parameters()),
               "config": model.config.to_hyper_parameters(), "realtime": realtime_channels(model, [first], settings)}
    with tempfile.TemporaryDirectory() as directory:
        copy = save_tirex_checkpoint(model, Path(directory) / "TiRex" / "model.ckpt")  # tirex-ts wants this path
        try:
            reference, section["reference"] = tirex_ts_reference(copy), "tirex-ts 1.4.2"
        except RuntimeError as error:
            reference = ours_reference(model)
            section["reference"] = f"ours (TiRex.forecast): tirex-ts cannot load it ({str(error).splitlines()[0]})"
        section["agreement"] = agreement_section(model, reference, settings)
    record["shipped_model"] = section


# ---------------------------------------------------------------------------------------------- memory

def memory_child(checkpoint: Path, precision: str, mode: str, context: int) -> dict[str, Any]:
    """In a fresh process: peak RSS growth of streaming `context` samples patch by patch, or of one pass
    over the whole context; the baseline is the RSS with the model and the series loaded."""
    model = load_tirex_checkpoint(checkpoint, precision=precision)
    series = sensor_series(1, context, seed=500)[0]
    patch = model.config.patch_size
    baseline = current_rss_bytes()
    reset_peak_rss()
    start = time.perf_counter()
    out: dict[str, Any] = {"mode": mode, "context": context}
    with torch.inference_mode():
        if mode == "streaming":
            engine = StreamingForecaster(model)
            for end in range(patch, context + 1, patch):
                engine.observe("s", series[end - patch:end])
                engine.update()
            engine.forecast("s", HORIZON)
            entry = engine.state_dict()["streams"]["s"]
            ring_bytes = (model.config.train_ctx_len + patch) * 4  # allocated per stream at its first sample
            rollout_bytes = (math.ceil(HORIZON / patch) - 1) * entry["last_output"].nbytes  # kept masked outputs
            out.update(state_bytes=entry["state"].nbytes, last_output_bytes=entry["last_output"].nbytes,
                       ring_bytes=ring_bytes, rollout_bytes=rollout_bytes,
                       per_stream_bytes=entry["state"].nbytes + entry["last_output"].nbytes + ring_bytes
                       + rollout_bytes,
                       anchors=engine.counters.anchor_calls, steps=engine.counters.step_calls)
        elif mode == "full_pass":
            context_tensor = torch.from_numpy(series[None])
            stats = window_stats(context_tensor)
            outputs, state = model.forward_tokens(tokenize(standardize(context_tensor, stats), patch))
            model.rollout(outputs[:, -1], state, math.ceil(HORIZON / patch))
            out.update(context_bytes=context_tensor.nbytes, tokens=context // patch)
        else:
            raise ValueError(f"unknown memory mode {mode!r}")
    out.update(seconds=round(time.perf_counter() - start, 2), baseline_rss_bytes=baseline,
               peak_rss_bytes=peak_rss_bytes(), peak_growth_bytes=peak_rss_bytes() - baseline)
    return out


def memory_section(checkpoint: Path, settings: Settings, record: Record) -> None:
    config = settings.config
    rows = []
    for context in settings.contexts:
        for mode in ("streaming", "full_pass"):
            row = run_child(MODULE, ["--memory-child", f"{mode}:{context}", "--checkpoint", str(checkpoint),
                                     "--precision", settings.precision, "--threads", str(torch.get_num_threads())])
            if mode == "full_pass":  # what a same-width Transformer would cache for its whole context
                row["transformer_kv_cache_bytes_fp32"] = (2 * config.num_blocks * (context // config.patch_size)
                                                          * config.embedding_dim * 4)
            rows.append(row)
            print(f"memory {mode:10s} context {context:6d}: peak growth {row['peak_growth_bytes'] / 2**20:8.1f} MiB "
                  f"({row['seconds']} s)", flush=True)
    streaming = [r for r in rows if r["mode"] == "streaming"]
    record["memory"] = {
        "rows": rows,
        "state_bytes_per_stream": {str(r["context"]): r["per_stream_bytes"] for r in streaming},
        "state_bytes_constant": len({r["per_stream_bytes"] for r in streaming}) == 1,
        "note": "peak_growth = peak RSS while streaming / during the pass minus the RSS with model and series "
                "loaded; per_stream_bytes = recurrent state rows + last output + the rollout kept from the last "
                "patch + the ring buffer of train_ctx_len + patch samples that the engine allocates per stream",
    }


# ------------------------------------------------------------------------------------------------ main

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "forecast_stream.json")
    parser.add_argument("--smoke", action="store_true", help="tiny model and shapes (CI): plumbing only")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (pinned)")
    parser.add_argument("--precision", default="bf16-compatible", choices=("bf16-compatible", "fp32"),
                        help="recurrence precision of our model (bf16-compatible = tirex-ts's rounding)")
    parser.add_argument("--boundaries", type=int, default=32, help="patch boundaries timed (2 re-anchor cycles)")
    parser.add_argument("--runs", type=int, default=3, help="independent streaming runs (median of their means)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    parser.add_argument("--tirex-batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--cycles", type=int, default=1, help="re-anchor cycles per batch-scaling point")
    parser.add_argument("--contexts", type=int, nargs="+", default=[512, 2048, 8192, 65536])
    parser.add_argument("--rate-hz", type=float, default=100.0, help="sensor rate of the real-time test")
    parser.add_argument("--realtime-probes", type=int, default=6, help="extra measurements for the search")
    parser.add_argument("--trained-checkpoint", type=Path, default=None,
                        help="trained TiRex for the agreement and real-time figures (default: the shipped one; "
                             "with --smoke the tiny random model, to exercise the code)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="run only these sections (default: all)")
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="LOAD",
                        help="wait until the 1-minute load average is below LOAD before measuring")
    parser.add_argument("--max-wait-s", type=float, default=9000.0)
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pin_threads(args.threads)
    if args.memory_child:
        mode, context = args.memory_child.split(":")
        print_child_result(memory_child(args.checkpoint, args.precision, mode, int(context)))
        return 0
    quiet = wait_until_quiet(args.wait_quiet, args.max_wait_s) if args.wait_quiet is not None else None
    settings = settings_from(args)
    record = Record("forecast_stream", MODULE, list(argv) if argv is not None else sys.argv[1:], args.threads,
                    "smoke" if args.smoke else "full", quiet)
    with tempfile.TemporaryDirectory() as directory, torch.inference_mode():
        checkpoint = write_shared_checkpoint(settings.config, Path(directory))
        model = load_tirex_checkpoint(checkpoint, precision=settings.precision)
        official = tirex_ts_reference(checkpoint)
        record["model"] = {"config": settings.config.to_hyper_parameters(), "precision": settings.precision,
                           "parameters": sum(p.numel() for p in model.parameters()),
                           "weights": "seeded default initialisation (random), shared with tirex-ts via model.ckpt",
                           "tirex_ts": _tirex_version()}
        record["sections"] = sections = args.sections
        if "per_forecast" in sections:
            per, series_agreement = per_forecast_section(model, official, settings)
            record["per_forecast"] = {**per, "agreement": series_agreement}
            print(f"per forecast, all series: {per['all_series']}", flush=True)
        if "agreement" in sections:
            record["agreement"] = agreement_section(model, official, settings)
        if "batch_scaling" in sections:
            batch_scaling_section(model, official, settings, record)
        if "realtime" in sections:
            first = StaggeredStreams(model, settings.batches[-1], 1).measure()
            record["realtime"] = realtime_channels(model, [first], settings)
            print(f"real time: {record['realtime']['max_channels']} channels at {settings.rate_hz:g} Hz", flush=True)
        if "shipped" in sections:
            trained = args.trained_checkpoint or (checkpoint if args.smoke else DEFAULT_CHECKPOINT)
            shipped_model_section(trained, settings, record)
        if "memory" in sections:
            memory_section(checkpoint, settings, record)
    path = record.write(args.out)
    print(f"wrote {path} ({record['elapsed_s']} s)")
    return 0


def _tirex_version() -> str:
    from importlib.metadata import version

    return version("tirex-ts")


if __name__ == "__main__":
    raise SystemExit(main())
