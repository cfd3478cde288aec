"""Evaluation of a depth model with the relative-depth protocol (MiDaS), next to two priors.

Per image, over the pixels with ground truth: the prediction p (relative inverse depth; a metric model's
depth is inverted first) is aligned to the ground-truth disparity t by least squares, p' = s p + b, clamped
from below at 1 / depth cap, and turned into depth 1 / p'. Then AbsRel = mean |d' - d| / d and
delta1 = fraction of max(d' / d, d / d') < 1.25, with d = 1 / t; both are averaged over images. The fit may
flip the prediction (s < 0); `positive_scale` is the share of images where it did not.

Sets:
* "synthetic": held-out frames rendered by make_dataset with seed SYNTHETIC_SEED, every scene kind equally
  often (or the kinds asked for: `synthetic_kinds`). A dataset's scenes are
  seeded from SeedSequence([dataset seed, "scene", frame]) with 62-bit draws, so frames of two dataset seeds
  come from different scenes (a collision has probability below 1e-10), and an evaluation refuses a
  checkpoint whose training data used SYNTHETIC_SEED. Pixels count when their depth is in (1 mm, 80 m]:
  80 m is the KITTI cap, fitting outdoor drone views; the sky and anything farther are left out.
* "aloe" and "motorcycle": real Middlebury views (middlebury.py). Their ground truth is disparity (Aloe's in
  an unknown affine convention), so it is used as t directly (the affine fit absorbs the convention) and the
  cap is the farthest ground-truth point (the smallest known disparity).

The priors are evaluated with the same code in the same run: "constant" (one value everywhere; the fit
makes it the mean disparity) and "row" (disparity growing linearly towards the bottom row, the ground-plane
guess). A `reference` checkpoint (say, the model a new one should replace) is scored on the same images
too. Results go to JSON and one Markdown table.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from xlstm_ros.engines.depth import DEFAULT_CHECKPOINT, DepthEstimator
from xlstm_ros.models.depth import METRIC, load_depth_checkpoint
from xlstm_ros.eval.depth_picture import depth_picture
from xlstm_ros.eval.middlebury import ALOE_DIR, PairMissingError, RealPair, load_aloe, load_motorcycle
from xlstm_ros.metrics import relative_depth_metrics
from xlstm_ros.options import option, parse_config, parse_names, parse_size
from xlstm_ros.sim.scenes import KINDS, SceneConfig, SceneDataset, render_dataset
from xlstm_ros.sim.scenes.dataset import FORMAT_VERSION

SETS = ("synthetic", "aloe", "motorcycle")
SYNTHETIC_SEED = 424_242
SYNTHETIC_FRAMES = 200
SYNTHETIC_SIZE = (192, 256)
SYNTHETIC_DEPTH_CAP_M = 80.0
MIN_DEPTH_M = 1e-3
MODEL = "model"
REFERENCE = "reference"
PICTURE_NAME = "depth_real_views.png"
PRIORS: dict[str, Callable[[int, int], np.ndarray]] = {
    "constant prior": lambda height, width: np.ones((height, width)),
    "row prior": lambda height, width: np.repeat(np.arange(height, dtype=np.float64)[:, None], width, axis=1),
}


@dataclass(frozen=True)
class EvalItem:
    """One evaluation image: uint8 RGB, ground-truth disparity, its mask and the disparity clamp."""

    rgb: np.ndarray
    disparity: np.ndarray
    mask: np.ndarray
    min_disparity: float


def default_cache_dir() -> Path:
    """Where rendered evaluation scenes are kept: $XDG_CACHE_HOME/xlstm_ros/scenes (~/.cache by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xlstm_ros" / "scenes"


def synthetic_items(n: int, seed: int, size: tuple[int, int], cache_dir: str | os.PathLike | None = None,
                    kinds: Sequence[str] = KINDS) -> Iterator[EvalItem]:
    """Held-out rendered frames of scene `kinds`, drawn equally often (made once into the cache); pixels with
    depth in (MIN_DEPTH_M, cap] count."""
    config = SceneConfig(kinds=tuple(kinds), kind_weights=(1.0,) * len(kinds))
    name = f"depth_eval_v{FORMAT_VERSION}_{'-'.join(kinds)}_seed{seed}_n{n}_{size[0]}x{size[1]}"
    dataset = SceneDataset(render_dataset(Path(cache_dir or default_cache_dir()) / name, n, seed, size, config))
    for index in range(len(dataset)):
        rgb, depth_m = dataset[index]
        mask = np.isfinite(depth_m) & (depth_m > MIN_DEPTH_M) & (depth_m <= SYNTHETIC_DEPTH_CAP_M)
        disparity = np.where(mask, 1.0 / np.where(mask, depth_m, 1.0), 0.0)
        yield EvalItem(rgb, disparity, mask, 1.0 / SYNTHETIC_DEPTH_CAP_M)


def real_items(pair: RealPair) -> Iterator[EvalItem]:
    """A real view with its ground-truth disparity as the target (module docstring)."""
    yield EvalItem(pair.rgb, pair.disparity, pair.valid, float(pair.disparity[pair.valid].min()))


def score_set(estimators: Mapping[str, DepthEstimator], items: Iterator[EvalItem], batch_size: int) -> dict:
    """Mean scores of the models ({row name: estimator}) and the priors over `items`, the image count, and how
    many images had fewer than two pixels with ground truth (an all-sky view) and were skipped."""
    per_image: dict[str, list[dict[str, float]]] = {name: [] for name in (*estimators, *PRIORS)}
    batch: list[EvalItem] = []
    skipped = 0

    def flush() -> None:
        for name, estimator in estimators.items():
            for item, result in zip(batch, estimator.estimate([item.rgb for item in batch])):
                prediction = result.depth if estimator.kind != METRIC else 1.0 / np.maximum(result.depth, 1e-6)
                per_image[name].append(relative_depth_metrics(prediction, item.disparity, item.mask,
                                                              item.min_disparity))
        for item in batch:
            for name, prior in PRIORS.items():
                per_image[name].append(relative_depth_metrics(prior(*item.disparity.shape), item.disparity,
                                                              item.mask, item.min_disparity))
        batch.clear()

    for item in items:
        if item.mask.sum() < 2:
            skipped += 1
            continue
        batch.append(item)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    count = len(per_image[next(iter(estimators))])
    if count == 0:
        raise ValueError("no evaluation image has ground truth")
    scores = {name: {key: float(np.mean([entry[key] for entry in entries])) for key in entries[0]}
              for name, entries in per_image.items()}
    return {"images": count, "skipped_images": skipped, "scores": scores}


def evaluate_depth(checkpoint_or_estimator: str | os.PathLike | DepthEstimator | None = None,
                   sets: Sequence[str] = SETS, *, reference: str | os.PathLike | None = None,
                   n_synthetic: int = SYNTHETIC_FRAMES,
                   synthetic_seed: int = SYNTHETIC_SEED, synthetic_size: tuple[int, int] = SYNTHETIC_SIZE,
                   synthetic_kinds: Sequence[str] = KINDS,
                   cache_dir: str | os.PathLike | None = None, aloe_dir: str | os.PathLike = ALOE_DIR,
                   device: str = "auto", batch_size: int = 8,
                   out_dir: str | os.PathLike | None = None, picture: bool = False) -> dict:
    """Evaluate a checkpoint (None: the shipped default) or a ready DepthEstimator on `sets`, next to the
    priors and, if given, the `reference` checkpoint.

    A set whose data are missing (Aloe without opencv-doc, Motorcycle without scikit-image) is reported as skipped with the reason. Returns
    the JSON content; with `out_dir`, also writes depth_eval.json and depth_eval.md there, and with `picture`
    the side-by-side PICTURE_NAME of the models on the real views that are installed (depth_picture.py).
    """
    unknown = [name for name in sets if name not in SETS]
    if unknown or not sets:
        raise ValueError(f"sets: unknown or empty {unknown or list(sets)} (known: {', '.join(SETS)})")
    if batch_size < 1 or n_synthetic < 1:
        raise ValueError(f"batch_size ({batch_size}) and n_synthetic ({n_synthetic}) must be >= 1")
    started = time.perf_counter()
    if isinstance(checkpoint_or_estimator, DepthEstimator):
        estimator, name, meta = checkpoint_or_estimator, "DepthEstimator", {}
    else:
        path = Path(checkpoint_or_estimator) if checkpoint_or_estimator is not None else DEFAULT_CHECKPOINT
        model, meta = load_depth_checkpoint(path)
        estimator, name = DepthEstimator(model, device=device), str(path)
    estimators = {MODEL: estimator}
    checked = [(name, meta)]
    if reference is not None:
        reference_model, reference_meta = load_depth_checkpoint(reference)
        estimators[REFERENCE] = DepthEstimator(reference_model, device=device)
        checked.append((str(reference), reference_meta))
    for checked_name, checked_meta in checked:
        train_config = checked_meta.get("train_config")
        train_seed = train_config.get("data_seed") if isinstance(train_config, dict) else None
        if "synthetic" in sets and train_seed == synthetic_seed:
            raise ValueError(f"{checked_name} was trained on scenes of seed {train_seed}, the held-out evaluation "
                             "seed; pass another synthetic_seed")
    real_views: dict[str, Callable[[], RealPair]] = {"aloe": lambda: load_aloe(aloe_dir), "motorcycle": load_motorcycle}
    loaders: dict[str, Callable[[], Iterator[EvalItem]]] = {
        "synthetic": lambda: synthetic_items(n_synthetic, synthetic_seed, synthetic_size, cache_dir, synthetic_kinds),
        **{name: (lambda load=load: real_items(load())) for name, load in real_views.items()}}
    descriptions = {
        "synthetic": {"seed": synthetic_seed, "size": list(synthetic_size), "kinds": list(synthetic_kinds),
                      "scene_format": FORMAT_VERSION, "depth_cap_m": SYNTHETIC_DEPTH_CAP_M},
        "aloe": {"source": str(Path(aloe_dir) / "aloeL.jpg"), "depth_cap": "farthest ground-truth point"},
        "motorcycle": {"source": "skimage.data.stereo_motorcycle (Middlebury 2014)",
                       "depth_cap": "farthest ground-truth point"}}
    results = {}
    for set_name in sets:
        try:
            results[set_name] = {**descriptions[set_name], **score_set(estimators, loaders[set_name](), batch_size)}
        except PairMissingError as error:
            results[set_name] = {**descriptions[set_name], "skipped": str(error)}
    result = {"model": name, "kind": estimator.kind, "short_side": estimator.short_side,
              "reference": None if reference is None else {"model": str(reference),
                                                           "short_side": estimators[REFERENCE].short_side},
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "wall_time_s": round(time.perf_counter() - started, 1), "sets": results}
    if out_dir is not None:
        write_report(result, out_dir)
        if picture:
            views = {name: load() for name, load in real_views.items()
                     if name in sets and "skipped" not in results[name]}
            labels = {MODEL: f"model ({Path(name).name})"}
            if reference is not None:
                labels[REFERENCE] = f"reference ({Path(reference).name})"
            depth_picture({labels[key]: value for key, value in estimators.items()}, views,
                          Path(out_dir) / PICTURE_NAME)
    return result


def write_report(result: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """depth_eval.json and depth_eval.md in out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "depth_eval.json", out_dir / "depth_eval.md"
    json_path.write_text(json.dumps(result, indent=1))
    md_path.write_text(markdown_report(result))
    return json_path, md_path


def markdown_report(result: dict) -> str:
    """One table: a row per model/prior, AbsRel (lower is better) and delta1 (higher is better) per set."""
    sets = result["sets"]
    reference = result.get("reference")
    names = (MODEL, *([REFERENCE] if reference else []), *PRIORS)
    lines = [f"# Depth evaluation: {result['model']}", "",
             f"{result['created']}, wall time {result['wall_time_s']} s. Relative-depth protocol: per-image "
             "least-squares scale and shift in disparity, then AbsRel (lower is better) and delta1 < 1.25 "
             "(higher is better) on pixels with ground truth, averaged over images.", ""]
    header = "| | " + " | ".join(f"{s} AbsRel | {s} δ1" for s in sets) + " |"
    lines += [header, "|" + "---|" * (1 + 2 * len(sets))]
    for name in names:
        cells = []
        for entry in sets.values():
            score = entry.get("scores", {}).get(name)
            cells.append(f"{score['abs_rel']:.3f} | {score['delta1']:.3f}" if score else "skipped | skipped")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"- model: {result['model']} (input short side {result['short_side']})")
    if reference:
        lines.append(f"- reference: {reference['model']} (input short side {reference['short_side']})")
    for set_name, entry in sets.items():
        if "skipped" in entry:
            lines.append(f"- {set_name}: skipped ({entry['skipped']})")
        else:
            details = ", ".join(f"{k} {v}" for k, v in entry.items() if k not in ("scores",))
            kept = entry["scores"][MODEL]["positive_scale"]
            row = entry["scores"]["row prior"]
            lines.append(f"- {set_name}: {details}; the model's orientation (larger = nearer) was kept by the "
                         f"fit on {100 * kept:.0f}% of the images; its AbsRel is "
                         f"{entry['scores'][MODEL]['abs_rel'] / row['abs_rel']:.2f}x the row prior's")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DepthEvalOptions:
    """The options of `xlstm-ros eval depth`."""

    checkpoint: str | None = option(None, "depth checkpoint (default: the shipped model)")
    reference: str | None = option(None, "a second depth checkpoint scored on the same images (e.g. the model "
                                   "the first should replace)")
    sets: tuple[str, ...] = option(SETS, f"comma-separated: {', '.join(SETS)}", parse=parse_names)
    n_synthetic: int = option(SYNTHETIC_FRAMES, "held-out rendered frames")
    synthetic_seed: int = option(SYNTHETIC_SEED, "seed of the held-out scenes")
    synthetic_size: tuple[int, int] = option(SYNTHETIC_SIZE, "rendered HxW", parse=parse_size, metavar="HxW")
    synthetic_kinds: tuple[str, ...] = option(KINDS, f"comma-separated scene kinds of the held-out frames "
                                              f"({', '.join(KINDS)})", parse=parse_names)
    cache_dir: str | None = option(None, "rendered scene cache (default ~/.cache/xlstm_ros/scenes)")
    aloe_dir: str = option(str(ALOE_DIR), "folder with aloeL.jpg and aloeGT.png")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    threads: int | None = option(None, "torch threads (default: torch's)")
    out_dir: str = option("out/eval_depth", "depth_eval.json and depth_eval.md go here")
    picture: bool = option(False, f"also draw {PICTURE_NAME}: image, ground truth and the model(s) on the real views")


def run(options: DepthEvalOptions) -> dict:
    """Evaluate as `options` say, write the reports and print the table."""
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    result = evaluate_depth(options.checkpoint, options.sets, reference=options.reference,
                            n_synthetic=options.n_synthetic,
                            synthetic_seed=options.synthetic_seed, synthetic_size=options.synthetic_size,
                            synthetic_kinds=options.synthetic_kinds,
                            cache_dir=options.cache_dir, aloe_dir=options.aloe_dir, device=options.device,
                            out_dir=options.out_dir, picture=options.picture)
    print(markdown_report(result))
    return result


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    run(parse_config(DepthEvalOptions, argv, prog, "Evaluate a depth checkpoint (AbsRel, delta1) on held-out "
                     "synthetic scenes and the real Middlebury Aloe and Motorcycle views, next to two priors."))


if __name__ == "__main__":
    main()
