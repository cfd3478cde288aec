"""Frame streams and on-disk datasets built from random scenes.

`flight` yields the frames of one drone flight (demo, sequence training). `make_dataset` caches frames
as npz shards: frame i depends only on (seed, i), shards are written atomically, and a rerun skips the
shards already there, so an interrupted run resumes and any run reproduces the same arrays.
`render_dataset` runs make_dataset in a child process, for processes that also use torch and Triton.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import multiprocessing
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .camera import Camera
from .config import SceneConfig
from .layout import Scene
from .motion import flight_cameras, random_camera
from .renderer import Frame, Renderer

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
CLIP_FPS = 10.0


def flight(seed: int, n_frames: int, fps: float, width: int, height: int,
           config: SceneConfig = SceneConfig(), renderer: Renderer | None = None) -> Iterator[Frame]:
    """Frames of a smooth drone flight through the scene of `seed`, at time stamps i / fps.

    Pass a `renderer` of the same size to reuse its GL context; otherwise one is made for the flight.
    """
    scene = Scene.random(seed, config)
    cameras = flight_cameras(scene, _rng(seed, "flight"), n_frames, fps, config)
    own = renderer is None
    renderer = renderer or Renderer(width, height)
    if (renderer.width, renderer.height) != (width, height):
        raise ValueError(f"flight: renderer is {renderer.width}x{renderer.height}, asked for {width}x{height}")
    try:
        for index, camera in enumerate(cameras):
            yield renderer.render(scene, camera, time_s=index / fps)
    finally:
        if own:
            renderer.close()


def _rng(seed: int, purpose: str, *indices: int) -> np.random.Generator:
    """An independent generator per (seed, purpose, indices)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *purpose.encode(), *indices]))


def _frame_camera(scene: Scene, seed: int, clip: int, index_in_clip: int, clip_len: int,
                  config: SceneConfig) -> Camera:
    """The camera of one dataset frame: a random view, or frame `index_in_clip` of the clip's flight."""
    if clip_len == 1:
        return random_camera(scene, _rng(seed, "view", clip), config)
    return flight_cameras(scene, _rng(seed, "clip", clip), clip_len, CLIP_FPS, config)[index_in_clip]


def make_dataset(out_dir: str | os.PathLike, n: int, seed: int, size: tuple[int, int] = (256, 256), *,
                 shard_size: int = 256, clip_len: int = 1, config: SceneConfig = SceneConfig(),
                 progress: Callable[[int, int], None] | None = None) -> Path:
    """Write n frames of (height, width) = size as npz shards under out_dir and return out_dir.

    Each shard `shard_NNNNN.npz` holds rgb (k, H, W, 3) uint8, depth_m (k, H, W) float32 (camera z-depth,
    +inf = sky), K (k, 3, 3) float32 and index (k,) int64. Consecutive runs of clip_len frames come from
    one scene: clip_len = 1 gives independent random views, more gives a flight at CLIP_FPS. The manifest
    records where the photo textures came from (null: procedural only), so that a resumed run cannot mix
    frames with and without them. `progress(frames_done, n)` is called after each shard.
    """
    height, width = size
    for name, value in (("n", n), ("shard_size", shard_size), ("clip_len", clip_len), ("height", height),
                        ("width", width)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"make_dataset {name}={value!r}: must be a positive integer")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"make_dataset seed={seed!r}: must be a non-negative integer")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_shards = -(-n // shard_size)
    with Renderer(width, height) as renderer:
        manifest = {"format": FORMAT_VERSION, "n": int(n), "seed": int(seed), "height": int(height),
                    "width": int(width), "shard_size": int(shard_size), "clip_len": int(clip_len),
                    "config": dataclasses.asdict(config), "photo_textures": renderer.photo_source}
        manifest = json.loads(json.dumps(manifest))   # tuples as lists, as they read back
        _write_or_check_manifest(out_dir / MANIFEST, manifest)
        scene = None
        for shard in range(n_shards):
            path = out_dir / f"shard_{shard:05d}.npz"
            indices = np.arange(shard * shard_size, min(n, (shard + 1) * shard_size))
            if not path.exists():
                frames = []
                for index in indices:
                    clip, index_in_clip = divmod(int(index), clip_len)
                    scene_seed = int(_rng(seed, "scene", clip).integers(2 ** 62))
                    if scene is None or scene.seed != scene_seed:
                        scene = Scene.random(scene_seed, config)
                    camera = _frame_camera(scene, seed, clip, index_in_clip, clip_len, config)
                    frames.append(renderer.render(scene, camera))
                _save_atomic(path, rgb=np.stack([f.rgb for f in frames]),
                             depth_m=np.stack([f.depth_m for f in frames]),
                             K=np.stack([f.K for f in frames]).astype(np.float32), index=indices.astype(np.int64))
            if progress is not None:
                progress(int(indices[-1]) + 1, n)
    return out_dir


def _write_or_check_manifest(path: Path, manifest: dict) -> None:
    """Write the manifest, or, resuming, refuse to mix frames made with different parameters."""
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: unreadable dataset manifest ({error})") from error
        for key in sorted(set(manifest) | set(existing)):
            if existing.get(key) != manifest.get(key):
                raise ValueError(f"{path}: dataset was made with {key}={existing.get(key)!r}, now asked for "
                                 f"{key}={manifest.get(key)!r}; use another out_dir or delete this one")
        return
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(manifest, indent=1))
    os.replace(temporary, path)


def _save_atomic(path: Path, **arrays: np.ndarray) -> None:
    temporary = path.with_name(path.stem + ".tmp.npz")
    np.savez(temporary, **arrays)
    os.replace(temporary, path)


def write_frames(out_dir: str | os.PathLike, frames: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
                 source: dict, shard_size: int = 256) -> int:
    """Write (rgb uint8 (H, W, 3), depth_m float32 (H, W), K (3, 3)) frames from elsewhere (a user's bag) as a
    frame folder that SceneDataset and depth training read, and return how many were written.

    depth_m follows the rendered frames' convention (+inf beyond range) plus NaN where there is no ground
    truth. `source` (plain data) goes into the manifest. The manifest is written last, so a folder without
    one is incomplete. Every frame must have the first one's size.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    size, written = None, 0

    def flush() -> None:
        nonlocal written
        rgb, depth_m, K = (np.stack(parts) for parts in zip(*pending))
        _save_atomic(out_dir / f"shard_{written // shard_size:05d}.npz", rgb=rgb, depth_m=depth_m.astype(np.float32),
                     K=K.astype(np.float32), index=np.arange(written, written + len(pending), dtype=np.int64))
        written += len(pending)
        pending.clear()

    for rgb, depth_m, K in frames:
        if size is None:
            size = depth_m.shape
        if rgb.shape != (*size, 3) or depth_m.shape != size:
            raise ValueError(f"write_frames: frame {written + len(pending)} is rgb {rgb.shape}, depth {depth_m.shape}; "
                             f"every frame must be {size[0]}x{size[1]} like the first")
        pending.append((rgb, depth_m, K))
        if len(pending) == shard_size:
            flush()
    if pending:
        flush()
    if size is None:
        raise ValueError("write_frames: no frames")
    manifest = {"format": FORMAT_VERSION, "n": written, "height": int(size[0]), "width": int(size[1]),
                "shard_size": int(shard_size), "source": source}
    _write_or_check_manifest(out_dir / MANIFEST, json.loads(json.dumps(manifest)))
    return written


class SceneDataset:
    """Random access to a dataset written by make_dataset: item i is (rgb, depth_m); one shard cached."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.root = Path(out_dir)
        manifest_path = self.root / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path}: no dataset manifest (run make_dataset first)")
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest.get("format") != FORMAT_VERSION:
            raise ValueError(f"{manifest_path}: format {self.manifest.get('format')!r}, expected {FORMAT_VERSION}")
        self._shard_size = self.manifest["shard_size"]
        self._cached: tuple[int, dict[str, np.ndarray]] | None = None

    def __len__(self) -> int:
        return self.manifest["n"]

    def shard(self, number: int) -> dict[str, np.ndarray]:
        """All arrays of shard `number` (rgb, depth_m, K, index)."""
        if self._cached is None or self._cached[0] != number:
            path = self.root / f"shard_{number:05d}.npz"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing shard (resume make_dataset to write it)")
            with np.load(path) as data:
                self._cached = number, {key: data[key] for key in data.files}
        return self._cached[1]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame {index} out of range for a dataset of {len(self)}")
        number, offset = divmod(index % len(self), self._shard_size)
        arrays = self.shard(number)
        return arrays["rgb"][offset], arrays["depth_m"][offset]


def _report_rendering(done: int, total: int, root: str) -> None:
    print(f"scenes: {done}/{total} frames in {root}", flush=True)


def _dataset_complete(root: Path, n: int, seed: int, size: tuple[int, int], config: SceneConfig) -> bool:
    """True when `root` holds all n frames of (seed, size, config), so that no renderer needs to start."""
    try:
        manifest = SceneDataset(root).manifest
    except (FileNotFoundError, ValueError):
        return False
    if (manifest["n"], manifest["seed"], manifest["height"], manifest["width"]) != (n, seed, *size) or \
            manifest["config"] != json.loads(json.dumps(dataclasses.asdict(config))):
        return False
    return all((root / f"shard_{shard:05d}.npz").is_file() for shard in range(-(-n // manifest["shard_size"])))


def render_dataset(root: str | os.PathLike, n: int, seed: int, size: tuple[int, int],
                   config: SceneConfig = SceneConfig()) -> Path:
    """make_dataset(root, n, seed, size, config=config) in a fresh child process; a complete cache is only
    checked.

    The child keeps OpenGL out of this process: Mesa's llvmpipe and Triton each load their own LLVM, and
    importing Triton (which torch does lazily, e.g. in the optimizer) after a GL context existed crashes.
    """
    if _dataset_complete(Path(root), n, seed, size, config):
        return Path(root)
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=make_dataset, args=(str(root), n, seed, tuple(size)),
                            kwargs={"config": config,
                                    "progress": functools.partial(_report_rendering, root=str(root))})
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"rendering scenes into {root} failed (exit code {child.exitcode}; its error is above)")
    return Path(root)
