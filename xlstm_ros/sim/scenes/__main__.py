"""`python -m xlstm_ros.sim.scenes`: write a sample montage (rgb | coloured depth) and time rendering."""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from .config import KINDS, SceneConfig
from .dataset import flight
from .layout import Scene
from .motion import random_camera
from .renderer import Frame, Renderer


def colorize_depth(depth_m: np.ndarray) -> np.ndarray:
    """RGB uint8 picture of inverse depth (near = warm), scaled per image; the sky is black."""
    valid = np.isfinite(depth_m)
    inverse = np.where(valid, 1.0 / np.maximum(depth_m, 1e-6), 0.0)
    top = np.percentile(inverse[valid], 99) if valid.any() else 1.0
    levels = (np.clip(inverse / top, 0.0, 1.0) * 255).astype(np.uint8)
    rgb = cv2.applyColorMap(levels, cv2.COLORMAP_TURBO)[..., ::-1]
    return np.where(valid[..., None], rgb, 0).astype(np.uint8)


def montage(path: str, width: int, height: int, per_kind: int, kinds: tuple[str, ...] = KINDS) -> None:
    """One row per kind of random views (each rgb above its coloured depth), then a row of frames one second
    apart along a flight."""
    rows = []
    with Renderer(width, height) as renderer:
        for row, kind in enumerate(kinds):
            config = SceneConfig(kinds=(kind,), kind_weights=(1.0,))
            tiles = []
            for column in range(per_kind):
                seed = 1000 * row + column
                scene = Scene.random(seed, config)
                frame = renderer.render(scene, random_camera(scene, np.random.default_rng(seed), config))
                tiles.append(_tile(frame))
            rows.append(np.concatenate(tiles, 1))
        frames = list(flight(7, 1 + 10 * (per_kind - 1), 10.0, width, height, renderer=renderer))[::10]
        rows.append(np.concatenate([_tile(f) for f in frames], 1))
    cv2.imwrite(path, np.concatenate(rows, 0)[..., ::-1])
    print(f"wrote {path} (photo textures: {renderer.photo_source or 'none, procedural only'})")


def _tile(frame: Frame) -> np.ndarray:
    """The frame's rgb above its coloured depth, labelled with the depth range."""
    depth = colorize_depth(frame.depth_m)
    finite = frame.depth_m[frame.valid]
    if finite.size:
        label = f"{finite.min():.2f}-{finite.max():.1f} m"
        cv2.putText(depth, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([frame.rgb, depth], 0)


def benchmark(width: int, height: int, n_frames: int, kinds: tuple[str, ...] = KINDS) -> None:
    """ms per frame for each kind: rendering a new random view of an already built scene (wall clock and
    CPU time of all threads, llvmpipe's included), and building the scene."""
    with Renderer(width, height) as renderer:
        for kind in kinds:
            config = SceneConfig(kinds=(kind,), kind_weights=(1.0,))
            render_s, cpu_s, build_s = [], [], []
            for seed in range(n_frames + 1):
                start = time.perf_counter()
                scene = Scene.random(seed, config)
                built = time.perf_counter()
                camera = random_camera(scene, np.random.default_rng(seed), config)
                renderer.render(scene, camera)                  # uploads the scene
                uploaded, cpu = time.perf_counter(), time.process_time()
                renderer.render(scene, camera)
                if seed:                                        # the first frame includes shader compilation
                    build_s.append(built - start)
                    render_s.append(time.perf_counter() - uploaded)
                    cpu_s.append(time.process_time() - cpu)
            print(f"{kind:>9} {width}x{height}: render {1e3 * np.median(render_s):.1f} ms/frame (median of "
                  f"{n_frames}, p90 {1e3 * np.percentile(render_s, 90):.1f}; CPU {1e3 * np.median(cpu_s):.1f} ms), "
                  f"scene build {1e3 * np.median(build_s):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--montage", default="/tmp/scenes_montage.png", help="output PNG ('' to skip)")
    parser.add_argument("--size", default="192x256", help="montage tile HxW")
    parser.add_argument("--per-kind", type=int, default=4, help="random views per scene kind")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated scene kinds to show and time")
    parser.add_argument("--bench", default="", help="comma-separated HxW sizes to time, e.g. 256x256,480x640")
    parser.add_argument("--bench-frames", type=int, default=20)
    args = parser.parse_args()
    if args.montage:
        height, width = (int(v) for v in args.size.split("x"))
        montage(args.montage, width, height, args.per_kind, tuple(args.kinds.split(",")))
    for size in filter(None, args.bench.split(",")):
        height, width = (int(v) for v in size.split("x"))
        benchmark(width, height, args.bench_frames, tuple(args.kinds.split(",")))


if __name__ == "__main__":
    main()
