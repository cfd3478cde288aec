"""ViL + DPT depth model: output shape and range, metric modes, checkpoint round trip, scale-shift fit."""
import pytest
import torch

from xlstm_ros.models.checkpoints import CheckpointError
from xlstm_ros.models.depth import (METRIC, RELATIVE, DepthConfig, DepthModel, fit_scale_shift,
                                    load_depth_checkpoint, save_depth_checkpoint)
from xlstm_ros.models.vil import MLSTMOptions, ViLConfig, load_vil_checkpoint

BACKBONE = ViLConfig(dim=32, depth=4, feature_pairs=(0, 1, 2, 3), pos_grid=(4, 4))
TINY = DepthConfig(backbone=BACKBONE, neck_channels=(8, 16, 32, 32), features=16, input_short_side=64)


def randomise(module: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))
    return module


@pytest.mark.parametrize("height, width", [(48, 80), (64, 32)])
def test_relative_output_at_input_resolution_and_non_negative(height, width):
    model = randomise(DepthModel(TINY)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, height, width))
    assert out.shape == (2, height, width)
    assert torch.isfinite(out).all() and (out >= 0).all() and out.max() > 0
    assert model.output_kind == RELATIVE


@pytest.mark.parametrize("seed", range(3))
def test_a_fresh_relative_model_is_trainable_everywhere(seed):
    torch.manual_seed(seed)
    model = DepthModel(TINY)
    out = model(torch.rand(1, 3, 32, 32))
    assert (out > 0).all()  # no pixel starts in the dead part of the final ReLU
    out.mean().backward()
    assert model.neck.reassemble[0][0].weight.grad.abs().sum() > 0


def test_model_trains_through_the_kernels():
    model = randomise(DepthModel(TINY)).train()
    out = model(torch.rand(1, 3, 32, 48))
    out.mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.backbone.blocks[0].rowwise_from_top_left.layer.q_proj.weight.grad.abs().sum() > 0


def test_scale_head_outputs_metres_below_max_depth():
    config = DepthConfig(backbone=BACKBONE, neck_channels=(8, 16, 32, 32), features=16, output=METRIC,
                         max_depth_m=20.0, input_short_side=64)
    model = randomise(DepthModel(config)).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 32, 32))
    assert model.output_kind == METRIC and config.uses_scale_head
    assert (out > 0).all() and (out < 20.0).all() and out.std() > 0


def test_calibration_maps_relative_inverse_depth_to_metres():
    relative = randomise(DepthModel(TINY)).eval()
    config = DepthConfig(backbone=BACKBONE, neck_channels=(8, 16, 32, 32), features=16, output=METRIC,
                         max_depth_m=50.0, calibration=(2.0, 0.01), input_short_side=64)
    metric = DepthModel(config).eval()
    metric.load_state_dict(relative.state_dict())  # same parameters: calibration adds none
    images = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        p, depth_m = relative(images), metric(images)
    assert torch.allclose(depth_m, 1.0 / (2.0 * p + 0.01).clamp(min=1 / 50.0), rtol=1e-6)
    assert (depth_m <= 50.0 + 1e-4).all()


def test_checkpoint_round_trip_is_exact_and_self_describing(tmp_path):
    config = DepthConfig(backbone=BACKBONE, neck_channels=(8, 16, 32, 32), features=16, output=METRIC,
                         max_depth_m=30.0, calibration=(1.5, 0.02), input_short_side=96)
    model = randomise(DepthModel(config)).eval()
    path = save_depth_checkpoint(model, tmp_path / "depth.pt", meta={"steps": 12, "data": "synthetic"})
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"state_dict", "config", "meta"}
    loaded, meta = load_depth_checkpoint(path, mlstm=MLSTMOptions("parallel"))
    assert loaded.config == config and meta == {"steps": 12, "data": "synthetic"}
    assert loaded.backbone.mlstm.mode == "parallel" and not loaded.training
    images = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(images), model(images), rtol=1e-4, atol=1e-5)
        loaded.backbone.mlstm = model.backbone.mlstm
        assert torch.equal(loaded(images), model(images))


def test_bad_depth_checkpoints_name_file_and_key(tmp_path):
    model = DepthModel(TINY)
    path = save_depth_checkpoint(model, tmp_path / "good.pt")
    payload = torch.load(path, weights_only=True)

    payload["state_dict"]["neck.to_features.2.weight"] = torch.zeros(16, 32, 1, 1)
    torch.save(payload, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"shape\.pt.*neck\.to_features\.2\.weight"):
        load_depth_checkpoint(tmp_path / "shape.pt")

    payload = torch.load(path, weights_only=True)
    payload["config"]["output"] = "depth_in_feet"
    torch.save(payload, tmp_path / "config.pt")
    with pytest.raises(CheckpointError, match=r"config\.pt.*output"):
        load_depth_checkpoint(tmp_path / "config.pt")

    payload = torch.load(path, weights_only=True)
    payload["config"]["backbone"]["dimension"] = 7
    torch.save(payload, tmp_path / "key.pt")
    with pytest.raises(CheckpointError, match=r"key\.pt.*unknown key 'dimension'"):
        load_depth_checkpoint(tmp_path / "key.pt")

    torch.save({"state_dict": payload["state_dict"]}, tmp_path / "noconfig.pt")
    with pytest.raises(CheckpointError, match=r"noconfig\.pt.*config"):
        load_depth_checkpoint(tmp_path / "noconfig.pt")

    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"corrupt\.pt"):
        load_depth_checkpoint(tmp_path / "corrupt.pt")


def test_official_vil_weights_load_into_the_depth_backbone(tmp_path):
    source = randomise(DepthModel(TINY), seed=3)
    torch.save({"state_dict": source.backbone.state_dict()}, tmp_path / "vil.th")
    target = DepthModel(TINY)
    load_vil_checkpoint(tmp_path / "vil.th", target.backbone)
    assert all(torch.equal(a, b) for a, b in zip(target.backbone.state_dict().values(),
                                                  source.backbone.state_dict().values()))


def test_config_validation():
    with pytest.raises(ValueError, match="4 taps"):
        DepthConfig(backbone=ViLConfig(dim=32, depth=2, feature_pairs=(0, 1)))
    with pytest.raises(ValueError, match="calibration"):
        DepthConfig(backbone=BACKBONE, calibration=(1.0, 0.0))  # relative output
    with pytest.raises(ValueError, match="input_short_side"):
        DepthConfig(backbone=BACKBONE, input_short_side=100)
    assert DepthConfig.from_dict(TINY.to_dict()) == TINY


def test_fit_scale_shift_recovers_an_affine_map():
    generator = torch.Generator().manual_seed(0)
    prediction = torch.rand(3, 8, 10, generator=generator, dtype=torch.float64)
    scale = torch.tensor([2.0, 0.5, 3.0], dtype=torch.float64)
    shift = torch.tensor([0.1, -0.2, 1.0], dtype=torch.float64)
    target = scale[:, None, None] * prediction + shift[:, None, None]
    mask = torch.rand(3, 8, 10, generator=generator) > 0.3
    target = torch.where(mask, target, torch.full_like(target, 1e6))  # garbage outside the mask is ignored
    s, b = fit_scale_shift(prediction, target, mask)
    assert torch.allclose(s, scale, atol=1e-10) and torch.allclose(b, shift, atol=1e-10)
    s, b = fit_scale_shift(torch.ones(4, 4), torch.arange(16.0).view(4, 4))
    assert s == 0 and b == pytest.approx(7.5)
