"""Camera effects for augmentation: shape and dtype kept, each effect changes pixels the way it should, and
the random chain is deterministic per generator."""
from __future__ import annotations

import numpy as np
import pytest

from xlstm_ros.sim.camera_effects import (EffectRanges, augment_batch, blur, exposure, jpeg, random_effects,
                                          sensor_noise, vignetting, white_balance)

HEIGHT, WIDTH = 48, 64


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A textured mid-grey picture: smooth gradients plus fine detail, no saturated pixels."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:HEIGHT, :WIDTH]
    base = 90 + 50 * np.sin(x / 7.0)[..., None] * np.array([1.0, 0.8, 0.6]) + 20 * np.cos(y / 5.0)[..., None]
    return np.clip(base + rng.normal(0, 12, (HEIGHT, WIDTH, 3)), 30, 220).astype(np.uint8)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64).mean(axis=-1)


def test_every_effect_keeps_shape_and_dtype(image):
    rng = np.random.default_rng(1)
    for out in (exposure(image, 0.5), white_balance(image, (1.1, 1.0, 0.9)), vignetting(image, 0.4),
                blur(image, 1.0), sensor_noise(image, rng, 2.0, 4.0), jpeg(image, 50), random_effects(image, rng)):
        assert out.shape == image.shape and out.dtype == np.uint8
    assert augment_batch(np.stack([image, image]), rng).shape == (2, HEIGHT, WIDTH, 3)


def test_exposure_brightens_and_darkens_and_zero_stops_changes_nothing(image):
    assert luminance(exposure(image, 1.0)).mean() > luminance(image).mean() + 20
    assert luminance(exposure(image, -1.0)).mean() < luminance(image).mean() - 15
    assert np.abs(exposure(image, 0.0).astype(int) - image).max() <= 1
    assert (exposure(image, 6.0) == 255).mean() > 0.9                 # a saturated sensor clips


def test_white_balance_tints_by_channel(image):
    warm = white_balance(image, (1.3, 1.0, 0.7)).astype(float)
    ratio_before = image[..., 0].astype(float).mean() / image[..., 2].astype(float).mean()
    assert warm[..., 0].mean() / warm[..., 2].mean() > 1.2 * ratio_before
    assert abs(warm[..., 1].mean() - image[..., 1].mean()) < 1.0


def test_vignetting_darkens_the_corners_not_the_centre(image):
    out = vignetting(image, 0.6).astype(float)
    centre = (slice(HEIGHT // 2 - 2, HEIGHT // 2 + 2), slice(WIDTH // 2 - 2, WIDTH // 2 + 2))
    assert np.abs(out[centre] - image[centre]).max() <= 1
    corners = out[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners < 0.75 * image[[0, 0, -1, -1], [0, -1, 0, -1]]).all()


def test_blur_removes_detail_and_keeps_the_mean(image):
    out = blur(image, 1.5)
    detail = [np.abs(np.diff(luminance(rgb), axis=1)).mean() for rgb in (out, image)]
    assert detail[0] < 0.6 * detail[1]
    assert abs(luminance(out).mean() - luminance(image).mean()) < 1.0
    assert np.array_equal(blur(image, 0.0), image)


def test_sensor_noise_is_signal_dependent_zero_mean_and_deterministic(image):
    out = sensor_noise(image, np.random.default_rng(3), 2.0, 8.0)
    assert np.array_equal(out, sensor_noise(image, np.random.default_rng(3), 2.0, 8.0))
    difference = out.astype(float) - image
    assert abs(difference.mean()) < 0.5 and 2.0 < difference.std() < 8.0
    dark, bright = np.full((32, 32, 3), 20, np.uint8), np.full((32, 32, 3), 230, np.uint8)
    spread = [(sensor_noise(flat, np.random.default_rng(4), 1.0, 10.0).astype(float) - flat).std()
              for flat in (dark, bright)]
    assert spread[1] > 2.0 * spread[0]


def test_jpeg_changes_pixels_less_at_higher_quality(image):
    smooth = blur(image, 1.0)
    error = [np.abs(jpeg(smooth, quality).astype(float) - smooth).mean() for quality in (20, 95)]
    assert error[0] > 1.5 * error[1] > 0


def test_random_effects_are_deterministic_per_generator_and_vary_between_draws(image):
    first = random_effects(image, np.random.default_rng(7))
    assert np.array_equal(first, random_effects(image, np.random.default_rng(7)))
    rng = np.random.default_rng(8)
    draws = [random_effects(image, rng) for _ in range(6)]
    assert len({d.tobytes() for d in draws}) == 6
    assert any(not np.array_equal(d, image) for d in draws)
    untouched = EffectRanges(p_exposure=0, p_white_balance=0, p_vignetting=0, p_blur=0, p_noise=0, p_jpeg=0)
    assert np.array_equal(random_effects(image, rng, untouched), image)
    batch = augment_batch(np.stack([image] * 3), np.random.default_rng(9))
    assert not np.array_equal(batch[0], batch[1])


def test_bad_input_and_ranges_are_refused(image):
    with pytest.raises(ValueError, match="uint8"):
        random_effects(image.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="batch"):
        augment_batch(image, np.random.default_rng(0))
    with pytest.raises(ValueError, match="p_noise"):
        EffectRanges(p_noise=1.5)
    with pytest.raises(ValueError, match="blur_sigma_px"):
        EffectRanges(blur_sigma_px=(2.0, 1.0))
