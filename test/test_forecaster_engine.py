"""StreamingForecaster: persistent per-stream states, anchoring, batching, missing data, save/restore."""
import math

import numpy as np
import pytest
import torch

from support_tirex import SMALL_CONFIG, random_tirex, write_random_checkpoint
from support_tirex import single_thread  # noqa: F401 (autouse fixture: one torch thread)
from xlstm_ros.engines import forecaster as forecaster_module
from xlstm_ros.engines.device import DeviceError, select_backend
from xlstm_ros.engines.forecaster import STEP_PATHS, StreamingForecaster
from xlstm_ros.models.checkpoints import CheckpointError
from xlstm_ros.models.tirex import TiRexConfig, destandardize, standardize, tokenize, window_stats

PATCH = SMALL_CONFIG.patch_size
WINDOW = SMALL_CONFIG.train_ctx_len


@pytest.fixture(scope="module")
def model():
    return random_tirex(seed=3)


def noisy_sine(length, seed, level=10.0):
    rng = np.random.default_rng(seed)
    steps = np.arange(length)
    return (level + 3.0 * np.sin(2 * np.pi * steps / 50 + seed) + 0.3 * rng.normal(size=length)).astype(np.float32)


def single_pass(model, contexts, horizon):
    return model.forecast(contexts, horizon, max_accelerated_rollout_steps=None).quantiles.numpy()


def test_anchored_forecasts_equal_the_full_context_forecast_exactly(model):
    """Young streams re-anchor on every patch; later ones every 4 patches; both batched, any pending count."""
    engine = StreamingForecaster(model, reanchor_every=4, loc_drift=1e9, log_scale_drift=1e9)
    data = {"young": noisy_sine(700, 1), "old": noisy_sine(2700, 2), "walk": np.cumsum(noisy_sine(2700, 3))}
    data["walk"][300:420] = np.nan
    engine.observe("old", data["old"][:2400])
    engine.observe("walk", data["walk"][:2400])
    seen = {"young": 0, "old": 2400, "walk": 2400}
    anchored = stepped = 0
    for _ in range(8):
        for name in data:
            seen[name] += PATCH
            engine.observe(name, data[name][seen[name] - PATCH:seen[name]])
        forecasts = engine.forecast(list(data), 40)
        expected = single_pass(model, [data[name][:seen[name]] for name in data], 40)
        for index, name in enumerate(data):
            forecast = forecasts[name]
            assert forecast.first_sample == forecast.origin_sample == seen[name]
            if forecast.anchored:
                anchored += 1
                assert np.array_equal(forecast.quantiles, expected[index]), name
            else:
                stepped += 1
        assert forecasts["young"].anchored  # shorter than the window: every patch is an anchor
    assert anchored >= 10 and stepped >= 8
    # mid-patch: 5 samples pending after the boundary; the forecast starts after the newest sample
    engine.observe("young", data["young"][seen["young"]:seen["young"] + 5])
    forecast = engine.forecast("young", 40)["young"]
    assert (forecast.first_sample, forecast.origin_sample) == (seen["young"] + 5, seen["young"])
    expected = single_pass(model, data["young"][:seen["young"]], 45)[0, 5:]
    assert np.array_equal(forecast.quantiles, expected)
    assert np.array_equal(forecast.median, expected[:, 4])


@pytest.mark.parametrize("step_path", STEP_PATHS)
def test_stepped_state_equals_a_pass_with_the_anchor_statistics(model, step_path):
    """Between anchors the engine computes the 64 + k token pass standardised with (loc_a, scale_a): exactly on
    the exact step path; on the packed ones to the rounding of float32 (of bfloat16 weights) in the products,
    which the recurrence's bfloat16 states of this model amplify to at most 1e-3 (3e-2) of the scale."""
    engine = StreamingForecaster(model, reanchor_every=100, loc_drift=1e9, log_scale_drift=1e9, step_path=step_path)
    values = np.cumsum(noisy_sine(WINDOW + 5 * PATCH, 4))
    engine.observe("s", values[:WINDOW])
    engine.update()
    stats = window_stats(torch.from_numpy(values[:WINDOW])[None])
    for k in range(1, 6):
        engine.observe("s", values[WINDOW + (k - 1) * PATCH:WINDOW + k * PATCH])
        forecast = engine.forecast("s", 64)["s"]
        assert not forecast.anchored and forecast.anchor_sample == WINDOW
        tokens = tokenize(standardize(torch.from_numpy(values[:WINDOW + k * PATCH])[None], stats), PATCH)
        with torch.no_grad():
            outputs, state = model.forward_tokens(tokens)
            rollout, _ = model.forward_tokens(model.masked_tokens(1, 1), state)
        expected = destandardize(torch.cat((outputs[:, -1:], rollout), 1).transpose(1, 2).flatten(2), stats)
        difference = np.abs(forecast.quantiles - expected[0].T.numpy()).max() / forecast.scale
        assert difference <= {"exact": 0.0, "packed": 1e-3, "packed-bf16": 3e-2}[step_path], difference


def test_difference_between_anchors_stays_within_the_measured_bound(model):
    """Measured with this random model: max |streaming - full context| over all quantiles was 0.216 of the
    anchor's scale (noisy sines, reanchor_every=4, also 0.215 with 16); most of it appears on the first step
    after an anchor (history beyond the window). Asserted bound 0.25; at anchors the difference is 0."""
    engine = StreamingForecaster(model, reanchor_every=4)
    names = [f"s{i}" for i in range(3)]
    data = [noisy_sine(WINDOW + 24 * PATCH, 10 + i) for i in range(3)]
    for name, values in zip(names, data):
        engine.observe(name, values[:WINDOW])
    worst = 0.0
    for end in range(WINDOW + PATCH, WINDOW + 24 * PATCH + 1, PATCH):
        for name, values in zip(names, data):
            engine.observe(name, values[end - PATCH:end])
        forecasts = engine.forecast(names, 64)
        expected = single_pass(model, [values[:end] for values in data], 64)
        for index, name in enumerate(names):
            difference = np.abs(forecasts[name].quantiles - expected[index]).max() / forecasts[name].scale
            assert difference == 0.0 or not forecasts[name].anchored
            worst = max(worst, difference)
    assert 0.0 < worst <= 0.25


def test_forecast_rolls_out_in_the_pass_that_absorbs_the_patch(model):
    """observe + forecast runs [patch, masked tokens] as one pass and keeps the rollout for every forecast
    until the next patch; the forecasts equal a separate step and rollout (update, then forecast) bitwise."""
    fused, separate = (StreamingForecaster(model, reanchor_every=4, step_path="exact") for _ in range(2))
    values = noisy_sine(WINDOW + 5 * PATCH, 21)
    for engine in (fused, separate):
        engine.observe("s", values[:WINDOW])
    for index in range(WINDOW, len(values)):  # a forecast after every sample, as a fast node timer does
        for engine in (fused, separate):
            engine.observe("s", values[index])
        separate.update()
        assert np.array_equal(fused.forecast("s", 40)["s"].quantiles, separate.forecast("s", 40)["s"].quantiles)
    assert fused.counters.anchor_calls >= 2 and fused.counters.step_calls >= 2
    assert (fused.counters.rollout_calls, separate.counters.rollout_calls) == (0, 5 * PATCH)
    assert np.array_equal(fused.forecast("s", 100)["s"].quantiles, separate.forecast("s", 100)["s"].quantiles)
    assert fused.counters.rollout_calls == 1  # longer than the kept rollout: a pass of its own


def test_one_batched_step_per_patch_and_anchor_policy(model):
    engine = StreamingForecaster(model, reanchor_every=4, loc_drift=0.5, log_scale_drift=1e9)
    for name in ("a", "b", "c"):
        engine.observe(name, noisy_sine(WINDOW, ord(name)))
    engine.update()
    assert (engine.counters.anchor_calls, engine.counters.anchored_streams) == (1, 3)
    for name in ("a", "b", "c"):
        engine.observe(name, noisy_sine(PATCH, 7))
    engine.update()
    assert (engine.counters.step_calls, engine.counters.stepped_patches) == (1, 3)
    engine.observe("a", noisy_sine(2 * PATCH, 8))  # two patches at once: a and b step together, then a alone
    engine.observe("b", noisy_sine(PATCH + 7, 9))
    engine.update()
    assert (engine.counters.step_calls, engine.counters.stepped_patches) == (3, 6)
    status = engine.status("b")
    assert (status.patches_since_anchor, status.samples - status.ingested) == (2, 7)
    engine.observe("a", noisy_sine(PATCH, 11))  # the 4th patch since the anchor: the schedule re-anchors
    engine.update()
    assert engine.counters.anchor_calls == 2 and engine.status("a").patches_since_anchor == 0
    engine.observe("c", noisy_sine(PATCH, 10) + 100.0)  # the level jumps by ~30 scales: drift re-anchors
    engine.update()
    assert engine.status("c").anchors == 2 and engine.forecast("c", 8)["c"].anchored
    assert engine.update() == 0


def test_deferred_anchors_step_first_and_anchor_when_asked(model):
    """defer_anchors: a due anchor (schedule or drift) leaves the forecast to the step, run_deferred_anchors runs
    it afterwards, and the forecast then equals the one an engine that anchored at once makes; new and young
    streams anchor at once, and an anchor left waiting a whole extra cycle runs on the latency path."""
    deferred = StreamingForecaster(model, reanchor_every=4, loc_drift=0.5, log_scale_drift=1e9, defer_anchors=True)
    immediate = StreamingForecaster(model, reanchor_every=4, loc_drift=0.5, log_scale_drift=1e9)
    values = noisy_sine(WINDOW + 8 * PATCH, 40)
    values[WINDOW + 6 * PATCH:] += 100.0                       # a level shift in the 7th patch: drift
    for engine in (deferred, immediate):
        engine.observe("young", values[:WINDOW - 2 * PATCH])   # shorter than the window: anchors at once
        engine.forecast("young", 40)
        engine.observe("young", values[WINDOW - 2 * PATCH:WINDOW - PATCH])
        assert engine.forecast("young", 40)["young"].anchored
        engine.remove_stream("young")
        engine.observe("s", values[:WINDOW])
        engine.forecast("s", 40)
    assert deferred.counters.anchor_calls == immediate.counters.anchor_calls == 3
    for index in range(1, 9):
        end = WINDOW + index * PATCH
        forecasts = []
        for engine in (deferred, immediate):
            engine.observe("s", values[end - PATCH:end])
            forecasts.append(engine.forecast("s", 40)["s"])
        due = index in (4, 7)                                  # the schedule, then the drift
        assert forecasts[1].anchored == due and not forecasts[0].anchored
        assert deferred.run_deferred_anchors() == int(due) and deferred.run_deferred_anchors() == 0
        after = deferred.forecast("s", 40)["s"]
        assert after.anchored == due
        if due:
            assert np.array_equal(after.quantiles, forecasts[1].quantiles)
    assert deferred.counters.anchor_calls == immediate.counters.anchor_calls

    waiting = StreamingForecaster(model, reanchor_every=2, loc_drift=1e9, log_scale_drift=1e9, defer_anchors=True)
    waiting.observe("s", values[:WINDOW])
    waiting.update()
    for index in range(1, 5):                                  # never asked to run its deferred anchor
        waiting.observe("s", values[WINDOW + (index - 1) * PATCH:WINDOW + index * PATCH])
        waiting.update()
        assert waiting.status("s").anchors == 1 + (index == 4), index


def test_missing_values_and_streams_without_data(model):
    engine = StreamingForecaster(model)
    assert engine.forecast(["nothing"], 10) == {"nothing": None}
    engine.observe("short", [1.0, 2.0, 3.0])
    engine.observe("dead", np.full(3 * PATCH, np.nan))
    values = noisy_sine(10 * PATCH, 5).astype(np.float64)
    values[:PATCH] = np.nan
    values[40] = math.inf
    values[41] = -math.inf
    engine.observe("gappy", values)
    forecasts = engine.forecast(["short", "dead", "gappy", "nothing"], 10)
    assert forecasts["short"] is None and forecasts["dead"] is None and forecasts["nothing"] is None
    gappy = forecasts["gappy"]
    assert engine.status("gappy").nonfinite == 2
    assert gappy.context_samples == 10 * PATCH
    assert gappy.missing_fraction == pytest.approx((PATCH + 2) / (10 * PATCH))
    cleaned = values.copy()
    cleaned[40:42] = np.nan
    assert np.array_equal(gappy.quantiles, single_pass(model, cleaned.astype(np.float32), 10)[0])
    engine.observe("dead", [4.0] * PATCH)  # the first real values bring it to life
    assert engine.forecast("dead", 10)["dead"] is not None


def test_bad_arguments_are_named(model):
    engine = StreamingForecaster(model)
    with pytest.raises(ValueError, match="name"):
        engine.observe("", [1.0])
    with pytest.raises(ValueError, match="values for stream 'x'"):
        engine.observe("x", ["a", "b"])
    with pytest.raises(ValueError, match="horizon"):
        engine.forecast("x", 0)
    with pytest.raises(ValueError, match="reanchor_every"):
        StreamingForecaster(model, reanchor_every=0)
    with pytest.raises(ValueError, match="loc_drift"):
        StreamingForecaster(model, loc_drift=-1.0)


def test_many_streams_grow_the_buffers_and_reset_forgets(model):
    engine = StreamingForecaster(model, reanchor_every=2)
    data = {f"s{i}": noisy_sine(WINDOW + 2 * PATCH + i, 20 + i) for i in range(11)}
    splits = {name: WINDOW + 3 * index for index, name in enumerate(data)}  # streams of different phases
    for name, values in data.items():
        engine.observe(name, values[:splits[name]])
    for name, values in data.items():
        engine.observe(name, values[splits[name]:])
    assert engine.capacity == 16  # 8 rows doubled once for 11 streams
    forecasts = engine.forecast(list(data), 33)
    ends = {name: len(values) // PATCH * PATCH for name, values in data.items()}
    expected = single_pass(model, [values[:ends[name]] for name, values in data.items()], 33 + PATCH)
    for index, name in enumerate(data):
        pending = len(data[name]) - ends[name]
        assert forecasts[name].anchored
        assert np.array_equal(forecasts[name].quantiles, expected[index, pending:pending + 33])
    engine.reset_stream("s3")
    assert engine.forecast("s3", 5)["s3"] is None and engine.status("s3").samples == 0
    engine.observe("s3", data["s3"][:WINDOW])
    assert np.array_equal(engine.forecast("s3", 5)["s3"].quantiles, single_pass(model, data["s3"][:WINDOW], 5)[0])


def test_removed_streams_free_their_rows_and_anchors_run_in_capped_batches(model):
    data = {f"s{i}": noisy_sine(WINDOW + PATCH, 40 + i) for i in range(5)}
    capped = StreamingForecaster(model, max_anchor_batch=2)
    for name, values in data.items():
        capped.observe(name, values)
    forecasts = capped.forecast(list(data), 20)
    assert capped.counters.anchor_calls == 3 and capped.counters.anchored_streams == 5   # 2 + 2 + 1
    expected = single_pass(model, list(data.values()), 20)
    for index, name in enumerate(data):
        assert np.array_equal(forecasts[name].quantiles, expected[index])   # rows are batch-invariant

    engine = StreamingForecaster(model)
    for name, values in data.items():
        engine.observe(name, values)
    engine.update()
    engine.remove_stream("s1")
    engine.remove_stream("s3")
    assert engine.stream_names() == ["s0", "s2", "s4"]
    for round_ in range(3):   # streams come and go: the buffers never grow past the first 8 rows
        for name in ("new_a", "new_b"):
            engine.observe(name, noisy_sine(WINDOW, 60 + round_))
        assert engine.capacity == 8 and engine.status("new_a").samples == WINDOW
        fresh = engine.forecast(["new_a", "s2"], 20)
        assert np.array_equal(fresh["new_a"].quantiles, single_pass(model, noisy_sine(WINDOW, 60 + round_), 20)[0])
        assert np.array_equal(fresh["s2"].quantiles, expected[2])   # the other streams are untouched
        engine.remove_stream("new_a")
        engine.remove_stream("new_b")
    with pytest.raises(KeyError):
        engine.remove_stream("never")
    with pytest.raises(ValueError, match="max_anchor_batch"):
        StreamingForecaster(model, max_anchor_batch=0)


def scalars(forecast):
    return {key: value for key, value in vars(forecast).items() if not isinstance(value, np.ndarray)}


def test_state_round_trip_through_a_file_resumes_identically(model, tmp_path):
    """Bitwise on the exact step path. (The file does not keep the rollout outputs of the last pass, so on the
    packed paths a resumed engine recomputes them on another arithmetic path: equal to float32 rounding.)"""
    engine = StreamingForecaster(model, reanchor_every=5, step_path="exact")
    data = {"volts": noisy_sine(WINDOW + 9 * PATCH, 30), "accel": np.cumsum(noisy_sine(900, 31))}
    data["volts"][100] = np.inf
    for name, values in data.items():
        engine.observe(name, values[:len(values) - 3 * PATCH - 3])
    engine.forecast(list(data), 8)
    engine.observe("volts", data["volts"][-3 * PATCH - 3:-3 * PATCH])  # stepped but not re-anchored yet
    path = engine.save(tmp_path / "streams.pt")
    restored = StreamingForecaster(model, reanchor_every=5, step_path="exact")
    restored.load(path)
    assert restored.stream_names() == engine.stream_names() and restored.status("volts") == engine.status("volts")
    for step in range(4):
        names = list(data)
        before, after = engine.forecast(names, 50), restored.forecast(names, 50)
        for name in names:
            assert np.array_equal(before[name].quantiles, after[name].quantiles)
            assert np.array_equal(before[name].median, after[name].median)
            assert scalars(before[name]) == scalars(after[name])
        for both in (engine, restored):
            both.observe("volts", data["volts"][len(data["volts"]) - 3 * PATCH + step * 24:][:24])
    other = StreamingForecaster(random_tirex(TiRexConfig(embedding_dim=64, num_blocks=1, num_heads=2,
                                                                    input_ff_dim=64), seed=1))
    with pytest.raises(CheckpointError, match="different model"):
        other.load(path)
    state = torch.load(path, weights_only=True)
    del state["streams"]["accel"]["last_output"]
    torch.save(state, tmp_path / "truncated.pt")
    with pytest.raises(CheckpointError, match=r"truncated\.pt: corrupt .*last_output"):
        restored.load(tmp_path / "truncated.pt")
    assert restored.stream_names() == engine.stream_names()  # a failed load leaves the engine as it was
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pt"):
        restored.load(tmp_path / "junk.pt")


def test_from_checkpoint_and_the_missing_default(tmp_path, monkeypatch):
    path = write_random_checkpoint(tmp_path, seed=3)
    engine = StreamingForecaster.from_checkpoint(path, device="cpu", backend="torch", precision="fp32",
                                                 reanchor_every=7)
    assert engine.model.precision == "fp32" and engine.reanchor_every == 7 and engine.device.type == "cpu"
    assert (engine.model_name, engine.backend, engine.quantile_levels) == (str(path), "torch", SMALL_CONFIG.quantiles)
    if not torch.cuda.is_available():
        messages = []
        fallback = StreamingForecaster.from_checkpoint(path, device="cuda", fallback_to_cpu=True,
                                                       on_fallback=messages.append)
        assert fallback.device.type == "cpu" and "falling back to the CPU" in messages[0]
    monkeypatch.setattr(forecaster_module, "DEFAULT_CHECKPOINT", tmp_path / "weights" / "absent.ckpt")
    with pytest.raises(CheckpointError, match=r"absent\.ckpt.*default TiRex model is missing"):
        StreamingForecaster.from_checkpoint()
    monkeypatch.setattr(forecaster_module, "DEFAULT_CHECKPOINT", path)
    assert StreamingForecaster.from_checkpoint(device="cpu").model.config == SMALL_CONFIG


def test_backend_names_resolve_through_the_kernels_with_device_errors(monkeypatch):
    cpu = torch.device("cpu")
    assert select_backend(" Auto ", cpu) == "torch" and select_backend(None, cpu) == "torch"
    with pytest.raises(DeviceError, match="invalid backend 'cuda'"):
        select_backend("cuda", cpu)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(DeviceError, match="needs a CUDA device.*TRITON_INTERPRET=1"):
        select_backend("triton", cpu)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert select_backend("triton", cpu) == "triton"


def test_triton_backend_in_the_interpreter_matches_the_torch_backend(monkeypatch):
    """The engine's kernels go through dispatch: backend="triton" (Triton's CPU interpreter here, fp32) gives
    the torch reference's forecasts to float rounding. A 256-sample window keeps the interpreter cheap."""
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    config = TiRexConfig(embedding_dim=64, num_blocks=2, num_heads=4, input_ff_dim=64, train_ctx_len=256)
    forecasts = {}
    for backend in ("torch", "triton"):
        engine = StreamingForecaster(random_tirex(config, seed=4, precision="fp32", backend=backend), reanchor_every=8)
        data = {name: noisy_sine(256 + 3 * PATCH, 40 + index) for index, name in enumerate(("a", "b"))}
        for name, values in data.items():
            engine.observe(name, values[:256])
        engine.update()
        for name, values in data.items():
            engine.observe(name, values[256:])  # three patches each: three batched single-token steps
        forecasts[backend] = engine.forecast(["a", "b"], 40)
        assert (engine.counters.step_calls, engine.counters.stepped_patches) == (3, 6)
    for name in ("a", "b"):
        np.testing.assert_allclose(forecasts["triton"][name].quantiles, forecasts["torch"][name].quantiles,
                                   rtol=1e-5, atol=1e-5 * forecasts["torch"][name].scale)
