"""Streaming forecasts measured as the node makes them, next to full-window forecasts of the same model.

For each long series of the `sensor` tasks the StreamingForecaster (the forecaster node's engine) observes
the series sample by sample from `warmup` samples before the first origin, re-anchors as the node does
(`reanchor_every`, drift) and forecasts at every patch boundary. The origins are the last `origins` patch
boundaries whose next `horizon` samples exist (none before a full model window): there the reference is the
model's single-pass forecast of the window that ends at the same sample (what the engine computes at an
anchor). Reported per task: MASE and WQL of the streaming and of the full-window forecasts at the same
origins and their ratios; over all tasks: the distance between the two medians (mean absolute difference
over the horizon / the window's standard deviation) by the patches the streaming state had been stepped
since its last anchor (0 = made at an anchor).
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from xlstm_ros.engines.forecaster import StreamingForecaster
from xlstm_ros.eval.forecaster import ForecastTask, default_cache_dir, resolve_tasks
from xlstm_ros.metrics import geometric_mean, mase, wql
from xlstm_ros.models.tirex import TiRex

FULL_WINDOW_BATCH = 64


def _full_window(model: TiRex, windows: list[np.ndarray], horizon: int) -> list[np.ndarray]:
    """Single-pass forecasts (H, Q) of the windows, batched."""
    out = []
    for first in range(0, len(windows), FULL_WINDOW_BATCH):
        batch = [torch.tensor(w, dtype=torch.float32) for w in windows[first:first + FULL_WINDOW_BATCH]]
        with torch.inference_mode():
            result = model.forecast(batch, horizon, max_accelerated_rollout_steps=None)
        out += list(result.quantiles.cpu().numpy().astype(np.float64))
    return out


def _window(values: np.ndarray, end: int, model: TiRex) -> np.ndarray:
    """The model window that ends before sample `end`."""
    return values[max(0, end - model.config.train_ctx_len):end]


def stream_series(model: TiRex, values: np.ndarray, first_origin: int, horizon: int, reanchor_every: int,
                  warmup: int) -> list[tuple[int, int, np.ndarray]]:
    """Feed `values` to a fresh engine sample by sample from about `warmup` samples before `first_origin` (a
    whole number of patches, so that first_origin is a patch boundary) and forecast at every patch boundary
    from `first_origin` on that has `horizon` samples after it.

    Returns (boundary sample, patches since the anchor, quantiles (H, Q)) per forecast."""
    engine = StreamingForecaster(model, reanchor_every=reanchor_every)
    patch = model.config.patch_size
    start = first_origin - patch * min(-(-warmup // patch), first_origin // patch)
    forecasts = []
    for index in range(start, len(values) - horizon + 1):
        if index > start and (index - start) % patch == 0 and index >= first_origin:
            forecast = engine.forecast("series", horizon)["series"]
            since = (forecast.origin_sample - forecast.anchor_sample) // patch
            forecasts.append((index, int(since), forecast.quantiles.astype(np.float64)))
        engine.observe("series", values[index])
    return forecasts


def evaluate_streaming(model: TiRex, tasks: Iterable[str | ForecastTask] = ("sensor",), *, reanchor_every: int = 16,
                       origins: int = 64, warmup: int | None = None, cache_dir: str | Path | None = None) -> dict:
    """Streaming against full-window forecasts on `tasks` (see the module docstring); returns the JSON content."""
    model = model.eval()
    warmup = 4 * model.config.train_ctx_len if warmup is None else warmup
    levels = model.config.quantiles
    median_column = levels.index(0.5)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    per_task, distances = {}, defaultdict(list)
    for task in resolve_tasks(list(tasks)):
        windows = task.windows(cache)
        count = windows.num_windows
        targets, contexts, streaming, full_window = [], [], [], []
        for series in range(windows.num_series):
            items = range(series * count, (series + 1) * count)
            values = np.concatenate([windows.contexts[items[-1]], windows.targets[items[-1]]])
            patch = model.config.patch_size
            first = max(model.config.train_ctx_len, len(values) - task.horizon - (origins - 1) * patch)
            forecasts = stream_series(model, values, first, task.horizon, reanchor_every, warmup)
            ends = [end for end, _, _ in forecasts]
            reference = _full_window(model, [_window(values, end, model) for end in ends], task.horizon)
            for (end, since, streamed), full in zip(forecasts, reference):
                targets.append(values[end:end + task.horizon])
                contexts.append(values[:end])
                streaming.append(streamed)
                full_window.append(full)
                spread = float(np.nanstd(_window(values, end, model))) or 1.0
                distances[since].append(float(np.mean(np.abs(streamed[:, median_column] - full[:, median_column])))
                                        / spread)
        if not targets:
            per_task[task.name] = {"origins": 0, "skipped": "shorter than the model window plus the horizon: "
                                   "the engine anchors on every patch there, streaming equals the full window"}
            continue
        truth = np.stack(targets)
        scores = {}
        for name, quantiles in (("streaming", streaming), ("full_window", full_window)):
            q = np.stack(quantiles)
            scores[name] = {"MASE": mase(truth, q[..., median_column], contexts, task.season),
                            "WQL": wql(truth, q, levels)}
        scores["ratio"] = {metric: scores["streaming"][metric] / scores["full_window"][metric]
                           for metric in ("MASE", "WQL")}
        scores["origins"] = len(truth)
        per_task[task.name] = scores
    curve = {str(k): {"mean": float(np.mean(v)), "p90": float(np.percentile(v, 90)), "count": len(v)}
             for k, v in sorted(distances.items())}
    return {"reanchor_every": reanchor_every, "warmup_samples": warmup, "origins_per_series": origins,
            "tasks": per_task,
            "geometric_mean_ratio": {metric: geometric_mean(t["ratio"][metric] for t in per_task.values()
                                                            if t["origins"]) for metric in ("MASE", "WQL")},
            "distance_by_patches_since_anchor": curve}


def markdown_report(result: dict) -> str:
    """The two tables of a streaming evaluation."""
    lines = [f"Streaming (reanchor_every {result['reanchor_every']}) against full-window single-pass forecasts",
             "", "| task | origins | MASE streaming | MASE full | ratio | WQL streaming | WQL full | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, t in result["tasks"].items():
        if not t["origins"]:
            lines.append(f"| {name} | 0 | skipped: {t['skipped']} | | | | | |")
            continue
        lines.append(f"| {name} | {t['origins']} | {t['streaming']['MASE']:.4f} | {t['full_window']['MASE']:.4f} | "
                     f"{t['ratio']['MASE']:.4f} | {t['streaming']['WQL']:.4f} | {t['full_window']['WQL']:.4f} | "
                     f"{t['ratio']['WQL']:.4f} |")
    ratio = result["geometric_mean_ratio"]
    lines += [f"| geometric mean | | | | {ratio['MASE']:.4f} | | | {ratio['WQL']:.4f} |", "",
              "| patches since anchor | forecasts | mean distance / window std | p90 |", "|---:|---:|---:|---:|"]
    for k, d in result["distance_by_patches_since_anchor"].items():
        lines.append(f"| {k} | {d['count']} | {d['mean']:.4f} | {d['p90']:.4f} |")
    return "\n".join(lines) + "\n"


def write_streaming_report(result: dict, out_dir: str | Path) -> str:
    """Write forecast_streaming.json and forecast_streaming.md into out_dir; returns the Markdown."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "forecast_streaming.json").write_text(json.dumps(result, indent=1))
    text = markdown_report(result)
    (out / "forecast_streaming.md").write_text(text)
    return text
