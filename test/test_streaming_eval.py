"""Streaming evaluation: the engine as the node runs it against full-window forecasts of the same model."""
from __future__ import annotations

import numpy as np
import pytest

from support_tirex import random_tirex, single_thread  # noqa: F401 (autouse fixture: one torch thread)
from xlstm_ros.eval.forecaster import ForecastTask
from xlstm_ros.eval.streaming import evaluate_streaming, markdown_report, stream_series, write_streaming_report
from xlstm_ros.models.tirex import TiRexConfig

CONFIG = TiRexConfig(embedding_dim=32, num_blocks=2, num_heads=4, input_ff_dim=64, train_ctx_len=256)


def two_series(_cache_dir) -> list[np.ndarray]:
    t = np.arange(1400, dtype=np.float64)
    rng = np.random.default_rng(0)
    return [10 + np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(len(t)),
            np.cumsum(rng.standard_normal(1200))]


TASK = ForecastTask("toy", "sensor", 40, 24, two_series, 5)


@pytest.fixture(scope="module")
def model():
    return random_tirex(CONFIG, seed=3, precision="fp32", backend="torch")


def test_forecasts_at_every_patch_boundary_with_the_patches_since_the_anchor(model):
    values = two_series(None)[0]
    forecasts = stream_series(model, values, first_origin=1000, horizon=40, reanchor_every=4, warmup=300)
    ends = [end for end, _, _ in forecasts]
    assert ends[0] >= 1000 and ends[-1] + 40 <= len(values)
    assert ends[0] == 1000 and np.all(np.diff(ends) == 32)
    assert {since for _, since, _ in forecasts} <= set(range(4)) and forecasts[0][2].shape == (40, 9)


def test_reanchoring_every_patch_is_the_full_window_forecast(model):
    result = evaluate_streaming(model, [TASK], reanchor_every=1, origins=8, warmup=400)
    for scores in result["tasks"].values():
        assert scores["origins"] == 16
        assert scores["ratio"]["MASE"] == pytest.approx(1.0, abs=1e-5)
        assert scores["ratio"]["WQL"] == pytest.approx(1.0, abs=1e-5)
    assert list(result["distance_by_patches_since_anchor"]) == ["0"]
    assert result["distance_by_patches_since_anchor"]["0"]["mean"] < 1e-5


def test_stepped_states_differ_from_the_full_window_and_the_report_says_by_how_much(model, tmp_path):
    result = evaluate_streaming(model, [TASK], reanchor_every=16, origins=12, warmup=400)
    curve = result["distance_by_patches_since_anchor"]
    assert curve["0"]["mean"] < 1e-5 and max(int(k) for k in curve) >= 1
    assert any(curve[k]["mean"] > 1e-4 for k in curve if k != "0")
    assert sum(d["count"] for d in curve.values()) == 24
    text = write_streaming_report(result, tmp_path)
    assert text == markdown_report(result) and "| toy | 24 |" in text
    assert (tmp_path / "forecast_streaming.json").is_file()


def test_a_series_shorter_than_a_window_is_skipped_with_the_reason(model):
    short = ForecastTask("short", "sensor", 40, 24, lambda _: [np.sin(np.arange(200.0))], 2)
    result = evaluate_streaming(model, [short, TASK], reanchor_every=4, origins=4, warmup=300)
    assert result["tasks"]["short"]["origins"] == 0 and "anchors on every patch" in result["tasks"]["short"]["skipped"]
    assert result["geometric_mean_ratio"]["MASE"] == pytest.approx(result["tasks"]["toy"]["ratio"]["MASE"])
    assert "| short | 0 | skipped" in markdown_report(result)
