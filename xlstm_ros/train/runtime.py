"""What every training run of this package needs besides its model, data and loss.

* `Process` / `start_process`: this process's rank, world size and device; under torchrun (WORLD_SIZE > 1)
  the process joins the process group (NCCL on CUDA, Gloo on the CPU), and the collectives it needs
  (barrier, gather, mean over ranks) become no-ops in a single process.
* `parameter_groups`: AdamW groups with weight decay on matrices and conv kernels only.
* `learning_rate`: linear warm-up, then cosine decay to a floor at the last step.
* `check_resumable`: refuses to resume a run whose computation-relevant settings changed.
* `write_log` / `plot_history`: log.json (config and history) and the loss picture loss.png.
* `Progress`: a tqdm bar on a terminal, one line per logged step otherwise.
* `TrainSummary`: what a finished run produced.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Collection, NamedTuple, Sequence

import torch
import torch.distributed as dist
from torch import nn

from xlstm_ros.engines.device import select_device
from xlstm_ros.models.checkpoints import CheckpointError

LOG_NAME = "log.json"
CURVE_NAME = "loss.png"


# ---------------------------------------------------------------------------------------------------------
# Processes


@dataclass(frozen=True)
class Process:
    """This process's place in the run (rank 0 of 1 when not started by torchrun) and its device."""

    rank: int
    world_size: int
    device: torch.device
    joined_group: bool = False          # True when start_process initialised the process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for in a single process)."""
        if self.world_size > 1:
            dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """`value` of every rank, in rank order (any picklable object)."""
        if self.world_size == 1:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def mean_over_ranks(self, values: Sequence[float]) -> list[float]:
        """Element-wise mean of `values` over the ranks (float64 all-reduce)."""
        if self.world_size == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return (tensor / self.world_size).tolist()

    def leave(self) -> None:
        """Destroy the process group if start_process created it (a group joined earlier stays)."""
        if self.joined_group:
            dist.destroy_process_group()


def start_process(device: str) -> Process:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, Gloo on the CPU).

    `device` is select_device's choice (auto, cpu, cuda, cuda:N); under torchrun a CUDA rank takes the GPU
    LOCAL_RANK.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    resolved = select_device(device)
    if world_size <= 1:
        return Process(0, 1, resolved)
    if resolved.type == "cuda":
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(resolved)
    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    return Process(dist.get_rank(), dist.get_world_size(), resolved, joined)


# ---------------------------------------------------------------------------------------------------------
# Optimisation


def parameter_groups(model: nn.Module, weight_decay: float,
                     no_decay_names: Collection[str] = ()) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on parameters with >= 2 dimensions (matrices, conv kernels, recurrent
    weights); none on biases, norms and skips, nor on parameters whose name contains one of
    `no_decay_names` (e.g. a position table). Parameters keep the model's order within each group."""
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        decays = parameter.ndim >= 2 and not any(part in name for part in no_decay_names)
        (decay if decays else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def learning_rate(step: int, *, lr: float, steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Rate of optimizer step `step` (0-based) of `steps`: linear warm-up to `lr` over `warmup_steps`, then
    cosine decay to lr x min_lr_ratio at the last step."""
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if steps < 1 or warmup_steps < 0:
        raise ValueError(f"steps must be >= 1 and warmup_steps >= 0, got steps={steps}, "
                         f"warmup_steps={warmup_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, steps - warmup_steps - 1)
    progress = min(1.0, (step - warmup_steps) / span)
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# ---------------------------------------------------------------------------------------------------------
# Resuming, logs, progress


def check_resumable(saved: dict[str, Any], current: dict[str, Any], operational: Collection[str],
                    path: str | os.PathLike) -> None:
    """Refuse to resume a run whose settings differ outside `operational` (fields that may change without
    changing what the run computes); the CheckpointError names `path` and the first differing field."""
    for name in current:
        if name not in operational and saved.get(name) != current[name]:
            raise CheckpointError(f"{path}: cannot resume, it was trained with {name}={saved.get(name)!r}, "
                                  f"now {name}={current[name]!r} (use another out_dir or resume=False)")


class Curve(NamedTuple):
    """One line of the loss picture: the history key, its legend label, and a point marker (None: none)."""

    key: str
    label: str
    marker: str | None = None


def write_log(out_dir: Path, config: dict[str, Any], history: list[dict[str, float]], wall_time_s: float,
              finished: bool, curves: Sequence[Curve], ylabel: str | None = None) -> None:
    """Write out_dir/log.json (config, finished, wall time, history) atomically, then out_dir/loss.png."""
    payload = {"config": config, "finished": finished, "wall_time_s": round(wall_time_s, 1), "history": history}
    temporary = out_dir / (LOG_NAME + ".tmp")
    temporary.write_text(json.dumps(payload, indent=1))
    os.replace(temporary, out_dir / LOG_NAME)
    plot_history(history, out_dir / CURVE_NAME, curves, ylabel)


def plot_history(history: list[dict[str, float]], path: Path, curves: Sequence[Curve],
                 ylabel: str | None = None) -> bool:
    """Loss picture PNG: each curve (log scale) over the entries that have its key, the learning rate on the
    right axis. False (and a message) when matplotlib is missing or there is nothing to plot."""
    if not history:
        return False
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no loss curve written", file=sys.stderr)
        return False
    figure, axis = plt.subplots(figsize=(7, 4))
    for curve in curves:
        points = [(entry["step"], entry[curve.key]) for entry in history if curve.key in entry]
        if points:
            axis.plot(*zip(*points), label=curve.label, marker=curve.marker)
    axis.set_yscale("log")
    axis.set_xlabel("step")
    if ylabel is not None:
        axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    rate = axis.twinx()
    rate.plot([e["step"] for e in history if "lr" in e], [e["lr"] for e in history if "lr" in e], color="grey",
              linestyle=":", label="learning rate")
    rate.set_ylabel("learning rate")
    lines = axis.get_legend_handles_labels()[0] + rate.get_legend_handles_labels()[0]
    axis.legend(lines, [line.get_label() for line in lines], loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


class Progress:
    """A tqdm bar on an interactive terminal, else one plain line per logged step (nohup logs stay short).

    A line reads `step S/TOTAL loss L[ TERM V ...] lr R N UNIT/s elapsed E s`: the `terms` present in the
    entry, and the throughput from entry[rate_key].
    """

    def __init__(self, total: int, initial: int, enabled: bool, *, rate_key: str, rate_unit: str,
                 terms: Sequence[str] = ()) -> None:
        self.bar = None
        self.enabled = enabled
        self.total = total
        self.rate_key, self.rate_unit, self.terms = rate_key, rate_unit, tuple(terms)
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, step: int, entry: dict[str, float] | None) -> None:
        """Record one finished step; `entry` is its log entry when the step was logged, else None."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            if entry is not None:
                self.bar.set_postfix(loss=f"{entry['loss']:.4f}", lr=f"{entry['lr']:.2e}")
        elif entry is not None:
            terms = "".join(f" {key} {entry[key]:.4f}" for key in self.terms if key in entry)
            print(f"step {step}/{self.total} loss {entry['loss']:.4f}{terms} lr {entry['lr']:.2e} "
                  f"{entry[self.rate_key]:.1f} {self.rate_unit}/s elapsed {entry['elapsed_s']:.0f} s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass(frozen=True)
class TrainSummary:
    """What a finished run produced: the model file, the file a resume reads, and the last logged numbers."""

    model_path: Path
    checkpoint_path: Path
    steps: int
    final_loss: float
    wall_time_s: float
    final_validation: dict[str, float] = field(default_factory=dict)


def add_run_arguments(parser: argparse.ArgumentParser, defaults: Any) -> None:
    """The options of every training run (--checkpoint-every, --log-every, --device, --threads, --no-resume),
    with the defaults of the run's config dataclass instance `defaults`."""
    add = parser.add_argument
    add("--checkpoint-every", type=int, default=defaults.checkpoint_every, help="steps between checkpoints")
    add("--log-every", type=int, default=defaults.log_every, help="steps between log entries")
    add("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N (torchrun: each rank its local GPU)")
    add("--threads", type=int, default=defaults.threads, help="torch threads per process (default: torch's)")
    add("--no-resume", dest="resume", action="store_false", help="start afresh even if OUT_DIR has a checkpoint")


def config_from_args(config_class: type, args: argparse.Namespace) -> Any:
    """An instance of the config dataclass `config_class` from parsed options named like its fields."""
    return config_class(**{item.name: getattr(args, item.name) for item in fields(config_class)})
