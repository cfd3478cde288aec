"""The benchmarks in CI smoke mode: `bench.run --smoke` runs every script on tiny shapes and writes every
result file, the summary and the README table; plus the helpers whose arithmetic the figures rely on."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import log_log_slope, percentiles  # noqa: E402
from bench.depth import size_case  # noqa: E402
from bench.run import END, START, SUMMARY_KEYS, replace_block  # noqa: E402


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One `bench.run --smoke` (kernels excluded: test_kernels_bench.py runs its smoke mode)."""
    directory = tmp_path_factory.mktemp("bench")
    readme = directory / "README.md"
    readme.write_text(f"# title\n\nbefore\n{START}\nold table\n{END}\nafter\n")
    results = directory / "results"
    command = [sys.executable, "-m", "bench.run", "--smoke", "--results-dir", str(results), "--readme", str(readme),
               "--only", "forecast_stream", "depth", "node_latency"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return results, readme


def load(results: Path, name: str) -> dict:
    data = json.loads((results / f"{name}.json").read_text())
    assert data["mode"] == "smoke" and "--smoke" in data["command"] and data["command"].startswith(
        f"python -m bench.{name}")
    assert data["commit"] and data["machine"]["torch"] and data["threads"] == 1
    assert len(data["load_average_before"]) == 3 and data["elapsed_s"] > 0
    return data


def test_forecast_stream_times_agreement_and_memory(smoke_run):
    data = load(smoke_run[0], "forecast_stream")
    per = data["per_forecast"]
    assert set(per["series"]) == {"imu", "battery", "temperature", "baro_altitude"}
    for row in per["series"].values():
        streaming = row["streaming_ms"]
        assert streaming["mean_per_forecast"] > 0 and row["streaming_exact_step_path_ms"] > 0
        assert row["speedup_vs_tirex_ts_single_pass"] == pytest.approx(
            row["tirex_ts_single_pass_ms"]["median_ms"] / streaming["mean_per_forecast"], rel=0.01)
        assert 0 < row["anchored_share"] < 1 and streaming["deferred_anchor_work_at_anchor_mean"] > 0
    mean = per["all_series"]
    assert mean["streaming_mean_ms"] == pytest.approx(
        np.mean([row["streaming_ms"]["mean_per_forecast"] for row in per["series"].values()]), rel=1e-3)
    assert mean["speedup_vs_tirex_ts_single_pass"] == pytest.approx(
        mean["tirex_ts_single_pass_mean_ms"] / mean["streaming_mean_ms"], rel=0.01)
    imu = data["agreement"]["imu"]
    assert imu["at_anchor"] >= 1
    assert imu["vs_single_pass"]["max_rel_to_scale_at_anchor"] == 0.0  # an anchor IS the single-pass forecast
    assert set(data["agreement"]) == {"imu", "battery", "temperature", "baro_altitude", "max_rel_to_scale_all_series"}
    assert per["agreement"]["vs_single_pass"]["max_rel_to_scale_at_anchor"] == 0.0
    scaling = data["batch_scaling"]
    assert [row["streams"] for row in scaling["streaming"]] == [1, 3]
    best = next(row for row in scaling["tirex_ts_single_pass"] if row["streams"] == scaling["tirex_ts_best_batch"])
    for row in scaling["streaming"]:
        assert row["speedup_vs_tirex_ts_best_batch"] == pytest.approx(best["per_stream_ms"] / row["per_stream_ms"],
                                                                      rel=0.01)
    assert data["realtime"]["max_channels"] >= 1 and data["realtime"]["patch_period_ms"] == pytest.approx(320)
    trained = data["shipped_model"]  # smoke: the tiny random model stands in for the shipped one
    assert trained["parameters"] == data["model"]["parameters"] and trained["realtime"]["max_channels"] >= 1
    assert trained["agreement"]["max_rel_to_scale_all_series"] >= 0
    memory = data["memory"]
    assert memory["state_bytes_constant"] and set(memory["state_bytes_per_stream"]) == {"512", "1024"}
    streaming_rows = [row for row in memory["rows"] if row["mode"] == "streaming"]
    # 2 blocks x (h, c, n, m) x 64 features in bf16, the last output and one kept masked output (each 9
    # quantiles x 32 float32), a ring of 2048 + 32 float32
    assert streaming_rows[0]["per_stream_bytes"] == 2 * 4 * 64 * 2 + 2 * 9 * 32 * 4 + 2080 * 4
    assert all(row["peak_growth_bytes"] >= 0 for row in memory["rows"])


def test_depth_latency_memory_and_ratios(smoke_run):
    data = load(smoke_run[0], "depth")
    assert {row["model"] for row in data["latency"]} == {"vil_t_dpt", "vil_s_dpt", "da_v2_small", "da_v2_base"}
    for row in data["latency"]:
        assert row["latency_ms"]["median_ms"] > 0 and row["latency_ms"]["reps"] == 3
        assert row["tokens"] == (row["height"] // (14 if row["input"] == "da" else 16)) * (
            row["width"] // (14 if row["input"] == "da" else 16))
    same = {row["input"]: row for row in data["latency"] if row["size"] == "28x42"
            and row["model"] in ("vil_t_dpt", "da_v2_small")}
    assert same["same_tokens"]["tokens"] == same["da"]["tokens"]
    assert all(row["model_memory_bytes"] > 0 for row in data["memory"])
    assert data["ratios"]["28.vil_t_dpt/da_v2_small.same_tokens"]["model_memory"] > 0
    assert data["goals"]["518"]["met"] is None  # the smoke sizes do not include 518


def test_node_latency_through_real_processes(smoke_run):
    data = load(smoke_run[0], "node_latency")
    depth = data["depth"]["large_shm"]
    assert depth["maps_received"] >= 1 and depth["maps_received"] + depth["dropped"] == depth["frames_published"]
    assert 0 < depth["latency"]["p50_ms"] <= depth["latency"]["p99_ms"]
    forecast = data["forecast"]
    assert forecast["forecasts_received"] >= 1 and forecast["latency"]["p50_ms"] > 0
    assert forecast["samples_received_by_node"] is not None


def test_summary_has_exactly_the_issue_keys_and_the_readme_block_is_replaced(smoke_run):
    results, readme = smoke_run
    summary = json.loads((results / "summary.json").read_text())
    assert set(summary) == set(SUMMARY_KEYS) | {"commit"}
    assert summary["forecast_stream_speedup_single_pass_ctx2048"] > 0 and summary["node_latency_ms_p50"] > 0
    assert summary["forecast_stream_speedup_single_pass_b64"] is None   # the smoke batches stop at 3
    assert summary["depth_latency_ratio_518"] is None  # not a smoke size: reported as missing, not invented
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n" + START) and text.endswith(END + "\nafter\n")
    assert "old table" not in text and "| goal | measured |" in text and "not measured" in text


def test_replace_block_leaves_a_file_without_markers_alone(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("no markers here\n")
    assert not replace_block(path, "table")
    assert path.read_text() == "no markers here\n"


def test_percentiles_and_growth_exponent():
    values = list(np.random.default_rng(0).normal(size=101))
    got = percentiles(values, (50, 90, 99))
    for level in (50, 90, 99):
        assert got[f"p{level}"] == pytest.approx(np.percentile(values, level))
    assert percentiles([]) == {}
    pixels = [252 ** 2, 518 ** 2, 1022 ** 2]
    assert log_log_slope(pixels, [3.0 * p ** 1.5 for p in pixels]) == pytest.approx(1.5)
    assert log_log_slope([1.0], [2.0]) is None


def test_size_cases_match_token_counts():
    case = size_case("518", 518, 518)
    assert case.da == (518, 518) and case.same_tokens == (592, 592) and case.same_pixels == (512, 512)
    case = size_case("1024", 1024, 1024)
    assert case.da == (1022, 1022) and case.same_tokens == (1168, 1168) and case.same_pixels == (1024, 1024)
    drone = size_case("480x640", 480, 640)
    assert drone.da == (476, 630) and drone.same_tokens == (544, 720) and drone.same_pixels == (480, 640)
    assert math.prod(d // 14 for d in drone.da) == math.prod(d // 16 for d in drone.same_tokens)
