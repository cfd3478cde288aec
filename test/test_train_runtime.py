"""Shared training runtime: run options, schedule, AdamW groups, the resume layout, the step loop, log and loss
picture, progress, process."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from xlstm_ros.models.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from xlstm_ros.options import add_config_arguments, config_from_args, option
from xlstm_ros.train.runtime import (CURVE_NAME, LOG_NAME, STATE_NAME, Curve, LogSpec, ModelFile, Progress,
                                     StepOutput, TrainConfig, check_resumable, learning_rate, load_training,
                                     operational, operational_fields, parameter_groups, plot_history, run_training,
                                     save_training, start_run, write_log)

# ---------------------------------------------------------------------------------------------------------
# Schedule


def schedule(**changes) -> list[float]:
    settings = dict(lr=1e-3, steps=110, warmup_steps=10, min_lr_ratio=0.1) | changes
    return [learning_rate(step, **settings) for step in range(settings["steps"])]


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    rates = schedule()
    assert rates[:10] == pytest.approx([1e-4 * (step + 1) for step in range(10)])
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))
    # cosine over the 99 steps from step 10 to 109: half-way (step 10 + 49.5) the rate is half-way to the floor
    mid = 1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 49 / 99)))
    assert rates[59] == pytest.approx(mid)
    assert rates[-1] == pytest.approx(1e-4)
    assert schedule(min_lr_ratio=1.0)[10:] == pytest.approx([1e-3] * 100)


def test_learning_rate_without_warm_up_starts_at_the_peak_and_rejects_bad_settings():
    assert schedule(warmup_steps=0)[0] == pytest.approx(1e-3)
    assert learning_rate(0, lr=1.0, steps=1, warmup_steps=0, min_lr_ratio=0.0) == pytest.approx(1.0)
    for bad, name in ((dict(lr=0.0), "lr"), (dict(steps=0), "steps"), (dict(warmup_steps=-1), "warmup_steps"),
                      (dict(min_lr_ratio=1.5), "min_lr_ratio")):
        with pytest.raises(ValueError, match=name):
            learning_rate(0, **(dict(lr=1e-3, steps=10, warmup_steps=2, min_lr_ratio=0.1) | bad))


# ---------------------------------------------------------------------------------------------------------
# AdamW groups


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.linear = nn.Linear(4, 2)
        self.pos_embed = nn.Parameter(torch.ones(1, 5, 4))


def test_parameter_groups_decay_matrices_and_kernels_only_and_skip_named_ones():
    model = Tiny()
    decay, no_decay = parameter_groups(model, 0.1, no_decay_names=("pos_embed",))
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    assert [id(p) for p in decay["params"]] == [id(model.conv.weight), id(model.linear.weight)]
    assert [id(p) for p in no_decay["params"]] == [id(p) for p in (model.pos_embed, model.conv.bias,
                                                                    model.norm.weight, model.norm.bias,
                                                                    model.linear.bias)]
    plain_decay, _ = parameter_groups(model, 0.1)
    assert any(p is model.pos_embed for p in plain_decay["params"])
    with pytest.raises(ValueError, match="weight_decay"):
        parameter_groups(model, -1.0)


def test_adamw_with_the_groups_shrinks_only_the_decayed_parameters():
    model = Tiny()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.5, no_decay_names=("pos_embed",)), lr=0.1)
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)   # no gradient: only weight decay moves a parameter
    optimizer.step()
    for name, parameter in model.named_parameters():
        if name in ("conv.weight", "linear.weight"):
            assert torch.allclose(parameter, before[name] * (1 - 0.1 * 0.5)), name
        else:
            assert torch.equal(parameter, before[name]), name


# ---------------------------------------------------------------------------------------------------------
# Resumability


def test_check_resumable_allows_operational_changes_and_names_the_first_other_one(tmp_path):
    saved = {"out_dir": "a", "lr": 1e-3, "steps": 10, "threads": 1}
    path = tmp_path / "state.pt"
    check_resumable(saved, dict(saved), {"out_dir", "threads"}, path)
    check_resumable(saved, saved | {"out_dir": "b", "threads": 2}, {"out_dir", "threads"}, path)
    with pytest.raises(CheckpointError, match=r"state\.pt: cannot resume.*lr=0\.001.*now lr=0\.002"):
        check_resumable(saved, saved | {"lr": 2e-3, "steps": 20}, {"out_dir", "threads"}, path)
    with pytest.raises(CheckpointError, match="out_dir"):
        check_resumable(saved, saved | {"out_dir": "b"}, set(), path)
    with pytest.raises(CheckpointError, match="seed=None"):   # a field the saved run did not have
        check_resumable(saved, saved | {"seed": 0}, {"out_dir", "threads"}, path)


# ---------------------------------------------------------------------------------------------------------
# Log and loss picture


def history(steps: int, eval_every: int) -> list[dict[str, float]]:
    entries = []
    for step in range(1, steps + 1):
        entry = {"step": step, "loss": 1.0 / step, "lr": 1e-3 * step / steps}
        if step % eval_every == 0:
            entry["val_loss"] = 1.5 / step
        entries.append(entry)
    return entries


def test_write_log_writes_the_json_and_a_png(tmp_path):
    entries = history(12, 4)
    config = {"lr": 1e-3, "crop_size": [32, 48]}
    curves = (Curve("loss", "training"), Curve("val_loss", "validation", "."), Curve("absent", "never"))
    write_log(tmp_path, config, entries, 12.345, finished=False, curves=curves, ylabel="loss")
    log = json.loads((tmp_path / LOG_NAME).read_text())
    assert log == {"config": config, "finished": False, "wall_time_s": 12.3, "history": entries}
    picture = (tmp_path / CURVE_NAME).read_bytes()
    assert picture[:8] == b"\x89PNG\r\n\x1a\n" and len(picture) > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([LOG_NAME, CURVE_NAME])  # no temporary left

    write_log(tmp_path, config, entries + history(1, 1), 20.0, finished=True, curves=curves)
    assert json.loads((tmp_path / LOG_NAME).read_text())["finished"] is True


def test_plot_history_draws_nothing_without_history(tmp_path):
    assert plot_history([], tmp_path / "empty.png", (Curve("loss", "loss"),)) is False
    assert not (tmp_path / "empty.png").exists()


# ---------------------------------------------------------------------------------------------------------
# Progress and process


def test_progress_prints_one_line_per_logged_step_when_not_on_a_terminal(capsys):
    progress = Progress(10, 0, True, rate_key="windows_per_s", rate_unit="windows", terms=("val_loss", "other"))
    progress.update(1, None)
    progress.update(2, {"loss": 0.5, "val_loss": 0.25, "lr": 1e-3, "windows_per_s": 12.34, "elapsed_s": 7.4})
    progress.close()
    assert capsys.readouterr().out == "step 2/10 loss 0.5000 val_loss 0.2500 lr 1.00e-03 12.3 windows/s elapsed 7 s\n"
    silent = Progress(10, 0, False, rate_key="windows_per_s", rate_unit="windows")
    silent.update(2, {"loss": 0.5, "lr": 1e-3, "windows_per_s": 1.0, "elapsed_s": 1.0})
    assert capsys.readouterr().out == ""


def test_a_single_process_is_rank_zero_of_one_and_its_collectives_are_local(monkeypatch, tmp_path):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    process = start_run(TrainConfig(out_dir=str(tmp_path / "run"), device="cpu", threads=1))
    assert (tmp_path / "run").is_dir() and torch.get_num_threads() == 1
    assert (process.rank, process.world_size, process.device, process.is_main) == (0, 1, torch.device("cpu"), True)
    assert not process.joined_group
    assert process.gather({"a": 1}) == [{"a": 1}]
    assert process.mean_over_ranks((1.0, 2.5)) == [1.0, 2.5]
    process.barrier()
    process.leave()
    assert not torch.distributed.is_initialized()


# ---------------------------------------------------------------------------------------------------------
# Run options, the resume layout and the step loop, on a two-parameter regression


@dataclasses.dataclass(frozen=True)
class LineConfig(TrainConfig):
    """Fit y = 3 x - 1 with a Linear(1, 1); `noise` is an extra field, `report_every` an operational one."""

    steps: int = option(12, "optimizer steps")
    batch_size: int = option(4, "points per step")
    lr: float = option(0.1, "peak AdamW learning rate")
    warmup_steps: int = option(0, "linear warm-up steps")
    checkpoint_every: int = operational(4, "steps between checkpoints")
    log_every: int = operational(2, "steps between log entries")
    noise: float = option(0.0, "standard deviation of the targets' noise")
    widths: tuple[int, ...] = option((2, 3), "a tuple option")
    report_every: int = operational(3, "an operational option of this config")


LINE_FILE = ModelFile("line.pt", save=lambda model, path, meta: save_checkpoint(
    {"state_dict": model.state_dict(), "meta": meta}, path), meta_of=lambda payload: payload["meta"])
LINE_LOG = LogSpec(curves=(Curve("loss", "loss"),), rate_key="points_per_s", rate_unit="points")


def train_line(config: LineConfig, on_step=None, evaluate=True):
    process = start_run(config)
    torch.manual_seed(config.seed)
    model = nn.Linear(1, 1)
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)

    def step(module, index):
        x = torch.rand(config.batch_size, 1, generator=generator)
        y = 3 * x - 1 + config.noise * torch.randn(config.batch_size, 1, generator=generator)
        return StepOutput(((module(x) - y) ** 2).mean(), {"x_mean": float(x.mean())})

    def validation():
        return {"val_slope": model.weight.item()}

    return run_training(config, process, model, optimizer, step, LINE_FILE, LINE_LOG, generator=generator,
                        evaluate=validation if evaluate else None, eval_every=4, on_step=on_step), model


def test_options_are_generated_from_the_config_fields():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, LineConfig)
    args = parser.parse_args(["--steps", "5", "--no-resume", "--widths", "4,5,6", "--threads", "2",
                              "--data-dir", "cache", "--noise", "0.5"])
    config = config_from_args(LineConfig, args)
    assert config == LineConfig(steps=5, resume=False, widths=(4, 5, 6), threads=2, data_dir="cache", noise=0.5)
    assert config_from_args(LineConfig, parser.parse_args([])) == LineConfig()
    assert "--report-every" in parser.format_help() and "an operational option" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--widths", "4;5"])
    assert operational_fields(LineConfig) == {"out_dir", "data_dir", "checkpoint_every", "log_every", "device",
                                              "threads", "resume", "report_every"}
    with pytest.raises(ValueError, match="LineConfig.steps must be a positive integer"):
        LineConfig(steps=0)
    with pytest.raises(ValueError, match="LineConfig.min_lr_ratio"):
        LineConfig(min_lr_ratio=2.0)


def test_the_loop_learns_logs_and_writes_the_layout(tmp_path):
    config = LineConfig(out_dir=str(tmp_path / "run"), steps=60, checkpoint_every=20, log_every=10, lr=0.3,
                        weight_decay=0.0)
    seen = []
    summary, model = train_line(config, on_step=lambda step, numbers: seen.append((step, sorted(numbers))))
    assert model.weight.item() == pytest.approx(3.0, abs=0.3) and model.bias.item() == pytest.approx(-1.0, abs=0.3)
    assert seen[0] == (1, ["grad_norm", "loss", "x_mean"]) and [s for s, _ in seen] == list(range(1, 61))
    assert summary.model_path == tmp_path / "run" / "line.pt" and summary.state_path == tmp_path / "run" / STATE_NAME
    state, saved = load_checkpoint(summary.state_path), load_checkpoint(summary.model_path)
    assert state["step"] == saved["meta"]["step"] == 60 and saved["meta"]["finished"]
    assert [entry["step"] for entry in state["history"]] == [10, 20, 30, 40, 50, 60]
    assert "val_slope" in state["history"][3] and "val_slope" not in state["history"][2]   # steps 40 and 30
    assert summary.final_validation == {"val_slope": pytest.approx(model.weight.item())}
    assert summary.final_loss == state["history"][-1]["loss"] < state["history"][0]["loss"]
    assert json.loads((tmp_path / "run" / LOG_NAME).read_text())["finished"]


class Stop(Exception):
    pass


def test_an_interrupted_run_resumes_bitwise_and_refuses_changed_or_torn_checkpoints(tmp_path):
    straight, _ = train_line(LineConfig(out_dir=str(tmp_path / "a"), noise=0.1))

    def stop_at_six(step, _numbers):
        if step == 6:
            raise Stop

    config = LineConfig(out_dir=str(tmp_path / "b"), noise=0.1)
    with pytest.raises(Stop):
        train_line(config, on_step=stop_at_six)
    assert load_checkpoint(tmp_path / "b" / STATE_NAME)["step"] == 4
    steps = []
    resumed, _ = train_line(dataclasses.replace(config, report_every=7, threads=1),   # operational: allowed
                            on_step=lambda step, numbers: steps.append(step))
    assert steps == list(range(5, 13))
    a, b = load_checkpoint(straight.model_path)["state_dict"], load_checkpoint(resumed.model_path)["state_dict"]
    assert all(torch.equal(a[key], b[key]) for key in a)      # the generator state was restored too
    losses = [(entry["step"], entry["loss"]) for entry in load_checkpoint(straight.state_path)["history"]]
    assert [(entry["step"], entry["loss"]) for entry in load_checkpoint(resumed.state_path)["history"]] == losses

    with pytest.raises(CheckpointError, match="noise=0.1, now noise=0.2"):
        train_line(dataclasses.replace(config, noise=0.2))
    payload = load_checkpoint(resumed.model_path)
    payload["meta"]["step"] = 8
    torch.save(payload, resumed.model_path)
    with pytest.raises(CheckpointError, match="interrupted while saving"):
        train_line(config)
    save_checkpoint({"format": "another/1"}, tmp_path / "b" / STATE_NAME)
    with pytest.raises(CheckpointError, match="not a training state"):
        load_training(tmp_path / "b", LINE_FILE, nn.Linear(1, 1), torch.optim.AdamW(nn.Linear(1, 1).parameters()),
                      config)


def test_save_training_writes_the_model_then_the_state(tmp_path):
    model = nn.Linear(1, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    config = LineConfig(out_dir=str(tmp_path), steps=3)
    path = save_training(tmp_path, LINE_FILE, model, optimizer, config, 3, [{"step": 3, "loss": 1.0}], 1.26)
    assert path == tmp_path / "line.pt"
    meta = load_checkpoint(path)["meta"]
    assert meta == {"step": 3, "finished": True, "wall_time_s": 1.3, "train_config": config.to_dict()}
    state = load_checkpoint(tmp_path / STATE_NAME)
    assert (state["step"], state["rng"], state["history"]) == (3, [], [{"step": 3, "loss": 1.0}])
    restored = nn.Linear(1, 1)
    load_training(tmp_path, LINE_FILE, restored, torch.optim.AdamW(restored.parameters()), config)
    assert torch.equal(restored.weight, model.weight)
