"""ViL backbone: official layout and key names, checkpoint loading, runtime grids, mLSTM modes."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from xlstm_ros.models.checkpoints import CheckpointError
from xlstm_ros.models.vil import (MLSTMOptions, ViLBackbone, ViLConfig, load_vil_checkpoint, rename_official_keys,
                                  resize_position_table, vil_config)

SMALL = ViLConfig(dim=32, depth=3, feature_pairs=(0, 2), pos_grid=(4, 4))


def official_vil2_shapes(dim: int, depth: int, pos_grid=(14, 14), classes: int = 1000) -> dict:
    """VisionLSTM2 module keys and shapes of the official checkpoints (legacy_norm and head included)."""
    inner = 2 * dim
    shapes = {"patch_embed.proj.weight": (dim, 3, 16, 16), "patch_embed.proj.bias": (dim,),
              "pos_embed.embed": (1, *pos_grid, dim), "norm.weight": (dim,), "norm.bias": (dim,),
              "legacy_norm.weight": (2 * dim,), "legacy_norm.bias": (2 * dim,),
              "head.weight": (classes, 2 * dim), "head.bias": (classes,)}
    for pair in range(depth):
        for side in ("rowwise_from_top_left", "rowwise_from_bot_right"):
            prefix = f"blocks.{pair}.{side}."
            block = {"norm.weight": (dim,), "norm.bias": (dim,),
                     "layer.proj_up.weight": (2 * inner, dim), "layer.proj_up.bias": (2 * inner,),
                     "layer.conv.weight": (inner, 1, 3, 3), "layer.conv.bias": (inner,),
                     "layer.mlstm_cell.igate.weight": (4, 3 * inner), "layer.mlstm_cell.igate.bias": (4,),
                     "layer.mlstm_cell.fgate.weight": (4, 3 * inner), "layer.mlstm_cell.fgate.bias": (4,),
                     "layer.mlstm_cell.outnorm.weight": (inner,), "layer.mlstm_cell.outnorm.bias": (inner,),
                     "layer.learnable_skip": (inner,),
                     "layer.proj_down.weight": (dim, inner), "layer.proj_down.bias": (dim,)}
            for proj in ("q_proj", "k_proj", "v_proj"):
                block[f"layer.{proj}.weight"] = (inner // 4, 4, 4)
                block[f"layer.{proj}.bias"] = (inner,)
            shapes.update({prefix + key: shape for key, shape in block.items()})
    return shapes


def to_raw_official(state: dict, classes: int = 10) -> dict:
    """Module keys -> the training-codebase naming that the official rename list undoes (plus a classifier)."""
    raw = {}
    for key, tensor in state.items():
        match = re.match(r"blocks\.(\d+)\.rowwise_from_(top_left|bot_right)\.(norm|layer)\.(.*)", key)
        if match:
            flat = 2 * int(match.group(1)) + (match.group(2) == "bot_right")
            part = "xlstm_norm" if match.group(3) == "norm" else "xlstm"
            rest = match.group(4).replace("conv.", "conv1d.") if part == "xlstm" else match.group(4)
            key = f"xlstm.blocks.{flat}.{part}.{rest}"
        elif key.startswith("norm."):
            key = "post_blocks_norm." + key[len("norm."):]
        raw[key] = tensor.clone()
    dim = state["norm.weight"].shape[0]
    raw.update({"head.0.weight": torch.randn(2 * dim), "head.0.bias": torch.randn(2 * dim),
                "head.1.weight": torch.randn(classes, 2 * dim), "head.1.bias": torch.randn(classes)})
    return raw


def randomise(module: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Non-trivial values everywhere, including the zero-initialised norms and gates."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator, dtype=param.dtype))
    return module


def test_vil_tiny_state_dict_is_the_official_layout():
    model = ViLBackbone(vil_config("vil_tiny"))
    ours = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    official = {k: v for k, v in official_vil2_shapes(192, 12).items() if not k.startswith(("head.", "legacy_"))}
    assert ours == official
    assert len(ours) == 509  # 513 official tensors less legacy_norm and head
    assert abs(sum(p.numel() for p in model.parameters()) - 6.01e6) < 0.01e6  # research 1.4: 6.01M backbone


@pytest.mark.parametrize("name, dim", [("vil_small", 384), ("vil_nano", 128)])
def test_other_configs_follow_the_layout(name, dim):
    config = vil_config(name)
    model = ViLBackbone(config)
    ours = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    official = official_vil2_shapes(dim, config.depth)
    assert ours == {k: v for k, v in official.items() if not k.startswith(("head.", "legacy_"))}


def test_rename_list_maps_raw_keys_to_module_keys():
    state = ViLBackbone(SMALL).state_dict()
    renamed = rename_official_keys(to_raw_official(state))
    assert set(renamed) == set(state) | {"legacy_norm.weight", "legacy_norm.bias", "head.weight", "head.bias"}
    assert all(torch.equal(renamed[k], state[k]) for k in state)


def test_raw_official_checkpoint_loads_strictly_and_computes_the_same(tmp_path):
    torch.manual_seed(0)
    source = randomise(ViLBackbone(SMALL)).eval()
    path = tmp_path / "vil2_small_in1k.th"
    torch.save({"state_dict": to_raw_official(source.state_dict()), "epoch": 400}, path)
    loaded = load_vil_checkpoint(path).eval()
    assert loaded.config.dim == 32 and loaded.config.depth == 3 and loaded.config.pos_grid == (4, 4)
    assert loaded.config.feature_pairs == (0, 1, 2)  # spread evenly, the last pair last
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source(images)[-1], loaded(images)[-1])


def test_module_key_checkpoint_loads_into_a_given_backbone_with_resized_positions(tmp_path):
    torch.manual_seed(1)
    source = randomise(ViLBackbone(SMALL))
    path = tmp_path / "vil2.pth"
    torch.save(source.state_dict(), path)  # already renamed, no wrapper dict
    target = ViLBackbone(ViLConfig(dim=32, depth=3, feature_pairs=(0, 2), pos_grid=(3, 5)))
    load_vil_checkpoint(path, target)
    expected = F.interpolate(source.pos_embed.embed.detach().permute(0, 3, 1, 2), size=(3, 5), mode="bicubic")
    assert torch.allclose(target.pos_embed.embed.detach(), expected.permute(0, 2, 3, 1), atol=1e-6)
    key = "blocks.2.rowwise_from_bot_right.layer.q_proj.weight"
    assert torch.equal(target.state_dict()[key], source.state_dict()[key])


def test_missing_key_and_wrong_shape_name_the_file_and_key(tmp_path):
    raw = to_raw_official(ViLBackbone(SMALL).state_dict())
    missing = dict(raw)
    del missing["xlstm.blocks.3.xlstm.mlstm_cell.fgate.bias"]
    torch.save({"state_dict": missing}, tmp_path / "missing.th")
    with pytest.raises(CheckpointError, match=r"missing\.th.*blocks\.1\.rowwise_from_bot_right\.layer\.mlstm_cell"
                                              r"\.fgate\.bias"):
        load_vil_checkpoint(tmp_path / "missing.th", ViLBackbone(SMALL))
    wrong = dict(raw)
    wrong["xlstm.blocks.0.xlstm.conv1d.weight"] = torch.zeros(128, 1, 4)  # a v1 causal conv kernel
    torch.save({"state_dict": wrong}, tmp_path / "wrong.th")
    with pytest.raises(CheckpointError, match=r"wrong\.th.*blocks\.0\.rowwise_from_top_left\.layer\.conv\.weight"):
        load_vil_checkpoint(tmp_path / "wrong.th", ViLBackbone(SMALL))
    torch.save({"state_dict": {"something.else": torch.zeros(1)}}, tmp_path / "alien.th")
    with pytest.raises(CheckpointError, match=r"alien\.th.*patch_embed\.proj\.weight"):
        load_vil_checkpoint(tmp_path / "alien.th")


@pytest.mark.parametrize("height, width", [(32, 80), (80, 32), (48, 48), (16, 16)])
def test_any_grid_including_non_square(height, width):
    model = ViLBackbone(SMALL).eval()
    with torch.no_grad():
        taps = model(torch.randn(2, 3, height, width))
    assert [tuple(t.shape) for t in taps] == [(2, 32, height // 16, width // 16)] * 2
    assert all(torch.isfinite(t).all() for t in taps)


def test_conv_sees_the_runtime_grid_neighbours():
    """One forward sub-block on a 3x5 grid: token (0, 1) sees (0, 2) and (1, 1) through the 3x3 conv and its
    causal past through the mLSTM, but not (0, 3) or (2, 1), which follow it and are not 2-D neighbours."""
    torch.manual_seed(2)
    block = randomise(ViLBackbone(SMALL).blocks[0].rowwise_from_top_left).double()
    options = MLSTMOptions(mode="parallel")
    tokens = torch.randn(1, 15, 32, dtype=torch.float64)
    base = block(tokens, (3, 5), options)[0, 1]

    def changed(index: int) -> bool:
        poked = tokens.clone()
        poked[0, index] += torch.randn(32, dtype=torch.float64)
        return not torch.allclose(block(poked, (3, 5), options)[0, 1], base, atol=1e-12, rtol=0)

    assert changed(0) and changed(2) and changed(6)  # past, right neighbour, neighbour below
    assert not changed(3) and not changed(11)  # later, not adjacent; two rows below


def test_mlstm_modes_agree_inside_the_model_float64():
    torch.manual_seed(3)
    model = randomise(ViLBackbone(SMALL)).double().eval()
    images = torch.randn(2, 3, 48, 80, dtype=torch.float64)  # 15 tokens: chunks of 4 need end padding
    results = {}
    for options in (MLSTMOptions("parallel"), MLSTMOptions("chunkwise", chunk_size=4),
                    MLSTMOptions("chunkwise", chunk_size=64), MLSTMOptions("recurrent")):
        model.mlstm = options
        with torch.no_grad():
            results[options] = model(images)
    reference = results[MLSTMOptions("parallel")]
    for options, taps in results.items():
        for got, want in zip(taps, reference):
            assert torch.allclose(got, want, atol=1e-10, rtol=0), options


def test_mlstm_modes_agree_float32():
    torch.manual_seed(4)
    model = randomise(ViLBackbone(SMALL)).eval()
    images = torch.randn(1, 3, 64, 48)
    outputs = []
    for mode in ("parallel", "chunkwise", "recurrent"):
        model.mlstm = MLSTMOptions(mode, chunk_size=8)
        with torch.no_grad():
            outputs.append(model(images)[-1])
    assert torch.allclose(outputs[1], outputs[0], atol=1e-4)
    assert torch.allclose(outputs[2], outputs[0], atol=1e-4)


def test_pairs_after_the_last_tap_are_not_needed():
    torch.manual_seed(5)
    model = randomise(ViLBackbone(SMALL)).eval()
    short = ViLBackbone(ViLConfig(dim=32, depth=3, feature_pairs=(0,), pos_grid=(4, 4)))
    short.load_state_dict(model.state_dict())
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(images)[0], short(images)[0])


def test_position_table_resize_is_identity_on_its_own_grid():
    table = torch.randn(1, 4, 6, 8)
    assert resize_position_table(table, (4, 6)) is table
    assert resize_position_table(table, (2, 3)).shape == (1, 2, 3, 8)


def test_bad_configs_and_inputs_are_named():
    with pytest.raises(ValueError, match="feature_pairs"):
        ViLConfig(depth=4, feature_pairs=(1, 4))
    with pytest.raises(ValueError, match="feature_pairs"):
        ViLConfig(depth=4, feature_pairs=(2, 1))
    with pytest.raises(ValueError, match="mlstm_mode"):
        MLSTMOptions("quadratic")
    with pytest.raises(ValueError, match="unknown ViL config"):
        vil_config("vil_huge")
    with pytest.raises(ValueError, match="unknown key 'width'"):
        ViLConfig.from_dict({"width": 3})
    model = ViLBackbone(SMALL)
    with pytest.raises(ValueError, match="images.*multiples of the patch size"):
        model(torch.zeros(1, 3, 40, 32))
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\)"):
        model(torch.zeros(1, 4, 32, 32))


@pytest.mark.slow
@pytest.mark.parametrize("height, width", [(224, 224), (192, 320)])
def test_vil_tiny_chunkwise_matches_parallel_at_full_size(height, width):
    torch.manual_seed(6)
    model = randomise(ViLBackbone(vil_config("vil_tiny")), scale=0.05).eval()
    images = torch.randn(1, 3, height, width)
    with torch.no_grad():
        model.mlstm = MLSTMOptions("parallel")
        reference = model(images)
        model.mlstm = MLSTMOptions("chunkwise", chunk_size=64)
        chunked = model(images)
    for got, want in zip(chunked, reference):
        assert got.shape == (1, 192, height // 16, width // 16)
        assert (got - want).abs().max() < 1e-4 * want.abs().max()


TRITON_PROBE = """
import torch
from xlstm_ros.models.vil import MLSTMOptions, ViLBackbone, ViLConfig
torch.manual_seed(0)
model = ViLBackbone(ViLConfig(dim=32, depth=1, feature_pairs=(0,), pos_grid=(2, 2))).eval()
images = torch.randn(1, 3, 32, 48)
outputs = []
for options in (MLSTMOptions("chunkwise", 16, "torch"), MLSTMOptions("chunkwise", 16, "triton"),
                MLSTMOptions("recurrent", 16, "triton")):
    model.mlstm = options
    with torch.no_grad():
        outputs.append(model(images)[0])
print(max((out - outputs[0]).abs().max().item() for out in outputs[1:]))
"""


@pytest.mark.slow
def test_the_model_runs_through_the_triton_kernels_in_the_interpreter():
    """Head dim 16 so every tl.dot dimension is >= 16; a subprocess because triton reads TRITON_INTERPRET
    when the kernels are defined."""
    pytest.importorskip("triton")
    result = subprocess.run([sys.executable, "-c", TRITON_PROBE], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TRITON_INTERPRET": "1"}, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.split()[-1]) < 1e-5
