"""Procedural scene renderer: determinism, metric depth on analytic scenes, sky, intrinsics, the depth ranges
and camera variety of every kind, datasets."""
from __future__ import annotations

import math

import numpy as np
import pytest

from xlstm_ros.sim import scenes
from xlstm_ros.sim.scenes import (Camera, FlightPath, Interior, Lighting, Material, MeshBuilder, Pattern, Renderer,
                                  RendererError, Scene, SceneConfig, SceneDataset, depth_from_window_z, flight,
                                  flight_cameras, make_dataset, random_camera)
from xlstm_ros.sim.scenes.dataset import FORMAT_VERSION
from xlstm_ros.sim.scenes.terrain import Terrain

WIDTH, HEIGHT = 96, 72
NEAR_M, FAR_M = 0.1, 4000.0


@pytest.fixture(scope="module")
def renderer():
    with Renderer(WIDTH, HEIGHT) as shared:
        yield shared


def analytic_scene(builder: MeshBuilder) -> Scene:
    """A hand-built scene with plain lighting and a dummy flight path."""
    lighting = Lighting(sun_direction=(0.0, 0.6, 0.8), sun_rgb=(2.0, 2.0, 2.0), ambient_rgb=(0.3, 0.3, 0.3),
                        sky_zenith_rgb=(0.2, 0.3, 0.7), sky_horizon_rgb=(0.6, 0.7, 0.8),
                        fog_rgb=(0.6, 0.7, 0.8), fog_distance_m=1000.0, cloud_cover=0.2, exposure=1.0,
                        shadows=True)
    path = FlightPath(np.array([[0.0, 0.0], [1.0, 0.0]]), 1.0, (1.0, 2.0))
    return Scene("analytic", 0, builder.build(), lighting, path, NEAR_M, FAR_M)


GREY = Material((0.5, 0.5, 0.5), (0.3, 0.3, 0.3), Pattern.CHECKER, 1.0)


def kind_config(kind: str) -> SceneConfig:
    return SceneConfig(kinds=(kind,), kind_weights=(1.0,))


def pixel_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))


@pytest.mark.parametrize("yaw_rad", [0.0, 0.7])
def test_plane_facing_the_camera_has_its_distance_as_depth_and_the_extent_k_predicts(renderer, yaw_rad):
    distance_m, half_width_m, camera_height_m = 7.3, 3.0, 2.0
    builder = MeshBuilder()
    heading = np.array([math.cos(yaw_rad), math.sin(yaw_rad)])
    centre = heading * (distance_m + 0.5)          # a 1 m thick wall whose near face is distance_m ahead
    builder.box(tuple(centre), 0.0, (1.0, 2 * half_width_m, 2 * camera_height_m), yaw_rad, GREY)
    camera = Camera((0.0, 0.0, camera_height_m), yaw_rad, 0.0, 0.0, fov_deg=75.0)
    frame = renderer.render(analytic_scene(builder), camera)

    K = camera.intrinsics(WIDTH, HEIGHT)
    u, v = pixel_grid(WIDTH, HEIGHT)
    half_u = K[0, 0] * half_width_m / distance_m       # the wall's edges in pixels from the centre
    half_v = K[1, 1] * camera_height_m / distance_m
    inside = (np.abs(u - K[0, 2]) < half_u - 1) & (np.abs(v - K[1, 2]) < half_v - 1)
    outside = (np.abs(u - K[0, 2]) > half_u + 1) | (np.abs(v - K[1, 2]) > half_v + 1)
    assert inside.sum() > 0.15 * inside.size and outside.sum() > 0.3 * outside.size
    np.testing.assert_allclose(frame.depth_m[inside], distance_m, rtol=1e-3)
    assert frame.valid[inside].all()
    assert not frame.valid[outside].any() and np.isposinf(frame.depth_m[outside]).all()


def test_tilted_ground_plane_gives_the_analytic_depth_of_every_row(renderer):
    height_m, pitch_rad = 3.0, math.radians(15.0)
    builder = MeshBuilder()
    builder.ground(0.5 * FAR_M, GREY)
    camera = Camera((4.0, -2.0, height_m), 0.3, pitch_rad, 0.0, fov_deg=60.0)
    frame = renderer.render(analytic_scene(builder), camera)

    K = camera.intrinsics(WIDTH, HEIGHT)
    down = (np.arange(HEIGHT) - K[1, 2]) / K[1, 1]                 # y / z of each row's rays
    denominator = math.sin(pitch_rad) + down * math.cos(pitch_rad)  # ground depth = h / denominator
    ground_rows = (denominator > 0) & (height_m / np.maximum(denominator, 1e-9) < 300.0)
    sky_rows = denominator < -1e-3
    assert ground_rows.sum() > HEIGHT / 2 and sky_rows.sum() > 3
    expected = np.broadcast_to((height_m / denominator[ground_rows])[:, None], (ground_rows.sum(), WIDTH))
    np.testing.assert_allclose(frame.depth_m[ground_rows], expected, rtol=1e-3)
    assert not frame.valid[sky_rows].any() and np.isposinf(frame.depth_m[sky_rows]).all()
    assert frame.depth_m.dtype == np.float32


def test_back_projected_ground_pixels_lie_on_the_ground_for_any_yaw_pitch_roll(renderer):
    builder = MeshBuilder()
    builder.ground(0.5 * FAR_M, GREY)
    camera = Camera((1.0, 2.0, 5.0), -2.0, math.radians(40.0), math.radians(15.0), fov_deg=85.0)
    frame = renderer.render(analytic_scene(builder), camera)
    K, rotation = frame.K, camera.rotation_world_from_optical()
    u, v = pixel_grid(WIDTH, HEIGHT)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    near = frame.valid & (frame.depth_m < 200.0)
    assert near.mean() > 0.5 and not frame.valid.all()
    world = (rays[near] * frame.depth_m[near, None]) @ rotation.T + np.asarray(camera.position_m)
    assert (np.abs(world[:, 2]) <= 1e-3 * frame.depth_m[near]).all()


def test_intrinsics_match_the_field_of_view_and_axes_follow_the_conventions():
    camera = Camera((0.0, 0.0, 10.0), yaw_rad=math.pi / 2, pitch_rad=0.3, roll_rad=0.2, fov_deg=68.0)
    K = camera.intrinsics(640, 480)
    assert math.degrees(2 * math.atan(320.0 / K[0, 0])) == pytest.approx(68.0)
    assert K[1, 1] == K[0, 0] and (K[0, 2], K[1, 2]) == (319.5, 239.5)
    rotation = camera.rotation_world_from_optical()
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
    right, down, forward = rotation.T
    assert forward[1] > 0.9 and forward[2] < 0         # yaw pi/2 looks along +y, pitch > 0 looks down
    assert right[2] < 0 and down[2] < 0                # roll > 0 lowers the right side


def test_depth_from_window_z_inverts_the_perspective_depth_and_flags_the_cleared_buffer():
    depth_m = np.array([0.1, 0.5, 3.0, 42.0, 900.0])
    window_z = FAR_M * (depth_m - NEAR_M) / ((FAR_M - NEAR_M) * depth_m)
    np.testing.assert_allclose(depth_from_window_z(window_z, NEAR_M, FAR_M), depth_m, rtol=1e-6)
    assert np.isposinf(depth_from_window_z(np.array([1.0]), NEAR_M, FAR_M)).all()


def test_same_seed_renders_bitwise_equal_frames_and_other_seeds_differ(renderer):
    first, again, other = Scene.random(11), Scene.random(11), Scene.random(12)
    assert np.array_equal(first.vertices, again.vertices) and first.lighting == again.lighting
    camera = random_camera(first, np.random.default_rng(5))
    assert camera == random_camera(again, np.random.default_rng(5))
    frame = renderer.render(first, camera)
    renderer.render(other, random_camera(other, np.random.default_rng(5)))   # switch the uploaded scene
    repeat = renderer.render(again, camera)
    assert np.array_equal(frame.rgb, repeat.rgb) and np.array_equal(frame.depth_m, repeat.depth_m)
    changed = renderer.render(other, camera)
    assert not np.array_equal(frame.rgb, changed.rgb) and not np.array_equal(frame.depth_m, changed.depth_m)


def test_sky_is_flagged_outdoors_and_hallways_are_closed(renderer):
    field = Scene.random(3, kind_config("field"))
    xy, heading = field.path.at(field.path.length_m / 2)
    looking_up = Camera((float(xy[0]), float(xy[1]), 2.0), float(heading), math.radians(-20.0), 0.0, 70.0)
    frame = renderer.render(field, looking_up)
    assert np.array_equal(frame.valid, np.isfinite(frame.depth_m))
    assert 0.1 < (~frame.valid).mean() < 0.9
    assert (frame.depth_m[frame.valid] > 0).all()
    for seed in range(3):
        hallway = Scene.random(seed, kind_config("corridor"))
        assert renderer.render(hallway, random_camera(hallway, np.random.default_rng(seed))).valid.all()


@pytest.mark.parametrize("kind", scenes.KINDS)
def test_every_kind_is_textured_lit_and_collision_free(renderer, kind):
    config = kind_config(kind)
    for seed in range(4):
        scene = Scene.random(seed, config)
        assert scene.kind == kind
        frame = renderer.render(scene, random_camera(scene, np.random.default_rng(seed), config))
        luminance = frame.rgb.astype(np.float64).mean(axis=-1)
        assert 20 < luminance.mean() < 235 and frame.rgb.std() > 8
        assert np.abs(np.diff(luminance, axis=1)).mean() > 0.5       # texture, not flat shading
        assert frame.depth_m.min() > 0.3                               # the camera is not inside anything


@pytest.mark.parametrize("kind", scenes.KINDS)
def test_every_kind_is_the_same_for_the_same_seed(renderer, kind):
    config = kind_config(kind)
    first, again = Scene.random(5, config), Scene.random(5, config)
    assert np.array_equal(first.vertices, again.vertices) and first.lighting == again.lighting
    cameras = [random_camera(scene, np.random.default_rng(9), config) for scene in (first, again)]
    assert cameras[0] == cameras[1]
    frames = [renderer.render(scene, camera) for scene, camera in zip((first, again), cameras)]
    assert np.array_equal(frames[0].rgb, frames[1].rgb) and np.array_equal(frames[0].depth_m, frames[1].depth_m)
    assert not np.array_equal(Scene.random(6, config).vertices, first.vertices)


def test_rooms_are_closed_and_seen_from_indoor_distances_closeups_from_nearer(renderer):
    medians = {}
    for kind in ("room", "closeup"):
        config = kind_config(kind)
        medians[kind] = []
        for seed in range(8):
            scene = Scene.random(seed, config)
            assert scene.interior is not None and len(scene.interior.focus_points) > 0
            frame = renderer.render(scene, random_camera(scene, np.random.default_rng(seed), config))
            assert frame.valid.all()                                   # walls, floor and ceiling all round
            assert 0.2 < frame.depth_m.min() and frame.depth_m.max() < 12.0
            medians[kind].append(float(np.median(frame.depth_m)))
    assert 0.8 < np.median(medians["room"]) < 4.0
    assert 0.3 < np.median(medians["closeup"]) < 1.5
    assert np.median(medians["closeup"]) < np.median(medians["room"])


def test_terrain_is_seen_from_above_the_tree_tops_down_to_straight_down(renderer):
    config = kind_config("terrain")
    pitches = []
    for seed in range(6):
        scene = Scene.random(seed, config)
        camera = random_camera(scene, np.random.default_rng(seed), config)
        frame = renderer.render(scene, camera)
        assert frame.depth_m[frame.valid].min() > 3.0 and frame.valid.mean() > 0.3
        pitches.append(math.degrees(camera.pitch_rad))
    assert min(pitches) >= config.aerial_pitch_deg[0] and max(pitches) > 60.0


def test_views_vary_in_height_pitch_roll_and_field_of_view():
    cameras = []
    for kind in scenes.KINDS:
        config = kind_config(kind)
        for seed in range(8):
            cameras.append(random_camera(Scene.random(seed, config), np.random.default_rng(seed), config))
    height = np.array([c.position_m[2] for c in cameras])
    pitch, roll = np.degrees([c.pitch_rad for c in cameras]), np.degrees([c.roll_rad for c in cameras])
    fov = np.array([c.fov_deg for c in cameras])
    assert height.min() < 1.0 and height.max() > 30.0
    assert pitch.min() < 0.0 and pitch.max() > 70.0 and pitch.std() > 15.0
    assert roll.min() < -5.0 and roll.max() > 5.0
    assert fov.min() < 55.0 and fov.max() > 85.0


def test_gable_roof_and_terrain_meshes_have_their_analytic_heights(renderer):
    land = Terrain.random(np.random.default_rng(0), relief_m=30.0)
    builder = MeshBuilder()
    base = float(land.height(np.zeros(2))) + 3.0
    builder.prism((0.0, 0.0), base, (8.0, 6.0, 2.0), 0.4, GREY)   # its ridge 2 m above base, along yaw 0.4
    land.add_to(builder, 96, GREY, 2000.0)
    above = Camera((0.0, 0.0, base + 40.0), 0.0, math.radians(90.0), 0.0, fov_deg=20.0)
    frame = renderer.render(analytic_scene(builder), above)
    centre = frame.depth_m[HEIGHT // 2 - 1:HEIGHT // 2 + 1, WIDTH // 2 - 1:WIDTH // 2 + 1]
    np.testing.assert_allclose(centre, 40.0 - 2.0, atol=0.1)
    off_roof = Camera((200.0, -120.0, 300.0), 0.0, math.radians(90.0), 0.0, fov_deg=5.0)
    depth = renderer.render(analytic_scene(builder), off_roof).depth_m[HEIGHT // 2, WIDTH // 2]
    assert depth == pytest.approx(300.0 - float(land.height(np.array([200.0, -120.0]))), abs=0.3)


def test_interior_clearance_is_the_distance_to_the_nearest_obstacle_or_wall():
    interior = Interior((-2.0, -2.0, 0.0), (2.0, 2.0, 3.0), np.array([[0.5, 0.5, 0.0, 1.0, 1.0, 1.0]]))
    np.testing.assert_allclose(interior.clearance(np.array([[0.0, 0.0, 1.0], [0.75, 0.75, 2.0], [-1.9, 0.0, 1.5],
                                                             [0.75, 0.75, 0.5]])),
                               [math.sqrt(0.5), 1.0, 0.1, 0.0])


def test_flight_is_smooth_deterministic_and_stays_clear_of_objects(renderer):
    fps, n_frames = 10.0, 12
    frames = list(flight(21, n_frames, fps, WIDTH, HEIGHT, renderer=renderer))
    again = list(flight(21, n_frames, fps, WIDTH, HEIGHT))            # its own renderer
    assert [f.time_s for f in frames] == pytest.approx(np.arange(n_frames) / fps)
    assert all(np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth_m, b.depth_m)
               for a, b in zip(frames, again))
    positions = np.array([f.camera.position_m for f in frames])
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    assert (steps > 0).all() and steps.max() < 2.0 * SceneConfig().speed_m_s[1] / fps
    assert min(f.depth_m.min() for f in frames) > 0.3
    assert not np.array_equal(frames[0].rgb, frames[-1].rgb)
    yaw = np.unwrap([f.camera.yaw_rad for f in frames])
    assert np.abs(np.diff(yaw)).max() < 0.2


def test_dataset_round_trip_resumes_and_refuses_other_parameters(tmp_path):
    calls = []
    root = make_dataset(tmp_path / "data", n=5, seed=3, size=(24, 32), shard_size=2,
                        progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    dataset = SceneDataset(root)
    assert len(dataset) == 5 and dataset.manifest["format"] == FORMAT_VERSION
    rgb, depth_m = dataset[4]
    assert rgb.shape == (24, 32, 3) and rgb.dtype == np.uint8
    assert depth_m.shape == (24, 32) and depth_m.dtype == np.float32 and (depth_m > 0).all()
    shard = dataset.shard(1)
    assert list(shard["index"]) == [2, 3] and shard["K"].shape == (2, 3, 3)
    np.testing.assert_array_equal(dataset[-1][0], rgb)
    frames = [dataset[i] for i in range(5)]
    assert not np.array_equal(frames[0][1], frames[1][1])

    (root / "shard_00001.npz").unlink()
    make_dataset(root, n=5, seed=3, size=(24, 32), shard_size=2)
    reread = SceneDataset(root)
    for i, (rgb_i, depth_i) in enumerate(frames):
        assert np.array_equal(reread[i][0], rgb_i) and np.array_equal(reread[i][1], depth_i)
    with pytest.raises(ValueError, match="seed"):
        make_dataset(root, n=5, seed=4, size=(24, 32), shard_size=2)
    with pytest.raises(IndexError):
        reread[5]


def test_clip_datasets_hold_short_flights_through_one_scene(tmp_path):
    root = make_dataset(tmp_path, n=4, seed=8, size=(24, 32), shard_size=4, clip_len=2)
    shard = SceneDataset(root).shard(0)
    K = shard["K"]
    assert np.array_equal(K[0], K[1]) and np.array_equal(K[2], K[3])   # one camera per clip
    assert not np.array_equal(shard["rgb"][0], shard["rgb"][1])


def test_bad_parameters_are_named(monkeypatch):
    with pytest.raises(ValueError, match="fov_deg"):
        SceneConfig(fov_deg=(90.0, 50.0))
    with pytest.raises(ValueError, match="kinds"):
        SceneConfig(kinds=("moon",), kind_weights=(1.0,))
    with pytest.raises(ValueError, match="fov_deg"):
        Camera((0.0, 0.0, 1.0), fov_deg=0.0)
    with pytest.raises(ValueError, match="seed"):
        Scene.random(-1)
    with pytest.raises(ValueError, match="width"):
        Renderer(0, 10)
    with pytest.raises(ValueError, match="n_frames"):
        flight_cameras(Scene.random(1), np.random.default_rng(0), 0, 10.0)
    import moderngl

    def no_egl(*args, **kwargs):
        raise Exception("libEGL.so.1: cannot open shared object file")
    monkeypatch.setattr(moderngl, "create_standalone_context", no_egl)
    with pytest.raises(RendererError, match="libegl1"):
        Renderer(8, 8)


@pytest.mark.parametrize("seed, duration_s, fps", [(7, 150.0, 15.0), (7, 600.0, 15.0)])
def test_flights_longer_than_the_path_slow_down_instead_of_failing(seed, duration_s, fps):
    """A flight that needs the whole path (speed reduced to fit) must not trip on rounding."""
    scene = Scene.random(seed)
    cameras = flight_cameras(scene, np.random.default_rng(seed), int(duration_s * fps) + 1, fps)
    travelled = sum(np.linalg.norm(np.subtract(b.position_m[:2], a.position_m[:2]))
                    for a, b in zip(cameras, cameras[1:]))
    assert travelled <= scene.path.length_m * 1.5


def test_render_dataset_renders_in_a_child_with_the_given_kinds_and_reuses_a_complete_cache(tmp_path):
    config = kind_config("closeup")
    root = scenes.render_dataset(tmp_path / "data", 2, 4, (24, 32), config)
    assert SceneDataset(root).manifest["config"]["kinds"] == ["closeup"]
    assert scenes.dataset._dataset_complete(root, 2, 4, (24, 32), config)
    assert not scenes.dataset._dataset_complete(root, 2, 4, (24, 32), kind_config("room"))
