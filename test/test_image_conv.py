"""image_conv: round trips for every encoding, row padding, both byte orders, and clear errors."""
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import Image

from xlstm_ros.nodes.image_conv import (ENCODINGS, RGB_CONVERTIBLE, ImageConversionError, encoding_info,
                                        image_to_numpy, image_to_rgb8, numpy_to_image)


def random_array(rng: np.random.Generator, encoding: str, height: int, width: int) -> np.ndarray:
    info = encoding_info(encoding)
    shape = (height, width) if info.channels == 1 else (height, width, info.channels)
    if info.dtype.kind == "f":
        return rng.standard_normal(shape).astype(info.dtype) * 1e3
    limits = np.iinfo(info.dtype)
    return rng.integers(limits.min, limits.max, size=shape, endpoint=True, dtype=info.dtype)


def packed_message(array: np.ndarray, encoding: str, padding: int, big_endian: bool) -> Image:
    """An Image built by hand (not by numpy_to_image): rows padded with junk bytes, chosen byte order."""
    info = encoding_info(encoding)
    height, width = array.shape[:2]
    order = ">" if big_endian else "<"
    typed = array.astype(info.dtype.newbyteorder(order) if info.dtype.itemsize > 1 else info.dtype)
    rows = typed.reshape(height, width * info.channels).view(np.uint8).reshape(height, width * info.bytes_per_pixel)
    junk = np.full((height, padding), 0xAB, dtype=np.uint8)
    msg = Image()
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.is_bigendian = int(big_endian)
    msg.step = width * info.bytes_per_pixel + padding
    msg.data = np.concatenate([rows, junk], axis=1).tobytes()
    return msg


@settings(max_examples=300, deadline=None)
@given(encoding=st.sampled_from(sorted(ENCODINGS)), height=st.integers(0, 9), width=st.integers(0, 9),
       padding=st.integers(0, 7), big_endian=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_round_trip_any_encoding_padding_and_byte_order(encoding, height, width, padding, big_endian, seed):
    array = random_array(np.random.default_rng(seed), encoding, height, width)
    decoded = image_to_numpy(packed_message(array, encoding, padding, big_endian))
    assert decoded.shape == array.shape
    assert decoded.dtype == array.dtype and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, array)
    again = image_to_numpy(numpy_to_image(decoded, encoding))
    np.testing.assert_array_equal(again, array)


def test_native_message_is_decoded_without_copy():
    array = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    msg = packed_message(array, "rgb8", padding=3, big_endian=sys.byteorder == "big")
    view = image_to_numpy(msg)
    assert not view.flags.owndata
    assert np.shares_memory(view, np.frombuffer(msg.data, dtype=np.uint8))


def test_numpy_to_image_sets_step_endianness_and_header():
    from std_msgs.msg import Header

    header = Header(frame_id="cam")
    msg = numpy_to_image(np.zeros((3, 4), dtype=np.float32), "32FC1", header=header)
    assert (msg.height, msg.width, msg.step) == (3, 4, 16)
    assert msg.is_bigendian == int(sys.byteorder == "big")
    assert msg.header.frame_id == "cam"
    assert len(msg.data) == 48


@pytest.mark.parametrize("encoding, channel_order", [("rgb8", [0, 1, 2]), ("bgr8", [2, 1, 0]),
                                                     ("rgba8", [0, 1, 2]), ("bgra8", [2, 1, 0])])
def test_colour_encodings_become_rgb(encoding, channel_order):
    rgb = np.random.default_rng(1).integers(0, 255, (6, 7, 3), dtype=np.uint8)
    stored = rgb[:, :, channel_order]
    if encoding.endswith("a8"):
        stored = np.concatenate([stored, np.full((6, 7, 1), 200, np.uint8)], axis=2)
    np.testing.assert_array_equal(image_to_rgb8(numpy_to_image(stored, encoding)), rgb)


def test_mono_and_sixteen_bit_become_grey_rgb():
    mono16 = np.full((4, 4), 0x8000, dtype=np.uint16)
    rgb = image_to_rgb8(numpy_to_image(mono16, "mono16"))
    assert rgb.shape == (4, 4, 3) and (rgb == 0x80).all()


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_demosaic_to_the_right_colour(pattern):
    colour = {"r": 200, "g": 120, "b": 40}
    mosaic = np.empty((8, 8), dtype=np.uint8)
    for row in range(2):
        for col in range(2):
            mosaic[row::2, col::2] = colour[pattern[2 * row + col]]
    raw = image_to_numpy(numpy_to_image(mosaic, f"bayer_{pattern}8"))
    assert raw.shape == (8, 8)
    rgb = image_to_rgb8(numpy_to_image(mosaic, f"bayer_{pattern}8"))
    np.testing.assert_array_equal(rgb[3, 3], [200, 120, 40])


def test_every_colour_encoding_converts():
    for encoding in sorted(RGB_CONVERTIBLE):
        array = random_array(np.random.default_rng(0), encoding, 4, 6)
        assert image_to_rgb8(numpy_to_image(array, encoding)).shape == (4, 6, 3), encoding


def make_message(**fields) -> Image:
    msg = Image(height=2, width=3, encoding="rgb8", step=9)
    msg.data = bytes(18)
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize("fields, message", [
    ({"encoding": "rgb9"}, "Image.encoding 'rgb9' is not supported"),
    ({"step": 8}, "Image.step 8 is smaller than width * bytes per pixel"),
    ({"data": bytes(17)}, "Image.data has 17 bytes, fewer than the 18"),
    ({"height": 3}, "Image.data has 18 bytes, fewer than the 27"),
])
def test_inconsistent_messages_name_the_field(fields, message):
    with pytest.raises(ImageConversionError, match=message.replace("*", r"\*")):
        image_to_numpy(make_message(**fields))


def test_non_colour_encoding_cannot_become_rgb():
    with pytest.raises(ImageConversionError, match="'32FC1' cannot be converted to RGB"):
        image_to_rgb8(numpy_to_image(np.zeros((2, 2), np.float32), "32FC1"))


def test_array_must_fit_encoding():
    with pytest.raises(ImageConversionError, match="dtype float64"):
        numpy_to_image(np.zeros((2, 2, 3)), "rgb8")
    with pytest.raises(ImageConversionError, match="3 channel"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")
