"""sensor_msgs/Image <-> numpy, with cv_bridge semantics and none of the PyPI cv-bridge's bugs.

`image_to_numpy` returns the image in its own encoding: (height, width) for one channel, else
(height, width, channels), in native byte order. It honours `step` (row padding) and `is_bigendian`, and is
zero-copy when the message is in native byte order. `numpy_to_image` packs rows without padding using
`tobytes()` (never an element-wise copy). `image_to_rgb8` converts any colour, mono, bayer or 16-bit image to
RGB uint8 for the models. Inconsistent messages raise `ImageConversionError` naming the offending field.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

NATIVE_BIG_ENDIAN = sys.byteorder == "big"


class ImageConversionError(ValueError):
    """A sensor_msgs/Image is inconsistent or uses an encoding this converter does not know.

    `cause` names the kind of problem (unsupported_encoding, bad_step, short_data, bad_array,
    not_convertible), so that nodes can count and rate-limit each kind separately."""

    def __init__(self, message: str, cause: str):
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class Encoding:
    dtype: np.dtype
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


def _named_encodings() -> dict[str, Encoding]:
    u8, u16 = np.dtype(np.uint8), np.dtype(np.uint16)
    table = {
        "rgb8": Encoding(u8, 3), "bgr8": Encoding(u8, 3), "rgba8": Encoding(u8, 4), "bgra8": Encoding(u8, 4),
        "rgb16": Encoding(u16, 3), "bgr16": Encoding(u16, 3), "rgba16": Encoding(u16, 4),
        "bgra16": Encoding(u16, 4), "mono8": Encoding(u8, 1), "mono16": Encoding(u16, 1),
        "yuv422": Encoding(u8, 2), "yuv422_yuy2": Encoding(u8, 2), "uyvy": Encoding(u8, 2),
        "yuyv": Encoding(u8, 2),
    }
    for pattern in ("rggb", "bggr", "gbrg", "grbg"):
        table[f"bayer_{pattern}8"] = Encoding(u8, 1)
        table[f"bayer_{pattern}16"] = Encoding(u16, 1)
    generic = {"8U": np.uint8, "8S": np.int8, "16U": np.uint16, "16S": np.int16, "32S": np.int32,
               "32F": np.float32, "64F": np.float64}
    for depth, dtype in generic.items():
        for channels in (1, 2, 3, 4):
            table[f"{depth}C{channels}"] = Encoding(np.dtype(dtype), channels)
    return table


ENCODINGS: dict[str, Encoding] = _named_encodings()

_TO_RGB = {
    "rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB, "8UC1": cv2.COLOR_GRAY2RGB, "8UC3": None, "8UC4": cv2.COLOR_RGBA2RGB,
    "bayer_rggb8": cv2.COLOR_BayerRGGB2RGB, "bayer_bggr8": cv2.COLOR_BayerBGGR2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGBRG2RGB, "bayer_grbg8": cv2.COLOR_BayerGRBG2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2, "yuyv": cv2.COLOR_YUV2RGB_YUY2,
}
_SIXTEEN_BIT_TO_EIGHT = {"rgb16": "rgb8", "bgr16": "bgr8", "rgba16": "rgba8", "bgra16": "bgra8",
                         "mono16": "mono8", "16UC1": "mono8", "16UC3": "rgb8", "16UC4": "rgba8",
                         "bayer_rggb16": "bayer_rggb8", "bayer_bggr16": "bayer_bggr8",
                         "bayer_gbrg16": "bayer_gbrg8", "bayer_grbg16": "bayer_grbg8"}
RGB_CONVERTIBLE = frozenset(_TO_RGB) | frozenset(_SIXTEEN_BIT_TO_EIGHT)


def encoding_info(encoding: str) -> Encoding:
    """dtype and channel count of an encoding, or ImageConversionError naming it."""
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise ImageConversionError(f"Image.encoding '{encoding}' is not supported "
                                   f"(supported: {', '.join(sorted(ENCODINGS))})", "unsupported_encoding") from None


def image_to_numpy(msg: Any) -> np.ndarray:
    """View a sensor_msgs/Image as an array in its own encoding (see the module docstring)."""
    info = encoding_info(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * info.bytes_per_pixel
    if step < row_bytes:
        raise ImageConversionError(f"Image.step {step} is smaller than width * bytes per pixel "
                                   f"= {width} * {info.bytes_per_pixel} = {row_bytes}", "bad_step")
    buffer = memoryview(msg.data).cast("B")
    needed = step * height if width else 0
    if len(buffer) < needed:
        raise ImageConversionError(f"Image.data has {len(buffer)} bytes, fewer than the {needed} that "
                                   f"height {height}, step {step} and encoding '{msg.encoding}' need", "short_data")
    big_endian = bool(msg.is_bigendian)
    dtype = info.dtype.newbyteorder(">" if big_endian else "<") if info.dtype.itemsize > 1 else info.dtype
    if needed == 0:
        array = np.zeros((height, width, info.channels), dtype=info.dtype)
    else:
        array = np.ndarray((height, width, info.channels), dtype=dtype, buffer=buffer,
                           strides=(step, info.bytes_per_pixel, info.dtype.itemsize))
        if info.dtype.itemsize > 1 and big_endian != NATIVE_BIG_ENDIAN:
            array = array.astype(info.dtype)
    return array[:, :, 0] if info.channels == 1 else array


def numpy_to_image(array: np.ndarray, encoding: str, header: Any = None) -> Any:
    """Pack an array into a new sensor_msgs/Image (native byte order, rows without padding)."""
    from sensor_msgs.msg import Image

    info = encoding_info(encoding)
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] != info.channels:
        raise ImageConversionError(f"array of shape {array.shape} does not fit encoding '{encoding}' "
                                   f"({info.channels} channel(s))", "bad_array")
    if array.dtype != info.dtype:
        raise ImageConversionError(f"array dtype {array.dtype} does not fit encoding '{encoding}' "
                                   f"(needs {info.dtype})", "bad_array")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(NATIVE_BIG_ENDIAN)
    msg.step = msg.width * info.bytes_per_pixel
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def image_to_rgb8(msg: Any) -> np.ndarray:
    """Any colour, mono, bayer, YUV or 16-bit image as an RGB uint8 array (height, width, 3)."""
    array = image_to_numpy(msg)
    return to_rgb8(array, msg.encoding)


def to_rgb8(array: np.ndarray, encoding: str) -> np.ndarray:
    """Convert an array in `encoding` (as image_to_numpy returns it) to RGB uint8."""
    if encoding in _SIXTEEN_BIT_TO_EIGHT:
        array = (array >> 8).astype(np.uint8)
        encoding = _SIXTEEN_BIT_TO_EIGHT[encoding]
    if encoding not in _TO_RGB:
        raise ImageConversionError(f"Image.encoding '{encoding}' cannot be converted to RGB "
                                   f"(colour encodings: {', '.join(sorted(RGB_CONVERTIBLE))})", "not_convertible")
    if array.size == 0:
        return np.zeros((*array.shape[:2], 3), dtype=np.uint8)
    code = _TO_RGB[encoding]
    if code is None:
        return np.ascontiguousarray(array)
    try:
        return cv2.cvtColor(np.ascontiguousarray(array), code)
    except cv2.error as error:
        raise ImageConversionError(f"cannot convert a {array.shape[1]}x{array.shape[0]} '{encoding}' image "
                                   f"to RGB: {str(error).strip().splitlines()[-1]}", "not_convertible") from error
