"""Shared training runtime: schedule, AdamW groups, resumability check, log and loss picture, progress, process."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from xlstm_ros.models.checkpoints import CheckpointError
from xlstm_ros.train.runtime import (CURVE_NAME, LOG_NAME, Curve, Progress, check_resumable, learning_rate,
                                     parameter_groups, plot_history, start_process, write_log)

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


def test_a_single_process_is_rank_zero_of_one_and_its_collectives_are_local(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    process = start_process("cpu")
    assert (process.rank, process.world_size, process.device, process.is_main) == (0, 1, torch.device("cpu"), True)
    assert not process.joined_group
    assert process.gather({"a": 1}) == [{"a": 1}]
    assert process.mean_over_ranks((1.0, 2.5)) == [1.0, 2.5]
    process.barrier()
    process.leave()
    assert not torch.distributed.is_initialized()
