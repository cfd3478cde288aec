"""Forecaster training: pinball loss, masked-patch windows, gradient flow, a tiny real run, resume, loaders."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from support_tirex import single_thread  # noqa: F401 (autouse fixture: one torch thread)
from xlstm_ros.engines.forecaster import StreamingForecaster
from xlstm_ros.models.checkpoints import CheckpointError, load_checkpoint
from xlstm_ros.models.tirex import DEFAULT_QUANTILES, load_tirex_checkpoint
from xlstm_ros.train import forecast_train as T
from xlstm_ros.options import add_config_arguments, config_from_args
from xlstm_ros.train.runtime import CURVE_NAME, LOG_NAME, STATE_NAME

PATCH = 32
TOKENS = 8
TINY = T.ForecastTrainConfig(
    n_series=48, series_length=TOKENS * PATCH + 64, embedding_dim=32, num_blocks=2, num_heads=4,
    input_ff_dim=64, train_ctx_len=TOKENS * PATCH, max_future_patches=3, max_interior_patches=3,
    interior_mask_share=0.5, validation_windows=32, steps=30, batch_size=16, lr=3e-3, warmup_steps=3,
    checkpoint_every=10, log_every=5, eval_every=10, compile=False, device="cpu")


def tiny(tmp_path, **changes) -> T.ForecastTrainConfig:
    return dataclasses.replace(TINY, out_dir=str(tmp_path / "run"), data_dir=str(tmp_path / "series"), **changes)


# --------------------------------------------------------------------------------------------------------
# Loss


def test_pinball_loss_matches_hand_computed_values():
    levels = (0.1, 0.5, 0.9)
    predictions = torch.tensor([[0.0, 2.0], [1.0, 2.0], [3.0, 2.0]])  # (Q=3, P=2)
    targets = torch.tensor([1.0, 2.0])
    # sample 0, y = 1: q0.1 under by 1 -> 0.1; q0.5 exact -> 0; q0.9 over by 2 -> (1 - 0.9) * 2 = 0.2
    # sample 1: every level exact -> 0
    loss = T.pinball_loss(predictions, targets, levels)
    assert torch.allclose(loss, torch.tensor([(0.1 + 0.0 + 0.2) / 3, 0.0]))


def test_window_and_batch_loss_skip_missing_targets_and_weigh_windows_equally():
    levels = (0.5,)
    predictions = torch.zeros(2, 2, 1, 2)  # (B=2, T=2, Q=1, P=2)
    targets = torch.tensor([[[2.0, float("nan")], [float("nan"), float("nan")]],   # one target: |2| / 2
                            [[1.0, -1.0], [3.0, -3.0]]])                           # four: mean |y| / 2 = 1
    per_window = T.window_loss(predictions, targets, levels)
    assert torch.allclose(per_window, torch.tensor([1.0, 1.0]))
    only_first_token = T.window_loss(predictions, targets, levels, valid=torch.tensor([[True, False]] * 2))
    assert torch.allclose(only_first_token, torch.tensor([1.0, 0.5]))
    no_targets = torch.full_like(targets, float("nan"))
    assert torch.isnan(T.window_loss(predictions, no_targets, levels)).all()
    assert T.batch_loss(predictions, torch.cat((targets[:1], no_targets[:1])), levels).item() == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------------
# Masked-patch windows


@pytest.mark.parametrize("stream", [0, 5])
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1))
def test_batch_builder_produces_the_masks_padding_and_targets_it_claims(stream, seed):
    """Plain windows (stream 0) and streaming windows: the anchor window's first TOKENS tokens give the
    scaler of every token, the `stream` tokens after it included."""
    config = dataclasses.replace(TINY, batch_size=12, full_context_share=0.3)
    anchor = TOKENS
    n_tokens = anchor + stream
    rng = np.random.default_rng(seed)
    crops = rng.normal(5.0, 2.0, (config.batch_size, (n_tokens + 1) * PATCH))
    crops[:, anchor * PATCH:] += 3.0   # the streamed part drifts away from the anchor's statistics
    crops[rng.random(crops.shape) < 0.05] = np.nan  # sample-level gaps
    plan = T.plan_windows(rng, config.batch_size, config, stream)
    batch = T.build_batch(crops, plan, config, stream)

    assert batch.tokens.shape == (config.batch_size, n_tokens, 2 * PATCH)
    values, mask = batch.tokens[..., :PATCH].numpy(), batch.tokens[..., PATCH:].numpy()
    for row in range(config.batch_size):
        future, context = int(plan.future_patches[row]), int(plan.context_samples[row])
        assert 0 <= future <= config.max_future_patches
        origin = (n_tokens - future) * PATCH
        assert batch.origin[row] == origin
        assert config.min_context <= context <= origin and batch.observed_from[row] == origin - context
        assert origin - context <= anchor * PATCH - config.min_context   # the anchor window sees enough
        run = range(plan.interior_start[row], plan.interior_start[row] + plan.interior_patches[row])
        if len(run):  # strictly inside the context's whole tokens, never the last observed token
            assert run.start * PATCH >= origin - context and run.stop <= n_tokens - future - 1
        expected_masked = [t in run or t >= n_tokens - future for t in range(n_tokens)]
        assert batch.masked[row].tolist() == expected_masked

        time_index = np.arange(n_tokens * PATCH)
        visible = ((time_index >= origin - context) & (time_index < origin)
                   & ~np.repeat(batch.masked[row], PATCH) & np.isfinite(crops[row, :n_tokens * PATCH]))
        assert np.array_equal(mask[row].reshape(-1), visible.astype(np.float32))
        assert np.all(values[row].reshape(-1)[~visible] == 0.0)
        observed = crops[row, :anchor * PATCH][visible[:anchor * PATCH]]
        if observed.size:  # the official scaler on exactly the visible samples
            loc = observed.mean()
            scale = observed.std() if observed.std() > 0 else abs(loc) + 1e-5
            assert batch.loc[row].item() == pytest.approx(loc, rel=1e-5)
            assert batch.scale[row].item() == pytest.approx(scale, rel=1e-4)
            everything = crops[row, :n_tokens * PATCH][visible]
            assert np.allclose(values[row].reshape(-1)[visible], (everything - loc) / scale, atol=1e-4)

        targets = batch.targets[row].numpy()  # (N, P): patch t + 1 for token t
        seen = (np.arange(n_tokens) + 1) * PATCH > origin - context
        assert np.isnan(targets[~seen]).all()
        expected = (crops[row, PATCH:].reshape(n_tokens, PATCH) - batch.loc[row].item()) / batch.scale[row].item()
        assert np.allclose(targets[seen], expected[seen], atol=1e-4, equal_nan=True)
    forecast = batch.forecast_tokens(PATCH).numpy()
    assert forecast.sum(axis=1).tolist() == (plan.future_patches + 1).tolist()


def test_targets_beyond_max_abs_target_are_dropped_and_counted():
    config = dataclasses.replace(TINY, batch_size=1, max_abs_target=5.0)
    crops = np.zeros((1, (TOKENS + 1) * PATCH))
    crops[0, ::2] = 1.0  # mean 0.5, std 0.5: standardised values +-1
    crops[0, -3:] = 100.0  # three far outliers in the last target patch
    plan = T.WindowPlan(np.array([TOKENS * PATCH]), np.array([0]), np.array([0]), np.array([0]))
    batch = T.build_batch(crops, plan, config)
    assert batch.dropped_targets == 3
    assert torch.isnan(batch.targets[0, -1, -3:]).all() and torch.isfinite(batch.targets[0, :-1]).all()


def test_config_errors_name_the_parameter():
    with pytest.raises(ValueError, match="batch_size"):
        T.ForecastTrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="series_length"):
        T.ForecastTrainConfig(series_length=500)
    with pytest.raises(ValueError, match="max_future_patches"):
        dataclasses.replace(TINY, max_future_patches=TOKENS)
    with pytest.raises(ValueError, match="interior_mask_share"):
        dataclasses.replace(TINY, interior_mask_share=1.5)
    with pytest.raises(ValueError, match="embedding_dim"):
        dataclasses.replace(TINY, embedding_dim=30)
    with pytest.raises(ValueError, match="crops"):
        T.build_batch(np.zeros((2, 10)), T.plan_windows(np.random.default_rng(0), 2, TINY), TINY)


# --------------------------------------------------------------------------------------------------------
# Gradients and training


def test_gradients_reach_every_parameter_through_the_torch_reference():
    model = T.build_model(TINY)
    series = np.random.default_rng(3).normal(size=(32, TINY.series_length)).cumsum(axis=1)
    batch = T.sample_batch(series, TINY, (0, 0, 0))
    T.batch_loss(model(batch.tokens), batch.targets, DEFAULT_QUANTILES).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_tiny_run_lowers_the_loss_and_writes_loadable_checkpoints(tmp_path):
    config = tiny(tmp_path)
    validation = T.validation_batch(config)
    before = T.evaluate_batch(T.build_model(config).eval(), validation, DEFAULT_QUANTILES, PATCH,
                              torch.device("cpu"))
    summary = T.train_forecaster(config)
    trained = load_tirex_checkpoint(summary.model_path, precision="fp32")
    after = T.evaluate_batch(trained, validation, DEFAULT_QUANTILES, PATCH, torch.device("cpu"))
    assert after["val_loss"] < 0.9 * before["val_loss"]
    assert after["val_forecast_loss"] < before["val_forecast_loss"]
    assert summary.final_validation["val_loss"] == pytest.approx(after["val_loss"], rel=1e-4)

    out = tmp_path / "run"
    for name in (T.MODEL_FILE.name, STATE_NAME, LOG_NAME, CURVE_NAME):
        assert (out / name).is_file(), name
    assert summary.state_path == out / STATE_NAME
    meta = load_checkpoint(summary.model_path)["xlstm_ros"]
    assert meta["step"] == config.steps and meta["finished"] and meta["train_config"]["embedding_dim"] == 32

    engine = StreamingForecaster.from_checkpoint(summary.model_path, device="cpu", backend="torch")
    engine.observe("battery", np.linspace(16.8, 15.0, 300))
    forecast = engine.forecast(["battery"], 40)["battery"]
    assert forecast.quantiles.shape == (40, 9) and np.isfinite(forecast.quantiles).all()

    official = pytest.importorskip("tirex.models.tirex", reason="tirex-ts is a test-only dependency")
    reference = official.TiRexZero.from_pretrained(str(summary.model_path), backend="torch", device="cpu").eval()
    ours = load_tirex_checkpoint(summary.model_path)
    context = torch.sin(torch.arange(300.0) / 5)[None]
    with torch.no_grad():
        expected, _ = reference.forecast(context, prediction_length=40)
    assert torch.equal(ours.forecast(context, 40).quantiles, expected)


class Interrupt(Exception):
    pass


def test_resume_continues_from_the_saved_step_with_the_same_optimizer_state(tmp_path):
    steps = dict(steps=8, checkpoint_every=4, log_every=2, eval_every=4)
    straight = T.train_forecaster(tiny(tmp_path / "a", **steps))

    def stop_after_six(step, entry):
        if step == 6:
            raise Interrupt

    interrupted = tiny(tmp_path / "b", **steps)
    with pytest.raises(Interrupt):
        T.train_forecaster(interrupted, on_step=stop_after_six)
    saved = load_checkpoint(tmp_path / "b" / "run" / STATE_NAME)
    assert saved["step"] == 4
    assert all(state["step"] == 4 for state in saved["optimizer"]["state"].values())

    seen = []
    resumed = T.train_forecaster(interrupted, on_step=lambda step, entry: seen.append(step))
    assert seen == [5, 6, 7, 8]
    a = load_checkpoint(straight.model_path)["state_dict"]
    b = load_checkpoint(resumed.model_path)["state_dict"]
    assert all(torch.equal(a[key], b[key]) for key in a), "resumed run differs from the uninterrupted one"
    history = load_checkpoint(tmp_path / "b" / "run" / STATE_NAME)["history"]
    assert [entry["step"] for entry in history] == [2, 4, 6, 8]


def test_resume_refuses_a_changed_config_and_a_half_written_checkpoint(tmp_path):
    config = tiny(tmp_path, steps=4, checkpoint_every=2)
    T.train_forecaster(config)
    with pytest.raises(CheckpointError, match="lr"):
        T.train_forecaster(dataclasses.replace(config, lr=1e-2))
    model_path = tmp_path / "run" / T.MODEL_FILE.name
    payload = load_checkpoint(model_path)
    payload["xlstm_ros"]["step"] = 2
    torch.save(payload, model_path)
    with pytest.raises(CheckpointError, match="interrupted while saving"):
        T.train_forecaster(config)


def test_command_line_options_cover_every_config_field():
    import argparse

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, T.ForecastTrainConfig)
    args = parser.parse_args(["--steps", "5", "--embedding-dim", "64", "--no-compile", "--no-augment"])
    config = config_from_args(T.ForecastTrainConfig, args)
    assert (config.steps, config.embedding_dim, config.compile, config.augment) == (5, 64, False, False)
    assert dataclasses.replace(config, steps=T.ForecastTrainConfig.steps, embedding_dim=192, compile=True,
                               augment=True) == T.ForecastTrainConfig()


def test_help_names_the_program_it_is_given(capsys):
    with pytest.raises(SystemExit):
        T.main(["--help"], prog="xlstm-ros train forecaster")
    assert capsys.readouterr().out.startswith("usage: xlstm-ros train forecaster")


def test_init_checkpoint_starts_from_given_weights_and_refuses_another_architecture(tmp_path):
    first = T.train_forecaster(tiny(tmp_path / "a", steps=4, checkpoint_every=4))
    source = load_checkpoint(first.model_path)["state_dict"]
    fine_tuned = T.train_forecaster(tiny(tmp_path / "c", init_checkpoint=str(first.model_path), steps=1, lr=1e-12,
                                         weight_decay=0.0))
    tuned = load_checkpoint(fine_tuned.model_path)["state_dict"]
    assert all(torch.allclose(tuned[key], source[key], atol=1e-6) for key in source)
    with pytest.raises(CheckpointError, match="embedding_dim=32"):
        T.train_forecaster(tiny(tmp_path / "b", init_checkpoint=str(first.model_path), embedding_dim=64))


def test_streaming_windows_train_and_are_validated_on_their_own(tmp_path, monkeypatch):
    config = tiny(tmp_path, steps=6, checkpoint_every=6, log_every=3, eval_every=6, stream_patches=4,
                  stream_share=0.5, series_length=TOKENS * PATCH + 5 * PATCH)
    streamed = []
    original = T.sample_batch

    def spy(series, config, seed, stream_patches=0):
        streamed.append(stream_patches)
        return original(series, config, seed, stream_patches)

    monkeypatch.setattr(T, "sample_batch", spy)
    summary = T.train_forecaster(config)
    assert set(streamed) == {0, 4}                      # both kinds of step, drawn from (seed, step)
    assert {"val_loss", "val_forecast_loss", "val_stream_loss", "val_stream_forecast_loss"} <= set(
        summary.final_validation)
    stream_batch = T.validation_batch(config, 4)
    assert stream_batch.tokens.shape == (config.validation_windows, TOKENS + 4, 2 * PATCH)
    with pytest.raises(ValueError, match="stream_patches"):
        dataclasses.replace(config, stream_patches=2)   # not more than max_future_patches = 3
    with pytest.raises(ValueError, match="series_length"):
        dataclasses.replace(config, stream_patches=8)


def test_init_checkpoint_may_have_another_window(tmp_path):
    first = T.train_forecaster(tiny(tmp_path / "a", steps=2, checkpoint_every=2))
    longer = tiny(tmp_path / "b", steps=1, lr=1e-12, weight_decay=0.0, init_checkpoint=str(first.model_path),
                  train_ctx_len=2 * TOKENS * PATCH, series_length=2 * TOKENS * PATCH + PATCH,
                  max_future_patches=3)
    tuned = T.train_forecaster(longer)
    assert load_tirex_checkpoint(tuned.model_path).config.train_ctx_len == 2 * TOKENS * PATCH
    source, weights = load_checkpoint(first.model_path)["state_dict"], load_checkpoint(tuned.model_path)["state_dict"]
    assert all(torch.allclose(weights[key], source[key], atol=1e-6) for key in source)


def test_init_checkpoint_grows_the_stack_with_identity_blocks(tmp_path):
    first = T.train_forecaster(tiny(tmp_path / "a", steps=2, checkpoint_every=2))
    grown = T.build_model(dataclasses.replace(TINY, num_blocks=4))
    T.load_initial_weights(grown, first.model_path)
    source = load_tirex_checkpoint(first.model_path, precision="fp32", backend="torch")
    context = torch.sin(torch.arange(200.0) / 7)[None]
    grown.eval()
    assert torch.allclose(grown.forecast(context, 40).quantiles, source.forecast(context, 40).quantiles, atol=1e-5)
    with pytest.raises(CheckpointError, match="num_blocks=4, more than the run's 2"):
        bigger = T.train_forecaster(tiny(tmp_path / "b", num_blocks=4, steps=2, checkpoint_every=2))
        T.load_initial_weights(T.build_model(TINY), bigger.model_path)
