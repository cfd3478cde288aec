"""What every training run of this package shares besides its model, data and loss: one loop, one resume layout.

* `TrainConfig`: the config fields of every run (run options, optimisation schedule); those declared with
  `operational` may change when a run resumes.
* `Process` / `start_run`: this process's rank, world size and device; under torchrun (WORLD_SIZE > 1) the
  process joins the process group (NCCL on CUDA, Gloo on the CPU), and the collectives it needs (barrier,
  gather, mean over ranks) become no-ops in a single process.
* `parameter_groups`, `learning_rate`: AdamW groups with weight decay on matrices only; linear warm-up, then
  cosine decay to a floor at the last step.
* `run_training`: the step loop (schedule, backward, clipping, logging, evaluation, progress, checkpoints).
* The resume layout, the same for every model: in `out_dir`, the model file in its own format (`ModelFile`:
  the file users load, with a small meta entry: step, finished, wall time, the run's config) and
  `training_state.pt` (optimizer, step, per-rank random generator states, history), written atomically in
  that order every `checkpoint_every` steps and at the end; a resume checks that both hold the same step.
  `log.json` and the loss picture `loss.png` follow each checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, NamedTuple, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from xlstm_ros.engines.device import select_device
from xlstm_ros.models.checkpoints import CheckpointError, load_checkpoint, load_into, save_checkpoint, state_dict_of
from xlstm_ros.options import option, parse_config

STATE_NAME = "training_state.pt"
STATE_FORMAT = "xlstm_ros.training/1"
LOG_NAME = "log.json"
CURVE_NAME = "loss.png"


# ---------------------------------------------------------------------------------------------------------
# Run options


def operational(default: Any, help: str, **kwargs: Any) -> Any:
    """An option() field that may change between a run and its resumption without changing what it computes."""
    return option(default, help, operational=True, **kwargs)


@dataclass(frozen=True)
class TrainConfig:
    """The fields every training config has: where and how the run is carried out, and the optimisation
    schedule. Trainers subclass it with their model and data fields and redeclare defaults that differ."""

    out_dir: str = operational("out/train", "the model file, training_state.pt, log.json and loss.png go here")
    data_dir: str | None = operational(None, "training data cache (default: a folder in OUT_DIR)")
    steps: int = option(1000, "optimizer steps")
    batch_size: int = option(8, "samples per step and process")
    lr: float = option(1e-3, "peak AdamW learning rate")
    min_lr_ratio: float = option(0.05, "final learning rate / peak (the cosine schedule ends there)")
    warmup_steps: int = option(100, "linear warm-up steps")
    weight_decay: float = option(0.05, "AdamW weight decay (matrices only)")
    grad_clip: float = option(1.0, "gradient norm clip")
    seed: int = option(0, "seed of initialisation, batch sampling and augmentation")
    checkpoint_every: int = operational(250, "steps between checkpoints")
    log_every: int = operational(10, "steps between log entries")
    device: str = operational("auto", "auto, cpu, cuda or cuda:N (torchrun: each rank its local GPU)")
    threads: int | None = operational(None, "torch threads per process (default: torch's)")
    resume: bool = operational(True, "continue from OUT_DIR when it holds a checkpoint of this run")

    def __post_init__(self) -> None:
        name = type(self).__name__
        for key in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if isinstance(getattr(self, key), bool) or int(getattr(self, key)) != getattr(self, key) \
                    or getattr(self, key) < 1:
                raise ValueError(f"{name}.{key} must be a positive integer, got {getattr(self, key)!r}")
        for key in ("seed", "warmup_steps"):
            if getattr(self, key) < 0:
                raise ValueError(f"{name}.{key} must be >= 0, got {getattr(self, key)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"{name}.threads must be >= 1 or None, got {self.threads}")
        for key in ("lr", "grad_clip"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{name}.{key} must be > 0, got {getattr(self, key)}")
        if not self.weight_decay >= 0:
            raise ValueError(f"{name}.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"{name}.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists for tuples), as stored in checkpoints and logs."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def operational_fields(config_class: type) -> frozenset[str]:
    """The names of the fields of `config_class` declared with operational()."""
    return frozenset(f.name for f in dataclasses.fields(config_class) if f.metadata.get("operational"))


# ---------------------------------------------------------------------------------------------------------
# Processes


@dataclass(frozen=True)
class Process:
    """This process's place in the run (rank 0 of 1 when not started by torchrun) and its device."""

    rank: int
    world_size: int
    device: torch.device
    joined_group: bool = False          # True when start_run initialised the process group

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
        """Destroy the process group if start_run created it (a group joined earlier stays)."""
        if self.joined_group:
            dist.destroy_process_group()


def start_run(config: TrainConfig) -> Process:
    """Set the torch threads, join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, Gloo on the
    CPU) and create `out_dir` on rank 0.

    `config.device` is select_device's choice (auto, cpu, cuda, cuda:N); under torchrun a CUDA rank takes
    the GPU LOCAL_RANK.
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    process = _join(select_device(config.device))
    if process.is_main:
        Path(config.out_dir).mkdir(parents=True, exist_ok=True)
    return process


def _join(device: torch.device) -> Process:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Process(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Process(dist.get_rank(), dist.get_world_size(), device, joined)


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
    """What a finished run produced: the model file, the training state a resume reads, the last numbers."""

    model_path: Path
    state_path: Path
    steps: int
    final_loss: float
    wall_time_s: float
    final_validation: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------
# The resume layout


class ModelFile(NamedTuple):
    """How a trainer writes its model: the file name in out_dir, `save(model, path, meta)` in the model's own
    format, and `meta_of(payload)`, the meta dict of a loaded file."""

    name: str
    save: Callable[[nn.Module, Path, dict[str, Any]], Path]
    meta_of: Callable[[Mapping[str, Any]], Mapping[str, Any]]


def save_training(out_dir: Path, model_file: ModelFile, model: nn.Module, optimizer: torch.optim.Optimizer,
                  config: TrainConfig, step: int, history: list[dict[str, float]], wall_time_s: float,
                  rng_states: Sequence[torch.Tensor] = ()) -> Path:
    """Write the model file (with its meta) and then training_state.pt; returns the model file's path."""
    meta = {"step": step, "finished": step == config.steps, "wall_time_s": round(wall_time_s, 1),
            "train_config": config.to_dict()}
    model_path = model_file.save(model, out_dir / model_file.name, meta)
    save_checkpoint({"format": STATE_FORMAT, "step": step, "optimizer": optimizer.state_dict(),
                     "rng": list(rng_states), "train_config": config.to_dict(), "history": history,
                     "wall_time_s": wall_time_s}, out_dir / STATE_NAME)
    return model_path


def load_training(out_dir: Path, model_file: ModelFile, model: nn.Module, optimizer: torch.optim.Optimizer,
                  config: TrainConfig) -> dict[str, Any]:
    """Restore weights and optimizer from out_dir in place; returns the training state (step, rng, history).

    Refuses (CheckpointError) a state of another format, a run whose non-operational settings changed, and
    a model file whose step differs from the state's (an interrupted save)."""
    model_path, state_path = out_dir / model_file.name, out_dir / STATE_NAME
    state = load_checkpoint(state_path)
    if state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{state_path}: not a training state of this package (format {state.get('format')!r}, "
                              f"expected {STATE_FORMAT!r})")
    check_resumable(state["train_config"], config.to_dict(), operational_fields(type(config)), state_path)
    payload = load_checkpoint(model_path)
    model_step = model_file.meta_of(payload).get("step")
    if model_step != state["step"]:
        raise CheckpointError(f"{model_path} holds step {model_step} but {state_path} step {state['step']}: "
                              "the run was interrupted while saving; delete both to restart")
    load_into(model, state_dict_of(payload, model_path), model_path)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{state_path}: optimizer state does not fit the model ({error})") from error
    return state


# ---------------------------------------------------------------------------------------------------------
# The step loop


class StepOutput(NamedTuple):
    """One training step's loss to minimise and the plain numbers logged next to it (averaged per entry)."""

    loss: torch.Tensor
    terms: dict[str, float]


@dataclass(frozen=True)
class LogSpec:
    """How a run reports: the loss picture's curves and y label, the throughput key and unit (of the
    batch items: windows, images) and the terms a progress line shows."""

    curves: Sequence[Curve]
    rate_key: str
    rate_unit: str
    progress_terms: Sequence[str] = ()
    ylabel: str | None = None


def run_training(config: TrainConfig, process: Process, model: nn.Module, optimizer: torch.optim.Optimizer,
                 step_fn: Callable[[nn.Module, int], StepOutput], model_file: ModelFile, log: LogSpec, *,
                 generator: torch.Generator | None = None,
                 evaluate: Callable[[], dict[str, float]] | None = None, eval_every: int = 0,
                 on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainSummary:
    """Train `model` from step 0, or from the checkpoint in out_dir when `config.resume`, to `config.steps`.

    step_fn(module, step) computes one step's loss on `module` (the model, or its DDP wrapper under torchrun);
    this loop sets the learning rate, back-propagates, clips the gradient norm to `config.grad_clip` and
    steps the optimizer. `generator` (the run's augmentation RNG, if any) is saved per rank and restored.
    On rank 0, `evaluate()` adds validation numbers to the log entry every `eval_every` steps and at the end,
    and on_step(step, numbers) is called after every step (progress displays; tests interrupt runs with it).
    """
    out_dir = Path(config.out_dir)
    steps = config.steps
    start_step, history, wall_before = 0, [], 0.0
    if config.resume and (out_dir / STATE_NAME).is_file():
        state = load_training(out_dir, model_file, model, optimizer, config)
        start_step, history, wall_before = int(state["step"]), list(state["history"]), float(state["wall_time_s"])
        if generator is not None and len(state["rng"]) == process.world_size:
            generator.set_state(state["rng"][process.rank])
        if process.is_main:
            print(f"resuming {out_dir / model_file.name} at step {start_step}", flush=True)
    trained = model if process.world_size == 1 else nn.parallel.DistributedDataParallel(model)
    progress = Progress(steps, start_step, process.is_main, rate_key=log.rate_key, rate_unit=log.rate_unit,
                        terms=log.progress_terms)
    window: list[list[float]] = []
    started = window_start = time.perf_counter()
    wall_time_s = wall_before

    trained.train()
    try:
        for step in range(start_step, steps):
            rate = learning_rate(step, lr=config.lr, steps=steps, warmup_steps=config.warmup_steps,
                                 min_lr_ratio=config.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = rate
            output = step_fn(trained, step)
            optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip))
            optimizer.step()
            done = step + 1
            numbers = {"loss": output.loss.item(), "grad_norm": grad_norm, **output.terms}
            window.append(list(numbers.values()))
            wall_time_s = wall_before + time.perf_counter() - started
            entry = None
            if done % config.log_every == 0 or done == steps:
                means = process.mean_over_ranks(np.mean(window, axis=0).tolist())
                now = time.perf_counter()
                entry = {"step": done, **dict(zip(numbers, means)), "lr": optimizer.param_groups[0]["lr"],
                         log.rate_key: len(window) * config.batch_size * process.world_size
                         / max(now - window_start, 1e-9), "elapsed_s": round(wall_time_s, 1)}
                if evaluate is not None and process.is_main and (done % eval_every == 0 or done == steps):
                    model.eval()
                    entry.update(evaluate())
                    model.train()
                history.append(entry)
                window, window_start = [], now
            if process.is_main:
                progress.update(done, entry)
                if on_step is not None:
                    on_step(done, numbers)
            if done % config.checkpoint_every == 0 or done == steps:
                rng_states = process.gather(generator.get_state()) if generator is not None else []
                if process.is_main:
                    save_training(out_dir, model_file, model, optimizer, config, done, history, wall_time_s,
                                  rng_states)
                    write_log(out_dir, config.to_dict(), history, wall_time_s, finished=done == steps,
                              curves=log.curves, ylabel=log.ylabel)
                process.barrier()
    finally:
        progress.close()
    process.leave()
    last = history[-1] if history else {}
    return TrainSummary(model_path=out_dir / model_file.name, state_path=out_dir / STATE_NAME, steps=steps,
                        final_loss=last.get("loss", float("nan")), wall_time_s=wall_time_s,
                        final_validation={key: value for key, value in last.items() if key.startswith("val_")})


def command_line(config_class: type, train: Callable[[Any], TrainSummary], description: str,
                 argv: Sequence[str] | None = None, prog: str | None = None) -> TrainSummary:
    """Parse one option per field of `config_class`, run `train` on the config and print what it produced."""
    summary = train(parse_config(config_class, argv, prog, description))
    if int(os.environ.get("RANK", "0")) == 0:
        validation = f" {summary.final_validation}" if summary.final_validation else ""
        print(f"done: {summary.steps} steps, final loss {summary.final_loss:.4f}{validation}, "
              f"{summary.wall_time_s:.0f} s; model {summary.model_path}")
    return summary
