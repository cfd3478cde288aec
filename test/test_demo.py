"""The demo, shortened to a few seconds of flight, through the real node processes and a real bag."""
import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from support_depth import write_random_depth_checkpoint
from support_tirex import write_random_checkpoint

from xlstm_ros import cli
from xlstm_ros.demo.run import DemoOptions, run_demo
from xlstm_ros.engines.depth import DEFAULT_CHECKPOINT
from xlstm_ros.graph.bags import read_messages
from xlstm_ros.models.depth import load_depth_checkpoint
from xlstm_ros.nodes.image_conv import image_to_numpy
from xlstm_ros.train.depth_train import FrameBank, depth_loss

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Small models with random weights: the demo's plumbing does not depend on what they learned."""
    directory = tmp_path_factory.mktemp("models")
    return write_random_depth_checkpoint(directory, input_short_side=64), write_random_checkpoint(directory)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, checkpoints):
    """One short demo run: its output folder and summary."""
    depth_checkpoint, forecaster_checkpoint = checkpoints
    out = tmp_path_factory.mktemp("demo")
    summary = run_demo(DemoOptions(out_dir=out, duration_s=7.0, fps=4.0, width=160, height=120, seed=3,
                                   depth_checkpoint=depth_checkpoint, forecaster_checkpoint=forecaster_checkpoint))
    return out, summary


def test_short_demo_records_depth_and_forecasts_and_draws_pictures(demo):
    out, summary = demo

    messages = list(read_messages(out / "flight_bag"))
    topics = {topic for topic, _, _ in messages}
    assert {"/camera/image_raw", "/camera/depth_gt", "/depth", "/points", "/battery_state", "/imu",
            "/altitude", "/motor_temperature", "/diagnostics"} <= topics
    depth_maps = [image_to_numpy(m) for t, _, m in messages if t == "/depth"]
    assert len(depth_maps) >= 10
    assert all(d.shape == (120, 160) and np.isfinite(d).all() and (d >= 0).all() for d in depth_maps)
    forecasts = [m for t, _, m in messages if t.startswith("/forecast/")]
    assert {f.channel for f in forecasts} == {"battery_voltage", "accel_z", "baro_altitude", "motor_temperature"}
    for forecast in forecasts:
        quantiles = np.asarray(forecast.quantiles).reshape(forecast.horizon, 9)
        assert forecast.horizon == 64 and np.isfinite(quantiles).all()
    battery = [f for f in forecasts if f.channel == "battery_voltage"]
    assert all(10.0 < f.median[0] < 20.0 for f in battery)  # volts: the model works in the data's units

    assert summary["depth"]["frames_published"] == 29
    assert 10 <= summary["depth"]["frames_processed"] <= 29
    assert summary["depth"]["latency_ms"]["p50"] > 0
    assert summary["forecasts"]["battery_voltage"]["scored_steps"] > 0
    assert json.loads((out / "summary.json").read_text()) == summary

    for name in ("depth.png", "forecasts.png"):
        picture = cv2.imread(str(out / name))
        assert picture is not None and picture.std() > 10, name  # drawn, not blank
    gif = PILImage.open(out / "flight.gif")
    assert gif.n_frames >= 5 and np.asarray(gif.convert("RGB")).std() > 10


def bag_frame_loss(model, frames_dir):
    """The training loss of `model` on every frame of a frame folder, each resized whole to 96x128."""
    bank = FrameBank(frames_dir)
    images = F.interpolate(torch.from_numpy(bank.rgb).permute(0, 3, 1, 2).float() / 255, size=(96, 128),
                           mode="bilinear", antialias=True)
    disparity = F.interpolate(torch.from_numpy(bank.disparity.astype(np.float32))[:, None], size=(96, 128),
                              mode="nearest-exact")[:, 0]
    with torch.no_grad():
        return depth_loss(model.eval()(images), disparity.nan_to_num(0.0), disparity.isfinite()).loss.item()


def test_depth_model_fine_tunes_on_the_demo_bag(demo, tmp_path):
    """`xlstm-ros train depth --bag` on the simulator's camera and ground-truth depth: the loss on them falls."""
    out, _ = demo
    run = tmp_path / "fine_tune"
    assert cli.main(["train", "depth", "--bag", str(out / "flight_bag"), "--image-topic", "/camera/image_raw",
                     "--depth-topic", "/camera/depth_gt", "--out-dir", str(run), "--crop-size", "96x128", "--min-crop-scale", "1",
                     "--steps", "40", "--batch-size", "4", "--lr", "3e-4", "--warmup-steps", "0", "--threads", "1",
                     "--checkpoint-every", "40", "--log-every", "10"]) == 0
    frames = run / "bag_frames"
    assert len(FrameBank(frames)) >= 20
    shipped, _ = load_depth_checkpoint(DEFAULT_CHECKPOINT)
    tuned, meta = load_depth_checkpoint(run / "model.pt")
    assert meta["train_config"]["frames"] == str(frames) and tuned.config.guide_channels > 0
    before, after = bag_frame_loss(shipped, frames), bag_frame_loss(tuned, frames)
    assert after < 0.8 * before, (before, after)
