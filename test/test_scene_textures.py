"""Photo textures of the scene renderer: only allow-listed sample photos are read, never an evaluation image;
the layers really hold those photos and show up in rendered frames; without them the renderer falls back."""
from __future__ import annotations

import builtins
import io
import warnings
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from xlstm_ros.sim.scenes import (KINDS, FlightPath, Lighting, Material, MeshBuilder, Pattern, Renderer, Scene,
                                  SceneConfig, make_dataset, textures)
from xlstm_ros.sim.scenes.camera import Camera
from xlstm_ros.sim.scenes.textures import (ALLOWED_FILES, OPENCV_SAMPLES, PHOTO_CROPS, RESERVED_FILES, Role,
                                           layers_with, load_photo_textures)

EVALUATION_NAMES = ("aloeL.jpg", "aloeR.jpg", "aloeGT.png")
have_photos = pytest.mark.skipif(not all((OPENCV_SAMPLES / name).is_file() for name in ALLOWED_FILES),
                                 reason=f"the opencv-doc sample images are not installed in {OPENCV_SAMPLES}")


@pytest.fixture
def fresh_textures():
    """No cached photo layers before or after the test, so that it sees (and leaves) the real file reads."""
    textures._load.cache_clear()
    yield
    textures._load.cache_clear()


def test_the_allow_list_names_every_role_and_excludes_the_evaluation_images():
    assert set(EVALUATION_NAMES) <= RESERVED_FILES
    assert not ALLOWED_FILES & RESERVED_FILES
    assert not any("aloe" in name.lower() for name in ALLOWED_FILES)
    assert all(layers_with(role) for role in Role)
    for crop in PHOTO_CROPS:
        left, top, right, bottom = crop.box
        assert 0.0 <= left < right <= 1.0 and 0.0 <= top < bottom <= 1.0, crop
    with pytest.raises(ValueError, match="allow-listed"):
        textures._read(OPENCV_SAMPLES / "aloeL.jpg")


def test_building_textures_and_datasets_of_every_kind_never_opens_an_evaluation_file(
        tmp_path, monkeypatch, fresh_textures):
    opened: list[str] = []

    def recording(function):
        def wrapper(path, *args, **kwargs):
            opened.append(str(path))
            return function(path, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(builtins, "open", recording(builtins.open))
    monkeypatch.setattr(io, "open", recording(io.open))
    monkeypatch.setattr(cv2, "imread", recording(cv2.imread))
    monkeypatch.setattr(np, "load", recording(np.load))
    try:
        from PIL import Image
        monkeypatch.setattr(Image, "open", recording(Image.open))
    except ImportError:
        pass
    for kind in KINDS:
        make_dataset(tmp_path / kind, n=2, seed=1, size=(24, 32),
                     config=SceneConfig(kinds=(kind,), kind_weights=(1.0,)))
    names = {Path(path).name for path in opened}
    assert not names & RESERVED_FILES and not any("aloe" in name.lower() for name in names)
    samples = {Path(path).name for path in opened if Path(path).parent == OPENCV_SAMPLES}
    assert samples <= ALLOWED_FILES
    if (OPENCV_SAMPLES / "aero1.jpg").is_file():
        assert samples == ALLOWED_FILES                       # the photos were read, through the allow-list


@have_photos
def test_every_layer_holds_its_photo_crop():
    photos = load_photo_textures()
    assert photos is not None and photos.layers.shape == (len(PHOTO_CROPS), textures.LAYER_SIZE,
                                                          textures.LAYER_SIZE, 3)
    for layer, crop in zip(photos.layers, PHOTO_CROPS):
        image = cv2.imread(str(OPENCV_SAMPLES / crop.file))[..., ::-1]
        height, width = image.shape[:2]
        left, top, right, bottom = crop.box
        region = image[int(top * height):round(bottom * height), int(left * width):round(right * width)]
        scale = textures.LAYER_SIZE / max(region.shape[:2])      # the layer starts with the crop, aspect kept
        block = layer[:round(region.shape[0] * scale), :round(region.shape[1] * scale)]
        thumbnails = [cv2.resize(np.ascontiguousarray(a), (8, 8), interpolation=cv2.INTER_AREA).astype(float)
                      for a in (block, region)]
        assert np.abs(thumbnails[0] - thumbnails[1]).mean() < 4.0, crop
        assert layer.std() > 5.0


def wall_scene(material: Material) -> Scene:
    """A wall 4 m ahead of the origin filling the view, evenly lit."""
    builder = MeshBuilder()
    builder.box((4.5, 0.0), -5.0, (1.0, 20.0, 10.0), 0.0, material)
    lighting = Lighting((-1.0, 0.0, 0.0), (1.5, 1.5, 1.5), (0.4, 0.4, 0.4), (0.2, 0.3, 0.7), (0.6, 0.7, 0.8),
                        (0.6, 0.7, 0.8), 1e6, 0.0, 1.0, False)
    return Scene("wall", 0, builder.build(), lighting, FlightPath(np.array([[0.0, 0.0], [1.0, 0.0]]), 1.0, (1.0, 2.0)),
                 0.1, 100.0)


@have_photos
def test_photo_materials_show_their_photo_and_procedural_patterns_without_photos():
    camera = Camera((0.0, 0.0, 0.0), fov_deg=60.0)
    grey = Material((0.4, 0.4, 0.4), (0.4, 0.4, 0.4), Pattern.NOISE, 1.0)
    grass, = (i for i, crop in enumerate(PHOTO_CROPS) if crop.file == "messi5.jpg" and crop.role is Role.GRASS)
    night, = (i for i, crop in enumerate(PHOTO_CROPS) if crop.file == "starry_night.jpg")

    def mean_rgb(renderer: Renderer, layer: int) -> np.ndarray:
        material = replace(grey, photo=layer, photo_scale_m=3.0, photo_gain=0.8)
        return renderer.render(wall_scene(material), camera).rgb.reshape(-1, 3).mean(0)

    with Renderer(64, 48) as renderer:
        assert renderer.photo_source == str(OPENCV_SAMPLES)
        red, green, blue = mean_rgb(renderer, grass)
        assert green > red + 10 and green > blue + 30
        red, green, blue = mean_rgb(renderer, night)
        assert blue > red + 15
    with Renderer(64, 48, photos=False) as renderer:
        assert renderer.photo_source is None
        assert np.ptp(mean_rgb(renderer, grass)) < 3.0                # the grey procedural pattern


def test_missing_photos_fall_back_to_procedural_textures_with_one_warning(tmp_path, monkeypatch, fresh_textures):
    monkeypatch.setattr(textures, "OPENCV_SAMPLES", tmp_path)
    with pytest.warns(RuntimeWarning, match="procedural"):
        assert load_photo_textures() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_photo_textures() is None                  # warned once
        with Renderer(32, 24) as renderer:
            assert renderer.photo_source is None
            frame = renderer.render(wall_scene(Material((0.4, 0.4, 0.4), (0.2, 0.2, 0.2), photo=0)),
                                    Camera((0.0, 0.0, 0.0)))
    assert frame.rgb.std() > 1.0
