"""Our TiRex on its own: config, scaler, tokenizer, token-level passes, rollout modes, checkpoint I/O."""
import math

import numpy as np
import pytest
import torch

from support_tirex import SMALL_CONFIG, random_tirex, randomize_tirex_parameters, write_random_checkpoint
from support_tirex import single_thread  # noqa: F401 (autouse fixture: one torch thread)
from xlstm_ros.kernels import slstm_step, slstm_zero_state
from xlstm_ros.models.checkpoints import CheckpointError, save_checkpoint
from xlstm_ros.models.slstm import MIN_GEMM_ROWS, R_from_tirex, batch_invariant, bias_from_tirex
from xlstm_ros.models.tirex_packed import STEP_WEIGHTS, PackedTiRex
from xlstm_ros.models.tirex import (TiRex, TiRexConfig, context_batch, fit_window, load_tirex_checkpoint,
                                    save_tirex_checkpoint, standardize, tokenize, window_stats)

NAN = float("nan")


@pytest.fixture(scope="module")
def model():
    return random_tirex(seed=11)


def random_walks(batch, length, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, generator=generator).cumsum(-1)


@pytest.mark.parametrize("width,factor", [(512, 2.6667), (192, 2.6667), (192, 3.0), (64, 1.3), (100, 2.0)])
def test_ffn_width_is_rounded_exactly_as_tirex_ts_rounds_it(width, factor):
    from tirex.util import round_up_to_next_multiple_of
    config = TiRexConfig(embedding_dim=width, num_heads=1, ffn_proj_factor=factor)
    assert config.ffn_dim == round_up_to_next_multiple_of(width * factor, 64)


def test_released_architecture_has_the_official_keys_shapes_and_size():
    config = TiRexConfig()
    assert (config.ffn_dim, config.head_dim, config.context_tokens) == (1408, 128, 64)
    state = TiRex(config).state_dict()
    assert len(state) == 157
    assert sum(tensor.numel() for tensor in state.values()) == 35_291_200
    assert state["blocks.11.slstm_layer.slstm_cell._recurrent_kernel_"].shape == (4, 128, 512)
    assert state["blocks.0.slstm_layer.slstm_cell._bias_"].shape == (2048,)
    assert state["blocks.0.slstm_layer.fgate.weight"].shape == (4, 128, 128)
    assert state["output_patch_embedding.output_layer.weight"].shape == (288, 2048)
    assert state["input_patch_embedding.hidden_layer.weight"].shape == (2048, 64)


def test_hyper_parameters_round_trip_and_errors_name_the_key(tmp_path):
    hyper = SMALL_CONFIG.to_hyper_parameters()
    assert TiRexConfig.from_hyper_parameters(hyper) == SMALL_CONFIG
    del hyper["model_config"]["block_kwargs"]["ffn_proj_factor"]  # the released file does not store it
    assert TiRexConfig.from_hyper_parameters(hyper).ffn_dim == SMALL_CONFIG.ffn_dim
    del hyper["model_config"]["block_kwargs"]["num_heads"]
    with pytest.raises(CheckpointError, match=r"my\.ckpt.*model_config\.block_kwargs\.num_heads"):
        TiRexConfig.from_hyper_parameters(hyper, "my.ckpt")
    with pytest.raises(CheckpointError, match="patch"):
        TiRexConfig.from_hyper_parameters({**hyper, "model_config": {**hyper["model_config"],
                                                                     "output_patch_size": 16}}, "x")
    with pytest.raises(ValueError, match="num_heads"):
        TiRexConfig(embedding_dim=130, num_heads=4)
    with pytest.raises(ValueError, match="quantiles"):
        TiRexConfig(quantiles=(0.1, 0.9))


def test_window_stats_follow_the_official_rules():
    window = torch.tensor([[1.0, NAN, 3.0, 8.0],        # NaN-aware mean and population std
                           [NAN, NAN, NAN, NAN],        # nothing observed: (0, 1)
                           [2.5, 2.5, NAN, 2.5],        # constant: scale = |loc| + 1e-5
                           [0.0, 0.0, 0.0, 0.0]])       # constant zero: scale = 1e-5
    stats = window_stats(window)
    observed = np.array([1.0, 3.0, 8.0])
    assert stats.loc[0, 0].item() == pytest.approx(observed.mean(), rel=1e-6)
    assert stats.scale[0, 0].item() == pytest.approx(observed.std(), rel=1e-6)
    assert (stats.loc[1, 0].item(), stats.scale[1, 0].item()) == (0.0, 1.0)
    assert stats.scale[2, 0].item() == pytest.approx(2.5 + 1e-5, rel=1e-7)
    assert stats.scale[3, 0].item() == pytest.approx(1e-5)
    scaled = standardize(window, stats)
    assert torch.isnan(scaled[0, 1]) and scaled[2, 0].item() == 0.0


def test_tokens_are_values_then_mask_with_missing_values_zero():
    scaled = torch.tensor([[0.5, NAN, -1.0, 2.0, NAN, NAN]])
    tokens = tokenize(scaled, patch_size=3)
    assert tokens.shape == (1, 2, 6)
    assert tokens[0, 0].tolist() == [0.5, 0.0, -1.0, 1.0, 0.0, 1.0]
    assert tokens[0, 1].tolist() == [2.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="multiple of patch_size"):
        tokenize(scaled, patch_size=4)


def test_context_windowing_and_conversion():
    context = torch.arange(5.0)[None]
    assert fit_window(context, 3).tolist() == [[2.0, 3.0, 4.0]]
    padded = fit_window(context, 7)
    assert torch.isnan(padded[0, :2]).all() and padded[0, 2:].tolist() == [0, 1, 2, 3, 4]
    ragged = context_batch([np.array([1.0, 2.0, 3.0]), [4.0], torch.tensor([5.0, 6.0])])
    assert ragged.shape == (3, 3) and ragged.dtype == torch.float32
    assert ragged[1, 2].item() == 4.0 and torch.isnan(ragged[1, :2]).all()
    assert context_batch([1.0, 2.0]).shape == (1, 2)
    with pytest.raises(ValueError, match="series 1 contains infinite"):
        context_batch(torch.tensor([[1.0, 2.0], [1.0, math.inf]]))
    with pytest.raises(ValueError, match="shape"):
        context_batch(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="context"):
        context_batch("abc")


def test_batch_invariant_rows_match_a_large_product():
    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(384, 128)
    x = torch.randn(64, 384, generator=generator)
    full = linear(x)
    for rows in (1, 3, MIN_GEMM_ROWS - 1):
        assert torch.equal(batch_invariant(linear, x[:rows]), full[:rows])
    assert batch_invariant(linear, x[:2].view(2, 1, 384)).shape == (2, 1, 128)


def test_tirex_layout_converters():
    g = torch.Generator().manual_seed(5)
    heads, dim = 2, 3
    kernel = torch.randn(heads, dim, 4 * dim, generator=g, dtype=torch.float64)
    flat_bias = torch.randn(heads * 4 * dim, generator=g, dtype=torch.float64)
    h = torch.randn(heads * dim, generator=g, dtype=torch.float64)
    R, bias = R_from_tirex(kernel), bias_from_tirex(flat_bias, heads)
    for gate in range(4):
        for k in range(heads):
            for o in range(dim):  # TiRex: r_g[k*DH+o] = sum_d h[k*DH+d] kernel[k, d, g*DH+o]; b[k*4*DH+g*DH+o]
                tirex_r = sum(h[k * dim + d] * kernel[k, d, gate * dim + o] for d in range(dim))
                assert torch.isclose(h[k * dim:(k + 1) * dim] @ R[k, gate, :, o], tirex_r, rtol=1e-14)
                assert bias[gate, k, o] == flat_bias[k * 4 * dim + gate * dim + o]
    with pytest.raises(ValueError, match="kernel"):
        R_from_tirex(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="bias"):
        bias_from_tirex(torch.zeros(10), 2)


def test_layout_conversions_always_give_the_current_weights():
    """The converted layouts are views of the stored weights, never copies: an in-place write (an optimiser
    step, load_state_dict), new data behind the tensor (.to()) or recording gradients all see the current
    weights, with nothing to invalidate."""
    kernel = torch.randn(2, 3, 12)
    wx = torch.randn(1, 4, 2, 3)
    state = slstm_zero_state(1, 2, 3)
    slstm_step(wx, R_from_tirex(torch.randn(2, 3, 12)), torch.zeros(4, 2, 3), state)  # h != 0: R matters
    with torch.inference_mode():
        first = R_from_tirex(kernel)
        assert first.data_ptr() == kernel.data_ptr()
        first_values = first.clone()
        h_before = slstm_step(wx, first, torch.zeros(4, 2, 3), state.clone(), precision="bf16-compatible")
        assert torch.equal(h_before, slstm_step(wx, R_from_tirex(kernel), torch.zeros(4, 2, 3), state.clone(),
                                                precision="bf16-compatible"))
    kernel.mul_(2.0)  # an in-place update, as an optimiser or load_state_dict does
    with torch.no_grad():
        second = R_from_tirex(kernel)
        assert torch.equal(second, 2.0 * first_values)
        h_after = slstm_step(wx, second, torch.zeros(4, 2, 3), state.clone(), precision="bf16-compatible")
        assert not torch.equal(h_after, h_before)
        kernel.data = torch.randn(2, 3, 12)  # new data behind the same tensor
        assert torch.equal(R_from_tirex(kernel), kernel.reshape(2, 3, 4, 3).permute(0, 2, 1, 3))
    weights = kernel.clone().requires_grad_()
    R_from_tirex(weights).sum().backward()  # recorded for autograd
    assert weights.grad is not None and torch.equal(weights.grad, torch.ones_like(weights))


def test_training_reaches_the_official_parameters_and_inference_sees_the_update():
    """A training step moves `_recurrent_kernel_` and `_bias_` of every block; inference afterwards uses
    the new weights, and load_state_dict brings the old ones back bitwise."""
    model = random_tirex(seed=3)
    saved = {key: value.clone() for key, value in model.state_dict().items()}
    tokens = tokenize(standardize(random_walks(2, 320), window_stats(random_walks(2, 320))), 32)
    with torch.no_grad():
        before = model(tokens)
    model.train()
    model(tokens).square().mean().backward()
    cells = [block.slstm_layer.slstm_cell for block in model.blocks]
    for cell in cells:
        assert cell._recurrent_kernel_.grad.abs().sum() > 0 and cell._bias_.grad.abs().sum() > 0
    torch.optim.SGD([p for cell in cells for p in (cell._recurrent_kernel_, cell._bias_)], lr=0.1).step()
    model.eval()
    with torch.no_grad():
        assert not torch.equal(model(tokens), before)
        model.load_state_dict(saved)
        assert torch.equal(model(tokens), before)


@pytest.mark.parametrize("weights, bound", [("fp32", 1e-5), ("bf16", 2e-2)])
def test_packed_step_path_computes_the_same_network(model, weights, bound):
    """PackedTiRex (fused, unpadded products) equals TiRex with precision fp32 to float32 rounding, and with
    bfloat16 weights to their rounding: token steps on buffer rows in place, and passes from a state."""
    model.precision = "fp32"
    try:
        packed = PackedTiRex(model, weights)
        tokens = tokenize(standardize(random_walks(3, 256), window_stats(random_walks(3, 256))), 32)
        with torch.no_grad():
            full, full_state = model.forward_tokens(tokens)
            _, state = model.forward_tokens(tokens[:, :5])

            def close(mine, reference):
                return (mine - reference).abs().max() <= bound * reference.abs().max()

            mine, mine_state = packed.forward_tokens(tokens[:, 5:], state, keep=1)
            reference, reference_state = model.forward_tokens(tokens[:, 5:], state, keep=1)
            assert close(mine, reference) and all(close(a, b) for a, b in zip(mine_state.blocks,
                                                                              reference_state.blocks))
            assert close(packed.rollout(full[:, -1], full_state, 3), model.rollout(full[:, -1], full_state, 3))
            buffer = model.zero_state(5)
            rows = torch.tensor([4, 1, 2])
            for t in range(tokens.shape[1]):
                assert close(packed.step_tokens(tokens[:, t], buffer, rows), full[:, t])
            assert all(close(mine[:, rows], reference) for mine, reference in zip(buffer.blocks, full_state.blocks))
            assert not buffer.blocks[0][:, [0, 3]].any()
    finally:
        model.precision = "bf16-compatible"
    assert set(STEP_WEIGHTS) == {"fp32", "bf16"}
    with pytest.raises(ValueError, match="step weights must be one of fp32, bf16, got 'int4'"):
        PackedTiRex(model, "int4")


@pytest.mark.parametrize("precision", ["bf16-compatible", "fp32"])
def test_streaming_passes_equal_one_pass_bitwise(model, precision):
    """A pass split in two, or token steps on a persistent buffer with rows, equals one pass exactly."""
    model.precision = precision
    try:
        tokens = tokenize(standardize(random_walks(3, 320), window_stats(random_walks(3, 320))), 32)
        tokens[1, 2, :] = 0.0  # a fully missing token
        with torch.no_grad():
            full, full_state = model.forward_tokens(tokens)
            head, state = model.forward_tokens(tokens[:, :6])
            tail, split_state = model.forward_tokens(tokens[:, 6:], state)
            assert torch.equal(torch.cat((head, tail), 1), full)
            for mine, reference in zip(split_state.blocks, full_state.blocks):
                assert torch.equal(mine, reference)
            # persistent buffer of 5 streams: streams 0, 3, 4 step (in a scrambled row order), 1 and 2 stay zero
            buffer = model.zero_state(5)
            rows = torch.tensor([3, 0, 4])
            order = torch.tensor([1, 0, 2])
            for t in range(tokens.shape[1]):
                out = model.step_tokens(tokens[order, t], buffer, rows)
                assert torch.equal(out, full[order, t])
            for mine, reference in zip(buffer.blocks, full_state.blocks):
                assert torch.equal(mine[:, rows], reference[:, order])
                assert not mine[:, [1, 2]].any()
    finally:
        model.precision = "bf16-compatible"


def test_forecast_shapes_modes_and_batch_invariance(model):
    context = random_walks(3, 1000, seed=2)
    context[0, 100:300] = NAN
    default = model.forecast(context, 100)
    single = model.forecast(context, 100, max_accelerated_rollout_steps=None)
    assert default.quantiles.shape == (3, 100, 9) and default.median.shape == (3, 100)
    assert torch.equal(default.median, default.quantiles[..., 4])
    assert torch.isfinite(default.quantiles).all()
    assert torch.equal(default.quantiles[:, :32], single.quantiles[:, :32])  # the first patch is shared
    assert not torch.equal(default.quantiles[:, 32:], single.quantiles[:, 32:])  # later ones re-window
    assert torch.equal(model.forecast(context, 100, max_accelerated_rollout_steps=4).quantiles, single.quantiles)
    alone = model.forecast(context[1], 100)
    assert torch.equal(alone.quantiles[0], default.quantiles[1])
    assert model.forecast(context, 1).quantiles.shape == (3, 1, 9)
    assert model.forecast(context).quantiles.shape == (3, 32, 9)


def test_forecast_is_equivariant_to_level_shift_at_the_input(model):
    """The window statistics make the forecast follow a shifted/scaled input (up to float rounding)."""
    context = random_walks(1, 600, seed=3)
    base = model.forecast(context, 40, max_accelerated_rollout_steps=None).quantiles
    moved = model.forecast(context * 4.0 + 1000.0, 40, max_accelerated_rollout_steps=None).quantiles
    torch.testing.assert_close(moved, base * 4.0 + 1000.0, rtol=0, atol=0.05 * 4.0 * context.std().item())


def test_forecast_rejects_bad_arguments(model):
    with pytest.raises(ValueError, match="horizon"):
        model.forecast(torch.zeros(10), 0)
    with pytest.raises(ValueError, match="max_accelerated_rollout_steps"):
        model.forecast(torch.zeros(10), 5, max_accelerated_rollout_steps=0)
    with pytest.raises(ValueError, match="precision"):
        TiRex(SMALL_CONFIG, precision="bf16")
    with pytest.raises(ValueError, match="backend"):
        TiRex(SMALL_CONFIG, backend="cuda")


def test_checkpoint_round_trip_and_legacy_prefix(tmp_path, model):
    path = save_tirex_checkpoint(model, tmp_path / "TiRex" / "model.ckpt", extra={"meta": {"steps": 3}})
    loaded = load_tirex_checkpoint(path, precision="fp32")
    assert loaded.precision == "fp32" and loaded.config == SMALL_CONFIG
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor)
    loaded.precision = model.precision
    context = random_walks(2, 300, seed=4)
    assert torch.equal(loaded.forecast(context, 40).quantiles, model.forecast(context, 40).quantiles)
    payload = torch.load(path, weights_only=True)
    legacy = {("block_stack." + key if key.startswith(("blocks.", "out_norm.")) else key): value
              for key, value in payload["state_dict"].items()}
    save_checkpoint({**payload, "state_dict": legacy}, tmp_path / "legacy.ckpt")
    legacy_model = load_tirex_checkpoint(tmp_path / "legacy.ckpt")
    assert torch.equal(legacy_model.state_dict()["out_norm.weight"], model.state_dict()["out_norm.weight"])


def test_checkpoint_errors_name_the_file_and_key(tmp_path):
    path = write_random_checkpoint(tmp_path, seed=5)
    payload = torch.load(path, weights_only=True)
    broken = dict(payload["state_dict"])
    del broken["blocks.1.slstm_layer.igate.weight"]
    save_checkpoint({**payload, "state_dict": broken}, tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match=r"missing\.ckpt.*blocks\.1\.slstm_layer\.igate\.weight"):
        load_tirex_checkpoint(tmp_path / "missing.ckpt")
    wrong = {**payload["state_dict"], "out_norm.weight": torch.ones(7)}
    save_checkpoint({**payload, "state_dict": wrong}, tmp_path / "shape.ckpt")
    with pytest.raises(CheckpointError, match=r"shape\.ckpt.*out_norm\.weight"):
        load_tirex_checkpoint(tmp_path / "shape.ckpt")
    save_checkpoint({"state_dict": payload["state_dict"]}, tmp_path / "nohyper.ckpt")
    with pytest.raises(CheckpointError, match=r"nohyper\.ckpt.*hyper_parameters"):
        load_tirex_checkpoint(tmp_path / "nohyper.ckpt")
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.ckpt"):
        load_tirex_checkpoint(tmp_path / "garbage.ckpt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_tirex_checkpoint(tmp_path / "absent.ckpt")


def test_randomized_weights_reach_every_parameter():
    """The equivalence tests rely on it: the official model allocates some tensors with torch.empty."""
    first, second = TiRex(SMALL_CONFIG), TiRex(SMALL_CONFIG)
    randomize_tirex_parameters(first, 7)
    randomize_tirex_parameters(second, 7)
    for (name, a), b in zip(first.named_parameters(), second.parameters()):
        assert torch.equal(a, b), name
    fresh = TiRex(SMALL_CONFIG)
    for (name, a), b in zip(first.named_parameters(), fresh.parameters()):
        assert not torch.equal(a, b), name
