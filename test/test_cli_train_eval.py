"""`xlstm-ros train|eval forecaster|depth` reach the training and evaluation code with tiny settings."""
import json

import numpy as np
import pytest
from support_tirex import write_random_checkpoint

from xlstm_ros.cli import main
from xlstm_ros.engines.depth import DepthEstimator
from xlstm_ros.engines.forecaster import StreamingForecaster
from xlstm_ros.models.tirex import load_tirex_checkpoint


def test_train_then_eval_depth(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "depth", "--out-dir", str(out), "--n-frames", "4", "--frame-size", "48x64",
                 "--backbone", "vil_micro", "--features", "16", "--neck-channels", "8,16,32,64",
                 "--crop-size", "32x48", "--batch-size", "2", "--steps", "2", "--warmup-steps", "1",
                 "--log-every", "1", "--threads", "1", "--data-seed", "11"]) == 0
    assert DepthEstimator.from_checkpoint(out / "model.pt", device="cpu").kind == "relative_inverse_depth"
    assert main(["eval", "depth", "--checkpoint", str(out / "model.pt"), "--sets", "synthetic",
                 "--n-synthetic", "2", "--synthetic-size", "48x64", "--cache-dir", str(tmp_path / "cache"),
                 "--device", "cpu", "--out-dir", str(tmp_path / "eval")]) == 0
    result = json.loads((tmp_path / "eval" / "depth_eval.json").read_text())
    assert result["sets"]["synthetic"]["images"] == 2 and "model" in result["sets"]["synthetic"]["scores"]


def test_train_forecaster_writes_a_model_the_engine_streams(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "forecaster", "--out-dir", str(out), "--n-series", "16", "--series-length", "320",
                 "--embedding-dim", "32", "--num-blocks", "1", "--num-heads", "4", "--input-ff-dim", "32",
                 "--train-ctx-len", "256", "--validation-windows", "8", "--steps", "2", "--batch-size", "4",
                 "--warmup-steps", "1", "--log-every", "1", "--eval-every", "2", "--no-compile",
                 "--device", "cpu", "--threads", "1"]) == 0
    engine = StreamingForecaster(load_tirex_checkpoint(out / "model.ckpt"))
    engine.observe("x", np.sin(np.arange(96) / 5.0))
    assert np.isfinite(engine.forecast("x", horizon=32)["x"].median).all()


def test_eval_forecaster_on_a_tiny_subset(tmp_path, capsys):
    checkpoint = write_random_checkpoint(tmp_path)
    assert main(["eval", "forecaster", "--checkpoint", str(checkpoint), "--tasks", "m3_yearly",
                 "--limit-series", "4", "--baselines", "SeasonalNaive", "--out-dir", str(tmp_path / "eval")]) == 0
    result = json.loads((tmp_path / "eval" / "forecast_eval.json").read_text())
    task = result["tasks"][0]
    assert task["name"] == "m3_yearly" and task["items"] == 4
    assert set(task["scores"]) == {"model", "SeasonalNaive"}
    assert "Forecaster evaluation" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "eval"])
def test_help_names_the_command(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "forecaster", "--help"])
    assert f"xlstm-ros {command} forecaster" in capsys.readouterr().out


def test_eval_forecaster_streaming_reports_the_engine_against_full_windows(tmp_path, capsys):
    checkpoint = write_random_checkpoint(tmp_path)
    assert main(["eval", "forecaster", "--checkpoint", str(checkpoint), "--tasks", "co2", "--limit-series", "2",
                 "--baselines", "SeasonalNaive", "--streaming", "--reanchor-every", "4",
                 "--out-dir", str(tmp_path / "eval")]) == 0
    result = json.loads((tmp_path / "eval" / "forecast_streaming.json").read_text())
    assert result["reanchor_every"] == 4 and result["tasks"]["co2"]["origins"] == (2284 - 8 - 2048) // 32 + 1
    assert set(result["distance_by_patches_since_anchor"]) <= {"0", "1", "2", "3"}
    assert "Streaming (reanchor_every 4)" in capsys.readouterr().out
    assert main(["eval", "forecaster", "--checkpoint", str(checkpoint), "--tasks", "m3_yearly", "--limit-series",
                 "1", "--baselines", "SeasonalNaive", "--streaming", "--out-dir", str(tmp_path / "eval2")]) == 2
    assert "--streaming needs at least one sensor task" in capsys.readouterr().err
