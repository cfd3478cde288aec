"""RGB-D training frames from a user's rosbag2: camera images paired with their aligned depth images.

Depth images follow REP 118: 16UC1 (or mono16) in millimetres with 0 = no reading, or 32FC1 in metres with
NaN = no reading, -inf = too close, +inf = too far. Pixels without a reading become NaN (masked out of the
loss); +inf stays +inf (disparity 0, the farthest, as the rendered sky). An image and a depth image pair up
when their header stamps are within `max_stamp_diff_s`; the depth must be registered to the camera, so the
two have the same size. Everything a bag can get wrong raises BagFramesError with what to change.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from xlstm_ros.nodes.image_conv import ImageConversionError, image_to_numpy, image_to_rgb8
from xlstm_ros.sim.scenes import write_frames

IMAGE_TYPE = "sensor_msgs/msg/Image"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


class BagFramesError(ValueError):
    """The bag cannot give training frames (missing topic, wrong type or encoding, sizes, no valid depth)."""


@dataclass(frozen=True)
class BagFrameSummary:
    """What `extract_depth_frames` wrote: frames, their size, valid depth share, images left unpaired."""

    frames: int
    height: int
    width: int
    valid_share: float
    unpaired_images: int


def depth_in_metres(msg: Any) -> np.ndarray:
    """A REP 118 depth image as float32 metres: NaN where there is no reading, +inf beyond range."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise BagFramesError(f"depth image encoding '{msg.encoding}' is not a depth encoding "
                             f"(REP 118: 16UC1 in millimetres or 32FC1 in metres)")
    array = image_to_numpy(msg)
    if msg.encoding == "32FC1":
        depth = array.astype(np.float32)
        depth[np.isnan(depth) | (depth <= 0)] = np.nan      # no reading, or -inf (too close)
        return depth
    depth = array.astype(np.float32) / 1000.0
    depth[array == 0] = np.nan
    return depth


def _stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _check_topic(types: dict[str, str], topic: str, expected: str, role: str) -> None:
    if topic not in types:
        listing = ", ".join(f"{t} ({k})" for t, k in sorted(types.items())) or "none"
        raise BagFramesError(f"{role} topic '{topic}' is not in the bag; its topics: {listing}")
    if types[topic] != expected:
        raise BagFramesError(f"{role} topic '{topic}' has type {types[topic]}, expected {expected}")


def extract_depth_frames(bag: str | Path, out_dir: str | Path, image_topic: str, depth_topic: str,
                         camera_info_topic: str | None = None, max_stamp_diff_s: float = 0.02) -> BagFrameSummary:
    """Write the bag's (image, depth) pairs as a frame folder (sim.scenes.write_frames) and summarise them."""
    bag = Path(bag)
    if not bag.exists():
        raise BagFramesError(f"bag '{bag}' does not exist")
    if not max_stamp_diff_s >= 0:
        raise BagFramesError(f"max_stamp_diff_s must be >= 0, got {max_stamp_diff_s}")
    store = get_typestore(Stores.ROS2_KILTED)
    with Reader(bag) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        _check_topic(types, image_topic, IMAGE_TYPE, "image")
        _check_topic(types, depth_topic, IMAGE_TYPE, "depth")
        if camera_info_topic is not None:
            _check_topic(types, camera_info_topic, CAMERA_INFO_TYPE, "camera info")

        def messages(topic: str) -> Iterator[Any]:
            connections = [c for c in reader.connections if c.topic == topic]
            for connection, _, data in reader.messages(connections=connections):
                yield store.deserialize_cdr(data, connection.msgtype)

        intrinsics = _camera_matrix(messages, camera_info_topic)
        depths = {_stamp_ns(msg): depth_in_metres(msg) for msg in messages(depth_topic)}
        if not depths:
            raise BagFramesError(f"depth topic '{depth_topic}' has no messages")
        stamps = sorted(depths)
        tolerance_ns = round(max_stamp_diff_s * 1e9)
        state = {"unpaired": 0, "images": 0, "valid": 0, "pixels": 0}

        def pairs() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
            for msg in messages(image_topic):
                state["images"] += 1
                stamp = _stamp_ns(msg)
                at = bisect.bisect_left(stamps, stamp)
                nearest = min(stamps[max(at - 1, 0):at + 1], key=lambda s: abs(s - stamp))
                if abs(nearest - stamp) > tolerance_ns:
                    state["unpaired"] += 1
                    continue
                try:
                    rgb = image_to_rgb8(msg)
                except ImageConversionError as error:
                    raise BagFramesError(f"image topic '{image_topic}': {error}") from error
                depth = depths[nearest]
                if depth.shape != rgb.shape[:2]:
                    raise BagFramesError(f"image {rgb.shape[1]}x{rgb.shape[0]} and depth {depth.shape[1]}x"
                                         f"{depth.shape[0]} differ in size: the depth must be registered to "
                                         f"the camera (an aligned depth topic)")
                if intrinsics is not None and intrinsics[1] != rgb.shape[:2]:
                    raise BagFramesError(f"camera info is for {intrinsics[1][1]}x{intrinsics[1][0]} images, "
                                         f"the image topic has {rgb.shape[1]}x{rgb.shape[0]}")
                state["valid"] += int(np.isfinite(depth).sum() + np.isposinf(depth).sum())
                state["pixels"] += depth.size
                K = intrinsics[0] if intrinsics is not None else np.full((3, 3), np.nan, np.float32)
                yield rgb, depth, K

        source = {"bag": str(bag.resolve()), "image_topic": image_topic, "depth_topic": depth_topic,
                  "camera_info_topic": camera_info_topic, "max_stamp_diff_s": max_stamp_diff_s}
        try:
            count = write_frames(out_dir, pairs(), source)
        except BagFramesError:
            raise
        except ValueError as error:
            if state["images"] == 0:
                raise BagFramesError(f"image topic '{image_topic}' has no messages") from error
            if state["images"] == state["unpaired"]:
                raise BagFramesError(
                    f"no image of '{image_topic}' has a depth image of '{depth_topic}' within {max_stamp_diff_s} s "
                    f"of its stamp ({state['images']} images, {len(stamps)} depth images); raise "
                    f"--max-stamp-diff if the two are not synchronised") from error
            raise BagFramesError(str(error)) from error
    if state["valid"] == 0:
        raise BagFramesError(f"depth topic '{depth_topic}' has no valid depth in any paired frame "
                             f"(all zero, NaN or -inf)")
    first = depths[stamps[0]].shape
    return BagFrameSummary(count, first[0], first[1], state["valid"] / state["pixels"], state["unpaired"])


def _camera_matrix(messages, topic: str | None) -> tuple[np.ndarray, tuple[int, int]] | None:
    """(K, (height, width)) of the first CameraInfo on `topic`, or None without a topic."""
    if topic is None:
        return None
    info = next(messages(topic), None)
    if info is None:
        raise BagFramesError(f"camera info topic '{topic}' has no messages")
    return np.asarray(info.k, np.float32).reshape(3, 3), (int(info.height), int(info.width))
