"""Headless OpenGL renderer (moderngl on EGL, Mesa llvmpipe on CPU) producing (RGB, metric depth) frames.

Depth is the camera z-depth in metres (REP 118), recovered from the z-buffer with the near/far formula
(camera.depth_from_window_z); pixels that hit no geometry (the sky) are +inf and not `valid`. One GL
context is made per Renderer and reused for every frame; the last scene's vertex buffer stays uploaded,
so rendering a flight through one scene uploads its geometry once. The photo textures (textures.py) are
uploaded once per Renderer as one mipmapped texture array; without them materials show their procedural
patterns.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import Camera, depth_from_window_z
from .geometry import SHADING_LAYOUT, SHADOW_LAYOUT, VERTEX_FLOATS
from .layout import Lighting, Scene
from .shaders import SCENE_FRAGMENT, SCENE_VERTEX, SHADOW_FRAGMENT, SHADOW_VERTEX, SKY_FRAGMENT, SKY_VERTEX
from .textures import PhotoTextures, load_photo_textures

MAX_SIZE = 8192
# Anisotropic filtering keeps photo textures sharp at grazing angles: trilinear filtering alone blurs the
# ground more the farther it is, a depth cue real cameras do not give.
PHOTO_ANISOTROPY = 4.0


class RendererError(RuntimeError):
    """No usable headless OpenGL: moderngl or the system EGL/Mesa libraries are missing."""


@dataclass(frozen=True)
class Frame:
    """One rendered view: rgb (H, W, 3) uint8, depth_m (H, W) float32 camera z-depth (+inf = sky),
    valid (H, W) bool (finite depth), K (3, 3) float64 intrinsics, the camera and a time stamp."""

    rgb: np.ndarray
    depth_m: np.ndarray
    valid: np.ndarray
    K: np.ndarray
    camera: Camera
    time_s: float = 0.0


def _create_context():
    """A standalone EGL OpenGL 3.3+ context, or a RendererError that names what to install."""
    try:
        import moderngl
    except ImportError as error:
        raise RendererError("the scene renderer needs the Python package moderngl "
                            "(pip install moderngl)") from error
    try:
        return moderngl, moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as error:  # glcontext raises plain Exceptions for a missing libEGL or driver
        raise RendererError(f"cannot create a headless EGL OpenGL context ({error}); install the system "
                            "packages libegl1 and libgl1-mesa-dri (Debian/Ubuntu)") from error


class Renderer:
    """Renders scenes at a fixed width x height; use as a context manager (or call close()).

    photos: True loads the photo textures from their default place (procedural patterns, with a warning,
    when they are not installed), False renders procedural patterns only, or pass loaded PhotoTextures.
    """

    def __init__(self, width: int, height: int, shadow_map_size: int = 1024,
                 photos: bool | PhotoTextures = True) -> None:
        for name, value in (("width", width), ("height", height), ("shadow_map_size", shadow_map_size)):
            if not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_SIZE:
                raise ValueError(f"Renderer {name}={value!r}: must be an integer in [1, {MAX_SIZE}]")
        self.width, self.height = int(width), int(height)
        moderngl, self._ctx = _create_context()
        ctx = self._ctx
        self._depth_test = moderngl.DEPTH_TEST
        self._target = ctx.framebuffer(color_attachments=[ctx.renderbuffer((self.width, self.height), 4)],
                                       depth_attachment=ctx.depth_renderbuffer((self.width, self.height)))
        self._shadow_map = ctx.depth_texture((shadow_map_size, shadow_map_size))
        self._shadow_map.compare_func = "<="
        self._shadow_map.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self._shadow_map.repeat_x = self._shadow_map.repeat_y = False
        self._shadow_target = ctx.framebuffer(depth_attachment=self._shadow_map)
        self._scene_program = ctx.program(vertex_shader=SCENE_VERTEX, fragment_shader=SCENE_FRAGMENT)
        self._shadow_program = ctx.program(vertex_shader=SHADOW_VERTEX, fragment_shader=SHADOW_FRAGMENT)
        self._sky_program = ctx.program(vertex_shader=SKY_VERTEX, fragment_shader=SKY_FRAGMENT)
        self._scene_program["u_shadow_map"] = 0
        self._scene_program["u_photos"] = 1
        textures = load_photo_textures() if photos is True else photos or None
        self.photo_source = str(textures.source) if textures is not None else None
        self._photos = _photo_array(ctx, textures)
        self._scene_program["u_have_photos"] = textures is not None
        self._sky = ctx.vertex_array(self._sky_program, [])
        self._scene: Scene | None = None
        self._buffers: tuple = ()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Release the GL context and everything made in it."""
        if self._ctx is not None:
            self._ctx.release()
            self._ctx, self._scene, self._buffers = None, None, ()

    def render(self, scene: Scene, camera: Camera, time_s: float = 0.0) -> Frame:
        """Render `scene` seen from `camera`."""
        if self._ctx is None:
            raise RendererError("render() called on a closed Renderer")
        vertex_array, shadow_array = self._upload(scene)
        lighting = scene.lighting
        clip_from_world = camera.view_projection(self.width, self.height, scene.near_m, scene.far_m)
        light_from_world, shadow_offset_m, shadow_bias = _shadow_view(lighting, camera, self._shadow_map.width)
        if lighting.shadows:
            self._shadow_target.use()
            self._shadow_target.clear(depth=1.0)
            self._ctx.enable(self._depth_test)
            _write(self._shadow_program, u_light_from_world=light_from_world)
            shadow_array.render()
        self._target.use()
        self._target.clear(depth=1.0)
        self._ctx.disable(self._depth_test)   # the sky neither tests nor writes depth
        common = dict(u_camera_m=camera.position_m, u_sun_direction=lighting.sun_direction,
                      u_sun_rgb=lighting.sun_rgb, u_exposure=lighting.exposure)
        _write(self._sky_program, u_world_from_clip=np.linalg.inv(clip_from_world),
               u_zenith_rgb=lighting.sky_zenith_rgb, u_horizon_rgb=lighting.sky_horizon_rgb,
               u_cloud_cover=lighting.cloud_cover, **common)
        self._sky.render(vertices=3)
        self._ctx.enable(self._depth_test)
        self._shadow_map.use(location=0)
        self._photos.use(location=1)
        _write(self._scene_program, u_clip_from_world=clip_from_world, u_light_from_world=light_from_world,
               u_ambient_rgb=lighting.ambient_rgb, u_fog_rgb=lighting.fog_rgb,
               u_fog_distance_m=lighting.fog_distance_m, u_shadows=lighting.shadows,
               u_shadow_offset_m=shadow_offset_m, u_shadow_bias=shadow_bias, **common)
        vertex_array.render()
        rgb = np.frombuffer(self._target.read(components=3, alignment=1), np.uint8)
        rgb = rgb.reshape(self.height, self.width, 3)[::-1].copy()
        window_z = np.frombuffer(self._target.read(components=1, attachment=-1, dtype="f4", alignment=1), np.float32)
        depth_m = depth_from_window_z(window_z.reshape(self.height, self.width)[::-1], scene.near_m, scene.far_m)
        return Frame(rgb, depth_m, np.isfinite(depth_m), camera.intrinsics(self.width, self.height), camera,
                     time_s)

    def _upload(self, scene: Scene) -> tuple:
        """Vertex arrays of `scene` (the previous scene's buffers are released)."""
        if scene is not self._scene:
            for buffer in self._buffers:
                buffer.release()
            vertices = np.ascontiguousarray(scene.vertices, np.float32)
            if vertices.ndim != 2 or vertices.shape[1] != VERTEX_FLOATS or len(vertices) % 3:
                raise ValueError(f"Scene.vertices has shape {vertices.shape}: expected (3 n, {VERTEX_FLOATS})")
            vbo = self._ctx.buffer(vertices.tobytes())
            self._buffers = (self._ctx.vertex_array(self._scene_program, [(vbo, *SHADING_LAYOUT)]),
                             self._ctx.vertex_array(self._shadow_program, [(vbo, *SHADOW_LAYOUT)]), vbo)
            self._scene = scene
        return self._buffers[:2]


def _write(program, **uniforms) -> None:
    """Set uniforms; matrices are given row-major (numpy) and written column-major (GL)."""
    for name, value in uniforms.items():
        if isinstance(value, np.ndarray) and value.shape == (4, 4):
            program[name].write(value.T.astype(np.float32).tobytes())
        else:
            program[name].value = value


def _photo_array(ctx, textures: PhotoTextures | None):
    """The photo layers as a mipmapped RGB texture array (a 1x1 placeholder without photos)."""
    layers = textures.layers if textures is not None else np.zeros((1, 1, 1, 3), np.uint8)
    count, size = layers.shape[0], layers.shape[1]
    array = ctx.texture_array((size, size, count), 3, np.ascontiguousarray(layers[:, ::-1]).tobytes())
    array.build_mipmaps()
    array.repeat_x = array.repeat_y = False     # the shader mirrors the tiles itself
    array.anisotropy = PHOTO_ANISOTROPY
    return array


def _shadow_view(lighting: Lighting, camera: Camera, map_size: int) -> tuple[np.ndarray, float, float]:
    """Orthographic sun view covering the ground the camera sees most of (larger when flying higher, or the
    scene's fixed extent), with the normal offset (m) and depth bias that match its texel size."""
    half_size_m = lighting.shadow_half_extent_m or float(np.clip(4.0 * camera.position_m[2] + 30.0, 40.0, 150.0))
    depth_range_m = 600.0 if lighting.shadow_half_extent_m is None else 4.0 * half_size_m
    forward = camera.forward()[:2]
    norm = float(np.linalg.norm(forward))
    ahead = forward / norm * half_size_m * 0.5 if norm > 1e-6 else np.zeros(2)
    target = np.array([camera.position_m[0] + ahead[0], camera.position_m[1] + ahead[1], 0.0])
    z_axis = np.asarray(lighting.sun_direction, np.float64)
    up = np.array([1.0, 0.0, 0.0]) if abs(z_axis[2]) > 0.99 else np.array([0.0, 0.0, 1.0])
    x_axis = np.cross(up, z_axis)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = np.cross(z_axis, x_axis)
    eye = target + z_axis * depth_range_m / 2
    view = np.eye(4)
    view[:3, :3] = np.stack([x_axis, y_axis, z_axis])
    view[:3, 3] = -view[:3, :3] @ eye
    ortho = np.diag([1.0 / half_size_m, 1.0 / half_size_m, -2.0 / depth_range_m, 1.0])
    ortho[2, 3] = -1.0
    texel_m = 2.0 * half_size_m / map_size
    return ortho @ view, 1.5 * texel_m, texel_m / depth_range_m
