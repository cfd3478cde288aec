"""Camera effects that make rendered frames look like real camera images: augmentation for depth training.

Each effect maps a uint8 RGB image (H, W, 3) to a new one of the same shape and dtype; the depth that goes
with the image stays exact, so no effect moves pixels (blur spreads them, vignetting darkens them).
`random_effects` draws a chain of them with parameters from `EffectRanges` and a numpy Generator, so the
same generator state gives the same picture; `augment_batch` does that for every image of a batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Range = tuple[float, float]


def exposure(rgb: np.ndarray, stops: float) -> np.ndarray:
    """Brighter (stops > 0) or darker, as a gain on linear light, clipped like a saturated sensor."""
    linear = _to_linear(rgb) * 2.0 ** stops
    return _to_uint8(linear)


def white_balance(rgb: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    """Per-channel gains on linear light (a wrong white balance tints the whole picture)."""
    return _to_uint8(_to_linear(rgb) * np.asarray(gains, np.float32))


def vignetting(rgb: np.ndarray, strength: float) -> np.ndarray:
    """Darken towards the corners: the corners keep 1 - strength of their light (cos^4-like falloff)."""
    height, width = rgb.shape[:2]
    y, x = np.ogrid[:height, :width]
    radius2 = ((x - (width - 1) / 2) ** 2 + (y - (height - 1) / 2) ** 2) / (((width - 1) / 2) ** 2 +
                                                                          ((height - 1) / 2) ** 2 + 1e-9)
    falloff = (1.0 - strength * radius2).astype(np.float32)
    return _to_uint8(_to_linear(rgb) * falloff[..., None])


def blur(rgb: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur (defocus, a soft lens) of sigma_px pixels; 0 returns a copy."""
    if sigma_px <= 0:
        return rgb.copy()
    return cv2.GaussianBlur(rgb, (0, 0), sigmaX=float(sigma_px), borderType=cv2.BORDER_REFLECT)


def sensor_noise(rgb: np.ndarray, rng: np.random.Generator, read_sigma: float, shot_scale: float) -> np.ndarray:
    """Read noise (read_sigma, in 8-bit levels) plus shot noise whose variance grows with the signal
    (shot_scale levels at full white), drawn per pixel and channel from `rng`."""
    level = rgb.astype(np.float32)
    sigma = np.sqrt(read_sigma ** 2 + shot_scale ** 2 * level / 255.0)
    return np.clip(np.rint(level + sigma * rng.standard_normal(rgb.shape, np.float32)), 0, 255).astype(np.uint8)


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Compress and decompress as JPEG of the given quality (1..100): blocking and ringing."""
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"JPEG encoding of a {rgb.shape} image failed")
    return np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1])


@dataclass(frozen=True)
class EffectRanges:
    """How often (probability) and how strongly (low, high) each effect is applied by `random_effects`."""

    exposure_stops: Range = (-1.0, 0.7)
    white_balance_gain: Range = (0.8, 1.2)       # red and blue gains relative to green
    vignetting: Range = (0.0, 0.5)
    blur_sigma_px: Range = (0.3, 1.5)
    read_sigma: Range = (0.5, 4.0)
    shot_scale: Range = (0.0, 8.0)
    jpeg_quality: Range = (30.0, 95.0)
    p_exposure: float = 0.7
    p_white_balance: float = 0.7
    p_vignetting: float = 0.4
    p_blur: float = 0.3
    p_noise: float = 0.8
    p_jpeg: float = 0.5

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"EffectRanges.{name}={value}: must be a probability in [0, 1]")
            if not name.startswith("p_") and (len(value) != 2 or not 0.0 <= value[1] - value[0]):
                raise ValueError(f"EffectRanges.{name}={value!r}: need (low, high) with low <= high")
        if self.vignetting[1] > 1.0 or self.jpeg_quality[0] < 1 or self.jpeg_quality[1] > 100:
            raise ValueError("EffectRanges: vignetting must stay within [0, 1] and jpeg_quality within [1, 100]")


def random_effects(rgb: np.ndarray, rng: np.random.Generator, ranges: EffectRanges = EffectRanges()) -> np.ndarray:
    """`rgb` through a random chain in the order light meets a camera: exposure, white balance,
    vignetting, lens blur, sensor noise, JPEG. Every draw comes from `rng` whether or not the effect is
    applied, so one effect's probability does not shift the others' parameters."""
    _check_image(rgb)
    applied = rng.random(6) < np.array([ranges.p_exposure, ranges.p_white_balance, ranges.p_vignetting,
                                        ranges.p_blur, ranges.p_noise, ranges.p_jpeg])
    stops = rng.uniform(*ranges.exposure_stops)
    gains = (rng.uniform(*ranges.white_balance_gain), 1.0, rng.uniform(*ranges.white_balance_gain))
    strength = rng.uniform(*ranges.vignetting)
    sigma_px = rng.uniform(*ranges.blur_sigma_px)
    read_sigma, shot_scale = rng.uniform(*ranges.read_sigma), rng.uniform(*ranges.shot_scale)
    quality = round(rng.uniform(*ranges.jpeg_quality))
    noise_rng = np.random.default_rng(rng.integers(2 ** 63))
    out = rgb
    if applied[0]:
        out = exposure(out, stops)
    if applied[1]:
        out = white_balance(out, gains)
    if applied[2]:
        out = vignetting(out, strength)
    if applied[3]:
        out = blur(out, sigma_px)
    if applied[4]:
        out = sensor_noise(out, noise_rng, read_sigma, shot_scale)
    if applied[5]:
        out = jpeg(out, quality)
    return out.copy() if out is rgb else out


def augment_batch(rgb: np.ndarray, rng: np.random.Generator, ranges: EffectRanges = EffectRanges()) -> np.ndarray:
    """`random_effects` on every image of a (N, H, W, 3) uint8 batch, each with its own draws."""
    if rgb.ndim != 4:
        raise ValueError(f"augment_batch needs a (N, H, W, 3) batch, got shape {rgb.shape}")
    return np.stack([random_effects(image, rng, ranges) for image in rgb]) if len(rgb) else rgb.copy()


def _check_image(rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"camera effects need an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")


def _to_linear(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB-like (gamma 2.2) to linear float32 in [0, 1]."""
    return (rgb.astype(np.float32) / 255.0) ** 2.2


def _to_uint8(linear: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(linear, 0.0, 1.0) ** (1.0 / 2.2) * 255.0).astype(np.uint8)
