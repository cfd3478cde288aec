"""Depth training: the SSI + gradient loss, augmentation, schedule, and tiny real runs that learn and resume."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xlstm_ros.engines.depth import DepthEstimator
from xlstm_ros.models.checkpoints import CheckpointError, load_checkpoint
from xlstm_ros.models.depth import DepthModel, load_depth_checkpoint, save_depth_checkpoint
from xlstm_ros.options import add_config_arguments, config_from_args
from xlstm_ros.train.depth_train import MODEL_FILE, DepthTrainConfig, FrameBank, depth_loss, load_initial_weights, \
    random_crops, spread_taps, train_depth
from xlstm_ros.train.runtime import CURVE_NAME, LOG_NAME, STATE_NAME
from xlstm_ros.sim.scenes import render_dataset

FRAME_SIZE = (48, 64)
N_FRAMES = 8


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory):
    """A handful of tiny rendered frames shared by the runs of this module."""
    return render_dataset(tmp_path_factory.mktemp("scenes") / "train", N_FRAMES, 3, FRAME_SIZE)


def tiny_config(out_dir, scenes_dir, **overrides) -> DepthTrainConfig:
    values = dict(out_dir=str(out_dir), data_dir=str(scenes_dir), n_frames=N_FRAMES, data_seed=3,
                  frame_size=FRAME_SIZE, backbone="vil_micro", dim=None, features=16, neck_channels=(8, 16, 32, 64),
                  guide_channels=0,
                  crop_size=(32, 48), batch_size=4, steps=6, warmup_steps=2, lr=2e-3, checkpoint_every=3,
                  log_every=1, threads=1, seed=5)
    values.update(overrides)
    return DepthTrainConfig(**values)


# ---------------------------------------------------------------------------------------------------------
# Loss


def random_maps(seed: int, batch: int = 2, size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(batch, size, size, generator=generator, dtype=torch.float64) + 0.05
    target[:, :2] = 0.0                                   # a strip of sky (zero disparity)
    prediction = target + 0.3 * torch.rand(batch, size, size, generator=generator, dtype=torch.float64)
    return prediction, target


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e3), shift=st.floats(-50.0, 50.0))
def test_loss_is_invariant_to_positive_scale_and_any_shift_of_the_prediction(seed, scale, shift):
    prediction, target = random_maps(seed)
    base = depth_loss(prediction, target)
    moved = depth_loss(scale * prediction + shift, target)
    assert moved.ssi == pytest.approx(base.ssi, rel=1e-6, abs=1e-12)
    assert moved.gradient == pytest.approx(base.gradient, rel=1e-6, abs=1e-12)
    assert float(moved.loss) == pytest.approx(float(base.loss), rel=1e-6, abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(1e-2, 1e2), shift=st.floats(-5.0, 5.0))
def test_loss_is_invariant_to_scale_and_shift_of_the_target(seed, scale, shift):
    prediction, target = random_maps(seed)
    assert float(depth_loss(prediction, scale * target + shift).loss) == pytest.approx(
        float(depth_loss(prediction, target).loss), rel=1e-6)


def test_loss_is_zero_for_an_affine_copy_of_the_target_and_higher_for_an_inverted_one():
    _, target = random_maps(1)
    assert float(depth_loss(3.0 * target + 1.0, target).loss) < 1e-12
    good = float(depth_loss(target + 0.1 * torch.rand_like(target), target).loss)
    assert float(depth_loss(-target + 0.1 * torch.rand_like(target), target).loss) > 2 * good


def test_loss_masks_pixels_drops_unusable_images_and_has_gradients():
    prediction, target = random_maps(2, batch=3)
    target[2] = 0.7                                         # no spread: cannot be aligned, dropped
    mask = torch.ones_like(target, dtype=torch.bool)
    mask[0, 5:, 5:] = False
    garbage = target.clone()
    garbage[0, 5:, 5:] = 1e6                                # masked pixels do not count
    prediction.requires_grad_(True)
    parts = depth_loss(prediction, garbage, mask)
    assert parts.dropped == 1
    assert float(parts.loss.detach()) == pytest.approx(float(depth_loss(prediction, target, mask).loss.detach()))
    parts.loss.backward()
    assert torch.isfinite(prediction.grad).all() and prediction.grad[0].abs().sum() > 0
    assert prediction.grad[2].abs().sum() == 0
    with pytest.raises(ValueError, match="must both be"):
        depth_loss(prediction[0], target)


# ---------------------------------------------------------------------------------------------------------
# Config, data


def test_config_validation_names_the_field_and_taps_spread_over_the_pairs():
    with pytest.raises(ValueError, match="batch_size"):
        DepthTrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="backbone"):
        DepthTrainConfig(backbone="vit_huge")
    with pytest.raises(ValueError, match="crop_size"):
        DepthTrainConfig(crop_size=(100, 160)).model_config()
    assert spread_taps(12) == (2, 5, 8, 11) and spread_taps(8) == (1, 3, 5, 7) and spread_taps(4) == (0, 1, 2, 3)
    config = DepthTrainConfig(pairs=6, dim=96, crop_size=(96, 128)).model_config()
    assert (config.backbone.depth, config.backbone.dim, config.backbone.feature_pairs) == (6, 96, (1, 2, 3, 5))
    assert config.backbone.pos_grid == (6, 8) and config.input_short_side == 96


def test_command_line_options_build_the_config():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, DepthTrainConfig)
    config = config_from_args(DepthTrainConfig, parser.parse_args(["--crop-size", "96x128", "--feature-pairs", "0,1,2,3",
                                                 "--backbone", "vil_micro", "--no-resume", "--threads", "1"]))
    assert config == DepthTrainConfig(crop_size=(96, 128), feature_pairs=(0, 1, 2, 3), backbone="vil_micro",
                                      resume=False, threads=1)
    with pytest.raises(SystemExit):
        parser.parse_args(["--crop-size", "96-128"])


def test_frame_bank_and_random_crops(scenes_dir):
    bank = FrameBank(scenes_dir)
    assert len(bank) == N_FRAMES and bank.rgb.shape == (N_FRAMES, *FRAME_SIZE, 3)
    assert (bank.disparity == 0).any() and (bank.disparity > 0).any()   # sky and geometry
    generator = torch.Generator().manual_seed(0)
    images, targets = random_crops(bank.rgb[:4], bank.disparity[:4], (32, 48), 0.6, generator)
    assert images.shape == (4, 3, 32, 48) and targets.shape == (4, 32, 48)
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    # nearest resampling: every target value is one of the frame's values
    frame_values = set(np.unique(bank.disparity[:4].astype(np.float32)).tolist())
    assert set(np.unique(targets.numpy()).tolist()) <= frame_values
    again = random_crops(bank.rgb[:4], bank.disparity[:4], (32, 48), 0.6, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], images) and torch.equal(again[1], targets)


# ---------------------------------------------------------------------------------------------------------
# Real runs


def frames_loss(model: DepthModel, bank: FrameBank) -> float:
    """Loss of `model` on every frame, resized whole to the training size (no augmentation)."""
    images = torch.from_numpy(bank.rgb).permute(0, 3, 1, 2).float() / 255
    images = torch.nn.functional.interpolate(images, size=(32, 48), mode="bilinear", antialias=True)
    targets = torch.nn.functional.interpolate(torch.from_numpy(bank.disparity.astype(np.float32))[:, None],
                                              size=(32, 48), mode="nearest-exact")[:, 0]
    with torch.no_grad():
        return float(depth_loss(model.eval()(images), targets).loss)


def test_tiny_run_lowers_the_loss_and_writes_loadable_checkpoints_and_logs(tmp_path, scenes_dir):
    config = tiny_config(tmp_path / "run", scenes_dir, steps=16, checkpoint_every=8, min_crop_scale=1.0)
    summary = train_depth(config)
    bank = FrameBank(scenes_dir)
    torch.manual_seed(config.seed)
    fresh = DepthModel(config.model_config())
    trained, meta = load_depth_checkpoint(summary.model_path)
    assert frames_loss(trained, bank) < 0.8 * frames_loss(fresh, bank)
    assert meta["step"] == 16 and meta["finished"] and meta["train_config"]["lr"] == config.lr
    assert summary.model_path == tmp_path / "run" / MODEL_FILE.name
    assert summary.state_path == tmp_path / "run" / STATE_NAME

    estimator = DepthEstimator.from_checkpoint(summary.model_path, device="cpu")
    (result,) = estimator.estimate([bank.rgb[0]])
    assert result.depth.shape == FRAME_SIZE and np.isfinite(result.depth).all()
    log = json.loads((tmp_path / "run" / LOG_NAME).read_text())
    assert log["finished"] and [entry["step"] for entry in log["history"]] == list(range(1, 17))
    assert (tmp_path / "run" / CURVE_NAME).stat().st_size > 1000
    assert os.path.getsize(summary.model_path) < os.path.getsize(summary.state_path)  # no optimizer state


def test_warm_start_adds_the_image_guide_without_changing_the_predictions(tmp_path, scenes_dir):
    plain = tiny_config(tmp_path / "plain", scenes_dir, crop_size=(32, 32))
    torch.manual_seed(0)
    source = DepthModel(plain.model_config())
    path = save_depth_checkpoint(source, tmp_path / "plain.pt")
    guided = DepthModel(tiny_config(tmp_path / "guided", scenes_dir, guide_channels=4).model_config())  # other grid too
    load_initial_weights(guided, path)
    images = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(guided.eval()(images), source.eval()(images), atol=1e-5, rtol=1e-5)
    wider = DepthModel(tiny_config(tmp_path / "wider", scenes_dir, features=8).model_config())
    with pytest.raises(CheckpointError, match="init checkpoint has features=16, the run trains features=8"):
        load_initial_weights(wider, path)
    summary = train_depth(tiny_config(tmp_path / "run", scenes_dir, init_checkpoint=str(path), guide_channels=4,
                                      steps=2))
    assert load_depth_checkpoint(summary.model_path)[0].config.guide_channels == 4


class Interrupted(Exception):
    pass


def test_interrupted_run_resumes_exactly_like_an_uninterrupted_one(tmp_path, scenes_dir):
    straight = train_depth(tiny_config(tmp_path / "straight", scenes_dir))

    def crash_after_four(step, _terms):
        if step == 4:
            raise Interrupted

    config = tiny_config(tmp_path / "resumed", scenes_dir)
    with pytest.raises(Interrupted):
        train_depth(config, on_step=crash_after_four)
    saved = load_checkpoint(tmp_path / "resumed" / STATE_NAME)
    assert saved["step"] == 3                   # the last checkpoint before the crash
    assert not load_depth_checkpoint(tmp_path / "resumed" / MODEL_FILE.name)[1]["finished"]
    resumed = train_depth(config)

    expected, got = load_checkpoint(straight.state_path), load_checkpoint(resumed.state_path)
    assert got["step"] == 6
    expected_weights = load_checkpoint(straight.model_path)["state_dict"]
    got_weights = load_checkpoint(resumed.model_path)["state_dict"]
    for key, tensor in expected_weights.items():
        assert torch.equal(got_weights[key], tensor), key
    expected_opt, got_opt = expected["optimizer"]["state"], got["optimizer"]["state"]
    assert expected_opt.keys() == got_opt.keys()
    for index, state in expected_opt.items():
        assert float(got_opt[index]["step"]) == float(state["step"]) == 6.0
        assert torch.equal(got_opt[index]["exp_avg"], state["exp_avg"])
        assert torch.equal(got_opt[index]["exp_avg_sq"], state["exp_avg_sq"])
    losses = [entry["loss"] for entry in expected["history"]]
    assert [entry["loss"] for entry in got["history"]] == losses


def test_camera_effects_change_what_the_model_sees_and_are_drawn_from_the_step(tmp_path, scenes_dir, monkeypatch):
    from xlstm_ros.train import depth_train

    seen = []
    original = depth_train.random_crops

    def spy(rgb, *args):
        seen.append(rgb.copy())
        return original(rgb, *args)

    monkeypatch.setattr(depth_train, "random_crops", spy)
    train_depth(tiny_config(tmp_path / "plain", scenes_dir, steps=2, camera_effects=False))
    train_depth(tiny_config(tmp_path / "effects", scenes_dir, steps=2))
    train_depth(tiny_config(tmp_path / "again", scenes_dir, steps=2))
    plain, effects, again = seen[0:2], seen[2:4], seen[4:6]
    rendered = {frame.tobytes() for frame in FrameBank(scenes_dir).rgb}
    assert all(frame.tobytes() in rendered for frames in plain for frame in frames)   # the rendered frames
    assert all(frames.dtype == np.uint8 and frames.shape == (4, *FRAME_SIZE, 3) for frames in effects)
    assert not any(np.array_equal(a, b) for a, b in zip(plain, effects))      # the effects changed the pixels
    assert all(np.array_equal(a, b) for a, b in zip(effects, again))          # and repeat for the same steps


def test_resume_refuses_a_changed_setting(tmp_path, scenes_dir):
    train_depth(tiny_config(tmp_path / "run", scenes_dir, steps=2, checkpoint_every=2))
    with pytest.raises(CheckpointError, match="lr="):
        train_depth(tiny_config(tmp_path / "run", scenes_dir, steps=2, checkpoint_every=2, lr=1e-4))


@pytest.mark.slow
def test_torchrun_two_processes_on_gloo_train_and_write_one_checkpoint(tmp_path, scenes_dir):
    config = tiny_config(tmp_path / "ddp", scenes_dir, steps=4, checkpoint_every=2, batch_size=2)
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "xlstm_ros.train.depth_train", "--device", "cpu"]
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in ("device", "resume") or value is None:
            continue
        if isinstance(value, tuple):
            value = ("x" if field.name.endswith("size") else ",").join(str(v) for v in value)
        args += [f"--{field.name.replace('_', '-')}", str(value)]
    completed = subprocess.run(args, capture_output=True, text=True, timeout=300,
                               cwd=os.path.dirname(os.path.dirname(__file__)))
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    saved = load_checkpoint(tmp_path / "ddp" / STATE_NAME)
    assert saved["step"] == 4 and len(saved["rng"]) == 2
    assert DepthEstimator.from_checkpoint(tmp_path / "ddp" / MODEL_FILE.name, device="cpu").kind
