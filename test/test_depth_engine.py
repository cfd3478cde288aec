"""DepthEstimator: preprocessing, aspect handling, mono input, batching, determinism, smoothing, errors."""
import numpy as np
import pytest
import torch

import xlstm_ros.engines.depth as engine_module
from xlstm_ros.engines.depth import DepthEstimator, as_rgb
from xlstm_ros.engines.device import DeviceError
from xlstm_ros.models.checkpoints import CheckpointError
from xlstm_ros.models.depth import METRIC, RELATIVE, DepthConfig, DepthModel, fit_scale_shift, save_depth_checkpoint
from xlstm_ros.models.vil import ViLConfig

TINY = DepthConfig(backbone=ViLConfig(dim=32, depth=4, feature_pairs=(0, 1, 2, 3), pos_grid=(4, 4)),
                   neck_channels=(8, 16, 32, 32), features=16, input_short_side=32)


def tiny_model(config: DepthConfig = TINY, seed: int = 0) -> DepthModel:
    torch.manual_seed(seed)
    model = DepthModel(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return model


def frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth gradient with noise: structure the model responds to."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    base = np.stack([rows / height, cols / width, (rows + cols) / (height + width)], axis=-1) * 200
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def estimator():
    return DepthEstimator(tiny_model(), device="cpu")


def test_network_size_keeps_aspect_with_the_short_side(estimator):
    assert estimator.network_size(480, 640) == (32, 48)  # 32 x 42.7 -> nearest multiple of 16
    assert estimator.network_size(640, 480) == (48, 32)
    assert estimator.network_size(100, 100) == (32, 32)
    wide = DepthEstimator(tiny_model(), device="cpu", short_side=64)
    assert wide.network_size(720, 1280) == (64, 112)
    fixed = DepthEstimator(tiny_model(), device="cpu", input_size=(48, 16))
    assert fixed.network_size(480, 640) == (48, 16)
    with pytest.raises(ValueError, match="aspect ratio"):
        estimator.network_size(10, 1000)


def test_preprocess_resizes_and_scales_to_unit_range(estimator):
    image = frame(96, 128)
    tensor = estimator.preprocess(image)
    assert tensor.shape == (1, 3, 32, 48) and tensor.dtype == torch.float32
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0
    # a uniform image stays uniform at its value / 255
    flat = estimator.preprocess(np.full((64, 96, 3), 51, np.uint8))
    assert torch.allclose(flat, torch.full_like(flat, 0.2), atol=1e-6)
    same = estimator.preprocess(frame(32, 48))  # already the network size: no resampling
    assert torch.equal(same[0].permute(1, 2, 0), torch.from_numpy(frame(32, 48)).float() / 255)


def test_mono_input_is_replicated_to_rgb(estimator):
    mono = frame(64, 80)[:, :, 0]
    rgb = np.repeat(mono[:, :, None], 3, axis=2)
    results = estimator.estimate([mono, mono[:, :, None], rgb])
    assert np.array_equal(results[0].depth, results[2].depth)
    assert np.array_equal(results[1].depth, results[2].depth)


def test_output_at_input_resolution_for_mixed_sizes(estimator):
    images = [frame(60, 90, 1), frame(90, 60, 2), frame(61, 91, 3)]
    results = estimator.estimate(images)
    assert [r.depth.shape for r in results] == [(60, 90), (90, 60), (61, 91)]
    assert [r.network_size for r in results] == [(32, 48), (48, 32), (32, 48)]
    for result in results:
        assert result.depth.dtype == np.float32 and result.kind == RELATIVE
        assert np.isfinite(result.depth).all() and (result.depth >= 0).all()


def test_deterministic_and_batch_independent(estimator):
    a, b = frame(64, 96, 4), frame(64, 96, 5)
    first = estimator.estimate([a, b, a])
    second = estimator.estimate([a])
    assert np.array_equal(first[0].depth, first[2].depth)
    assert np.allclose(first[0].depth, second[0].depth, rtol=1e-5, atol=1e-6)
    assert not np.allclose(first[0].depth, first[1].depth)
    small_batches = DepthEstimator(estimator.model, device="cpu", max_batch=1).estimate([a, b, a])
    assert all(np.allclose(x.depth, y.depth, rtol=1e-5, atol=1e-6) for x, y in zip(first, small_batches))


def test_smoothing_aligns_then_blends_per_camera():
    model = tiny_model(seed=7)
    plain = DepthEstimator(model, device="cpu")
    smooth = DepthEstimator(model, device="cpu", smoothing=0.75, reset_threshold=1e9)
    x, y = frame(32, 48, 8), frame(32, 48, 9)  # network size: resizing is the identity
    px, py = (r.depth for r in plain.estimate([x, y]))

    out = smooth.estimate([x, y, x], cameras=["a", "a", "b"])
    assert np.array_equal(out[0].depth, px)  # first frame of a camera passes through
    assert np.array_equal(out[2].depth, px)  # camera b has its own state
    s, b = fit_scale_shift(torch.from_numpy(py).double(), torch.from_numpy(px).double())
    expected = 0.75 * px + 0.25 * (s.item() * py + b.item())
    assert np.allclose(out[1].depth, np.maximum(expected, 0), rtol=1e-4, atol=1e-5)

    again = smooth.estimate([x], cameras=["a"])[0].depth  # same frame again: aligned back towards x
    assert np.abs(again - px).mean() < np.abs(out[1].depth - px).mean()
    smooth.reset("a")
    assert np.allclose(smooth.estimate([y], cameras=["a"])[0].depth, py, rtol=1e-5, atol=1e-6)


def test_scene_cut_restarts_the_smoothing_state():
    model = tiny_model(seed=7)
    plain = DepthEstimator(model, device="cpu")
    cutting = DepthEstimator(model, device="cpu", smoothing=0.9, reset_threshold=1e-9)
    x, y = frame(32, 48, 8), frame(32, 48, 9)
    assert np.array_equal(cutting.estimate([x, y])[1].depth, plain.estimate([x, y])[1].depth)


def test_metric_smoothing_blends_inverse_depth():
    config = DepthConfig(backbone=TINY.backbone, neck_channels=TINY.neck_channels, features=16, output=METRIC,
                         max_depth_m=20.0, input_short_side=32)
    model = tiny_model(config, seed=3)
    plain = DepthEstimator(model, device="cpu")
    smooth = DepthEstimator(model, device="cpu", smoothing=0.5, reset_threshold=1e9)
    x, y = frame(32, 48, 1), frame(32, 48, 2)
    dx, dy = (r.depth for r in plain.estimate([x, y]))
    out = smooth.estimate([x, y])
    assert out[1].kind == METRIC
    assert np.allclose(out[1].depth, 1.0 / (0.5 / dx + 0.5 / dy), rtol=1e-5)


def test_bad_input_is_named(estimator):
    with pytest.raises(ValueError, match=r"images\[1\].*uint8"):
        estimator.estimate([frame(32, 32), frame(32, 32).astype(np.float32)])
    with pytest.raises(ValueError, match=r"images\[0\].*shape"):
        estimator.estimate([np.zeros((32, 32, 4), np.uint8)])
    with pytest.raises(ValueError, match=r"images\[0\].*empty"):
        estimator.estimate([np.zeros((0, 32, 3), np.uint8)])
    with pytest.raises(ValueError, match=r"images\[0\].*numpy"):
        estimator.estimate([[[0, 1], [2, 3]]])
    with pytest.raises(ValueError, match="cameras"):
        estimator.estimate([frame(32, 32)], cameras=["a", "b"])
    with pytest.raises(ValueError, match="input_size"):
        DepthEstimator(tiny_model(), input_size=(40, 32))
    with pytest.raises(ValueError, match="smoothing"):
        DepthEstimator(tiny_model(), smoothing=1.0)
    with pytest.raises(ValueError, match="mlstm_mode"):
        DepthEstimator(tiny_model(), mlstm_mode="fast")
    assert as_rgb(np.zeros((2, 3), np.uint8)).shape == (2, 3, 3)


def test_bfloat16_on_cpu_matches_float32():
    image = frame(48, 64)
    reference = DepthEstimator(tiny_model(seed=2), device="cpu").estimate([image])[0].depth
    half = DepthEstimator(tiny_model(seed=2), device="cpu", dtype="bfloat16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    depth = half.estimate([image])[0].depth
    assert depth.dtype == np.float32
    assert np.abs(depth - reference).max() < 0.05 * np.abs(reference).mean()


def test_devices_and_dtypes():
    with pytest.raises(DeviceError, match="float16"):
        DepthEstimator(tiny_model(), device="cpu", dtype="float16")
    with pytest.raises(DeviceError, match="dtype"):
        DepthEstimator(tiny_model(), device="cpu", dtype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="cuda"):
            DepthEstimator(tiny_model(), device="cuda")
        messages = []
        fallback = DepthEstimator(tiny_model(), device="cuda", fallback_to_cpu=True, on_fallback=messages.append)
        assert fallback.device.type == "cpu" and "falling back" in messages[0]
        assert fallback.model.backbone.mlstm.backend == "torch"


def test_from_checkpoint_and_missing_default(tmp_path, monkeypatch):
    model = tiny_model(seed=11)
    path = save_depth_checkpoint(model, tmp_path / "depth.pt")
    loaded = DepthEstimator.from_checkpoint(path, device="cpu")
    image = frame(40, 56)
    reference = DepthEstimator(model, device="cpu").estimate([image])[0].depth
    assert np.allclose(loaded.estimate([image])[0].depth, reference, rtol=1e-5, atol=1e-6)

    monkeypatch.setattr(engine_module, "DEFAULT_CHECKPOINT", tmp_path / "absent" / "vil_depth.pt")
    with pytest.raises(CheckpointError, match=r"absent/vil_depth\.pt.*shipped default"):
        DepthEstimator.from_checkpoint(None)
    monkeypatch.setattr(engine_module, "DEFAULT_CHECKPOINT", path)
    assert DepthEstimator.from_checkpoint(None, device="cpu").kind == RELATIVE
